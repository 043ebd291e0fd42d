"""Disruption measured during an upgrade, judged against a scenario's budgets. Pure functions over
the prober's samples (harness.probes.disruption writes them, one JSON line each).

An **outage** begins at the first failed sample of a backend and ends at its next ok sample; one
still failing at the last sample ends there (`open`). Its length is `end - start` of those two
samples' times, so it is exact only to the sampling: the real outage began somewhere after the last
ok sample before it and ended somewhere after its last failed sample, i.e. within one sampling
interval either way, or, for a backend that hangs rather than refuses, one probe timeout.

Backends and budget keys
------------------------
Backends are `KIND:NAME` strings, one sample loop each:

    etcd:<node>          a write-then-read on that member's own client endpoint   kind etcd-member
    etcd:all             the same through every member's endpoint, as a client    kind etcd-all
                         given all of them would (sticks to one, fails over)
    containerd:<node>    the CRI/containerd socket on the node accepts connections kind containerd
    apiserver:<node>     GET /readyz on that control-plane node's apiserver        kind apiserver
    apiserver:endpoint   GET /readyz on the cluster endpoint (kubeconfig server)
    canary:<node>        the canary Service through its NodePort on that node     kind canary
    dns                  the A record of kubernetes.default.svc.<domain> over TCP kind dns
                         to the cluster DNS (a NodePort on the first Kubernetes node)

A Kubernetes backend is probed twice, with a new connection per sample (the name above) and with
one reused connection (the name plus `:reused`: `dns:reused` too); they are reported separately.

A scenario's `budgets` maps a kind (every backend of it: `etcd-member: 3`) or one backend
(`etcd:node2: 5`, `etcd:all: 0`) to the seconds of disruption allowed; a backend's own key wins over
its kind's. Backends without a budget are measured and reported, not judged.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.checks.result import CheckResult, text_table
from harness.scenario.budgets import REUSED, kind_of
from harness.text import plural

if TYPE_CHECKING:
    from harness.probes.disruption import ProbeRun
    from harness.record import ScenarioRun
    from harness.scenario.model import Scenario

@dataclass(frozen=True)
class Sample:
    """One probe sample: `t` wall-clock seconds (epoch) when the probe began."""

    t: float
    backend: str
    ok: bool
    latency_ms: float
    error: str | None = None

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Sample:
        return cls(float(doc["t"]), str(doc["backend"]), bool(doc["ok"]), float(doc.get("latency_ms") or 0.0),
                   doc.get("error"))


@dataclass(frozen=True)
class Outage:
    start: float  # the first failed sample
    end: float  # the next ok sample, or the last (failed) sample when `open`
    failed_samples: int
    error: str | None  # the first failed sample's error
    open: bool = False  # still failing when probing stopped

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Disruption:
    """One backend's samples, summed up."""

    backend: str
    samples: int
    failed: int
    outages: tuple[Outage, ...]
    first: float | None = None  # first and last sample times
    last: float | None = None

    @property
    def seconds(self) -> float:
        return sum(o.seconds for o in self.outages)


def budget_for(backend: str, budgets: Mapping[str, float]) -> tuple[str, float] | None:
    """(key, seconds) of the budget that judges `backend`: its own key, its key without `:reused`,
    else its kind's; None when it has none."""
    for key in (backend, backend.removesuffix(REUSED), kind_of(backend)):
        if key in budgets:
            return key, float(budgets[key])
    return None


def read_samples(path: Path) -> list[Sample]:
    """The samples of a JSON-lines file; a torn last line (the prober was killed mid-write) is dropped."""
    out = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            out.append(Sample.from_json(json.loads(line)))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def outages(samples: Iterable[Sample]) -> list[Outage]:
    """One backend's outages, from its samples in any order."""
    out: list[Outage] = []
    start: Sample | None = None
    failed = 0
    last: Sample | None = None
    for s in sorted(samples, key=lambda s: s.t):
        last = s
        if not s.ok:
            if start is None:
                start, failed = s, 0
            failed += 1
        elif start is not None:
            out.append(Outage(start.t, s.t, failed, start.error))
            start = None
    if start is not None and last is not None:
        out.append(Outage(start.t, last.t, failed, start.error, open=True))
    return out


def summarize(samples: Iterable[Sample]) -> dict[str, Disruption]:
    """backend -> its disruption, for every backend that has samples."""
    by: dict[str, list[Sample]] = {}
    for s in samples:
        by.setdefault(s.backend, []).append(s)
    out = {}
    for backend, ss in sorted(by.items()):
        ts = [s.t for s in ss]
        out[backend] = Disruption(backend, len(ss), sum(not s.ok for s in ss), tuple(outages(ss)), min(ts), max(ts))
    return out


def _clock(t: float, origin: float | None) -> str:
    return f"+{t - origin:.2f}s" if origin is not None else f"{t:.2f}"


def describe(d: Disruption, origin: float | None = None) -> str:
    """The outages as a table (times from `origin`, the probing's start, when given)."""
    if not d.outages:
        return f"{d.backend}: no failed sample in {d.samples}"
    rows = [(_clock(o.start, origin), _clock(o.end, origin) + (" (still failing)" if o.open else ""),
             f"{o.seconds:.2f}", str(o.failed_samples), (o.error or "")[:120]) for o in d.outages]
    return text_table(("from", "to", "seconds", "failed samples", "first error"), rows)


def check_budget(backend: str, budget: tuple[str, float], measured: Disruption | None, *,
                 interval: float | None = None, origin: float | None = None, why_none: str = "") -> CheckResult:
    """`backend`'s unavailable seconds within its budget. No samples at all is a failure (nothing
    measured is not zero disruption)."""
    key, allowed = budget
    name = f"disruption {backend}"
    if measured is None or measured.samples == 0:
        return CheckResult.fail(name, f"no samples of {backend}" + (f": {why_none}" if why_none else ""))
    precision = f"; each bound to +/-{interval:g}s (the sampling interval)" if interval else ""
    said = (f"{measured.seconds:.2f}s unavailable in {len(measured.outages)} outage(s), {measured.failed} of"
            f" {plural(measured.samples, 'sample')} failed; budget {allowed:g}s ({key}){precision}")
    if measured.seconds > allowed:
        return CheckResult.fail(name, said, describe(measured, origin))
    return CheckResult.ok(name, said, describe(measured, origin) if measured.outages else "")


def properties(d: Disruption) -> list[tuple[str, str]]:
    """JUnit properties for one backend: seconds, outages, the samples behind them."""
    p = f"disruption:{d.backend}"
    out = [(f"{p}:seconds", f"{d.seconds:.3f}"), (f"{p}:outages", str(len(d.outages))),
           (f"{p}:samples", str(d.samples)), (f"{p}:failed", str(d.failed))]
    out += [(f"{p}:interval", f"{o.start:.3f}-{o.end:.3f}") for o in d.outages]
    return out


# -- which backends a scenario has, which items judge them -------------------------------------------

# The budget items, one per probe kind a scenario budgets: kind -> what the item judges. Each item is
# the check `disruption <kind>` (its pytest item: `test_disruption_<kind>`).
BUDGET_ITEMS: dict[str, str] = {
    "etcd-member": "Each etcd member's own endpoint: unavailable seconds during the upgrade within the budget.",
    "etcd-all": "A client given every etcd member: unavailable seconds during the upgrade within the budget.",
    "containerd": "Each node's runtime socket: unavailable seconds during the upgrade within the budget.",
    "apiserver": "/readyz of each control-plane node and of the cluster endpoint, new and reused connections.",
    "canary": "The canary Service through a NodePort on each node, new and reused connections.",
    "dns": "A cluster DNS lookup over TCP, new and reused connections.",
}


def budget_check(kind: str) -> str:
    """The name of the check that judges a kind's budget."""
    return f"disruption {kind}"


def expected_backends(nodes: Mapping[str, Sequence[str]], kubernetes: bool) -> list[str]:
    """Every backend a topology (node -> roles) has: etcd members and the all-endpoints client, the
    runtime socket of every Kubernetes node, and with Kubernetes its API, canary and DNS backends."""
    etcd = [n for n, roles in nodes.items() if "etcd" in roles]
    k8s = [n for n, roles in nodes.items() if {"worker", "control-plane"} & set(roles)]
    out = [f"etcd:{n}" for n in etcd] + (["etcd:all"] if etcd else []) + [f"containerd:{n}" for n in k8s]
    if kubernetes:
        api = [f"apiserver:{n}" for n, roles in nodes.items() if "control-plane" in roles] + ["apiserver:endpoint"]
        canary = [f"canary:{n}" for n in k8s]
        out += [b + s for b in [*api, *canary, "dns"] for s in ("", REUSED)]
    return out


def budgeted_kinds(budgets: Mapping[str, float], backends: Iterable[str]) -> list[str]:
    """The kinds with at least one backend a budget judges: one pytest item each."""
    return sorted({kind_of(b) for b in backends if budget_for(b, budgets) is not None})


def judge_kind(
    kind: str,
    budgets: Mapping[str, float],
    backends: Sequence[str],
    measured: Mapping[str, Disruption],
    *,
    interval: float | None,
    missing: Mapping[str, str] | None = None,
    origin: float | None = None,
) -> tuple[CheckResult, list[tuple[str, str]]]:
    """One budget item: every backend of `kind` that has a budget, judged; the properties of every
    backend of the kind (budgeted or not) for the JUnit report."""
    from harness.checks.result import combine

    mine = [b for b in backends if kind_of(b) == kind]
    props = [p for b in mine if b in measured for p in properties(measured[b])]
    props += [(f"disruption:{b}:budget", f"{budget[1]:g}") for b in mine if (budget := budget_for(b, budgets))]
    name = f"disruption {kind}"
    results = [check_budget(b, budget, measured.get(b), interval=interval, origin=origin,
                            why_none=(missing or {}).get(b, "the prober recorded none"))
               for b in mine if (budget := budget_for(b, budgets)) is not None]
    if not results:
        return CheckResult.not_applicable(name, f"no budget for {kind}"), props
    if len(results) == 1:
        return replace(results[0], name=name), props
    folded = combine(name, results)
    if folded.passed:
        said = "; ".join(f"{r.name.removeprefix('disruption ')}: {r.summary.split(' unavailable')[0]}" for r in results)
        return replace(folded, summary=said), props
    return folded, props


# -- a scenario and its run, as the pytest items read them -----------------------------------------


def scenario_backends(scenario: Scenario) -> list[str]:
    return expected_backends({n.name: n.roles for n in scenario.topology.nodes}, "kubernetes" in scenario.requirements())


def scenario_budgeted_kinds(scenario: Scenario) -> list[str]:
    """The kinds one of the scenario's budgets judges: each gets its pytest item."""
    return budgeted_kinds(scenario.budgets, scenario_backends(scenario))


def _measured(run: ScenarioRun) -> tuple[dict[str, Disruption], ProbeRun | None]:
    record = run.disruption
    if record is None or not record.samples.exists():
        return {}, record
    return summarize(read_samples(record.samples)), record


def judge_run(run: ScenarioRun, kind: str) -> tuple[CheckResult, list[tuple[str, str]]]:
    """One budget item of a scenario run: its verdict and its JUnit properties."""
    measured, record = _measured(run)
    if record is None:
        missing = {b: "the upgrade ran without the disruption probes" for b in scenario_backends(run.scenario)}
    else:
        missing = dict(record.missing)
        if record.error:
            missing.update({b: record.error for b in record.backends})
    return judge_kind(kind, run.scenario.budgets, scenario_backends(run.scenario), measured,
                      interval=record.interval if record else None, missing=missing,
                      origin=record.started_at if record else None)


def unbudgeted_properties(run: ScenarioRun) -> list[tuple[str, str]]:
    """JUnit properties of the backends of kinds no budget judges (reported by an existing item)."""
    measured, _ = _measured(run)
    judged = set(scenario_budgeted_kinds(run.scenario))
    return [p for b, d in measured.items() if kind_of(b) not in judged for p in properties(d)]
