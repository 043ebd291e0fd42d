"""Runs killed with SIGKILL (as a CI timeout kills: no handler, no cleanup) leave nothing once a user
has run the sweep.

`pytest scenarios/` on a one-node copy of lab-etcd is killed three times per lab backend, each at a
step seen on the system rather than after a fixed sleep. QEMU: (a) once the lab's network namespace
exists (its libvirtd starting), (b) once a libvirt domain exists in it (`vagrant up` under way);
containers: (a) once the namespace exists, (b) once a node's container runs (a process in its
cgroup); both: (c) once the baseline's ansible-playbook runs (found by the owner every playbook
process carries in its environment). After each kill, `harness lab status` must show the dead lab as
stale and `harness lab down --stale` must leave 0 domains, volumes, networks, namespaces, lab daemons,
processes (QEMU, containers, Ansible, Vagrant, ssh), container cgroups, overlay mounts, veth/bridges
in the root namespace and state directories. The counts are printed.

The child runs as lab `pytest-orphans` (its PYTEST_XDIST_WORKER), so a lab of the lead's or of CI's
main job is never the one killed, and the sweep must leave such live labs alone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cluster.lab import lxc_nodes
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, list_labs
from harness.interrupt import RUN_OWNER, run_owner

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, libvirtd); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
WORKER = "orphans"
PATHS = LabPaths(lab_prefix(f"pytest-{WORKER}"))
HARNESS = [sys.executable, "-m", "harness.cli"]

SCENARIO = """\
id: orphan-etcd
description: lab-etcd on one node, to be killed mid-way (tests/integration/test_orphans.py)
installer: lab
topology: {nodes: [{name: node1, roles: [etcd, worker]}]}
baseline: {versions: {etcd_version: 3.4.23, containerd_version: 1.6.20, runc_version: 1.1.5}}
target: {versions: {etcd_version: 3.5.16}}
path: component
tags: [etcd]
"""


@pytest.fixture(scope="module", autouse=True)
def prerequisites() -> None:
    from harness.cluster.lab.box import ensure_box
    from harness.cluster.lab.rootfs import ensure_rootfs
    from harness.cluster.lab.setup import setup

    setup()
    ensure_box()  # a cold cache builds the box and the nodes' base here, not inside a round
    ensure_rootfs()


def _proc_text(pid: str, name: str) -> str:
    try:
        return Path("/proc", pid, name).read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _alive(pid: str) -> bool:
    stat = _proc_text(pid, "stat")
    return bool(stat) and stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pids() -> list[str]:
    return [p.name for p in Path("/proc").iterdir() if p.name.isdigit() and p.name != str(os.getpid())]


def _run_processes(owner: str) -> list[str]:
    """Processes of playbook runs the killed pytest started (their environment names it)."""
    needle = f"{RUN_OWNER}={owner}"
    return [p for p in _pids() if _alive(p) and needle in _proc_text(p, "environ").split(" ")]


def _root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=False).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if line.count(":") >= 2}


def count(owner: str, links_before: set[str], seen_pids: set[str]) -> dict[str, int]:
    """What of the lab (and the killed run) exists now, by kind."""
    root, prefix = str(PATHS.root), PATHS.prefix
    procs = {p: (_proc_text(p, "comm").strip(), _proc_text(p, "cmdline")) for p in _pids() if _alive(p)}
    libvirt = PATHS.root / "libvirt"

    def files(pattern: str) -> int:
        return len(list(libvirt.glob(pattern))) if libvirt.exists() else 0

    def in_lab_dir(pid: str) -> bool:
        try:
            return os.readlink(f"/proc/{pid}/cwd").startswith(root)
        except OSError:
            return False

    def mounts_lab(pid: str) -> bool:
        return root in _proc_text(pid, "mountinfo")  # the daemons run on the lab's private libvirt dirs

    return {
        "domains": files("etc/qemu/*.xml") + files("run/qemu/*.xml")
        + sum(1 for _c, cmd in procs.values() if f"guest={prefix}-" in cmd),
        "volumes": files("lib/images/*")
        + len([f for f in Path("/var/lib/libvirt/images").glob(f"{prefix}*")]),
        "networks": files("etc/qemu/networks/*.xml") + files("run/network/*.xml"),
        "namespaces": int(Path("/run/netns", prefix).exists()),
        "daemons": sum(1 for p, (comm, cmd) in procs.items()
                       if comm in ("libvirtd", "virtlogd", "dnsmasq") and (root in cmd or mounts_lab(p))),
        "qemu": sum(1 for _c, cmd in procs.values() if f"guest={prefix}-" in cmd),
        "ansible": len(_run_processes(owner)),
        "vagrant": sum(1 for p, (_c, cmd) in procs.items() if "vagrant" in cmd and (root in cmd or in_lab_dir(p))),
        "ssh": sum(1 for comm, cmd in procs.values()
                   if comm in ("ssh", "nc") and (root in cmd or f"netns exec {prefix} " in cmd)),
        "lab processes seen before (still alive)": sum(1 for p in seen_pids if p in procs),
        "container processes": len(lxc_nodes.pids_in_cgroups(prefix)),
        "container cgroups": len(lxc_nodes.cgroup_dirs(prefix)),
        "overlay mounts": len(lxc_nodes.mounts_under(PATHS.root)),
        "veth/bridges": len(_root_links() - links_before),
        "state dirs": int(PATHS.root.exists()) + int(PATHS.control_dir.exists()),
    }


def _namespace_pids() -> set[str]:
    out = subprocess.run(["ip", "netns", "pids", PATHS.prefix], capture_output=True, text=True, check=False).stdout
    return set(out.split())


def _domain_exists() -> bool:
    net = PATHS.net()
    return net.running() and bool(net.virsh("list", "--all", "--name", check=False, timeout=10).stdout.split())


def _harness(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*HARNESS, *args], cwd=REPO, capture_output=True, text=True, check=False,
                          stdin=subprocess.DEVNULL, timeout=600)


def _playbook_running(owner: str) -> bool:
    return any("ansible-playbook" in _proc_text(p, "cmdline") for p in _run_processes(owner))


STEPS: dict[str, dict[str, Callable[[str], bool]]] = {
    "qemu": {
        "a: namespace made, libvirtd starting": lambda _owner: Path("/run/netns", PATHS.prefix).exists(),
        "b: vagrant up, a domain defined": lambda _owner: _domain_exists(),
        "c: the baseline's ansible-playbook running": _playbook_running,
    },
    "lxc": {
        "a: namespace made": lambda _owner: Path("/run/netns", PATHS.prefix).exists(),
        "b: a node's container running": lambda _owner: bool(lxc_nodes.pids_in_cgroups(PATHS.prefix)),
        "c: the baseline's ansible-playbook running": _playbook_running,
    },
}


@pytest.mark.parametrize("backend", ["lxc", "qemu"])
def test_killed_runs_leave_nothing_after_the_sweep(tmp_path: Path, backend: str) -> None:
    scenarios = tmp_path / "orphan.yaml"
    scenarios.write_text(SCENARIO)
    assert _harness("lab", "down", "--name", f"pytest-{WORKER}").returncode == 0  # a previous run of this test
    links_before = _root_links()
    report: list[str] = []
    start = time.monotonic()
    for i, (step, reached) in enumerate(STEPS[backend].items()):
        log = tmp_path / f"child-{i}.log"
        env = {**os.environ, "PYTEST_XDIST_WORKER": WORKER, "HARNESS_LAB_BACKEND": backend}
        with log.open("w") as out:
            child = subprocess.Popen(
                [sys.executable, "-m", "pytest", "scenarios/", "--scenarios", str(scenarios), "-k", "orphan-etcd",
                 "-p", "no:cacheprovider", "--artifacts", str(tmp_path / f"artifacts-{i}")],
                cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # a process group of its own: our Ctrl-C is not its
            )
        owner = run_owner(child.pid)
        deadline = time.monotonic() + 1200  # a guard against a run that never gets there, not a measurement
        while not reached(owner):
            assert child.poll() is None, f"{step}: the run ended before the step ({log.read_text()[-3000:]})"
            assert time.monotonic() < deadline, f"{step}: not reached in 20 min ({log.read_text()[-3000:]})"
            time.sleep(0.2)
        os.kill(child.pid, signal.SIGKILL)  # the pytest process only, as a CI timeout's kill -9 would
        child.wait()
        seen = _namespace_pids() | {p for p in _pids() if str(PATHS.root) + "/" in _proc_text(p, "cmdline")}
        seen |= set(_run_processes(owner))
        left = count(owner, links_before, seen)

        status = _harness("lab", "status")
        assert status.returncode == 0, status.stderr
        line = next((ln for ln in status.stdout.splitlines() if ln.startswith(PATHS.prefix + ":")), "")
        assert "(stale, its run (process" in line, f"{step}: `lab status` does not show the dead lab:\n{status.stdout}"
        down = _harness("lab", "down", "--stale")
        assert down.returncode == 0, down.stderr
        assert f"removed lab {PATHS.prefix}: its run (process {child.pid}) is gone" in down.stdout, down.stdout
        after = count(owner, links_before, seen)
        report.append(f"{step}: killed pid {child.pid}; left by the kill: "
                      + ", ".join(f"{k}={v}" for k, v in left.items() if v)
                      + "\n    after `harness lab down --stale`: " + ", ".join(f"{k}={v}" for k, v in after.items()))
        assert set(after.values()) == {0}, report[-1]
        assert not any(lab["prefix"] == PATHS.prefix for lab in list_labs())
    report.append(f"{backend}: three killed runs and their sweeps: {time.monotonic() - start:.0f} s")
    print("\n" + "\n".join(report))
