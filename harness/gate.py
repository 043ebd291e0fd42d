"""The release gate: `harness gate --from REF --to REF`.

Plans the hops (one Kubespray minor at a time), selects the scenarios, runs their check items with
pytest (a subprocess per hop, xdist with -n), and reads back what pytest wrote: the JUnit report
(one item per check) and each scenario's artifacts (run.json, disruption.jsonl, report.html). It
writes one gate report, a row per scenario, as gate.md, gate.json and gate.xml (JUnit, one test
case per scenario) and exits by the rule:

    0  every required scenario passed (advisory ones are shown, never fatal)
    1  a required scenario failed, was skipped or did not run, or pytest itself broke off
    2  bad input: options, refs (a downgrade, the same ref twice), the catalogue, or pytest refused its arguments
    5  no scenario ran: the selection is empty, or every selected scenario was skipped

A gate never passes having run nothing: 5 is its own code and message.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest  # its exit codes only: the gate runs pytest in a subprocess
from rich.console import Console

from harness import resources
from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.plan.versions import Ref
    from harness.scenario.model import Scenario

EXIT_PASSED = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_NOTHING_RAN = 5

REPORT_JSON = "gate.json"
REPORT_MD = "gate.md"
REPORT_JUNIT = "gate.xml"
# The check items the gate runs: the harness's own scenarios/ (beside the package in a checkout).
DEFAULT_TESTS = resources.scenarios_dir()
# What a scenario's row can say.
PASSED, FAILED, SKIPPED, NOT_RUN = "passed", "failed", "skipped", "not run"


class GateError(HarnessError):
    """The gate was asked something it cannot do (bad refs, no previous report...): exit 2."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class GateRequest:
    from_ref: str
    to_ref: str
    kubespray: Path | None = None
    expr: str | None = None
    workers: int = 1
    last_failed: bool = False
    keep: str = "never"
    provider: str = "lab"
    inventory: Path | None = None
    scenario_files: tuple[Path, ...] = ()
    artifacts: Path = Path("artifacts")
    report_dir: Path | None = None  # default: the artifacts dir
    tests: Path = DEFAULT_TESTS
    pytest_args: tuple[str, ...] = ()

    @property
    def out(self) -> Path:
        return (self.report_dir or self.artifacts).resolve()


@dataclass
class Row:
    """One scenario of one hop, as the gate report shows it."""

    hop: str
    scenario: str
    test_id: str
    path: str  # the upgrade path: full, graceful, component
    gate: str  # required | advisory
    verdict: str = NOT_RUN
    seconds: float = 0.0
    disruption: str = ""
    report: str = ""  # link to its report, relative to the gate report
    detail: str = ""  # the first failure, or why it was skipped
    items: dict[str, int] = field(default_factory=dict)  # passed/failed/skipped check items
    worker: str = ""  # the xdist worker (or main) whose session ran its pipeline (run.json)
    carried: bool = False  # not rerun by --last-failed: the previous gate's row

    @property
    def blocking(self) -> bool:
        return self.gate == "required" and self.verdict != PASSED


@dataclass(frozen=True)
class GateResult:
    exit_code: int
    message: str
    rows: tuple[Row, ...]
    report_dir: Path


# -- plan and selection ------------------------------------------------------------------------


def hops(from_ref: str, to_ref: str, kubespray: Path | None) -> list[tuple[Ref, Ref]]:
    """The validated hops, as `harness plan` prints them; the same ref twice is nothing to gate."""
    from harness.plan.rules import plan_hops
    from harness.plan.versions import Ref

    src, dst = Ref.parse(from_ref), Ref.parse(to_ref)
    known = None
    if kubespray is not None:
        from harness.installer.kubespray import Kubespray

        ks = Kubespray.open(kubespray)
        known = ks.release_tags()
        a, b = ks.commit(src.text), ks.commit(dst.text)
        if a == b:
            raise GateError(f"--from {from_ref} --to {to_ref}: both are commit {a[:12]}; nothing to gate")
        src, dst = ks.placed(src, a, known), ks.placed(dst, b, known)
    plan = plan_hops(src, dst, known=known)
    if not plan.steps:
        raise GateError(f"--from {from_ref} --to {to_ref}: the same ref; nothing to gate")
    return plan.steps


def scenarios_for(req: GateRequest, src: Ref, dst: Ref) -> list[Scenario]:
    """The catalogue with this hop's refs, selected by -k like `harness scenarios -k`."""
    from harness.scenario import load_catalogue
    from harness.scenario.select import select, with_refs

    catalogue = load_catalogue(list(req.scenario_files) or None)
    return select([with_refs(s, src.text, dst.text) for s in catalogue], req.expr)


def exact_k(scenarios: Iterable[Scenario]) -> str:
    """A -k expression matching exactly these scenarios' items: `[id:path:components]` is a substring
    of their item names only (a bare `lab-etcd:...` would also match an `x-lab-etcd:...`)."""
    return " or ".join(f"[{sc.test_id}]" for sc in scenarios)


# -- running pytest --------------------------------------------------------------------------


def pytest_argv(req: GateRequest, src: Ref, dst: Ref, scenarios: Sequence[Scenario], *, junit: Path,
                artifacts: Path) -> list[str]:
    argv = [sys.executable, "-m", "pytest", str(req.tests), "-k", exact_k(scenarios), "-rs",
            "--junitxml", str(junit), "--artifacts", str(artifacts), "--from", src.text, "--to", dst.text,
            "--keep", req.keep, "--provider", req.provider]
    if req.workers > 1:
        argv += ["-n", str(req.workers)]
    if req.kubespray is not None:
        argv += ["--kubespray", str(req.kubespray)]
    if req.inventory is not None:
        argv += ["--inventory", str(req.inventory)]
    for f in req.scenario_files:
        argv += ["--scenarios", str(Path(f).resolve())]
    return [*argv, *req.pytest_args]


def run_pytest(argv: Sequence[str]) -> int:
    """pytest in the gate's process group, its output on the gate's terminal. Not harness.proc.stream:
    that kills a child's whole group on an interrupt, and pytest must get to its teardown, which
    destroys the clusters. Ctrl-C reaches pytest through the terminal's process group; SIGTERM and
    SIGHUP sent to the gate are passed on. The gate then waits for pytest to finish."""
    child = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL)

    def forward(signum: int, _frame: Any) -> None:
        child.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGHUP)}
    previous[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)  # pytest got it too: let it tear down
    try:
        return child.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


# -- reading what pytest wrote ---------------------------------------------------------------------


@dataclass(frozen=True)
class ItemResult:
    name: str
    outcome: str  # passed | failed | skipped
    seconds: float
    message: str = ""


def read_junit(path: Path) -> list[ItemResult]:
    """Every test case of pytest's JUnit report (failure and error both count as failed)."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    out = []
    for case in root.iter("testcase"):
        outcome, message = PASSED, ""
        for child in case:
            if child.tag in ("failure", "error"):
                outcome, message = FAILED, child.get("message") or (child.text or "")
                break
            if child.tag == "skipped":
                outcome, message = SKIPPED, child.get("message") or ""
        out.append(ItemResult(case.get("name", ""), outcome, float(case.get("time") or 0.0), message))
    return out


def _param(name: str) -> str:
    """`test_x[lab-etcd:component:etcd]` -> `lab-etcd:component:etcd`."""
    return name[name.find("[") + 1:-1] if name.endswith("]") and "[" in name else ""


def _first_line(text: str, limit: int = 240) -> str:
    line = next((x.strip() for x in text.splitlines() if x.strip()), "")
    return line if len(line) <= limit else line[: limit - 1] + "…"


def rows_of(hop: str, scenarios: Sequence[Scenario], items: Sequence[ItemResult], artifacts: Path,
            out: Path) -> list[Row]:
    by_param: dict[str, list[ItemResult]] = {}
    for it in items:
        by_param.setdefault(_param(it.name), []).append(it)
    rows = []
    for sc in scenarios:
        mine = by_param.get(sc.test_id, [])
        row = Row(hop=hop, scenario=sc.id, test_id=sc.test_id, path=sc.path, gate=sc.gate)
        row.items = {k: sum(1 for i in mine if i.outcome == k) for k in (PASSED, FAILED, SKIPPED)}
        row.seconds = round(sum(i.seconds for i in mine), 1)
        failed = [i for i in mine if i.outcome == FAILED]
        if failed:
            row.verdict = FAILED
            row.detail = f"{failed[0].name.split('[')[0]}: {_first_line(failed[0].message)}"
        elif mine and all(i.outcome == SKIPPED for i in mine):
            row.verdict, row.detail = SKIPPED, _first_line(mine[0].message)
        elif mine:
            row.verdict = PASSED
        else:
            row.detail = "no check item of this scenario reported (see pytest's output)"
        run_dir = artifacts / sc.id
        row.worker = _worker(run_dir)
        row.disruption = disruption_summary(run_dir / "disruption.jsonl", sc.budgets)
        row.report = _link(run_dir, out)
        rows.append(row)
    return rows


def _worker(run_dir: Path) -> str:
    try:
        return str(json.loads((run_dir / "run.json").read_text()).get("worker") or "")
    except (OSError, ValueError, AttributeError):
        return ""


def _link(run_dir: Path, out: Path) -> str:
    """The scenario's report (report.html, else report.md, else run.json), relative to the gate report."""
    for name in ("report.html", "report.md", "run.json"):
        p = run_dir / name
        if p.exists():
            return os.path.relpath(p, out)
    return ""


def disruption_summary(samples: Path, budgets: Mapping[str, float]) -> str:
    """The worst-hit probed backend of a scenario: `etcd:node2 4.1 s (budget 10 s)`, `over budget` when
    so; `none` when every probe stayed up; empty without probes."""
    if not samples.exists():
        return ""
    from harness.checks.disruption import budget_for, read_samples, summarize

    measured = summarize(read_samples(samples))
    if not measured:
        return ""
    worst = max(measured.values(), key=lambda d: d.seconds)
    over = sorted(b for b, d in measured.items() if (bud := budget_for(b, budgets)) is not None and d.seconds > bud[1])
    if worst.seconds <= 0:
        return "none"
    budget = budget_for(worst.backend, budgets)
    text = f"{worst.backend} {worst.seconds:.1f} s" + (f" (budget {budget[1]:g} s)" if budget else "")
    return text + (f"; over budget: {', '.join(over)}" if over else "")


# -- the verdict ----------------------------------------------------------------------------------


def verdict(rows: Sequence[Row], pytest_rcs: Sequence[int]) -> tuple[int, str]:
    if any(rc == pytest.ExitCode.USAGE_ERROR for rc in pytest_rcs):
        return EXIT_USAGE, "pytest refused its arguments (its message is above)"
    ran = [r for r in rows if r.verdict in (PASSED, FAILED)]
    if not ran:
        skipped = [r for r in rows if r.verdict == SKIPPED]
        why = (f"all {len(skipped)} selected scenario(s) were skipped, e.g. {skipped[0].scenario}: {skipped[0].detail}"
               if skipped and len(skipped) == len(rows) else "no selected scenario reported a result")
        broke = [rc for rc in pytest_rcs if rc not in (0, 1, 5)]
        return EXIT_NOTHING_RAN, f"no scenario ran: {why}" + (f" (pytest exit code {broke[0]})" if broke else "")
    blocking = [r for r in rows if r.blocking]
    if blocking:
        names = ", ".join(f"{r.scenario} ({r.verdict})" for r in blocking)
        return EXIT_FAILED, f"{len(blocking)} required scenario(s) did not pass: {names}"
    broke = [rc for rc in pytest_rcs if rc not in (0, 1, 5)]
    if broke:
        return EXIT_FAILED, f"pytest broke off (exit code {broke[0]}): the results are incomplete"
    advisory = [r for r in rows if r.gate == "advisory" and r.verdict != PASSED]
    note = f"; advisory not passed: {', '.join(r.scenario for r in advisory)}" if advisory else ""
    return EXIT_PASSED, f"every required scenario passed ({sum(1 for r in rows if r.gate == 'required')}){note}"


# -- the reports ----------------------------------------------------------------------------------


def write_reports(out: Path, meta: Mapping[str, Any], rows: Sequence[Row]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    doc = {**meta, "rows": [asdict(r) for r in rows]}
    (out / REPORT_JSON).write_text(json.dumps(doc, indent=2) + "\n")
    (out / REPORT_MD).write_text(render_markdown(meta, rows))
    _write_junit(out / REPORT_JUNIT, rows)


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def render_markdown(meta: Mapping[str, Any], rows: Sequence[Row]) -> str:
    status = "PASSED" if meta["exit_code"] == EXIT_PASSED else "FAILED"
    lines = [
        f"# Release gate {meta['from']} -> {meta['to']}: {status}",
        "",
        f"{meta['message']}.",
        "",
        f"Hops: {', '.join(meta['hops'])}. Selection: `-k {meta['expr']}`." if meta.get("expr")
        else f"Hops: {', '.join(meta['hops'])}. Selection: every scenario of the catalogue.",
        f"Exit code {meta['exit_code']}; JUnit: `{REPORT_JUNIT}` (one case per scenario)"
        + (f" and pytest's {', '.join(f'`{j}`' for j in meta['junit'])} (one per check item)." if meta["junit"] else "."),
        "",
    ]
    multi = len(meta["hops"]) > 1
    head = (["hop"] if multi else []) + ["scenario", "path", "gate", "verdict", "duration", "disruption", "report"]
    lines += ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in rows:
        verdict_text = r.verdict.upper() if r.blocking else r.verdict
        cells = ([r.hop] if multi else []) + [
            f"`{r.scenario}`", r.path, r.gate, verdict_text + (" (previous run)" if r.carried else ""),
            f"{r.seconds:.0f} s" if r.verdict != NOT_RUN else "", r.disruption,
            f"[report]({r.report})" if r.report else "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    details = [r for r in rows if r.detail and r.verdict != PASSED]
    if details:
        lines += ["", "## Why", ""]
        lines += [f"- `{r.scenario}` ({r.gate}, {r.verdict}): {r.detail}" for r in details]
    return "\n".join(lines) + "\n"


def _write_junit(path: Path, rows: Sequence[Row]) -> None:
    """One test case per scenario. An advisory scenario that did not pass is a skip saying so: it is
    shown, never fatal, and CI tools fail a build on any JUnit failure."""
    suite = ET.Element("testsuite", name="harness-gate", tests=str(len(rows)),
                       failures=str(sum(1 for r in rows if r.blocking)),
                       skipped=str(sum(1 for r in rows if not r.blocking and r.verdict != PASSED)))
    multi = len({r.hop for r in rows}) > 1
    for r in rows:
        name = r.scenario if not multi else f"{r.scenario} ({r.hop})"
        case = ET.SubElement(suite, "testcase", classname="harness-gate", name=name, time=f"{r.seconds:.1f}")
        if r.blocking:
            ET.SubElement(case, "failure", message=f"{r.verdict}: {r.detail}")
        elif r.verdict != PASSED:
            ET.SubElement(case, "skipped", message=f"{r.gate} scenario {r.verdict} (not fatal): {r.detail}")
        if r.report:
            ET.SubElement(case, "system-out").text = f"report: {r.report}"
    root = ET.Element("testsuites")
    root.append(suite)
    tree = ET.ElementTree(root)
    ET.indent(tree)
    tree.write(path, encoding="utf-8", xml_declaration=True)


# -- the whole gate ------------------------------------------------------------------------------


def _hop_label(src: Ref, dst: Ref) -> str:
    return f"{src.text}->{dst.text}"


def _previous(req: GateRequest) -> dict[str, Any]:
    path = req.out / REPORT_JSON
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise GateError(f"--last-failed: no previous gate report at {path}; run the gate without it first") from None
    except (OSError, ValueError) as e:
        raise GateError(f"--last-failed: cannot read the previous gate report {path}: {e}") from None
    if (doc.get("from"), doc.get("to")) != (req.from_ref, req.to_ref):
        raise GateError(f"--last-failed: the previous gate report {path} is for --from {doc.get('from')} --to"
                        f" {doc.get('to')}, not --from {req.from_ref} --to {req.to_ref}")
    return dict(doc)


def run_gate(req: GateRequest, console: Console | None = None) -> GateResult:
    console = console or Console(stderr=True)
    if req.workers < 1:
        raise GateError(f"-n {req.workers}: give a number of workers of 1 or more")
    if not req.tests.exists():
        raise GateError(f"--tests {req.tests}: no such file or folder (the check items pytest runs)")
    steps = hops(req.from_ref, req.to_ref, req.kubespray)
    out = req.out
    previous = _previous(req) if req.last_failed else None
    carried: list[Row] = []
    rerun: set[tuple[str, str]] = set()
    if previous is not None:
        rerun = {(r["hop"], r["scenario"]) for r in previous["rows"] if r["verdict"] in (FAILED, NOT_RUN)}
        carried = [replace(Row(**r), carried=True) for r in previous["rows"] if (r["hop"], r["scenario"]) not in rerun]
        if not rerun:
            return _finish(req, steps, carried, [], EXIT_NOTHING_RAN,
                           f"--last-failed: the previous gate ({out / REPORT_JSON}) had no failed scenario; nothing to rerun")
    started = datetime.now(UTC)
    rows: list[Row] = []
    rcs: list[int] = []
    junits: list[str] = []
    for i, (src, dst) in enumerate(steps, 1):
        label = _hop_label(src, dst)
        chosen = scenarios_for(req, src, dst)
        if previous is not None:
            chosen = [sc for sc in chosen if (label, sc.id) in rerun]
        if i > 1:
            # --from/--to move only Kubespray's refs: any other scenario is the same in every hop, run once.
            chosen = [sc for sc in chosen if sc.installer == "kubespray"]
        if not chosen:
            continue
        artifacts = req.artifacts.resolve() / (f"hop{i}-{src.text}-{dst.text}" if len(steps) > 1 else "")
        junit = out / (f"junit-hop{i}.xml" if len(steps) > 1 else "junit.xml")
        junit.parent.mkdir(parents=True, exist_ok=True)
        junit.unlink(missing_ok=True)  # a stale report must not stand in for a run that wrote none
        console.print(f"[bold]gate[/] {label}: {len(chosen)} scenario(s): {', '.join(sc.id for sc in chosen)}",
                      highlight=False)
        t0 = time.monotonic()
        rc = run_pytest(pytest_argv(req, src, dst, chosen, junit=junit, artifacts=artifacts))
        console.print(f"[bold]gate[/] {label}: pytest exit code {rc} after {time.monotonic() - t0:.0f} s", highlight=False)
        rcs.append(rc)
        junits.append(os.path.relpath(junit, out))
        rows += rows_of(label, chosen, read_junit(junit), artifacts, out)
    if not rows and not carried:
        what = f"-k {req.expr!r} selects no scenario of the catalogue" if req.expr else "the catalogue has no scenario"
        return _finish(req, steps, [], junits, EXIT_NOTHING_RAN, f"no scenario ran: {what}", started)
    code, message = verdict(carried + rows, rcs) if rows else (EXIT_NOTHING_RAN, "no scenario ran")
    if code == EXIT_NOTHING_RAN and carried:
        message += " (the rows of the previous run are kept in the report)"
    return _finish(req, steps, _ordered(carried + rows, previous), junits, code, message, started)


def _ordered(rows: list[Row], previous: Mapping[str, Any] | None) -> list[Row]:
    """With --last-failed, rows in the previous report's order."""
    if previous is None:
        return rows
    order = {(r["hop"], r["scenario"]): i for i, r in enumerate(previous["rows"])}
    return sorted(rows, key=lambda r: order.get((r.hop, r.scenario), len(order)))


def _finish(req: GateRequest, steps: Sequence[tuple[Ref, Ref]], rows: list[Row], junits: list[str], code: int,
            message: str, started: datetime | None = None) -> GateResult:
    meta = {
        "from": req.from_ref, "to": req.to_ref, "hops": [_hop_label(a, b) for a, b in steps], "expr": req.expr,
        "workers": req.workers, "provider": req.provider, "last_failed": req.last_failed,
        "started": (started or datetime.now(UTC)).isoformat(), "finished": datetime.now(UTC).isoformat(),
        "exit_code": code, "message": message, "junit": junits,
    }
    write_reports(req.out, meta, rows)
    return GateResult(code, message, tuple(rows), req.out)
