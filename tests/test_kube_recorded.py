"""The Kubernetes API probes and checks on responses recorded from a real Kubernetes 1.32 cluster
(tests/fixtures/k8s-recorded), parsed through the real `kubernetes` client's models or served to it.

Each bug found on a real cluster has a test here that failed before its fix (issue 9 items 2 and 5):
tokens in kube-system and static pods, a kube-proxy DaemonSet that schedules nothing, Ready=Unknown
right after an apiserver restart, and versions read from /version and kube-proxy's own pods."""

from __future__ import annotations

import copy
import shlex
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest
from fixtures.k8s.fixture_server import FakeApiserver, deserialize
from fixtures.k8s.recorded import (
    fixture_answers_in_turn,
    fixture_coredns_deployment,
    item,
    recorded,
    serve_recorded,
)
from pydantic import SecretStr

from harness import components
from harness.checks import kube as checks
from harness.checks import suite, verify
from harness.checks import tokens as token_checks
from harness.cluster.base import Node
from harness.probes import collected
from harness.probes import kube as probe
from harness.probes import tokens as token_probe
from harness.probes.facts import (
    KubeFacts,
    PodFacts,
    PodTokenFacts,
    PreUpgradeRecord,
    TokenReviewResult,
    from_json,
    to_json,
)
from harness.probes.kube import observed_from_kube

CP = [Node("node1", ("control-plane", "etcd", "worker"), "192.0.2.2")]
GIT_VERSION = "v1.32.0-beta.0+cd13ec4a"  # what the recorded /version says
IMAGE_TAG = "v1.32.0-beta.0"  # what the recorded static pods' images say
STATIC = ("kube-apiserver-node1", "kube-controller-manager-node1", "kube-scheduler-node1")
COREDNS_POD = "coredns-645cd84c88-ctprm"
CANARY_PODS = ("canary-6d5f4f4cb4-pxc7p", "canary-6d5f4f4cb4-z9xnk")


@pytest.fixture
def server() -> Iterator[FakeApiserver]:
    with FakeApiserver() as s:
        yield s


class FakeClock:
    """A fixture clock: `sleep` advances `now`, so waits are exact and instant."""

    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def nodes_of(body: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(probe.node_facts(n) for n in deserialize(body, "V1NodeList").items)


def pods_of(body: dict[str, Any]) -> tuple[PodFacts, ...]:
    return tuple(probe.pod_facts(p) for p in deserialize(body, "V1PodList").items)


def kube_proxy_of(body: dict[str, Any]) -> Any:
    return probe.daemonset_facts(deserialize(body, "V1DaemonSet"))


def pod_named(body: dict[str, Any], name: str) -> dict[str, Any]:
    return item(body, name)


# -- item 1: tokens in every namespace; static pods named, never deleted ---------------------------

VALID, STALE = "projected-token-after-rotation", "projected-token-signed-with-old-key"


def _review_route(body: dict[str, Any] | None) -> tuple[int, Any]:
    """The recorded TokenReview answers: valid for VALID, stale (201, no `authenticated` key) otherwise."""
    assert body is not None and body["kind"] == "TokenReview"
    out = recorded("tokenreview-valid" if body["spec"]["token"] == VALID else "tokenreview-stale")
    out["spec"]["token"] = body["spec"]["token"]  # a real apiserver echoes the token: the code must drop it
    return 201, out


def _reader(tokens: dict[str, str], asked: list[str]) -> token_probe.TokenReader:
    def read(_api: Any, namespace: str, pod: str) -> SecretStr:
        asked.append(f"{namespace}/{pod}")
        return SecretStr(tokens[pod])
    return read


def test_mirror_pods_are_recognised() -> None:
    pods = pods_of(recorded("pods-all"))
    assert sorted(p.name for p in pods if p.mirror) == sorted(STATIC)
    # A mirror pod's controller reference is its Node: "owned by a controller" is not enough to delete it.
    assert {(p.owner_kind, p.owner_name) for p in pods if p.mirror} == {("Node", "node1")}


def test_stale_coredns_token_in_kube_system_is_caught(server: FakeApiserver) -> None:
    server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review_route
    pods = pods_of(recorded("pods-all"))
    asked: list[str] = []
    tokens = {COREDNS_POD: STALE, **dict.fromkeys(CANARY_PODS, VALID)}
    with probe.api_client(server.config()) as api:
        facts = token_probe.collect_pod_tokens(api, pods, _reader(tokens, asked))
    # Every running pod has a fact, kube-system included; the static ones are marked and never read.
    assert sorted(f.key for f in facts) == sorted(f"{p.namespace}/{p.name}" for p in pods)
    assert {f.pod for f in facts if f.mirror} == set(STATIC)
    assert not any(name in a for a in asked for name in STATIC)
    r = token_checks.check_pod_tokens(facts, rotated=True)
    assert not r.passed
    assert "1 of 3 pod(s)" in r.summary
    assert f"kube-system  {COREDNS_POD}  [invalid bearer token, invalid signature, no keys found]" in r.details
    for name in STATIC:  # named as static pods, not dropped
        assert f"kube-system/{name}" in r.details
    assert "3 static pod(s) carry no service-account token" in r.details
    assert STALE not in r.message and VALID not in r.message and STALE not in to_json(facts)
    assert [t.key for t in token_checks.stale_pods(facts)] == [f"kube-system/{COREDNS_POD}"]


def test_tokens_pass_and_static_pods_named(server: FakeApiserver) -> None:
    server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review_route
    with probe.api_client(server.config()) as api:
        facts = token_probe.collect_pod_tokens(api, pods_of(recorded("pods-all")),
                                               _reader({COREDNS_POD: VALID, **dict.fromkeys(CANARY_PODS, VALID)}, []))
    r = token_checks.check_pod_tokens(facts)
    assert r.passed, r.message
    assert "3 pod token(s) authenticate (namespaces canary, kube-system)" in r.summary
    assert "kube-system/kube-apiserver-node1" in r.details
    assert from_json(PodTokenFacts, to_json(facts[0])) == facts[0]


def test_only_static_pods_is_not_applicable_and_says_why() -> None:
    pods = [p for p in pods_of(recorded("pods-kube-system")) if p.mirror]
    facts = [token_probe.pod_token_facts(None, p) for p in pods]  # no API touched for a mirror pod
    r = token_checks.check_pod_tokens(facts)
    assert not r.applicable and "kube-system/kube-scheduler-node1" in r.summary


def test_fixer_replaces_kube_system_pods_and_never_a_mirror(server: FakeApiserver) -> None:
    server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review_route
    listing = recorded("pods-kube-system")
    old = pod_named(listing, COREDNS_POD)
    new = copy.deepcopy(old)
    new["metadata"].update(name="coredns-645cd84c88-r7v2m", uid="5c1c8f0e-0b7e-4c55-9a51-3e1f0f2b6d10")
    state = {"items": listing["items"]}

    def delete(_body: Any) -> tuple[int, Any]:
        state["items"] = [p for p in state["items"] if p["metadata"]["name"] != COREDNS_POD] + [new]
        return 200, old

    server.routes[("GET", "/api/v1/namespaces/kube-system/pods")] = lambda _b: (200, {**listing, "items": state["items"]})
    server.routes[("DELETE", f"/api/v1/namespaces/kube-system/pods/{COREDNS_POD}")] = delete
    by_name = {p.name: p for p in pods_of(listing)}
    coredns = by_name[COREDNS_POD]
    stale = [
        PodTokenFacts("kube-system", COREDNS_POD, TokenReviewResult(False), coredns.owner_kind, coredns.owner_name),
        # A mirror pod as an older artifact would hold it (no `mirror` flag): its Node owner still protects it.
        PodTokenFacts("kube-system", "kube-apiserver-node1", TokenReviewResult(False), "Node", "node1"),
        PodTokenFacts("kube-system", "kube-scheduler-node1", TokenReviewResult(False), "Node", "node1", mirror=True),
    ]
    with probe.api_client(server.config()) as api:
        r = token_checks.fix_stale_tokens(api, stale, _reader({"coredns-645cd84c88-r7v2m": VALID}, []),
                                          timeout=5, interval=0.01)
    deleted = [p for m, p, _ in server.requests if m == "DELETE"]
    assert deleted == [f"/api/v1/namespaces/kube-system/pods/{COREDNS_POD}"]
    assert not r.passed  # the two static pods are reported, not fixed
    assert "2 of 3 stale pod(s) not fixed" in r.summary
    assert "kube-system/kube-apiserver-node1" in r.details and "static pod (mirror): not deleted" in r.details
    assert COREDNS_POD not in r.details  # it was replaced and its new token authenticates


# -- item 2: a kube-proxy DaemonSet that schedules nothing ----------------------------------------------


def _ready_kube_proxy(desired: int = 1, image: str = f"registry.k8s.io/kube-proxy:{IMAGE_TAG}") -> dict[str, Any]:
    """The recorded DaemonSet, modified into one that runs on `desired` node(s)."""
    ds = item(recorded("daemonsets-kube-system"), "kube-proxy")
    ds["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/os": "linux"}
    ds["spec"]["template"]["spec"]["containers"][0]["image"] = image
    ds["status"].update(desiredNumberScheduled=desired, currentNumberScheduled=desired, numberReady=desired,
                        updatedNumberScheduled=desired, numberAvailable=desired)
    return ds


def test_recorded_daemonset_that_schedules_nothing_fails(server: FakeApiserver) -> None:
    serve_recorded(server)
    with probe.api_client(server.config()) as api:
        ds = probe.collect_kube_proxy(api)
    assert ds is not None
    assert (ds.desired, ds.current, ds.ready, ds.updated, ds.available) == (0, 0, 0, 0, 0)  # omitted keys read as 0
    assert ds.node_selector == {"no-such-label": "true"}
    facts = KubeFacts(nodes=nodes_of(recorded("nodes")), kube_proxy=ds, kube_proxy_daemonset=True)
    r = checks.check_kube_proxy(facts, kube_proxy_remove=False)
    assert not r.passed
    assert "schedules 0 pod(s) for 1 node(s) (nodeSelector no-such-label=true)" in r.summary
    assert not checks.check_kube_proxy(facts, False, nodes=["node1"], expected=IMAGE_TAG).passed
    # Removed by the inventory, yet there: kubespray#11227.
    r = checks.check_kube_proxy(facts, kube_proxy_remove=True)
    assert not r.passed and "11227" in r.details


def test_kube_proxy_pass_and_each_way_to_fail() -> None:
    nodes = nodes_of(recorded("nodes"))
    ok = KubeFacts(nodes=nodes, kube_proxy=kube_proxy_of(_ready_kube_proxy()), kube_proxy_daemonset=True)
    r = checks.check_kube_proxy(ok, False, nodes=["node1"], expected=IMAGE_TAG)
    assert r.passed, r.message
    assert checks.check_kube_proxy(ok, False).passed  # nodes default to the registered ones
    # An image left at the old version.
    r = checks.check_kube_proxy(ok, False, nodes=["node1"], expected="1.33.0")
    assert not r.passed and r.rows == (("kube-system/kube-proxy", "kube-proxy", "1.33.0",
                                        f"registry.k8s.io/kube-proxy:{IMAGE_TAG}"),)
    # Fewer pods than nodes that should run it.
    r = checks.check_kube_proxy(ok, False, nodes=["node1", "node2"])
    assert not r.passed and "schedules 1 pod(s) for 2 node(s)" in r.summary
    # Scheduled but not ready, as the apiserver says it: numberReady 0 (a required field), numberAvailable omitted.
    ds = _ready_kube_proxy()
    ds["status"]["numberReady"] = 0
    del ds["status"]["numberAvailable"]
    r = checks.check_kube_proxy(KubeFacts(nodes=nodes, kube_proxy=kube_proxy_of(ds)), False, nodes=["node1"])
    assert not r.passed and "0 of 1 pod(s) ready" in r.details
    # Absent although the inventory keeps it.
    assert not checks.check_kube_proxy(KubeFacts(nodes=nodes), False).passed
    assert checks.check_kube_proxy(KubeFacts(nodes=nodes), True).passed



def test_kube_proxy_names_each_node_and_pod_it_is_not_running_on() -> None:
    """The DaemonSet's counts say how many; the failure says where: each node without a Ready kube-proxy
    on the current image, with its pod (as `harness verify` showed a rollout stuck on an image that
    cannot start, live on the lab)."""
    nodes = nodes_of(recorded("nodes"))
    new = "registry.k8s.io/kube-proxy:v1.32.1"
    pods = recorded("pods-all")
    pods["items"].append(_kube_proxy_pod("v1.32.1"))
    crashing = tuple(replace(p, ready=False, waiting_reasons=("CrashLoopBackOff",)) if p.name == "kube-proxy-8q2lw"
                     else p for p in pods_of(pods))
    ds = _ready_kube_proxy(image=new)
    ds["status"]["numberReady"] = 0
    r = checks.check_kube_proxy(KubeFacts(nodes=nodes, pods=crashing, kube_proxy=kube_proxy_of(ds)), False, ["node1"])
    assert not r.passed and r.summary == "kube-proxy 0 of 1 pod(s) ready (not running Ready on node1)", r.summary
    assert "node1  kube-system/kube-proxy-8q2lw  registry.k8s.io/kube-proxy:v1.32.1  CrashLoopBackOff" in r.details
    # A node the DaemonSet does not reach: named, with no pod.
    r = checks.check_kube_proxy(KubeFacts(nodes=nodes, pods=pods_of(pods), kube_proxy=kube_proxy_of(_ready_kube_proxy(
        image=new))), False, ["node1", "node2"])
    assert r.summary == "kube-proxy schedules 1 pod(s) for 2 node(s) (nodeSelector kubernetes.io/os=linux)" \
        " (not running Ready on node2)", r.summary
    assert "node2  -    -      no kube-proxy pod" in r.details
    # Ready, but still on the previous image: the rollout has not reached it.
    ds = _ready_kube_proxy(image="registry.k8s.io/kube-proxy:v1.32.2")
    ds["status"]["updatedNumberScheduled"] = 0
    r = checks.check_kube_proxy(KubeFacts(nodes=nodes, pods=pods_of(pods), kube_proxy=kube_proxy_of(ds)), False, ["node1"])
    assert r.summary.endswith("(previous image on node1)"), r.summary
    assert checks.STALE_TEMPLATE in r.details

# -- item 3: nodes Ready=Unknown right after an apiserver restart ---------------------------------------


def test_one_snapshot_after_restart_is_not_ready() -> None:
    facts = KubeFacts(nodes=nodes_of(recorded("nodes-right-after-apiserver-restart")))
    r = checks.check_nodes_ready(facts, ["node1"])
    assert not r.passed
    assert "NotReady (Ready=Unknown: NodeStatusUnknown: Kubelet stopped posting node status.)" in r.details


def test_nodes_wait_through_ready_unknown(server: FakeApiserver) -> None:
    route = fixture_answers_in_turn(recorded("nodes-right-after-apiserver-restart"),
                                    recorded("nodes-right-after-apiserver-restart"), recorded("nodes"))
    server.routes[("GET", "/api/v1/nodes")] = route
    t = FakeClock()
    with probe.api_client(server.config()) as api:
        nodes, waited = probe.wait_for_nodes(api, budget=60, interval=5, clock=t.clock, sleep=t.sleep)
    assert route.served == [1, 1, 1] and waited == 10
    r = checks.check_nodes_ready(KubeFacts(nodes=tuple(nodes), nodes_waited_seconds=waited), ["node1"], budget=60)
    assert r.passed, r.message
    assert "after 10s (budget 60s)" in r.summary


def test_nodes_wait_gives_up_at_the_budget(server: FakeApiserver) -> None:
    server.routes[("GET", "/api/v1/nodes")] = recorded("nodes-right-after-apiserver-restart")
    t = FakeClock()
    with probe.api_client(server.config()) as api:
        nodes, waited = probe.wait_for_nodes(api, budget=12, interval=5, clock=t.clock, sleep=t.sleep)
    assert waited == 12
    r = checks.check_nodes_ready(KubeFacts(nodes=tuple(nodes), nodes_waited_seconds=waited), ["node1"], budget=12)
    assert not r.passed and "after 12s (budget 12s)" in r.summary and "Ready=Unknown" in r.details


def test_nodes_wait_for_an_expected_node_to_register(server: FakeApiserver) -> None:
    two = recorded("nodes")
    node2 = copy.deepcopy(two["items"][0])
    node2["metadata"].update(name="node2", uid="0e5b1a52-4f7c-4c8e-9d33-6d2f43b1c9aa")
    two["items"].append(node2)
    server.routes[("GET", "/api/v1/nodes")] = fixture_answers_in_turn(recorded("nodes"), two)
    t = FakeClock()
    with probe.api_client(server.config()) as api:
        nodes, waited = probe.wait_for_nodes(api, budget=60, expected=["node1", "node2"], interval=5,
                                             clock=t.clock, sleep=t.sleep)
    assert [n.name for n in nodes] == ["node1", "node2"] and waited == 5


def test_collect_waits_for_nodes_then_reads_everything(server: FakeApiserver) -> None:
    serve_recorded(server, nodes=fixture_answers_in_turn(recorded("nodes-right-after-apiserver-restart"),
                                                         recorded("nodes")))
    t = FakeClock()
    f = probe.collect_kube_facts(server.config(), CP, canaries=["canary/canary"], pods_budget=60,
                                 server_for=lambda n: server.url, clock=t.clock, sleep=t.sleep)
    assert f.nodes_waited_seconds == 5 and f.pods_waited_seconds == 0
    assert [(n.name, n.ready, n.ready_status) for n in f.nodes] == [("node1", True, "True")]
    assert f.apiserver_versions == {"node1": GIT_VERSION}
    assert f.kube_proxy is not None and f.kube_proxy.desired == 0 and f.kube_proxy_daemonset
    assert [d.key for d in f.canaries] == ["canary/canary"]
    assert from_json(KubeFacts, to_json(f)) == f
    assert checks.check_nodes_ready(f, ["node1"]).passed
    assert not checks.check_kube_proxy(f, False).passed  # the recorded DaemonSet schedules nothing


# -- item 5: versions from /version and from kube-proxy's pods ------------------------------------------


def _kube_proxy_pod(tag: str) -> dict[str, Any]:
    """A kube-proxy pod on node1, built from the recorded CoreDNS pod (no kube-proxy ran there)."""
    pod = copy.deepcopy(pod_named(recorded("pods-all"), COREDNS_POD))
    pod["metadata"].update(name="kube-proxy-8q2lw", uid="7b1d2c3e-8f90-4a1b-9c2d-3e4f5a6b7c8d",
                           labels={"k8s-app": "kube-proxy"},
                           ownerReferences=[{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "kube-proxy",
                                             "uid": "1a003f9a-b4db-4b8b-94a0-ca4702c263c4", "controller": True}])
    pod["spec"]["containers"][0]["image"] = f"registry.k8s.io/kube-proxy:{tag}"
    return pod


def test_apiserver_version_row_comes_from_version_endpoint(server: FakeApiserver) -> None:
    serve_recorded(server)
    versions, errors = probe.apiserver_versions(server.config(), CP, server_for=lambda n: server.url)
    assert versions == {"node1": GIT_VERSION} and errors == {}
    pods = recorded("pods-all")
    # A static pod whose image tag says one thing while the apiserver serves another.
    pod_named(pods, "kube-apiserver-node1")["spec"]["containers"][0]["image"] = "registry.k8s.io/kube-apiserver:v1.31.4"
    facts = KubeFacts(apiserver_versions=versions, nodes=nodes_of(recorded("nodes")), pods=pods_of(pods))
    tags = probe.static_pod_tags(facts.pods, ["node1"])
    assert tags["node1"]["kube-apiserver"] == "v1.31.4"
    observed = observed_from_kube(facts, tags)
    assert observed["node1"]["kube-apiserver"] == GIT_VERSION
    assert observed["node1"]["kube-scheduler"] == IMAGE_TAG
    # Unreachable apiserver: no version, not the static pod's tag in its place.
    unreachable = observed_from_kube(KubeFacts(apiserver_versions={"node1": None}, pods=facts.pods), tags)
    assert unreachable["node1"]["kube-apiserver"] is None


def test_kube_proxy_version_is_never_nodeinfo() -> None:
    nodes = nodes_of(recorded("nodes"))
    assert nodes[0].kube_proxy_version == GIT_VERSION  # the kubelet fills it though no kube-proxy runs
    observed = observed_from_kube(KubeFacts(nodes=nodes, pods=pods_of(recorded("pods-all"))))
    assert "kube-proxy" not in observed["node1"]
    pods = recorded("pods-all")
    pods["items"].append(_kube_proxy_pod("v1.32.0"))
    observed = observed_from_kube(KubeFacts(nodes=nodes, pods=pods_of(pods)))
    assert observed["node1"]["kube-proxy"] == "v1.32.0"


# -- item 6: every other API check, pass and fail, on recorded shapes -----------------------------------


def test_apiserver_versions_check() -> None:
    f = KubeFacts(apiserver_versions={"node1": GIT_VERSION})
    assert checks.check_apiserver_versions(f, ["node1"], "1.32.0-beta.0").passed
    r = checks.check_apiserver_versions(f, ["node1"], "1.33.0")
    assert not r.passed and r.rows == (("node1", "kube-apiserver", "1.33.0", GIT_VERSION),)


def test_nodes_ready_pass_and_fail() -> None:
    assert checks.check_nodes_ready(KubeFacts(nodes=nodes_of(recorded("nodes"))), ["node1"]).passed
    cordoned = recorded("nodes")
    cordoned["items"][0]["spec"]["unschedulable"] = True
    r = checks.check_nodes_ready(KubeFacts(nodes=nodes_of(cordoned)), ["node1", "node2"])
    assert not r.passed
    assert "node1  cordoned (spec.unschedulable)" in r.details and "node2  not registered" in r.details


def test_node_versions_pass_and_fail() -> None:
    f = KubeFacts(nodes=nodes_of(recorded("nodes")))
    assert checks.check_node_versions(f, "1.32.0-beta.0", "1.6.20").passed
    old = recorded("nodes")
    old["items"][0]["status"]["nodeInfo"].update(kubeletVersion="v1.31.4", containerRuntimeVersion="containerd://1.6.19")
    r = checks.check_node_versions(KubeFacts(nodes=nodes_of(old)), "1.32.0-beta.0", "1.6.20")
    assert not r.passed
    assert set(r.rows) == {("node1", "kubelet", "1.32.0-beta.0", "v1.31.4"),
                           ("node1", "containerd", "1.6.20", "containerd://1.6.19")}


def _each(node: str, version: str) -> dict[str, dict[str, str]]:
    """Every static pod of `node` expected at `version`."""
    return {node: dict.fromkeys(components.static_pods(), version)}


def test_static_pods_pass_and_fail() -> None:
    assert checks.check_static_pods(KubeFacts(pods=pods_of(recorded("pods-all"))), _each("node1", "1.32.0-beta.0")).passed
    pods = recorded("pods-all")
    pod_named(pods, "kube-controller-manager-node1")["spec"]["containers"][0]["image"] = (
        "registry.k8s.io/kube-controller-manager:v1.31.4")
    pods["items"] = [p for p in pods["items"] if p["metadata"]["name"] != "kube-scheduler-node1"]
    r = checks.check_static_pods(KubeFacts(pods=pods_of(pods)), _each("node1", "1.32.0-beta.0"))
    assert not r.passed
    assert set(r.rows) == {("node1", "kube-scheduler", "1.32.0-beta.0", "no static pod"),
                           ("node1", "kube-controller-manager", "1.32.0-beta.0",
                            "image registry.k8s.io/kube-controller-manager:v1.31.4")}


def test_each_static_pod_is_judged_at_its_own_pin_in_the_table_and_the_check_alike(tmp_path: Any) -> None:
    """kube_version 1.32.0 with the controller-manager and the scheduler pinned at 1.32.0-beta.0 (what
    they run): the versions table passed them while the static-pods check held them to the apiserver's
    pin and failed them. One expectation now: both pass, and both fail a pod off its own pin."""
    expect_file = tmp_path / "expect.yaml"
    expect_file.write_text("versions: {kube_version: 1.32.0, kube-controller-manager: 1.32.0-beta.0,"
                           " kube-scheduler: 1.32.0-beta.0}\n")
    expect = verify.load_expectation(expect_file)
    pods = recorded("pods-all")
    pod_named(pods, "kube-apiserver-node1")["spec"]["containers"][0]["image"] = "registry.k8s.io/kube-apiserver:v1.32.0"

    def judged(body: dict[str, Any]) -> tuple[dict[str, tuple[str, str, str]], Any]:
        kube = KubeFacts(pods=pods_of(body), apiserver_versions={"node1": "v1.32.0"})
        facts = collected.Facts(nodes={"node1": ("control-plane",)}, kube=kube)
        report = verify.report(facts, expect)
        rows = {comp: (want, got, status) for node, comp, want, got, status in report.rows if comp in components.static_pods()}
        return rows, next(r for r in report.results if r.name == "static pods")

    rows, static = judged(pods)
    assert rows == {"kube-apiserver": ("1.32.0", "v1.32.0", "pass"),
                    "kube-controller-manager": ("1.32.0-beta.0", IMAGE_TAG, "pass"),
                    "kube-scheduler": ("1.32.0-beta.0", IMAGE_TAG, "pass")}
    assert static.passed, static.message
    pod_named(pods, "kube-scheduler-node1")["spec"]["containers"][0]["image"] = "registry.k8s.io/kube-scheduler:v1.32.0"
    rows, static = judged(pods)
    assert rows["kube-scheduler"] == ("1.32.0-beta.0", "v1.32.0", "FAIL")
    assert not static.passed and static.rows == (
        ("node1", "kube-scheduler", "1.32.0-beta.0", "image registry.k8s.io/kube-scheduler:v1.32.0"),)


def test_an_untouched_static_pod_is_held_to_the_same_version_by_the_table_and_the_check() -> None:
    """An etcd-only upgrade pins no kube version: the static-pods check held the controller-manager to
    the kube version seen before (the kubelet's), while the table expected it at any version."""
    pods = recorded("pods-all")
    pod_named(pods, "kube-controller-manager-node1")["spec"]["containers"][0]["image"] = (
        "registry.k8s.io/kube-controller-manager:v1.31.9")
    before = PreUpgradeRecord(datetime(2026, 11, 28, tzinfo=UTC), versions={"node1": {"kubelet": IMAGE_TAG}})
    expect = suite.Expectation(versions={"etcd": "3.5.16"}, upgrade=suite.UpgradeExpectation(
        path="component", upgraded=frozenset({"etcd"}), before=before))
    facts = collected.Facts(nodes={"node1": ("control-plane",)}, kube=KubeFacts(pods=pods_of(pods)))
    assert suite.expected_per_node(facts, expect)["node1"]["kube-controller-manager"] == IMAGE_TAG
    results = {r.name: r for r in suite.judge(facts, expect, ["static pods", "untouched components"])}
    want = ("node1", "kube-controller-manager", IMAGE_TAG)
    assert (*want, "image registry.k8s.io/kube-controller-manager:v1.31.9") in results["static pods"].rows
    assert (*want, "v1.31.9") in results["untouched components"].rows


def _dns(service: dict[str, Any]) -> KubeFacts:
    return KubeFacts(dns=probe.dns_facts(
        deserialize(service, "V1Service"), deserialize(fixture_coredns_deployment(), "V1Deployment"),
        deserialize(item(recorded("endpoints-kube-system"), "coredns"), "V1Endpoints"),
        deserialize(recorded("endpointslices-kube-system"), "V1EndpointSliceList").items))


def test_dns_service_pass_and_wrong_target_port() -> None:
    svc = item(recorded("services-kube-system"), "coredns")
    r = checks.check_coredns(_dns(svc))
    assert r.passed, r.message
    assert "3 port(s) consistent, 1 ready endpoint(s)" in r.summary
    # kubespray#10860: after the upgrade the Service's dns-tcp port targeted a port CoreDNS does not expose.
    svc["spec"]["ports"][1]["targetPort"] = 5353
    r = checks.check_coredns(_dns(svc))
    assert not r.passed and "port dns-tcp 53/TCP targets 5353" in r.summary


def test_dns_service_through_the_client(server: FakeApiserver) -> None:
    serve_recorded(server)
    with probe.api_client(server.config()) as api:
        dns = probe.collect_dns(api)
    assert dns.endpoint_ready_addresses == 1 and dns.endpointslice_ready_addresses == 1
    assert dns.endpoint_ports == (53, 9153) and dns.endpointslice_ports == (53, 9153)
    assert checks.check_coredns(KubeFacts(dns=dns)).passed
    server.routes.clear()
    serve_recorded(server, coredns_service=None)
    with probe.api_client(server.config()) as api:
        r = checks.check_coredns(KubeFacts(dns=probe.collect_dns(api)))
    assert not r.passed and "Service missing" in r.summary


def test_pods_healthy_pass_and_crashloop() -> None:
    f = KubeFacts(pods=pods_of(recorded("pods-all")), pods_waited_seconds=0)
    r = checks.check_pods_healthy(f, budget=300)
    assert r.passed and "6 pod(s) running and ready" in r.summary
    pods = recorded("pods-all")
    dns = pod_named(pods, COREDNS_POD)
    dns["status"]["containerStatuses"][0].update(
        ready=False, started=False, restartCount=5,
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 2m40s restarting failed container"}})
    for c in dns["status"]["conditions"]:
        if c["type"] in ("Ready", "ContainersReady"):
            c["status"] = "False"
    r = checks.check_pods_healthy(KubeFacts(pods=pods_of(pods), pods_waited_seconds=300), budget=300)
    assert not r.passed and f"kube-system/{COREDNS_POD}  node1  CrashLoopBackOff" in r.details
    assert "after 300s (budget 300s)" in r.summary


def test_restarts_pass_and_fail() -> None:
    f = KubeFacts(pods=pods_of(recorded("pods-all")))
    restarts, names, _ = probe.pre_upgrade_snapshot(f)
    assert restarts[pod_named(recorded("pods-all"), "kube-controller-manager-node1")["metadata"]["uid"]] == 1
    pre = PreUpgradeRecord(taken_at=datetime(2026, 11, 28, 2, 15, tzinfo=UTC), pod_restarts=restarts, pod_names=names)
    assert checks.check_restarts(f, pre).passed
    pods = recorded("pods-all")
    pod_named(pods, "kube-controller-manager-node1")["status"]["containerStatuses"][0]["restartCount"] = 3
    r = checks.check_restarts(KubeFacts(pods=pods_of(pods)), pre)
    assert not r.passed and "kube-system/kube-controller-manager-node1  1                3" in r.details


def test_canaries_pass_and_fail(server: FakeApiserver) -> None:
    serve_recorded(server)
    uid = item(recorded("deployments-canary"), "canary")["metadata"]["uid"]
    pre = PreUpgradeRecord(taken_at=datetime(2026, 11, 28, 2, 15, tzinfo=UTC), canary_uids={"canary/canary": uid})
    with probe.api_client(server.config()) as api:
        f = KubeFacts(canaries=tuple(probe.collect_deployments(api, ["canary/canary"])))
    assert checks.check_canaries(f, pre).passed
    half = item(recorded("deployments-canary"), "canary")
    half["status"].update(readyReplicas=1, availableReplicas=1, unavailableReplicas=1)
    server.routes[("GET", "/apis/apps/v1/namespaces/canary/deployments/canary")] = half
    with probe.api_client(server.config()) as api:
        r = checks.check_canaries(KubeFacts(canaries=tuple(probe.collect_deployments(api, ["canary/canary"]))), pre)
    assert not r.passed and "canary/canary  1/2 ready" in r.details
    recreated = PreUpgradeRecord(taken_at=pre.taken_at, canary_uids={"canary/canary": "00000000-0000-4000-8000-000000000000"})
    assert "recreated" in checks.check_canaries(f, recreated).details


def test_token_read_on_the_node_when_the_image_has_no_cat(server: FakeApiserver) -> None:
    """CoreDNS and kube-proxy images are distroless: exec `cat` fails there (here: nothing serves
    exec at all), so the token is read where the kubelet projects it, on the pod's node."""
    server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review_route
    pods = recorded("pods-kube-system")
    server.routes[("GET", f"/api/v1/namespaces/kube-system/pods/{COREDNS_POD}")] = pod_named(pods, COREDNS_POD)
    path = ("/var/lib/kubelet/pods/34157502-1db4-4f54-8686-d3bc122b06cf/volumes/kubernetes.io~projected/"
            "kube-api-access-dqwk8/token")
    ran: list[tuple[str, str]] = []

    def run_on_node(node: str, command: str) -> str:
        ran.append((node, command))
        if command != f"sudo cat {shlex.quote(path)}":
            raise RuntimeError("cat: no such file")
        return STALE + "\n"

    coredns = [p for p in pods_of(pods) if p.name == COREDNS_POD]
    assert coredns[0].token_file == "kube-api-access-dqwk8/token"
    with probe.api_client(server.config()) as api:
        (facts,) = token_probe.collect_pod_tokens(api, coredns, run_on_node=run_on_node)
    assert ran == [("node1", f"sudo cat {shlex.quote(path)}")]
    assert facts.read_error is None and not facts.review.authenticated
    assert token_checks.stale_pods([facts]) == [facts]
    # Without node access the same pod is unreadable: unknown, said so, not passed as fine.
    with probe.api_client(server.config()) as api:
        (unread,) = token_probe.collect_pod_tokens(api, coredns)
    assert unread.read_error is not None
    assert not token_checks.check_pod_tokens([unread]).applicable
    # Both ways failing: both causes, and never a token.
    def unreachable(node: str, command: str) -> str:
        raise RuntimeError(f"ssh: connect to host {node} port 22: Connection refused")

    with probe.api_client(server.config()) as api:
        (both,) = token_probe.collect_pod_tokens(api, coredns, run_on_node=unreachable)
    assert both.read_error is not None and both.read_error.startswith("exec: HTTP ")
    assert both.read_error.endswith("; on the node: RuntimeError: ssh: connect to host node1 port 22: Connection refused")
    assert "-+-+-" not in both.read_error  # the handshake's response headers and body are dropped
