"""How scenarios of different installers share the lab: one set of VMs, one baseline snapshot."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.installer.registry import baseline_key
from harness.scenario import load_catalogue
from harness.scenario.select import unmet_requirement, with_refs


def _by_id() -> dict:
    return {s.id: s for s in load_catalogue(None)}


def test_kubespray_on_the_lab_restores_the_lab_scenarios_baseline() -> None:
    scenarios = _by_id()

    def key(sid: str) -> str:
        return baseline_key("lab", scenarios[sid]).snapshot_name

    assert key("ks-lab-etcd") == key("ks-lab-etcd-documented") == key("lab-etcd") == key("lab-graceful")
    # A Kubespray-deployed baseline is its own, whatever the roles.
    assert key("ks-etcd") != key("lab-etcd")


def test_requirements_follow_tags_and_baseline() -> None:
    scenarios = _by_id()
    assert scenarios["ks-lab-etcd"].requirements() == {"kubespray"}
    assert scenarios["ks-etcd"].requirements() == {"kubespray", "kubernetes"}  # its baseline is Kubespray's
    assert unmet_requirement(scenarios["ks-lab-etcd"], kubespray="/k", provider="lab") is None
    assert "to install Kubernetes, which the lab cannot give it" in (
        unmet_requirement(scenarios["ks-etcd"], kubespray="/k", provider="lab") or "")
    # Kubespray over the lab installer's Kubernetes: the container lab hosts it, the QEMU one does not.
    node = scenarios["ks-lab-kube-node"]
    assert node.requirements() == {"kubespray", "kubernetes"}
    assert unmet_requirement(node, kubespray="/k", provider="lab", lab_backend="lxc") is None
    assert "container backend" in (unmet_requirement(node, kubespray="/k", provider="lab", lab_backend="qemu") or "")
    assert "--kubespray" in (unmet_requirement(node, kubespray=None, provider="lab") or "")


def test_from_and_to_move_only_the_kubespray_that_upgrades_a_lab_baseline() -> None:
    sc = with_refs(_by_id()["ks-lab-etcd"], "v2.30.0", "v2.31.0")
    assert (sc.baseline.ref, sc.baseline.installer, sc.target.ref) == (None, "lab", "v2.31.0")


def test_documented_failure_expects_nothing_to_move_but_keeps_its_ids() -> None:
    sc = _by_id()["ks-lab-etcd-documented"]
    assert sc.upgraded_components() == set()
    assert sc.expected_versions()["etcd"] == "3.4.23"  # left on its baseline: that is what is checked
    assert "etcd" in sc.test_id


def test_restored_kubespray_baseline_keeps_the_deploying_runs_kubeconfig(tmp_path, monkeypatch) -> None:
    """A scenario restoring a Kubespray baseline another scenario deployed reaches the API through the
    deploying run's admin.conf, kept per snapshot and private to root."""
    from types import SimpleNamespace

    from harness.pipeline.baseline import baseline_kubeconfig
    from harness.record import ScenarioRun

    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    sc = _by_id()["ks-etcd"]
    cluster = SimpleNamespace(provider="vagrant", name="")
    first = ScenarioRun(sc, tmp_path / "a")
    conf = first.dir / "runner" / "00-baseline" / "inventory" / "artifacts" / "admin.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("apiVersion: v1\nkind: Config\n")
    first.baseline_outcome = "deployed"
    kept = baseline_kubeconfig(first, cluster, "baseline-abc")  # type: ignore[arg-type]
    assert kept is not None and kept.read_text() == conf.read_text()
    assert kept.stat().st_mode & 0o077 == 0
    second = ScenarioRun(sc, tmp_path / "b")
    second.baseline_outcome = "restored"
    assert baseline_kubeconfig(second, cluster, "baseline-abc") == kept  # type: ignore[arg-type]
    assert baseline_kubeconfig(second, cluster, "baseline-other") is None  # type: ignore[arg-type]


def test_documented_failure_checks_what_it_moves_before_it_stops() -> None:
    """ks-lab-container-engine stops at crictl's download after runc's role replaced runc: runc is
    expected at the target, containerd at its baseline."""
    sc = _by_id()["ks-lab-container-engine"]
    assert sc.upgraded_components() == {"runc"}
    assert sc.attempted_components() == {"containerd", "runc"}


def test_documented_failure_cannot_claim_to_move_what_its_tags_leave(tmp_path) -> None:
    from harness.errors import ScenarioError
    from harness.scenario.loader import load_file

    text = (Path(__file__).parents[1] / "scenarios" / "kubespray-lab.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("moves: [runc]", "moves: [runc, etcd]"))
    with pytest.raises(ScenarioError) as err:
        load_file(bad)
    assert "ks-lab-container-engine" in str(err.value) and "expect_failure.moves" in str(err.value)
    assert "etcd is not moved" in str(err.value)


def test_nodes_are_held_to_the_table_of_the_installer_that_deployed_them() -> None:
    """Kubespray over a lab baseline: the nodes carry the lab's components (no crictl, which Kubespray's
    node role does not install), its Kubernetes where the baseline pins kube_version."""
    from harness.checks.suite import scenario_installer
    from harness.checks.versions import components_for_roles

    scenarios = _by_id()
    assert scenario_installer(scenarios["ks-lab-kube-node"]) == "lab"
    assert scenario_installer(scenarios["ks-lab-etcd"]) == "lab"
    assert scenario_installer(scenarios["ks-etcd"]) == "kubespray"
    assert scenario_installer(scenarios["lab-kube-full"]) == "lab"
    worker = components_for_roles(("etcd", "worker"), scenario_installer(scenarios["ks-lab-kube-node"]), kube=True)
    assert "kubelet" in worker and "crictl" not in worker
