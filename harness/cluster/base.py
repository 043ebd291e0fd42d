"""The cluster interface every provider implements.

A provider turns a `ClusterSpec` into a running `Cluster`. Everything downstream (installer,
upgrade, probes) reaches nodes only through what a Cluster exposes: an ssh config file, an
Ansible inventory in Kubespray's groups, `run()` and testinfra hosts. That keeps the lab's
network-namespace rule in one place: its ssh config tunnels into the namespace.
"""

from __future__ import annotations

import hashlib
import shlex
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import proc
from harness.errors import ClusterError
from harness.scenario.model import ROLE_GROUPS, NodeSpec

SSH_WAIT_SECONDS = 180.0


@dataclass(frozen=True)
class ClusterSpec:
    """What to bring up: a name (unique per xdist worker), the nodes and provider options."""

    name: str
    nodes: tuple[NodeSpec, ...]
    box: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[str, ...]:
        """The topology part of a baseline cache key."""
        return tuple(f"{n.name}:{','.join(n.roles)}:{n.cpus}:{n.memory}" for n in self.nodes)


@dataclass(frozen=True)
class Node:
    name: str
    roles: tuple[str, ...]
    address: str
    user: str = "vagrant"
    port: int = 22

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(ROLE_GROUPS[r] for r in self.roles)


class Cluster(ABC):
    """A set of reachable nodes. Subclasses implement lifecycle; reaching nodes is shared."""

    provider: str = "base"
    supports_snapshots: bool = True
    # Where a server the nodes must reach has to run (the lab installer's files repo); None: no namespace.
    netns: str | None = None
    # ssh's master sockets (one key exchange per node, shared with Ansible); None: no multiplexing.
    control_dir: Path | None = None
    # Where each node's console log is written, when the provider keeps one.
    console_dir: Path | None = None

    def __init__(self, name: str, nodes: list[Node], ssh_config: Path) -> None:
        self.name = name
        self.nodes = nodes
        self.ssh_config = ssh_config

    @property
    def state_root(self) -> Path | None:
        """Where records that live and die with this cluster go (baseline keys); None: nowhere."""
        return None

    @property
    def label(self) -> str:
        return f"cluster {self.name}"

    # -- reaching nodes -----------------------------------------------------

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise ClusterError(f"cluster {self.name!r} has no node {name!r}; nodes: {', '.join(n.name for n in self.nodes)}")

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]

    def ssh_argv(self, node: str, command: str | None = None) -> list[str]:
        argv = ["ssh", "-F", str(self.ssh_config), node]
        return argv + ([command] if command else [])

    def run(self, node: str, command: str, *, check: bool = True, timeout: float | None = 300) -> proc.Result:
        """Run a shell command on a node as its ssh user (prefix `sudo` for root)."""
        self.node(node)
        return proc.run(self.ssh_argv(node, command), check=check, timeout=timeout)

    def each_node(self, action: Callable[[str], object]) -> None:
        """`action(node)` on all nodes at once: nodes are independent, and slow under emulation."""
        with ThreadPoolExecutor(max_workers=len(self.nodes) or 1) as pool:
            for future in [pool.submit(action, n.name) for n in self.nodes]:
                future.result()

    def wait_ssh(self, node: str, *, set_clock: bool = False, seconds: float = SSH_WAIT_SECONDS) -> None:
        """Until `node` answers over ssh; `set_clock` sets its clock to this machine's on the way."""
        deadline = time.monotonic() + seconds
        while True:
            command = f"sudo date -u -s @{time.time():.3f} >/dev/null" if set_clock else "true"
            res = self.run(node, command, check=False, timeout=60)
            if res.ok:
                return
            if time.monotonic() > deadline:
                console = f"; console log: {self.console_dir / (node + '.log')}" if self.console_dir else ""
                raise ClusterError(
                    f"node {node} of {self.label} is not reachable over ssh after {seconds:.0f} s:"
                    f" {res.stderr.strip()[-300:]}{console}"
                )
            time.sleep(0.1)

    def api_server(self, node: Node, port: int = 6443) -> str:
        """The URL this process reaches `node`'s Kubernetes API server at (its own, not a balancer's)."""
        host = f"[{node.address}]" if ":" in node.address else node.address
        return f"https://{host}:{port}"

    def testinfra_url(self, node: str) -> str:
        """A pytest-testinfra host spec reaching `node` through this cluster's ssh config."""
        self.node(node)
        return f"ssh://{node}?ssh_config={self.ssh_config}&sudo=true"

    def testinfra_host(self, node: str) -> Any:
        import testinfra  # type: ignore[import-untyped]  # imported lazily: only checks need it

        return testinfra.get_host(self.testinfra_url(node))

    def ansible_ssh_args(self) -> str:
        """What Ansible needs to reach nodes the same way ssh does."""
        return f"-F {shlex.quote(str(self.ssh_config))}"

    def host_vars(self, node: Node) -> dict[str, Any]:
        """One host's inventory variables: how Ansible reaches it, and its addresses."""
        return {
            "ansible_host": node.name,  # resolved through the ssh config
            "ansible_user": node.user,
            "ansible_ssh_common_args": self.ansible_ssh_args(),
            # Ansible names its ssh master sockets by a hash of ansible_host, port and user only, in one
            # shared directory (~/.ansible/cp): two clusters with a node1 each (two labs at once, a lab and
            # a static cluster) would share node1's master, and one's tasks would run on the other's node1.
            # The cause of issue 10's two-labs failures (a guest's get_url "Network is unreachable": it ran
            # on the other lab's VM). One directory per cluster, removed with it.
            "ansible_control_path_dir": str(control_dir_for(self.ssh_config.parent)),
            "ip": node.address,
            "access_ip": node.address,
        }

    def inventory(self) -> dict[str, Any]:
        """An Ansible YAML inventory in Kubespray's groups, connection details included."""
        hosts = {n.name: self.host_vars(n) for n in self.nodes}
        groups: dict[str, dict[str, Any]] = {g: {"hosts": {}} for g in ROLE_GROUPS.values()}
        for n in self.nodes:
            for g in n.groups:
                groups[g]["hosts"][n.name] = None
        children: dict[str, Any] = dict(groups)
        children["k8s_cluster"] = {"children": {"kube_control_plane": None, "kube_node": None}}
        children["calico_rr"] = {"hosts": {}}
        return {"all": {"hosts": hosts, "children": children}}

    # -- lifecycle ------------------------------------------------------------

    @abstractmethod
    def snapshot(self, name: str) -> None: ...

    @abstractmethod
    def restore(self, name: str) -> None: ...

    @abstractmethod
    def has_snapshot(self, name: str) -> bool: ...

    @abstractmethod
    def destroy(self) -> None: ...

    def release(self) -> None:
        """Hand the cluster to the user (`--keep`): it outlives this process. Nothing to do by default."""

    def describe_access(self) -> str:
        """How a person reaches the nodes (printed by --keep)."""
        first = self.nodes[0].name if self.nodes else "NODE"
        return f"ssh -F {self.ssh_config} {first}"


class Provider(ABC):
    """Brings clusters up. One instance per pytest session (or CLI call)."""

    name: str = "base"
    # Its clusters live in a network namespace the harness owns, where the lab's offline files repo is
    # served: the installers download from it (harness.installer.files_repo).
    serves_files_repo: bool = False

    @abstractmethod
    def up(self, spec: ClusterSpec) -> Cluster:
        """Bring up (or find and reuse) the cluster for `spec`; idempotent."""

    @abstractmethod
    def cleanup(self) -> None:
        """Remove everything this provider created in this session."""


def control_dir_for(root: Path) -> Path:
    """Where a cluster's ssh control sockets go (ssh's own and Ansible's), one directory per cluster
    root: short, since a socket path must fit in 108 bytes."""
    digest = hashlib.sha256(str(root).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"ksh-cm-{digest}"
