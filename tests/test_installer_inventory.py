"""Inventory and group_vars written into an ansible-runner private data dir, read back by real Ansible."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import yaml

from harness.cluster.base import Cluster, Node
from harness.installer.inventory import harness_vars, offline_vars, render_versions, write_inventory
from harness.plan.versions import Ref

ANSIBLE_INVENTORY = Path(sys.executable).parent / "ansible-inventory"


class StaticCluster(Cluster):
    provider = "test"

    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool:
        return False

    def destroy(self) -> None: ...


def _cluster(tmp_path: Path) -> StaticCluster:
    nodes = [
        Node("node1", ("control-plane", "etcd", "worker"), "10.0.0.11"),
        Node("node2", ("control-plane", "etcd"), "10.0.0.12"),
        Node("node3", ("etcd", "worker"), "10.0.0.13"),
    ]
    return StaticCluster("t", nodes, tmp_path / "ssh_config")


def test_versions_rendered_in_the_refs_style() -> None:
    versions = {"kube_version": "1.28.6", "etcd_version": "v3.5.10", "containerd_version": "1.7.13"}
    assert render_versions(versions, Ref.parse("v2.24.1")) == {
        "kube_version": "v1.28.6",
        "etcd_version": "v3.5.10",
        "containerd_version": "1.7.13",  # Kubespray never wrote containerd with a v
    }
    assert render_versions(versions, Ref.parse("v2.31.0")) == {
        "kube_version": "1.28.6",
        "etcd_version": "3.5.10",
        "containerd_version": "1.7.13",
    }


def test_offline_vars_follow_the_docs_and_the_v_prefix() -> None:
    new = offline_vars("http://10.0.0.1:8080/files/", Ref.parse("v2.31.0"))
    assert new["files_repo"] == "http://10.0.0.1:8080/files"
    assert new["etcd_download_url"] == (
        "{{ files_repo }}/kubernetes/etcd/etcd-v{{ etcd_version }}-linux-{{ image_arch }}.tar.gz"
    )
    assert new["kubeadm_download_url"] == "{{ files_repo }}/kubernetes/v{{ kube_version }}/kubeadm"
    assert new["github_url"] == "{{ files_repo }}/github.com"
    old = offline_vars("http://x", Ref.parse("v2.25.0"))
    assert old["kubeadm_download_url"] == "{{ files_repo }}/kubernetes/{{ kube_version }}/kubeadm"


def test_harness_vars_extra_vars_win() -> None:
    out = harness_vars(
        {"etcd_version": "3.5.16"},
        Ref.parse("v2.31.0"),
        files_repo="http://repo",
        extra_vars={"kubeconfig_localhost": False, "serial": 1},
    )
    assert out["etcd_version"] == "3.5.16" and out["serial"] == 1
    assert out["kubeconfig_localhost"] is False
    assert "etcd_download_url" in out
    assert "files_repo" not in harness_vars({}, None)
    assert harness_vars({}, None)["kubeconfig_localhost"] is True


def test_written_inventory_is_what_ansible_sees(tmp_path: Path) -> None:
    cluster = _cluster(tmp_path)
    gv = harness_vars({"kube_version": "1.35.4", "etcd_version": "3.6.10"}, Ref.parse("v2.31.0"), files_repo="http://repo")
    inv_dir = write_inventory(tmp_path / "pdd", cluster.inventory(), gv)
    assert inv_dir == tmp_path / "pdd" / "inventory"
    assert yaml.safe_load((inv_dir / "group_vars/all/harness.yml").read_text())["kube_version"] == "1.35.4"

    r = subprocess.run(
        [str(ANSIBLE_INVENTORY), "-i", str(inv_dir / "hosts.yml"), "--list"],
        stdin=subprocess.DEVNULL,  # Ansible refuses a non-blocking stdin
        capture_output=True,
        text=True,
        check=True,
    )
    data = json.loads(r.stdout)
    assert sorted(data["kube_control_plane"]["hosts"]) == ["node1", "node2"]
    assert sorted(data["etcd"]["hosts"]) == ["node1", "node2", "node3"]
    assert sorted(data["kube_node"]["hosts"]) == ["node1", "node3"]
    assert set(data["k8s_cluster"]["children"]) == {"kube_control_plane", "kube_node"}
    hv = data["_meta"]["hostvars"]["node2"]
    # group_vars/all beside the inventory file are loaded without any flag.
    assert hv["kube_version"] == "1.35.4" and hv["kubeconfig_localhost"] is True
    assert hv["ip"] == "10.0.0.12" and "-F" in hv["ansible_ssh_common_args"]
    assert hv["etcd_download_url"].startswith("{{ files_repo }}")
