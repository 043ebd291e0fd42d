"""Benchmark K lab paths off one baseline: the snapshot cache against a deploy per path, in one run.

    .venv/bin/python bench/matrix.py                   # runs both modes (about an hour), then reports
    .venv/bin/python bench/matrix.py --artifacts DIR   # reports again from a run already made (DIR/matrix.json)

1. snapshot: one pytest session selecting exactly the K scenarios (the gate's `[id:path:components]`
   -k): one lab bring-up, one baseline deploy, every other scenario restores the snapshot.
2. deploy per path: each scenario in its own session on a fresh lab (the default lab is removed
   first, `--keep never`), so each pays bring-up and deploy.

Reads each scenario's `run.json` (the pipeline records every step's seconds) and writes under
`## Matrix` in docs/benchmarks.md, replacing only that section: (2)/(1), each scenario's baseline
step, and each session's wall time against the sum of its installer playbooks' times (baseline
deploy, upgrade, idempotence), the rest being the harness's overhead. A failed session writes
nothing and exits non-zero. Needs root and the lab; run it under `flock /tmp/harness-lab.lock`.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from lab import DOC, replace_section  # bench/lab.py: same document, its own section

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SCENARIOS = ("lab-etcd", "lab-container-engine", "lab-graceful-etcd")
LAB_NAME = "pytest-main"  # the lab a pytest session without xdist brings up (harness/cluster/providers.py)
# The installer's playbooks in a run.json; a deployed baseline's step is its playbook plus the snapshot.
PLAYBOOK_STEPS = ("upgrade", "idempotence")
# The harness's own steps (bench/scenarios.py's list); bring-up ("cluster") is counted apart.
OWN_STEPS = ("plan", "before", "plant", "collect", "after")


@dataclass(frozen=True)
class Session:
    mode: str  # "snapshot" or "deploy"
    scenarios: tuple[str, ...]
    artifacts: Path
    wall: float
    rc: int

    def runs(self) -> list[dict[str, Any]]:
        """run.json of each scenario, in the order they ran (each is rewritten after every step)."""
        files = sorted(self.artifacts.glob("*/run.json"), key=lambda p: p.stat().st_mtime)
        return [json.loads(p.read_text()) for p in files]


def _seconds(run: dict[str, Any]) -> dict[str, float]:
    return {o["name"]: float(o["seconds"]) for o in run["outcomes"]}


def _playbooks(run: dict[str, Any]) -> float:
    s = _seconds(run)
    deployed = s.get("baseline", 0.0) if str(run["baseline"]).startswith("deployed") else 0.0
    return deployed + sum(s.get(step, 0.0) for step in PLAYBOOK_STEPS)


# -- running ----------------------------------------------------------------------------------------


def exact_selection(ids: tuple[str, ...]) -> tuple[str, dict[str, str]]:
    """The gate's -k for these scenario ids, and id -> test id. An unknown id is an error naming it."""
    from harness.gate import exact_k
    from harness.scenario import load_catalogue

    catalogue = {sc.id: sc for sc in load_catalogue()}
    unknown = [i for i in ids if i not in catalogue]
    if unknown:
        raise SystemExit(f"bench/matrix.py: no scenario {', '.join(unknown)} in scenarios/ (known: {', '.join(sorted(catalogue))})")
    chosen = [catalogue[i] for i in ids]
    return exact_k(chosen), {sc.id: sc.test_id for sc in chosen}


def check_collects_exactly(k: str, test_ids: set[str]) -> None:
    """pytest's own collection under this -k names exactly these scenarios, before an hour is spent."""
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", k],
        cwd=REPO, capture_output=True, text=True, check=False,
    ).stdout
    got = {line.rsplit("[", 1)[1].rstrip("]") for line in out.splitlines() if line.startswith("scenarios/") and "[" in line}
    if got != test_ids:
        raise SystemExit(f"bench/matrix.py: -k {k!r} collects {sorted(got)}, not {sorted(test_ids)}")


def run_session(mode: str, ids: tuple[str, ...], k: str, artifacts: Path) -> Session:
    from harness.cluster.lab.provider import LabProvider
    from harness.gate import run_pytest  # streams pytest's output, passes SIGTERM on so it tears down

    # No kept lab and no cached snapshot: the session brings its own lab up and deploys.
    if LabProvider(LAB_NAME).down():
        print(f"bench/matrix.py: removed a lab {LAB_NAME} left from before", flush=True)
    print(f"\n==> bench/matrix.py: {mode}: {' '.join(ids)}", flush=True)
    start = time.monotonic()
    rc = run_pytest([sys.executable, "-m", "pytest", "scenarios/", "-k", k, "-p", "no:cacheprovider", "-rs",
                     "--keep", "never", "--artifacts", str(artifacts)])
    return Session(mode, ids, artifacts, time.monotonic() - start, rc)


def check_session(s: Session) -> None:
    """A session counts only when it passed and did what its mode says: one deploy, the rest restored."""
    if s.rc != 0:
        raise SystemExit(f"bench/matrix.py: the {s.mode} session of {' '.join(s.scenarios)} failed (pytest exit {s.rc}):"
                         " figures not written")
    runs = s.runs()
    got = sorted(r["scenario"] for r in runs)
    if got != sorted(s.scenarios):
        raise SystemExit(f"bench/matrix.py: {s.artifacts} holds run.json of {got}, expected {sorted(s.scenarios)}")
    baselines = [str(r["baseline"]) for r in runs]
    if baselines[0] != "deployed" or any(b != "restored" for b in baselines[1:]):
        raise SystemExit(f"bench/matrix.py: {s.mode} session's baselines were {baselines}: expected one deploy, then restores")


# -- reporting --------------------------------------------------------------------------------------


def report(sessions: list[Session], meta: dict[str, Any]) -> list[str]:
    snap = [s for s in sessions if s.mode == "snapshot"]
    deploy = [s for s in sessions if s.mode == "deploy"]
    if len(snap) != 1 or not deploy:
        raise SystemExit("bench/matrix.py: need one snapshot session and the deploy sessions to report")
    snap_wall, deploy_wall = snap[0].wall, sum(s.wall for s in deploy)
    k = len(snap[0].scenarios)

    by_mode: dict[str, dict[str, dict[str, Any]]] = {"snapshot": {}, "deploy": {}}
    for s in sessions:
        for r in s.runs():
            by_mode[s.mode][r["scenario"]] = r
    per_scenario = ["| scenario | (1) baseline was | baseline (s) | upgrade (s) | idempotence (s) | (2) baseline was | baseline (s) | upgrade (s) | idempotence (s) |",
                    "| --- | --- | ---: | ---: | ---: | --- | ---: | ---: | ---: |"]
    for sid in snap[0].scenarios:
        cells = []
        for mode in ("snapshot", "deploy"):
            r = by_mode[mode][sid]
            sec = _seconds(r)
            cells += [str(r["baseline"]), f"{sec.get('baseline', 0):.0f}", f"{sec.get('upgrade', 0):.0f}",
                      f"{sec.get('idempotence', 0):.0f}"]
        per_scenario.append(f"| {sid} | " + " | ".join(cells) + " |")

    overhead = [("| session | wall (s) | installer playbooks (s) | wall / playbooks | overhead (s) | of which bring-up |"
                " restores | harness steps | outside the steps |"),
                "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    totals: dict[str, list[float]] = {"snapshot": [0.0, 0.0], "deploy": [0.0, 0.0]}
    for s in sessions:
        runs = s.runs()
        play = sum(_playbooks(r) for r in runs)
        steps = [_seconds(r) for r in runs]
        bringup = sum(x.get("cluster", 0.0) for x in steps)
        restores = sum(x.get("baseline", 0.0) for x, r in zip(steps, runs, strict=True) if r["baseline"] == "restored")
        own = sum(x.get(o, 0.0) for x in steps for o in OWN_STEPS)
        outside = s.wall - sum(sum(x.values()) for x in steps)  # pytest start, collection, checks, lab down
        totals[s.mode][0] += s.wall
        totals[s.mode][1] += play
        name = f"snapshot ({k} scenarios)" if s.mode == "snapshot" else f"deploy: {s.scenarios[0]}"
        overhead.append(f"| {name} | {s.wall:.0f} | {play:.0f} | {s.wall / play:.2f} | {s.wall - play:.0f} | {bringup:.0f} |"
                        f" {restores:.0f} | {own:.0f} | {outside:.0f} |")
    for mode, (wall, play) in totals.items():
        label = "**snapshot, total**" if mode == "snapshot" else f"**deploy per path, total ({len(deploy)} sessions)**"
        overhead.append(f"| {label} | {wall:.0f} | {play:.0f} | {wall / play:.2f} | {wall - play:.0f} | | | | |")

    deploy_share = 100 * (totals["deploy"][0] - totals["deploy"][1]) / totals["deploy"][0]
    snap_share = 100 * (totals["snapshot"][0] - totals["snapshot"][1]) / totals["snapshot"][0]
    cores, before, after = meta["cores"], meta["load_before"], meta["load_after"]
    return [
        f"Measured {meta['date']} by `bench/matrix.py` on {cores} cores ({meta['source']}); load average"
        f" {before:.1f} before, {after:.1f} after" + (f"; other labs running meanwhile: {', '.join(meta['others'])}." if meta["others"] else "."),
        f"The same {k} lab paths ({', '.join(f'`{i}`' for i in snap[0].scenarios)}) off one baseline, in one run:",
        ("(1) one session, one bring-up and one baseline deploy, the other paths restoring its snapshot;"
        " (2) each path in its own session on a fresh lab (bring-up and deploy each)."),
        "",
        (f"(1) took **{snap_wall / 60:.1f} min**, (2) **{deploy_wall / 60:.1f} min**: the snapshot cache makes the"
        f" {k} paths **{deploy_wall / snap_wall:.2f} x** faster ((2)/(1))."),
        "",
        "Seconds per scenario (a deployed baseline's step includes taking its snapshot):",
        "",
        *per_scenario,
        "",
        "Each session's wall time against the sum of its installer playbooks' times (a deployed baseline,",
        "upgrade, idempotence, as run.json records each step); the rest is the harness's overhead:",
        "bring-up, restores, its own steps (plan, before, plant, collect, after) and what is outside",
        "every step (pytest's start and collection, the check items, the lab's teardown):",
        "",
        *overhead,
        "",
        (f"Overhead is {snap_share:.0f} % of the snapshot session's wall time and {deploy_share:.0f} % of the"
        " deploy-per-path sessions' (bring-up counted as overhead in both)."),
    ]


def _load_sessions(root: Path) -> tuple[list[Session], dict[str, Any]]:
    try:
        doc = json.loads((root / "matrix.json").read_text())
    except (OSError, ValueError) as e:
        raise SystemExit(f"bench/matrix.py: cannot read {root / 'matrix.json'}: {e}") from e
    sessions = [Session(s["mode"], tuple(s["scenarios"]), Path(s["artifacts"]), float(s["wall"]), int(s["rc"]))
                for s in doc["sessions"]]
    return sessions, doc["meta"]


def _save(root: Path, sessions: list[Session], meta: dict[str, Any]) -> None:
    doc = {"meta": meta, "sessions": [{"mode": s.mode, "scenarios": list(s.scenarios), "artifacts": str(s.artifacts),
                                       "wall": s.wall, "rc": s.rc} for s in sessions]}
    (root / "matrix.json").write_text(json.dumps(doc, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--artifacts", type=Path, help="report again from this dir's matrix.json instead of running")
    ap.add_argument("--scenario", action="append", dest="scenarios", metavar="ID",
                    help=f"a lab scenario off the common baseline (repeatable, K >= 3; default: {' '.join(DEFAULT_SCENARIOS)})")
    ap.add_argument("--out", type=Path, default=REPO / "artifacts" / "bench-matrix", help="where the sessions' artifacts go")
    args = ap.parse_args()

    sessions: list[Session] = []
    meta: dict[str, Any] = {}
    if args.artifacts is not None:
        sessions, meta = _load_sessions(args.artifacts)
        for s in sessions:
            check_session(s)
    else:
        ids = tuple(args.scenarios or DEFAULT_SCENARIOS)
        if len(ids) < 3 or len(set(ids)) != len(ids):
            raise SystemExit(f"bench/matrix.py: need at least 3 distinct scenarios, got {' '.join(ids)}")
        k, test_ids = exact_selection(ids)
        check_collects_exactly(k, set(test_ids.values()))
        if args.out.exists():
            shutil.rmtree(args.out)  # run.json are ordered by mtime: nothing from an older run may stay
        args.out.mkdir(parents=True)
        meta = {"date": f"{datetime.now(UTC):%Y-%m-%d}", "cores": os.cpu_count(),
                                "load_before": os.getloadavg()[0], "source": "both modes in one invocation"}
        plan = [("snapshot", ids, k, args.out / "snapshot")]
        plan += [("deploy", (i,), f"[{test_ids[i]}]", args.out / f"deploy-{i}") for i in ids]
        for mode, chosen, sel, where in plan:
            s = run_session(mode, chosen, sel, where)
            sessions.append(s)
            _save(args.out, sessions, meta)  # what was measured survives a later failure or a stop
            print(f"==> bench/matrix.py: {mode} {' '.join(chosen)}: {s.wall:.0f} s, pytest exit {s.rc}", flush=True)
            check_session(s)
        meta["load_after"] = os.getloadavg()[0]
        meta["others"] = sorted(p.name for p in Path("/run/netns").glob("ksh-*"))
        _save(args.out, sessions, meta)

    lines = report(sessions, meta)
    DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", "## Matrix", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
