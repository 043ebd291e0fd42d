"""Benchmark the main job: where the time of `pytest scenarios/ -k etcd` on the lab goes.

    .venv/bin/python bench/scenarios.py                      # runs the main job, then reports
    .venv/bin/python bench/scenarios.py --artifacts DIR      # reports on a run already made

Reads each scenario's `run.json` (the pipeline records every step's seconds as it goes) and writes
the figures into docs/benchmarks.md under `## Main job`, replacing only that section. The ratio
that matters is a restored baseline against a deployed one: every scenario after the first pays
the restore, not the deploy. Needs root and the lab, like the main job.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from lab import DOC, replace_section  # bench/lab.py: same document, its own section

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, help="report on this artifacts dir instead of running the job")
    ap.add_argument("-k", default="etcd", help="the scenarios to run (default: etcd, the README's main job)")
    ap.add_argument("--source", default="a run made before", help="with --artifacts: which run that was, for the record")
    ap.add_argument("--section", default="## Main job", help="the docs/benchmarks.md section to write (replaced whole)")
    args = ap.parse_args()

    wall = None
    artifacts = args.artifacts
    if artifacts is None:
        artifacts = REPO / "artifacts" / "bench"
        start = time.monotonic()
        rc = subprocess.run(
            [sys.executable, "-m", "pytest", "scenarios/", "-k", args.k, "-p", "no:cacheprovider", "-q",
             "--artifacts", str(artifacts)],
            cwd=REPO, check=False,
        ).returncode
        wall = time.monotonic() - start
        if rc != 0:
            raise SystemExit(f"the main job failed (exit {rc}): figures not written")

    # In the order they ran: run.json is rewritten after every step, last at the scenario's end.
    paths = sorted(artifacts.glob("*/run.json"), key=lambda p: p.stat().st_mtime)
    runs = [json.loads(p.read_text()) for p in paths]
    dirs = {r["scenario"]: p.parent for r, p in zip(runs, paths)}
    if not runs:
        raise SystemExit(f"no run.json under {artifacts}")
    steps: list[str] = []
    for r in runs:
        steps += [o["name"] for o in r["outcomes"] if o["name"] not in steps]
    rows = [f"| {r['scenario']} | {r['baseline']} | " + " | ".join(
        next((f"{o['seconds']:.0f}" for o in r["outcomes"] if o["name"] == s), "-") for s in steps) + " |"
        for r in runs]
    deployed = [o["seconds"] for r in runs if r["baseline"] == "deployed" for o in r["outcomes"] if o["name"] == "baseline"]
    restored = [o["seconds"] for r in runs if r["baseline"] == "restored" for o in r["outcomes"] if o["name"] == "baseline"]
    ratio = ""
    if deployed and restored:
        mean = sum(restored) / len(restored)
        ratio = (f"A restored baseline took {mean:.0f} s against {deployed[0]:.0f} s to deploy it: "
                 f"**{deployed[0] / mean:.0f} x** less per scenario after the first.")
    own_rows = [_own_cost(r, dirs[r["scenario"]]) for r in runs]
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/scenarios.py` on {os.cpu_count()} cores"
        + (f"; the whole job took {wall / 60:.1f} min" if wall else
           f" from the artifacts of {args.source}")
        + ". Seconds per pipeline step, every scenario on the same lab in one run:",
        "",
        "| scenario | baseline was | " + " | ".join(steps) + " |",
        "| --- | --- | " + " | ".join("---:" for _ in steps) + " |",
        *rows,
        "",
        ratio,
        "",
        "The harness's own cost: every step that is not an installer's playbook (plan, a restore,",
        "before, plant, collect, after, and the upgrade step's time around its playbook: the disruption",
        "prober's and sampler's set-up and stop, the etcd credentials' fetch) against the upgrade playbook's",
        "own run, ansible-playbook's process from its start to its exit (issue 11's goal: at most 10 %):",
        "",
        "| scenario | restore | before | plant | after | plan, collect | around the playbook | harness's own (s) | upgrade playbook (s) | own / upgrade |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        *own_rows,
    ]
    DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", args.section, "\n".join(lines)))
    print("\n".join(lines))


# Steps of the harness itself; a deployed baseline, the cluster's bring-up and the installer's own
# playbook runs (upgrade, idempotence) are not.
OWN_STEPS = ("plan", "before", "plant", "collect", "after")


def playbook_seconds(run_dir: Path, run: dict, purpose: str = "upgrade") -> float | None:
    """The installer's playbook alone: ansible-playbook's process as ansible-runner ran it, from its
    start (Python, the playbook's parse) to its exit (run.json's `results`). For a run recorded before
    that was kept: its first event (playbook_on_start) to its recap, from the job events, which leaves
    out the start. None when neither was kept."""
    kept = (run.get("results", {}).get(purpose) or {}).get("seconds")
    if kept is not None:
        return float(kept)
    ident = next((s["ident"] for s in run.get("stages", []) if s.get("purpose") == purpose), None)
    if ident is None:
        return None
    events = run_dir / "runner" / ident / "artifacts" / ident / "job_events"
    at: dict[str, datetime] = {}
    for path in events.glob("*.json"):
        try:
            event = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if event.get("event") in ("playbook_on_start", "playbook_on_stats") and event.get("created"):
            at[event["event"]] = datetime.fromisoformat(event["created"])
    if len(at) < 2:
        return None
    return (at["playbook_on_stats"] - at["playbook_on_start"]).total_seconds()


def _own_cost(run: dict, run_dir: Path) -> str:
    """A row: the harness's steps, and what the upgrade step spent around its playbook (the disruption
    prober's and sampler's set-up and stop, the etcd credentials' fetch), counted as the harness's too;
    the denominator is the playbook alone."""
    seconds = {o["name"]: o["seconds"] for o in run["outcomes"]}
    restore = seconds.get("baseline", 0.0) if run["baseline"] == "restored" else 0.0
    step = seconds.get("upgrade")
    playbook = playbook_seconds(run_dir, run)
    around = max(0.0, step - playbook) if step is not None and playbook is not None else None
    own = restore + sum(seconds.get(s, 0.0) for s in OWN_STEPS) + (around or 0.0)
    parts = [restore, *(seconds.get(s, 0.0) for s in ("before", "plant", "after")),
             seconds.get("plan", 0.0) + seconds.get("collect", 0.0)]
    upgrade = playbook if playbook is not None else step
    share = f"{100 * own / upgrade:.0f} %" if upgrade else "-"
    return (f"| {run['scenario']} | " + " | ".join(f"{x:.0f}" for x in parts)
            + f" | {f'{around:.0f}' if around is not None else 'not kept'} | {own:.0f}"
            + f" | {f'{upgrade:.0f}' if upgrade else '-'}{'' if playbook is not None else ' (step)'} | {share} |")


if __name__ == "__main__":
    main()
