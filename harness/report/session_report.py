"""The session's report: one row per scenario run in the session (verdict, failing task and host,
time per part, link to its own report), as `<artifacts>/session.md` and `<artifacts>/session.html`.
Written by the pytest plugin when the session ends (on xdist's controller: every worker's scenarios
are in the one artifacts dir)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness.report.run_report import REPORT_HTML, REPORT_MD, ReportError, RunReport, build, md_cell, run_dirs, template
from harness.text import plural

SESSION_MD = "session.md"
SESSION_HTML = "session.html"


@dataclass(frozen=True)
class Row:
    scenario: str
    status: str  # passed | FAILED | unreadable
    where: str  # the headline failure, or the documented one hit, or ""
    seconds: float  # every step
    upgrade_seconds: float
    checks: str  # "9 passed, 1 failed"
    link: str  # relative to the artifacts dir

    @classmethod
    def of(cls, r: RunReport) -> Row:
        head = r.headline or r.documented
        where = ""
        if head is not None:
            where = (f"{head.task} on {', '.join(head.hosts)}" if head.task else f"step {head.stage}") + (
                " (documented)" if head.expected else "")
        if r.failed and r.failed_checks and (head is None or head.expected):
            where = "; ".join(x for x in (where, "checks: " + ", ".join(v.check for v in r.failed_checks)) if x)
        counts: dict[str, int] = {}
        for v in r.verdicts:
            counts[v.outcome] = counts.get(v.outcome, 0) + 1
        return cls(r.scenario, r.status, where, sum(s.seconds for s in r.steps),
                   sum(s.seconds for s in r.steps if s.name == "upgrade"),
                   ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "-", f"{r.dir.name}/{REPORT_HTML}")


def rows(artifacts: Path, since: float | None = None) -> list[Row]:
    out = []
    for d in run_dirs(artifacts, since):
        try:
            out.append(Row.of(build(d)))
        except ReportError as e:
            out.append(Row(d.name, "unreadable", str(e), 0.0, 0.0, "-", f"{d.name}/{REPORT_HTML}"))
    return out


def render_markdown(table: list[Row]) -> str:
    failed = [r for r in table if r.status != "passed"]
    lines = [f"# Session: {len(table) - len(failed)} of {plural(len(table), 'scenario')} passed", ""]
    lines += ["| scenario | verdict | where | total | upgrade | checks | report |",
              "| --- | --- | --- | ---: | ---: | --- | --- |"]
    lines += [f"| {r.scenario} | {'**' + r.status + '**' if r.status != 'passed' else r.status} | {md_cell(r.where) or '-'} |"
              f" {r.seconds:.0f} s | {r.upgrade_seconds:.0f} s | {r.checks} | [{REPORT_MD}]({r.link.rsplit('/', 1)[0]}/{REPORT_MD}) |"
              for r in table]
    return "\n".join(lines) + "\n"


def render_html(table: list[Row]) -> str:
    out: str = template("session.html.j2").render(rows=table, generated=datetime.now(UTC))
    return out


def write_session_report(artifacts: Path, since: float | None = None) -> Path | None:
    """session.md and session.html over the scenarios run since `since`; None when there were none."""
    table = rows(artifacts, since)
    if not table:
        return None
    (artifacts / SESSION_MD).write_text(render_markdown(table))
    html = artifacts / SESSION_HTML
    html.write_text(render_html(table))
    return html
