"""The lab for real: QEMU VMs in a network namespace, through the provider the harness uses.

Runs wherever it can (root, the lab's packages): CI runs it as root. It costs a box build on a cold
cache (~2 min) and about 2.5 min more: a killed `up`, a lab of 2 nodes, a snapshot and restore, a
SIGTERM'd `up`, and checks that nothing of any of them is left.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, LabProvider, default_spec, leftovers

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, libvirtd); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
NAME = "itest-" + os.environ.get("PYTEST_XDIST_WORKER", "main")


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    from harness.cluster.lab.box import ensure_box
    from harness.cluster.lab.setup import setup

    setup()  # installs the lab's packages when missing: a missing one must fail, not skip
    ensure_box()  # a cold cache builds the box here, outside the timed steps below


def _cli_up(name: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cluster.lab.cli", "up", "--nodes", "2", "--name", name, "--backend", "qemu"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _wait_for_libvirtd(paths: LabPaths, child: subprocess.Popen[bytes], seconds: float = 120) -> None:
    deadline = time.monotonic() + seconds
    while not paths.net().running():
        assert child.poll() is None, f"`lab up` ended early: {child.stderr.read().decode() if child.stderr else ''}"
        assert time.monotonic() < deadline, "libvirtd never started in the lab namespace"
        time.sleep(0.2)
    time.sleep(3)  # into `vagrant up`: domains, volumes and the network are being made


def _root_namespace_addresses() -> str:
    return subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout


def _virsh(paths: LabPaths, *args: str) -> list[str]:
    return paths.net().virsh(*args).stdout.split()


def test_lab_lifecycle() -> None:
    paths = LabPaths(lab_prefix(NAME))
    provider = LabProvider(NAME)
    provider.down()  # a previous run of this very test

    # A run killed (SIGKILL: no cleanup at all) in the middle of `up` leaves a stale lab ...
    child = _cli_up(NAME)
    _wait_for_libvirtd(paths, child)
    child.kill()
    child.wait()
    assert paths.net().exists() and leftovers(paths), "the killed `up` should have left something to sweep"

    # ... which the next `up` of the same name finds and replaces.
    start = time.monotonic()
    cluster = provider.up(default_spec(NAME, 2))
    up_seconds = time.monotonic() - start
    try:
        assert [n.name for n in cluster.nodes] == ["node1", "node2"]
        assert cluster.node("node1").roles == ("control-plane", "etcd", "worker")
        assert sorted(_virsh(paths, "list", "--name")) == [f"{paths.prefix}-node1", f"{paths.prefix}-node2"]
        volumes = _virsh(paths, "vol-list", "default")
        assert f"{paths.prefix}-node1.img" in volumes and f"{paths.prefix}-node2.img" in volumes
        # The network rule: VM addresses exist only inside the lab's namespace.
        for n in cluster.nodes:
            assert n.address not in _root_namespace_addresses()

        for n in cluster.nodes:
            host = cluster.testinfra_host(n.name)
            assert host.check_output("hostname") == n.name
            assert host.system_info.distribution == "debian"
            assert host.run("id -u").stdout.strip() == "0"  # testinfra runs with sudo
            assert n.address in host.check_output("ip -4 -o addr show eth0")

        cluster.snapshot("itest")
        assert cluster.has_snapshot("itest") and not cluster.has_snapshot("nope")
        cluster.run("node1", "echo after-snapshot | sudo tee /root/marker >/dev/null")
        host1 = cluster.testinfra_host("node1")
        assert host1.file("/root/marker").exists
        cluster.restore("itest")
        assert not cluster.testinfra_host("node1").file("/root/marker").exists
        # The restored guest's clock was set to now, not left at the snapshot's time.
        guest_now = float(cluster.run("node2", "date +%s").stdout)
        assert abs(guest_now - time.time()) < 30
    finally:
        cluster.destroy()

    assert leftovers(paths) == []
    assert (
        paths.prefix not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=False).stdout
    )
    assert not any(
        "qemu" in p.read_text(errors="replace")
        and f"guest={paths.prefix}-" in (Path("/proc", p.parent.name, "cmdline").read_bytes().decode(errors="replace"))
        for p in Path("/proc").glob("[0-9]*/comm")
        if p.exists()
    )
    print(f"lab up of 2 nodes (after sweeping a stale lab): {up_seconds:.0f} s")


def test_sigterm_during_up_leaves_nothing() -> None:
    name = NAME + "-term"
    paths = LabPaths(lab_prefix(name))
    LabProvider(name).down()
    child = _cli_up(name)
    _wait_for_libvirtd(paths, child)
    child.terminate()
    _, err = child.communicate(timeout=120)
    assert child.returncode != 0
    assert "SIGTERM" in err.decode()
    assert leftovers(paths) == []
