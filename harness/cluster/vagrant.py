"""Vagrant clusters: the user's own provider and box, driven through the top-level Vagrantfile.

The Vagrantfile reads a JSON cluster spec (`spec_document`) from `HARNESS_CLUSTER_SPEC`. `VagrantEnv`
runs vagrant for one cluster directory; the lab provider reuses it inside its network namespace, which
is why vagrant is called through `harness.proc` rather than python-vagrant (that one runs its own
subprocesses and cannot enter a namespace).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import proc
from harness.cluster.base import Cluster, ClusterSpec, Node, Provider
from harness.errors import ClusterError, PrerequisiteError
from harness.settings import state_dir

SPEC_ENV = "HARNESS_CLUSTER_SPEC"
# Quiet, offline vagrant: no version checkpoint or box update calls to HashiCorp.
QUIET_ENV = {"VAGRANT_CHECKPOINT_DISABLE": "1", "VAGRANT_BOX_UPDATE_CHECK_DISABLE": "1", "VAGRANT_NO_COLOR": "1"}


def vagrantfile_path() -> Path:
    """The repository's top-level Vagrantfile (`HARNESS_VAGRANTFILE` overrides)."""
    env = os.environ.get("HARNESS_VAGRANTFILE")
    path = Path(env) if env else Path(__file__).resolve().parents[2] / "Vagrantfile"
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
            out += ["  ControlMaster auto", f"  ControlPath {control_dir}/%C", "  ControlPersist 120s"]
        out.append("")
    return "\n".join(out)


def close_masters(ssh_config: Path, nodes: list[str]) -> None:
    """Stop ssh ControlMaster processes (before a restore breaks their connections, or at destroy)."""
    if not ssh_config.is_file():
        return
    for n in nodes:
        proc.run(["ssh", "-F", str(ssh_config), "-O", "exit", n], check=False, timeout=15)


# -- running vagrant -------------------------------------------------------------


@dataclass
class VagrantEnv:
    """One cluster's vagrant directory: a copy of the Vagrantfile, spec.json and vagrant's `.vagrant`."""

    root: Path
    vagrant_home: Path | None = None
    netns: str | None = None

    @property
    def spec_file(self) -> Path:
        return self.root / "spec.json"

    def write(self, doc: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(vagrantfile_path(), self.root / "Vagrantfile")
        self.spec_file.write_text(json.dumps(doc, indent=2) + "\n")

    def env(self) -> dict[str, str]:
        env = {**os.environ, **QUIET_ENV, SPEC_ENV: str(self.spec_file)}
        if self.vagrant_home is not None:
            env["VAGRANT_HOME"] = str(self.vagrant_home)
        return env

    def run(self, *args: str, timeout: float | None = 600, check: bool = True) -> proc.Result:
        return proc.run(
            ["vagrant", *args], env=self.env(), cwd=str(self.root), netns=self.netns, timeout=timeout, check=check
        )

    def stream(
        self, *args: str, on_line: Callable[[str], None] | None = None, timeout: float | None = 3600
    ) -> proc.Result:
        return proc.stream(
            ["vagrant", *args], env=self.env(), cwd=str(self.root), netns=self.netns, timeout=timeout, on_line=on_line
        )

    def up(self, provider: str, on_line: Callable[[str], None] | None = None) -> None:
        self.stream("up", f"--provider={provider}", "--no-provision", on_line=on_line)

    def ssh_config(self) -> dict[str, SshHost]:
        return parse_ssh_config(self.run("ssh-config", timeout=300).stdout)

    def snapshot_save(self, name: str) -> None:
        self.run("snapshot", "save", "--force", name)

    def snapshot_restore(self, name: str, on_line: Callable[[str], None] | None = None) -> None:
        self.stream("snapshot", "restore", "--no-provision", name, on_line=on_line, timeout=900)

    def snapshot_names(self) -> dict[str, list[str]]:
        """Snapshot names per machine, from `vagrant snapshot list --machine-readable`."""
        return parse_snapshot_list(self.run("snapshot", "list", "--machine-readable", timeout=300).stdout)

    def destroy(self) -> None:
        self.run("destroy", "--force", timeout=900)


def parse_snapshot_list(text: str) -> dict[str, list[str]]:
    """Machine-readable lines `ts,target,ui,detail,NAME` carry one snapshot name each (vagrant 2.3)."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        parts = line.split(",", 4)
        if len(parts) < 5 or not parts[1] or parts[2] != "ui":
            continue
        kind, value = parts[3], parts[4].replace("%!(VAGRANT_COMMA)", ",").strip()
        machines = out.setdefault(parts[1], [])
        if kind == "detail" and value and not value.startswith("==>") and "No snapshots" not in value:
            machines.append(value)
    return out


# -- the user's own provider -------------------------------------------------------


class VagrantCluster(Cluster):
    provider = "vagrant"
    supports_snapshots = True

    def __init__(self, name: str, nodes: list[Node], ssh_config: Path, env: VagrantEnv) -> None:
        super().__init__(name, nodes, ssh_config)
        self.env = env

    def snapshot(self, name: str) -> None:
        self.env.snapshot_save(name)

    def restore(self, name: str) -> None:
        if not self.has_snapshot(name):
            raise ClusterError(f"cluster {self.name!r} has no snapshot {name!r}")
        close_masters(self.ssh_config, [n.name for n in self.nodes])
        self.env.snapshot_restore(name)

    def has_snapshot(self, name: str) -> bool:
        names = self.env.snapshot_names()
        return bool(self.nodes) and all(name in names.get(n.name, []) for n in self.nodes)

    def destroy(self) -> None:
        close_masters(self.ssh_config, [n.name for n in self.nodes])
        self.env.destroy()
        shutil.rmtree(self.env.root, ignore_errors=True)


class VagrantProvider(Provider):
    """A user's own Vagrant provider and box, e.g. `VagrantProvider("virtualbox", "generic/ubuntu2204")`.

    `options` are provider config setters (`{"nested": True}` for libvirt, ...). Vagrant's default
    VAGRANT_HOME and ssh keys are used: the box is the user's.
    """

    name = "vagrant"

    def __init__(self, vagrant_provider: str, box: str, *, options: Mapping[str, Any] | None = None) -> None:
        if not re.match(r"^[a-z0-9_-]+$", vagrant_provider):
            raise ClusterError(f"{vagrant_provider!r} is not a Vagrant provider name (virtualbox, libvirt, ...)")
        self.vagrant_provider = vagrant_provider
        self.box = box
        self.options = dict(options or {})
        self._clusters: list[VagrantCluster] = []

    def up(self, spec: ClusterSpec) -> Cluster:
        if not shutil.which("vagrant"):
            raise PrerequisiteError("vagrant is not installed (https://developer.hashicorp.com/vagrant/install)")
        env = VagrantEnv(state_dir() / "vagrant" / re.sub(r"[^A-Za-z0-9_.-]+", "-", spec.name))
        doc = spec_document(
            spec,
            provider=self.vagrant_provider,
            box=spec.box or self.box,
            provider_options={**self.options, **spec.options},
        )
        env.write(doc)
        try:
            env.up(self.vagrant_provider)
            hosts = env.ssh_config()
        except proc.CommandError as e:
            raise ClusterError(f"vagrant up of {spec.name!r} with provider {self.vagrant_provider} failed:\n{e}") from e
        cluster = VagrantCluster(spec.name, nodes_from(spec, hosts), env.root / "ssh_config", env)
        cluster.ssh_config.write_text(render_ssh_config([hosts[n.name] for n in spec.nodes]))
        self._clusters.append(cluster)
        return cluster

    def cleanup(self) -> None:
        while self._clusters:
            self._clusters.pop().destroy()


def nodes_from(spec: ClusterSpec, hosts: Mapping[str, SshHost]) -> list[Node]:
    missing = [n.name for n in spec.nodes if n.name not in hosts]
    if missing:
        raise ClusterError(f"vagrant ssh-config has no entry for {', '.join(missing)}; did `vagrant up` bring them up?")
    return [
        Node(name=n.name, roles=tuple(n.roles), address=hosts[n.name].hostname, user=hosts[n.name].user)
        for n in spec.nodes
    ]
