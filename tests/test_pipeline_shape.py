"""How scenarios of different installers share the lab: one set of VMs, one baseline snapshot."""

from __future__ import annotations

from harness.cluster.base import ClusterSpec
from harness.cluster.baseline import BaselineKey
from harness.pipeline import _deployed_shape
from harness.scenario import load_catalogue
from harness.scenario.select import unmet_requirement, with_refs


def _by_id() -> dict:
    return {s.id: s for s in load_catalogue(None)}


def test_kubespray_on_the_lab_restores_the_lab_scenarios_baseline() -> None:
    scenarios = _by_id()

    def key(sid: str) -> str:
        sc = scenarios[sid]
        spec = ClusterSpec(name="", nodes=_deployed_shape(sc))
        return BaselineKey.of("lab", spec, sc.baseline_installer, sc.baseline.ref, sc.baseline.versions).snapshot_name

    assert key("ks-lab-etcd") == key("ks-lab-etcd-documented") == key("lab-etcd") == key("lab-graceful")
    # A Kubespray-deployed baseline is its own, whatever the roles.
    assert key("ks-etcd") != key("lab-etcd")


def test_requirements_follow_tags_and_baseline() -> None:
    scenarios = _by_id()
    assert scenarios["ks-lab-etcd"].requirements() == {"kubespray"}
    assert scenarios["ks-etcd"].requirements() == {"kubespray", "kubernetes"}  # its baseline is Kubespray's
    assert unmet_requirement(scenarios["ks-lab-etcd"], kubespray="/k", provider="lab") is None
    assert "control plane" in (unmet_requirement(scenarios["ks-etcd"], kubespray="/k", provider="lab") or "")


def test_from_and_to_move_only_the_kubespray_that_upgrades_a_lab_baseline() -> None:
    sc = with_refs(_by_id()["ks-lab-etcd"], "v2.30.0", "v2.31.0")
    assert (sc.baseline.ref, sc.baseline.installer, sc.target.ref) == (None, "lab", "v2.31.0")


def test_documented_failure_expects_nothing_to_move_but_keeps_its_ids() -> None:
    sc = _by_id()["ks-lab-etcd-documented"]
    assert sc.upgraded_components() == set()
    assert sc.expected_versions()["etcd"] == "3.4.23"  # left on its baseline: that is what is checked
    assert "etcd" in sc.test_id
