"""The pytest items' side of the suite: a `ScenarioRun` seen as (facts, expectation).

The pipeline's 'after' step collects the facts bundle (harness.checks.suite.collect); the
expectation comes from the scenario and what was recorded before the upgrade. Each item fails
first when a step it depends on failed, then asks `suite.judge` for its one check, exactly as
`harness verify` asks for all of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.checks import suite
from harness.checks.result import CheckResult
from harness.checks.suite import Expectation
from harness.probes.collected import Facts

if TYPE_CHECKING:
    from harness.record import ScenarioRun


def facts_of(run: ScenarioRun) -> Facts:
    """The bundle the 'after' step collected; without it (the step failed or never ran), what the
    run itself recorded, so the run-level checks (playbook, order, skew) still judge the run."""
    if run.facts is not None:
        return run.facts
    nodes = run.cluster.nodes if run.cluster is not None else run.scenario.topology.nodes
    return Facts(
        nodes={n.name: tuple(n.roles) for n in nodes},
        samples=tuple(run.samples),
        timeline=suite.run_timeline(run.results),
        runs=suite.run_records(run.results),
        errors={"hosts": "the 'after' step collected nothing", **_sampling_errors(run)},
    )


def _sampling_errors(run: ScenarioRun) -> dict[str, str]:
    errors = run.sample_errors
    return {"samples": "; ".join(f"{k}: {v}" for k, v in sorted(errors.items()))} if errors else {}


def expectation_of(run: ScenarioRun) -> Expectation:
    return Expectation.for_scenario(run.scenario, run.before, run.resolved, run.planted_keys, run.kube_before)


def check(run: ScenarioRun, name: str) -> CheckResult:
    """One check of the suite for one scenario's pytest item."""
    __tracebackhide__ = True
    run.require(*suite.CHECKS[name].requires)
    (result,) = suite.judge(facts_of(run), expectation_of(run), [name])
    return result
