"""Benchmark the lab's two node backends on the same scenarios, in one run: LXC system containers
against QEMU VMs under software emulation.

    .venv/bin/python bench/backends.py [-k "lab-etcd or lab-container-engine or lab-graceful"]

Runs `pytest scenarios/ -k K --lab-backend B` for B = lxc, then qemu, each on a lab of its own brought
up from nothing (a cached rootfs or box), and writes into docs/benchmarks.md under `## Lab backends`
(only that section replaced): per scenario and backend the bring-up, the baseline deploy or restore,
the upgrade playbook and the harness's own steps, and the ratio qemu / lxc of each. Needs root and the
lab (`harness lab setup`).
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

from scenarios import OWN_STEPS, playbook_seconds

REPO = Path(__file__).resolve().parents[1]
BACKENDS = ("lxc", "qemu")


def run_backend(backend: str, k: str, artifacts: Path) -> float:
    start = time.monotonic()
    rc = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "-k", k, "-p", "no:cacheprovider", "-q",
         "--lab-backend", backend, "--artifacts", str(artifacts)],
        cwd=REPO, check=False, env={**os.environ, "PYTEST_XDIST_WORKER": f"bench-{backend}"},
    ).returncode
    if rc != 0:
        raise SystemExit(f"the {backend} run failed (exit {rc}): figures not written")
    return time.monotonic() - start


def figures(artifacts: Path) -> dict[str, dict[str, float]]:
    """Per scenario: bring-up, deploy, restore, upgrade playbook, harness's own seconds."""
    out: dict[str, dict[str, float]] = {}
    for path in sorted(artifacts.glob("*/run.json"), key=lambda p: p.stat().st_mtime):
        run = json.loads(path.read_text())
        seconds = {o["name"]: o["seconds"] for o in run["outcomes"]}
        baseline = seconds.get("baseline", 0.0)
        playbook = playbook_seconds(path.parent, run) or seconds.get("upgrade", 0.0)
        around = max(0.0, seconds.get("upgrade", 0.0) - playbook)
        restore = baseline if run["baseline"] == "restored" else 0.0
        out[run["scenario"]] = {
            "bring-up": seconds.get("cluster", 0.0),
            "deploy": baseline if run["baseline"] == "deployed" else 0.0,
            "restore": restore,
            "upgrade": playbook,
            "own": restore + sum(seconds.get(s, 0.0) for s in OWN_STEPS) + around,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-k", default="(lab-etcd or lab-container-engine or lab-graceful) and not ks-")
    args = ap.parse_args()
    root = REPO / "artifacts" / "bench-backends"
    walls, data = {}, {}
    for backend in BACKENDS:
        walls[backend] = run_backend(backend, args.k, root / backend)
        data[backend] = figures(root / backend)
    cols = ("bring-up", "deploy", "restore", "upgrade", "own")
    rows = []
    for sc in data["lxc"]:
        a, b = data["lxc"][sc], data["qemu"].get(sc, {})
        cells = []
        for c in cols:
            x, y = a.get(c, 0.0), b.get(c, 0.0)
            cells.append(f"{x:.1f} / {y:.0f}" + (f" (**{y / x:.0f} x**)" if x > 0.05 and y else ""))
        rows.append(f"| {sc} | " + " | ".join(cells) + " |")
    lines = [
        (f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/backends.py` on {os.cpu_count()} cores, one run:"
        f" `pytest scenarios/ -k \"{args.k}\"` on each backend in turn, each lab brought up from its cached"
        f" rootfs or box. Whole runs: lxc {walls['lxc'] / 60:.1f} min, qemu {walls['qemu'] / 60:.1f} min"
        f" (**{walls['qemu'] / walls['lxc']:.1f} x**)."),
        "",
        ("Seconds, `lxc / qemu (qemu / lxc)`; bring-up and deploy fall on the first scenario, restores on the"
        " others; upgrade is the playbook alone; own is the harness's steps (bench/scenarios.py's accounting):"),
        "",
        "| scenario | " + " | ".join(cols) + " |",
        "| --- | " + " | ".join("---:" for _ in cols) + " |",
        *rows,
    ]
    DOC.write_text(replace_section(DOC.read_text(), "## Lab backends", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
