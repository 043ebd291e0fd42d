"""Which provider a run's options name: the one place `--provider` turns into a `Provider`."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from harness.cluster.base import Provider
from harness.errors import HarnessError, OptionError

PROVIDERS = ("lab", "vagrant", "static")
# The lab's node backends (harness/cluster/lab/): system containers at native speed, or QEMU VMs for
# what needs a kernel of its own per node. `HARNESS_LAB_BACKEND` sets the default.
LAB_BACKENDS = ("lxc", "qemu")
DEFAULT_LAB_BACKEND = "lxc"
# What Vagrant itself falls back to is virtualbox; the harness's own machines run libvirt.
DEFAULT_VAGRANT_PROVIDER = "libvirt"
VAGRANT_PROVIDER_NAME = re.compile(r"^[a-z0-9_-]+$")


class Options(Protocol):
    """What a provider is configured from: the run's options (harness.options.Options) have these."""

    @property
    def provider(self) -> str: ...
    @property
    def worker(self) -> str: ...
    @property
    def lab_backend(self) -> str: ...
    @property
    def box(self) -> str | None: ...
    @property
    def vagrant_provider(self) -> str: ...
    @property
    def vagrant_options(self) -> Mapping[str, Any]: ...
    @property
    def inventory(self) -> Path | None: ...


def resolve_lab_backend(flag: str | None) -> str:
    """`--lab-backend`, else `HARNESS_LAB_BACKEND`, else the default; refused naming where it came from."""
    value, where = (flag, "--lab-backend") if flag else (os.environ.get("HARNESS_LAB_BACKEND"), "HARNESS_LAB_BACKEND")
    if not value:
        return DEFAULT_LAB_BACKEND
    if value not in LAB_BACKENDS:
        raise OptionError(f"{where} {value!r}: choose one of {', '.join(LAB_BACKENDS)}")
    return value


def _lab(options: Options) -> Provider:
    name = f"pytest-{options.worker}"
    if options.lab_backend == "lxc":
        from harness.cluster.lab.lxc import LxcProvider

        return LxcProvider(name)
    from harness.cluster.lab.provider import LabProvider

    return LabProvider(name)


def _vagrant(options: Options) -> Provider:
    from harness.cluster.vagrant import VagrantProvider

    if not options.box:
        raise HarnessError("--provider vagrant needs --box NAME")
    return VagrantProvider(
        options.vagrant_provider, options.box, name=f"pytest-{options.worker}", options=options.vagrant_options
    )


def _static(options: Options) -> Provider:
    from harness.cluster.static import StaticProvider

    if options.inventory is None:
        raise HarnessError("--provider static needs --inventory FILE")
    return StaticProvider(options.inventory)


# Imported lazily, each: the lab's and Ansible's modules cost seconds that other providers need not pay.
FACTORIES: dict[str, Callable[[Options], Provider]] = {"lab": _lab, "vagrant": _vagrant, "static": _static}


def provider_for(options: Options) -> Provider:
    """The provider `options.provider` names, configured from the run's options."""
    try:
        factory = FACTORIES[options.provider]
    except KeyError:
        raise HarnessError(f"no provider {options.provider!r}; providers: {', '.join(FACTORIES)}") from None
    return factory(options)
