"""The container lab for real: LXC system containers in the lab's network namespace, through the
provider the harness uses and through `harness lab`.

Host safety is proved here, not assumed: a node cannot change the host kernel's settings (the host's
`sysctl -a` is the same after nodes tried every way a kubelet or systemd-sysctl would), and a lab's
processes are found by cgroup, so a host process with the very same command line survives a teardown
that kills the node's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cluster.lab import lxc_nodes
from harness.cluster.lab.lxc import LxcCluster, LxcProvider
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, default_spec, leftovers
from tests.conftest import host_sysctls

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, containers); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
NAME = "itest-lxc-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
HARNESS = [sys.executable, "-m", "harness.cli"]
def host_globals() -> dict[str, str]:
    """The settings a kubelet writes (LAB-CONTAINERS.md), read directly."""
    return {k: Path("/proc/sys", *k.split(".")).read_text().strip()
            for k in ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
                      "kernel.pid_max", "net.ipv4.ip_forward", "net.netfilter.nf_conntrack_max")
            if Path("/proc/sys", *k.split(".")).exists()}


@pytest.fixture(scope="module")
def lab():
    from harness.cluster.lab.rootfs import ensure_rootfs

    ensure_rootfs()  # a cold cache builds the nodes' base here (~60 s), not inside the steps below
    provider = LxcProvider(NAME)
    provider.down()  # a previous run of this very test
    before = host_sysctls()
    start = time.monotonic()
    cluster = provider.up(default_spec(NAME, 3))
    print(f"container lab up, 3 nodes: {time.monotonic() - start:.1f} s")
    try:
        yield cluster, before
    finally:
        provider.cleanup()
        assert leftovers(LabPaths(lab_prefix(NAME))) == []


def test_nodes_are_reached_only_inside_the_namespace(lab) -> None:
    cluster, _ = lab
    assert isinstance(cluster, LxcCluster)
    assert sorted(cluster.running()) == ["node1", "node2", "node3"]
    root_addresses = subprocess.run(["ip", "-o", "addr"], capture_output=True, text=True, check=False).stdout
    for n in cluster.nodes:
        assert n.address not in root_addresses  # the network rule
        host = cluster.testinfra_host(n.name)
        assert host.check_output("hostname") == n.name
        assert host.run("id -u").stdout.strip() == "0"
        assert host.check_output("systemctl is-system-running") == "running"
    # Nodes reach each other and the lab's side of the bridge (where the files repo is served).
    assert cluster.run("node1", f"getent hosts node3 && bash -c 'echo > /dev/tcp/{cluster.nodes[2].address}/22'").ok
    # `harness lab` finds the lab, whichever backend made it.
    ssh = subprocess.run([*HARNESS, "lab", "ssh", "--name", NAME, "node2", "--", "hostname"],
                         capture_output=True, text=True, check=False, cwd=REPO, timeout=60)
    assert (ssh.returncode, ssh.stdout.strip()) == (0, "node2"), ssh.stderr
    status = subprocess.run([*HARNESS, "lab", "status"], capture_output=True, text=True, check=False, cwd=REPO)
    assert f"{cluster.prefix}: running; lxc containers" in status.stdout


def test_snapshot_and_restore(lab) -> None:
    cluster, _ = lab
    cluster.run("node1", "echo one | sudo tee /etc/marker && sudo rm /etc/motd"
                         " && sudo mkdir -p /var/lib/containerd/x && sudo touch /var/lib/containerd/x/kept")
    start = time.monotonic()
    cluster.snapshot("itest")
    saved = time.monotonic() - start
    assert cluster.has_snapshot("itest") and not cluster.has_snapshot("nope")
    cluster.run("node1", "echo two | sudo tee /etc/marker && sudo touch /var/lib/containerd/x/later /etc/later")
    start = time.monotonic()
    cluster.restore("itest")
    restored = time.monotonic() - start
    out = cluster.run("node1", "cat /etc/marker; ls /var/lib/containerd/x; ls /etc/motd /etc/later 2>&1 || true").stdout
    assert out.splitlines()[:2] == ["one", "kept"]  # what the snapshot had, and nothing written after it
    assert "later" not in out.splitlines()[1] and "No such file" in out
    # A second restore from the same snapshot gives the same tree (a restore never changes its snapshot).
    cluster.run("node1", "echo three | sudo tee /etc/marker")
    cluster.restore("itest")
    assert cluster.run("node1", "cat /etc/marker").stdout.strip() == "one"
    print(f"snapshot of 3 nodes {saved:.2f} s, restore {restored:.2f} s")


def test_nodes_cannot_change_the_host_kernel_settings(lab) -> None:
    cluster, before = lab
    globals_before = host_globals()
    attempts = (
        "sudo sysctl -w kernel.panic=7 vm.overcommit_memory=1 kernel.panic_on_oops=1 kernel.pid_max=65536",
        "echo 1 | sudo tee /proc/sys/vm/panic_on_oom",
        "sudo /lib/systemd/systemd-sysctl",  # what systemd-sysctl.service would do at boot (masked there)
        "sudo sysctl -w net.netfilter.nf_conntrack_max=1",
    )
    for node in ("node1", "node3"):
        for attempt in attempts:
            cluster.run(node, attempt, check=False)
        # A node's own network settings are its own: writable, and not the host's.
        assert cluster.run(node, "sudo sysctl -w net.ipv4.ip_forward=1", check=False).ok
        assert cluster.run(node, "systemctl is-enabled systemd-sysctl.service", check=False).stdout.strip() == "masked"
    assert host_globals() == globals_before
    after = host_sysctls()
    changed = {k: (before[k], after.get(k)) for k in before if after.get(k) != before[k]}
    assert not changed, f"a node changed the host's kernel settings: {changed}"


def test_processes_are_selected_by_cgroup_not_by_name(lab) -> None:
    cluster, _ = lab
    argv = ["sleep", "4242.5"]
    twin = subprocess.Popen(argv)  # the host's process with the same command line as the node's below
    try:
        cluster.run("node2", "sudo sh -c 'nohup sleep 4242.5 >/dev/null 2>&1 &'")
        found = lxc_nodes.pids_in_cgroups(cluster.prefix)
        sleeps = [pid for pid, cmd in found.items() if cmd.strip() == "sleep 4242.5"]
        assert len(sleeps) == 1 and twin.pid not in found
        # The lab's teardown kills by cgroup: the node's sleep goes, the host's twin stays.
        cluster.stop_node("node2", kill=True)
        deadline = time.monotonic() + 10
        while Path(f"/proc/{sleeps[0]}").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not Path(f"/proc/{sleeps[0]}").exists()
        lxc_nodes.kill_nodes(cluster.prefix)
        assert twin.poll() is None, "the host's own process was killed by a lab teardown"
        assert lxc_nodes.pids_in_cgroups(cluster.prefix) == {}
    finally:
        twin.kill()
        twin.wait()
