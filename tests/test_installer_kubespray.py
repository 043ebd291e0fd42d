"""Kubespray sources against small Kubespray-shaped git repositories made here (no fetched Kubespray)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness.errors import PlanError
from harness.installer import kubespray as ks_mod
from harness.installer.kubespray import (
    Kubespray,
    Unresolvable,
    build_venv,
    parse_list_tags,
    parse_list_tasks,
)

HARNESS_BIN = Path(sys.executable).parent

CLUSTER_YML = """\
- name: Common tasks
  hosts: all
  gather_facts: false
  tags: always
  tasks:
    - name: Check ansible version
      ansible.builtin.debug: msg=ok
- name: Prepare
  hosts: k8s_cluster:etcd
  gather_facts: false
  tasks:
    - name: Download files
      ansible.builtin.debug: msg=dl
      tags: [download]
    - name: Install containerd
      ansible.builtin.debug: msg=ce
      tags: [container-engine, docker]
- name: Install etcd
  hosts: etcd
  gather_facts: false
  tasks:
    - name: "etcd : Install etcd"
      ansible.builtin.debug: msg=etcd
      tags: [etcd]
    - name: "etcd : Gen certs"
      ansible.builtin.debug: msg=certs
      tags: [etcd, etcd-secrets]
- name: Install Kubernetes nodes
  hosts: k8s_cluster
  gather_facts: false
  tasks:
    - name: kubelet
      ansible.builtin.debug: msg=node
      tags: [node]
- name: Install the control plane
  hosts: kube_control_plane
  gather_facts: false
  tasks:
    - name: kubeadm init or upgrade
      ansible.builtin.debug: msg=cp
      tags: [control-plane, kubeadm]
    - name: network plugin
      ansible.builtin.debug: msg=net
      tags: [network]
    - name: coredns
      ansible.builtin.debug: msg=apps
      tags: [apps]
"""

UPGRADE_YML = CLUSTER_YML.replace("Install the control plane", "Upgrade the control plane")

# The >= v2.28 layout: defaults templated from the checksum tables.
MAIN_YML = """\
---
kube_version: "{{ (kubelet_checksums['amd64'] | dict2items)[0].key }}"
kube_version_min_required: "{{ (kubelet_checksums['amd64'] | dict2items)[-1].key }}"
"""
DOWNLOAD_YML = """\
---
runc_version: "{{ (runc_checksums['amd64'] | dict2items)[0].key }}"
containerd_version: "{{ (containerd_archive_checksums['amd64'] | dict2items)[0].key }}"
calico_version: "{{ (calicoctl_binary_checksums['amd64'] | dict2items)[0].key }}"
cni_version: "{{ (cni_binary_checksums['amd64'] | dict2items)[0].key }}"
helm_version: "{{ (helm_archive_checksums['amd64'] | dict2items)[0].key }}"
etcd_version: "{{ etcd_supported_versions[kube_major_version] }}"
crictl_version: "{{ (crictl_checksums['amd64'].keys() | select('version', kube_major_next_version, '<'))[0] }}"
flannel_version: 0.28.4
cilium_version: "1.19.3"
coredns_supported_versions:
  '1.35': 1.12.4
  '1.34': 1.12.1
coredns_version: "{{ coredns_supported_versions[kube_major_version] }}"
"""
VARS_MAIN_YML = """\
---
kube_major_version: "{{ (kube_version | split('.'))[:-1] | join('.') }}"
kube_next: "{{ ((kube_version | split('.'))[1] | int) + 1 }}"
kube_major_next_version: "1.{{ kube_next }}"
etcd_supported_versions:
  '1.35': "{{ (etcd_binary_checksums['amd64'].keys() | select('version', '3.7', '<'))[0] }}"
  '1.34': "{{ (etcd_binary_checksums['amd64'].keys() | select('version', '3.6', '<'))[0] }}"
"""


def _checksums(kube: list[str], etcd: list[str], containerd: str) -> str:
    def table(name: str, versions: list[str]) -> str:
        rows = "".join(f"    {v}: sha256:{'a' * 64}\n" for v in versions)
        return f"{name}:\n  arm64:\n{rows}  amd64:\n{rows}"

    return "---\n" + "".join(
        [
            table("kubelet_checksums", kube),
            table("kubeadm_checksums", kube),
            table("kubectl_checksums", kube),
            table("etcd_binary_checksums", etcd),
            table("containerd_archive_checksums", [containerd, "2.1.4"]),
            table("runc_checksums", ["1.4.2", "1.3.4"]),
            table("calicoctl_binary_checksums", ["3.31.5", "3.30.6"]),
            table("cni_binary_checksums", ["1.9.1"]),
            table("helm_archive_checksums", ["3.18.4"]),
            table("crictl_checksums", ["1.35.0", "1.34.0", "1.33.0"]),
        ]
    )


# The <= v2.24 layout: literal versions with a leading v, checksums beside them.
OLD_DOWNLOAD_YML = """\
---
runc_version: v1.1.7
containerd_version: 1.7.1
calico_version: "v3.25.1"
kube_major_version: "{{ kube_version | regex_replace('^v([0-9])+\\\\.([0-9]+)\\\\.[0-9]+', 'v\\\\1.\\\\2') }}"
etcd_supported_versions:
  v1.26: "v3.5.6"
etcd_version: "{{ etcd_supported_versions[kube_major_version] }}"
coredns_version: "{{ 'v1.9.3' if (kube_version is version('v1.25.0','>=')) else 'v1.8.6' }}"
etcd_binary_checksums:
  amd64:
    v3.5.6: 4db32e3bc06dd0999e2171f76a87c1cffed8369475ec7aa7abee9023635670fb
"""


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def _write(repo: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        p = repo / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)


def make_kubespray_repo(repo: Path) -> Path:
    """Three tags: v2.22.0 (old layout), v2.30.0 and v2.31.0 (current layout), same requirements.txt."""
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "master")
    _write(
        repo,
        {
            "requirements.txt": "# the ref's own Ansible\nansible-core\n",
            "cluster.yml": CLUSTER_YML,
            "roles/download/defaults/main.yml": OLD_DOWNLOAD_YML,
            "roles/kubespray-defaults/defaults/main.yaml": "---\nkube_version: v1.26.5\n",
        },
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "old layout")
    _git(repo, "tag", "v2.22.0")
    _git(repo, "rm", "-rq", "roles")
    _write(
        repo,
        {
            "upgrade-cluster.yml": UPGRADE_YML,
            "roles/kubespray_defaults/defaults/main/main.yml": MAIN_YML,
            "roles/kubespray_defaults/defaults/main/download.yml": DOWNLOAD_YML,
            "roles/kubespray_defaults/vars/main/main.yml": VARS_MAIN_YML,
            "roles/kubespray_defaults/vars/main/checksums.yml": _checksums(["1.34.3", "1.34.2", "1.33.0"], ["3.5.26", "3.5.25"], "2.2.1"),
        },
    )
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "v2.30.0")
    _git(repo, "tag", "v2.30.0")
    _write(
        repo,
        {
            "roles/kubespray_defaults/vars/main/checksums.yml": _checksums(
                ["1.35.4", "1.35.3", "1.34.3", "1.33.0"], ["3.6.10", "3.6.9", "3.5.26"], "2.2.3"
            ),
        },
    )
    _git(repo, "commit", "-qam", "v2.31.0")
    _git(repo, "tag", "v2.31.0")
    return repo


class FakeVenvBuilder:
    """A 'venv' whose ansible-playbook is the harness's own: real Ansible, no pip download."""

    def __init__(self) -> None:
        self.calls: list[Path] = []

    def __call__(self, dest: Path, requirements: Path, progress: ks_mod.Progress) -> None:
        self.calls.append(requirements)
        (dest / "bin").mkdir(parents=True)
        (dest / "bin" / "ansible-playbook").symlink_to(HARNESS_BIN / "ansible-playbook")


@pytest.fixture(scope="module")
def ks_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_kubespray_repo(tmp_path_factory.mktemp("ks") / "kubespray")


@pytest.fixture
def ks(ks_repo: Path, tmp_path: Path) -> Kubespray:
    return Kubespray.open(ks_repo, cache=tmp_path / "cache", venv_builder=FakeVenvBuilder())


# -- git -----------------------------------------------------------------------


def test_commit_resolves_tags_and_refuses_unknown_refs(ks: Kubespray) -> None:
    assert len(ks.commit("v2.31.0")) == 40
    assert ks.commit("v2.30.0") != ks.commit("v2.31.0")
    with pytest.raises(PlanError, match=r"'v9\.9\.9' not found.*v2\.31\.0"):
        ks.commit("v9.9.9")


def test_worktree_per_ref_is_created_once_and_reused(ks: Kubespray) -> None:
    a = ks.worktree("v2.30.0")
    assert (a / "cluster.yml").exists() and (a / "upgrade-cluster.yml").exists()
    old = ks.worktree("v2.22.0")
    assert (old / "roles/download/defaults/main.yml").exists() and not (old / "upgrade-cluster.yml").exists()
    (a / "marker").write_text("kept")
    assert ks.worktree("v2.30.0") == a and (a / "marker").exists()


def test_open_clones_a_url_into_the_cache(ks_repo: Path, tmp_path: Path) -> None:
    ks = Kubespray.open(f"file://{ks_repo}", cache=tmp_path / "cache")
    assert str(ks.git_dir).startswith(str(tmp_path / "cache"))
    assert ks.commit("v2.31.0") == Kubespray.open(ks_repo).commit("v2.31.0")
    assert Kubespray.open(f"file://{ks_repo}", cache=tmp_path / "cache").git_dir == ks.git_dir


# -- default versions ------------------------------------------------------------


def test_default_versions_current_layout(ks: Kubespray) -> None:
    v31 = ks.default_versions("v2.31.0")
    assert v31 == {
        "kube_version": "1.35.4",
        "etcd_version": "3.6.10",
        "containerd_version": "2.2.3",
        "runc_version": "1.4.2",
        "calico_version": "3.31.5",
        "cni_version": "1.9.1",
        "helm_version": "3.18.4",
        "crictl_version": "1.35.0",
        "coredns_version": "1.12.4",
        "flannel_version": "0.28.4",
        "cilium_version": "1.19.3",
    }
    v30 = ks.default_versions("v2.30.0")
    # etcd for 1.34 is the newest 3.5 (select version < 3.6), not the newest key.
    assert (v30["kube_version"], v30["etcd_version"], v30["crictl_version"], v30["coredns_version"]) == (
        "1.34.3",
        "3.5.26",
        "1.34.0",
        "1.12.1",
    )


def test_default_versions_old_layout(ks: Kubespray) -> None:
    v22 = ks.default_versions("v2.22.0")
    assert v22["kube_version"] == "v1.26.5"
    assert v22["etcd_version"] == "v3.5.6"  # via regex_replace kube_major_version
    assert v22["coredns_version"] == "v1.9.3"  # via the conditional
    assert v22["containerd_version"] == "1.7.1"


def test_resolve_templates_with_the_refs_ansible(ks: Kubespray) -> None:
    """Any Jinja the ref writes is Ansible's to evaluate; what it cannot template is named, not guessed."""
    got = ks.resolve("v2.31.0", ["etcd_version", "kube_major_version", "no_such_variable"], {"kube_version": "1.34.3"})
    assert got["kube_major_version"] == "1.34"
    assert got["etcd_version"] == "3.5.26"  # the extra var moves what is built on it
    assert isinstance(got["no_such_variable"], Unresolvable)
    assert "no_such_variable" in str(got["no_such_variable"])


# -- checksums ---------------------------------------------------------------------


def test_checksum_known_accepts_listed_versions_in_either_style(ks: Kubespray) -> None:
    ks.checksum_known("v2.31.0", "etcd", "3.6.9")
    ks.checksum_known("v2.31.0", "kube_version", "v1.35.3")
    ks.checksum_known("v2.22.0", "etcd_version", "3.5.6")
    ks.checksum_known("v2.31.0", "coredns", "9.9.9")  # an image: no checksum table to miss


def test_checksum_missing_names_component_and_known_versions(ks: Kubespray) -> None:
    with pytest.raises(PlanError) as e:
        ks.checksum_known("v2.30.0", "etcd", "3.6.10")
    msg = str(e.value)
    assert "etcd_version=3.6.10" in msg and "Kubespray v2.30.0" in msg
    assert "3.5.26, 3.5.25" in msg and "etcd_binary_checksum" in msg


def test_checksum_supplied_by_the_user_is_accepted(ks: Kubespray) -> None:
    ks.checksum_known("v2.30.0", "etcd", "3.6.10", extra_vars={"etcd_binary_checksum": "sha256:" + "b" * 64})
    table = {"amd64": {"3.6.10": "sha256:" + "b" * 64}}
    ks.checksum_known("v2.30.0", "etcd", "3.6.10", extra_vars={"etcd_binary_checksums": table})
    with pytest.raises(PlanError, match="kubeadm_checksums"):
        # kube_version needs all three binaries: kubelet's checksum alone is not enough.
        ks.checksum_known("v2.30.0", "kube_version", "1.35.4", extra_vars={"kubelet_binary_checksum": "x"})


# -- tags and tasks, read with the ref's venv ------------------------------------------


LIST_TAGS_OUT = """
playbook: cluster.yml

  play #1 (all): Common tasks\tTAGS: [always]
      TASK TAGS: [always]

  play #2 (etcd): Install etcd\tTAGS: []
      TASK TAGS: [etcd, etcd-secrets]
"""

LIST_TASKS_OUT = """
playbook: cluster.yml

  play #1 (all): Common tasks\tTAGS: [always]
    tasks:
      Check ansible version\tTAGS: [always]

  play #2 (etcd): Install etcd\tTAGS: []
    tasks:
      etcd : Install etcd\tTAGS: [etcd]
      etcd : Gen certs\tTAGS: [etcd, etcd-secrets]
"""


def test_parse_list_output() -> None:
    assert parse_list_tags(LIST_TAGS_OUT) == {"always", "etcd", "etcd-secrets"}
    tasks = parse_list_tasks(LIST_TASKS_OUT)
    assert [(t.play, t.name) for t in tasks] == [
        ("Common tasks", "Check ansible version"),
        ("Install etcd", "etcd : Install etcd"),
        ("Install etcd", "etcd : Gen certs"),
    ]
    assert tasks[2].tags == {"etcd", "etcd-secrets"}


def test_list_tags_runs_the_refs_ansible_and_caches_by_commit(ks: Kubespray) -> None:
    tags = ks.list_tags("v2.31.0")
    assert {"etcd", "etcd-secrets", "node", "control-plane", "container-engine", "docker", "download", "always"} <= tags
    assert "master" not in tags and "helm" not in tags
    # Break the venv's ansible: the cached answer is still served, a new commit is not.
    venv_bin = ks.venv("v2.31.0") / "bin" / "ansible-playbook"
    venv_bin.unlink()
    venv_bin.write_text("#!/bin/sh\nexit 7\n")
    venv_bin.chmod(0o755)
    assert ks.list_tags("v2.31.0") == tags
    with pytest.raises(Exception, match="rc=7"):
        ks.list_tags("v2.30.0")


def test_venv_is_shared_by_refs_pinning_the_same_requirements(ks: Kubespray) -> None:
    builder = ks.venv_builder
    assert isinstance(builder, FakeVenvBuilder)
    assert ks.venv("v2.30.0") == ks.venv("v2.31.0")
    assert len(builder.calls) == 1
    assert ks.ansible_playbook("v2.31.0").exists()


def test_list_tasks_previews_a_tagged_run(ks: Kubespray) -> None:
    tasks = ks.list_tasks("v2.31.0", tags=["etcd"])
    names = [t.name for t in tasks]
    assert names == ["Check ansible version", "etcd : Install etcd", "etcd : Gen certs"]
    # A tag no task carries selects only the `always` tasks: the run would do nothing.
    assert [t.name for t in ks.list_tasks("v2.31.0", tags=["master"])] == ["Check ansible version"]
    with pytest.raises(PlanError, match=r"no task tagged 'master'.*control-plane"):
        ks.check_tags("v2.31.0", ["master"])


def test_build_venv_for_real(tmp_path: Path) -> None:
    """One real build: python -m venv + pip install -r of a file that pins nothing (no network)."""
    req = tmp_path / "requirements.txt"
    req.write_text("# nothing pinned\n")
    messages: list[str] = []
    build_venv(tmp_path / "venv", req, messages.append)
    assert (tmp_path / "venv" / "bin" / "python").exists()
    assert any("creating virtualenv" in m for m in messages)
    assert any("0 requirement(s)" in m for m in messages)


def test_failed_venv_build_leaves_nothing_half_built(ks_repo: Path, tmp_path: Path) -> None:
    def broken(dest: Path, requirements: Path, progress: ks_mod.Progress) -> None:
        dest.mkdir(parents=True)
        from harness.proc import run

        run(["false"])

    ks = Kubespray.open(ks_repo, cache=tmp_path / "cache", venv_builder=broken)
    with pytest.raises(Exception, match="cannot build the virtualenv for Kubespray v2.31.0"):
        ks.venv("v2.31.0")
    assert not list((tmp_path / "cache" / "kubespray" / "venvs").glob("*/bin"))


def test_old_requirements_indirection_is_read_from_the_worktree(tmp_path: Path) -> None:
    """v2.22's requirements.txt is `-r requirements-2.12.txt`: pip must see the worktree, not a copy."""
    repo = tmp_path / "r"
    repo.mkdir()
    _git(repo, "init", "-q")
    _write(repo, {"requirements.txt": "-r requirements-2.12.txt\n", "requirements-2.12.txt": "# none\n", "cluster.yml": "[]\n"})
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "x")
    _git(repo, "tag", "v2.22.0")
    seen: list[Path] = []

    def builder(dest: Path, requirements: Path, progress: ks_mod.Progress) -> None:
        seen.append(requirements)
        assert (requirements.parent / "requirements-2.12.txt").exists()
        dest.mkdir(parents=True)

    Kubespray.open(repo, cache=tmp_path / "cache", venv_builder=builder).venv("v2.22.0")
    assert len(seen) == 1


def test_module_has_no_kubespray_text() -> None:
    """Kubespray's code is read, never copied: the module carries patterns, not Kubespray's lines."""
    src = Path(ks_mod.__file__).read_text()
    assert "kubelet_checksums['amd64'] | dict2items" not in textwrap.dedent(src)
