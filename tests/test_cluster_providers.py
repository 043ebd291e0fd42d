"""`--provider` to a Provider: one factory per name, each given the run's options."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cluster.lab.lxc import LxcProvider
from harness.cluster.lab.provider import LabProvider
from harness.cluster.providers import FACTORIES, provider_for
from harness.cluster.static import StaticProvider
from harness.cluster.vagrant import VagrantProvider
from harness.errors import HarnessError
from harness.options import PROVIDERS, Options


def test_every_provider_option_has_a_factory() -> None:
    assert set(FACTORIES) == set(PROVIDERS)


def test_each_provider_gets_its_options(tmp_path: Path) -> None:
    lab = provider_for(Options(provider="lab", worker="gw2"))
    assert isinstance(lab, LxcProvider) and lab.lab_name == "pytest-gw2"  # containers: the lab's default
    vms = provider_for(Options(provider="lab", worker="gw2", lab_backend="qemu"))
    assert isinstance(vms, LabProvider) and vms.lab_name == "pytest-gw2"
    vp = provider_for(Options(provider="vagrant", box="b", worker="gw2", vagrant_provider="virtualbox",
                              vagrant_options={"cpus": 2, "ssh.username": "u"}))
    assert isinstance(vp, VagrantProvider)
    assert (vp.vagrant_provider, vp.box, vp.cluster_prefix) == ("virtualbox", "b", "pytest-gw2")
    assert (vp.options, vp.ssh) == ({"cpus": 2}, {"username": "u"})
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all: {hosts: {n1: {}}}\n")
    static = provider_for(Options(provider="static", inventory=inv))
    assert isinstance(static, StaticProvider) and static.inventory_file == inv


def test_options_that_skipped_resolve_are_still_refused() -> None:
    with pytest.raises(HarnessError, match="--provider vagrant needs --box"):
        provider_for(Options(provider="vagrant"))
    with pytest.raises(HarnessError, match="no provider 'cloud'"):
        provider_for(Options(provider="cloud"))


def test_the_lab_backend_comes_from_the_flag_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.options import OptionError, resolve_lab_backend

    monkeypatch.delenv("HARNESS_LAB_BACKEND", raising=False)
    assert resolve_lab_backend(None) == "lxc"
    monkeypatch.setenv("HARNESS_LAB_BACKEND", "qemu")
    assert resolve_lab_backend(None) == "qemu"
    assert resolve_lab_backend("lxc") == "lxc"
    with pytest.raises(OptionError, match="--lab-backend 'docker': choose one of lxc, qemu"):
        resolve_lab_backend("docker")
    monkeypatch.setenv("HARNESS_LAB_BACKEND", "vm")
    with pytest.raises(OptionError, match="HARNESS_LAB_BACKEND 'vm': choose one of lxc, qemu"):
        resolve_lab_backend(None)
