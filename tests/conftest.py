from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GOOD_SCENARIO = """\
id: demo-etcd
description: a demo
installer: lab
topology:
  nodes:
    - {name: node1, roles: [etcd, worker]}
baseline: {versions: {etcd_version: 3.4.23}}
target: {versions: {etcd_version: 3.5.16}}
path: component
tags: [etcd]
"""


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


def kubespray_checkout() -> Path | None:
    """The real Kubespray the tests drive: `HARNESS_KUBESPRAY`, else the workplace's shared clone
    next to this repository (`../shared/kubespray.git`). None when neither exists."""
    import os

    env = os.environ.get("HARNESS_KUBESPRAY")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "kubespray.git"]:
        if candidate.exists():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def real_kubespray():
    """A `Kubespray` over the real checkout (worktrees and venvs in the harness's cache, reused)."""
    from harness.installer.kubespray import Kubespray

    path = kubespray_checkout()
    if path is None:
        pytest.skip("no Kubespray checkout: set HARNESS_KUBESPRAY or put one at ../shared/kubespray.git")
    return Kubespray.open(path)


# Counters and clocks the kernel moves by itself: everything else in `sysctl -a` must stay put.
VOLATILE = ("fs.dentry-state", "fs.file-nr", "fs.inode-nr", "fs.inode-state", "fs.quota.", "kernel.ns_last_pid",
            "kernel.random.", "kernel.perf_event_max_sample_rate", "net.netfilter.nf_conntrack_count",
            "kernel.pty.nr", "fs.aio-nr", "kernel.tainted", "vm.stat_refresh", "fs.fanotify.",
            "net.ipv4.tcp_fastopen_key", "fs.binfmt_misc.")


def host_sysctls() -> dict[str, str]:
    """The host kernel's settings (`sysctl -a`) but for counters the kernel moves by itself: a lab
    node must never change one (their kernel is the host's)."""
    import subprocess

    out = subprocess.run(["sysctl", "-a"], capture_output=True, text=True, check=False).stdout
    pairs = (line.split(" = ", 1) for line in out.splitlines() if " = " in line)
    return {k: v for k, v in pairs if not k.startswith(VOLATILE)}
