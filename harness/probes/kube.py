"""Kubernetes API facts through the official client.

The kubeconfig is the one the installer leaves (Kubespray: `<inventory>/artifacts/admin.conf` with
`kubeconfig_localhost: true`). Each control-plane node's own apiserver is asked for its version
through a client built for that node's address, because the load-balanced endpoint answers from
one apiserver only and hides a node left on the old version.

The `*_facts` functions turn client objects into facts and are pure; the `collect_*` ones call the API.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from harness import components
from harness.cluster.base import Node
from harness.probes.facts import (
    ContainerPortFacts,
    DaemonSetFacts,
    DeploymentFacts,
    DnsFacts,
    KubeFacts,
    NodeFacts,
    PodFacts,
    ServicePortFacts,
)

DNS_NAMESPACE = "kube-system"
DNS_NAME = "coredns"  # Kubespray's name for both the Service and the Deployment
KUBE_PROXY = "kube-proxy"
APISERVER_PORT = 6443
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


# -- clients ---------------------------------------------------------------------


# kubernetes.client.Configuration and ApiClient: the client library carries no annotations, so its
# objects are `Any` to mypy; these names say which object a signature means.
ClientConfig = Any
ApiClient = Any


def load_config(kubeconfig: Path | str, context: str | None = None) -> ClientConfig:
    """A client Configuration from a kubeconfig, without touching the client's process-wide default."""
    from kubernetes import client, config

    cfg = client.Configuration()
    # The client's config loader carries no annotations.
    config.load_kube_config(config_file=str(kubeconfig), context=context,  # type: ignore[no-untyped-call]
                            client_configuration=cfg, persist_config=False)
    return cfg


def api_client(cfg: ClientConfig, server: str | None = None) -> ApiClient:
    """An ApiClient for `cfg`, pointed at `server` instead of the kubeconfig's endpoint when given."""
    from kubernetes import client

    c = copy.deepcopy(cfg)
    if server:
        c.host = server
    return client.ApiClient(configuration=c)


def url_host(address: str) -> str:
    """An address as a URL's host: IPv6 in brackets."""
    return f"[{address}]" if ":" in address else address


def node_server(address: str, port: int = APISERVER_PORT) -> str:
    return f"https://{url_host(address)}:{port}"


def api_error(e: Exception) -> str:
    """An API error without its body: a TokenReview's body echoes the token it was given."""
    status = getattr(e, "status", None)
    # websocket-client (exec) puts the response headers and body in `reason` after " -+-+- ".
    reason = str(getattr(e, "reason", None) or "").split(" -+-+- ", 1)[0].strip()
    if status is not None:
        return f"HTTP {status} {reason.splitlines()[0][:160] if reason else ''}".strip()
    return f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


def apiserver_versions(
    cfg: Any, control_plane: Sequence[Node], port: int = APISERVER_PORT, timeout: float = 10,
    server_for: Callable[[Node], str] | None = None,
) -> tuple[dict[str, str | None], dict[str, str]]:
    """node -> gitVersion its own apiserver reports; unreachable nodes get None and an error."""
    from kubernetes import client

    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for node in control_plane:
        server = server_for(node) if server_for else node_server(node.address, port)
        try:
            with api_client(cfg, server) as api:
                info = client.VersionApi(api).get_code(_request_timeout=timeout)
            versions[node.name] = info.git_version
        except Exception as e:  # noqa: BLE001  any failure to answer is the fact we record
            versions[node.name] = None
            errors[f"apiserver {node.name}"] = f"{server}: {api_error(e)}"
    return versions, errors


# -- pure conversions ------------------------------------------------------------------


def _condition(conditions: Iterable[Any] | None, kind: str) -> bool:
    return any(c.type == kind and c.status == "True" for c in conditions or ())


def node_facts(node: Any) -> NodeFacts:
    info = node.status.node_info if node.status else None
    conditions = node.status.conditions if node.status else None
    ready = next((c for c in conditions or () if c.type == "Ready"), None)
    reason = ": ".join(x for x in (ready.reason, ready.message) if x) if ready else ""
    return NodeFacts(
        name=node.metadata.name,
        ready=_condition(conditions, "Ready"),
        unschedulable=bool(node.spec.unschedulable) if node.spec else False,
        kubelet_version=info.kubelet_version if info else None,
        kube_proxy_version=(info.kube_proxy_version or None) if info else None,
        container_runtime_version=info.container_runtime_version if info else None,
        ready_status=ready.status if ready else None,
        ready_reason=reason or None,
    )


def _token_file(spec: Any) -> str | None:
    """`<volume>/<path>` of the projected serviceAccountToken mounted at SA_DIR, if any."""
    mounted = {m.name for c in spec.containers or [] for m in c.volume_mounts or [] if m.mount_path == SA_DIR}
    for v in spec.volumes or []:
        if v.name in mounted and v.projected is not None:
            for src in v.projected.sources or []:
                if src.service_account_token is not None:
                    return f"{v.name}/{src.service_account_token.path}"
    return None


def pod_facts(pod: Any) -> PodFacts:
    st = pod.status
    statuses = [*(st.init_container_statuses or []), *(st.container_statuses or [])] if st else []
    waiting = tuple(
        s.state.waiting.reason for s in statuses if s.state and s.state.waiting and s.state.waiting.reason
    )
    owner = next((o for o in pod.metadata.owner_references or () if o.controller), None)
    return PodFacts(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=pod.metadata.uid,
        node=pod.spec.node_name if pod.spec else None,
        phase=st.phase if st else None,
        ready=_condition(st.conditions if st else None, "Ready"),
        restarts=sum(s.restart_count or 0 for s in (st.container_statuses or [])) if st else 0,
        waiting_reasons=waiting,
        owner_kind=owner.kind if owner else None,
        owner_name=owner.name if owner else None,
        images=tuple(c.image for c in pod.spec.containers) if pod.spec else (),
        mirror=MIRROR_ANNOTATION in (pod.metadata.annotations or {}),
        token_file=_token_file(pod.spec) if pod.spec else None,
    )


def daemonset_facts(ds: Any) -> DaemonSetFacts:
    """The apiserver omits zero-valued status counts (a DaemonSet that schedules nothing has no
    `numberAvailable` or `updatedNumberScheduled`); the client gives None for them, read here as 0."""
    st = ds.status
    pod_spec = ds.spec.template.spec if ds.spec and ds.spec.template else None
    return DaemonSetFacts(
        namespace=ds.metadata.namespace,
        name=ds.metadata.name,
        desired=(st.desired_number_scheduled or 0) if st else 0,
        current=(st.current_number_scheduled or 0) if st else 0,
        ready=(st.number_ready or 0) if st else 0,
        updated=(st.updated_number_scheduled or 0) if st else 0,
        available=(st.number_available or 0) if st else 0,
        images=tuple(c.image for c in pod_spec.containers) if pod_spec else (),
        node_selector=dict(pod_spec.node_selector or {}) if pod_spec else {},
    )


def dns_facts(service: Any | None, deployment: Any | None, endpoints: Any | None, slices: Iterable[Any]) -> DnsFacts:
    sports = tuple(
        ServicePortFacts(p.name, p.port, str(p.target_port if p.target_port is not None else p.port), p.protocol or "TCP")
        for p in (service.spec.ports or [] if service else [])
    )
    cports = tuple(
        ContainerPortFacts(p.name, p.container_port, p.protocol or "TCP")
        for c in (deployment.spec.template.spec.containers if deployment else [])
        for p in c.ports or []
    )
    ready = not_ready = 0
    ep_ports: set[int] = set()
    for subset in (endpoints.subsets or [] if endpoints else []):
        ready += len(subset.addresses or [])
        not_ready += len(subset.not_ready_addresses or [])
        ep_ports.update(p.port for p in subset.ports or [])
    slice_ready = 0
    slice_ports: set[int] = set()
    for s in slices:
        for e in s.endpoints or []:
            # A nil `ready` means ready, per the EndpointSlice API.
            if e.conditions is None or e.conditions.ready is None or e.conditions.ready:
                slice_ready += 1
        slice_ports.update(p.port for p in s.ports or [] if p.port is not None)
    return DnsFacts(
        service_present=service is not None,
        deployment_present=deployment is not None,
        service_ports=sports,
        container_ports=cports,
        endpoint_ready_addresses=ready,
        endpoint_not_ready_addresses=not_ready,
        endpoint_ports=tuple(sorted(ep_ports)),
        endpointslice_ready_addresses=slice_ready,
        endpointslice_ports=tuple(sorted(slice_ports)),
    )


def image_tag(image: str) -> str | None:
    """`registry.k8s.io/kube-apiserver:v1.31.4` -> `v1.31.4`; a registry port is not a tag; digests dropped."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def kube_proxy_tags(pods: Iterable[PodFacts], namespace: str = "kube-system") -> dict[str, str | None]:
    """node -> image tag of the kube-proxy DaemonSet's pod on it: kube-proxy's version per node.

    Not nodeInfo.kubeProxyVersion, which the kubelet fills with its own version (deprecated) even
    where no kube-proxy runs. A node whose pod is still on the old template shows the old tag."""
    return {p.node: image_tag(p.images[0]) if p.images else None for p in kube_proxy_pods(pods, namespace) if p.node}


def kube_proxy_pods(pods: Iterable[PodFacts], namespace: str = "kube-system") -> list[PodFacts]:
    """The pods kube-proxy's DaemonSet owns."""
    return [p for p in pods if p.namespace == namespace and p.owner_kind == "DaemonSet" and p.owner_name == KUBE_PROXY]


def static_pod_tags(pods: Iterable[PodFacts], nodes: Iterable[str]) -> dict[str, dict[str, str | None]]:
    """control-plane node -> component -> image tag of its static pod (kube-system `<component>-<node>`)."""
    by_name = {p.name: p for p in pods if p.namespace == "kube-system"}
    out: dict[str, dict[str, str | None]] = {}
    for node in nodes:
        for comp in components.static_pods():
            pod = by_name.get(f"{comp}-{node}")
            if pod is not None:
                out.setdefault(node, {})[comp] = image_tag(pod.images[0]) if pod.images else None
    return out


# -- collection ---------------------------------------------------------------------------


def _not_found(e: Exception) -> bool:
    return getattr(e, "status", None) == 404


def collect_nodes(api: Any) -> list[NodeFacts]:
    from kubernetes import client

    return [node_facts(n) for n in client.CoreV1Api(api).list_node().items]


def nodes_settled(nodes: Sequence[NodeFacts], expected: Iterable[str] = ()) -> bool:
    """Every listed node Ready and every expected one registered (cordoning is judged, not waited for)."""
    return bool(nodes) and all(n.ready for n in nodes) and set(expected) <= {n.name for n in nodes}


def wait_for_nodes(
    api: Any, budget: float, expected: Iterable[str] = (), interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[NodeFacts], float]:
    """List nodes until all are Ready (and every `expected` one registered) or the budget is spent.

    Right after an apiserver restart a healthy node reads Ready=Unknown for tens of seconds (the
    node controller's grace period outlives the outage), so one snapshot would fail a cluster that
    recovers by itself. Returns the last listing and the seconds waited; the check judges it."""
    want = tuple(expected)
    start = clock()
    while True:
        nodes = collect_nodes(api)
        waited = clock() - start
        if nodes_settled(nodes, want) or waited >= budget:
            return nodes, waited
        sleep(min(interval, max(0.0, budget - waited)))


def collect_pods(api: Any) -> list[PodFacts]:
    from kubernetes import client

    return [pod_facts(p) for p in client.CoreV1Api(api).list_pod_for_all_namespaces().items]


def pod_settled(p: PodFacts) -> bool:
    return p.phase == "Succeeded" or (p.phase == "Running" and p.ready)


def wait_for_pods(
    api: Any, budget: float, interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> tuple[list[PodFacts], float]:
    """List pods until every one is Running and Ready (or Succeeded) or the budget is spent.

    Returns the last listing and the seconds waited; the check judges the listing."""
    start = clock()
    while True:
        pods = collect_pods(api)
        waited = clock() - start
        if all(pod_settled(p) for p in pods) or waited >= budget:
            return pods, waited
        sleep(min(interval, max(0.0, budget - waited)))


def collect_kube_proxy(api: Any, namespace: str = "kube-system") -> DaemonSetFacts | None:
    """The kube-proxy DaemonSet's rollout, or None when there is no such DaemonSet."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    try:
        return daemonset_facts(client.AppsV1Api(api).read_namespaced_daemon_set(KUBE_PROXY, namespace))
    except ApiException as e:
        if _not_found(e):
            return None
        raise


def collect_dns(api: Any, namespace: str = DNS_NAMESPACE, name: str = DNS_NAME) -> DnsFacts:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)

    def get(fn: Callable[..., Any]) -> Any:
        try:
            return fn(name, namespace)
        except ApiException as e:
            if _not_found(e):
                return None
            raise

    slices = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={name}").items
    return dns_facts(get(core.read_namespaced_service), get(apps.read_namespaced_deployment),
                     get(core.read_namespaced_endpoints), slices)


def collect_deployments(api: Any, keys: Iterable[str]) -> list[DeploymentFacts]:
    """Canary Deployments by `namespace/name`; a missing one is simply absent from the list."""
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    apps = client.AppsV1Api(api)
    out = []
    for key in keys:
        ns, name = key.split("/", 1)
        try:
            d = apps.read_namespaced_deployment(name, ns)
        except ApiException as e:
            if _not_found(e):
                continue
            raise
        uid = d.metadata.uid if d.metadata else None
        ready = d.status.ready_replicas if d.status else None
        out.append(DeploymentFacts(ns, name, uid or "", ready or 0, (d.spec.replicas if d.spec else None) or 0))
    return out


def collect_kube_facts(
    cfg: Any,
    control_plane: Sequence[Node],
    canaries: Iterable[str] = (),
    pods_budget: float = 0.0,
    port: int = APISERVER_PORT,
    server_for: Callable[[Node], str] | None = None,
    nodes_budget: float | None = None,
    expected_nodes: Iterable[str] = (),
    interval: float = 5.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> KubeFacts:
    """Everything the API checks read, after waiting for the cluster to settle.

    Nodes are waited for first (up to `nodes_budget`, by default `pods_budget`; `expected_nodes`
    must also be registered), then pods within what is left of `pods_budget`: pods cannot be Ready
    on a node that is not. The checks judge the last listings and report the seconds waited."""
    versions, errors = apiserver_versions(cfg, control_plane, port, server_for=server_for)
    with api_client(cfg) as api:
        nodes, nodes_waited = wait_for_nodes(api, pods_budget if nodes_budget is None else nodes_budget,
                                             expected_nodes, interval, clock, sleep)
        pods, pods_waited = wait_for_pods(api, max(0.0, pods_budget - nodes_waited), interval, clock, sleep)
        kube_proxy = collect_kube_proxy(api)
        return KubeFacts(
            apiserver_versions=versions,
            nodes=tuple(nodes),
            pods=tuple(pods),
            kube_proxy_daemonset=kube_proxy is not None,
            dns=collect_dns(api),
            canaries=tuple(collect_deployments(api, canaries)),
            pods_waited_seconds=pods_waited,
            errors=errors,
            kube_proxy=kube_proxy,
            nodes_waited_seconds=nodes_waited,
        )


def read_secret_digests(api: Any, keys: Iterable[str]) -> dict[str, dict[str, str] | None]:
    """Secret values as SHA-256 digests of the decoded bytes: the values never leave this function."""
    import base64
    import hashlib

    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api)
    out: dict[str, dict[str, str] | None] = {}
    for key in keys:
        ns, name = key.split("/", 1)
        try:
            data = core.read_namespaced_secret(name, ns).data or {}
        except ApiException as e:
            if not _not_found(e):
                raise
            out[key] = None
            continue
        out[key] = {k: hashlib.sha256(base64.b64decode(v)).hexdigest() for k, v in data.items()}
    return out


def pre_upgrade_snapshot(facts: KubeFacts) -> tuple[dict[str, int], dict[str, str], dict[str, str]]:
    """(pod uid -> restarts, pod uid -> namespace/name, canary namespace/name -> uid) for a PreUpgradeRecord."""
    return (
        {p.uid: p.restarts for p in facts.pods},
        {p.uid: p.key for p in facts.pods},
        {d.key: d.uid for d in facts.canaries},
    )


def observed_from_kube(facts: KubeFacts, static_pod_tags: Mapping[str, Mapping[str, str | None]] | None = None,
                       ) -> dict[str, dict[str, str | None]]:
    """What the API says per node: kube-apiserver from its own apiserver's /version only (never its
    static pod's image tag), kubelet from nodeInfo, kube-proxy from the image of its DaemonSet's pod on
    the node (never nodeInfo.kubeProxyVersion: the kubelet fills it with its own version, deprecated,
    even where no kube-proxy runs)."""
    out: dict[str, dict[str, str | None]] = {}
    for node, v in facts.apiserver_versions.items():
        out.setdefault(node, {})["kube-apiserver"] = v
    for n in facts.nodes:
        out.setdefault(n.name, {})["kubelet"] = n.kubelet_version
    for node, tag in kube_proxy_tags(facts.pods).items():
        out.setdefault(node, {})["kube-proxy"] = tag
    for node, tags in (static_pod_tags or {}).items():
        out.setdefault(node, {}).update({k: v for k, v in tags.items() if k != "kube-apiserver"})
    return out
