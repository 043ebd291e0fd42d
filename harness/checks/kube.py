"""Kubernetes API checks over `KubeFacts`: small functions, each one question about the cluster."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harness import components
from harness.checks.result import VERSION_HEADERS, CheckResult, text_table
from harness.checks.versions import ANY, versions_match
from harness.probes.facts import KubeFacts, PodFacts, PreUpgradeRecord
from harness.probes.kube import image_tag, kube_proxy_pods, pod_settled
from harness.text import plural


def check_apiserver_versions(facts: KubeFacts, control_plane: Iterable[str], expected: str) -> CheckResult:
    """Each control-plane node's own apiserver (not the load balancer) serves the expected version."""
    name = "apiserver version per control-plane node"
    rows = []
    nodes = sorted(control_plane)
    for node in nodes:
        got = facts.apiserver_versions.get(node)
        if got is None:
            err = facts.errors.get(f"apiserver {node}", "not asked")
            rows.append((node, "kube-apiserver", expected, f"unreachable ({err})"))
        elif not versions_match(expected, got):
            rows.append((node, "kube-apiserver", expected, got))
    if not nodes:
        return CheckResult.not_applicable(name, "no control-plane node")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {len(nodes)} apiserver(s) not at {expected}",
                                text_table(VERSION_HEADERS, rows), rows)
    return CheckResult.ok(name, f"{len(nodes)} apiserver(s) at {expected}")


def _waited(seconds: float, budget: float | None) -> str:
    return f" after {seconds:.0f}s" + (f" (budget {budget:.0f}s)" if budget is not None else "")


def check_nodes_ready(facts: KubeFacts, expected: Iterable[str], budget: float | None = None) -> CheckResult:
    """Every inventory node is registered, Ready and schedulable (a node left cordoned is a half-done upgrade).

    Judges the last listing of the collection's wait (`nodes_waited_seconds`), so a node that was
    Ready=Unknown for a while after an apiserver restart and recovered within the budget passes."""
    name = "nodes ready"
    want = sorted(set(expected))
    by_name = {n.name: n for n in facts.nodes}
    rows = []
    for node in want:
        n = by_name.get(node)
        if n is None:
            rows.append((node, "not registered"))
        elif not n.ready:
            why = f" (Ready={n.ready_status or 'absent'}{': ' + n.ready_reason if n.ready_reason else ''})"
            rows.append((node, "NotReady" + (why if n.ready_status or n.ready_reason else "")))
        elif n.unschedulable:
            rows.append((node, "cordoned (spec.unschedulable)"))
    extra = sorted(set(by_name) - set(want))
    waited = _waited(facts.nodes_waited_seconds, budget)
    if not want:
        return CheckResult.not_applicable(name, "no Kubernetes node expected")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {len(want)} node(s) not Ready and schedulable{waited}",
                                text_table(("node", "state"), rows))
    note = f" (also registered: {', '.join(extra)})" if extra else ""
    return CheckResult.ok(name, f"{len(want)} node(s) Ready and schedulable{waited}{note}")


def check_node_versions(facts: KubeFacts, kubelet: str | None, containerd: str | None = None) -> CheckResult:
    """nodeInfo per node: kubeletVersion and the containerRuntimeVersion (`containerd://1.7.24`)."""
    name = "node versions (nodeInfo)"
    rows = []
    checked = 0
    for n in sorted(facts.nodes, key=lambda n: n.name):
        if kubelet:
            checked += 1
            if not n.kubelet_version or not versions_match(kubelet, n.kubelet_version):
                rows.append((n.name, "kubelet", kubelet, n.kubelet_version or "none"))
        if containerd:
            checked += 1
            runtime, _, ver = (n.container_runtime_version or "").partition("://")
            if runtime != "containerd" or not ver or not versions_match(containerd, ver):
                rows.append((n.name, "containerd", containerd, n.container_runtime_version or "none"))
    if not checked:
        return CheckResult.not_applicable(name, "no node or no expected kubelet/containerd version")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} node version(s) differ", text_table(VERSION_HEADERS, rows), rows)
    return CheckResult.ok(name, f"{len(facts.nodes)} node(s) report the expected versions")


def check_static_pods(facts: KubeFacts, expected: Mapping[str, Mapping[str, str]]) -> CheckResult:
    """The static pods (kube-apiserver, -controller-manager, -scheduler) of each control-plane node in
    `expected` (node -> component -> version): Running, Ready, and each at its own expected version,
    the one the versions table holds it to (ANY: any image)."""
    name = "control-plane static pods"
    by_name = {p.name: p for p in facts.pods if p.namespace == "kube-system"}
    rows = []
    nodes = sorted(expected)
    static = components.static_pods()
    for node in nodes:
        for comp in static:
            want = expected[node].get(comp, ANY)
            shown = "any" if want == ANY else want
            pod = by_name.get(f"{comp}-{node}")
            if pod is None:
                rows.append((node, comp, shown, "no static pod"))
                continue
            tag = image_tag(pod.images[0]) if pod.images else None
            if want != ANY and (not tag or not versions_match(want, tag)):
                rows.append((node, comp, shown, f"image {pod.images[0] if pod.images else 'none'}"))
            elif not pod_settled(pod):
                rows.append((node, comp, shown, f"{pod.phase}, ready={pod.ready} {' '.join(pod.waiting_reasons)}".strip()))
    if not nodes:
        return CheckResult.not_applicable(name, "no control-plane node")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} static pod(s) wrong", text_table(VERSION_HEADERS, rows), rows)
    wants = {expected[n].get(c, ANY) for n in nodes for c in static}
    at = (f"at {wants.pop()}" if len(wants) == 1 else "each at its expected version") if wants != {ANY} else "(any version)"
    return CheckResult.ok(name, f"{plural(len(nodes) * len(static), 'static pod')} {at}, Running and Ready")


def check_kube_proxy(
    facts: KubeFacts, kube_proxy_remove: bool, nodes: Iterable[str] | None = None, expected: str | None = None,
) -> CheckResult:
    """kube-proxy absent when the inventory removed it (kubespray#11227: re-deployed after removal);
    otherwise running everywhere: desired == ready == the nodes that should run it (> 0), every pod
    on the current template, and the image at `expected` when a version is expected.

    `nodes`: the Kubernetes nodes that should run it (Kubespray schedules it on every Linux node);
    by default every registered node. A DaemonSet whose nodeSelector matches nothing exists, yet
    schedules nothing: 0 desired, 0 ready (and no numberAvailable/updatedNumberScheduled: zero is omitted)."""
    name = "kube-proxy DaemonSet"
    ds = facts.kube_proxy
    present = ds is not None or facts.kube_proxy_daemonset
    if kube_proxy_remove:
        if present:
            return CheckResult.fail(
                name, "kube-proxy DaemonSet exists although the inventory sets kube_proxy_remove: true",
                "the upgrade re-deployed it (kubespray#11227); it now competes with the CNI's proxy")
        return CheckResult.ok(name, "absent, as the inventory asks")
    if not present:
        return CheckResult.fail(name, "kube-proxy DaemonSet is missing; the inventory expects it")
    if ds is None:
        return CheckResult.fail(name, "kube-proxy DaemonSet exists but its rollout was not collected")
    on = sorted(set(nodes)) if nodes is not None else sorted(n.name for n in facts.nodes)
    want = len(on)
    problems = []
    if want == 0:
        problems.append("no Kubernetes node is expected to run it")
    if ds.desired != want:
        sel = ", ".join(f"{k}={v}" for k, v in sorted(ds.node_selector.items()))
        problems.append(f"schedules {ds.desired} pod(s) for {want} node(s)" + (f" (nodeSelector {sel})" if sel else ""))
    if ds.ready != ds.desired:
        problems.append(f"{ds.ready} of {ds.desired} pod(s) ready")
    if ds.updated != ds.desired:
        problems.append(f"{ds.updated} of {ds.desired} pod(s) on the current template (rollout unfinished)")
    image = ds.images[0] if ds.images else None
    tag = image_tag(image) if image else None
    wrong_image = bool(expected) and (not tag or not versions_match(expected or "", tag))
    if wrong_image:
        problems.append(f"image {image or 'none'}, expected {expected}")
    counts = f"desired {ds.desired}, ready {ds.ready}, updated {ds.updated}, nodes {want}"
    if problems:
        rows = [(ds.key, "kube-proxy", expected or "", image or "none")] if wrong_image else []
        where = kube_proxy_per_node(facts.pods, on, image)
        named = _kube_proxy_named(where)
        table = "\n\n" + text_table(("node", "pod", "image", "state"), where) if where else ""
        return CheckResult.fail(name, "kube-proxy " + problems[0] + named, f"{counts}\n" + "\n".join(problems) + table,
                                rows)
    return CheckResult.ok(name, f"{ds.ready}/{want} node(s) run {image or 'kube-proxy'}")


STALE_TEMPLATE = "Ready on an image other than the DaemonSet's (rollout unfinished)"


def _kube_proxy_named(rows: Iterable[tuple[str, str, str, str]]) -> str:
    """The summary's nodes: where kube-proxy is not running Ready, else where it is on an old image."""
    down = list(dict.fromkeys(r[0] for r in rows if r[3] != STALE_TEMPLATE))
    old = list(dict.fromkeys(r[0] for r in rows if r[3] == STALE_TEMPLATE))
    if down:
        return f" (not running Ready on {', '.join(down)})"
    return f" (previous image on {', '.join(old)})" if old else ""


def kube_proxy_per_node(pods: Iterable[PodFacts], nodes: Iterable[str], image: str | None) -> list[tuple[str, str, str, str]]:
    """(node, pod, image, state) for each node where kube-proxy is not running and Ready on the
    DaemonSet's current `image`: no pod there, a pod not Ready, or one still on another image. The
    DaemonSet's counts say how many; these rows say which node and which pod."""
    by_node: dict[str, list[PodFacts]] = {}
    for p in kube_proxy_pods(pods):
        by_node.setdefault(p.node or "-", []).append(p)
    rows = []
    for node in sorted(set(nodes)):
        if not by_node.get(node):
            rows.append((node, "-", "-", "no kube-proxy pod"))
        for p in sorted(by_node.get(node, []), key=lambda p: p.name):
            has = p.images[0] if p.images else "none"
            if prob := _pod_problem(p):
                rows.append((node, p.key, has, prob))
            elif image and has != image:
                rows.append((node, p.key, has, STALE_TEMPLATE))
    return rows


def check_coredns(facts: KubeFacts) -> CheckResult:
    """Every Service port targets a port the CoreDNS containers expose (kubespray#10860), and it has endpoints."""
    name = "CoreDNS service"
    dns = facts.dns
    if not dns.service_present or not dns.deployment_present:
        missing = [k for k, present in (("Service", dns.service_present), ("Deployment", dns.deployment_present))
                   if not present]
        return CheckResult.fail(name, f"kube-system/coredns {' and '.join(missing)} missing")
    problems = []
    for sp in dns.service_ports:
        if sp.target_port.isdigit():
            match = [cp for cp in dns.container_ports if cp.container_port == int(sp.target_port)]
        else:
            match = [cp for cp in dns.container_ports if cp.name == sp.target_port]
        if not any(cp.protocol == sp.protocol for cp in match):
            exposed = ", ".join(f"{cp.name or '-'}={cp.container_port}/{cp.protocol}" for cp in dns.container_ports)
            problems.append(f"port {sp.name or sp.port} {sp.port}/{sp.protocol} targets {sp.target_port},"
                            f" which no CoreDNS container exposes (containers: {exposed or 'none'})")
    if not dns.service_ports:
        problems.append("the Service has no ports")
    if dns.endpoint_ready_addresses == 0:
        problems.append(f"Endpoints has no ready address ({dns.endpoint_not_ready_addresses} not ready)")
    if dns.endpointslice_ready_addresses == 0:
        problems.append("no EndpointSlice has a ready endpoint")
    cports = {cp.container_port for cp in dns.container_ports}
    stray = [p for p in (*dns.endpoint_ports, *dns.endpointslice_ports) if p not in cports]
    if stray:
        problems.append(f"endpoints point at port(s) {', '.join(map(str, sorted(set(stray))))} no container exposes")
    if problems:
        return CheckResult.fail(name, "DNS would be broken: " + problems[0], "\n".join(problems))
    return CheckResult.ok(name, f"{len(dns.service_ports)} port(s) consistent, {dns.endpoint_ready_addresses} ready endpoint(s)")


def _pod_problem(p: PodFacts) -> str | None:
    if "CrashLoopBackOff" in p.waiting_reasons:
        return "CrashLoopBackOff"
    if pod_settled(p):
        return None
    why = " ".join(p.waiting_reasons)
    return f"{p.phase or 'no phase'}, not ready{': ' + why if why else ''}"


def check_pods_healthy(facts: KubeFacts, budget: float | None = None) -> CheckResult:
    """Every pod Running and Ready (or Succeeded), none in CrashLoopBackOff, after the wait budget."""
    name = "pods running and ready"
    rows = [(p.key, p.node or "-", prob) for p in sorted(facts.pods, key=lambda p: p.key) if (prob := _pod_problem(p))]
    waited = f" after {facts.pods_waited_seconds:.0f}s" + (f" (budget {budget:.0f}s)" if budget is not None else "")
    if not facts.pods:
        return CheckResult.fail(name, "no pod listed at all")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {len(facts.pods)} pod(s) unhealthy{waited}",
                                text_table(("pod", "node", "state"), rows))
    return CheckResult.ok(name, f"{len(facts.pods)} pod(s) running and ready{waited}")


def check_restarts(facts: KubeFacts, pre: PreUpgradeRecord, max_increase: int = 0) -> CheckResult:
    """Pods that lived through the upgrade (same UID) did not restart more than `max_increase` times."""
    name = "pod restarts since before the upgrade"
    rows = []
    survivors = 0
    for p in facts.pods:
        if p.uid not in pre.pod_restarts:
            continue  # recreated pods start from zero; their health is check_pods_healthy's business
        survivors += 1
        before = pre.pod_restarts[p.uid]
        if p.restarts - before > max_increase:
            rows.append((p.key, str(before), str(p.restarts)))
    if survivors == 0:
        return CheckResult.not_applicable(name, "no pod survived from the pre-upgrade record")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} pod(s) restarted during the upgrade",
                                text_table(("pod", "restarts before", "restarts after"), sorted(rows)))
    return CheckResult.ok(name, f"{survivors} surviving pod(s) without new restarts")


def check_canaries(facts: KubeFacts, pre: PreUpgradeRecord) -> CheckResult:
    """Canary Deployments still exist with the same UID (an upgrade must not recreate workloads) and are available."""
    name = "canary deployments kept"
    now = {d.key: d for d in facts.canaries}
    rows = []
    for key, uid in sorted(pre.canary_uids.items()):
        d = now.get(key)
        if d is None:
            rows.append((key, "deleted"))
        elif d.uid != uid:
            rows.append((key, f"recreated (uid {uid} -> {d.uid})"))
        elif d.ready_replicas < d.replicas:
            rows.append((key, f"{d.ready_replicas}/{d.replicas} ready"))
    if not pre.canary_uids:
        return CheckResult.not_applicable(name, "no canary was recorded before the upgrade")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} canary deployment(s) lost, recreated or unavailable",
                                text_table(("deployment", "state"), rows))
    return CheckResult.ok(name, f"{len(pre.canary_uids)} canary deployment(s) kept their UID and are available")
