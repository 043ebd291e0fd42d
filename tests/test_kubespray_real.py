"""The Kubespray driver against a real Kubespray (../shared/kubespray.git: v2.29.1, v2.30.0, v2.31.0,
master): worktrees, the ref's own venv and Ansible, real tags, defaults templated by Ansible."""

from __future__ import annotations

import pytest

from harness.errors import PlanError
from harness.installer.kubespray import Kubespray, Unresolvable


def test_release_tags_and_refs(real_kubespray: Kubespray) -> None:
    tags = real_kubespray.release_tags()
    assert {"v2.29.1", "v2.30.0", "v2.31.0"} <= set(tags)
    assert len(real_kubespray.commit("master")) == 40
    with pytest.raises(PlanError, match="not found"):
        real_kubespray.commit("v9.99.0")


def test_venv_has_the_refs_own_ansible(real_kubespray: Kubespray) -> None:
    pins = real_kubespray.show("v2.31.0", "requirements.txt") or ""
    wanted = next(line.split("==")[1] for line in pins.splitlines() if line.startswith("ansible=="))
    venv = real_kubespray.venv("v2.31.0")
    import subprocess

    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "show", "ansible"], capture_output=True,
                         text=True, stdin=subprocess.DEVNULL, check=True).stdout
    assert f"Version: {wanted}" in out


def test_real_tags_include_the_component_tags_and_not_the_removed_ones(real_kubespray: Kubespray) -> None:
    tags = real_kubespray.list_tags("v2.31.0")
    assert {"etcd", "download", "container-engine", "node", "control-plane", "network", "apps", "helm"} <= tags
    assert "master" not in tags and "vault" not in tags
    with pytest.raises(PlanError, match="master"):
        real_kubespray.check_tags("v2.31.0", ["master"])


@pytest.mark.parametrize(
    ("ref", "kube", "containerd"),
    [("v2.30.0", "1.34.3", "2.2.1"), ("v2.31.0", "1.35.4", "2.2.3")],  # KUBESPRAY.md's table
)
def test_default_versions_templated_by_ansible(real_kubespray: Kubespray, ref: str, kube: str, containerd: str) -> None:
    d = real_kubespray.default_versions(ref)
    assert (d["kube_version"], d["containerd_version"]) == (kube, containerd)
    assert d["etcd_version"].startswith("3.")


def test_download_entries_follow_the_offline_variables(real_kubespray: Kubespray) -> None:
    """What the lab narrows Kubespray's downloads to: the ref's own entry, templated with the lab's URLs."""
    got = real_kubespray.resolve(
        "v2.31.0", ["downloads", "etcd_binary_checksum", "no_such_var"],
        {"files_repo": "http://10.0.0.1:8080", "github_url": "http://10.0.0.1:8080/github.com",
         "etcd_version": "3.5.30",
         "etcd_binary_checksums": {"amd64": {"3.5.30": "sha256:" + "b" * 64}}},
    )
    etcd = got["downloads"]["etcd"]
    assert etcd["url"] == (
        "http://10.0.0.1:8080/github.com/etcd-io/etcd/releases/download/v3.5.30/etcd-v3.5.30-linux-amd64.tar.gz"
    )
    assert etcd["checksum"] == got["etcd_binary_checksum"] == "sha256:" + "b" * 64
    assert "kubeadm" in got["downloads"]
    assert isinstance(got["no_such_var"], Unresolvable)


def test_documented_etcd_tag_installs_before_anything_downloads_it(real_kubespray: Kubespray) -> None:
    """The upgrade doc's `--tags=etcd`: `--list-tasks` shows etcd's install include (whose "Copy etcd
    binary from download dir" needs the tarball) before the role that downloads the tarball, and no
    download role at all: why ks-lab-etcd-documented fails. `--tags=download,etcd` downloads first."""
    names = [t.name for t in real_kubespray.list_tasks("v2.31.0", "cluster.yml", ["etcd"])]
    install = names.index("etcd : Install etcd")
    assert install < names.index("etcdctl_etcdutl : Download etcd binary")
    assert not any(n.startswith("download :") for n in names)
    with_download = [t.name for t in real_kubespray.list_tasks("v2.31.0", "cluster.yml", ["download", "etcd"])]
    first_download = next(i for i, n in enumerate(with_download) if n.startswith("download :"))
    assert first_download < with_download.index("etcd : Install etcd")


def test_documented_node_tag_copies_a_kubelet_nothing_downloads(real_kubespray: Kubespray) -> None:
    """The upgrade doc's `--tags=node`, like its `--tags=etcd`: the node role copies kubeadm and the kubelet
    from the download dir, and no download task runs, so ks-lab-kube-node runs `--tags=download,node`."""
    names = [t.name for t in real_kubespray.list_tasks("v2.31.0", "cluster.yml", ["node"])]
    assert "kubernetes/node : Install | Copy kubelet binary from download dir" in names
    assert not any(n.startswith("download :") for n in names)
    with_download = [t.name for t in real_kubespray.list_tasks("v2.31.0", "cluster.yml", ["download", "node"])]
    first_download = next(i for i, n in enumerate(with_download) if n.startswith("download :"))
    assert first_download < with_download.index("kubernetes/node : Install | Copy kubelet binary from download dir")


def test_lab_narrows_kubesprays_downloads_to_the_files_repo(real_kubespray: Kubespray, tmp_path) -> None:
    """On the lab, Kubespray's own `downloads` (templated by its Ansible) is cut to what the files repo
    holds; kubeadm is kept but disabled, copied from a file every node has; the notes say so."""
    from harness.installer.files_repo import Artifact, FilesRepo
    from harness.installer.kubespray_installer import KUBEADM_STAND_IN, KubesprayInstaller
    from harness.scenario import load_catalogue
    from harness.upgrade.paths import upgrade_stage

    repo = FilesRepo(tmp_path, {  # a manifest without files: offline_vars reads only what it lists
        ("etcd", "3.5.30"): Artifact("etcd", "3.5.30", "github.com/x", "c" * 64, 1, (), ("etcd",), None),
        ("runc", "1.1.5"): Artifact("runc", "1.1.5", "github.com/y", "d" * 64, 1, (), ("runc",), None),
    })
    installer = KubesprayInstaller(real_kubespray, files_url=lambda _c: "http://10.0.0.1:8080", files_repo=lambda: repo)
    sc = next(s for s in load_catalogue(None) if s.id == "ks-lab-etcd")
    stage = upgrade_stage(sc, available_tags=real_kubespray.list_tags("v2.31.0"))
    inputs = installer.inputs(sc, stage, None)  # type: ignore[arg-type]  # files_url ignores the cluster
    downloads = inputs.extravars["downloads"]
    assert set(downloads) == {"etcd", "runc", "kubeadm"}
    assert downloads["etcd"]["url"].startswith("http://10.0.0.1:8080/github.com/etcd-io/etcd/releases/download/v3.5.30/")
    assert downloads["etcd"]["checksum"] == "sha256:" + "c" * 64
    assert downloads["kubeadm"]["enabled"] is False and downloads["kubeadm"]["dest"] == KUBEADM_STAND_IN
    assert inputs.extravars["etcd_binary_checksums"] == {"amd64": {"3.5.30": "sha256:" + "c" * 64}}
    assert inputs.group_vars["ansible_become"] is True
    assert any("narrowed" in n and "etcd, runc" in n for n in inputs.notes), inputs.notes


def test_lab_kubernetes_gets_the_repos_kubelet_and_a_real_kubeadm(real_kubespray: Kubespray, tmp_path) -> None:
    """Over the lab's Kubernetes (ks-lab-kube-node) the repo's Kubernetes builds stay in Kubespray's
    downloads: kubelet at the target, and kubeadm itself, not the stand-in; an etcd run over a lab without
    Kubernetes still copies the stand-in though the repo holds kubeadm."""
    from harness.installer.files_repo import Artifact, FilesRepo
    from harness.installer.kubespray_installer import KUBEADM_STAND_IN, KubesprayInstaller
    from harness.scenario import load_catalogue
    from harness.upgrade.paths import upgrade_stage

    arts = {(c, v): Artifact(c, v, f"dl.k8s.io/release/v{v}/bin/linux/amd64/{c}", s * 64, 1, (), (c,), None)
            for c, s in (("kubelet", "a"), ("kubeadm", "b"), ("kubectl", "e")) for v in ("1.31.9", "1.32.0")}
    for v in ("3.5.16", "3.5.30"):  # ks-lab-kube-node keeps its baseline etcd, ks-lab-etcd moves it
        arts[("etcd", v)] = Artifact("etcd", v, "github.com/x", "c" * 64, 1, (), ("etcd",), None)
    repo = FilesRepo(tmp_path, arts)
    installer = KubesprayInstaller(real_kubespray, files_url=lambda _c: "http://10.0.0.1:8080", files_repo=lambda: repo)
    scenarios = {s.id: s for s in load_catalogue(None)}
    tags = real_kubespray.list_tags("v2.31.0")

    sc = scenarios["ks-lab-kube-node"]
    inputs = installer.inputs(sc, upgrade_stage(sc, available_tags=tags), None)  # type: ignore[arg-type]
    downloads = inputs.extravars["downloads"]
    assert {"kubelet", "kubeadm", "kubectl"} <= set(downloads)
    assert downloads["kubelet"]["url"] == "http://10.0.0.1:8080/dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubelet"
    assert downloads["kubelet"]["checksum"] == "sha256:" + "a" * 64
    assert downloads["kubeadm"]["dest"] != KUBEADM_STAND_IN and downloads["kubeadm"].get("enabled") is not False
    assert downloads["kubeadm"]["url"].endswith("/release/v1.32.0/bin/linux/amd64/kubeadm")
    assert any("kubeadm 1.32.0 comes from the files repo" in n for n in inputs.notes), inputs.notes

    etcd = scenarios["ks-lab-etcd"]
    inputs = installer.inputs(etcd, upgrade_stage(etcd, available_tags=tags), None)  # type: ignore[arg-type]
    assert inputs.extravars["downloads"]["kubeadm"]["dest"] == KUBEADM_STAND_IN
    assert any("kubeadm is not downloaded" in n for n in inputs.notes), inputs.notes
