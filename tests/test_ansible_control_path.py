"""Issue 10's two-labs failures, found: Ansible names its ssh master sockets by a hash of ansible_host,
port and user only, in one shared directory (~/.ansible/cp). Two labs both have a `node1` reached as
`ansible_host: node1` by user vagrant on port 22 through their own ssh config, so while one lab's
master for node1 lived (ControlPersist), the other lab's tasks for node1 went through it and ran on the
first lab's VM: a guest's `get_url` from "its" files repo then failed with `Network is unreachable`
(the other lab's subnet), and a master dying mid-task gave `Data could not be sent to remote host`.

The real `ansible` command builds its ssh command line from the inventories the harness writes for two
lab clusters (the real `VagrantCluster` class the lab uses, two lab roots, no VMs). The one thing that
cannot run here is ssh into a VM: a fixture `ssh` executable records its arguments and exits 255.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.base import Node, control_dir_for
from harness.cluster.vagrant import SshHost, VagrantCluster, VagrantEnv, render_ssh_config
from harness.installer.inventory import write_inventory

ANSIBLE = Path(sys.executable).with_name("ansible")
# Fixture for the one thing no test can reach here (a VM's sshd): records the command line, fails like
# an unreachable host.
FAKE_SSH = """#!/bin/sh
printf '%s\\n' "$@" > "$SSH_ARGV_FILE"
exit 255
"""


def _lab(root: Path, subnet: str) -> VagrantCluster:
    """A 1-node lab cluster as the lab provider makes one: node1 behind its own ssh config."""
    root.mkdir(parents=True)
    control = control_dir_for(root)
    config = root / "ssh_config"
    config.write_text(render_ssh_config([SshHost("node1", f"{subnet}.11", "vagrant", 22)], control_dir=control))
    return VagrantCluster(root.name, [Node("node1", ("etcd",), f"{subnet}.11", "vagrant")], config, VagrantEnv(root),
                          control_dir=control)


def _control_path(cluster: VagrantCluster, pdd: Path, fake_ssh: Path, *, drop: tuple[str, ...] = ()) -> str:
    """The ControlPath `ansible node1 -m ping` passes to ssh with this cluster's inventory."""
    inventory = cluster.inventory()
    for hosts in _host_maps(inventory):
        for hv in filter(None, hosts.values()):
            for key in drop:
                hv.pop(key, None)
    inv = write_inventory(pdd, inventory, {})
    argv_file = pdd / "ssh-argv"
    env = {**os.environ, "SSH_ARGV_FILE": str(argv_file), "ANSIBLE_SSH_RETRIES": "0", "ANSIBLE_NOCOLOR": "1",
           "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=60s"}
    subprocess.run([str(ANSIBLE), "node1", "-i", str(inv), "-m", "ping", "-e", f"ansible_ssh_executable={fake_ssh}"],
                   capture_output=True, text=True, check=False, timeout=120, env=env)
    args = argv_file.read_text().splitlines()
    found = [m.group(1) for a in args if (m := re.match(r'ControlPath="?([^"]+)"?$', a))]
    assert len(found) == 1, args
    return found[0]


def _host_maps(inventory: dict) -> list[dict]:
    out = [inventory.get("all", {}).get("hosts", {})]
    for group in inventory.get("all", {}).get("children", {}).values():
        out.append(group.get("hosts") or {})
    return [h for h in out if h]


@pytest.fixture
def fake_ssh(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "fixture-ssh"
    path.write_text(FAKE_SSH)
    path.chmod(0o755)
    yield path
    for name in ("ksh-a", "ksh-b"):  # Ansible made these control directories under /tmp
        shutil.rmtree(control_dir_for(tmp_path / "labs" / name), ignore_errors=True)


def test_two_labs_never_share_an_ansible_ssh_master(tmp_path: Path, fake_ssh: Path) -> None:
    a = _lab(tmp_path / "labs" / "ksh-a", "10.101.7")
    b = _lab(tmp_path / "labs" / "ksh-b", "10.150.3")
    path_a = _control_path(a, tmp_path / "run-a", fake_ssh)
    path_b = _control_path(b, tmp_path / "run-b", fake_ssh)
    assert path_a != path_b
    # Each in its own cluster's control directory, which the lab removes with the lab.
    assert Path(path_a).parent == control_dir_for(a.ssh_config.parent)
    assert Path(path_b).parent == control_dir_for(b.ssh_config.parent)


def _ssh_control_path(cluster: VagrantCluster, *extra: str) -> str:
    """The ControlPath the real ssh resolves for node1 through the cluster's ssh config (`ssh -G`)."""
    out = subprocess.run(["ssh", "-G", "-F", str(cluster.ssh_config), *extra, "node1"], capture_output=True,
                         text=True, check=True, timeout=30).stdout
    return next(line.split(None, 1)[1] for line in out.splitlines() if line.startswith("controlpath "))


def test_ansible_shares_the_masters_the_ssh_config_names(tmp_path: Path, fake_ssh: Path) -> None:
    """Ansible's ControlPath, as real ssh expands it, is the one the harness's own ssh (probes, restore's
    `-O exit`) uses: playbooks reuse the probes' connections, and closing the masters closes Ansible's."""
    a = _lab(tmp_path / "labs" / "ksh-a", "10.101.7")
    ansible_path = _control_path(a, tmp_path / "run-a", fake_ssh)
    assert "%C" in ansible_path  # left for ssh to expand, not a hash of Ansible's own
    assert _ssh_control_path(a, "-o", f"ControlPath={ansible_path}") == _ssh_control_path(a)


def test_without_a_directory_per_cluster_both_labs_node1_share_one_master(tmp_path: Path, fake_ssh: Path) -> None:
    """The cause, shown: what Ansible did before, with only its own defaults (one ~/.ansible/cp)."""
    a = _lab(tmp_path / "labs" / "ksh-a", "10.101.7")
    b = _lab(tmp_path / "labs" / "ksh-b", "10.150.3")
    drop = ("ansible_control_path_dir", "ansible_control_path")
    assert _control_path(a, tmp_path / "run-a", fake_ssh, drop=drop) == _control_path(b, tmp_path / "run-b", fake_ssh,
                                                                                      drop=drop)
