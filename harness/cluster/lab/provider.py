"""The embedded lab: the vagrant provider (harness/cluster/vagrant.py) with libvirt, the offline box and
the lab's private libvirtd, run inside a network namespace of the lab's own.

What is the lab's own lives here: the namespace and its libvirt daemons (setup.py), the offline box
(box.py), the accelerator verdict (accel.py), the stale-lab sweep and the ssh ProxyCommand into the
namespace. Up, snapshot, restore and destroy are the vagrant cluster's.

A lab is named (`LabProvider(name=...)`, default `lab` or `lab-gwN` under pytest-xdist); every
resource carries the prefix `ksh-<name>`: the namespace, libvirt domains (`ksh-<name>-node1`) and
volumes, the management network and the state directory. Nodes are reached from the root namespace
through an ssh config whose ProxyCommand enters the namespace, so no VM address ever appears outside it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import time
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import interrupt, progress
from harness.cluster.base import ClusterSpec, Node, Provider, control_dir_for
from harness.cluster.lab import accel, lxc_nodes
from harness.cluster.lab.box import Box, ensure_box
from harness.cluster.lab.paths import lab_prefix, labs_root, vagrant_home
from harness.cluster.lab.setup import LabNet, check_prerequisites
from harness.cluster.vagrant import (
    VagrantCluster,
    VagrantEnv,
    close_masters,
    connect,
    spec_document,
    vagrant_up,
)
from harness.errors import ClusterError, HarnessError
from harness.scenario.model import NodeSpec
from harness.settings import file_lock


def default_lab_name() -> str:
    """`lab`, or `lab-gw0` etc. under pytest-xdist so parallel workers never share a lab."""
    worker = os.environ.get("PYTEST_XDIST_WORKER")
    return f"lab-{worker}" if worker else "lab"


def default_spec(name: str, nodes: int, *, memory: int = 1024, cpus: int = 1) -> ClusterSpec:
    """node1: control-plane+etcd+worker; the others etcd+worker (what `lab up --nodes N` brings up)."""
    if nodes < 1:
        raise ClusterError(f"a lab needs at least one node, not {nodes}")
    specs = [
        NodeSpec(
            name=f"node{i}",
            roles=("control-plane", "etcd", "worker") if i == 1 else ("etcd", "worker"),
            cpus=cpus,
            memory=memory,
        )
        for i in range(1, nodes + 1)
    ]
    return ClusterSpec(name=name, nodes=tuple(specs))


@dataclass(frozen=True)
class LabPaths:
    """Everything a lab owns on disk; deleting `root` (and `control_dir`) forgets the lab."""

    prefix: str

    @property
    def root(self) -> Path:
        return labs_root() / self.prefix

    @property
    def lock(self) -> Path:
        # Beside, not inside, the lab: teardown deletes the directory while holding the lock.
        return labs_root() / f"{self.prefix}.lock"

    @property
    def state(self) -> Path:
        return self.root / "lab.json"

    @property
    def ssh_config(self) -> Path:
        return self.root / "ssh_config"

    @property
    def console(self) -> Path:
        return self.root / "console"

    @property
    def control_dir(self) -> Path:
        return control_dir_for(self.root)

    def net(self) -> LabNet:
        return LabNet(netns=self.prefix, libvirt_dir=self.root / "libvirt")

    def vagrant(self) -> VagrantEnv:
        return VagrantEnv(self.root / "vagrant", vagrant_home=vagrant_home(), netns=self.prefix)


def process_start(pid: int) -> str | None:
    """Start time of a process (clock ticks since boot): a pid plus this survives pid reuse."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner_record() -> dict[str, Any]:
    return {"pid": os.getpid(), "start": process_start(os.getpid())}


def owner_alive(owner: dict[str, Any]) -> bool:
    return process_start(int(owner["pid"])) == owner.get("start")


class LabCluster(VagrantCluster):
    """A vagrant cluster inside the lab's namespace, reached through a ProxyCommand into it. Adds what
    is the lab's own: its daemons must run, and destroying it removes the namespace with them."""

    provider = "lab"

    def __init__(self, name: str, nodes: list[Node], paths: LabPaths) -> None:
        super().__init__(
            name,
            nodes,
            paths.ssh_config,
            paths.vagrant(),
            netns=paths.prefix,  # the files repo the guests fetch from is served there
            control_dir=paths.control_dir,
            console_dir=paths.console,
        )
        self.paths = paths
        self.prefix = paths.prefix
        self.net = paths.net()

    @property
    def state_root(self) -> Path:
        return self.paths.root

    @property
    def label(self) -> str:
        return f"lab {self.prefix}"

    def domain(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def _require_running(self) -> None:
        if not self.net.running():
            raise ClusterError(f"lab {self.prefix} is not running (its libvirtd is gone); run `harness lab up` again")

    def snapshot(self, name: str) -> None:
        self._require_running()
        super().snapshot(name)

    def restore(self, name: str) -> None:
        self._require_running()
        super().restore(name)

    def _revert(self, name: str) -> None:
        # Pause every node first: a member reverted early must not talk to members still running the
        # previous scenario's cluster (seen in CI: node1, reverted to etcd 3.4, took raft messages from
        # the 3.5 members not yet reverted and the restored cluster never formed).
        for node in self.nodes:
            self.net.virsh("suspend", self.domain(node.name), check=False)
        # Every domain's revert at once through the lab's libvirtd: `vagrant snapshot restore` reverts
        # the same libvirt snapshots one domain after another, behind Vagrant's own start (13 s for 3
        # nodes; docs/benchmarks.md, Lab). Only the lab's own libvirtd is this provider's to drive.
        with progress.step(f"restoring snapshot {name} of lab {self.prefix}"):
            self.each_node(lambda node: self.net.virsh("snapshot-revert", self.domain(node), name, "--running",
                                                       timeout=600))

    def has_snapshot(self, name: str) -> bool:
        return self.net.running() and super().has_snapshot(name)

    def snapshots(self) -> list[str]:
        """Snapshot names every node has, from the lab's libvirtd (the same libvirt snapshots
        `vagrant snapshot list` reads, without its 1.3 s Ruby start on every scenario's restore)."""
        def names(node: str) -> set[str]:
            res = self.net.virsh("snapshot-list", self.domain(node), "--name", check=False)
            return set(res.stdout.split()) if res.ok else set()

        sets = [names(n.name) for n in self.nodes]
        return sorted(set.intersection(*sets)) if sets else []

    def _set_hostname(self, node: str) -> None:
        self.wait_ssh(node)
        self.run(
            node,
            f"sudo sh -c 'hostname {node} && echo {node} > /etc/hostname"
            f' && sed -i "s/^127.0.1.1.*/127.0.1.1\\t{node}/" /etc/hosts\'',
            timeout=60,
        )

    def destroy(self) -> None:
        """The vagrant cluster's destroy, then what is the lab's: box volume, network, daemons, namespace."""
        if self.net.running():
            try:
                super().destroy()
            except HarnessError as e:  # the sweep below removes the domains through libvirt instead
                progress.console().print(f"vagrant destroy of lab {self.prefix} failed: {e}", highlight=False)
        teardown(self.paths)

    def release(self) -> None:
        """Kept (`--keep`): no process owns the lab now, so the next `up` of it reuses it instead of
        sweeping it as a dead run's, and `harness lab down --name` removes it."""
        state = read_state(self.paths)
        if state:
            state["owner"] = None
            write_state(self.paths, state)

    def leftovers(self) -> list[str]:
        return leftovers(self.paths)

    def describe_access(self) -> str:
        first = self.nodes[0].name if self.nodes else "NODE"
        name = self.prefix.removeprefix("ksh-")
        return (f"harness lab ssh --name {name} {first}  (or ssh -F {self.ssh_config} {first});"
                f" `harness lab inventory --name {name}` for verify/ansible; `harness lab down --name {name}` removes it")


def teardown(paths: LabPaths) -> None:
    """Remove a lab whatever state it is in: domains, volumes, networks, daemons, namespace, files."""
    net = paths.net()
    state = read_state(paths)
    if state:
        close_masters(paths.ssh_config, [n["name"] for n in state.get("nodes", [])])
    if net.running():
        # libvirt's own removal first, so a look inside libvirt mid-teardown never shows half a domain.
        for dom in net.virsh("list", "--all", "--name", check=False).stdout.split():
            net.virsh("destroy", dom, check=False)
            net.virsh("undefine", dom, "--snapshots-metadata", "--remove-all-storage", "--nvram", check=False)
        for pool in net.virsh("pool-list", "--all", "--name", check=False).stdout.split():
            for line in net.virsh("vol-list", pool, check=False).stdout.splitlines():
                if line.split():
                    net.virsh("vol-delete", line.split()[0], "--pool", pool, check=False)
        for network in net.virsh("net-list", "--all", "--name", check=False).stdout.split():
            net.virsh("net-destroy", network, check=False)
            net.virsh("net-undefine", network, check=False)
    # A container lab's nodes (found by cgroup) and overlays; nothing to do for a QEMU lab.
    lxc_nodes.remove_all(paths.prefix, paths.root)
    net.stop()
    # Outside the namespace: ssh (Ansible's, testinfra's, their ControlMasters) into the lab, QEMU or a
    # daemon that left it. A killed run leaves them orphaned; nothing else would ever stop them.
    _kill(set(_lab_processes(paths)))
    shutil.rmtree(paths.control_dir, ignore_errors=True)
    shutil.rmtree(paths.root, ignore_errors=True)


def _kill(pids: set[int], grace: float = 5.0) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while pids and time.monotonic() < deadline:
            pids = {p for p in pids if process_start(p) is not None and not _zombie(p)}
            time.sleep(0.1)
        if not pids:
            return


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def _lab_processes(paths: LabPaths) -> dict[int, str]:
    """Live processes of the lab wherever they are: QEMU names its guest `ksh-<name>-node1`; ssh
    (`-F <lab dir>/ssh_config`) and the daemons' launcher name the lab's directory; the daemons run on
    bind mounts of its libvirt dirs (so a daemon that started after its namespace was deleted, when a
    run was killed while starting it, is still found)."""
    found: dict[int, str] = {}
    me = os.getpid()
    libvirt = str(paths.root / "libvirt") + "/"
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) == me:
            continue
        try:
            cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            named = f"guest={paths.prefix}-" in cmdline or str(paths.root) + "/" in cmdline
            if not named and (p / "comm").read_text().strip() in _DAEMONS:
                named = libvirt in (p / "mountinfo").read_text()
        except OSError:
            continue
        if named and not _zombie(int(p.name)):
            found[int(p.name)] = cmdline
    return found


_DAEMONS = ("libvirtd", "virtlogd", "dnsmasq")


def leftovers(paths: LabPaths) -> list[str]:
    """What of a lab still exists (empty after a clean teardown): used by `lab status` and the tests."""
    net = paths.net()
    found: list[str] = []
    if net.exists():
        found.append(f"network namespace {net.netns}")
    for pid in net.pids():
        found.append(f"process {pid} in namespace {net.netns}")
    for pid, cmdline in sorted(_lab_processes(paths).items()):
        found.append(f"process {pid}: {cmdline[:120]}")
    found += lxc_nodes.leftovers(paths.prefix, paths.root)
    if paths.root.exists():
        found.append(f"directory {paths.root}")
    if paths.control_dir.exists():
        found.append(f"directory {paths.control_dir}")
    return found


SUBNETS = 100 * 256  # 10.100.0.0/24 ... 10.199.255.0/24


def lab_subnet(prefix: str, taken: Collection[str] = ()) -> str:
    """The lab's own /24, stable per name. Namespaces already keep labs apart; distinct addresses also
    keep apart what is keyed by address outside them: Ansible's and ssh's ControlPath hashes, known hosts."""
    start = int(hashlib.sha256(prefix.encode()).hexdigest()[:8], 16) % SUBNETS
    for i in range(SUBNETS):
        idx = (start + i) % SUBNETS
        subnet = f"10.{100 + idx // 256}.{idx % 256}.0/24"
        if subnet not in taken:
            return subnet
    raise ClusterError("no free lab subnet in 10.100.0.0/16-10.199.0.0/16; remove old labs (`harness lab status`)")


def subnets_in_use(exclude: str) -> set[str]:
    taken = set()
    for d in labs_root().iterdir():
        if d.is_dir() and d.name != exclude:
            state = read_state(LabPaths(d.name)) or {}
            doc = state.get("document", {})
            subnet = doc.get("subnet") or doc.get("provider_options", {}).get("management_network_address")
            if subnet:
                taken.add(subnet)
    return taken


def read_state(paths: LabPaths) -> dict[str, Any] | None:
    try:
        return json.loads(paths.state.read_text())  # type: ignore[no-any-return]
    except (OSError, ValueError):
        return None


def write_state(paths: LabPaths, state: dict[str, Any]) -> None:
    tmp = paths.state.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(paths.state)


@contextmanager
def terminate_as_exception() -> Iterator[None]:
    """SIGTERM/SIGHUP raise, like Ctrl-C does, so a killed `up` unwinds through its cleanup."""
    restore = interrupt.install()
    try:
        yield
    finally:
        restore()


class LabProviders(Provider):
    """What both lab backends' providers share: a lab's name, ownership and removal. `keep=True` (the
    CLI) leaves labs running for later commands; otherwise a lab belongs to this process: `cleanup()`
    removes it, and if the process dies first the next `up` of the same name finds it stale."""

    name = "lab"
    serves_files_repo = True

    def __init__(self, name: str | None = None, *, keep: bool = False) -> None:
        self.lab_name = name or default_lab_name()
        self.keep = keep
        self._clusters: dict[str, LabPaths] = {}  # prefix -> the paths of a lab this provider brought up

    def lab_id(self, spec: ClusterSpec) -> str:
        """The provider's name, qualified by the spec's when they differ (several topologies per worker)."""
        return self.lab_name if spec.name in ("", self.lab_name) else f"{self.lab_name}-{spec.name}"

    def cleanup(self) -> None:
        """Remove the labs this provider brought up (none when `keep`)."""
        if self.keep:
            return
        while self._clusters:
            _, paths = self._clusters.popitem()
            with file_lock(paths.lock):
                teardown(paths)

    def down(self, name: str | None = None) -> bool:
        """Remove the named lab (complete or not); False if there was nothing to remove."""
        paths = LabPaths(lab_prefix(name or self.lab_name))
        with file_lock(paths.lock):
            existed = paths.root.exists() or paths.net().exists()
            teardown(paths)
        self._clusters.pop(paths.prefix, None)
        return existed


class LabProvider(LabProviders):
    """The QEMU backend: each node a VM, through the vagrant provider inside the lab's namespace."""

    def document(self, spec: ClusterSpec, paths: LabPaths, box: Box, acc: accel.Accel) -> dict[str, Any]:
        """The Vagrantfile's input for this lab: private libvirtd, accelerator, kernel boot, names."""
        socket = str(paths.net().socket)
        options: dict[str, Any] = {
            "uri": f"qemu:///system?socket={socket}",
            "system_uri": f"qemu:///system?socket={socket}",
            **accel.LIBVIRT_OPTIONS[acc],
            "default_prefix": f"{paths.prefix}-",
            "management_network_name": f"{paths.prefix}-mgmt",
            "management_network_address": lab_subnet(paths.prefix, subnets_in_use(exclude=paths.prefix)),
            # Isolated: no NAT rules; the guests talk to each other and to the harness through the namespace.
            "management_network_mode": "none",
            "kernel": str(box.kernel),
            "initrd": str(box.initrd),
            "cmd_line": box.cmd_line,
            "graphics_type": "none",
            "video_type": "none",
            **spec.options,
        }
        return spec_document(
            spec,
            provider="libvirt",
            box=spec.box or box.name,
            ssh={"username": box.user, "private_key_path": str(box.private_key), "insert_key": False},
            provider_options=options,
            console_log_dir=paths.console,
            set_hostname=False,  # _create names the hosts over ssh, with no network restart
            guest="debian",
        )

    def find(self, spec_or_name: ClusterSpec | str | None = None) -> LabCluster | None:
        """The running lab of this name, if its `up` completed."""
        lab_id = (
            self.lab_name
            if spec_or_name is None
            else (spec_or_name if isinstance(spec_or_name, str) else self.lab_id(spec_or_name))
        )
        paths = LabPaths(lab_prefix(lab_id))
        state = read_state(paths)
        if not state or not state.get("ready"):
            return None
        return _cluster_from_state(paths, state)

    def up(self, spec: ClusterSpec) -> LabCluster:
        check_prerequisites()
        box = ensure_box()
        acc = accel.detect(box.kernel)
        paths = LabPaths(lab_prefix(self.lab_id(spec)))
        doc = self.document(spec, paths, box, acc)
        # What killed runs left (their labs of any name, their playbooks still running) goes first.
        sweep(stale_only=True, exclude=paths.prefix)
        with file_lock(paths.lock):
            reused = self._reusable(paths, doc)
            if reused:
                self._clusters[paths.prefix] = reused.paths
                return reused
            teardown(paths)  # a stale lab of a killed run, or one of another shape
            with terminate_as_exception():
                try:
                    cluster = self._create(spec, paths, doc)
                except BaseException:
                    teardown(paths)
                    raise
        self._clusters[paths.prefix] = cluster.paths
        return cluster

    def _reusable(self, paths: LabPaths, doc: dict[str, Any]) -> LabCluster | None:
        state = read_state(paths)
        if not state or not state.get("ready") or machines(state.get("document") or {}) != machines(doc):
            return None
        owner = state.get("owner")
        if owner and owner["pid"] != os.getpid() and owner_alive(owner):
            raise ClusterError(
                f"lab {paths.prefix} is in use by process {owner['pid']}; give this run another lab name"
            )
        if owner and not owner_alive(owner):
            return None  # its process died without cleaning up: stale
        net = paths.net()
        if not net.running():
            return None
        running = set(net.virsh("list", "--state-running", "--name", check=False).stdout.split())
        if not all(f"{paths.prefix}-{n['name']}" in running for n in doc["nodes"]):
            return None
        if not self.keep and not owner:
            state["owner"] = owner_record()  # a kept lab adopted by a session is the session's now
            write_state(paths, state)
        return _cluster_from_state(paths, state)

    def _create(self, spec: ClusterSpec, paths: LabPaths, doc: dict[str, Any]) -> LabCluster:
        paths.root.mkdir(parents=True, exist_ok=True)
        paths.console.mkdir(exist_ok=True)
        state: dict[str, Any] = {
            "name": self.lab_id(spec),
            "prefix": paths.prefix,
            "document": doc,
            "owner": None if self.keep else owner_record(),
            "ready": False,
            "created": time.time(),
        }
        write_state(paths, state)
        paths.net().start()
        hosts = vagrant_up(
            paths.vagrant(),
            doc,
            title=f"vagrant up: {len(spec.nodes)} node(s) in lab {paths.prefix}",
            hint=f"; guest consoles are in {paths.console}",
        )
        nodes = connect(
            spec,
            hosts,
            paths.ssh_config,
            proxy_command=f"ip netns exec {paths.prefix} nc %h %p",
            control_dir=paths.control_dir,
        )
        cluster = LabCluster(spec.name, nodes, paths)
        cluster.each_node(cluster._set_hostname)
        state.update(ready=True, nodes=[node_json(n) for n in nodes])
        write_state(paths, state)
        return cluster



def node_json(n: Node) -> dict[str, Any]:
    return {"name": n.name, "roles": list(n.roles), "address": n.address, "user": n.user, "port": n.port}


def machines(doc: dict[str, Any]) -> dict[str, Any]:
    """A lab document without the nodes' roles: roles are inventory, not hardware (the pipeline puts
    each scenario's roles on the nodes), so a kept lab serves a scenario of any roles on its machines."""
    return {**doc, "nodes": [{k: v for k, v in n.items() if k != "roles"} for n in doc.get("nodes", [])]}


def _cluster_from_state(paths: LabPaths, state: dict[str, Any]) -> LabCluster:
    nodes = [
        Node(name=n["name"], roles=tuple(n["roles"]), address=n["address"], user=n["user"], port=n["port"])
        for n in state["nodes"]
    ]
    paths.control_dir.mkdir(mode=0o700, exist_ok=True)
    return LabCluster(state["document"]["name"], nodes, paths)


@contextlib.contextmanager
def _try_lock(path: Path) -> Iterator[bool]:
    """The lab's lock if no one holds it (an `up` or a teardown in progress does): yields whether taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def stale_reason(paths: LabPaths) -> str | None:
    """Why a lab is a dead run's (None: it is in use, or kept on purpose). A lab a process owns is
    stale once that process is gone; an unowned one (`lab up`, `--keep`) once it is incomplete and
    no `up` is making it (the caller checks the lock)."""
    state = read_state(paths)
    owner = (state or {}).get("owner")
    if owner:
        return None if owner_alive(owner) else f"its run (process {owner['pid']}) is gone"
    if state and state.get("ready"):
        return None
    return "incomplete: its `up` never finished"


def sweep(*, stale_only: bool, exclude: str | None = None) -> list[tuple[str, str]]:
    """Remove dead runs' labs (or, `stale_only=False`, every lab of this state directory and every
    `ksh-*` namespace) and stop playbook runs whose harness process died. Labs being made or torn
    down by someone else (their lock held) are left alone. Returns (what, why) per removal."""
    from harness.interrupt import kill_orphaned_runs

    removed: list[tuple[str, str]] = []
    for mark, pids in kill_orphaned_runs().items():
        removed.append((f"playbook run {mark[:8]}", f"its harness process is gone ({len(pids)} process(es))"))
    prefixes = {d.name for d in labs_root().iterdir() if d.is_dir()}
    if not stale_only:
        with contextlib.suppress(OSError):
            prefixes |= {n.name for n in Path("/run/netns").iterdir() if n.name.startswith("ksh-")}
    for prefix in sorted(prefixes - {exclude}):
        paths = LabPaths(prefix)
        reason = stale_reason(paths) if stale_only else "--all"
        if reason is None:
            continue
        with _try_lock(paths.lock) as taken:
            if not taken:
                continue  # an `up` in progress (or its teardown): not ours to touch
            if stale_only and stale_reason(paths) is None:
                continue  # finished meanwhile
            teardown(paths)
        removed.append((f"lab {prefix}", reason))
    return removed


def list_labs() -> list[dict[str, Any]]:
    """Every lab directory with its state, for `lab status`."""
    out = []
    for d in sorted(labs_root().iterdir()):
        if not d.is_dir():
            continue
        paths = LabPaths(d.name)
        state = read_state(paths) or {}
        net = paths.net()
        running = net.running()
        domains = net.virsh("list", "--all", "--name", check=False).stdout.split() if running else []
        stale = stale_reason(paths)
        if stale is not None:
            with _try_lock(paths.lock) as taken:
                stale = stale if taken else None  # being made right now
        out.append(
            {
                "prefix": d.name,
                "backend": state.get("backend", "qemu"),
                "ready": bool(state.get("ready")),
                "running": running,
                "owner": state.get("owner"),
                "nodes": state.get("nodes", []),
                "domains": domains,
                "ssh_config": str(paths.ssh_config),
                "stale": stale,
            }
        )
    return out
