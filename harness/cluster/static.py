"""Existing hosts from an Ansible inventory (YAML or INI): nothing to bring up, nothing to snapshot.

The inventory is read by ansible-core's own InventoryManager, so whatever Ansible accepts (group vars,
children, ranges, INI or YAML) means the same here. Roles come from Kubespray's groups.
"""

from __future__ import annotations

import getpass
import hashlib
import shlex
from pathlib import Path
from typing import Any

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


def read_inventory(path: Path) -> list[tuple[Node, dict[str, Any]]]:
    """(node, its Ansible variables) for every host that has at least one Kubespray role."""
    if not path.is_file():
        raise ClusterError(f"inventory {path} does not exist")
    from ansible.inventory.manager import InventoryManager  # ansible is slow to import; only here
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

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
            user=str(hv.get("ansible_user") or getpass.getuser()),
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
            digest = hashlib.sha256(str(self.inventory_file).encode()).hexdigest()[:10]
            root = state_dir() / "static" / f"{self.inventory_file.stem}-{digest}"
            root.mkdir(parents=True, exist_ok=True)
            ssh_config = root / "ssh_config"
            ssh_config.write_text(render_static_ssh_config(hosts))
            self._cluster = StaticCluster(self.inventory_file.stem, [n for n, _ in hosts], ssh_config)
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
