"""Vagrant clusters: python-vagrant driving the repository's one Vagrantfile.

The Vagrantfile reads a JSON cluster spec (`spec_document`) named by `HARNESS_CLUSTER_SPEC`. `VagrantEnv`
is python-vagrant's `Vagrant` for one cluster directory whose commands run through `harness.proc`:
entered into a network namespace when the cluster lives in one (`ip netns exec NS vagrant ...`, the
lab), their output streamed line by line to `harness.progress`, bounded by a timeout and killed with
the run on Ctrl-C or SIGTERM. `vagrant_up` and `VagrantCluster` are the one implementation of up,
snapshot, restore and destroy; the lab (harness/cluster/lab/) adds only what is its own.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import vagrant

from harness import proc, progress, resources
from harness.cluster.base import Cluster, ClusterSpec, Node, Provider, control_dir_for
from harness.cluster.providers import VAGRANT_PROVIDER_NAME
from harness.errors import ClusterError, HarnessError, PrerequisiteError
from harness.settings import state_dir

SPEC_ENV = "HARNESS_CLUSTER_SPEC"
# Quiet, offline vagrant: no version checkpoint or box update calls to HashiCorp.
QUIET_ENV = {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}
# How long one vagrant command may take: `up` may upload a box and boots guests under emulation.
TIMEOUTS = {"up": 3600.0, "destroy": 900.0, "snapshot": 900.0}
DEFAULT_TIMEOUT = 600.0


def vagrantfile_path() -> Path:
    """The repository's top-level Vagrantfile (`HARNESS_VAGRANTFILE` overrides)."""
    env = os.environ.get("HARNESS_VAGRANTFILE")
    path = Path(env) if env else resources.vagrantfile()
    if not path.is_file():
        raise PrerequisiteError(
            f"Vagrantfile not found at {path}; set HARNESS_VAGRANTFILE to the harness's Vagrantfile"
        )
    return path


def spec_document(
    spec: ClusterSpec,
    *,
    provider: str,
    box: str,
    ssh: Mapping[str, Any] | None = None,
    provider_options: Mapping[str, Any] | None = None,
    console_log_dir: Path | None = None,
    set_hostname: bool = True,
    guest: str | None = None,
) -> dict[str, Any]:
    """The JSON the Vagrantfile reads: nodes with roles and sizes, the box, provider and its options."""
    doc: dict[str, Any] = {
        "name": spec.name,
        "provider": provider,
        "box": box,
        "ssh": dict(ssh or {}),
        "provider_options": dict(provider_options or {}),
        "nodes": [{"name": n.name, "roles": list(n.roles), "cpus": n.cpus, "memory": n.memory} for n in spec.nodes],
    }
    if console_log_dir is not None:
        doc["console_log_dir"] = str(console_log_dir)
    if not set_hostname:
        doc["set_hostname"] = False
    if guest:
        doc["guest"] = guest
    return doc


def split_options(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """`--vagrant-option` keys: `ssh.NAME` sets `config.ssh.NAME`, any other key a provider config setter."""
    provider = {k: v for k, v in options.items() if not k.startswith("ssh.")}
    ssh = {k.removeprefix("ssh."): v for k, v in options.items() if k.startswith("ssh.")}
    return provider, ssh


# -- ssh config ---------------------------------------------------------------


@dataclass(frozen=True)
class SshHost:
    alias: str
    hostname: str
    user: str
    port: int
    identity_file: str | None = None


def parse_ssh_config(text: str) -> dict[str, SshHost]:
    """The hosts of `vagrant ssh-config` output (all machines at once)."""
    hosts: dict[str, SshHost] = {}
    current: dict[str, str] = {}

    def flush() -> None:
        if current.get("host"):
            hosts[current["host"]] = SshHost(
                alias=current["host"],
                hostname=current.get("hostname", current["host"]),
                user=current.get("user", "vagrant"),
                port=int(current.get("port", "22")),
                identity_file=current.get("identityfile"),
            )

    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        key, value = key.lower(), value.strip().strip('"')
        if key == "host":
            flush()
            current = {"host": value}
        elif key not in current:  # ssh semantics: the first value wins
            current[key] = value
    flush()
    return hosts


def render_ssh_config(
    hosts: list[SshHost], *, proxy_command: str | None = None, control_dir: Path | None = None
) -> str:
    """An ssh config that reaches every node by its name (`ssh -F FILE node1`), for ssh, Ansible and testinfra."""
    out = ["# Written by kubespray-upgrade-harness; regenerated on every `up`."]
    for h in hosts:
        out += [
            f"Host {h.alias}",
            f"  HostName {h.hostname}",
            f"  User {h.user}",
            f"  Port {h.port}",
        ]
        if h.identity_file:
            out += [f'  IdentityFile "{h.identity_file}"', "  IdentitiesOnly yes"]
        if proxy_command:
            out.append(f"  ProxyCommand {proxy_command}")
        out += [
            # Throwaway VMs: their host keys change with every box and restore.
            "  StrictHostKeyChecking no",
            "  UserKnownHostsFile /dev/null",
            "  LogLevel ERROR",
            "  ConnectTimeout 30",
            "  ServerAliveInterval 5",
            "  ServerAliveCountMax 6",
        ]
        if control_dir is not None:
            # One TCP+key exchange per node instead of one per command: under TCG a handshake costs ~1 s.
            out += ["  ControlMaster auto", f"  ControlPath {control_path(control_dir)}", "  ControlPersist 120s"]
        out.append("")
    return "\n".join(out)


def control_path(control_dir: Path) -> str:
    """The ssh master socket of a node in `control_dir`: ssh's own %C (a hash of host, port, user), so
    every ssh that reads the cluster's config, Ansible's included, finds the same master."""
    return f"{control_dir}/%C"


def close_masters(ssh_config: Path, nodes: list[str]) -> None:
    """Stop ssh ControlMaster processes (before a restore breaks their connections, or at destroy)."""
    if not ssh_config.is_file():
        return
    for n in nodes:
        proc.run(["ssh", "-F", str(ssh_config), "-O", "exit", n], check=False, timeout=15)


def nodes_from(spec: ClusterSpec, hosts: Mapping[str, SshHost]) -> list[Node]:
    missing = [n.name for n in spec.nodes if n.name not in hosts]
    if missing:
        raise ClusterError(f"vagrant ssh-config has no entry for {', '.join(missing)}; did `vagrant up` bring them up?")
    return [
        Node(name=n.name, roles=tuple(n.roles), address=hosts[n.name].hostname, user=hosts[n.name].user)
        for n in spec.nodes
    ]


def current_netns() -> str | None:
    """The named network namespace this process runs in (`ip netns identify`), or None.

    A cluster brought up from inside a namespace (`ip netns exec NS pytest ...`) has its guests on
    networks only that namespace sees: a server the guests must reach (the lab installer's files
    repo) has to run there too."""
    if not shutil.which("ip"):
        return None
    res = proc.run(["ip", "netns", "identify", str(os.getpid())], check=False, timeout=30)
    names = res.stdout.split() if res.ok else []
    return names[0] if names else None


# -- running vagrant -------------------------------------------------------------


def parse_snapshot_lines(lines: Sequence[str]) -> dict[str, list[str]]:
    """Snapshot names per machine from python-vagrant's `snapshot_list()` (`vagrant snapshot list` lines).

    Vagrant prints a `==> MACHINE: ...` line per machine and that machine's snapshot names bare below
    it; python-vagrant returns no lines at all once any machine has none."""
    out: dict[str, list[str]] = {}
    machine: str | None = None
    for line in lines:
        header = re.match(r"^==> ([^:\s]+):", line)
        if header:
            machine = header.group(1)
            out.setdefault(machine, [])
        elif machine is not None and line.strip() and not line[:1].isspace():
            out[machine].append(line.strip())
    return out


class VagrantEnv(vagrant.Vagrant):
    """python-vagrant's `Vagrant` for one cluster directory (a copy of the Vagrantfile, spec.json and
    vagrant's `.vagrant`), its commands run through `harness.proc`: inside `netns` when given one."""

    if TYPE_CHECKING:  # python-vagrant has no annotations: the signatures of what the harness calls

        def up(
            self,
            vm_name: str | None = None,
            no_provision: bool = False,
            provider: str | None = None,
            provision: bool | None = None,
            provision_with: list[str] | None = None,
            stream_output: bool = False,
        ) -> None: ...
        def status(self, vm_name: str | None = None) -> list[vagrant.Status]: ...
        def ssh_config(self, vm_name: str | None = None) -> str: ...
        def snapshot_restore(self, name: str) -> None: ...
        def snapshot_list(self) -> list[str]: ...
        def destroy(self, vm_name: str | None = None) -> None: ...

    def __init__(self, root: Path, *, vagrant_home: Path | None = None, netns: str | None = None) -> None:
        super().__init__(root=str(root))  # type: ignore[no-untyped-call]
        self.dir = Path(root)
        self.vagrant_home = vagrant_home
        self.netns = netns
        self._on_line: Callable[[str], None] | None = None

    @property
    def spec_file(self) -> Path:
        return self.dir / "spec.json"

    def write(self, doc: Mapping[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vagrantfile_path(), self.dir / "Vagrantfile")
        self.spec_file.write_text(json.dumps(doc, indent=2) + "\n")

    def environ(self) -> dict[str, str]:
        env = {**os.environ, **QUIET_ENV, SPEC_ENV: str(self.spec_file)}
        if self.vagrant_home is not None:
            env["VAGRANT_HOME"] = str(self.vagrant_home)
        return env

    @contextmanager
    def reporting(self, title: str) -> Iterator[None]:
        """Show the output of the vagrant commands run in this block, line by line, as step `title`."""
        with progress.step(title) as on_line:
            self._on_line = on_line
            try:
                yield
            finally:
                self._on_line = None

    def snapshot_save(self, name: str, force: bool = False) -> None:
        """python-vagrant's, plus `--force`: saving a name some machine already has then replaces it."""
        self._call_vagrant_command(["snapshot", "save", "--force" if force else None, name])

    def snapshot_names(self) -> dict[str, list[str]]:
        return parse_snapshot_lines(self.snapshot_list())

    # -- how python-vagrant builds and runs its commands --

    def _make_vagrant_command(self, args: Sequence[str | None]) -> list[str]:
        try:
            command: list[str] = super()._make_vagrant_command(args)  # type: ignore[no-untyped-call]
        except RuntimeError as e:  # python-vagrant's "cannot be found"
            raise PrerequisiteError("vagrant is not installed (https://developer.hashicorp.com/vagrant/install)") from e
        return ["ip", "netns", "exec", self.netns, *command] if self.netns else command

    def _timeout(self, args: Sequence[str | None]) -> float:
        return TIMEOUTS.get(str(args[0]), DEFAULT_TIMEOUT) if args else DEFAULT_TIMEOUT

    def _call_vagrant_command(self, args: Sequence[str | None]) -> None:
        proc.stream(
            self._make_vagrant_command(args),
            on_line=self._on_line,
            env=self.environ(),
            cwd=str(self.dir),
            timeout=self._timeout(args),
        )

    def _run_vagrant_command(self, args: Sequence[str | None]) -> str:
        return proc.run(
            self._make_vagrant_command(args), env=self.environ(), cwd=str(self.dir), timeout=self._timeout(args)
        ).stdout

    def _stream_vagrant_command(self, args: Sequence[str | None]) -> NoReturn:
        # A generator of lines would run vagrant outside harness.proc; `reporting()` streams instead.
        raise NotImplementedError("VagrantEnv streams output through reporting(); do not pass stream_output=True")


def vagrant_up(env: VagrantEnv, doc: Mapping[str, Any], *, title: str, hint: str = "") -> dict[str, SshHost]:
    """Write the cluster's Vagrantfile input, bring every node up and read how ssh reaches them."""
    env.write(doc)
    try:
        with env.reporting(title):
            env.up(no_provision=True, provider=str(doc["provider"]))
        return parse_ssh_config(env.ssh_config())
    except proc.CommandError as e:
        raise ClusterError(f"vagrant up of {env.dir.name} ({doc['provider']}) failed{hint}\n{e}") from e


def connect(
    spec: ClusterSpec,
    hosts: Mapping[str, SshHost],
    ssh_config: Path,
    *,
    proxy_command: str | None = None,
    control_dir: Path | None = None,
) -> list[Node]:
    """The spec's nodes as `vagrant ssh-config` reaches them, and the ssh config that reaches each by name."""
    nodes = nodes_from(spec, hosts)
    text = render_ssh_config([hosts[n.name] for n in nodes], proxy_command=proxy_command, control_dir=control_dir)
    ssh_config.write_text(text)
    if control_dir is not None:
        control_dir.mkdir(mode=0o700, exist_ok=True)
    return nodes


class VagrantCluster(Cluster):
    """Nodes of one Vagrant environment: snapshots, restores and destroy through python-vagrant."""

    provider = "vagrant"
    supports_snapshots = True

    def __init__(
        self,
        name: str,
        nodes: list[Node],
        ssh_config: Path,
        env: VagrantEnv,
        *,
        netns: str | None = None,
        control_dir: Path | None = None,
        console_dir: Path | None = None,
    ) -> None:
        super().__init__(name, nodes, ssh_config)
        self.env = env
        self.netns = netns
        self.control_dir = control_dir
        self.console_dir = console_dir

    @property
    def state_root(self) -> Path:
        """Where records that live and die with this cluster go (baseline keys)."""
        return self.env.dir

    @property
    def label(self) -> str:
        return f"cluster {self.name}"

    def host_vars(self, node: Node) -> dict[str, Any]:
        hv = super().host_vars(node)
        if self.control_dir is not None:
            # Ansible's masters are the ones the ssh config names (ssh's %C), not Ansible's own hashes
            # in the same directory: every playbook then reuses the connection the harness's probes
            # opened instead of a key exchange per node per run (~1.6 s under emulation), and a restore
            # closes both. `%%`: Ansible formats the path with `%` before ssh expands it.
            hv["ansible_control_path"] = control_path(self.control_dir).replace("%", "%%")
        return hv

    def snapshot(self, name: str) -> None:
        self.env.snapshot_save(name, force=True)

    def snapshots(self) -> list[str]:
        """Snapshot names every node has."""
        names = self.env.snapshot_names()
        sets = [set(names.get(n.name, ())) for n in self.nodes]
        return sorted(set.intersection(*sets)) if sets else []

    def has_snapshot(self, name: str) -> bool:
        return name in self.snapshots()

    def restore(self, name: str) -> None:
        # The masters' TCP connections die with the restore; close them rather than let a command hit one.
        close_masters(self.ssh_config, [n.name for n in self.nodes])
        try:
            self._revert(name)
        except proc.CommandError as e:
            raise ClusterError(
                f"{self.label}: restoring snapshot {name!r} failed; snapshots every node has:"
                f" {', '.join(self.snapshots()) or 'none'}\n{e}"
            ) from e
        # A restored guest's clock is where the snapshot left it; certificates, leases and probe
        # timestamps need today's. Setting it doubles as the wait for ssh (~3 s after a revert).
        self.each_node(lambda node: self.wait_ssh(node, set_clock=True))

    def _revert(self, name: str) -> None:
        """Every node back to snapshot `name`, through `vagrant snapshot restore`."""
        with self.env.reporting(f"restoring snapshot {name} of {self.label}"):
            self.env.snapshot_restore(name)

    def destroy(self) -> None:
        close_masters(self.ssh_config, [n.name for n in self.nodes])
        if (self.env.dir / "Vagrantfile").is_file():
            self.env.destroy()
        shutil.rmtree(self.env.dir, ignore_errors=True)
        if self.control_dir is not None:
            shutil.rmtree(self.control_dir, ignore_errors=True)

    def describe_access(self) -> str:
        first = self.nodes[0].name if self.nodes else "NODE"
        home = f" VAGRANT_HOME={self.env.vagrant_home}" if self.env.vagrant_home else ""
        return (
            f"ssh -F {self.ssh_config} {first}; remove it with:"
            f" (cd {self.env.dir} && {SPEC_ENV}={self.env.spec_file}{home} vagrant destroy -f)"
        )


class VagrantProvider(Provider):
    """A user's own Vagrant provider and box, e.g. `VagrantProvider("virtualbox", "generic/ubuntu2204")`.

    `options` are provider config setters (`{"nested": True}` for libvirt, ...) and `ssh.NAME` keys
    for `config.ssh` (`{"ssh.private_key_path": "..."}`). Vagrant's own VAGRANT_HOME is used: the box
    is the user's. Run from inside a network namespace, the clusters carry it (`current_netns`)."""

    name = "vagrant"

    def __init__(
        self, vagrant_provider: str, box: str, *, name: str = "vagrant", options: Mapping[str, Any] | None = None
    ) -> None:
        if not VAGRANT_PROVIDER_NAME.match(vagrant_provider):
            raise ClusterError(f"{vagrant_provider!r} is not a Vagrant provider name (virtualbox, libvirt, ...)")
        self.vagrant_provider = vagrant_provider
        self.box = box
        self.cluster_prefix = name
        self.options, self.ssh = split_options(options or {})
        self._clusters: list[VagrantCluster] = []

    def cluster_id(self, spec: ClusterSpec) -> str:
        """The provider's name, qualified by the spec's (several topologies per session)."""
        raw = f"{self.cluster_prefix}-{spec.name}" if spec.name else self.cluster_prefix
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", raw)

    def document(self, spec: ClusterSpec) -> dict[str, Any]:
        return spec_document(
            spec,
            provider=self.vagrant_provider,
            box=spec.box or self.box,
            ssh=self.ssh,
            provider_options={**self.options, **spec.options},
        )

    def up(self, spec: ClusterSpec) -> VagrantCluster:
        cluster_id = self.cluster_id(spec)
        env = VagrantEnv(state_dir() / "vagrant" / cluster_id)
        _sweep(env)
        try:
            hosts = vagrant_up(env, self.document(spec), title=f"vagrant up: {len(spec.nodes)} node(s) of {cluster_id}")
            control_dir = control_dir_for(env.dir)
            nodes = connect(spec, hosts, env.dir / "ssh_config", control_dir=control_dir)
            cluster = VagrantCluster(
                cluster_id, nodes, env.dir / "ssh_config", env, netns=current_netns(), control_dir=control_dir
            )
        except BaseException:
            # Failed or interrupted (Ctrl-C, SIGTERM): whatever vagrant made so far is destroyed.
            _discard(env)
            raise
        self._clusters.append(cluster)
        return cluster

    def cleanup(self) -> None:
        while self._clusters:
            self._clusters.pop().destroy()


def _sweep(env: VagrantEnv) -> None:
    """Machines left in this cluster's directory by an earlier run that died (or kept them) are destroyed."""
    if not (env.dir / ".vagrant").is_dir():
        shutil.rmtree(env.dir, ignore_errors=True)
        return
    try:
        created = [s.name for s in env.status() if s.state != vagrant.Vagrant.NOT_CREATED]
    except proc.CommandError as e:
        raise ClusterError(
            f"{env.dir} holds machines of an earlier run that vagrant cannot read; destroy them there"
            f" (vagrant destroy -f) or delete the directory\n{e}"
        ) from e
    if created:
        with env.reporting(f"removing {', '.join(created)} left in {env.dir} by an earlier run"):
            env.destroy()
    shutil.rmtree(env.dir, ignore_errors=True)


def _discard(env: VagrantEnv) -> None:
    try:
        if env.spec_file.is_file():
            env.destroy()
    except HarnessError as e:
        progress.console().print(f"could not destroy the half-made cluster in {env.dir}: {e}", highlight=False)
    finally:
        shutil.rmtree(env.dir, ignore_errors=True)
