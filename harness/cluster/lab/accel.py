"""KVM or TCG: decided by booting the box's kernel, never by the mere presence of /dev/kvm.

LAB.md: on these machines /dev/kvm opens and KVM_CREATE_VM succeeds, yet a guest hangs right after
"Probing EDD". So the probe boots the kernel with no root disk under KVM and waits for the panic that
proves it ran through early boot; a hang or abort means TCG. The verdict is cached per kernel, QEMU
and host kernel.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Literal

from harness import proc
from harness.cluster.lab.paths import lab_cache
from harness.settings import file_lock

Accel = Literal["kvm", "tcg"]
QEMU = "qemu-system-x86_64"
PROBE_SECONDS = 20.0

# vagrant-libvirt options per accelerator. TCG: `qemu64`, since `-cpu host` needs KVM.
LIBVIRT_OPTIONS: dict[str, dict[str, str]] = {
    "kvm": {"driver": "kvm", "cpu_mode": "host-passthrough"},
    "tcg": {"driver": "qemu", "cpu_mode": "custom", "cpu_model": "qemu64"},
}


def probe_argv(accel: Accel, kernel: Path) -> list[str]:
    cpu = "host" if accel == "kvm" else "qemu64"
    return [
        QEMU, "-accel", accel, "-cpu", cpu, "-m", "256", "-smp", "1",
        "-display", "none", "-serial", "stdio", "-monitor", "none", "-nic", "none", "-no-reboot",
        "-kernel", str(kernel),
        # No initrd and no root disk: a working guest reaches "Kernel panic" within seconds and,
        # with panic=-1 and -no-reboot, QEMU exits.
        "-append", "console=ttyS0 panic=-1 root=/dev/nonexistent",
    ]  # fmt: skip


def boots(accel: Accel, kernel: Path, timeout: float = PROBE_SECONDS) -> bool:
    """Does a guest kernel get through early boot under `accel`?"""
    try:
        result = proc.run(probe_argv(accel, kernel), check=False, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False  # the LAB.md hang
    return "Kernel panic" in result.stdout


def _cache_key(kernel: Path) -> str:
    qemu = proc.run([QEMU, "--version"], check=False).stdout.splitlines()[:1]
    stat = kernel.stat()
    raw = json.dumps([kernel.name, stat.st_size, qemu, platform.release()])
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def detect(kernel: Path) -> Accel:
    """KVM if a guest really boots with it, else TCG. `HARNESS_LAB_ACCEL=kvm|tcg` skips the probe."""
    forced = os.environ.get("HARNESS_LAB_ACCEL", "").lower()
    if forced in ("kvm", "tcg"):
        return forced  # type: ignore[return-value]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "tcg"
    cache = lab_cache() / "accel.json"
    key = _cache_key(kernel)
    with file_lock(lab_cache() / "accel.lock"):
        known: dict[str, str] = json.loads(cache.read_text()) if cache.is_file() else {}
        if known.get(key) in ("kvm", "tcg"):
            return known[key]  # type: ignore[return-value]
        verdict: Accel = "kvm" if boots("kvm", kernel) else "tcg"
        known[key] = verdict
        cache.write_text(json.dumps(known, indent=2))
    return verdict
