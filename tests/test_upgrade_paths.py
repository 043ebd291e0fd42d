"""Scenario -> stages, checked against a Kubespray-shaped repo's real tags before anything runs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_installer_kubespray import FakeVenvBuilder, make_kubespray_repo

from harness.errors import PlanError
from harness.installer.base import PLAYBOOKS_DIR
from harness.installer.kubespray import Kubespray
from harness.installer.lab import TAGS as LAB_TAGS
from harness.scenario.model import Scenario
from harness.upgrade import runner as runner_mod
from harness.upgrade.paths import pipeline, upgrade_stage

TOPOLOGY = {"nodes": [{"name": "node1", "roles": ["control-plane", "etcd", "worker"]}]}


def _ks(**over: Any) -> Scenario:
    data: dict[str, Any] = {
        "id": "ks-x",
        "description": "d",
        "installer": "kubespray",
        "topology": TOPOLOGY,
        "baseline": {"ref": "v2.30.0"},
        "target": {"ref": "v2.31.0"},
        "path": "full",
    }
    data.update(over)
    return Scenario.model_validate(data)


def _lab(**over: Any) -> Scenario:
    data: dict[str, Any] = {
        "id": "lab-x",
        "description": "d",
        "installer": "lab",
        "topology": TOPOLOGY,
        "baseline": {"versions": {"etcd_version": "3.5.16"}},
        "target": {"versions": {"etcd_version": "3.5.21"}},
        "path": "component",
        "tags": ["etcd"],
    }
    data.update(over)
    return Scenario.model_validate(data)


@pytest.fixture(scope="module")
def ks(tmp_path_factory: pytest.TempPathFactory) -> Kubespray:
    root = tmp_path_factory.mktemp("paths")
    repo = make_kubespray_repo(root / "kubespray")
    return Kubespray.open(repo, cache=root / "cache", venv_builder=FakeVenvBuilder())


def test_full_path_sets_upgrade_cluster_setup() -> None:
    s = upgrade_stage(_ks(target={"ref": "v2.31.0", "versions": {"kube_version": "v1.35.4"}}))
    assert (s.playbook, s.runner, s.ref, s.tags) == ("cluster.yml", "kubespray", "v2.31.0", ())
    assert s.extravars == {"kube_version": "1.35.4", "upgrade_cluster_setup": True}
    assert s.argv()[:2] == ["ansible-playbook", "cluster.yml"] and "upgrade_cluster_setup=True" in s.argv()[-1]


def test_versions_rendered_with_v_for_old_refs() -> None:
    s = upgrade_stage(_ks(baseline={"ref": "v2.23.0"}, target={"ref": "v2.24.1", "versions": {"kube_version": "1.28.6"}}))
    assert s.extravars["kube_version"] == "v1.28.6"


def test_graceful_path() -> None:
    s = upgrade_stage(_ks(path="graceful"))
    assert s.playbook == "upgrade-cluster.yml" and "upgrade_cluster_setup" not in s.extravars and s.tags == ()


def test_component_path_checks_real_tags_and_normalises_master(ks: Kubespray) -> None:
    tags = ks.list_tags("v2.31.0")
    s = upgrade_stage(_ks(path="component", tags=["master", "etcd"]), available_tags=tags)
    assert s.tags == ("control-plane", "etcd") and s.playbook == "cluster.yml"
    assert s.argv()[2:4] == ["--tags", "control-plane,etcd"]


def test_component_tag_missing_at_the_ref_fails_before_any_playbook_runs(
    ks: Kubespray, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ran: list[str] = []
    monkeypatch.setattr(runner_mod, "run_playbook", lambda *a, **k: ran.append("ran"))
    import ansible_runner

    monkeypatch.setattr(ansible_runner, "run", lambda **k: ran.append("ran"))
    scenario = _ks(path="component", tags=["helm"])  # a tag the repo's cluster.yml does not carry
    with pytest.raises(PlanError) as e:
        pipeline(scenario, tmp_path, available_tags=ks.list_tags("v2.31.0"))
    msg = str(e.value)
    assert "no task tagged 'helm'" in msg and "Kubespray v2.31.0 cluster.yml" in msg
    assert "control-plane" in msg and "etcd-secrets" in msg  # the tags that do exist
    assert ran == []


def test_component_path_without_the_refs_tags_is_refused() -> None:
    with pytest.raises(PlanError, match="without Kubespray v2.31.0's real tags"):
        upgrade_stage(_ks(path="component", tags=["etcd"]))


def test_lab_mapping() -> None:
    comp = upgrade_stage(_lab())
    assert (comp.playbook, comp.runner, comp.ref, comp.tags) == ("lab/cluster.yml", "harness", None, ("etcd",))
    assert comp.extravars == {"etcd_version": "3.5.21"}
    engine = {"versions": {"etcd_version": "3.5.16", "containerd_version": "1.7.24"}}
    assert upgrade_stage(_lab(tags=["docker"], target=engine)).tags == ("container-engine",)
    full = upgrade_stage(_lab(path="full", tags=()))
    assert full.playbook == "lab/cluster.yml" and full.extravars["upgrade_cluster_setup"] is True
    assert upgrade_stage(_lab(path="graceful", tags=())).playbook == "lab/upgrade-cluster.yml"
    with pytest.raises(PlanError, match="lab installer's lab/cluster.yml has no task tagged 'network'"):
        # Loading refuses this scenario (the tag moves nothing it changes); the stage still checks.
        upgrade_stage(_lab().model_copy(update={"tags": ("network",)}), available_tags=LAB_TAGS)


def test_pipeline_stages_and_idents(tmp_path: Path, ks: Kubespray) -> None:
    stages = pipeline(_ks(idempotence=True), tmp_path)
    assert [s.ident for s in stages] == [
        "01-plant", "02-upgrade", "03-idempotence", "04-collect",
    ]
    assert [s.runner for s in stages] == ["harness", "kubespray", "kubespray", "harness"]
    assert stages[0].extravars["harness_out"] == str(tmp_path / "01-plant")
    assert stages[0].extravars["harness_secret_dir"] == str(tmp_path / "secrets")
    assert stages[2].extravars == stages[1].extravars and stages[2].purpose == "idempotence"
    assert stages[-1].may_fail and not stages[2].may_fail
    for s in stages:
        if s.runner == "harness":
            assert (PLAYBOOKS_DIR / s.playbook).exists(), s.playbook
    # No Kubernetes, no plant stage: the before step plants the etcd sentinels and container canaries.
    lab = pipeline(_lab(), tmp_path)
    assert [s.ident for s in lab] == ["01-upgrade", "02-collect"]


def test_lab_tags_match_the_lab_playbooks() -> None:
    from harness.installer.kubespray import list_playbook_tags

    if not (PLAYBOOKS_DIR / "lab" / "cluster.yml").exists():
        pytest.skip("the lab installer's playbooks are not in this checkout")
    cluster = list_playbook_tags(PLAYBOOKS_DIR, "lab/cluster.yml")
    upgrade = list_playbook_tags(PLAYBOOKS_DIR, "lab/upgrade-cluster.yml")
    assert cluster | upgrade == LAB_TAGS
    # Kubespray's drain and uncordon tags belong to its upgrade playbook only.
    assert LAB_TAGS - cluster == {"pre-upgrade", "post-upgrade"}
