"""The lab installer's playbooks: syntax, tags, task order, and URLs that match the files repo."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from harness import proc
from harness.cluster.base import Cluster, Node
from harness.errors import InstallerError
from harness.installer import files_repo as fr
from harness.installer import lab

ANSIBLE_PLAYBOOK = str(Path(sys.executable).parent / "ansible-playbook")


class _PaperCluster(Cluster):
    """Just enough of a Cluster to produce its inventory; nothing to bring up."""

    provider = "paper"

    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool:
        return False
    def destroy(self) -> None: ...


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("inv")
    nodes = [
        Node("node1", ("control-plane", "etcd"), "192.168.121.11"),
        Node("node2", ("etcd", "worker"), "192.168.121.12"),
        Node("node3", ("etcd", "worker"), "192.168.121.13"),
    ]
    inv = _PaperCluster("paper", nodes, d / "ssh_config").inventory()
    path = d / "hosts.yml"
    path.write_text(yaml.safe_dump(inv))
    return path


def _run(*args: str, inventory: Path, playbook: str = "cluster") -> str:
    if not Path(ANSIBLE_PLAYBOOK).exists():
        pytest.skip("ansible-playbook is not installed next to this Python")
    argv = lab.playbook_argv(playbook, inventory, ansible_playbook=ANSIBLE_PLAYBOOK) + list(args)
    return proc.run(argv, env={**os.environ, **lab.ansible_env()}, timeout=180).stdout


def _tasks(listing: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(r"^\s{6}(\S.*?)\tTAGS:", listing, re.MULTILINE)]


@pytest.mark.parametrize("playbook", ["cluster", "upgrade"])
def test_syntax_check(playbook: str, inventory: Path) -> None:
    assert "playbook:" in _run("--syntax-check", inventory=inventory, playbook=playbook)


@pytest.mark.parametrize("playbook", ["cluster", "upgrade"])
def test_tags_are_kubespray_component_tags(playbook: str, inventory: Path) -> None:
    tags = lab.list_tags(playbook, inventory, ansible_playbook=ANSIBLE_PLAYBOOK)
    assert {"etcd", "container-engine", "docker", "node", "download"} <= tags
    assert tags <= lab.TAGS


def test_docker_is_an_alias_of_container_engine(inventory: Path) -> None:
    a = _tasks(_run("--list-tasks", "--tags", "container-engine", inventory=inventory))
    b = _tasks(_run("--list-tasks", "--tags", "docker", inventory=inventory))
    assert a == b
    assert any("Containerd |" in t for t in a) and any("Runc |" in t for t in a)


def test_etcd_tag_downloads_before_it_installs(inventory: Path) -> None:
    """The order Kubespray gets wrong (KUBESPRAY.md): here the tagged run fetches the tarball first."""
    tasks = _tasks(_run("--list-tasks", "--tags", "etcd", inventory=inventory))
    download = next(i for i, t in enumerate(tasks) if t.startswith("etcd : Download_file | Download"))
    install = next(i for i, t in enumerate(tasks) if "Install etcd, etcdctl" in t)
    health = next(i for i, t in enumerate(tasks) if "every member is healthy" in t)
    assert download < install < health
    assert not any("Containerd" in t or "Node |" in t for t in tasks)


def test_upgrade_goes_one_node_at_a_time_behind_health_gates() -> None:
    plays = yaml.safe_load(lab.PLAYBOOKS["upgrade"].read_text())
    by_hosts = {p["hosts"]: p for p in plays}
    assert by_hosts["etcd"]["serial"] == 1
    assert by_hosts["kube_control_plane"]["serial"] == 1
    assert by_hosts["kube_node:!kube_control_plane"]["serial"] == "{{ serial | default('20%') }}"  # Kubespray's
    # Kubespray's order: downloads, etcd, control plane, workers.
    assert [p["hosts"] for p in plays] == ["k8s_cluster:etcd", "etcd", "kube_control_plane", "kube_node:!kube_control_plane"]
    etcd_tasks = yaml.safe_load((lab.LAB_DIR / "roles/etcd/tasks/main.yml").read_text())
    gate = etcd_tasks[-1]
    assert "endpoint health" in gate["ansible.builtin.command"] and "etcd_access_addresses" in gate["ansible.builtin.command"]
    assert gate["until"] and gate["retries"]
    for p in plays[2:]:
        assert any("containerd serves" in t["name"] for t in p["post_tasks"])


def test_only_builtin_modules() -> None:
    """No collections beyond ansible.builtin: the lab needs nothing installed but ansible-core."""
    for f in lab.LAB_DIR.rglob("*.yml"):
        for key in re.findall(r"^\s*-?\s*([a-z_]+\.[a-z_]+\.[a-z_]+):", f.read_text(), re.MULTILINE):
            assert key.startswith("ansible.builtin."), f"{f}: {key}"


def _lab_defaults(**overrides: Any) -> dict[str, Any]:
    """The lab's role defaults, rendered the way Ansible would for the URL variables."""
    raw = yaml.safe_load((lab.LAB_DIR / "roles/lab_defaults/defaults/main.yml").read_text())
    raw.update(overrides)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    out: dict[str, Any] = {}
    for key in ("files_repo", "image_arch", "etcd_version", "containerd_version", "runc_version", "github_url",
                "etcd_download_url", "containerd_download_url", "runc_download_url"):
        value = raw[key]
        out[key] = env.from_string(value).render(**out) if isinstance(value, str) else value
    return out


@pytest.mark.parametrize(
    "versions",
    [
        {"etcd_version": "3.4.23", "containerd_version": "1.6.20", "runc_version": "1.1.5"},
        {"etcd_version": "3.5.16", "containerd_version": "1.7.24", "runc_version": "1.1.15"},
        {"etcd_version": "3.5.30", "containerd_version": "2.1.9", "runc_version": "1.3.6"},
    ],
)
def test_playbook_urls_are_files_repo_paths(versions: dict[str, str]) -> None:
    d = _lab_defaults(files_repo="http://192.168.121.1:8080", **versions)
    for comp in ("etcd", "containerd", "runc"):
        assert d[f"{comp}_download_url"] == f"http://192.168.121.1:8080/{fr.url_path(comp, versions[comp + '_version'])}"


def test_defaults_are_the_baseline() -> None:
    raw = yaml.safe_load((lab.LAB_DIR / "roles/lab_defaults/defaults/main.yml").read_text())
    baseline = lab.baseline_versions()
    assert set(baseline) == {"etcd_version", "containerd_version", "runc_version"}
    assert {k: str(raw[k]) for k in baseline} == baseline
    assert raw["etcd_cert_dir"] == "{{ etcd_config_dir }}/ssl" and raw["etcd_config_dir"] == "/etc/ssl/etcd"


def test_lab_vars_carry_checksums_and_refuse_what_the_repo_lacks(tmp_path: Path) -> None:
    repo = fr.FilesRepo(tmp_path)
    for comp, v in (("etcd", "3.5.16"), ("containerd", "1.7.24"), ("runc", "1.1.15")):
        (tmp_path / fr.url_path(comp, v)).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / fr.url_path(comp, v)).write_bytes(b"x")
        repo.artifacts[(comp, v)] = fr.Artifact(comp, v, fr.url_path(comp, v), "ab" * 32, 1, (), (), None)
    out = lab.lab_vars("http://10.0.0.1:8080/", {"etcd_version": "v3.5.16", "runc_version": "1.1.15"}, repo)
    assert out["files_repo"] == "http://10.0.0.1:8080"
    assert out["etcd_version"] == "3.5.16"
    assert out["etcd_binary_checksums"]["amd64"]["3.5.16"] == "sha256:" + "ab" * 32
    assert out["runc_checksums"]["amd64"]["1.1.15"].startswith("sha256:")
    with pytest.raises(InstallerError, match="no containerd 2.1.9"):
        lab.lab_vars("http://x", {"containerd_version": "2.1.9"}, repo)
    with pytest.raises(InstallerError, match="has no kubelet 1.35.4"):
        lab.lab_vars("http://x", {"kube_version": "1.35.4"}, repo)


def test_playbook_argv() -> None:
    argv = lab.playbook_argv("cluster", Path("/i.yml"), Path("/v.yml"), tags=["etcd"], limit="node1")
    assert argv == ["ansible-playbook", "-i", "/i.yml", str(lab.PLAYBOOKS["cluster"]), "-e", "@/v.yml",
                    "--tags", "etcd", "--limit", "node1"]
    with pytest.raises(InstallerError):
        lab.playbook_argv("scale", Path("/i.yml"))


def test_task_preview_tags_the_timeline_keys() -> None:
    """The pipeline tags timeline records from this preview: keys are (play, `ROLE : TASK`) as the
    records name them, and a tagged preview lists only what the tagged run would do."""
    from harness.installer.base import PLAYBOOKS_DIR
    from harness.installer.kubespray import list_playbook_tasks

    listed = {(t.play, t.name): t.tags for t in list_playbook_tasks(PLAYBOOKS_DIR, "lab/cluster.yml", ["etcd"])}
    install = [k for k in listed if k[0] == "Install etcd" and k[1].startswith("etcd : Etcd | Install etcd")]
    assert install and "etcd" in listed[install[0]]
    assert not any(k[1].startswith("container-engine/") for k in listed)
    graceful = list_playbook_tasks(PLAYBOOKS_DIR, "lab/upgrade-cluster.yml")
    assert {"etcd", "container-engine"} <= {tag for t in graceful for tag in t.tags}
