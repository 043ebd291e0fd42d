"""Benchmark loading and selecting a large scenario catalogue: what `pytest scenarios/`,
`harness scenarios` and `harness matrix` pay on every start, before anything runs.

    .venv/bin/python bench/catalogue.py [--scenarios 5000] [--repeat 5] [--no-write]

Generates a catalogue of N scenarios written the way the shipped files are (`x-*` anchors for
the topology and the baseline, `<<:` merges for Kubespray refs; lab and Kubespray scenarios, every
path), and the same scenarios with every part written out in each scenario (no anchors). Measures the
CPU seconds (best of --repeat) of `load_catalogue` + `select` with the loader the harness uses
(libyaml's, when PyYAML has it) and with PyYAML's pure-Python loader, in the same run, so the ratio
is not skewed by the machine's load. Writes the figures into docs/benchmarks.md under
`## Scenario catalogue`, replacing only that section. Needs nothing but the Python env.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import yaml
from lab import DOC, replace_section  # bench/lab.py: same document, its own section

from harness.scenario import loader
from harness.scenario.select import select

EXPR = "etcd and not graceful"  # what the README's main job selects, give or take

ANCHORS = """\
x-topology: &topology
  nodes:
    - {name: node1, roles: [control-plane, etcd, worker], cpus: 2, memory: 3072}
    - {name: node2, roles: [control-plane, etcd, worker], cpus: 2, memory: 3072}
    - {name: node3, roles: [etcd, worker], cpus: 2, memory: 2048}
x-lab-baseline: &lab-baseline
  versions: {etcd_version: 3.4.23, containerd_version: 1.6.20, runc_version: 1.1.5}
x-at-v2-31: &at-v2-31
  ref: v2.31.0
"""
TOPOLOGY = ANCHORS.split("x-lab-baseline")[0].removeprefix("x-topology: &topology\n")
LAB_BASELINE = "{versions: {etcd_version: 3.4.23, containerd_version: 1.6.20, runc_version: 1.1.5}}"


def _scenario(i: int, inline: bool) -> str:
    """One scenario of five shapes in turn, every one valid under the load-time rules."""
    topology = "\n" + "\n".join("    " + line for line in TOPOLOGY.splitlines()) if inline else " *topology"
    lab_base = LAB_BASELINE if inline else "*lab-baseline"
    at = "ref: v2.31.0" if inline else "<<: *at-v2-31"
    shape = i % 5
    patch = 17 + i % 13
    head = f"  - id: gen-{i}\n    description: generated scenario {i} (shape {shape})\n"
    if shape == 0:
        body = (f"    installer: lab\n    topology:{topology}\n    baseline: {lab_base}\n"
                f"    target: {{versions: {{etcd_version: 3.5.{patch}}}}}\n    path: component\n    tags: [etcd]\n")
    elif shape == 1:
        body = (f"    installer: lab\n    topology:{topology}\n    baseline: {lab_base}\n"
                f"    target: {{versions: {{containerd_version: 1.7.{patch}, runc_version: 1.1.{patch}}}}}\n"
                "    path: component\n    tags: [container-engine]\n")
    elif shape == 2:
        body = (f"    installer: lab\n    topology:{topology}\n    baseline: {lab_base}\n"
                f"    target: {{versions: {{etcd_version: 3.5.{patch}, containerd_version: 1.7.24}}}}\n"
                "    path: graceful\n")
    elif shape == 3:
        body = (f"    installer: kubespray\n    topology:{topology}\n"
                f"    baseline: {{{at}, versions: {{kube_version: 1.35.3}}}}\n"
                f"    target: {{{at}, versions: {{kube_version: 1.35.{4 + i % 7}}}}}\n"
                "    path: component\n    tags: [node]\n    budgets: {apiserver: 30}\n")
    else:
        body = (f"    installer: kubespray\n    topology:{topology}\n    baseline: {{ref: v2.30.0}}\n"
                "    target: {ref: v2.31.0}\n    path: full\n    budgets: {apiserver: 60, dns: 30, canary: 30}\n"
                "    idempotence: true\n")
    return head + body


def generate(n: int, inline: bool) -> str:
    return ("" if inline else ANCHORS) + "scenarios:\n" + "".join(_scenario(i, inline) for i in range(n))


@contextlib.contextmanager
def _gc_running() -> Iterator[None]:
    yield


def measure(path: Path, text: str, cls: type[yaml.SafeLoader], pause_gc: bool) -> tuple[float, float]:
    """CPU seconds of load + select with this YAML loader, and of the YAML parse alone; with the
    loader's GC pause (as shipped) or with the cyclic GC running throughout (as before)."""
    fast, paused = loader._Loader, loader._gc_paused
    loader._Loader = cls
    if not pause_gc:
        loader._gc_paused = _gc_running
    try:
        start = time.process_time()
        select(loader.load_catalogue([path]), EXPR)
        total = time.process_time() - start
        start = time.process_time()
        with loader._gc_paused():
            yaml.load(text, Loader=cls)
        return total, time.process_time() - start
    finally:
        loader._Loader, loader._gc_paused = fast, paused


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scenarios", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-write", action="store_true", help="print the figures, leave docs/benchmarks.md alone")
    args = ap.parse_args()

    if loader._Loader is yaml.SafeLoader:
        raise SystemExit("PyYAML has no libyaml here (yaml.CSafeLoader): nothing to compare")
    # (label, YAML loader, GC paused during the load); the first is the harness as shipped.
    variants: list[tuple[str, type[yaml.SafeLoader], bool]] = [
        ("libyaml, GC paused (the harness)", loader._Loader, True),
        ("libyaml, GC running", loader._Loader, False),
        ("pure Python, GC paused", yaml.SafeLoader, True),
        ("pure Python, GC running", yaml.SafeLoader, False),
    ]
    load_before = os.getloadavg()[0]
    rows: list[str] = []
    chosen: list[object] = []
    with tempfile.TemporaryDirectory(prefix="harness-bench-catalogue-") as tmp:
        for shape, inline in (("anchored (as the shipped files)", False), ("written out (no anchors)", True)):
            path = Path(tmp) / f"{'inline' if inline else 'anchored'}.yaml"
            path.write_text(generate(args.scenarios, inline))
            text = path.read_text()
            chosen = list(select(loader.load_catalogue([path]), EXPR))  # also proves the catalogue is valid
            assert chosen, "the selection chose nothing: nothing was measured"
            total = {v[0]: float("inf") for v in variants}
            parse = dict(total)
            # Interleaved, best of each: a busy moment of the machine hits every variant alike.
            for _ in range(args.repeat):
                for label, cls, pause in variants:
                    t, y = measure(path, text, cls, pause)
                    total[label], parse[label] = min(total[label], t), min(parse[label], y)
            shipped = total[variants[0][0]]
            size = f"{path.stat().st_size / 1e6:.1f} MB"
            for label, _cls, _pause in variants:
                ratio = "reference" if label == variants[0][0] else f"{total[label] / shipped:.1f} x"
                rows.append(f"| {shape}, {size} | {label} | {total[label]:.2f} | {parse[label]:.2f} | {ratio} |")
    load_after = os.getloadavg()[0]
    lines = [
        (f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/catalogue.py` on {os.cpu_count()} cores"
         f" (Python {platform.python_version()}, PyYAML {yaml.__version__}; load average {load_before:.1f}"
         f" before, {load_after:.1f} after): CPU seconds, best of {args.repeat}, to load a generated catalogue"
         f" of {args.scenarios:,} scenarios (lab and Kubespray, every path) with `load_catalogue` and select"
         f" `-k '{EXPR}'` from it ({len(chosen):,} chosen), as `pytest scenarios/` and `harness scenarios|matrix`"
         " do on every start. Every variant in one run, interleaved; the ratio is against the harness's own."),
        "",
        "| catalogue | YAML loader and GC | load + select | YAML alone | CPU against the harness's |",
        "| --- | --- | ---: | ---: | ---: |",
        *rows,
        "",
        ("The harness uses libyaml's loader when PyYAML has it and pauses the cyclic GC while it loads"
         " (PyYAML's many small objects made the GC rescan the growing document over and over),"
         " validates each scenario in one pass, validates a part shared through a YAML anchor (topology,"
         " baseline) once for every scenario naming it, and computes each scenario's derived views (test"
         " id, components) once. What is left is mostly PyYAML building Python objects, which grows with"
         " the text: anchors keep it small."),
    ]
    report = "\n".join(lines)
    print(report)
    if not args.no_write:
        DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", "## Scenario catalogue", report))


if __name__ == "__main__":
    main()
