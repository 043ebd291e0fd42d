"""Existing hosts from an Ansible inventory (YAML or INI): nothing to bring up, nothing to snapshot.

The inventory is read by ansible-core's own InventoryManager, so whatever Ansible accepts (group vars,
children, ranges, INI or YAML) means the same here. Roles come from Kubespray's groups; how each host
is reached and whom commands run as come from its connection and become variables, as Ansible reads
them: `ansible_connection: local` runs commands here, a root login runs them without sudo.
"""

from __future__ import annotations

import getpass
import hashlib
import os
import pwd
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from harness import proc
from harness.cluster.base import Cluster, ClusterSpec, Node, Provider
from harness.errors import ClusterError
from harness.settings import state_dir

# Kubespray's groups -> roles; the dashed names are Kubespray's pre-2.20 spelling.
GROUP_ROLES = {
    "kube_control_plane": "control-plane",
    "kube-master": "control-plane",
    "etcd": "etcd",
    "kube_node": "worker",
    "kube-node": "worker",
}
_ROLE_ORDER = ("control-plane", "etcd", "worker")
SSH_CONNECTIONS = ("ssh", "smart", "paramiko")
# Connection and become variables the harness's own inventory carries on for its playbooks
# (never a password: inventories the harness writes end up in artifacts).
CARRIED_VARS = ("ansible_become", "ansible_become_user", "ansible_become_method", "ansible_python_interpreter")


@dataclass(frozen=True)
class Access:
    """How the harness reaches one inventory host and whom its commands there run as."""

    local: bool = False
    # Commands go through `sudo -u sudo_user`; None: they run as the connecting user, no sudo at all.
    sudo_user: str | None = "root"
    ansible_vars: Mapping[str, Any] = field(default_factory=dict)


def _login(hv: Mapping[str, Any]) -> str:
    """Whom commands on a host run as before any become: a local connection runs as this process's
    user whatever ansible_user says, as Ansible does."""
    if hv.get("ansible_connection") == "local":
        return pwd.getpwuid(os.geteuid()).pw_name
    return str(hv.get("ansible_user") or getpass.getuser())


def access_of(node: Node, hv: Mapping[str, Any], *, source: Path) -> Access:
    """The inventory's own answer: `ansible_connection`, the login user and the become settings.

    Without `ansible_become`, the harness does what Kubespray's plays do (`become: true`): a login
    that is not the become user (root by default) goes through sudo, and root runs commands as is."""
    from ansible.module_utils.parsing.convert_bool import boolean  # type: ignore[import-untyped]

    host, user = node.name, node.user
    connection = str(hv.get("ansible_connection") or "ssh")
    if connection not in (*SSH_CONNECTIONS, "local"):
        raise ClusterError(
            f"inventory {source}: host {host}: ansible_connection {connection!r} is not supported"
            f" (use ssh or local)"
        )
    local = connection == "local"
    become_user = str(hv.get("ansible_become_user") or "root")
    try:
        become = boolean(hv["ansible_become"], strict=True) if "ansible_become" in hv else True
    except TypeError as e:
        raise ClusterError(f"inventory {source}: host {host}: ansible_become: {e}") from None
    method = str(hv.get("ansible_become_method") or "sudo")
    if become and method != "sudo" and user != become_user:
        raise ClusterError(
            f"inventory {source}: host {host}: ansible_become_method {method!r} is not supported"
            f" (the harness's probes run commands with sudo)"
        )
    # Plain values: Ansible hands out its own str subclasses, which a YAML dump of the inventory refuses.
    carried: dict[str, Any] = {k: str(hv[k]) for k in CARRIED_VARS if k in hv}
    if "ansible_become" in hv:
        carried["ansible_become"] = become
    if local:
        carried["ansible_connection"] = "local"
    return Access(local=local, sudo_user=become_user if become and user != become_user else None, ansible_vars=carried)


def read_inventory(path: Path) -> list[tuple[Node, dict[str, Any]]]:
    """(node, its Ansible variables) for every host that has at least one Kubespray role."""
    if not path.is_file():
        raise ClusterError(f"inventory {path} does not exist")
    # ansible is slow to import; only here
    from ansible.inventory.manager import InventoryManager  # type: ignore[import-untyped]
    from ansible.parsing.dataloader import DataLoader  # type: ignore[import-untyped]
    from ansible.vars.manager import VariableManager  # type: ignore[import-untyped]

    loader = DataLoader()
    inventory = InventoryManager(loader=loader, sources=[str(path)])
    variables = VariableManager(loader=loader, inventory=inventory)
    hosts = inventory.get_hosts()
    if not hosts:
        raise ClusterError(f"no hosts in inventory {path}: is it an Ansible inventory (INI or YAML)?")
    out: list[tuple[Node, dict[str, Any]]] = []
    for host in hosts:
        hv = variables.get_vars(host=host, include_hostvars=False)
        groups = {g.name for g in host.get_groups()}
        roles = tuple(r for r in _ROLE_ORDER if any(GROUP_ROLES.get(g) == r for g in groups))
        if not roles:
            continue
        node = Node(
            name=host.name,
            roles=roles,
            address=str(hv.get("ip") or hv.get("access_ip") or hv.get("ansible_host") or host.name),
            user=_login(hv),
            port=int(hv.get("ansible_port") or 22),
        )
        out.append((node, hv))
    if not out:
        raise ClusterError(
            f"inventory {path} has hosts but none in Kubespray's groups ({', '.join(sorted(GROUP_ROLES))})"
        )
    return out


def _ssh_options(common_args: str) -> tuple[str | None, list[tuple[str, str]]]:
    """`-F FILE` and `-o Key=Value` out of ansible_ssh_common_args/ansible_ssh_extra_args."""
    config: str | None = None
    options: list[tuple[str, str]] = []
    args = shlex.split(common_args)
    for i, a in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else ""
        if a == "-F":
            config = nxt
        elif a.startswith("-F") and len(a) > 2:
            config = a[2:]
        elif a == "-o" or (a.startswith("-o") and len(a) > 2):
            opt = nxt if a == "-o" else a[2:]
            key, sep, value = opt.partition("=")
            if not sep:
                key, _, value = opt.partition(" ")
            options.append((key.strip(), value.strip()))
    return config, options


def render_static_ssh_config(hosts: list[tuple[Node, dict[str, Any]]]) -> str:
    """An ssh config giving each inventory host its name as alias, with the inventory's connection vars."""
    out = ["# Written by kubespray-upgrade-harness from an Ansible inventory."]
    for node, hv in hosts:
        if hv.get("ansible_connection") == "local":
            continue  # reached without ssh
        config, options = _ssh_options(
            f"{hv.get('ansible_ssh_common_args', '')} {hv.get('ansible_ssh_extra_args', '')}"
        )
        out.append(f"Host {node.name}")
        if config:
            # The inventory reaches this host through its own ssh config (the lab's does): its values come
            # first, and ssh keeps the first value it reads.
            out.append(f'  Include "{Path(config).expanduser().resolve()}"')
        out += [f"  HostName {hv.get('ansible_host') or node.name}", f"  User {node.user}", f"  Port {node.port}"]
        key = hv.get("ansible_ssh_private_key_file") or hv.get("ansible_private_key_file")
        if key:
            out.append(f'  IdentityFile "{key}"')
        for k, v in options:
            out.append(f"  {k} {v}")
        out.append("")
    return "\n".join(out)


class StaticCluster(Cluster):
    provider = "static"
    supports_snapshots = False

    def __init__(self, name: str, nodes: list[Node], ssh_config: Path, access: Mapping[str, Access]) -> None:
        super().__init__(name, nodes, ssh_config)
        self.access = dict(access)

    def run(self, node: str, command: str, *, check: bool = True, timeout: float | None = 300) -> proc.Result:
        self.node(node)
        if self.access[node].local:
            return proc.run(["sh", "-c", command], check=check, timeout=timeout)
        return super().run(node, command, check=check, timeout=timeout)

    def testinfra_url(self, node: str) -> str:
        self.node(node)
        access = self.access[node]
        query: dict[str, str] = {} if access.local else {"ssh_config": str(self.ssh_config)}
        if access.sudo_user is not None:
            query["sudo"] = "true"
            if access.sudo_user != "root":
                query["sudo_user"] = access.sudo_user
        spec = "local://" if access.local else f"ssh://{node}"
        return f"{spec}?{urlencode(query, safe='/')}" if query else spec

    def host_vars(self, node: Node) -> dict[str, Any]:
        access = self.access[node.name]
        base = {"ip": node.address, "access_ip": node.address} if access.local else super().host_vars(node)
        return {**base, **access.ansible_vars}

    def snapshot(self, name: str) -> None:
        raise ClusterError(f"static cluster {self.name!r} cannot snapshot: its hosts are not ours to roll back")

    def restore(self, name: str) -> None:
        raise ClusterError(
            f"static cluster {self.name!r} cannot restore snapshot {name!r}: static clusters have no snapshots;"
            " redeploy the baseline instead"
        )

    def has_snapshot(self, name: str) -> bool:
        return False

    def destroy(self) -> None:
        """Nothing to destroy: the hosts were there before and stay."""


class StaticProvider(Provider):
    """`StaticProvider("inventory/hosts.yaml")`: the cluster an inventory describes, as it is."""

    name = "static"

    def __init__(self, inventory_file: Path | str) -> None:
        self.inventory_file = Path(inventory_file).expanduser().resolve()
        self._cluster: StaticCluster | None = None

    def cluster(self) -> StaticCluster:
        if self._cluster is None:
            hosts = read_inventory(self.inventory_file)
            access = {n.name: access_of(n, hv, source=self.inventory_file) for n, hv in hosts}
            digest = hashlib.sha256(str(self.inventory_file).encode()).hexdigest()[:10]
            root = state_dir() / "static" / f"{self.inventory_file.stem}-{digest}"
            root.mkdir(parents=True, exist_ok=True)
            ssh_config = root / "ssh_config"
            ssh_config.write_text(render_static_ssh_config(hosts))
            self._cluster = StaticCluster(self.inventory_file.stem, [n for n, _ in hosts], ssh_config, access)
        return self._cluster

    def up(self, spec: ClusterSpec) -> Cluster:
        """The inventory's cluster; a spec naming nodes the inventory lacks is an error, not a bring-up."""
        cluster = self.cluster()
        have = {n.name for n in cluster.nodes}
        missing = [n.name for n in spec.nodes if n.name not in have]
        if missing:
            raise ClusterError(
                f"inventory {self.inventory_file} has no host(s) {', '.join(missing)} (it has {', '.join(sorted(have))});"
                " a static cluster cannot add nodes"
            )
        return cluster

    def cleanup(self) -> None:
        """Nothing was created."""
