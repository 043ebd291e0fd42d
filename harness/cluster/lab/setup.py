"""Host preparation for the lab, and each lab's private network namespace and libvirt daemons.

Network rule of these machines: traffic goes only to loopback or into namespaces the harness makes. So
every lab gets its own namespace `ksh-<name>` and its own libvirtd/virtlogd inside it. libvirtd's
socket, state, config and logs live at fixed system paths (/run/libvirt, /var/lib/libvirt,
/etc/libvirt, ...), so the daemons also get a private mount namespace where those paths are bind
mounts of the lab's directory. Two labs then share nothing but the read-only box, and tearing one down
is: kill what runs in its namespace, delete the namespace, delete the directory.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from harness import proc
from harness.cluster.lab.paths import lab_cache
from harness.errors import ClusterError, PrerequisiteError
from harness.settings import file_lock

# Debian packages the lab needs (LAB.md), with netcat for the ssh ProxyCommand into the namespace, and
# lxc for the container backend (LAB-CONTAINERS.md; without its recommends: lxcfs is not needed).
APT_PACKAGES = (
    "vagrant", "vagrant-libvirt", "libvirt-daemon-system", "libvirt-clients", "qemu-system-x86", "qemu-utils",
    "dnsmasq-base", "iptables", "debootstrap", "netcat-openbsd", "openssh-client", "e2fsprogs", "iproute2",
    "util-linux", "lxc",
)  # fmt: skip
INSTALL_HINT = "apt-get install --no-install-recommends " + " ".join(APT_PACKAGES)

# The fixed libvirt paths each lab's daemons see as private directories.
PRIVATE_DIRS = {
    "etc": "/etc/libvirt",
    "lib": "/var/lib/libvirt",
    "run": "/run/libvirt",
    "cache": "/var/cache/libvirt",
    "log": "/var/log/libvirt",
}

# Appended to the lab's copy of qemu.conf. root: images live under root's cache directory, which the
# libvirt-qemu user cannot traverse; no cgroups: `ip netns exec` remounts /sys without them.
QEMU_CONF = """
# kubespray-upgrade-harness lab
user = "root"
group = "root"
security_driver = "none"
cgroup_controllers = [ ]
"""


def missing_packages() -> list[str]:
    """Lab packages not installed (one dpkg-query call; fast enough for every `up`)."""
    if not shutil.which("dpkg-query"):
        return [
            p for p, tool in (("vagrant", "vagrant"), ("libvirt-daemon-system", "libvirtd")) if not shutil.which(tool)
        ]
    res = proc.run(["dpkg-query", "-W", "-f=${Package} ${db:Status-Status}\n", *APT_PACKAGES], check=False)
    installed = {ln.split()[0] for ln in res.stdout.splitlines() if ln.endswith(" installed")}
    return [p for p in APT_PACKAGES if p not in installed]


def check_prerequisites() -> None:
    """Raise PrerequisiteError naming exactly what is missing and how to get it."""
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the lab needs root (network namespaces, libvirtd, debootstrap); run as root or use"
            " --provider static/vagrant"
        )
    missing = missing_packages()
    if missing:
        raise PrerequisiteError(
            f"the lab needs Debian packages that are not installed: {', '.join(missing)}."
            f" Run `harness lab setup` or: {INSTALL_HINT}"
        )


def setup(*, install: bool = True) -> list[str]:
    """Idempotent host preparation: apt packages and libvirt's directories. Returns what it installed."""
    if os.geteuid() != 0:
        check_prerequisites()  # raises the root message
    missing = missing_packages()
    if missing:
        if not install:
            check_prerequisites()
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            proc.run(["apt-get", "update", "-q"], env=env, timeout=900)
            proc.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env, timeout=1800)
        except proc.CommandError as e:
            raise PrerequisiteError(
                f"installing the lab's packages failed; install them by hand: {INSTALL_HINT}\n{e}"
            ) from e
    for d in PRIVATE_DIRS.values():
        # Mount points for the private bind mounts must exist in the root mount namespace.
        Path(d).mkdir(parents=True, exist_ok=True)
    check_prerequisites()
    return missing


# -- one lab's namespace and daemons ----------------------------------------------


@dataclass(frozen=True)
class LabNet:
    """A lab's network namespace and the libvirt daemons running in it."""

    netns: str
    libvirt_dir: Path

    @property
    def socket(self) -> Path:
        return self.libvirt_dir / "run" / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu:///system?socket={self.socket}"

    def virsh(self, *args: str, check: bool = True, timeout: float = 120) -> proc.Result:
        return proc.run(["virsh", "-q", "-c", self.uri, *args], check=check, timeout=timeout)

    # -- state queries (cheap, no side effects) --

    def exists(self) -> bool:
        return Path("/run/netns", self.netns).exists()

    def pids(self) -> list[int]:
        """Every process whose network namespace is the lab's: daemons, QEMU, dnsmasq, ssh proxies."""
        if not self.exists():
            return []
        res = proc.run(["ip", "netns", "pids", self.netns], check=False, timeout=30)
        return [int(p) for p in res.stdout.split()]

    def daemon_pid(self, daemon: str) -> int | None:
        pidfile = self.libvirt_dir / "run" / f"{daemon}.pid"
        try:
            pid = int(pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    def running(self) -> bool:
        return self.exists() and self.daemon_pid("libvirtd") is not None and self.socket.exists()

    # -- lifecycle --

    def start(self) -> None:
        """Namespace, private libvirt directories and virtlogd+libvirtd inside both. Idempotent."""
        if not self.exists():
            proc.run(["ip", "netns", "add", self.netns])
        proc.run(["ip", "-n", self.netns, "link", "set", "lo", "up"])
        if self.running():
            return
        self._prepare_dirs()
        mounts = " && ".join(
            f"mount --bind {shlex.quote(str(self.libvirt_dir / sub))} {target}" for sub, target in PRIVATE_DIRS.items()
        )
        # setsid: the daemons must not share the caller's process group (a Ctrl-C would reach them).
        # -p: their default pid files are in the shared /run.
        script = (
            f"{mounts} && virtlogd -d -p /run/libvirt/virtlogd.pid && exec libvirtd -d -p /run/libvirt/libvirtd.pid"
        )
        proc.run(
            ["setsid", "unshare", "--mount", "--propagation", "private", "sh", "-c", script],
            netns=self.netns,
            timeout=60,
        )
        deadline = time.monotonic() + 90  # its QEMU probe took longer than 30 s with the machine loaded
        while time.monotonic() < deadline:
            if self.running() and self._answers():
                self._share_capabilities()
                return
            time.sleep(0.2)
        log = self.libvirt_dir / "log" / "libvirtd.log"
        raise ClusterError(f"libvirtd did not come up in namespace {self.netns}; see {log}")

    def _answers(self) -> bool:
        """libvirtd answers a call: a fresh one probes QEMU first (~8 s, longer on a loaded machine),
        so a call that times out means not yet, not a failure."""
        try:
            return self.virsh("version", check=False, timeout=10).ok
        except subprocess.TimeoutExpired:
            return False

    def _share_capabilities(self) -> None:
        """Keep the first lab's probe of QEMU's capabilities for the next ones.

        A fresh libvirtd spends ~8 s probing QEMU; libvirt revalidates a cached probe against the
        binaries' timestamps, so a stale copy is only re-probed, never trusted.
        """
        caps = self.libvirt_dir / "cache" / "qemu" / "capabilities"
        with file_lock(lab_cache() / "capabilities.lock"):
            if caps.is_dir() and any(caps.iterdir()) and not any(_capabilities_template().glob("*.xml")):
                shutil.copytree(caps, _capabilities_template(), dirs_exist_ok=True)

    def _prepare_dirs(self) -> None:
        for sub in PRIVATE_DIRS:
            (self.libvirt_dir / sub).mkdir(parents=True, exist_ok=True)
        with file_lock(lab_cache() / "capabilities.lock"):
            if any(_capabilities_template().glob("*.xml")):
                shutil.copytree(
                    _capabilities_template(), self.libvirt_dir / "cache" / "qemu" / "capabilities", dirs_exist_ok=True
                )
        etc = self.libvirt_dir / "etc"
        if not (etc / "qemu.conf").exists():
            # The package's configuration, minus its domains and its autostarted `default` network.
            shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True, ignore=shutil.ignore_patterns("qemu"))
            (etc / "qemu" / "networks" / "autostart").mkdir(parents=True, exist_ok=True)
            with open(etc / "qemu.conf", "a") as f:
                f.write(QEMU_CONF)

    def stop(self) -> None:
        """Kill everything in the namespace (TERM, then KILL) and delete it. Safe on a half-made lab."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            pids = self.pids()
            for d in ("libvirtd", "virtlogd"):
                # A daemon could in principle have left the namespace list; its pid file still names it.
                pid = self.daemon_pid(d)
                if pid and pid not in pids:
                    pids.append(pid)
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and any(_alive(p) for p in pids):
                time.sleep(0.1)
        if self.exists():
            proc.run(["ip", "netns", "delete", self.netns], check=False, timeout=30)


def _capabilities_template() -> Path:
    return lab_cache() / "libvirt-capabilities"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False
