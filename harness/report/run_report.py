"""A scenario's run report: what ran, how long each part took, what moved, what the checks said.

`build(run_dir)` reads only what a run left in `<artifacts>/<scenario>/` (run.json, the stages'
timeline.jsonl, facts.json, checks.jsonl, scenario.json, disruption.jsonl) into a `RunReport`;
`render_markdown` and `render_html` turn that into plain text and one self-contained HTML file (the
timeline picture inline as SVG). `write(run_dir)` writes report.md, report.html, timeline.png and
timeline.svg next to the run. A failed run's report starts with the failing task and host and the
remedy the scenario or the known-failures table gives.

The pipeline calls `finish_scenario` at the end of each scenario (`Session.finish`); the pytest
plugin calls `record_item` for every check item, since only pytest knows the items' verdicts.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.text import plural
from harness.upgrade.masking import mask_text
from harness.upgrade.timeline import TaskRecord, first_failures, read_timeline

if TYPE_CHECKING:
    from rich.console import Console

    from harness.record import ScenarioRun

REPORT_MD = "report.md"
REPORT_HTML = "report.html"  # harness.gate links to <artifacts>/<scenario>/report.html
TIMELINE_PNG = "timeline.png"
TIMELINE_SVG = "timeline.svg"
CHECKS_FILE = "checks.jsonl"  # one line per check item, appended by the pytest plugin
SCENARIO_FILE = "scenario.json"  # the scenario as run, and pytest's verdict (written at finish)
DISRUPTION_FILE = "disruption.jsonl"  # the disruption prober's samples, one a line (harness/probes/disruption.py)


@dataclass(frozen=True)
class KnownFailure:
    reason: str
    remedy: str


# Kubespray tasks whose failure has a known cause and remedy, keyed `role : task` as Ansible prints it.
KNOWN_FAILURES: dict[str, KnownFailure] = {
    "etcd : Install | Copy etcd binary from download dir": KnownFailure(
        reason="the etcd tag runs etcd's install_host.yml (copy from the download dir) before anything"
               " downloads the new tarball; the download role only carries the `download` tag",
        remedy="run with --tags=download,etcd (the etcd tag path does not download)",
    ),
    "upgrade/pre-upgrade : Drain node": KnownFailure(
        reason="the drain did not finish: a PodDisruptionBudget or a pod without a controller blocks"
               " eviction (kubespray#8093), or the drain outlasted drain_timeout",
        remedy="find the blocking PodDisruptionBudget (kubectl get pdb -A); or set drain_fallback_enabled: true,"
               " raise drain_timeout / drain_grace_period; a node left cordoned needs kubectl uncordon",
    ),
}


def known_failure(task: str) -> KnownFailure | None:
    """The table's entry for a task: the same task name, and the same role (or a role whose last path
    part matches: `pre-upgrade` for `upgrade/pre-upgrade`)."""
    if task in KNOWN_FAILURES:
        return KNOWN_FAILURES[task]
    role, _, name = task.rpartition(" : ")
    for key, known in KNOWN_FAILURES.items():
        key_role, _, key_name = key.rpartition(" : ")
        if name == key_name and role and key_role.rsplit("/", 1)[-1] == role.rsplit("/", 1)[-1]:
            return known
    return None


# -- the model -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    name: str
    ok: bool
    seconds: float
    error: str | None = None


@dataclass(frozen=True)
class PlayTime:
    stage: str
    play: str
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class StageRun:
    ident: str
    purpose: str
    argv: tuple[str, ...]
    rc: int | None
    status: str | None
    records: tuple[TaskRecord, ...]
    recap: dict[str, dict[str, int]] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """Where a run went wrong: a task on hosts, or a step with no task (host and task None)."""

    stage: str
    hosts: tuple[str, ...]
    task: str | None
    play: str | None
    message: str
    expected: bool = False  # the scenario documents this failure
    reason: str | None = None
    remedy: str | None = None


@dataclass(frozen=True)
class VersionRow:
    node: str
    component: str
    before: str | None
    after: str | None
    target: str | None

    @property
    def changed(self) -> bool:
        return self.before != self.after


@dataclass(frozen=True)
class VersionChange:
    at: datetime
    node: str
    component: str
    old: str | None
    new: str | None


@dataclass(frozen=True)
class Verdict:
    check: str
    item: str
    outcome: str  # passed | failed | skipped | error
    message: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Interval:
    """A probe failing from `start` to `end` (disruption)."""

    probe: str
    start: datetime
    end: datetime
    detail: str = ""
    open: bool = False  # still failing when probing stopped

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


@dataclass(frozen=True)
class ProbeSummary:
    """One probed backend over the upgrade: samples, failed ones, seconds of outage, its budget."""

    backend: str
    samples: int
    failed: int
    seconds: float
    budget_key: str | None = None
    budget: float | None = None

    @property
    def over_budget(self) -> bool:
        return self.budget is not None and self.seconds > self.budget


@dataclass(frozen=True)
class NodeSpan:
    """A span the API showed a node in a state while the upgrade ran: cordoned, or not Ready."""

    node: str
    state: str  # cordoned | not ready
    start: datetime
    end: datetime


@dataclass(frozen=True)
class RunReport:
    scenario: str
    test_id: str
    dir: Path
    failed: bool
    plan: dict[str, Any]  # description, installer, path, tags, baseline, target, gate, expect_failure
    baseline: str | None
    notes: tuple[str, ...]
    steps: tuple[Step, ...]
    stages: tuple[StageRun, ...]
    plays: tuple[PlayTime, ...]
    failures: tuple[Failure, ...]
    versions: tuple[VersionRow, ...]
    changes: tuple[VersionChange, ...]
    verdicts: tuple[Verdict, ...]
    intervals: tuple[Interval, ...]
    probes: tuple[ProbeSummary, ...]
    budgets: dict[str, float]
    problems: tuple[str, ...] = ()
    node_spans: tuple[NodeSpan, ...] = ()  # from the sampler's node states (Kubernetes only)  # what could not be read, said in the report rather than raised

    @property
    def headline(self) -> Failure | None:
        """What a failed run's report names first: the first failure the scenario does not document."""
        return next((f for f in self.failures if not f.expected), None)

    @property
    def documented(self) -> Failure | None:
        """The failure the scenario documents, when the run hit it."""
        return next((f for f in self.failures if f.expected), None)

    @property
    def failed_checks(self) -> tuple[Verdict, ...]:
        return tuple(v for v in self.verdicts if v.outcome in ("failed", "error"))

    @property
    def status(self) -> str:
        return "FAILED" if self.failed else "passed"



# -- reading ---------------------------------------------------------------------------------------


class ReportError(Exception):
    """A run directory a report cannot be made from (no run.json, not JSON)."""


def _json(path: Path, problems: list[str]) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        problems.append(f"{path.name}: unreadable ({e})")
        return None


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        t = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _stage_runs(run_dir: Path, doc: Mapping[str, Any], problems: list[str]) -> list[StageRun]:
    """Every playbook run the scenario made, in the order of their idents (00-baseline, 01-plant...):
    the timelines found under runner/, the recap and rc from run.json where it has them."""
    argv = {s["ident"]: tuple(s.get("argv") or ()) for s in doc.get("stages") or []}
    purposes = {s["ident"]: s.get("purpose") for s in doc.get("stages") or []}
    results = {Path(r.get("artifacts") or "").name: (purpose, r) for purpose, r in (doc.get("results") or {}).items()}
    idents = {p.name for p in (run_dir / "runner").glob("*") if p.is_dir()} | set(results)
    out = []
    for ident in sorted(idents):
        purpose, result = results.get(ident, (purposes.get(ident) or ident.split("-", 1)[-1], {}))
        path = run_dir / "runner" / ident / "artifacts" / ident / "timeline.jsonl"
        records: list[TaskRecord] = []
        if path.exists():
            try:
                records = read_timeline(path)
            except (OSError, ValueError, TypeError) as e:
                problems.append(f"{path.relative_to(run_dir)}: unreadable ({e})")
        rc = result.get("rc")
        if rc is None and (path.parent / "rc").exists():
            rc_text = (path.parent / "rc").read_text().strip()
            rc = int(rc_text) if rc_text.lstrip("-").isdigit() else None
        out.append(StageRun(ident=ident, purpose=str(purpose), argv=argv.get(ident, ()), rc=rc,
                            status=result.get("status"), records=tuple(records), recap=dict(result.get("recap") or {})))
    return out


def _plays(stages: Sequence[StageRun]) -> list[PlayTime]:
    out = []
    for s in stages:
        spans: dict[str, list[datetime]] = {}
        for r in s.records:
            for t in (parse_time(r.start), parse_time(r.end)):
                if t is not None:
                    spans.setdefault(r.play, []).append(t)
        out += [PlayTime(s.purpose, play, min(ts), max(ts)) for play, ts in spans.items()]
    return sorted(out, key=lambda p: p.start)


def _failures(stages: Sequence[StageRun], steps: Sequence[Step], plan: Mapping[str, Any]) -> list[Failure]:
    """Failed tasks (first per host, grouped by task) stage by stage, then failed steps no task explains."""
    expect = plan.get("expect_failure") or {}
    out: list[Failure] = []
    explained: set[str] = set()
    for s in stages:
        firsts = first_failures(s.records)
        grouped: dict[tuple[str, str], list[TaskRecord]] = {}
        for host in sorted(firsts):
            r = firsts[host]
            grouped.setdefault((r.play, r.task), []).append(r)
        for (play, task), records in grouped.items():
            explained.add(s.purpose)
            documented = bool(expect.get("task")) and s.purpose == "upgrade" and str(expect["task"]) in task
            known = known_failure(task)
            out.append(Failure(
                stage=s.purpose, hosts=tuple(r.host for r in records), task=task, play=play,
                message=mask_text(records[0].msg or records[0].status), expected=documented,
                reason=str(expect.get("reason")) if documented else (known.reason if known else None),
                remedy=str(expect.get("remedy")) if documented else (known.remedy if known else None),
            ))
        if not firsts and s.rc not in (None, 0):
            explained.add(s.purpose)
            out.append(Failure(s.purpose, (), None, None, f"{s.ident} ended rc={s.rc} ({s.status}) before any task failed"))
    for step in steps:
        if not step.ok and step.name not in explained:
            out.append(Failure(step.name, (), None, None, mask_text(step.error or "failed")))
    return out


def _versions(facts_doc: Mapping[str, Any] | None, plan: Mapping[str, Any],
              problems: list[str]) -> tuple[list[VersionRow], list[VersionChange]]:
    from harness.checks.versions import versions_match
    from harness.components import moved_by, observed_as, version_var
    from harness.probes.facts import PreUpgradeRecord, VersionSample, from_jsonable

    if not facts_doc:
        return [], []
    before: dict[str, dict[str, str | None]] = {}
    after: dict[str, dict[str, str | None]] = {}
    samples: list[VersionSample] = []
    try:
        if facts_doc.get("before"):
            before = from_jsonable(PreUpgradeRecord, facts_doc["before"]).versions
        # Built directly: from_jsonable's type-hint walk per sample took seconds on a long run's thousands.
        samples = [VersionSample(datetime.fromisoformat(s["at"]), str(s["node"]), str(s["component"]), s.get("version"))
                   for s in facts_doc.get("samples") or []]
        if facts_doc.get("facts"):
            from harness.probes.collected import Facts

            after = from_jsonable(Facts, facts_doc["facts"]).observed  # host probes and the API merged, as the checks see it
    except (KeyError, TypeError, ValueError) as e:
        problems.append(f"facts.json: not the shape this harness writes ({type(e).__name__}: {e})")
    target_vars = {str(k): str(v) for k, v in ((plan.get("target") or {}).get("versions") or {}).items()}
    # A tagged run's target is only what its tags move (`--tags=control-plane` leaves every kubelet).
    moved = {c for t in plan.get("tags") or () for c in moved_by(str(t))} if plan.get("path") == "component" else None
    rows = []
    for node in sorted(set(before) | set(after)):
        b, a = before.get(node, {}), after.get(node, {})
        for comp in sorted(set(b) | set(a)):
            if b.get(comp) is None and a.get(comp) is None:
                continue  # absent before and after: nothing to say
            var = version_var(comp)  # a binary's is its component's (etcdctl: etcd_version)
            target = target_vars.get(var) if var and (moved is None or observed_as(comp) in moved) else None
            rows.append(VersionRow(node, comp, b.get(comp), a.get(comp), target))
    # Changes seen while the upgrade ran: against the pre-upgrade record, then sample to sample.
    last: dict[tuple[str, str], str | None] = {(n, c): v for n, per in before.items() for c, v in per.items()}
    changes = []
    for s in sorted(samples, key=lambda s: s.at):
        key = (s.node, s.component)
        # A kubelet read from its binary before (`v1.31.9`) and from the API now (`v1.31.9+lab.x`)
        # has not moved: versions_match ignores the build metadata, as semver does.
        was = last.get(key)
        changed = was != s.version if was is None or s.version is None else not versions_match(was, s.version)
        if key in last and changed:
            changes.append(VersionChange(s.at if s.at.tzinfo else s.at.replace(tzinfo=UTC), s.node, s.component,
                                         last[key], s.version))
        last[key] = s.version
    return rows, changes


def _node_spans(facts_doc: Mapping[str, Any] | None, problems: list[str]) -> list[NodeSpan]:
    """Each node's cordoned and not-Ready spans, as the API showed them at each sampling round."""
    from harness.checks.order import state_spans
    from harness.probes.facts import NodeStateSample

    try:
        states = [NodeStateSample(datetime.fromisoformat(s["at"]), str(s["node"]), bool(s["ready"]), bool(s["unschedulable"]))
                  for s in (facts_doc or {}).get("node_states") or []]
    except (KeyError, TypeError, ValueError) as e:
        problems.append(f"facts.json: node_states not the shape this harness writes ({type(e).__name__}: {e})")
        return []
    out = [NodeSpan(node, state, start, end)
           for state, flag in (("cordoned", lambda s: s.unschedulable), ("not ready", lambda s: not s.ready))
           for node, spans in state_spans(states, flag).items() for start, end in spans]
    return sorted(out, key=lambda n: (n.start, n.node))


def _verdicts(path: Path, problems: list[str]) -> list[Verdict]:
    """checks.jsonl: the last line per item wins (a setup error, then the call's outcome)."""
    if not path.exists():
        return []
    by_item: dict[str, Verdict] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            v = Verdict(str(d["check"]), str(d["item"]), str(d["outcome"]), str(d.get("message") or ""),
                        float(d.get("seconds") or 0.0))
        except (ValueError, KeyError, TypeError) as e:
            problems.append(f"{path.name}:{n}: unreadable ({e})")
            continue
        by_item[v.item] = v
    return list(by_item.values())


def read_disruption(path: Path, budgets: Mapping[str, float]) -> tuple[list[Interval], list[ProbeSummary]]:
    """Probe failure intervals and per-backend totals from disruption.jsonl, read and cut into outages
    by harness.checks.disruption (the one reading of the samples: the budget items use it too)."""
    from harness.checks.disruption import budget_for, read_samples, summarize

    if not path.exists():
        return [], []
    intervals, probes = [], []
    for backend, d in summarize(read_samples(path)).items():
        budget = budget_for(backend, budgets)
        probes.append(ProbeSummary(backend, d.samples, d.failed, d.seconds, budget[0] if budget else None,
                                   budget[1] if budget else None))
        intervals += [Interval(backend, datetime.fromtimestamp(o.start, UTC), datetime.fromtimestamp(o.end, UTC),
                               mask_text(o.error or ""), o.open) for o in d.outages]
    return sorted(intervals, key=lambda i: i.start), probes


def build(run_dir: Path) -> RunReport:
    """The report model of one scenario's artifact dir. Reads only; what is missing or unreadable
    besides run.json is listed in `problems`, not raised."""
    problems: list[str] = []
    doc = _json(run_dir / "run.json", problems)
    if not isinstance(doc, dict):
        raise ReportError(f"{run_dir}: no run.json to report on" + (f" ({problems[0]})" if problems else ""))
    meta = _json(run_dir / SCENARIO_FILE, problems) or {}
    plan: dict[str, Any] = dict(meta.get("scenario") or {})
    steps = [Step(str(o["name"]), bool(o["ok"]), float(o.get("seconds") or 0.0), o.get("error"))
             for o in doc.get("outcomes") or []]
    stages = _stage_runs(run_dir, doc, problems)
    failures = _failures(stages, steps, plan)
    facts_doc = _json(run_dir / "facts.json", problems)
    versions, changes = _versions(facts_doc, plan, problems)
    node_spans = _node_spans(facts_doc, problems)
    verdicts = _verdicts(run_dir / CHECKS_FILE, problems)
    budgets = {str(k): float(v) for k, v in (plan.get("budgets") or {}).items()}
    intervals, probes = read_disruption(run_dir / DISRUPTION_FILE, budgets)
    if "failed" in meta:
        failed = bool(meta["failed"])
    else:  # no verdict from pytest: judge by what the run itself shows
        failed = any(not s.ok for s in steps) or any(v.outcome in ("failed", "error") for v in verdicts) or any(
            not f.expected for f in failures)
    return RunReport(
        scenario=str(doc.get("scenario") or run_dir.name), test_id=str(doc.get("test_id") or ""), dir=run_dir,
        failed=failed, plan=plan, baseline=doc.get("baseline"), notes=tuple(mask_text(str(n)) for n in doc.get("notes") or []),
        steps=tuple(steps), stages=tuple(stages), plays=tuple(_plays(stages)), failures=tuple(failures),
        versions=tuple(versions), changes=tuple(changes), verdicts=tuple(verdicts),
        intervals=tuple(intervals), probes=tuple(probes), budgets=budgets, problems=tuple(problems),
        node_spans=tuple(node_spans),
    )


# -- rendering -------------------------------------------------------------------------------------


def _fmt_seconds(s: float) -> str:
    if s < 60:
        return f"{s:.1f} s"
    m, sec = divmod(round(s), 60)
    return f"{m} min {sec:02d} s"


def _where(f: Failure) -> str:
    hosts = ", ".join(f.hosts)
    return f"`{f.task}` on {hosts}" if f.task else f"step {f.stage}"


def md_cell(text: object) -> str:
    return str(text if text is not None else "-").replace("|", "\\|").replace("\n", " ")


def _versions_text(target: Mapping[str, Any] | None) -> str:
    if not target:
        return "-"
    parts = [f"ref {target['ref']}"] if target.get("ref") else []
    parts += [f"{k}={v}" for k, v in (target.get("versions") or {}).items()]
    return ", ".join(parts) or "-"


def render_markdown(r: RunReport, *, timeline_png: str | None = TIMELINE_PNG) -> str:
    lines = [f"# {r.scenario}: {r.status}", ""]
    head, documented = r.headline, r.documented
    if r.failed and head is not None:
        lines += [f"**Failed at {_where(head)}** (stage {head.stage}" + (f", play \"{head.play}\")" if head.play else ")"),
                  "", f"> {md_cell(head.message)}", ""]
        if head.reason:
            lines.append(f"- why: {head.reason}")
        if head.remedy:
            lines.append(f"- **remedy**: {head.remedy}")
        lines.append("")
    elif r.failed:
        lines += [("**Failed checks**: " + ", ".join(v.check for v in r.failed_checks)) if r.failed_checks
                  else "**Failed** (see the steps below)", ""]
    if documented is not None:
        lines += [f"Failed as documented at {_where(documented)} (stage {documented.stage}).", ""]
        if documented.reason:
            lines.append(f"- why: {documented.reason}")
        if documented.remedy:
            lines.append(f"- remedy: {documented.remedy}")
        lines.append("")
    if r.failed and r.failed_checks:
        lines += ["Failed checks:", ""] + [f"- **{v.check}**: {md_cell(v.message.splitlines()[0] if v.message else v.outcome)}"
                                           for v in r.failed_checks] + [""]
    p = r.plan
    plan = [f"- test id: `{r.test_id}`"]
    if p:
        plan += [f"- {p.get('description', '').strip()}" if p.get("description") else "",
                  (f"- installer: {p.get('installer', '-')}, path: {p.get('path', '-')}, tags: {', '.join(p.get('tags') or []) or '-'},"
                  f" gate: {p.get('gate', '-')}"),
                  f"- baseline: {_versions_text(p.get('baseline'))} ({r.baseline or 'not reached'})",
                  f"- target: {_versions_text(p.get('target'))}"]
        if p.get("expect_failure"):
            ef = p["expect_failure"]
            plan.append(f"- documented failure: task `{ef['task']}`" if ef.get("task") else f"- documented failure: check `{ef.get('check')}`")
    plan += [f"- `{' '.join(s.argv)}`" for s in r.stages if s.argv]
    plan += [f"- note: {n if len(n) <= 300 else n[:300] + '...'}" for n in r.notes]
    lines += ["## Plan", "", *(x for x in plan if x), ""]
    lines += ["## Time per step", "", "| step | seconds | outcome |", "| --- | ---: | --- |"]
    lines += [f"| {s.name}{' (' + r.baseline + ')' if s.name == 'baseline' and r.baseline else ''} | {s.seconds:.1f} |"
              f" {'ok' if s.ok else 'FAILED: ' + md_cell((s.error or '').splitlines()[0][:200] if s.error else '')} |"
              for s in r.steps]
    checks_total = sum(v.seconds for v in r.verdicts)
    if r.verdicts:
        lines.append(f"| checks ({plural(len(r.verdicts), 'item')}) | {checks_total:.1f} | "
                     f"{sum(v.outcome == 'passed' for v in r.verdicts)} passed |")
    lines.append("")
    if r.plays:
        lines += ["Per play:", "", "| stage | play | seconds |", "| --- | --- | ---: |"]
        lines += [f"| {p_.stage} | {md_cell(p_.play)} | {p_.seconds:.1f} |" for p_ in r.plays] + [""]
    if timeline_png:
        lines += ["## Timeline", "", f"![timeline]({timeline_png})", ""]
    if r.versions:
        lines += ["## Versions per node", "", "| node | component | before | after | target |", "| --- | --- | --- | --- | --- |"]
        lines += [f"| {v.node} | {v.component} | {md_cell(v.before)} | {'**' + md_cell(v.after) + '**' if v.changed else md_cell(v.after)}"
                  f" | {md_cell(v.target)} |" for v in r.versions] + [""]
    if r.node_spans:
        lines += ["Nodes as the API showed them while the upgrade ran:", ""]
        lines += [f"- {n.node} {n.state} {n.start:%H:%M:%S} - {n.end:%H:%M:%S} ({(n.end - n.start).total_seconds():.0f} s)"
                  for n in r.node_spans] + [""]
    if r.changes:
        lines += ["Changes seen while the upgrade ran:", ""]
        lines += [f"- {c.at:%H:%M:%S} {c.node} {c.component}: {c.old or 'absent'} -> {c.new or 'absent'}" for c in r.changes]
        lines.append("")
    lines += ["## Checks", ""]
    if r.verdicts:
        lines += ["| check | outcome | message |", "| --- | --- | --- |"]
        lines += [f"| {v.check} | {v.outcome} | {md_cell(v.message.splitlines()[0][:200] if v.message else '')} |" for v in r.verdicts]
    else:
        lines.append("No check verdicts were recorded (the report was made outside a pytest run).")
    lines += ["", "## Disruption", ""]
    if r.probes:
        lines += ["| backend | samples | failed | outage | budget |", "| --- | ---: | ---: | ---: | ---: |"]
        lines += [f"| {p_.backend} | {p_.samples} | {p_.failed} | {p_.seconds:.1f} s"
                  f" | {'-' if p_.budget is None else f'{p_.budget:g} s ({p_.budget_key})'}"
                  f"{' **over**' if p_.over_budget else ''} |" for p_ in r.probes]
        lines.append("")
    if r.intervals:
        lines += ["| backend | from | to | seconds | error |", "| --- | --- | --- | ---: | --- |"]
        lines += [f"| {i.probe} | {i.start:%H:%M:%S} | {i.end:%H:%M:%S}{' (still failing)' if i.open else ''} |"
                  f" {i.seconds:.1f} | {md_cell(i.detail)} |" for i in r.intervals]
    elif r.probes:
        lines.append("No probe failed.")
    else:
        lines.append("No disruption probes ran" + (" (no disruption.jsonl)." if not (r.dir / DISRUPTION_FILE).exists() else "."))
    if len(r.failures) > 1 or (r.failures and not r.failed and not r.failures[0].expected):
        lines += ["", "## Every failure", ""]
        lines += [f"- {f.stage}: {_where(f)}: {md_cell(f.message)[:300]}" + (f" (remedy: {f.remedy})" if f.remedy else "")
                  for f in r.failures]
    if r.problems:
        lines += ["", "## Not read", ""] + [f"- {p_}" for p_ in r.problems]
    return "\n".join(lines).rstrip() + "\n"


def template(name: str) -> Any:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("harness.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html", "j2"]), trim_blocks=True, lstrip_blocks=True)
    env.filters["secs"] = _fmt_seconds
    env.filters["where"] = _where
    env.filters["vtext"] = _versions_text
    env.filters["plural"] = plural
    return env.get_template(name)


def render_html(r: RunReport, *, svg: str | None = None) -> str:
    """One self-contained page: styles inline, the timeline as inline SVG, no external asset."""
    from markupsafe import Markup

    inline = Markup(_strip_xml_prolog(svg)) if svg else None  # matplotlib's own SVG: its text is escaped
    out: str = template("run.html.j2").render(r=r, svg=inline, generated=datetime.now(UTC))
    return out


def _strip_xml_prolog(svg: str) -> str:
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else svg


# -- writing ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Written:
    markdown: Path
    html: Path
    png: Path | None
    svg: Path | None
    seconds: dict[str, float]  # build, plot, render: where the time went


def write(run_dir: Path) -> Written:
    """report.md, report.html, timeline.png and timeline.svg in the run's dir."""
    from harness.report.timeline_plot import plot

    t0 = time.perf_counter()
    report = build(run_dir)
    t1 = time.perf_counter()
    png = svg = None
    svg_text: str | None = None
    if any(s.records for s in report.stages) or report.changes or report.intervals:
        png, svg = plot(report, run_dir / TIMELINE_PNG, run_dir / TIMELINE_SVG)
        svg_text = svg.read_text()
    t2 = time.perf_counter()
    md = run_dir / REPORT_MD
    md.write_text(render_markdown(report, timeline_png=TIMELINE_PNG if png else None))
    html = run_dir / REPORT_HTML
    html.write_text(render_html(report, svg=svg_text))
    t3 = time.perf_counter()
    return Written(md, html, png, svg, {"build": t1 - t0, "plot": t2 - t1, "render": t3 - t2})


def record_item(run_dir: Path, *, check: str, item: str, outcome: str, message: str = "", seconds: float = 0.0) -> None:
    """One check item's verdict, appended to the run's checks.jsonl (called from the pytest plugin)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    line = {"check": check, "item": item, "outcome": outcome, "message": mask_text(message)[:4000],
            "seconds": round(seconds, 3)}
    with (run_dir / CHECKS_FILE).open("a") as fh:
        fh.write(json.dumps(line) + "\n")


def item_outcome(report: Any) -> tuple[str, str] | None:
    """(outcome, message) of a pytest TestReport worth recording: the call's, or a setup error (the
    item then never ran). A skipped setup (the scenario's requirements unmet) ran nothing to report."""
    if report.when == "call" or (report.when == "setup" and report.failed):
        outcome = "error" if report.when == "setup" else str(report.outcome)
        longrepr = getattr(report, "longrepr", None)
        crash = getattr(longrepr, "reprcrash", None)
        if crash is not None:
            message = str(crash.message)
        elif isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (file, line, reason)
            message = str(longrepr[2])
        else:
            message = str(getattr(report, "longreprtext", "") or "")
        return outcome, message
    return None


def record_report(run_dir: Path, item: Any, report: Any) -> None:
    """The pytest plugin's side: a check item's verdict into its scenario's run dir, once the
    scenario's pipeline made that dir (a scenario skipped for its requirements has none)."""
    marker = item.get_closest_marker("check")
    got = item_outcome(report)
    if marker is None or not marker.args or got is None or not (run_dir / "run.json").exists():
        return
    outcome, message = got
    record_item(run_dir, check=str(marker.args[0]), item=str(item.name), outcome=outcome, message=message,
                seconds=float(getattr(report, "duration", 0.0) or 0.0))


def finish_scenario(run: ScenarioRun, *, failed: bool, archive: str = "on-failure", console: Console | None = None) -> None:
    """The end of one scenario (Session.finish): its scenario and verdict saved, its report written,
    its artifacts archived when asked. Never raises: a report that cannot be made is said, and the
    session goes on to release its clusters."""
    import traceback

    from harness.report.archive import archive_run, wanted

    say = console.print if console is not None else (lambda *_a, **_k: None)
    try:
        if not (run.dir / "run.json").exists():
            say(f"{run.scenario.id}: no run.json, no report", highlight=False)
            return
        meta = {"scenario": run.scenario.model_dump(mode="json"), "failed": failed,
                "finished": datetime.now(UTC).isoformat()}
        (run.dir / SCENARIO_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        written = write(run.dir)
        say(f"{run.scenario.id}: report {written.html}", highlight=False)
        if wanted(archive, failed=failed):
            path = archive_run(run.dir)
            say(f"{run.scenario.id}: artifacts archived in {path}", highlight=False)
    except Exception as e:  # noqa: BLE001  a report bug must not keep the session from releasing its clusters
        detail = "".join(traceback.format_exception(e)[-4:])
        say(f"[red]{run.scenario.id}: report not written[/]: {type(e).__name__}: {e}\n{detail}", highlight=False)


def run_dirs(artifacts: Path, since: float | None = None) -> list[Path]:
    """Scenario dirs under an artifacts dir (those with a run.json), optionally only runs saved since a time."""
    out = []
    for p in sorted(artifacts.glob("*/run.json")):
        if since is None or p.stat().st_mtime >= since:
            out.append(p.parent)
    return out


