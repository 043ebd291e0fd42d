"""Typed facts the probes collect and the checks read.

Facts are saved as artifacts, so each type round-trips through JSON (`to_json`/`from_json`).
Nothing secret lives here: tokens are never stored, Secret values only as SHA-256 digests.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, Union

T = TypeVar("T")


# -- hosts ----------------------------------------------------------------


@dataclass(frozen=True)
class UnitState:
    name: str
    exists: bool
    active: bool
    enabled: bool


@dataclass(frozen=True)
class CertExpiry:
    path: str
    not_after: datetime | None  # None: unreadable; `error` says why
    error: str | None = None


@dataclass(frozen=True)
class CanaryFacts:
    """The container canary plant.yml starts with ctr on a containerd node, as the host probe reads it:
    the record the plant left on the node and the task ctr lists now."""

    ctr: bool  # a ctr binary was found on the node (none: no containerd, no canary to expect)
    planted: str | None = None  # the plant's record: "running" | "error"; None: no record on the node
    planted_pid: int | None = None
    planted_shim_pid: int | None = None
    planted_reason: str | None = None  # why the plant could not start it ("error")
    status: str | None = None  # the task's status now (RUNNING, STOPPED, ...); None: ctr lists no such task
    pid: int | None = None
    shim_pid: int | None = None  # the task's parent now (its containerd-shim)
    error: str | None = None  # ctr could not be asked (containerd down, ...): what it said


@dataclass(frozen=True)
class BinaryFile:
    """The file a binary's reported version came from, and the other copies a node has of it."""

    # The running process's executable as /proc names it (`... (deleted)`: replaced since it started),
    # else the installed file (Kubespray's bin_dir first, then PATH)
    path: str
    pid: int | None = None  # its unit's main process, when that process runs this binary
    unit: str | None = None  # the systemd unit that runs it (harness.components); None: a tool, never running
    main: str | None = None  # "PID EXE": the unit's main process runs another executable (a wrapper)
    others: dict[str, str | None] = field(default_factory=dict)  # another copy on PATH -> its version (None: unreadable)


@dataclass(frozen=True)
class HostFacts:
    node: str
    roles: tuple[str, ...]
    # component -> version string; None when the tool is absent on the node
    versions: dict[str, str | None] = field(default_factory=dict)
    units: dict[str, UnitState] = field(default_factory=dict)
    certs: dict[str, CertExpiry] = field(default_factory=dict)
    # component or probe -> why it could not be read (distinct from "absent")
    errors: dict[str, str] = field(default_factory=dict)
    # /proc/sys/kernel/random/boot_id: a new one at every boot (None: not read; see errors["boot_id"])
    boot_id: str | None = None
    # The node's probe did not run at all (one line: "node2 unreachable: ..."); nothing else is known
    error: str | None = None
    # The container canary (plant.yml); None: not probed (facts saved before the probe read it)
    canary: CanaryFacts | None = None
    # binary -> the file its version came from (what runs, else what is installed) and the other copies
    files: dict[str, BinaryFile] = field(default_factory=dict)


def unprobed(hosts: Iterable[HostFacts]) -> dict[str, str]:
    """node -> why its probe failed, for the nodes whose facts hold nothing but that."""
    return {h.node: h.error for h in hosts if h.error is not None}


# -- etcd -----------------------------------------------------------------


@dataclass(frozen=True)
class EtcdEndpointHealth:
    endpoint: str
    healthy: bool
    error: str | None = None


@dataclass(frozen=True)
class EtcdMember:
    id: str  # hex, as etcdctl's table prints it
    name: str
    peer_urls: tuple[str, ...]
    client_urls: tuple[str, ...]


@dataclass(frozen=True)
class EtcdFacts:
    queried_from: str
    health: tuple[EtcdEndpointHealth, ...] = ()
    members: tuple[EtcdMember, ...] = ()
    # client endpoint -> etcd server version reported by `endpoint status`
    member_versions: dict[str, str] = field(default_factory=dict)
    cluster_version: str | None = None
    errors: dict[str, str] = field(default_factory=dict)


# -- Kubernetes API ---------------------------------------------------------


@dataclass(frozen=True)
class NodeFacts:
    name: str
    ready: bool
    unschedulable: bool
    kubelet_version: str | None
    # nodeInfo.kubeProxyVersion as the node reports it: deprecated, and the kubelet fills it with its
    # own version even where no kube-proxy runs. Never kube-proxy's version (see DaemonSetFacts).
    kube_proxy_version: str | None
    container_runtime_version: str | None  # e.g. "containerd://1.7.24"
    ready_status: str | None = None  # the Ready condition's status: "True", "False", "Unknown"; None: no condition
    ready_reason: str | None = None  # e.g. "NodeStatusUnknown: Kubelet stopped posting node status."


@dataclass(frozen=True)
class PodFacts:
    namespace: str
    name: str
    uid: str
    node: str | None
    phase: str | None
    ready: bool
    restarts: int
    waiting_reasons: tuple[str, ...] = ()
    owner_kind: str | None = None
    owner_name: str | None = None
    images: tuple[str, ...] = ()
    # A static pod's mirror (annotation kubernetes.io/config.mirror): the kubelet runs it from a
    # manifest, it has no projected service-account token, and deleting it recreates nothing.
    mirror: bool = False
    # "<volume>/<path>" of the projected service-account token mounted at the standard directory:
    # where the kubelet writes it on the node (images without `cat` can only be read there).
    token_file: str | None = None

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class DaemonSetFacts:
    """A DaemonSet's rollout as its status reports it (the apiserver omits zero counts: read as 0)."""

    namespace: str
    name: str
    desired: int
    current: int
    ready: int
    updated: int
    available: int
    images: tuple[str, ...] = ()
    node_selector: dict[str, str] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class ServicePortFacts:
    name: str | None
    port: int
    target_port: str  # a number or a named port, as text
    protocol: str


@dataclass(frozen=True)
class ContainerPortFacts:
    name: str | None
    container_port: int
    protocol: str


@dataclass(frozen=True)
class DnsFacts:
    service_present: bool
    deployment_present: bool
    service_ports: tuple[ServicePortFacts, ...] = ()
    container_ports: tuple[ContainerPortFacts, ...] = ()
    endpoint_ready_addresses: int = 0
    endpoint_not_ready_addresses: int = 0
    endpoint_ports: tuple[int, ...] = ()
    endpointslice_ready_addresses: int = 0
    endpointslice_ports: tuple[int, ...] = ()


@dataclass(frozen=True)
class DeploymentFacts:
    namespace: str
    name: str
    uid: str
    ready_replicas: int
    replicas: int

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class KubeFacts:
    # control-plane node -> gitVersion its own apiserver reports (None: unreachable; see errors)
    apiserver_versions: dict[str, str | None] = field(default_factory=dict)
    nodes: tuple[NodeFacts, ...] = ()
    pods: tuple[PodFacts, ...] = ()
    kube_proxy_daemonset: bool = False  # kept for older artifacts: `kube_proxy is not None`
    dns: DnsFacts = field(default_factory=lambda: DnsFacts(False, False))
    canaries: tuple[DeploymentFacts, ...] = ()
    pods_waited_seconds: float = 0.0
    kube_proxy: DaemonSetFacts | None = None  # None: no kube-system/kube-proxy DaemonSet
    nodes_waited_seconds: float = 0.0
    errors: dict[str, str] = field(default_factory=dict)


# -- tokens and planted state ---------------------------------------------------


@dataclass(frozen=True)
class TokenReviewResult:
    """The outcome of one TokenReview. Holds no token."""

    authenticated: bool
    username: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class PodTokenFacts:
    namespace: str
    pod: str
    review: TokenReviewResult
    owner_kind: str | None = None
    owner_name: str | None = None
    read_error: str | None = None  # the token could not be read from the pod: unknown, not stale
    mirror: bool = False  # a static pod's mirror: no projected token, nothing read or reviewed

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.pod}"


@dataclass(frozen=True)
class StateFacts:
    """Planted state read back. Secret values are SHA-256 hex digests, never the value."""

    etcd_keys: dict[str, str | None] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str] | None] = field(default_factory=dict)
    secret_digests: dict[str, dict[str, str] | None] = field(default_factory=dict)
    canary_data: dict[str, str | None] = field(default_factory=dict)


# -- records over time ----------------------------------------------------------


@dataclass(frozen=True)
class PreUpgradeRecord:
    taken_at: datetime
    versions: dict[str, dict[str, str | None]] = field(default_factory=dict)  # node -> component -> version
    pod_restarts: dict[str, int] = field(default_factory=dict)  # pod uid -> restart count
    pod_names: dict[str, str] = field(default_factory=dict)  # pod uid -> namespace/name, for messages
    canary_uids: dict[str, str] = field(default_factory=dict)  # namespace/name -> Deployment uid
    boot_ids: dict[str, str] = field(default_factory=dict)  # node -> boot id before the upgrade
    unprobed: dict[str, str] = field(default_factory=dict)  # node -> why its host probe failed then


@dataclass(frozen=True)
class VersionSample:
    at: datetime
    node: str
    component: str
    version: str | None


@dataclass(frozen=True)
class NodeStateSample:
    """A node as the API showed it at one sampling round: the drain order is judged, and drawn, on these."""

    at: datetime
    node: str
    ready: bool
    unschedulable: bool  # cordoned


# -- JSON ---------------------------------------------------------------------


def to_jsonable(obj: Any) -> Any:
    """Dataclasses, tuples, dicts and datetimes to plain JSON types (properties are not saved)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    return obj


def to_json(obj: Any) -> str:
    return json.dumps(to_jsonable(obj), indent=2, sort_keys=True)


def from_jsonable(tp: Any, data: Any) -> Any:
    """The inverse of `to_jsonable`, driven by the type hints."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if data is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return from_jsonable(inner[0], data)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        hints = typing.get_type_hints(tp)
        kwargs = {f.name: from_jsonable(hints[f.name], data[f.name]) for f in dataclasses.fields(tp) if f.name in data}
        return tp(**kwargs)
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(from_jsonable(item, v) for v in data)
    if origin is list:
        (item,) = typing.get_args(tp)
        return [from_jsonable(item, v) for v in data]
    if origin is dict:
        _key, val = typing.get_args(tp)
        return {k: from_jsonable(val, v) for k, v in data.items()}
    if tp is datetime:
        return datetime.fromisoformat(data)
    return data


def from_json(cls: type[T], text: str) -> T:
    result: T = from_jsonable(cls, json.loads(text))
    return result
