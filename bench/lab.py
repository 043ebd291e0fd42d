"""Benchmark the lab: box build (cold and cached), up, snapshot, restore and down of a 2-node lab.

    .venv/bin/python bench/lab.py [--nodes 2] [--keep-box]

Writes the figures into docs/benchmarks.md under `## Lab`, replacing only that section. Needs root
and the lab's packages (`harness lab setup`). `--keep-box` skips the cold build (made in a throwaway cache, so running labs keep theirs).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from harness.cluster.base import Node
from harness.cluster.lab import accel
from harness.cluster.lab.box import ensure_box
from harness.cluster.lab.provider import LabProvider, default_spec, leftovers
from harness.cluster.lab.setup import check_prerequisites
from harness.probes.hosts import HostProbe, units_for

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
T = TypeVar("T")


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.monotonic()
    value = fn()
    return value, time.monotonic() - start


def replace_section(text: str, heading: str, body: str) -> str:
    """Replace `heading`'s section (up to the next `## `) or append it; other sections stay as they are."""
    section = f"{heading}\n\n{body.strip()}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.DOTALL | re.MULTILINE)
    if pattern.search(text):
        return pattern.sub(lambda _m: section + "\n", text, count=1).rstrip() + "\n"
    if not text.strip():
        text = "# Benchmarks\n"
    return text.rstrip() + "\n\n" + section


def _facts_one_question_at_a_time(probe: HostProbe, node: Node) -> None:
    """The straightforward testinfra way: versions, certificates, then three questions per unit."""
    probe.versions(node.name)
    probe.certs(node.name)
    for unit in units_for(node.roles, "lab"):
        svc = probe.cluster.testinfra_host(node.name).service(unit)
        _ = (svc.exists, svc.is_running, svc.is_enabled)  # each property is a command on the node


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nodes", type=int, default=2)
    ap.add_argument("--keep-box", action="store_true", help="do not measure a cold box build")
    ap.add_argument("--name", default="bench")
    args = ap.parse_args()
    check_prerequisites()

    rows: list[tuple[str, float, str]] = []
    cold: float | None = None
    if not args.keep_box:
        # Cold: a private, empty cache, so labs running off the shared box are not disturbed.
        with tempfile.TemporaryDirectory(prefix="bench-lab-cache-") as tmp:
            os.environ["HARNESS_CACHE"] = tmp
            try:
                _, cold = timed(ensure_box)
            finally:
                del os.environ["HARNESS_CACHE"]
        rows.append(("box build, cold (ssh key, debootstrap, image, `vagrant box add`)", cold, ""))
    ensure_box()
    box, cached = timed(ensure_box)
    rows.append(("box build, cached", cached, f"{cached / cold:.5f} x cold" if cold else ""))
    verdict, probe = timed(lambda: accel.detect(box.kernel))

    load_before = os.getloadavg()[0]
    provider = LabProvider(args.name)
    provider.down()
    cluster, up = timed(lambda: provider.up(default_spec(args.name, args.nodes)))
    rows.append((f"`up`, {args.nodes} nodes (1 vCPU, 1 GiB each; box upload, boot, ssh)", up, ""))
    try:
        # Host facts as the harness collects them (one script per node, nodes in parallel) against the
        # same facts the way testinfra's modules give them (a command per question, node after node).
        host_probe = HostProbe(cluster, installer="lab")
        host_probe.all_host_facts()  # warm: ssh masters up, so both below reuse connections
        facts, fast = timed(host_probe.all_host_facts)
        if not all(f.units and "containerd" in f.units for f in facts):
            raise SystemExit(f"the host probe read no units (ssh failed?): {facts}; figures not written")
        _, slow = timed(lambda: [_facts_one_question_at_a_time(host_probe, n) for n in cluster.nodes])
        rows.append((f"host facts, {args.nodes} fresh nodes: testinfra `service()` per unit, node after node", slow, ""))
        rows.append((f"host facts, {args.nodes} fresh nodes: one script per node, nodes in parallel (the harness)", fast,
                     f"{slow / fast:.1f} x faster"))
        _, snap = timed(lambda: cluster.snapshot("bench"))
        rows.append(("snapshot (all nodes, memory included)", snap, f"{snap / up:.3f} x up"))
        cluster.run("node1", "echo x | sudo tee /root/bench-marker >/dev/null")
        _, restore = timed(lambda: cluster.restore("bench"))
        gone = not cluster.run("node1", "test -e /root/bench-marker", check=False).ok
        rows.append(("restore (revert, ssh back, clock set)", restore, f"{restore / up:.3f} x up"))
        if not gone:
            raise SystemExit("restore did not roll back the marker file: figures not written")
        _, down = timed(cluster.destroy)
        rows.append(("down (domains, volumes, network, daemons, namespace)", down, f"{down / up:.3f} x up"))
    except BaseException:
        cluster.destroy()
        raise
    left = leftovers(cluster.paths)
    if left:
        raise SystemExit(f"down left things behind: {left}")

    load_after = os.getloadavg()[0]
    others = sorted({p.name for p in Path("/run/netns").glob("ksh-*")} - {cluster.paths.prefix})
    vagrant = subprocess.run(["vagrant", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    qemu = subprocess.run(
        ["qemu-system-x86_64", "--version"], capture_output=True, text=True, check=True
    ).stdout.splitlines()[0]
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    lines = [
        f"Measured {datetime.now(UTC):%Y-%m-%d} by `bench/lab.py` on {os.cpu_count()} cores, {mem_gib:.0f} GiB,"
        f" {platform.system()} {platform.release()}; accelerator **{verdict}** (probe {probe:.1f} s, cached after"
        f" the first run); {vagrant}; {qemu}. Load average {load_before:.1f} before the lab steps,"
        f" {load_after:.1f} after" + (f"; other labs running meanwhile: {', '.join(others)}." if others else "."),
        "",
        "| step | seconds | ratio |",
        "| --- | ---: | --- |",
        *[f"| {step} | {sec:.{3 if sec < 1 else 1}f} | {ratio} |" for step, sec, ratio in rows],
        "",
        "Restore reverts each domain's internal snapshot in parallel through the lab's libvirtd (what",
        "`vagrant snapshot restore` calls underneath; through vagrant the same restore took 12.2 s), then",
        "waits for ssh, which a freshly reverted TCG guest answers after about 3 s, and sets the guests' clocks.",
    ]
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(replace_section(DOC.read_text() if DOC.exists() else "", "## Lab", "\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
