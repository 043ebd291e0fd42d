"""The Vagrantfile's JSON spec, vagrant output parsing and the ssh configs the providers write."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.cluster.base import ClusterSpec
from harness.cluster.vagrant import (
    SshHost,
    VagrantEnv,
    parse_snapshot_list,
    parse_ssh_config,
    render_ssh_config,
    spec_document,
    vagrantfile_path,
)
from harness.scenario.model import NodeSpec

SPEC = ClusterSpec(
    name="t",
    nodes=(
        NodeSpec(name="node1", roles=("control-plane", "etcd", "worker"), cpus=2, memory=2048),
        NodeSpec(name="node2", roles=("etcd", "worker")),
    ),
)

# Real output of `vagrant ssh-config` (vagrant 2.3.4, vagrant-libvirt 0.11.2) for two machines.
VAGRANT_SSH_CONFIG = """\
Host node1
  HostName 192.168.121.235
  User vagrant
  Port 22
  UserKnownHostsFile /dev/null
  StrictHostKeyChecking no
  PasswordAuthentication no
  IdentityFile /root/.cache/kubespray-upgrade-harness/lab/id_ed25519
  IdentitiesOnly yes
  LogLevel FATAL

Host node2
  HostName 192.168.121.113
  User vagrant
  Port 2222
  IdentityFile "/home/me/.vagrant.d/insecure private key"
"""

# Real `vagrant snapshot list --machine-readable` output: node1 has two snapshots, node2 one.
SNAPSHOT_LIST = """\
1795608343,node1,metadata,provider,libvirt
1795608344,node2,metadata,provider,libvirt
1795608344,node1,ui,output,==> node1: 
1795608344,node1,ui,detail,base
1795608344,node1,ui,detail,baseline-0123456789ab
1795608344,node2,ui,output,==> node2: 
1795608344,node2,ui,detail,base
"""


def test_spec_document_carries_nodes_roles_sizes_and_options(tmp_path: Path) -> None:
    doc = spec_document(
        SPEC,
        provider="libvirt",
        box="generic/ubuntu2204",
        ssh={"username": "vagrant"},
        provider_options={"driver": "kvm"},
        console_log_dir=tmp_path,
    )
    again = json.loads(json.dumps(doc))  # what the Vagrantfile reads is plain JSON
    assert again["provider"] == "libvirt" and again["box"] == "generic/ubuntu2204"
    assert again["nodes"] == [
        {"name": "node1", "roles": ["control-plane", "etcd", "worker"], "cpus": 2, "memory": 2048},
        {"name": "node2", "roles": ["etcd", "worker"], "cpus": 1, "memory": 1024},
    ]
    assert again["provider_options"] == {"driver": "kvm"}
    assert again["console_log_dir"] == str(tmp_path)


def test_parse_ssh_config_reads_every_host() -> None:
    hosts = parse_ssh_config(VAGRANT_SSH_CONFIG)
    assert hosts["node1"] == SshHost(
        "node1", "192.168.121.235", "vagrant", 22, "/root/.cache/kubespray-upgrade-harness/lab/id_ed25519"
    )
    assert hosts["node2"].port == 2222
    assert hosts["node2"].identity_file == "/home/me/.vagrant.d/insecure private key"


def test_parse_snapshot_list_per_machine() -> None:
    assert parse_snapshot_list(SNAPSHOT_LIST) == {"node1": ["base", "baseline-0123456789ab"], "node2": ["base"]}


def _ssh_g(config: Path, host: str) -> dict[str, str]:
    """What ssh itself makes of a config (`ssh -G`): the real parser, no connection."""
    out = subprocess.run(["ssh", "-G", "-F", str(config), host], capture_output=True, text=True, check=True).stdout
    return {k: v for k, _, v in (line.partition(" ") for line in out.splitlines())}


@pytest.mark.skipif(shutil.which("ssh") is None, reason="needs the ssh client to parse the config it writes")
def test_rendered_ssh_config_tunnels_into_the_namespace(tmp_path: Path) -> None:
    hosts = list(parse_ssh_config(VAGRANT_SSH_CONFIG).values())
    cfg = tmp_path / "ssh_config"
    cfg.write_text(
        render_ssh_config(hosts, proxy_command="ip netns exec ksh-gw0 nc %h %p", control_dir=tmp_path / "cm")
    )
    node1 = _ssh_g(cfg, "node1")
    assert node1["hostname"] == "192.168.121.235"
    assert node1["user"] == "vagrant"
    assert node1["proxycommand"] == "ip netns exec ksh-gw0 nc %h %p"
    assert node1["stricthostkeychecking"] == "false"
    assert node1["controlpath"].startswith(str(tmp_path / "cm") + "/")
    assert node1["identityfile"] == "/root/.cache/kubespray-upgrade-harness/lab/id_ed25519"
    node2 = _ssh_g(cfg, "node2")
    assert (node2["hostname"], node2["port"]) == ("192.168.121.113", "2222")
    assert node2["identityfile"] == "/home/me/.vagrant.d/insecure private key"


def test_without_proxy_the_config_has_none(tmp_path: Path) -> None:
    text = render_ssh_config([SshHost("n", "10.0.0.5", "ubuntu", 22)])
    assert "ProxyCommand" not in text and "ControlPath" not in text
    assert "HostName 10.0.0.5" in text


def test_vagrantfile_is_the_repositorys() -> None:
    assert vagrantfile_path() == Path(__file__).resolve().parents[1] / "Vagrantfile"


needs_vagrant = pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant to evaluate the Vagrantfile")


@needs_vagrant
def test_real_vagrant_reads_the_spec(tmp_path: Path) -> None:
    """Vagrant itself loads the Vagrantfile with our JSON: both machines defined, with the provider asked for."""
    env = VagrantEnv(tmp_path / "v", vagrant_home=tmp_path / "home")
    env.write(spec_document(SPEC, provider="libvirt", box="none", provider_options={"driver": "qemu"}))
    out = env.run("status", "--machine-readable", timeout=120).stdout
    states = {(f[1], f[3]) for f in (line.split(",") for line in out.splitlines()) if len(f) > 3 and f[2] == "state"}
    assert states == {("node1", "not_created"), ("node2", "not_created")}
    assert "node1,provider-name,libvirt" in out


@needs_vagrant
def test_real_vagrant_rejects_an_unknown_provider_option(tmp_path: Path) -> None:
    env = VagrantEnv(tmp_path / "v", vagrant_home=tmp_path / "home")
    env.write(spec_document(SPEC, provider="libvirt", box="none", provider_options={"no_such_option": 1}))
    res = env.run("status", timeout=120, check=False)
    assert res.rc != 0
    assert 'provider libvirt has no option "no_such_option"' in res.stdout + res.stderr
