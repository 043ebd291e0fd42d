from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
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


# -- a private real containerd (tests/test_images.py, tests/test_canary_container.py) ----------------------

CONTAINERD_NEEDED = {"containerd": "containerd", "ctr": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc"}
_CONTAINERD_MISSING = sorted({pkg for exe, pkg in CONTAINERD_NEEDED.items() if shutil.which(exe) is None})
needs_containerd = pytest.mark.skipif(
    os.geteuid() != 0 or bool(_CONTAINERD_MISSING),
    reason=("needs root" if os.geteuid() != 0
            else f"needs Debian's {', '.join(_CONTAINERD_MISSING)} (apt-get install {' '.join(_CONTAINERD_MISSING)})"),
)


@dataclass
class Containerd:
    """A containerd of our own: its own root, state dir and socket; no CRI plugin. `ctr` talks to it in
    `namespace`."""

    dir: Path
    namespace: str
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "state" / "containerd.sock"

    def start(self) -> None:
        config = self.dir / "config.toml"
        config.write_text(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                          f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.socket}"\n')
        log = (self.dir / "containerd.log").open("ab")
        # Its own session: stopping it must not reach the shims it started (as with KillMode=process).
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for _ in range(100):
            if self.ctr("version", check=False).returncode == 0:
                return
            assert self.proc.poll() is None, (self.dir / "containerd.log").read_text()[-2000:]
            time.sleep(0.2)
        raise AssertionError("containerd did not answer on its socket: " + (self.dir / "containerd.log").read_text()[-2000:])

    def stop(self) -> None:
        """SIGTERM to the daemon only, as systemd's KillMode=process does on a restart."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.proc = None

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "-n", self.namespace, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, check=check, timeout=timeout)

    def shims(self) -> list[int]:
        """This containerd's shims: the processes whose command line names its own socket."""
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in cmd:
                    out.append(int(p.name))
        return out

    def task_pid(self, container: str) -> int | None:
        for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == container and cols[2] == "RUNNING":
                return int(cols[1])
        return None


@contextlib.contextmanager
def private_containerd(prefix: str, namespace: str) -> Iterator[Containerd]:
    """A started Containerd; afterwards every task and container in its namespace removed, the daemon
    stopped, a shim left behind ended by its id, and its folder gone."""
    # Under /tmp with a short name: unix socket paths are limited to 108 bytes.
    d = Containerd(Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp")), namespace)
    try:
        d.start()
        yield d
    finally:
        if d.proc is None:
            d.start()  # a test stopped it: its tasks are removed through it
        for line in d.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
            d.ctr("task", "kill", "-s", "SIGKILL", line.split()[0], check=False)
        for line in d.ctr("container", "ls", "-q", check=False).stdout.split():
            d.ctr("task", "rm", "-f", line, check=False)
            d.ctr("container", "rm", line, check=False)
        shims = d.shims()
        d.stop()
        for pid in shims:  # a shim exits once its task is deleted; one left behind is ended by its id
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        subprocess.run(["umount", "-R", str(d.dir / "root")], check=False, capture_output=True)
        shutil.rmtree(d.dir, ignore_errors=True)
