"""The lab's offline Vagrant box: Debian bookworm from the machine's own apt mirror, booted kernel-direct.

Nothing can be downloaded from Vagrant Cloud here, so the box is built with debootstrap. The result is
cached under a hash of every input (suite, mirror, packages, ssh key, recipe), so a second call costs a
few file checks.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from dataclasses import dataclass
from pathlib import Path

from harness import debian, proc, progress
from harness.cluster.lab.paths import lab_cache, vagrant_home
from harness.errors import ClusterError, PrerequisiteError
from harness.settings import file_lock

SUITE = "bookworm"
# LAB.md's list; dbus so `systemctl` works for non-root users, netbase for /etc/services and /etc/protocols;
# openssl and curl because Kubespray puts them on every node (roles/system_packages/vars/main.yml,
# unconditional `pkgs`) and the probes read certificates and etcd's /version with them; python3-apt
# because Kubespray's system_packages puts it on Debian nodes and its roles' `package` tasks need it
# (ks-lab-container-engine's "Runc | Remove package" tried to apt-get it from a guest with no archive).
PACKAGES = (
    "systemd-sysv", "udev", "linux-image-amd64", "openssh-server", "sudo", "python3", "iproute2",
    "isc-dhcp-client", "ifupdown", "procps", "kmod", "dbus", "netbase", "openssl", "curl", "ca-certificates",
    "python3-apt",
)  # fmt: skip
CMD_LINE = "root=/dev/vda rw console=ttyS0 net.ifnames=0"
DISK_GIB = 4
# Bump when the recipe below changes in a way the other inputs do not capture.
RECIPE = "3"

# The start of every lab node's customisation script, run inside its tree (chroot) with the public key as
# $1: the `vagrant` user, passwordless sudo and the lab's ssh key. The box and the container nodes' base
# (rootfs.py) each add their own; both scripts are in their cache keys, so this text is part of them.
VAGRANT_USER_SCRIPT = r"""set -eu
id vagrant >/dev/null 2>&1 || useradd -m -s /bin/bash -G sudo vagrant
echo 'vagrant ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/vagrant
chmod 0440 /etc/sudoers.d/vagrant
install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh
printf '%s\n' "$1" > /home/vagrant/.ssh/authorized_keys
chown vagrant:vagrant /home/vagrant/.ssh/authorized_keys
chmod 600 /home/vagrant/.ssh/authorized_keys
"""

# The box's: a VM's hostname, hosts, DHCP on eth0 and its root disk, then what every node needs.
_CUSTOMIZE = VAGRANT_USER_SCRIPT + r"""echo lab > /etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\tlab\n' > /etc/hosts
printf 'auto lo\niface lo inet loopback\n\nauto eth0\niface eth0 inet dhcp\n' > /etc/network/interfaces
echo '/dev/vda / ext4 defaults,errors=remount-ro 0 1' > /etc/fstab
# Every VM must get its own machine-id (systemd makes one at first boot when the file is empty).
: > /etc/machine-id
rm -f /var/lib/dbus/machine-id
# Timers that would steal the guest's emulated CPU in the middle of a measurement.
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer dpkg-db-backup.timer; do
  ln -sf /dev/null /etc/systemd/system/$t
done
echo 'UseDNS no' > /etc/ssh/sshd_config.d/lab.conf
apt-get clean
"""

_BOX_VAGRANTFILE = """Vagrant.configure("2") do |config|
  config.vm.provider :libvirt do |libvirt|
    libvirt.disk_bus = "virtio"
  end
end
"""


@dataclass(frozen=True)
class Box:
    """A built, registered box and what booting it needs (no bootloader: the kernel is given to QEMU)."""

    name: str
    kernel: Path
    initrd: Path
    cmd_line: str
    private_key: Path
    user: str = "vagrant"


def debian_mirror() -> str:
    """The machine's Debian mirror serving the box's suite (harness.debian; `HARNESS_DEBIAN_MIRROR` overrides)."""
    return debian.debian_mirror(SUITE)


def mirror_from_sources(text: str, *, deb822: bool) -> str | None:
    """The first `deb` URI serving SUITE's main component, in one-line or deb822 format."""
    return debian.mirror_from_sources(text, deb822=deb822, suite=SUITE)


def ssh_key() -> Path:
    """The lab's private key (made once); its public half is baked into the box."""
    key = lab_cache() / "id_ed25519"
    with file_lock(lab_cache() / "key.lock"):
        if not key.exists():
            proc.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kubespray-upgrade-harness-lab", "-f", str(key)]
            )
    return key


def box_inputs(mirror: str, public_key: str, extra_packages: tuple[str, ...] = ()) -> dict[str, object]:
    return {
        "suite": SUITE,
        "mirror": mirror,
        "packages": sorted(set(PACKAGES) | set(extra_packages)),
        "public_key": public_key.strip(),
        "customize": _CUSTOMIZE,
        "cmd_line": CMD_LINE,
        "disk_gib": DISK_GIB,
        "recipe": RECIPE,
    }


def box_hash(inputs: dict[str, object]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()[:12]


def _registered(name: str) -> bool:
    # `vagrant box list` costs seconds of Ruby start-up; the box's image on disk says the same.
    return (vagrant_home() / "boxes" / name / "0" / "libvirt" / "box.img").is_file()


def ensure_box(extra_packages: tuple[str, ...] = ()) -> Box:
    """Build and register the box unless an identical one exists; returns how to boot it."""
    key = ssh_key()
    inputs = box_inputs(debian_mirror(), key.with_suffix(".pub").read_text(), extra_packages)
    digest = box_hash(inputs)
    name = f"harness-{SUITE}-{digest}"
    out = lab_cache() / "boxes" / digest
    box = Box(name=name, kernel=out / "vmlinuz", initrd=out / "initrd.img", cmd_line=CMD_LINE, private_key=key)
    with file_lock(lab_cache() / "box.lock"):
        if (out / "inputs.json").is_file() and box.kernel.is_file() and box.initrd.is_file() and _registered(name):
            return box
        _build(inputs, out, name)
    return box


def _build(inputs: dict[str, object], out: Path, name: str) -> None:
    for tool in ("debootstrap", "mkfs.ext4", "qemu-img", "vagrant", "chroot"):
        if not shutil.which(tool):
            raise PrerequisiteError(
                f"{tool} is not installed; run `harness lab setup` (it installs the lab's apt packages)"
            )
    work = out.with_name(out.name + ".tmp")
    shutil.rmtree(work, ignore_errors=True)
    rootfs = work / "rootfs"
    rootfs.mkdir(parents=True)
    try:
        with progress.step(f"debootstrap {inputs['suite']} (about 80 s)") as on_line:
            include = "--include=" + ",".join(inputs["packages"])  # type: ignore[arg-type]
            argv = [
                "debootstrap",
                "--variant=minbase",
                include,
                str(inputs["suite"]),
                str(rootfs),
                str(inputs["mirror"]),
            ]
            proc.stream(argv, on_line=on_line, timeout=1800)
        with progress.step("configuring the box"):
            script = rootfs / "tmp" / "customize.sh"
            script.write_text(str(inputs["customize"]))
            proc.run(["chroot", str(rootfs), "/bin/sh", "/tmp/customize.sh", str(inputs["public_key"])], timeout=300)
            script.unlink()
            kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
            initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
            if not kernels or not initrds:
                raise ClusterError(
                    f"debootstrap left no kernel or initrd in {rootfs / 'boot'}; is linux-image-amd64 installable?"
                )
            shutil.copyfile(kernels[-1], work / "vmlinuz")
            shutil.copyfile(initrds[-1], work / "initrd.img")
        with progress.step("making the disk image"):
            raw = work / "disk.raw"
            with open(raw, "wb") as f:
                f.truncate(int(inputs["disk_gib"]) * 1024**3)  # type: ignore[call-overload]
            proc.run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw)], timeout=600)
            shutil.rmtree(rootfs)
            img = work / "box.img"
            proc.run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(img)], timeout=600)
            raw.unlink()
        with progress.step(f"registering box {name}"):
            box_file = work / f"{name}.box"
            (work / "metadata.json").write_text(
                json.dumps({"provider": "libvirt", "format": "qcow2", "virtual_size": inputs["disk_gib"]})
            )
            (work / "Vagrantfile").write_text(_BOX_VAGRANTFILE)
            # Uncompressed: gzip costs ~20 s and saves nothing on a local disk.
            with tarfile.open(box_file, "w") as tar:
                for member in ("metadata.json", "Vagrantfile", "box.img"):
                    tar.add(work / member, arcname=member)
            (work / "box.img").unlink()
            env = {**os.environ, "VAGRANT_HOME": str(vagrant_home())}
            # cwd: vagrant reads any Vagrantfile in the working directory, even for `box add`.
            proc.run(
                ["vagrant", "box", "add", "--force", "--name", name, str(box_file)], env=env, cwd=str(work), timeout=600
            )
            for leftover in (box_file, work / "metadata.json", work / "Vagrantfile"):
                leftover.unlink()
            shutil.rmtree(work / ".vagrant", ignore_errors=True)
        (work / "inputs.json").write_text(json.dumps(inputs, indent=2, sort_keys=True))
        shutil.rmtree(out, ignore_errors=True)
        work.rename(out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
