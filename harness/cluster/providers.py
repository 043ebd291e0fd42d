"""Which provider a run's options name: the one place `--provider` turns into a `Provider`."""

from __future__ import annotations

from collections.abc import Callable

from harness.cluster.base import Provider
from harness.errors import HarnessError
from harness.options import Options


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
