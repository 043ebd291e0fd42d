"""Benchmark what `harness scenarios`, `harness matrix` and `pytest scenarios/ --collect-only` cost
to start, against plain `python -c pass`, in one run:

    .venv/bin/python bench/startup.py [--scenarios 5000] [--repeat 5] [--no-write]

Each command runs as a user runs it (a subprocess, output to /dev/null) and is measured in CPU
seconds (user + system, from the child's rusage), best of --repeat, every command once per round so
a busy moment of the machine hits them all alike. The ratio is against `python -c pass` of the same
interpreter. Also measures the import of `harness.cli` alone, and the same commands over a generated
catalogue of --scenarios scenarios (bench/catalogue.py's, anchored as the shipped files are): `-k`
selecting one scenario, and the full table. Writes the figures into docs/benchmarks.md under
`## Start-up`, replacing only that section. Needs nothing but the Python env.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from catalogue import generate  # bench/catalogue.py: the same generated catalogue
from lab import DOC, replace_section  # bench/lab.py: same document, its own section

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PY = str(BIN / "python")
HARNESS = str(BIN / "harness")
PYTEST = [str(BIN / "pytest"), "-q", "-p", "no:cacheprovider"]


def cpu_seconds(argv: list[str], env: dict[str, str]) -> float:
    """User + system CPU of one run of `argv` (and its children), which must exit 0."""
    with open(os.devnull, "w") as null:
        p = subprocess.Popen(argv, cwd=REPO, stdout=null, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        err = p.stderr.read().decode() if p.stderr else ""
        if p.stderr:
            p.stderr.close()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}: {err.strip()[-400:]}")
    return usage.ru_utime + usage.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="harness-bench-startup-") as tmp:
        big = Path(tmp) / "catalogue.yaml"
        big.write_text(generate(args.scenarios, inline=False))
        # Nothing the commands might cache or write lands in the user's own folders.
        env = {**os.environ, "HARNESS_CACHE": str(Path(tmp) / "cache"), "HARNESS_STATE": str(Path(tmp) / "state")}
        env.pop("HARNESS_KUBESPRAY", None)
        n = f"{args.scenarios:,}"
        commands: list[tuple[str, list[str]]] = [
            ("`python -c pass`", [PY, "-c", "pass"]),
            ("`python -c 'import harness.cli'`", [PY, "-c", "import harness.cli"]),
            ("`harness scenarios`", [HARNESS, "scenarios"]),
            ("`harness matrix`", [HARNESS, "matrix"]),
            ("`harness scenarios -k etcd`", [HARNESS, "scenarios", "-k", "etcd"]),
            ("`pytest scenarios/ --collect-only`", [*PYTEST, "scenarios/", "--collect-only"]),
            (f"`harness scenarios -k gen-4242`, {n} scenarios", [HARNESS, "scenarios", "--file", str(big), "-k", "gen-4242"]),
            (f"`harness scenarios` (the full table), {n} scenarios", [HARNESS, "scenarios", "--file", str(big)]),
            (f"`harness matrix`, {n} scenarios", [HARNESS, "matrix", "--file", str(big)]),
        ]
        # Python's bytecode cache as an installed harness has it (in a folder of this run's own, so
        # nothing is written beside the sources), and without one, as under PYTHONDONTWRITEBYTECODE=1,
        # where every module (pytest's rewritten plugins too) is compiled on every start.
        cached = {**env, "PYTHONPYCACHEPREFIX": str(Path(tmp) / "pycache")}
        cached.pop("PYTHONDONTWRITEBYTECODE", None)
        uncached = {**env, "PYTHONDONTWRITEBYTECODE": "1"}
        for _label, argv in commands:
            cpu_seconds(argv, cached)  # fills the cache; not counted
        load_before = os.getloadavg()[0]
        best = {(label, c): float("inf") for label, _ in commands for c in ("cached", "uncached")}
        for _ in range(args.repeat):
            for label, argv in commands:
                for c, e in (("cached", cached), ("uncached", uncached)):
                    best[label, c] = min(best[label, c], cpu_seconds(argv, e))
        load_after = os.getloadavg()[0]
    ref = commands[0][0]

    def cell(label: str, c: str) -> str:
        ratio = "reference" if label == ref else f"{best[label, c] / best[ref, c]:.0f} x"
        return f"{best[label, c]:.2f} | {ratio}"

    rows = [f"| {label} | {cell(label, 'cached')} | {cell(label, 'uncached')} |" for label, _ in commands]
    lines = [
        (f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/startup.py` on {os.cpu_count()} cores (Python"
         f" {platform.python_version()}; load average {load_before:.1f} before, {load_after:.1f} after): CPU seconds"
         f" (user + system of the process), best of {args.repeat}, of each command as a user runs it, output to"
         " /dev/null, every command once per round; the ratio is against plain `python -c pass` in the same run."
         " With Python's bytecode cache (as an installed harness has it) and without (PYTHONDONTWRITEBYTECODE=1:"
         " every module compiled on every start, pytest's assertion rewriting of its plugins included)."
         f" The shipped catalogue unless a row says otherwise; the large one is bench/catalogue.py's ({n} scenarios,"
         " anchored as the shipped files are)."),
        "",
        "| command | CPU s, bytecode cached | against `python -c pass` | CPU s, no bytecode cache | against `python -c pass` |",
        "| --- | ---: | ---: | ---: | ---: |",
        *rows,
        "",
        ("What start-up costs is mostly imports (`python -X importtime`): click, rich, pydantic and the scenario"
         " model; for pytest, pytest itself and the plugins installed beside it (testinfra, xdist, anyio's)."
         " The `verify` and `lab` subcommands are imported only when named, pytest's `-k` grammar only"
         " when `-k` is given. Past 200 rows the scenario table is printed as plain aligned columns: rich laid"
         " 5,000 rows out in about 3.5 s. A file is checked before it is built (harness/userinput.py: size, type,"
         " YAML aliases counted without expanding them): 0.03 s of the 5,000-scenario load."),
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", "## Start-up", report))


if __name__ == "__main__":
    main()
