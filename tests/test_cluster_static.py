"""Static clusters from real Ansible inventories (INI and YAML), parsed by ansible-core itself."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from harness.cluster.base import Cluster, ClusterSpec, Node
from harness.cluster.static import StaticProvider
from harness.errors import ClusterError
from harness.scenario.model import NodeSpec

INI = """\
[all]
cp1 ansible_host=10.0.0.11 ip=10.0.0.11 ansible_user=ubuntu
w1  ansible_host=10.0.0.21 ansible_port=2222
w2  ansible_host=10.0.0.22 ansible_ssh_private_key_file=/keys/id

[kube_control_plane]
cp1

[etcd]
cp1

[kube_node]
w[1:2]

[k8s_cluster:children]
kube_control_plane
kube_node

[kube_node:vars]
ansible_user=admin
"""

YAML = """\
all:
  hosts:
    a: {ansible_host: 192.0.2.1, access_ip: 192.0.2.101}
    b: {ansible_host: 192.0.2.2, ansible_ssh_common_args: "-o ProxyJump=bastion.example"}
    bastion: {ansible_host: 192.0.2.254}
  children:
    kube-master: {hosts: {a: null}}
    etcd: {hosts: {a: null, b: null}}
    kube-node: {hosts: {b: null}}
"""


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))


def _ssh_g(config: Path, host: str) -> dict[str, str]:
    out = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True).stdout
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


def test_ini_inventory_roles_addresses_and_users(write) -> None:
    cluster = StaticProvider(write("hosts.ini", INI)).cluster()
    nodes = {n.name: n for n in cluster.nodes}
    assert set(nodes) == {"cp1", "w1", "w2"}  # the range w[1:2] expanded by Ansible
    assert nodes["cp1"].roles == ("control-plane", "etcd")
    assert nodes["w1"].roles == ("worker",)
    assert nodes["cp1"].address == "10.0.0.11" and nodes["cp1"].user == "ubuntu"
    assert nodes["w1"].user == "admin"  # group vars apply
    assert nodes["w1"].port == 2222
    w1 = _ssh_g(cluster.ssh_config, "w1")
    assert (w1["hostname"], w1["port"], w1["user"]) == ("10.0.0.21", "2222", "admin")
    assert _ssh_g(cluster.ssh_config, "w2")["identityfile"] == "/keys/id"


def test_yaml_inventory_legacy_group_names_and_ssh_args(write) -> None:
    cluster = StaticProvider(write("hosts.yaml", YAML)).cluster()
    nodes = {n.name: n for n in cluster.nodes}
    assert set(nodes) == {"a", "b"}  # the bastion has no Kubespray group: not a cluster node
    assert nodes["a"].roles == ("control-plane", "etcd")
    assert nodes["b"].roles == ("etcd", "worker")
    assert nodes["a"].address == "192.0.2.101"  # access_ip before ansible_host
    assert _ssh_g(cluster.ssh_config, "b")["proxyjump"] == "bastion.example"


def test_static_cluster_cannot_snapshot(write) -> None:
    cluster = StaticProvider(write("hosts.ini", INI)).cluster()
    assert cluster.supports_snapshots is False
    assert cluster.has_snapshot("x") is False
    with pytest.raises(ClusterError, match="cannot snapshot"):
        cluster.snapshot("x")
    with pytest.raises(ClusterError, match="static clusters have no snapshots"):
        cluster.restore("x")
    cluster.destroy()  # a no-op: the hosts are not ours


def test_up_refuses_nodes_the_inventory_lacks(write) -> None:
    provider = StaticProvider(write("hosts.ini", INI))
    ok = provider.up(ClusterSpec(name="s", nodes=(NodeSpec(name="cp1", roles=("etcd",)),)))
    assert [n.name for n in ok.nodes] == ["cp1", "w1", "w2"]
    with pytest.raises(ClusterError, match="no host.*node9"):
        provider.up(ClusterSpec(name="s", nodes=(NodeSpec(name="node9", roles=("etcd",)),)))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[web]\nhost1\n", "none in Kubespray's groups"),
        ("", "no hosts in inventory"),
    ],
)
def test_inventories_without_a_cluster_are_errors(write, text: str, message: str) -> None:
    with pytest.raises(ClusterError, match=message):
        StaticProvider(write("hosts.ini", text)).cluster()


def test_missing_inventory_file(tmp_path: Path) -> None:
    with pytest.raises(ClusterError, match="does not exist"):
        StaticProvider(tmp_path / "nope.yaml").cluster()


class _Fake(Cluster):
    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool:
        return False

    def destroy(self) -> None: ...


def test_a_harness_inventory_reads_back_through_its_ssh_config(tmp_path: Path) -> None:
    """The inventory a Cluster writes (ssh via `-F config`, as the lab's) is a valid static inventory."""
    lab_cfg = tmp_path / "lab_ssh_config"
    lab_cfg.write_text("Host node1\n  HostName 192.168.121.9\n  ProxyCommand ip netns exec ksh-x nc %h %p\n")
    lab = _Fake("x", [Node("node1", ("control-plane", "etcd", "worker"), "192.168.121.9")], lab_cfg)
    inv = tmp_path / "inventory.yaml"
    inv.write_text(yaml.safe_dump(lab.inventory()))
    cluster = StaticProvider(inv).cluster()
    assert [(n.name, n.roles, n.address) for n in cluster.nodes] == [
        ("node1", ("control-plane", "etcd", "worker"), "192.168.121.9")
    ]
    resolved = _ssh_g(cluster.ssh_config, "node1")
    assert resolved["hostname"] == "192.168.121.9"  # from the included lab config, not the alias
    assert resolved["proxycommand"] == "ip netns exec ksh-x nc %h %p"


# -- how each host is reached and whom commands run as: the inventory's connection and become vars --

ACCESS_INI = """\
[all]
here    ansible_connection=local ansible_user=someone-else ansible_become=false ansible_python_interpreter="{{ ansible_playbook_python }}"
rooted  ansible_host=10.0.0.1 ansible_user=root
admin   ansible_host=10.0.0.2 ansible_user=admin
as-etcd ansible_host=10.0.0.3 ansible_user=admin ansible_become=yes ansible_become_user=etcd
plain   ansible_host=10.0.0.4 ansible_user=admin ansible_become=False

[etcd]
here
rooted
admin
as-etcd
plain
"""


def _me() -> str:
    import os
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def test_access_follows_connection_and_become_vars(write) -> None:
    cluster = StaticProvider(write("hosts.ini", ACCESS_INI)).cluster()
    sudo = {name: a.sudo_user for name, a in cluster.access.items()}
    # local runs as this process whatever ansible_user says; root logs in as root and needs no sudo;
    # a plain login becomes root as Kubespray's plays do; become settings are the inventory's when given.
    assert sudo == {"here": None, "rooted": None, "admin": "root", "as-etcd": "etcd", "plain": None}
    assert cluster.node("here").user == _me()
    cfg = cluster.ssh_config
    assert cluster.testinfra_url("here") == "local://"
    assert cluster.testinfra_url("rooted") == f"ssh://rooted?ssh_config={cfg}"
    assert cluster.testinfra_url("admin") == f"ssh://admin?ssh_config={cfg}&sudo=true"
    assert cluster.testinfra_url("as-etcd") == f"ssh://as-etcd?ssh_config={cfg}&sudo=true&sudo_user=etcd"
    assert "Host here" not in cfg.read_text() and "Host rooted" in cfg.read_text()


def test_testinfra_and_run_reach_a_local_node_without_ssh_or_sudo(write) -> None:
    """`ansible_connection: local` means this machine: commands run here, as this user, with no sudo
    (which these machines do not even have)."""
    cluster = StaticProvider(write("hosts.ini", ACCESS_INI)).cluster()
    assert cluster.run("here", "id -un").stdout.strip() == _me()
    host = cluster.testinfra_host("here")
    assert host.backend.NAME == "local"
    assert host.check_output("id -un") == _me()
    assert host.file("/proc/self").exists


def test_the_harness_inventory_carries_connection_and_become_on(write, tmp_path: Path) -> None:
    """What the harness's playbooks get: the local host stays local, become settings stay the inventory's;
    Ansible itself reads it back and runs a command on the local host."""
    cluster = StaticProvider(write("hosts.ini", ACCESS_INI)).cluster()
    inv = cluster.inventory()
    here, etcd = inv["all"]["hosts"]["here"], inv["all"]["hosts"]["as-etcd"]
    assert here["ansible_connection"] == "local" and "ansible_ssh_common_args" not in here
    assert here["ansible_python_interpreter"] == "{{ ansible_playbook_python }}"
    assert (etcd["ansible_become"], etcd["ansible_become_user"]) == (True, "etcd")
    assert etcd["ansible_ssh_common_args"] == f"-F {cluster.ssh_config}"
    path = tmp_path / "harness-inventory.yaml"
    path.write_text(yaml.safe_dump(inv))
    import sys

    ansible = Path(sys.executable).with_name("ansible")
    res = subprocess.run(
        [str(ansible), "here", "-i", str(path), "-m", "command", "-a", "id -un"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False, timeout=120,
        env={**__import__("os").environ, "ANSIBLE_HOST_KEY_CHECKING": "false"},
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines()[-1:] == [_me()], res.stdout


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("h ansible_connection=docker", "host h: ansible_connection 'docker' is not supported"),
        ("h ansible_user=admin ansible_become=true ansible_become_method=su", "host h: ansible_become_method 'su'"),
        ("h ansible_user=admin ansible_become=maybe", "host h: ansible_become"),
    ],
)
def test_access_the_harness_cannot_give_is_refused_naming_file_and_host(write, line: str, message: str) -> None:
    path = write("hosts.ini", f"[etcd]\n{line}\n")
    with pytest.raises(ClusterError, match=f"inventory {path}: {message}"):
        StaticProvider(path).cluster()
