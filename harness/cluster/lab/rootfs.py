"""The container lab's base root filesystem: Debian bookworm from the machine's own apt mirror.

Every container node is an overlay over this one read-only tree (harness/cluster/lab/lxc_nodes.py), so
it is built once per set of inputs (suite, mirror, packages, the lab's ssh key, the recipe) and cached
under a hash of them, like the QEMU lab's box. No kernel, udev, DHCP client or ifupdown: a container
node shares the host's kernel and gets its address from LXC before its init starts.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from harness import proc, progress
from harness.cluster.lab.box import SUITE, VAGRANT_USER_SCRIPT, debian_mirror, ssh_key
from harness.cluster.lab.paths import lab_cache
from harness.errors import ClusterError, PrerequisiteError
from harness.settings import file_lock

# What the QEMU box carries that a node needs without a kernel of its own (box.PACKAGES says why each),
# plus iptables and conntrack (Kubespray puts them on every node; kube-proxy needs them) and the CNI
# plugins the lab's Kubernetes networks pods with (bridge, host-local, portmap in /usr/lib/cni: no
# release of them can be downloaded here).
PACKAGES = (
    "systemd-sysv", "openssh-server", "sudo", "python3", "iproute2", "procps", "kmod", "dbus", "netbase",
    "openssl", "curl", "ca-certificates", "python3-apt", "iptables", "conntrack", "containernetworking-plugins",
)  # fmt: skip
# Bump when the recipe below changes in a way the other inputs do not capture.
RECIPE = "1"

# Runs inside the rootfs (chroot), after the `vagrant` user and its key (box.VAGRANT_USER_SCRIPT).
_CUSTOMIZE = VAGRANT_USER_SCRIPT + r"""# Each node gets its own machine-id: systemd writes one at first boot when the file is empty.
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Timers that would steal CPU in the middle of a measurement; systemd-sysctl would apply the package's
# sysctl.d files (kernel.pid_max, fs.protected_*) to the host's kernel, which nodes share.
for u in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer \
         systemd-sysctl.service; do
  ln -sf /dev/null /etc/systemd/system/$u
done
echo 'UseDNS no' > /etc/ssh/sshd_config.d/lab.conf
apt-get clean
rm -rf /var/lib/apt/lists/*
"""


@dataclass(frozen=True)
class Rootfs:
    """A built base tree and the key its `vagrant` user accepts."""

    path: Path
    private_key: Path
    user: str = "vagrant"


def rootfs_inputs(mirror: str, public_key: str) -> dict[str, object]:
    return {
        "suite": SUITE,
        "mirror": mirror,
        "packages": sorted(PACKAGES),
        "public_key": public_key.strip(),
        "customize": _CUSTOMIZE,
        "recipe": RECIPE,
    }


def ensure_rootfs() -> Rootfs:
    """Build the base tree unless an identical one exists (~50 s with a warm apt mirror; cached after)."""
    key = ssh_key()
    inputs = rootfs_inputs(debian_mirror(), key.with_suffix(".pub").read_text())
    digest = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]
    out = lab_cache() / "rootfs" / digest
    rootfs = Rootfs(path=out / "rootfs", private_key=key)
    with file_lock(lab_cache() / "rootfs.lock"):
        if not (out / "inputs.json").is_file():
            _build(inputs, out)
    return rootfs


def _build(inputs: dict[str, object], out: Path) -> None:
    for tool in ("debootstrap", "chroot"):
        if not shutil.which(tool):
            raise PrerequisiteError(f"{tool} is not installed; run `harness lab setup` (it installs the lab's apt packages)")
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    tree = work / "rootfs"
    tree.mkdir(parents=True)
    try:
        with progress.step(f"debootstrap {inputs['suite']} for container nodes (about 60 s)") as on_line:
            include = "--include=" + ",".join(inputs["packages"])  # type: ignore[arg-type]
            argv = ["debootstrap", "--variant=minbase", include, str(inputs["suite"]), str(tree), str(inputs["mirror"])]
            proc.stream(argv, on_line=on_line, timeout=1800)
        with progress.step("configuring the container nodes' base"):
            script = tree / "tmp" / "customize.sh"
            script.write_text(str(inputs["customize"]))
            proc.run(["chroot", str(tree), "/bin/sh", "/tmp/customize.sh", str(inputs["public_key"])], timeout=300)
            script.unlink()
            if not (tree / "sbin" / "init").exists():
                raise ClusterError(f"debootstrap left no /sbin/init in {tree}; is systemd-sysv installable?")
        (work / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True))
        shutil.rmtree(out, ignore_errors=True)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
