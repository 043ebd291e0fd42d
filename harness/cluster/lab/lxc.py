"""The container lab: nodes as LXC system containers in the lab's own network namespace.

The same lab as harness/cluster/lab/provider.py (one name per lab, `ksh-<name>` on everything, the same
state file, owner, stale sweep, teardown and `harness lab` commands), with nodes that run at native
speed: a node boots in ~2 s, a snapshot or a restore of 3 nodes is a container restart over an overlay
(lxc_nodes.py), and Kubernetes runs on them. What needs a real kernel per node (a VM killed
mid-upgrade, a reboot) stays on the QEMU backend.

LXC is driven directly, not through vagrant-lxc: measured here, vagrant-lxc's `up` took 85-94 s (28 s
unpacking the box, ~45 s detecting the guest), it has no snapshots, and a second `up` fails
(`Failed to setup ipv4 address`, vagrant-lxc #485). Driving lxc-start from the overlay takes 0.1 s.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

from harness import proc, progress
from harness.cluster.base import Cluster, ClusterSpec, Node
from harness.cluster.lab import lxc_nodes, setup
from harness.cluster.lab.lxc_nodes import LxcNet, NodeFiles
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import (
    LabPaths,
    LabProviders,
    lab_subnet,
    machines,
    node_json,
    owner_alive,
    owner_record,
    read_state,
    subnets_in_use,
    sweep,
    teardown,
    terminate_as_exception,
    write_state,
)
from harness.cluster.lab.rootfs import Rootfs, ensure_rootfs
from harness.cluster.vagrant import SshHost, close_masters, control_path, render_ssh_config
from harness.errors import ClusterError, PrerequisiteError
from harness.settings import file_lock

BACKEND = "lxc"
# The lab's Debian packages (setup.APT_PACKAGES) this backend uses.
PACKAGES = ("lxc", "debootstrap", "netcat-openbsd", "util-linux", "iproute2", "openssh-client")


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise PrerequisiteError(
            "the container lab needs root (network namespaces, privileged containers); run as root or use"
            " --provider static/vagrant"
        )
    missing = [p for p in setup.missing_packages() if p in PACKAGES]
    if missing:
        raise PrerequisiteError(
            f"the container lab needs Debian packages that are not installed: {', '.join(missing)}."
            f" Run `harness lab setup` or: apt-get install --no-install-recommends {' '.join(PACKAGES)}"
        )
    if not Path("/sys/fs/cgroup").is_dir():
        raise PrerequisiteError("the container lab needs cgroups mounted at /sys/fs/cgroup")



def node_address(subnet: str, index: int) -> str:
    """node1 at .11, node2 at .12, ...; .1 is the lab's side of the bridge (the files repo listens there)."""
    return str(ipaddress.ip_network(subnet)[10 + index])


def gateway(subnet: str) -> str:
    net = ipaddress.ip_network(subnet)
    return f"{net[1]}/{net.prefixlen}"


class LxcCluster(Cluster):
    """Container nodes of one lab. Snapshots are overlay layers (lxc_nodes.py): saving one restarts each
    node on a fresh upper over its old upper turned into a layer; restoring one restarts each node on
    an empty upper over that snapshot's layers. Both take about a second for 3 nodes."""

    provider = "lab"
    supports_snapshots = True

    def __init__(self, name: str, nodes: list[Node], paths: LabPaths) -> None:
        super().__init__(name, nodes, paths.ssh_config)
        self.paths = paths
        self.prefix = paths.prefix
        self.netns = paths.prefix
        self.control_dir = paths.control_dir
        self.console_dir = paths.console
        self._forwards: dict[tuple[str, int], int] = {}

    @property
    def state_root(self) -> Path:
        return self.paths.root

    @property
    def label(self) -> str:
        return f"lab {self.prefix} (containers)"

    def files(self, node: str) -> NodeFiles:
        return NodeFiles(self.paths.root, self.prefix, node)

    def host_vars(self, node: Node) -> dict[str, Any]:
        hv = super().host_vars(node)
        # Ansible multiplexes over the masters the harness's probes opened (see VagrantCluster.host_vars).
        hv["ansible_control_path"] = control_path(self.paths.control_dir).replace("%", "%%")
        return hv

    # -- the Kubernetes API, from outside the namespace --

    def api_server(self, node: Node, port: int = 6443) -> str:
        """A port on this machine's loopback forwarded by the node's ssh master to the node's own API
        server (the network rule: no lab address is reached from the root namespace). The API server's
        certificate names 127.0.0.1. Made again when a restore closed the master."""
        key = (node.name, port)
        local = self._forwards.get(key)
        if local is None or not _listening(local):
            self.run(node.name, "true", timeout=60)  # the master the forward rides on
            local = _free_port()
            proc.run(["ssh", "-F", str(self.ssh_config), "-O", "forward",
                      "-L", f"127.0.0.1:{local}:127.0.0.1:{port}", node.name], timeout=30)
            self._forwards[key] = local
        return f"https://127.0.0.1:{local}"

    # -- running the nodes --

    def lxc(self, *argv: str, check: bool = True, timeout: float = 60) -> proc.Result:
        return proc.run(lxc_nodes.lxc_argv(self.prefix, self.paths.root / "sysfs", *argv), check=check, timeout=timeout)

    def start_node(self, node: str) -> None:
        f = self.files(node)
        lxc_nodes.check_started(f, self.lxc("lxc-start", "-P", str(f.lxcpath), "-n", f.name, check=False))

    def stop_node(self, node: str, *, kill: bool) -> None:
        """`kill`: at once; else a clean stop, killed after STOP_SECONDS. Returns once no process of the
        node is left (found by its cgroup): its files are about to be moved or thrown away."""
        f = self.files(node)
        how = ["-k"] if kill else ["-t", str(lxc_nodes.STOP_SECONDS)]
        self.lxc("lxc-stop", "-P", str(f.lxcpath), "-n", f.name, *how, check=False,
                 timeout=lxc_nodes.STOP_SECONDS + 30)
        if not lxc_nodes.kill_node(self.prefix, node):
            raise ClusterError(f"node {node} of {self.label} still has processes after lxc-stop and SIGKILL")

    def running(self) -> list[str]:
        """Nodes whose container runs (lxc-ls in the lab's namespace)."""
        res = self.lxc("lxc-ls", "-P", str(self.paths.root / "lxc"), "--running", "-1", check=False)
        names = set(res.stdout.split()) if res.ok else set()
        return [n.name for n in self.nodes if self.files(n.name).name in names]

    # -- snapshots --

    def _state(self) -> dict[str, Any]:
        state = read_state(self.paths)
        if not state:
            raise ClusterError(f"lab {self.prefix} has no state file ({self.paths.state}); bring it up again")
        return state

    def snapshots(self) -> list[str]:
        return sorted(self._state().get("snapshots", {}))

    def has_snapshot(self, name: str) -> bool:
        return name in self.snapshots()

    def snapshot(self, name: str) -> None:
        state = self._state()
        layers: dict[str, list[str]] = state.setdefault("layers", {})
        taken: dict[str, list[str]] = {}
        close_masters(self.ssh_config, [n.name for n in self.nodes])

        def save(node: str) -> None:
            f = self.files(node)
            lxc_nodes.unmount_root(f)
            layer = lxc_nodes.layers_dir(self.paths.root) / f"{node}-{uuid.uuid4().hex[:8]}"
            layer.parent.mkdir(parents=True, exist_ok=True)
            f.upper.rename(layer)
            proc.run(["cp", "-a", str(f.containerd), str(layer.with_suffix(".containerd"))], timeout=600)
            chain = [layer.name, *layers.get(node, [])]
            taken[node] = chain
            lxc_nodes.mount_root(f, self._lowers(chain))
            self.start_node(node)

        with progress.step(f"snapshot {name} of {self.label}"):
            # Every node killed at one instant, as a power cut: what a snapshot holds is what each
            # service had made durable, the same state a restore then recovers from. A clean shutdown
            # staggers the members instead: a baseline snapshotted 3 s after its etcd formed, while
            # its leader handed over on SIGTERM, came back with a member the others did not know
            # ("failed to find member", in a CI trial), and etcd 3.4 hangs on SIGTERM as a former leader.
            self.each_node(lambda node: self.stop_node(node, kill=True))
            self.each_node(save)
            state["layers"] = {**layers, **taken}
            state.setdefault("snapshots", {})[name] = taken
            write_state(self.paths, state)
            self.each_node(self.wait_ssh)
        self._collect_layers()

    def restore(self, name: str) -> None:
        state = self._state()
        snap = state.get("snapshots", {}).get(name)
        if snap is None:
            raise ClusterError(
                f"{self.label}: no snapshot {name!r}; snapshots every node has: {', '.join(self.snapshots()) or 'none'}"
            )
        close_masters(self.ssh_config, [n.name for n in self.nodes])
        with progress.step(f"restoring snapshot {name} of {self.label}"):
            # Every node down before any comes back: a member restored early must not talk to members
            # still running the previous scenario's cluster.
            self.each_node(lambda node: self.stop_node(node, kill=True))

            def back(node: str) -> None:
                f = self.files(node)
                lxc_nodes.unmount_root(f)
                chain = snap[node]
                shutil.rmtree(f.containerd, ignore_errors=True)
                top = lxc_nodes.layers_dir(self.paths.root) / chain[0]
                proc.run(["cp", "-a", str(top.with_suffix(".containerd")), str(f.containerd)], timeout=600)
                lxc_nodes.mount_root(f, self._lowers(chain))
                self.start_node(node)

            self.each_node(back)
            state["layers"] = {**state.get("layers", {}), **snap}
            write_state(self.paths, state)
            self.each_node(self.wait_ssh)

    def _lowers(self, chain: list[str]) -> list[Path]:
        base = Path(self._state()["rootfs"])
        return [*(lxc_nodes.layers_dir(self.paths.root) / layer for layer in chain), base]

    def _collect_layers(self) -> None:
        """Layers no snapshot and no running node stands on (a snapshot saved again under its name)."""
        state = self._state()
        used = {layer for chains in state.get("snapshots", {}).values() for chain in chains.values() for layer in chain}
        used |= {layer for chain in state.get("layers", {}).values() for layer in chain}
        d = lxc_nodes.layers_dir(self.paths.root)
        for p in d.iterdir() if d.is_dir() else []:
            if p.name.removesuffix(".containerd") not in used:
                shutil.rmtree(p, ignore_errors=True)

    # -- lifecycle --

    def destroy(self) -> None:
        teardown(self.paths)

    def release(self) -> None:
        state = read_state(self.paths)
        if state:
            state["owner"] = None
            write_state(self.paths, state)

    def leftovers(self) -> list[str]:
        from harness.cluster.lab.provider import leftovers

        return leftovers(self.paths)

    def describe_access(self) -> str:
        first = self.nodes[0].name if self.nodes else "NODE"
        name = self.prefix.removeprefix("ksh-")
        return (f"harness lab ssh --name {name} {first}  (or ssh -F {self.ssh_config} {first});"
                f" `harness lab inventory --name {name}` for verify/ansible; `harness lab down --name {name}` removes it")


class LxcProvider(LabProviders):
    """The container backend's provider: ownership, reuse and the stale sweep as the QEMU lab's."""

    backend = BACKEND

    def document(self, spec: ClusterSpec, paths: LabPaths, rootfs: Rootfs) -> dict[str, Any]:
        """What makes two labs the same machines: backend, base tree, subnet, node names and sizes."""
        return {
            "name": spec.name,
            "backend": BACKEND,
            "rootfs": str(rootfs.path),
            "subnet": lab_subnet(paths.prefix, subnets_in_use(exclude=paths.prefix)),
            "nodes": [{"name": n.name, "roles": list(n.roles), "memory": n.memory} for n in spec.nodes],
        }

    def find(self, spec_or_name: ClusterSpec | str | None = None) -> LxcCluster | None:
        lab_id = (self.lab_name if spec_or_name is None
                  else spec_or_name if isinstance(spec_or_name, str) else self.lab_id(spec_or_name))
        paths = LabPaths(lab_prefix(lab_id))
        state = read_state(paths)
        if not state or not state.get("ready") or state.get("backend") != BACKEND:
            return None
        return _cluster_from_state(paths, state)

    def up(self, spec: ClusterSpec) -> LxcCluster:
        check_prerequisites()
        rootfs = ensure_rootfs()
        paths = LabPaths(lab_prefix(self.lab_id(spec)))
        sweep(stale_only=True, exclude=paths.prefix)
        with file_lock(paths.lock):
            doc = self.document(spec, paths, rootfs)
            reused = self._reusable(paths, doc)
            if reused:
                self._clusters[paths.prefix] = reused.paths
                return reused
            teardown(paths)  # a stale lab of a killed run, or one of another shape or backend
            with terminate_as_exception():
                try:
                    cluster = self._create(spec, paths, doc, rootfs)
                except BaseException:
                    teardown(paths)
                    raise
        self._clusters[paths.prefix] = cluster.paths
        return cluster

    def _reusable(self, paths: LabPaths, doc: dict[str, Any]) -> LxcCluster | None:
        state = read_state(paths)
        if not state or not state.get("ready") or state.get("backend") != BACKEND:
            return None
        if machines(state.get("document") or {}) != machines(doc):
            return None
        owner = state.get("owner")
        if owner and owner["pid"] != os.getpid() and owner_alive(owner):
            raise ClusterError(f"lab {paths.prefix} is in use by process {owner['pid']}; give this run another lab name")
        if owner and not owner_alive(owner):
            return None
        cluster = _cluster_from_state(paths, state)
        if sorted(cluster.running()) != sorted(n.name for n in cluster.nodes):
            return None
        if not self.keep and not owner:
            state["owner"] = owner_record()
            write_state(paths, state)
        return cluster

    def _create(self, spec: ClusterSpec, paths: LabPaths, doc: dict[str, Any], rootfs: Rootfs) -> LxcCluster:
        paths.root.mkdir(parents=True, exist_ok=True)
        paths.console.mkdir(exist_ok=True)
        (paths.root / "sysfs").mkdir(exist_ok=True)
        state: dict[str, Any] = {
            "name": self.lab_id(spec),
            "prefix": paths.prefix,
            "backend": BACKEND,
            "document": doc,
            "rootfs": str(rootfs.path),
            "owner": None if self.keep else owner_record(),
            "ready": False,
            "created": time.time(),
        }
        write_state(paths, state)  # first: a run killed from here on leaves a lab the sweep recognises
        subnet = doc["subnet"]
        net = LxcNet(paths.prefix, gateway(subnet))
        net.start()
        nodes = [Node(name=n.name, roles=tuple(n.roles), address=node_address(subnet, i), user=rootfs.user)
                 for i, n in enumerate(spec.nodes, start=1)]
        paths.ssh_config.write_text(render_ssh_config(
            [SshHost(n.name, n.address, n.user, 22, str(rootfs.private_key)) for n in nodes],
            proxy_command=f"ip netns exec {paths.prefix} nc %h %p",
            control_dir=paths.control_dir,
        ))
        paths.control_dir.mkdir(mode=0o700, exist_ok=True)
        cluster = LxcCluster(spec.name, nodes, paths)
        memory = {n.name: n.memory for n in spec.nodes}

        def create(node: Node) -> None:
            f = cluster.files(node.name)
            f.containerd.mkdir(parents=True, exist_ok=True)
            f.config.parent.mkdir(parents=True, exist_ok=True)
            f.config.write_text(lxc_nodes.config_text(
                f, address=node.address, gateway=net.gateway, memory_mib=memory[node.name],
                console=paths.console / f"{node.name}.log"))
            lxc_nodes.mount_root(f, [rootfs.path])
            (f.merged / "etc" / "hostname").write_text(f"{node.name}\n")
            hosts = ["127.0.0.1\tlocalhost", f"127.0.1.1\t{node.name}", *(f"{n.address}\t{n.name}" for n in nodes)]
            (f.merged / "etc" / "hosts").write_text("\n".join(hosts) + "\n")
            cluster.start_node(node.name)
            cluster.wait_ssh(node.name, seconds=60)

        with progress.step(f"starting {len(nodes)} container node(s) in lab {paths.prefix}"):
            cluster.each_node(lambda name: create(cluster.node(name)))
        state.update(ready=True, nodes=[node_json(n) for n in nodes], layers={}, snapshots={})
        write_state(paths, state)
        return cluster


def _cluster_from_state(paths: LabPaths, state: dict[str, Any]) -> LxcCluster:
    nodes = [Node(name=n["name"], roles=tuple(n["roles"]), address=n["address"], user=n["user"], port=n["port"])
             for n in state["nodes"]]
    paths.control_dir.mkdir(mode=0o700, exist_ok=True)
    return LxcCluster(state["document"]["name"], nodes, paths)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0
