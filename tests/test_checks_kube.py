"""Kubernetes API probes and checks, on apiserver-shaped fixtures served to the real client."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from fixtures.k8s.fixture_server import FakeApiserver, deserialize, load, serve_cluster

from harness import components
from harness.checks import kube as checks
from harness.checks.result import assert_check
from harness.cluster.base import Node
from harness.probes import kube as probe
from harness.probes.facts import KubeFacts, PreUpgradeRecord, from_json, to_json

CP = [Node("cp1", ("control-plane", "etcd"), "127.0.0.1")]


@pytest.fixture
def server() -> Iterator[FakeApiserver]:
    with FakeApiserver() as s:
        yield s


def facts_from(server: FakeApiserver, **override: Any) -> KubeFacts:
    serve_cluster(server, **override)
    return probe.collect_kube_facts(server.config(), CP, canaries=["default/canary"],
                                    server_for=lambda n: server.url)


def test_collect_reads_every_fact_through_the_client(server: FakeApiserver) -> None:
    f = facts_from(server)
    assert f.apiserver_versions == {"cp1": "v1.31.4"}
    assert [(n.name, n.ready, n.kubelet_version, n.container_runtime_version) for n in f.nodes] == [
        ("cp1", True, "v1.31.4", "containerd://1.7.24"), ("node2", True, "v1.31.4", "containerd://1.7.24")]
    assert f.kube_proxy_daemonset is True
    assert [p.target_port for p in f.dns.service_ports] == ["53", "53", "9153"]
    assert f.dns.endpoint_ready_addresses == 1 and f.dns.endpointslice_ready_addresses == 1
    assert [(d.key, d.uid) for d in f.canaries] == [("default/canary", "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918")]
    # The EndpointSlices are looked up by the service-name label, as the endpointslice controller sets it.
    assert ("GET", "/apis/discovery.k8s.io/v1/namespaces/kube-system/endpointslices",
            "labelSelector=kubernetes.io/service-name%3Dcoredns") in server.requests
    assert from_json(KubeFacts, to_json(f)) == f


def test_apiserver_version_is_asked_of_each_node_not_the_endpoint(server: FakeApiserver) -> None:
    with FakeApiserver() as old:
        v = load("version")
        v.update(gitVersion="v1.30.8", minor="30")
        old.routes[("GET", "/version")] = v
        serve_cluster(server)
        nodes = [Node("cp1", ("control-plane",), "a"), Node("cp2", ("control-plane",), "b"),
                 Node("cp3", ("control-plane",), "c")]
        urls = {"cp1": server.url, "cp2": old.url, "cp3": "http://127.0.0.1:9"}  # cp3: nothing listens
        versions, errors = probe.apiserver_versions(server.config(), nodes, server_for=lambda n: urls[n.name],
                                                    timeout=2)
    assert versions == {"cp1": "v1.31.4", "cp2": "v1.30.8", "cp3": None}
    assert "cp3" in " ".join(errors)
    f = KubeFacts(apiserver_versions=versions, errors=errors)
    r = checks.check_apiserver_versions(f, ["cp1", "cp2", "cp3"], "1.31.4")
    assert not r.passed
    assert [row[0] for row in r.rows] == ["cp2", "cp3"]
    assert "v1.30.8" in r.details and "unreachable" in r.details
    assert checks.check_apiserver_versions(KubeFacts(apiserver_versions={"cp1": "v1.31.4"}), ["cp1"], "1.31.4").passed


def test_node_server_url() -> None:
    assert probe.node_server("192.168.121.11") == "https://192.168.121.11:6443"
    assert probe.node_server("fd00::11", 8443) == "https://[fd00::11]:8443"


def test_nodes_ready_pass_and_fail(server: FakeApiserver) -> None:
    assert checks.check_nodes_ready(facts_from(server), ["cp1", "node2"]).passed
    nodes = load("nodelist")
    ready = nodes["items"][1]["status"]["conditions"][-1]
    ready.update(status="Unknown", reason="NodeStatusUnknown", message="Kubelet stopped posting node status.")
    nodes["items"][0]["spec"]["unschedulable"] = True
    nodes["items"][0]["spec"]["taints"].append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule",
                                                  "timeAdded": "2025-01-15T10:30:00Z"})
    server.routes.clear()
    r = checks.check_nodes_ready(facts_from(server, nodes=nodes), ["cp1", "node2", "node3"])
    assert not r.passed
    assert "cp1" in r.details and "cordoned" in r.details
    assert "node2" in r.details and "NotReady" in r.details
    assert "node3" in r.details and "not registered" in r.details


def test_node_versions_pass_and_fail() -> None:
    nodes = load("nodelist")
    facts = KubeFacts(nodes=tuple(probe.node_facts(n) for n in deserialize(nodes, "V1NodeList").items))
    assert checks.check_node_versions(facts, "1.31.4", "1.7.24").passed
    nodes["items"][1]["status"]["nodeInfo"].update(kubeletVersion="v1.30.8", containerRuntimeVersion="containerd://1.6.20")
    facts = KubeFacts(nodes=tuple(probe.node_facts(n) for n in deserialize(nodes, "V1NodeList").items))
    r = checks.check_node_versions(facts, "1.31.4", "1.7.24")
    assert not r.passed
    assert ("node2", "kubelet", "1.31.4", "v1.30.8") in r.rows
    assert ("node2", "containerd", "1.7.24", "containerd://1.6.20") in r.rows
    assert all(row[0] == "node2" for row in r.rows)


def _each(node: str, version: str) -> dict[str, dict[str, str]]:
    """Every static pod of `node` expected at `version`."""
    return {node: dict.fromkeys(components.static_pods(), version)}


def test_static_pods_pass_and_fail() -> None:
    pods = load("podlist")
    facts = KubeFacts(pods=tuple(probe.pod_facts(p) for p in deserialize(pods, "V1PodList").items))
    assert checks.check_static_pods(facts, _each("cp1", "1.31.4")).passed
    sched = next(p for p in pods["items"] if p["metadata"]["name"] == "kube-scheduler-cp1")
    sched["spec"]["containers"][0]["image"] = "registry.k8s.io/kube-scheduler:v1.30.8"
    pods["items"] = [p for p in pods["items"] if p["metadata"]["name"] != "kube-controller-manager-cp1"]
    facts = KubeFacts(pods=tuple(probe.pod_facts(p) for p in deserialize(pods, "V1PodList").items))
    r = checks.check_static_pods(facts, _each("cp1", "1.31.4"))
    assert not r.passed
    assert ("cp1", "kube-controller-manager", "1.31.4", "no static pod") in r.rows
    assert ("cp1", "kube-scheduler", "1.31.4", "image registry.k8s.io/kube-scheduler:v1.30.8") in r.rows


def test_image_tag() -> None:
    assert probe.image_tag("registry.k8s.io/kube-apiserver:v1.31.4") == "v1.31.4"
    assert probe.image_tag("registry.local:5000/kube-apiserver:v1.31.4") == "v1.31.4"
    assert probe.image_tag("registry.local:5000/kube-apiserver") is None
    assert probe.image_tag("registry.k8s.io/kube-apiserver:v1.31.4@sha256:ace6") == "v1.31.4"


def test_kube_proxy_present_absent_against_inventory(server: FakeApiserver) -> None:
    present = facts_from(server)
    assert checks.check_kube_proxy(present, kube_proxy_remove=False).passed
    r = checks.check_kube_proxy(present, kube_proxy_remove=True)
    assert not r.passed and "11227" in r.details
    server.routes.clear()
    absent = facts_from(server, kube_proxy=None)  # served as the apiserver's 404 Status
    assert absent.kube_proxy_daemonset is False
    assert checks.check_kube_proxy(absent, kube_proxy_remove=True).passed
    assert not checks.check_kube_proxy(absent, kube_proxy_remove=False).passed


def test_coredns_consistent(server: FakeApiserver) -> None:
    assert_check(checks.check_coredns(facts_from(server)))


def test_coredns_wrong_target_port_is_caught(server: FakeApiserver) -> None:
    svc = load("service-coredns")
    svc["spec"]["ports"][0]["targetPort"] = 5353  # kubespray#10860's shape: the Service points elsewhere
    r = checks.check_coredns(facts_from(server, coredns_service=svc))
    assert not r.passed
    assert "targets 5353" in r.summary


def test_coredns_named_target_port() -> None:
    svc = load("service-coredns")
    for p in svc["spec"]["ports"]:
        p["targetPort"] = p["name"]
    dns = probe.dns_facts(deserialize(svc, "V1Service"), deserialize(load("deployment-coredns"), "V1Deployment"),
                          deserialize(load("endpoints-coredns"), "V1Endpoints"),
                          deserialize(load("endpointslicelist-coredns"), "V1EndpointSliceList").items)
    assert checks.check_coredns(KubeFacts(dns=dns)).passed
    svc["spec"]["ports"][1]["targetPort"] = "dns-tpc"
    dns = probe.dns_facts(deserialize(svc, "V1Service"), deserialize(load("deployment-coredns"), "V1Deployment"),
                          deserialize(load("endpoints-coredns"), "V1Endpoints"), [])
    r = checks.check_coredns(KubeFacts(dns=dns))
    assert not r.passed and "dns-tpc" in r.details and "EndpointSlice" in r.details


def test_coredns_without_ready_endpoints(server: FakeApiserver) -> None:
    ep = load("endpoints-coredns")
    subset = ep["subsets"][0]
    subset["notReadyAddresses"] = subset.pop("addresses")
    slices = load("endpointslicelist-coredns")
    slices["items"][0]["endpoints"][0]["conditions"] = {"ready": False, "serving": False, "terminating": False}
    r = checks.check_coredns(facts_from(server, coredns_endpoints=ep, coredns_slices=slices))
    assert not r.passed
    assert "no ready address (1 not ready)" in r.details and "EndpointSlice" in r.details


def test_coredns_missing_service(server: FakeApiserver) -> None:
    r = checks.check_coredns(facts_from(server, coredns_service=None))
    assert not r.passed and "Service" in r.summary


def _pods(data: dict[str, Any]) -> KubeFacts:
    return KubeFacts(pods=tuple(probe.pod_facts(p) for p in deserialize(data, "V1PodList").items), pods_waited_seconds=3)


def test_pods_healthy_pass_and_crashloop() -> None:
    pods = load("podlist")
    assert checks.check_pods_healthy(_pods(pods), budget=60).passed
    dns = next(p for p in pods["items"] if p["metadata"]["name"].startswith("coredns-"))
    st = dns["status"]["containerStatuses"][0]
    st.update(ready=False, restartCount=7, started=False,
              state={"waiting": {"reason": "CrashLoopBackOff",
                                 "message": "back-off 5m0s restarting failed container=coredns"}},
              lastState={"terminated": {"exitCode": 1, "reason": "Error", "startedAt": "2025-01-15T10:40:01Z",
                                        "finishedAt": "2025-01-15T10:40:02Z"}})
    for c in dns["status"]["conditions"]:
        if c["type"] in ("Ready", "ContainersReady"):
            c.update(status="False", reason="ContainersNotReady", message="containers with unready status: [coredns]")
    r = checks.check_pods_healthy(_pods(pods), budget=60)
    assert not r.passed
    assert "kube-system/coredns-5c54f84c97-7xq2m" in r.details and "CrashLoopBackOff" in r.details
    assert "after 3s (budget 60s)" in r.summary


def test_pods_pending_and_succeeded() -> None:
    pods = load("podlist")
    canary = pods["items"][-1]
    done = copy.deepcopy(canary)
    done["metadata"].update(name="job-x", uid="99999999-0000-4000-8000-000000000000")
    done["status"]["phase"] = "Succeeded"
    for c in done["status"]["conditions"]:
        if c["type"] == "Ready":
            c.update(status="False", reason="PodCompleted")
    pods["items"].append(done)
    assert checks.check_pods_healthy(_pods(pods)).passed  # a finished Job pod is fine
    canary["status"] = {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                        "reason": "Unschedulable", "message": "0/2 nodes are available"}], "qosClass": "BestEffort"}
    r = checks.check_pods_healthy(_pods(pods))
    assert not r.passed and "Pending, not ready" in r.details


def test_wait_for_pods_polls_until_settled_or_budget(server: FakeApiserver) -> None:
    pending = load("podlist")
    pending["items"][-1]["status"]["phase"] = "Pending"
    answers = [pending, load("podlist")]
    server.routes[("GET", "/api/v1/pods")] = lambda _body: (200, answers.pop(0) if len(answers) > 1 else answers[0])
    now = [0.0]
    with probe.api_client(server.config()) as api:
        pods, waited = probe.wait_for_pods(api, budget=30, interval=5, clock=lambda: now[0],
                                           sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert all(probe.pod_settled(p) for p in pods) and waited == 5
    server.routes[("GET", "/api/v1/pods")] = pending
    now[0] = 0.0
    with probe.api_client(server.config()) as api:
        pods, waited = probe.wait_for_pods(api, budget=12, interval=5, clock=lambda: now[0],
                                           sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert waited == 12 and not all(probe.pod_settled(p) for p in pods)


def _pre(**kw: Any) -> PreUpgradeRecord:
    return PreUpgradeRecord(taken_at=datetime(2025, 1, 15, 9, 50, tzinfo=UTC), **kw)


def test_restarts_compared_by_uid() -> None:
    pods = load("podlist")
    facts = _pods(pods)
    restarts, names, _ = probe.pre_upgrade_snapshot(facts)
    assert checks.check_restarts(facts, _pre(pod_restarts=restarts, pod_names=names)).passed
    pods["items"][-1]["status"]["containerStatuses"][0]["restartCount"] = 4
    r = checks.check_restarts(_pods(pods), _pre(pod_restarts=restarts, pod_names=names))
    assert not r.passed and "default/canary-7d9c6b8f5d-x2k4q" in r.details
    assert checks.check_restarts(_pods(pods), _pre(pod_restarts=restarts), max_increase=3).passed
    # Pods recreated during the upgrade have new UIDs: nothing to compare.
    assert not checks.check_restarts(_pods(pods), _pre(pod_restarts={"other": 0})).applicable


def test_canaries_keep_uid(server: FakeApiserver) -> None:
    f = facts_from(server)
    uid = "7e6d5c4b-3a29-4180-9f7e-6d5c4b3a2918"
    assert checks.check_canaries(f, _pre(canary_uids={"default/canary": uid})).passed
    r = checks.check_canaries(f, _pre(canary_uids={"default/canary": "00000000-1111-4222-8333-444444444444"}))
    assert not r.passed and "recreated" in r.details
    server.routes.clear()
    gone = facts_from(server, canary=None)
    r = checks.check_canaries(gone, _pre(canary_uids={"default/canary": uid}))
    assert not r.passed and "deleted" in r.details
    assert not checks.check_canaries(f, _pre()).applicable


def test_canary_unavailable(server: FakeApiserver) -> None:
    d = load("deployment-canary")
    d["status"].pop("readyReplicas")
    d["status"]["unavailableReplicas"] = 1
    f = facts_from(server, canary=d)
    r = checks.check_canaries(f, _pre(canary_uids={"default/canary": d["metadata"]["uid"]}))
    assert not r.passed and "0/1 ready" in r.details


def test_secret_digests_never_hold_values(server: FakeApiserver) -> None:
    import base64
    import hashlib

    secret = {"kind": "Secret", "apiVersion": "v1", "type": "Opaque",
              "metadata": {"name": "planted", "namespace": "default", "uid": "5a4b3c2d-1e0f-4a9b-8c7d-6e5f4a3b2c1d",
                           "resourceVersion": "47001", "creationTimestamp": "2025-01-15T09:41:00Z"},
              "data": {"password": base64.b64encode(b"hunter2").decode()}}
    server.routes[("GET", "/api/v1/namespaces/default/secrets/planted")] = secret
    with probe.api_client(server.config()) as api:
        got = probe.read_secret_digests(api, ["default/planted", "default/missing"])
    assert got == {"default/planted": {"password": hashlib.sha256(b"hunter2").hexdigest()}, "default/missing": None}
    assert "hunter2" not in repr(got)
