"""One scenario's run record: what each step did and what the probes collected, the one value the
checks, the report and the gate read (harness.pipeline fills it, step by step, and saves it as
`<artifacts>/<scenario>/run.json` and `facts.json` as it goes)."""

from __future__ import annotations

import dataclasses
import json
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cluster.base import Cluster
from harness.installer.base import Stage
from harness.probes.collected import Facts
from harness.probes.disruption import ProbeRun
from harness.probes.facts import NodeStateSample, PreUpgradeRecord, VersionSample, to_jsonable
from harness.scenario.model import Scenario

if TYPE_CHECKING:
    from harness.installer.kubespray import ListedTask
    from harness.upgrade.runner import RunResult


@dataclass
class StepOutcome:
    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass
class ScenarioRun:
    """Everything one scenario's checks read: outcomes, stage results and collected facts."""

    scenario: Scenario
    dir: Path
    outcomes: dict[str, StepOutcome] = field(default_factory=dict)
    cluster: Cluster | None = None
    stages: list[Stage] = field(default_factory=list)
    results: dict[str, RunResult] = field(default_factory=dict)  # stage purpose -> its playbook run
    before: PreUpgradeRecord | None = None
    planted_keys: dict[str, str] = field(default_factory=dict)
    samples: list[VersionSample] = field(default_factory=list)
    node_states: list[NodeStateSample] = field(default_factory=list)  # the API's nodes at each sampling round
    sample_errors: dict[str, str] = field(default_factory=dict)  # source -> why its last sampling round failed
    resolved: dict[str, str] = field(default_factory=dict)
    baseline_outcome: str | None = None
    kubeconfig: Path | None = None
    kube_before: PreUpgradeRecord | None = None  # pod restarts and canary UIDs before the upgrade (plant stage)
    # Everything the checks read after the upgrade, collected once by the 'after' step (harness.checks.suite)
    facts: Facts | None = None
    notes: list[str] = field(default_factory=list)  # what an installer changed about the run (report)
    disruption: ProbeRun | None = None  # the disruption probes around the upgrade (samples in disruption.jsonl)
    worker: str = "main"  # the xdist worker (or "main") whose session ran this pipeline
    # stage ident -> its `--list-tasks`, started by the plan step and taken by the stage
    listing: dict[str, Future[list[ListedTask]]] = field(default_factory=dict, repr=False)

    def ok(self, step: str) -> bool:
        o = self.outcomes.get(step)
        return bool(o and o.ok)

    def require(self, *steps: str) -> None:
        """Fail the calling check item when a step it depends on failed or never ran."""
        __tracebackhide__ = True
        for step in steps:
            o = self.outcomes.get(step)
            if o is None:
                failed = [x for x in self.outcomes.values() if not x.ok]
                cause = f"; first failure: {failed[0].name}: {failed[0].error}" if failed else ""
                raise AssertionError(f"step {step!r} of {self.scenario.id} did not run{cause}")
            if not o.ok:
                raise AssertionError(f"step {step!r} of {self.scenario.id} failed: {o.error}")

    def upgrade_result(self) -> RunResult | None:
        return self.results.get("upgrade")

    def save(self) -> None:
        doc = {
            "scenario": self.scenario.id,
            "test_id": self.scenario.test_id,
            "worker": self.worker,
            "baseline": self.baseline_outcome,
            "notes": self.notes,
            "outcomes": [to_jsonable(o) for o in self.outcomes.values()],
            "stages": [
                {"ident": s.ident, "purpose": s.purpose, "argv": s.argv()} for s in self.stages
            ],
            "results": {
                k: {"rc": r.rc, "status": r.status, "recap": r.recap, "artifacts": str(r.artifacts_dir),
                    "seconds": r.seconds}
                for k, r in self.results.items()
            },
            "disruption": self.disruption.to_json() if self.disruption is not None else None,
        }
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "run.json").write_text(json.dumps(doc, indent=2, default=str) + "\n")
        # The timeline stays in the upgrade's timeline.jsonl; the samples are saved once, here.
        facts = {
            "before": to_jsonable(self.before),
            "kube_before": to_jsonable(self.kube_before),
            "samples": to_jsonable(self.samples),
            "node_states": to_jsonable(self.node_states),
            "sample_errors": self.sample_errors,
            "facts": to_jsonable(dataclasses.replace(self.facts, timeline=(), samples=(), node_states=()))
            if self.facts is not None else None,
        }
        (self.dir / "facts.json").write_text(json.dumps(facts, indent=2, default=str) + "\n")
