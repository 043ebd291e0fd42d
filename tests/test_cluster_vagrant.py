"""The Vagrantfile's JSON spec, python-vagrant as the harness runs it, vagrant output parsing and the
ssh configs the providers write. Real vagrant where it is installed; no VM (tests/integration boots them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import vagrant

from harness import interrupt, proc, progress
from harness.cluster.base import ClusterSpec
from harness.cluster.vagrant import (
    SshHost,
    VagrantEnv,
    VagrantProvider,
    current_netns,
    parse_snapshot_lines,
    parse_ssh_config,
    render_ssh_config,
    spec_document,
    split_options,
    vagrantfile_path,
)
from harness.errors import ClusterError
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

# Real `vagrant snapshot list` output (vagrant 2.3.4, vagrant-libvirt 0.11.2) as python-vagrant's
# snapshot_list() returned it for a lab of two nodes: both have `s1`, node2 also `only-node2`.
SNAPSHOT_LINES = ["==> node1: ", "s1", "==> node2: ", "only-node2", "s1"]
# ... and before any snapshot: vagrant says "No snapshots have been taken yet!", python-vagrant gives [].
NO_SNAPSHOT_LINES: list[str] = []


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


def test_snapshot_names_per_machine() -> None:
    assert parse_snapshot_lines(SNAPSHOT_LINES) == {"node1": ["s1"], "node2": ["only-node2", "s1"]}
    assert parse_snapshot_lines(NO_SNAPSHOT_LINES) == {}
    not_created = ["==> node1: VM not created. Moving on...", "==> node2: VM not created. Moving on..."]
    assert parse_snapshot_lines(not_created) == {"node1": [], "node2": []}


def test_a_cluster_has_a_snapshot_only_when_every_node_has_it(tmp_path: Path, monkeypatch) -> None:
    from harness.cluster.base import Node
    from harness.cluster.vagrant import VagrantCluster

    env = VagrantEnv(tmp_path)
    cluster = VagrantCluster("c", [Node("node1", ("etcd",), "10.0.0.1"), Node("node2", ("etcd",), "10.0.0.2")],
                             tmp_path / "ssh_config", env)
    monkeypatch.setattr(env, "snapshot_list", lambda: SNAPSHOT_LINES)
    assert cluster.snapshots() == ["s1"]
    assert cluster.has_snapshot("s1") and not cluster.has_snapshot("only-node2")
    monkeypatch.setattr(env, "snapshot_list", lambda: NO_SNAPSHOT_LINES)
    assert cluster.snapshots() == [] and not cluster.has_snapshot("s1")


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
    """Vagrant itself loads the Vagrantfile with our JSON, through python-vagrant: both machines
    defined, with the provider asked for."""
    env = VagrantEnv(tmp_path / "v", vagrant_home=tmp_path / "home")
    env.write(spec_document(SPEC, provider="libvirt", box="none", provider_options={"driver": "qemu"},
                            ssh={"username": "vagrant", "insert_key": False}))
    assert env.status() == [
        vagrant.Status("node1", "not_created", "libvirt"),
        vagrant.Status("node2", "not_created", "libvirt"),
    ]
    assert parse_snapshot_lines(env.snapshot_list()) == {"node1": [], "node2": []}


@needs_vagrant
@pytest.mark.parametrize(
    ("ssh", "options", "message"),
    [
        ({}, {"no_such_option": 1}, 'provider libvirt has no option "no_such_option"'),
        ({"no_such_setting": 1}, {}, 'config.ssh has no option "no_such_setting"'),
    ],
)
def test_real_vagrant_rejects_an_unknown_option(tmp_path: Path, ssh: dict, options: dict, message: str) -> None:
    env = VagrantEnv(tmp_path / "v", vagrant_home=tmp_path / "home")
    env.write(spec_document(SPEC, provider="libvirt", box="none", ssh=ssh, provider_options=options))
    with pytest.raises(proc.CommandError, match=message):
        env.status()


def test_vagrant_options_split_into_provider_and_ssh_settings() -> None:
    provider, ssh = split_options({"driver": "qemu", "ssh.username": "debian", "ssh.insert_key": False})
    assert provider == {"driver": "qemu"}
    assert ssh == {"username": "debian", "insert_key": False}
    doc = VagrantProvider("libvirt", "b", options={"driver": "qemu", "ssh.username": "debian"}).document(SPEC)
    assert (doc["provider"], doc["box"]) == ("libvirt", "b")
    assert doc["provider_options"] == {"driver": "qemu"} and doc["ssh"] == {"username": "debian"}
    with pytest.raises(ClusterError, match="not a Vagrant provider name"):
        VagrantProvider("Virtual Box", "b")


def test_cluster_ids_are_per_session_and_topology() -> None:
    p = VagrantProvider("libvirt", "b", name="pytest-gw1")
    assert p.cluster_id(ClusterSpec(name="", nodes=())) == "pytest-gw1"
    assert p.cluster_id(ClusterSpec(name="c2", nodes=())) == "pytest-gw1-c2"


# -- python-vagrant's commands as the harness runs them (a fake `vagrant` stands in for VMs) --


@pytest.fixture
def fake_vagrant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[str], Path]:
    """A `vagrant` executable first on PATH running the given shell script: the one stand-in for
    machines these tests cannot boot. It records its argv and environment beside itself."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")

    def install(script: str) -> Path:
        exe = bindir / "vagrant"
        exe.write_text(
            "#!/bin/sh\n"
            f'printf "%s\\n" "$@" > {bindir}/argv\n'
            f'printf "%s|%s|%s\\n" "$PWD" "$HARNESS_CLUSTER_SPEC" "$VAGRANT_HOME" > {bindir}/env\n' + script
        )
        exe.chmod(0o755)
        return bindir

    return install


def test_commands_run_in_the_cluster_directory_with_its_spec(fake_vagrant, tmp_path: Path) -> None:
    bindir = fake_vagrant("echo '1700000000,node1,provider-name,libvirt'; echo '1700000000,node1,state,running'\n")
    env = VagrantEnv(tmp_path / "c", vagrant_home=tmp_path / "home")
    env.write(spec_document(SPEC, provider="libvirt", box="b"))
    assert env.status() == [vagrant.Status("node1", "running", "libvirt")]
    assert (bindir / "argv").read_text().split() == ["status", "--machine-readable"]
    assert (bindir / "env").read_text().strip() == f"{env.dir}|{env.spec_file}|{tmp_path / 'home'}"


@pytest.fixture
def recorded_steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """progress.step replaced by a recorder of (title, line) pairs."""
    seen: list[tuple[str, str]] = []

    @contextmanager
    def step(title: str) -> Iterator[Callable[[str], None]]:
        yield lambda line: seen.append((title, line))

    monkeypatch.setattr(progress, "step", step)
    return seen


def test_up_streams_vagrants_output_line_by_line_and_fails_with_its_words(
    fake_vagrant, recorded_steps: list[tuple[str, str]], tmp_path: Path
) -> None:
    bindir = fake_vagrant("echo 'Bringing machine node1 up'; echo 'Creating image (snapshot of base box volume).'"
                          "; echo 'Error while connecting to libvirt' >&2; exit 1\n")
    env = VagrantEnv(tmp_path / "c")
    env.write(spec_document(SPEC, provider="libvirt", box="b"))
    with (
        pytest.raises(proc.CommandError, match="Error while connecting to libvirt"),
        env.reporting("vagrant up: 2 node(s)"),
    ):
        env.up(no_provision=True, provider="libvirt")
    assert recorded_steps[:2] == [("vagrant up: 2 node(s)", "Bringing machine node1 up"),
                        ("vagrant up: 2 node(s)", "Creating image (snapshot of base box volume).")]
    assert (bindir / "argv").read_text().split() == ["up", "--no-provision", "--provider=libvirt"]


def test_a_cluster_in_a_namespace_runs_vagrant_inside_it(fake_vagrant, tmp_path: Path, monkeypatch) -> None:
    fake_vagrant("true\n")
    seen: list[list[str]] = []
    monkeypatch.setattr(proc, "run", lambda argv, **_kw: seen.append(list(argv)) or proc.Result(tuple(argv), 0, "", ""))
    env = VagrantEnv(tmp_path / "c", netns="ksh-x")
    env.ssh_config()
    assert seen[0][:4] == ["ip", "netns", "exec", "ksh-x"]
    assert Path(seen[0][4]).name == "vagrant" and seen[0][5:] == ["ssh-config"]


def test_sigterm_during_vagrant_up_kills_vagrant_and_what_it_started(fake_vagrant, tmp_path: Path) -> None:
    """Ctrl-C and SIGTERM end the run (interrupt.Terminated) with no vagrant, and none of its helpers, left."""
    bindir = fake_vagrant(f"sleep 300 & echo $! > {tmp_path}/helper; echo started; wait\n")
    env = VagrantEnv(tmp_path / "c")
    env.write(spec_document(SPEC, provider="libvirt", box="b"))
    restore = interrupt.install()
    try:
        def terminate_once_started() -> None:
            while not (tmp_path / "helper").exists():
                time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGTERM)

        threading.Thread(target=terminate_once_started, daemon=True).start()
        with pytest.raises(interrupt.Terminated, match="SIGTERM"):
            env.up(no_provision=True, provider="libvirt")
    finally:
        restore()
        interrupt.reset()
    helper = int((tmp_path / "helper").read_text())
    for _ in range(100):  # SIGKILL is delivered at once; the zombie is reaped by init shortly after
        if not _alive(helper):
            break
        time.sleep(0.05)
    assert not _alive(helper), "vagrant's child outlived the interrupted run"
    assert (bindir / "argv").exists()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_a_failed_up_destroys_what_it_made(fake_vagrant, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    calls = tmp_path / "calls"
    fake_vagrant(f'echo "$1" >> {calls}; [ "$1" = up ] && {{ echo "machine node1 failed to boot"; exit 1; }}; exit 0\n')
    provider = VagrantProvider("libvirt", "b", name="t")
    with pytest.raises(ClusterError, match=r"(?s)vagrant up of t-t \(libvirt\) failed.*node1 failed to boot"):
        provider.up(SPEC)
    assert calls.read_text().split() == ["up", "destroy"]
    assert not (tmp_path / "state" / "vagrant" / "t-t").exists()


def test_current_netns_is_none_in_the_root_namespace() -> None:
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2")
    assert current_netns() is None


def test_machines_an_earlier_run_left_are_destroyed_before_up(fake_vagrant, tmp_path: Path, monkeypatch) -> None:
    """A run killed with its machines up leaves them in the cluster's directory: the next up of the same
    name destroys them first (vagrant's own `status` says which exist)."""
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    calls = tmp_path / "calls"
    fake_vagrant(
        f'echo "$1" >> {calls}\n'
        'case "$1" in\n'
        '  status) echo "1,node1,provider-name,libvirt"; echo "1,node1,state,running";'
        ' echo "1,node2,provider-name,libvirt"; echo "1,node2,state,not_created";;\n'
        '  up) exit 1;;\n'
        "esac\n"
    )
    left = tmp_path / "state" / "vagrant" / "t-t"
    (left / ".vagrant" / "machines" / "node1").mkdir(parents=True)
    VagrantEnv(left).write(spec_document(SPEC, provider="libvirt", box="b"))
    with pytest.raises(ClusterError):
        VagrantProvider("libvirt", "b", name="t").up(SPEC)
    # status, destroy (the earlier run's node1), then this run's up, which fails and is destroyed in turn
    assert calls.read_text().split() == ["status", "destroy", "up", "destroy"]
