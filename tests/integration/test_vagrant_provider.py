"""`--provider vagrant` for real: one lab scenario end to end through the user-facing vagrant provider.

The machine's network rule keeps every VM address inside a namespace the harness makes, so the test
makes one with the lab's own helpers (a namespace with a private libvirtd) and runs pytest inside it,
as a user with their own libvirt would run it on their host:

    ip netns exec NS pytest scenarios/ --scenarios FILE --provider vagrant --vagrant-provider libvirt \
        --box <the lab's offline box> --vagrant-option uri=<the namespace's libvirtd> ...

The options are the lab's own libvirt options (its document: socket, TCG, direct kernel boot, the
box's ssh key); nothing else of the lab is used. One node, etcd 3.4.23 -> 3.5.16 through
`cluster.yml --tags=etcd`, twice: the second from the snapshot restored through vagrant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.markup import escape

from harness import progress
from harness.cluster.base import ClusterSpec
from harness.cluster.lab import accel
from harness.cluster.lab.paths import lab_prefix, vagrant_home
from harness.cluster.lab.provider import LabPaths, LabProvider, leftovers, teardown
from harness.scenario.model import NodeSpec

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, libvirtd); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
NAME = "itest-vp-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
# Two scenarios off one baseline: the second restores the first's snapshot through `vagrant snapshot
# restore` (the lab reverts its own libvirt domains directly; this is where Vagrant's restore runs).
SCENARIO = """\
scenarios:
  - &first
    id: vagrant-etcd
    description: etcd 3.4 -> 3.5 through cluster.yml --tags=etcd on one node that --provider vagrant brought up.
    installer: lab
    topology:
      nodes:
        - {name: node1, roles: [etcd, worker]}
    baseline: {versions: {etcd_version: 3.4.23, containerd_version: 1.6.20, runc_version: 1.1.5}}
    target: {versions: {etcd_version: 3.5.16}}
    path: component
    tags: [etcd]
    idempotence: true
  - <<: *first
    id: vagrant-etcd-restored
    description: the same upgrade again, from the first scenario's snapshot restored through vagrant.
    idempotence: false
"""
# playbook, target versions, untouched, units, store, store versions, certificates, planted state, order,
# idempotence (the main job leaves the lab installer's second run to this test)
CHECKS = 10


@pytest.fixture(scope="module")
def namespace() -> Iterator[LabPaths]:
    """A network namespace with a libvirtd of its own, made and removed by the lab's helpers."""
    from harness.cluster.lab.setup import setup

    setup()  # the lab's packages: a missing one must fail, not skip
    paths = LabPaths(lab_prefix(NAME))
    teardown(paths)  # a previous run of this very test
    paths.root.mkdir(parents=True)
    paths.net().start()
    try:
        yield paths
    finally:
        teardown(paths)
    assert leftovers(paths) == []


def _vagrant_options(paths: LabPaths) -> list[str]:
    """The lab's libvirt options, as `--vagrant-option` arguments (booleans in YAML's spelling)."""
    from harness.cluster.lab.box import ensure_box

    box = ensure_box()
    spec = ClusterSpec(name=NAME, nodes=(NodeSpec(name="node1", roles=("etcd", "worker")),))
    doc = LabProvider(NAME).document(spec, paths, box, accel.detect(box.kernel))
    options: dict[str, Any] = {**doc["provider_options"], **{f"ssh.{k}": v for k, v in doc["ssh"].items()}}
    argv = ["--box", doc["box"]]
    for key, value in options.items():
        argv += ["--vagrant-option", f"{key}={str(value).lower() if isinstance(value, bool) else value}"]
    return argv


def _junit(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error", "skipped"):
                status = child.tag
        out[case.get("name", "")] = status
    return out


def test_a_lab_scenario_through_the_vagrant_provider(namespace: LabPaths, tmp_path: Path) -> None:
    paths = namespace
    net = paths.net()
    scenario = tmp_path / "vagrant-etcd.yaml"
    scenario.write_text(SCENARIO)
    junit, state = tmp_path / "junit.xml", tmp_path / "state"
    argv = [
        "ip", "netns", "exec", paths.prefix,
        sys.executable, "-m", "pytest", "scenarios/", "--scenarios", str(scenario), "-p", "no:cacheprovider", "-rfE",
        "--provider", "vagrant", "--vagrant-provider", "libvirt", *_vagrant_options(paths),
        "--artifacts", str(tmp_path / "artifacts"), "--junitxml", str(junit),
    ]  # fmt: skip
    # The lab's VAGRANT_HOME holds its box; the cluster's own state goes to a directory of this test's.
    env = {**os.environ, "VAGRANT_HOME": str(vagrant_home()), "HARNESS_STATE": str(state)}
    console, lines = progress.console(), []
    with subprocess.Popen(argv, cwd=REPO, env=env, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            console.print(f"[dim]vagrant provider |[/] {escape(line.rstrip())}", highlight=False)
    output = "".join(lines)

    assert child.returncode == 0, output[-3000:]
    items = {k: v for k, v in _junit(junit).items() if "vagrant-etcd" in k}  # not the checks no scenario needs
    first = {k: v for k, v in items.items() if "[vagrant-etcd:" in k}
    second = {k: v for k, v in items.items() if "[vagrant-etcd-restored:" in k}
    assert len(first) >= CHECKS and len(second) >= CHECKS - 1, items  # the second has no idempotence item
    assert set(items.values()) == {"passed"}, items
    assert "vagrant up: 1 node(s) of pytest-" in output  # vagrant's own output reached the progress lines
    # The baseline was deployed and snapshotted through vagrant, the files repo served in the namespace;
    # the second scenario restored that snapshot through vagrant.
    assert "vagrant-etcd: baseline deployed" in output and "vagrant-etcd-restored: baseline restored" in output
    assert "restoring snapshot baseline-" in output

    # Nothing of the cluster is left in the namespace's libvirt: no domain, no node volume, no network;
    # only the box's base image vagrant-libvirt keeps in the pool, as it does on any host.
    assert net.virsh("list", "--all", "--name").stdout.split() == []
    volumes = net.virsh("vol-list", "default", check=False).stdout.split("\n")
    names = [v.split()[0] for v in volumes if v.split()]
    assert all(n.endswith("_box.img") for n in names), names
    assert net.virsh("net-list", "--all", "--name").stdout.split() == []
    assert not [f for f in leftovers(paths) if "guest=" in f], "a QEMU of the cluster is still running"
    assert list((state / "vagrant").iterdir()) == [], "the cluster's vagrant directory was not removed"
