"""Benchmark the run report: what `Session.finish` adds to every scenario (report.md, report.html,
timeline.png and .svg), and the failure archive.

    .venv/bin/python bench/report.py [--run ARTIFACT_DIR ...] [--hosts 10] [--tasks 800] [--repeat 3] [--no-write]

Measures, best of --repeat in this process: `build` (reading the artifact dir), `plot` (the timeline
PNG and SVG), `render` (Markdown and HTML), and the masked archive; and once, in a fresh process, the
whole report including the imports (matplotlib and Jinja2 are imported only when a report is made).
Inputs: every --run dir (a real scenario's artifacts, e.g. from the main-job test), copied to a
temporary dir first so nothing of it changes, and a generated run of --hosts nodes x --tasks tasks
each, with version samples every 20 s and disruption samples every second for every backend (a
large Kubespray run). Writes the figures into docs/benchmarks.md under `## Reports`, replacing only
that section. Needs nothing but the Python env.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from lab import DOC, replace_section  # bench/lab.py: same document, its own section

from harness.checks.disruption import Sample
from harness.probes.facts import HostFacts, PreUpgradeRecord, VersionSample, to_jsonable
from harness.report import run_report
from harness.report.archive import archive_run
from harness.upgrade.timeline import TaskRecord, write_timeline

T0 = datetime(2026, 11, 28, 6, 0, 0, tzinfo=UTC)


def generated_run(root: Path, hosts: int, tasks: int) -> Path:
    """A run dir shaped as the pipeline writes it (run.json, the upgrade's timeline.jsonl, facts.json,
    disruption.jsonl), `hosts` nodes with `tasks` tasks each in 40 plays, one node after another."""
    run = root / "generated"
    ident = "02-upgrade"
    art = run / "runner" / ident / "artifacts" / ident
    art.mkdir(parents=True)
    names = [f"node{i + 1}" for i in range(hosts)]
    records = []
    for n, host in enumerate(names):
        t = float(n * 30)
        for i in range(tasks):
            secs = 0.5 + (i * 7 % 13)
            status = ("ok", "changed", "skipped", "ok")[i % 4]
            start = T0 + timedelta(seconds=t)
            records.append(TaskRecord(host=host, play=f"play {i * 40 // tasks}: role {i * 40 // tasks}",
                                      task=f"role{i % 40} : task {i}", tags=("etcd",), start=start.isoformat(),
                                      end=(start + timedelta(seconds=secs)).isoformat(), status=status,
                                      changed=status == "changed", duration=secs))
            t += secs
    write_timeline(art / "timeline.jsonl", records)
    end = max(datetime.fromisoformat(r.end or "") for r in records)
    span = (end - T0).total_seconds()
    doc = {"scenario": "generated", "test_id": "generated:full:etcd", "baseline": "restored", "notes": [],
           "outcomes": [{"name": s, "ok": True, "seconds": 10.0, "error": None} for s in ("plan", "cluster", "baseline")]
           + [{"name": "upgrade", "ok": True, "seconds": span, "error": None}],
           "stages": [{"ident": ident, "purpose": "upgrade", "argv": ["ansible-playbook", "cluster.yml"]}],
           "results": {"upgrade": {"rc": 0, "status": "successful", "recap": {}, "artifacts": str(art)}}}
    (run / "run.json").write_text(json.dumps(doc))
    before = PreUpgradeRecord(T0, versions={h: {"etcd": "3.5.16", "containerd": "1.7.24"} for h in names})
    samples = []
    for k in range(int(span // 20)):
        at = T0 + timedelta(seconds=20 * k)
        for n, h in enumerate(names):
            moved = k * 20 > n * 30 + span / hosts / 2
            samples += [VersionSample(at, h, "etcd", "3.5.30" if moved else "3.5.16"),
                        VersionSample(at, h, "containerd", "2.1.9" if moved else "1.7.24")]
    facts = {"before": to_jsonable(before), "samples": to_jsonable(samples), "kube_before": None, "sample_errors": {},
             "facts": to_jsonable({"nodes": {h: ["etcd"] for h in names}, "hosts": [
                 HostFacts(h, ("etcd",), versions={"etcd": "3.5.30", "containerd": "2.1.9"}) for h in names]})}
    (run / "facts.json").write_text(json.dumps(facts))
    backends = [f"etcd:{h}" for h in names[:3]] + ["etcd:all"] + [f"containerd:{h}" for h in names]
    with (run / run_report.DISRUPTION_FILE).open("w") as fh:
        for s in range(int(span)):
            for b in backends:
                ok = not (b == "etcd:node2" and 300 <= s < 304) and not (b.startswith("containerd") and s % 600 < 2)
                sample = Sample((T0 + timedelta(seconds=s)).timestamp(), b, ok, 2.0, None if ok else "ReadTimeout")
                fh.write(json.dumps(dataclasses.asdict(sample)) + "\n")
    return run


def best(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure(run: Path, repeat: int) -> dict[str, float | int | str]:
    from harness.report.timeline_plot import plot

    report = run_report.build(run)
    svg = run / run_report.TIMELINE_SVG
    row: dict[str, float | int | str] = {
        "tasks": sum(len(s.records) for s in report.stages),
        "hosts": len({r.host for s in report.stages for r in s.records}),
        "build": best(lambda: run_report.build(run), repeat),
        "plot": best(lambda: plot(report, run / run_report.TIMELINE_PNG, svg), repeat),
    }
    row["render"] = best(lambda: (run_report.render_markdown(report), run_report.render_html(report, svg=svg.read_text())),
                         repeat)
    row["archive"] = best(lambda: archive_run(run, run.parent / f"{run.name}.tar.gz"), repeat)
    cold = subprocess.run([sys.executable, "-c", ("import sys, time; t = time.perf_counter();"
                           " from harness.report.run_report import write; write(__import__('pathlib').Path(sys.argv[1]));"
                           " print(time.perf_counter() - t)"), str(run)],
                          capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
    row["cold"] = float(cold.stdout.strip())
    row["png_kb"] = (run / run_report.TIMELINE_PNG).stat().st_size // 1024
    row["html_kb"] = (run / run_report.REPORT_HTML).stat().st_size // 1024
    row["archive_kb"] = (run.parent / f"{run.name}.tar.gz").stat().st_size // 1024
    row["files"] = sum(1 for p in run.rglob("*") if p.is_file())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", action="append", type=Path, default=[], help="a scenario's artifact dir (repeatable)")
    ap.add_argument("--hosts", type=int, default=10)
    ap.add_argument("--tasks", type=int, default=800)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--note", default="", help="what the --run dirs are, for the document")
    ap.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    args = ap.parse_args()
    load_before = os.getloadavg()[0]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in args.run:
            if not (src / "run.json").exists():
                ap.error(f"--run {src}: no run.json there")
            dst = Path(tmp) / src.name
            shutil.copytree(src, dst, symlinks=True)
            rows.append((src.name, measure(dst, args.repeat)))
        gen = generated_run(Path(tmp), args.hosts, args.tasks)
        rows.append((f"generated ({args.hosts} hosts x {args.tasks} tasks)", measure(gen, args.repeat)))
    load_after = os.getloadavg()[0]
    import matplotlib

    lines = [
        (f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/report.py` on {os.cpu_count()} cores (Python"
        f" {platform.python_version()}, matplotlib {matplotlib.__version__}; load average {load_before:.1f} before,"
        f" {load_after:.1f} after). Seconds, best of {args.repeat} in one process; `cold` is one whole"
        " report (build, plot, render, write) in a fresh process, imports included." + (f" {args.note}" if args.note else "")),
        "",
        "| run | hosts | tasks | files | build | plot (PNG+SVG) | render (MD+HTML) | report, cold | archive | PNG KB | HTML KB | archive KB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['hosts']} | {r['tasks']} | {r['files']} | {r['build']:.2f} | {r['plot']:.2f} |"
                     f" {r['render']:.2f} | {r['cold']:.2f} | {r['archive']:.2f} | {r['png_kb']} | {r['html_kb']} |"
                     f" {r['archive_kb']} |")
    lines += [
        "",
        ("Every scenario pays `report, cold` less the imports it already made (build, plot and render: about"
        " a second for a real lab run), next to upgrades of minutes; the archive only for a failed scenario"
        " (`--archive on-failure`). The timeline is drawn on a bare matplotlib `Figure` with fixed margins"
        " (a layout engine measured every label twice per format: a third of the plotting time), dates"
        " converted without `date2num` per task, and a host's consecutive same-status tasks under a pixel apart"
        " drawn as one bar; above 2000 bars the SVG carries them as a picture. The archive masks JSON"
        " structurally, as the runner does, and scans every member once more before adding it."),
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", "## Reports", report))


if __name__ == "__main__":
    main()
