"""Container nodes, one LXC system container each, inside a lab's network namespace.

The mechanics only (the cluster and provider are harness/cluster/lab/lxc.py); every fact below was
measured on these machines (../shared/LAB-CONTAINERS.md):

- LXC inside a network namespace: `ip netns exec` remounts /sys and hides /sys/fs/cgroup, and plain
  `nsenter --net` makes lxc-start fail to find the bridge (LXC reads /sys/class/net, still the root
  namespace's). Every lxc-* command therefore joins the namespace's net only, in a private mount
  namespace whose /sys/class/net and /sys/devices/virtual/net come from a sysfs mounted there. LXC's
  command socket is abstract, i.e. per network namespace: lxc-stop must run the same way as lxc-start.
- A node's root is an overlay: the shared read-only base tree (rootfs.py), the node's snapshot layers,
  and an upper directory of its own. A snapshot turns the upper into a layer (a rename, not a copy)
  and a restore starts from an empty upper over the layers: both are a container restart.
- /var/lib/containerd is a bind of a plain directory: containerd's overlayfs snapshotter cannot mount
  on an overlay upper. Snapshots copy it.
- A privileged node shares the host's kernel: /proc/sys is mounted read-only but for net
  (`proc:mixed`), so a kubelet or systemd-sysctl inside cannot change the host's global settings.
- Processes inside nodes are host processes: they are found by their cgroup (`lxc.payload.<name>`,
  `lxc.monitor.<name>`), never by process name.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.errors import ClusterError

CGROUP_ROOT = Path("/sys/fs/cgroup")
BRIDGE = "kshbr0"
STOP_SECONDS = 10  # a clean stop's budget; then lxc-stop kills (a nested container held one 60 s)


def container_name(prefix: str, node: str) -> str:
    """`<prefix>_<node>`: the `_` keeps lab `ksh-lab`'s cgroups apart from lab `ksh-lab-gw0`'s."""
    return f"{prefix}_{node}"


# -- the namespace and its bridge ---------------------------------------------------


@dataclass(frozen=True)
class LxcNet:
    """A lab's network namespace with one bridge the nodes' veths join; the gateway is the lab's side."""

    netns: str
    gateway: str  # e.g. 10.123.4.1/24

    def exists(self) -> bool:
        return Path("/run/netns", self.netns).exists()

    def start(self) -> None:
        if not self.exists():
            proc.run(["ip", "netns", "add", self.netns])
        proc.run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        if proc.run(["ip", "-n", self.netns, "link", "show", BRIDGE], check=False).ok:
            return
        proc.run(["ip", "-n", self.netns, "link", "add", BRIDGE, "type", "bridge"])
        proc.run(["ip", "-n", self.netns, "addr", "add", self.gateway, "dev", BRIDGE])
        proc.run(["ip", "-n", self.netns, "link", "set", BRIDGE, "up"])

    def pids(self) -> list[int]:
        if not self.exists():
            return []
        res = proc.run(["ip", "netns", "pids", self.netns], check=False, timeout=30)
        return [int(p) for p in res.stdout.split()]


def lxc_argv(netns: str, sysfs: Path, *argv: str) -> list[str]:
    """argv run in the lab's network namespace the way LXC needs it (see the module's docstring)."""
    script = (
        f"mount -t sysfs sysfs {shlex.quote(str(sysfs))}"
        f" && mount --bind {shlex.quote(str(sysfs / 'class' / 'net'))} /sys/class/net"
        f" && mount --bind {shlex.quote(str(sysfs / 'devices' / 'virtual' / 'net'))} /sys/devices/virtual/net"
        ' && exec "$@"'
    )
    return ["nsenter", f"--net=/run/netns/{netns}", "unshare", "--mount", "--propagation", "slave",
            "sh", "-c", script, "sh", *argv]


# -- one node's files ------------------------------------------------------------------


@dataclass(frozen=True)
class NodeFiles:
    """Where one node lives under its lab's directory."""

    root: Path  # the lab's directory
    prefix: str
    node: str

    @property
    def name(self) -> str:
        return container_name(self.prefix, self.node)

    @property
    def dir(self) -> Path:
        return self.root / "nodes" / self.node

    @property
    def upper(self) -> Path:
        return self.dir / "upper"

    @property
    def work(self) -> Path:
        return self.dir / "work"

    @property
    def merged(self) -> Path:
        return self.dir / "rootfs"

    @property
    def containerd(self) -> Path:
        return self.dir / "containerd"

    @property
    def lxcpath(self) -> Path:
        return self.root / "lxc"

    @property
    def config(self) -> Path:
        return self.lxcpath / self.name / "config"


def layers_dir(root: Path) -> Path:
    return root / "layers"


# Host-global kernel settings a kubelet insists on (it writes them unless they read as it wants, and
# fails when it cannot): a node reads these values from read-only files bound over the entries, so
# the kubelet is satisfied and the host's own values never change (LAB-CONTAINERS.md).
KUBELET_SYSCTLS = {
    "vm/overcommit_memory": "1",
    "vm/panic_on_oom": "0",
    "kernel/panic": "10",
    "kernel/panic_on_oops": "1",
    "kernel/keys/root_maxkeys": "1000000",
    "kernel/keys/root_maxbytes": "25000000",
}


def sysctl_files(root: Path) -> dict[str, Path]:
    """The files a lab's nodes read KUBELET_SYSCTLS from, written once per lab."""
    d = root / "sysctl"
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for key, value in KUBELET_SYSCTLS.items():
        f = d / key.replace("/", ".")
        if not f.is_file() or f.read_text() != value + "\n":
            f.write_text(value + "\n")
        out[key] = f
    return out


def config_text(files: NodeFiles, *, address: str, gateway: str, memory_mib: int, console: Path) -> str:
    """The container's LXC config (keys measured to work: ../shared/LAB-CONTAINERS.md)."""
    sysctls = [f"lxc.mount.entry = {f} proc/sys/{key} none bind,ro 0 0" for key, f in sysctl_files(files.root).items()]
    lines = [
        f"lxc.uts.name = {files.node}",
        f"lxc.rootfs.path = dir:{files.merged}",
        "lxc.init.cmd = /sbin/init",
        "lxc.signal.halt = SIGRTMIN+3",
        "lxc.autodev = 1",
        "lxc.apparmor.profile = unconfined",
        "lxc.cap.drop =",
        "lxc.cgroup.devices.allow = a",
        # proc:mixed: /proc/sys read-only but for net, so nothing in a node changes the host's kernel
        # settings (a kubelet writes vm.overcommit_memory, kernel.panic, kernel.panic_on_oops).
        # cgroup:rw:force: plain cgroup:rw leaves cpu and cpuacct unmounted (separate v1 hierarchies here).
        "lxc.mount.auto = proc:mixed sys:mixed cgroup:rw:force",
        "lxc.mount.entry = /dev/kmsg dev/kmsg none bind,optional,create=file 0 0",
        "lxc.mount.entry = /dev/net/tun dev/net/tun none bind,optional,create=file 0 0",
        f"lxc.mount.entry = {files.containerd} var/lib/containerd none bind,create=dir 0 0",
        *sysctls,
        f"lxc.cgroup.memory.limit_in_bytes = {memory_mib}M",
        "lxc.net.0.type = veth",
        f"lxc.net.0.link = {BRIDGE}",
        "lxc.net.0.flags = up",
        "lxc.net.0.name = eth0",
        f"lxc.net.0.ipv4.address = {address}/{gateway.split('/')[1]} {_broadcast(gateway)}",
        f"lxc.net.0.ipv4.gateway = {gateway.split('/')[0]}",
        f"lxc.console.logfile = {console}",
        f"lxc.log.file = {files.dir / 'lxc.log'}",
        "lxc.log.level = WARN",
    ]
    return "\n".join(lines) + "\n"


def _broadcast(gateway: str) -> str:
    import ipaddress

    return str(ipaddress.ip_interface(gateway).network.broadcast_address)


def mount_root(files: NodeFiles, lowers: Iterable[Path]) -> None:
    """The node's root: a fresh upper over `lowers` (its snapshot layers, newest first, then the base)."""
    for d in (files.upper, files.work):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    files.merged.mkdir(parents=True, exist_ok=True)
    lowerdir = ":".join(str(p) for p in lowers)
    opts = f"lowerdir={lowerdir},upperdir={files.upper},workdir={files.work}"
    proc.run(["mount", "-t", "overlay", "overlay", "-o", opts, str(files.merged)], timeout=60)


def unmount_root(files: NodeFiles) -> None:
    """The node's root unmounted, or an error: its upper is about to become a layer or be thrown away,
    which must never happen under a process still writing there."""
    if _mounted(files.merged):
        res = proc.run(["umount", str(files.merged)], check=False, timeout=60)
        if not res.ok:
            raise ClusterError(f"cannot unmount node {files.node}'s root {files.merged}: {res.stderr.strip()}")


def _mounted(path: Path) -> bool:
    target = str(path)
    return any(line.split()[4] == target for line in _mountinfo())


def _mountinfo() -> list[str]:
    try:
        return Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return []


def mounts_under(root: Path) -> list[str]:
    """Mount points at or under `root` in this mount namespace (a lab's overlays)."""
    base = str(root).rstrip("/") + "/"
    return [p for p in (line.split()[4] for line in _mountinfo()) if p.startswith(base)]


# -- processes and cgroups, by cgroup never by name --------------------------------------


def _cgroup_marks(prefix: str) -> tuple[str, ...]:
    return (f"/lxc.payload.{prefix}_", f"/lxc.monitor.{prefix}_")


def pids_in_cgroups(prefix: str) -> dict[int, str]:
    """Every process in one of the lab's container cgroups (its nodes' and their LXC monitors'),
    with its command line: what a kill must reach, and nothing else."""
    marks = _cgroup_marks(prefix)
    found: dict[int, str] = {}
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cgroups = (p / "cgroup").read_text()
            if any(m in cgroups for m in marks):
                found[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
    return found


def cgroup_dirs(prefix: str) -> list[Path]:
    """The lab's container cgroup directories in every hierarchy, deepest first."""
    out: list[Path] = []
    names = (f"lxc.payload.{prefix}_", f"lxc.monitor.{prefix}_")
    with contextlib.suppress(OSError):
        for hierarchy in CGROUP_ROOT.iterdir():
            with contextlib.suppress(OSError):
                for d in hierarchy.iterdir():
                    if d.is_dir() and d.name.startswith(names):
                        out.extend(sorted((p for p in d.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)))
                        out.append(d)
    return out


def kill_node(prefix: str, node: str, *, wait: float = 10.0) -> bool:
    """SIGKILL whatever is left in one node's cgroups; True once none is left."""
    marks = (f"/lxc.payload.{container_name(prefix, node)}/", f"/lxc.payload.{container_name(prefix, node)}\n",
             f"/lxc.monitor.{container_name(prefix, node)}\n")
    deadline = time.monotonic() + wait
    while True:
        pids = [pid for pid in pids_in_cgroups(prefix) if any(m in _cgroups_of(pid) for m in marks)]
        if not pids:
            return True
        if time.monotonic() > deadline:
            return False
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _cgroups_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cgroup").read_text()
    except OSError:
        return ""


def kill_nodes(prefix: str, *, wait: float = 10.0) -> None:
    """SIGKILL every process of the lab's containers (found by cgroup), then remove their cgroups."""
    deadline = time.monotonic() + wait
    while True:
        pids = pids_in_cgroups(prefix)
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        if not pids or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for _ in range(50):
        left = [d for d in cgroup_dirs(prefix) if not _rmdir(d)]
        if not left:
            return
        time.sleep(0.1)


def _rmdir(d: Path) -> bool:
    try:
        d.rmdir()
    except FileNotFoundError:
        return True
    except OSError:
        return False
    return True


def remove_all(prefix: str, root: Path) -> None:
    """Everything of a container lab but its namespace and directory (the lab's teardown removes those):
    its nodes' processes, their cgroups and the overlay mounts. Safe on a half-made or QEMU lab."""
    kill_nodes(prefix)
    for mount in sorted(mounts_under(root), key=len, reverse=True):
        res = proc.run(["umount", mount], check=False, timeout=60)
        if not res.ok:
            proc.run(["umount", "-l", mount], check=False, timeout=60)


def leftovers(prefix: str, root: Path) -> list[str]:
    found = [f"process {pid} in a node's cgroup: {cmd[:120]}" for pid, cmd in sorted(pids_in_cgroups(prefix).items())]
    found += [f"cgroup {d}" for d in cgroup_dirs(prefix)]
    found += [f"mount {m}" for m in mounts_under(root)]
    return found


def check_started(files: NodeFiles, res: proc.Result) -> None:
    if not res.ok:
        log = files.dir / "lxc.log"
        tail = log.read_text(errors="replace").strip().splitlines()[-5:] if log.exists() else []
        raise ClusterError(
            f"lxc-start of node {files.node} ({files.name}) failed (rc={res.rc}): {res.stderr.strip()[-300:]}"
            + ("\n" + "\n".join(tail) if tail else "")
        )
