"""The Kubernetes disruption probes that need no apiserver: the canary Service's HTTP probe against a
local server, the cluster DNS probe against a real dnsmasq over TCP, the manifests plant.yml applies
(through the real `kubernetes` client's models) and the pipeline's backends from kube-probes.json."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
import yaml

from harness.checks import disruption as checks
from harness.installer.base import PLAYBOOKS_DIR
from harness.probes import disruption as probes
from harness.scenario import budgets

INTERVAL = 0.25
TIMEOUT = 1.0  # a stopped local server refuses at once; a hung one is cut here
DNS_NAME = "kubernetes.default.svc.cluster.local"
DNSMASQ = "/usr/sbin/dnsmasq"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_until(cond: Callable[[], bool], limit: int = 300) -> None:
    for _ in range(limit):
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition never met")


def _samples(out: Path) -> list[checks.Sample]:
    return checks.read_samples(out) if out.exists() else []


def _ok_after(out: Path, backends: set[str], t: float) -> bool:
    return {s.backend for s in _samples(out) if s.ok and s.t > t} >= backends


# -- the canary Service's probe, against a local HTTP server ----------------------------------------

# A child process, so that stopping it closes every connection it holds (the kept one too), as a
# canary pod going away does. Logs "<path> <client port>" per request.
HTTP_SERVER = """
import http.server, sys
port, log = int(sys.argv[1]), open(sys.argv[2], "a")
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        log.write(f"{self.path} {self.client_address[1]}\\n"); log.flush()
        body = b"canary-pod" if self.path.startswith("/hostname") else b"not found"
        self.send_response(200 if self.path.startswith("/hostname") else 404)
        self.send_header("Content-Length", str(len(body))); self.end_headers(); self.wfile.write(body)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
"""


class HttpChild:
    def __init__(self, port: int, log: Path) -> None:
        self.port, self.log = port, log
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen([sys.executable, "-c", HTTP_SERVER, str(self.port), str(self.log)],
                                      start_new_session=True)
        _wait_until(self._answers)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()



def _probe_through_a_3s_stop(config: Any, out: Path, backends: set[str], stop: Callable[[], None],
                             start: Callable[[], None]) -> tuple[float, float]:
    """Probe until every backend answered, stop the server for 3 s, probe until every backend answers
    again; returns when the server was stopped and when it was started again."""
    with probes.probing(config, out):
        _wait_until(lambda: _ok_after(out, backends, 0) and len(_samples(out)) >= 8)
        stopped = time.time()
        stop()
        time.sleep(3)
        start()
        resumed = time.time()
        _wait_until(lambda: _ok_after(out, backends, resumed))
    return stopped, resumed

def _one_outage_each(out: Path, backends: set[str], stopped: float, resumed: float) -> dict[str, Any]:
    """Each backend's disruption, with exactly one outage about as long as the server was down: its
    ends within a few samples of the stop and the restart."""
    got = checks.summarize(checks.read_samples(out))
    assert set(got) == backends
    slack = 3 * INTERVAL + TIMEOUT
    for backend in backends:
        d = got[backend]
        assert len(d.outages) == 1, checks.describe(d)
        (o,) = d.outages
        assert stopped - slack <= o.start <= stopped + slack, (backend, o, stopped)
        assert resumed - slack <= o.end <= resumed + slack, (backend, o, resumed)
    return got

def test_canary_probe_new_and_reused_connections_see_the_stop(tmp_path: Path) -> None:
    port, log = _free_port(), tmp_path / "requests.log"
    server = HttpChild(port, log)
    base = f"http://127.0.0.1:{port}/hostname"
    # The query string tells the two backends' requests apart in the server's log.
    config = probes.ProbeConfig(interval=INTERVAL, timeout=TIMEOUT, http=(
        probes.HttpBackend("canary:node1", base + "?new"),
        probes.HttpBackend("canary:node1:reused", base + "?reused", reuse=True)))
    out = tmp_path / "s.jsonl"
    both = {"canary:node1", "canary:node1:reused"}
    server.start()
    try:
        stopped, resumed = _probe_through_a_3s_stop(config, out, both, server.stop, server.start)
    finally:
        server.stop()
    got = _one_outage_each(out, both, stopped, resumed)
    for backend in both:
        (o,) = got[backend].outages
        # Refused; or, for a request in flight when the server was killed, cut off.
        assert any(e in (o.error or "") for e in ("ConnectError", "ReadError", "RemoteProtocolError")), o.error
        assert checks.check_budget(backend, ("canary", 1.0), got[backend], interval=INTERVAL).passed is False
    # A new connection per sample: one client port per request; the kept one: one per server life.
    requests = [line.split() for line in log.read_text().splitlines()]
    new = [p for path, p in requests if path.endswith("?new")]
    reused = [p for path, p in requests if path.endswith("?reused")]
    # (>=: a request the server logged just before it was killed got no answer: a failed sample.)
    assert len(set(new)) == len(new) >= got["canary:node1"].samples - got["canary:node1"].failed
    assert len(reused) >= got["canary:node1:reused"].samples - got["canary:node1:reused"].failed
    assert len(set(reused)) == 2, reused


def test_canary_probe_counts_a_non_2xx_answer_as_failed(tmp_path: Path) -> None:
    port, log = _free_port(), tmp_path / "requests.log"
    server = HttpChild(port, log)
    server.start()
    try:
        probe = probes.HttpProbe(probes.HttpBackend("canary:node1", f"http://127.0.0.1:{port}/nothing"), TIMEOUT)
        try:
            assert probe.sample() == "HTTP 404: not found"
        finally:
            probe.close()
    finally:
        server.stop()


# -- the cluster DNS probe, against a real dnsmasq over TCP -------------------------------------------

needs_dnsmasq = pytest.mark.skipif(
    not os.access(DNSMASQ, os.X_OK),
    reason=f"no {DNSMASQ}: Debian's dnsmasq-base, which `sudo ci/setup` installs with the lab's packages",
)


class Dnsmasq:
    """A dnsmasq child on 127.0.0.1:port answering DNS_NAME with an A record, NXDOMAIN for any other
    name in cluster.local (as the cluster's DNS would), over UDP and TCP. In the foreground with
    --keep-in-foreground, not --no-daemon: that debug mode answers TCP in its one process, so a kept
    connection starved new ones (seen here: new queries timing out for seconds while one was open)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.popen = subprocess.Popen(
            [DNSMASQ, "--keep-in-foreground", "--log-facility=-", "--conf-file=/dev/null", "--pid-file=", "--no-resolv", "--no-hosts",
             "--listen-address=127.0.0.1", "--bind-interfaces", f"--port={self.port}", "--local=/cluster.local/",
             f"--address=/{DNS_NAME}/10.233.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        _wait_until(self._answers)

    def _answers(self) -> bool:
        assert self.popen is not None
        if self.popen.poll() is not None:
            raise AssertionError(f"dnsmasq exited rc={self.popen.returncode}")
        probe = probes.DnsProbe(probes.DnsBackend("dns", "127.0.0.1", self.port, DNS_NAME), TIMEOUT)
        try:
            return probe.sample() is None
        finally:
            probe.close()

    def stop(self) -> None:
        # The whole group: dnsmasq serves each TCP connection from a child of its own.
        if self.popen is not None and self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


@pytest.fixture
def dnsmasq() -> Iterator[Dnsmasq]:
    server = Dnsmasq(_free_port())
    server.start()
    try:
        yield server
    finally:
        server.stop()


@needs_dnsmasq
def test_dns_probe_answers_and_keeps_its_connection(dnsmasq: Dnsmasq) -> None:
    probe = probes.DnsProbe(probes.DnsBackend("dns:reused", "127.0.0.1", dnsmasq.port, DNS_NAME, reuse=True), TIMEOUT)
    try:
        assert probe.sample() is None
        assert probe.sock is not None
        kept = probe.sock.getsockname()
        assert probe.sample() is None and probe.sample() is None
        assert probe.sock is not None and probe.sock.getsockname() == kept  # one connection, three queries
    finally:
        probe.close()


@needs_dnsmasq
def test_dns_probe_counts_nxdomain_as_failed(dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    wrong = "kubernetes.nosuch.svc.cluster.local"
    config = probes.ProbeConfig(interval=INTERVAL, timeout=TIMEOUT, dns=(
        probes.DnsBackend("dns", "127.0.0.1", dnsmasq.port, wrong),
        probes.DnsBackend("dns:reused", "127.0.0.1", dnsmasq.port, wrong, reuse=True)))
    out = tmp_path / "s.jsonl"
    said = f"NXDOMAIN for {wrong}"
    with probes.probing(config, out):
        _wait_until(lambda: {s.backend for s in _samples(out) if s.error == said} == {"dns", "dns:reused"})
    got = checks.read_samples(out)
    assert got and not [s for s in got if s.ok]  # an answer, but the wrong one: never an ok sample


@needs_dnsmasq
def test_dns_probe_new_and_reused_see_the_stop(dnsmasq: Dnsmasq, tmp_path: Path) -> None:
    config = probes.ProbeConfig(interval=INTERVAL, timeout=TIMEOUT, dns=(
        probes.DnsBackend("dns", "127.0.0.1", dnsmasq.port, DNS_NAME),
        probes.DnsBackend("dns:reused", "127.0.0.1", dnsmasq.port, DNS_NAME, reuse=True)))
    out = tmp_path / "s.jsonl"
    both = {"dns", "dns:reused"}
    stopped, resumed = _probe_through_a_3s_stop(config, out, both, dnsmasq.stop, dnsmasq.start)
    got = _one_outage_each(out, both, stopped, resumed)
    for backend in both:
        (o,) = got[backend].outages
        # Refused, or reset for a query in flight when the server was killed.
        assert any(e in (o.error or "") for e in ("ConnectionRefusedError", "ConnectionResetError")), o.error
    # Judged by the dns kind's item: both backends, each over its budget.
    verdict, props = checks.judge_kind("dns", {"dns": 1.0}, ["dns", "dns:reused"], got, interval=INTERVAL)
    assert not verdict.passed and "dns:reused" in verdict.details
    assert ("disruption:dns:reused:outages", "1") in props


# -- the manifests plant.yml applies ---------------------------------------------------------------

MODELS = {"Namespace": "V1Namespace", "ServiceAccount": "V1ServiceAccount", "ConfigMap": "V1ConfigMap",
          "Secret": "V1Secret", "Deployment": "V1Deployment", "Service": "V1Service",
          "PodDisruptionBudget": "V1PodDisruptionBudget", "DaemonSet": "V1DaemonSet"}


def _templates() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(PLAYBOOKS_DIR / "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["to_json"] = json.dumps  # Ansible's filter, as kube-probes.json.j2 uses it
    return env


def _load(text: str) -> list[Any]:
    """Every document through the kubernetes client's model for its kind; a field the model does not
    know (misspelt, misplaced) is dropped by the client, so the round trip must give the document back."""
    from kubernetes.client import ApiClient

    client = ApiClient()
    out = []
    for doc in yaml.safe_load_all(text):
        if doc is None:  # an empty document (kubectl skips it too)
            continue
        assert doc["kind"] in MODELS, doc["kind"]
        obj = client.deserialize(json.dumps(doc), MODELS[doc["kind"]], "application/json")
        assert client.sanitize_for_serialization(obj) == doc, f"{doc['kind']} does not round-trip"
        out.append(obj)
    return out


def test_canary_manifest_serves_http_behind_a_nodeport() -> None:
    canaries = ["harness-canary-a", "harness-canary-b"]
    objs = _load(_templates().get_template("canary.yml.j2").render(
        harness_ns="harness-canary-a", harness_canaries=canaries,
        harness_canary_image="registry.k8s.io/e2e-test-images/agnhost:2.53"))
    by_kind = {type(o).__name__: o for o in objs}
    assert set(by_kind) == set(MODELS.values()) and len(objs) == len(MODELS)
    # The node canary (pods a drain leaves in place) only in the first namespace, apart from the Service.
    ds = by_kind["V1DaemonSet"]
    assert ds.spec.template.spec.service_account_name == "canary"
    assert ds.spec.template.metadata.labels != by_kind["V1Deployment"].spec.template.metadata.labels
    second = _load(_templates().get_template("canary.yml.j2").render(
        harness_ns="harness-canary-b", harness_canaries=canaries,
        harness_canary_image="registry.k8s.io/e2e-test-images/agnhost:2.53"))
    assert "V1DaemonSet" not in {type(o).__name__ for o in second}
    dep, svc = by_kind["V1Deployment"], by_kind["V1Service"]
    (c,) = dep.spec.template.spec.containers
    assert c.args == ["netexec", "--http-port=8080"] and [p.container_port for p in c.ports] == [8080]
    assert c.readiness_probe.http_get.path == "/hostname" and c.readiness_probe.http_get.port == 8080
    assert svc.metadata.name == "canary" and svc.metadata.namespace == "harness-canary-a"
    assert svc.spec.type == "NodePort" and svc.spec.selector == dep.spec.template.metadata.labels
    (port,) = svc.spec.ports
    assert port.port == 8080 and port.target_port == 8080 and port.protocol == "TCP"
    assert all(o.metadata.namespace in (None, "harness-canary-a") for o in objs)


def test_dns_service_selects_the_coredns_pods() -> None:
    (svc,) = _load(_templates().get_template("harness-dns.yml.j2").render())
    assert (svc.metadata.namespace, svc.metadata.name, svc.spec.type) == ("kube-system", "harness-dns", "NodePort")
    assert svc.spec.selector == {"k8s-app": "kube-dns"}  # Kubespray's CoreDNS label
    assert [(p.port, p.target_port, p.protocol) for p in svc.spec.ports] == [(53, 53, "TCP")]


def test_the_play_applies_the_dns_service_and_records_the_nodeports() -> None:
    play = yaml.safe_load((PLAYBOOKS_DIR / "plant.yml").read_text())[0]
    assert play["hosts"] == "kube_control_plane[0]"
    tasks = {t["name"]: t for t in play["tasks"][2]["block"]}
    assert "templates/harness-dns.yml.j2" in tasks["Apply the NodePort Service to the cluster DNS"]["ansible.builtin.command"]["stdin"]
    record = tasks["Record what the disruption probes reach"]
    assert record["ansible.builtin.template"]["src"] == "templates/kube-probes.json.j2"
    assert record["ansible.builtin.template"]["dest"].endswith("/kube-probes.json")
    # The registers the record template reads are the ones the play sets.
    assert tasks["Read the canary Services' nodePorts"]["register"] == "harness_canary_ports"
    assert tasks["Read the DNS Service's nodePort"]["register"] == "harness_dns_port"


# -- the pipeline's backends, from what the plant play records ------------------------------------------


def _kube_probes(canary: list[tuple[str, int, str, str]], dns: tuple[int, str, str]) -> str:
    """kube-probes.json as plant.yml writes it: its template, given what the play registers (kubectl's
    rc, stdout and stderr per `get service -o jsonpath={.spec.ports[0].nodePort}`)."""
    return _templates().get_template("kube-probes.json.j2").render(
        harness_canary_ports={"results": [{"harness_ns": ns, "rc": rc, "stdout": out, "stderr": err}
                                          for ns, rc, out, err in canary]},
        harness_dns_port={"rc": dns[0], "stdout": dns[1], "stderr": dns[2]},
        harness_dns_domain="cluster.local")


class FixtureCluster:
    """Fixture standing in for a provider's cluster (nodes and addresses only): no node answers, so
    the etcd credentials cannot be fetched and those backends are missing, as the pipeline says."""

    provider = "fixture"
    name = "t"

    def __init__(self) -> None:
        from harness.cluster.base import Node

        self.nodes = [Node("node1", ("control-plane", "etcd"), "10.0.0.11"),
                      Node("node2", ("worker",), "10.0.0.12"), Node("node3", ("etcd",), "10.0.0.13")]

    def with_role(self, role: str) -> list[Any]:
        return [n for n in self.nodes if role in n.roles]

    def ssh_argv(self, node: str) -> list[str]:
        return ["false"]

    def run(self, node: str, command: str, *, check: bool = True, timeout: float | None = 300) -> Any:
        from harness import proc

        return proc.run(["sh", "-c", "echo 'node unreachable (fixture)' >&2; exit 255"], check=False)


def _run_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kube_probes: str | None) -> Any:
    from harness.installer.base import Stage
    from harness.record import ScenarioRun
    from harness.scenario import load_catalogue
    from tests.conftest import REPO

    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    scenario = next(s for s in load_catalogue([REPO / "scenarios" / "kubespray.yaml"])
                    if "kubernetes" in s.requirements())
    run = ScenarioRun(scenario, tmp_path / "artifacts" / scenario.id)
    out = run.dir / "01-plant"
    run.stages = [Stage("01-plant", "plant", "plant.yml", "harness", extravars={"harness_out": str(out)})]
    run.cluster = FixtureCluster()  # type: ignore[assignment]
    if kube_probes is not None:
        out.mkdir(parents=True)
        (out / "kube-probes.json").write_text(kube_probes)
    return run


def test_probe_config_reaches_canary_and_dns_through_the_recorded_nodeports(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline import probe_target
    from harness.probes.setup import probe_config

    run = _run_with(tmp_path, monkeypatch, _kube_probes(
        [("harness-canary-a", 0, "31234", ""), ("harness-canary-b", 0, "31999", "")], (0, "30053\n", "")))
    config, missing = probe_config(probe_target(run), INTERVAL)
    http = {h.backend: h for h in config.http}
    for node, address in (("node1", "10.0.0.11"), ("node2", "10.0.0.12")):
        new, reused = http[f"canary:{node}"], http[f"canary:{node}:reused"]
        assert new.url == reused.url == f"http://{address}:31234/hostname"  # the first canary Service
        assert (new.reuse, reused.reuse, new.ca) == (False, True, None)
    assert "canary:node3" not in http  # an etcd-only node runs no kube-proxy
    dns = {d.backend: d for d in config.dns}
    assert set(dns) == {"dns", "dns:reused"}
    assert {(d.server, d.port, d.name, d.reuse) for d in dns.values()} == {
        ("10.0.0.11", 30053, DNS_NAME, False), ("10.0.0.11", 30053, DNS_NAME, True)}
    assert not {b for b in missing if b.startswith(("canary", "dns"))}
    # Every backend the checks expect is either probed or missing with a reason.
    wanted = checks.expected_backends({n.name: n.roles for n in run.cluster.nodes}, True)
    assert "dns:reused" in wanted and set(config.backends) | set(missing) == set(wanted)
    assert not set(config.backends) & set(missing)
    # The config survives the trip to the prober process.
    assert probes.ProbeConfig.from_json(json.loads(json.dumps(config.to_json()))) == config


def test_unread_nodeports_make_the_items_fail_saying_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.pipeline import probe_target
    from harness.probes.setup import probe_config

    notfound = 'Error from server (NotFound): services "harness-dns" not found'
    run = _run_with(tmp_path, monkeypatch, _kube_probes(
        [("harness-canary-a", 0, "", ""), ("harness-canary-b", 1, "", "connection refused")], (1, "", notfound)))
    config, missing = probe_config(probe_target(run), INTERVAL)
    assert not [b for b in config.backends if b.startswith(("canary", "dns"))] and not config.dns
    assert "harness-canary-a: rc=0: the Service has no nodePort" in missing["canary:node2:reused"]
    assert "harness-canary-b: rc=1: connection refused" in missing["canary:node1"]
    assert notfound in missing["dns"] and "kube-probes.json" in missing["dns:reused"]
    wanted = checks.expected_backends({n.name: n.roles for n in run.cluster.nodes}, True)
    for kind in ("canary", "dns"):
        verdict, _ = checks.judge_kind(kind, {kind: 30}, wanted, {}, interval=INTERVAL, missing=missing)
        assert not verdict.passed and verdict.applicable, verdict
        assert "no samples" in verdict.details or "no samples" in verdict.summary
        assert ("connection refused" if kind == "canary" else notfound) in verdict.details + verdict.summary


@pytest.mark.parametrize(("text", "said"), [
    (None, "kube-probes.json could not be read (FileNotFoundError)"),
    ("{", "kube-probes.json is not JSON"),
    ('{"canary": {}, "dns": {}}', "canary: expected a list"),
    (json.dumps({"canary": [], "canary_path": "/hostname", "dns_name": DNS_NAME,
                 "dns": {"namespace": "kube-system", "service": "harness-dns", "node_port": "30053", "error": ""}}),
     "dns.node_port: expected a port number or null, got '30053'"),
])
def test_a_bad_record_names_the_file_and_field(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               text: str | None, said: str) -> None:
    from harness.pipeline import probe_target
    from harness.probes.setup import probe_config

    run = _run_with(tmp_path, monkeypatch, text)
    _, missing = probe_config(probe_target(run), INTERVAL)
    for backend in ("canary:node1", "canary:node2:reused", "dns", "dns:reused"):
        assert said in missing[backend] and str(run.dir / "01-plant") in missing[backend], missing[backend]


def test_budget_keys_for_the_new_backends() -> None:
    nodes = {"node1": ("control-plane", "etcd"), "node2": ("worker",)}
    for key in ("dns", "dns:reused", "canary", "canary:node2", "canary:node2:reused"):
        assert budgets.budget_key_problem(key, nodes) is None, key
    assert "no node 'node9'" in (budgets.budget_key_problem("canary:node9", nodes) or "")
    assert checks.budget_for("dns:reused", {"dns": 10}) == ("dns", 10.0)
    assert budgets.kind_of("dns:reused") == "dns" and budgets.kind_of("canary:node2:reused") == "canary"



# -- the Kubernetes play itself, run by Ansible against a fixture kubectl ----------------------------------

# Fixture: stands in for kubectl and an apiserver (none can run here). It answers what the play asks,
# keeps every manifest applied, and has no nodePort for harness-canary-b's Service.
FIXTURE_KUBECTL = """#!/bin/sh
echo "$*" >> "$KUBECTL_LOG"
case "$*" in
  "get --raw /readyz") echo ok ;;
  "apply -f -") { cat; echo "---"; } >> "$KUBECTL_APPLIED"; echo "service/x created" ;;
  *"rollout status"*) echo "deployment \\"canary\\" successfully rolled out" ;;
  *"create token"*) echo fixture-token ;;
  "-n harness-canary-a get service canary "*) printf 31234 ;;
  "-n kube-system get service harness-dns "*) printf 30053 ;;
  *" get service "*) echo 'Error from server (NotFound): services "canary" not found' >&2; exit 1 ;;
  *) echo "fixture kubectl: unexpected: $*" >&2; exit 2 ;;
esac
"""


def test_the_kubernetes_play_records_what_the_pipeline_probes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """plant.yml's Kubernetes play (only it: the others touch etcd and containerd) run by the venv's
    Ansible on localhost: the manifests it applies load through the client's models, and the
    kube-probes.json it writes gives the pipeline its canary and DNS backends."""
    from harness.pipeline import probe_target
    from harness.probes.setup import probe_config

    play = yaml.safe_load((PLAYBOOKS_DIR / "plant.yml").read_text())[0]
    assert play["name"] == "Plant Kubernetes canaries"
    (tmp_path / "plant-k8s.yml").write_text(yaml.safe_dump([play], sort_keys=False))
    (tmp_path / "templates").symlink_to(PLAYBOOKS_DIR / "templates")
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "kubectl").write_text(FIXTURE_KUBECTL)
    (bindir / "kubectl").chmod(0o755)
    (tmp_path / "hosts.yml").write_text(yaml.safe_dump({"all": {"children": {"kube_control_plane": {"hosts": {
        "node1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}}}))
    out, applied = tmp_path / "out", tmp_path / "applied.yaml"
    extra = {"harness_out": str(out), "harness_secret_dir": str(tmp_path / "secrets"), "harness_become": False,
             "harness_bin_path": f"{bindir}:{os.environ['PATH']}"}
    env = {**os.environ, "KUBECTL_LOG": str(tmp_path / "kubectl.log"), "KUBECTL_APPLIED": str(applied),
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_NOCOLOR": "1"}
    r = subprocess.run([str(Path(sys.executable).parent / "ansible-playbook"), "-i", "hosts.yml", "plant-k8s.yml",
                        "-e", json.dumps(extra)], cwd=tmp_path, env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, check=False, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
    objs = _load(applied.read_text())
    kinds = [(type(o).__name__, o.metadata.namespace, o.metadata.name) for o in objs]
    assert ("V1Service", "kube-system", "harness-dns") in kinds
    assert {("V1Service", ns, "canary") for ns in ("harness-canary-a", "harness-canary-b")} <= set(kinds)
    record = (out / "kube-probes.json").read_text()
    doc = json.loads(record)
    assert [c["node_port"] for c in doc["canary"]] == [31234, None]
    assert 'services "canary" not found' in doc["canary"][1]["error"] and doc["dns"]["node_port"] == 30053
    # The same file, read by the pipeline: the first canary Service with a nodePort, and the DNS one.
    run = _run_with(tmp_path / "pipeline", monkeypatch, record)
    config, missing = probe_config(probe_target(run), INTERVAL)
    assert {h.url for h in config.http if h.backend.startswith("canary:")} == {
        "http://10.0.0.11:31234/hostname", "http://10.0.0.12:31234/hostname"}
    assert {(d.backend, d.port, d.name) for d in config.dns} == {("dns", 30053, DNS_NAME), ("dns:reused", 30053, DNS_NAME)}
    assert not [b for b in missing if b.startswith(("canary", "dns"))]


def test_dns_kept_connection_closed_while_idle_is_replaced_not_failed() -> None:
    """A server that answers one query per connection and closes it (RFC 7766 allows closing idle
    connections): the kept connection is found closed before the next query and replaced, so every
    sample is ok and the server sees one connection per sample."""
    import threading

    import dns.message
    import dns.query
    import dns.rrset

    listener = socket.create_server(("127.0.0.1", 0))
    connections: list[int] = []

    def serve() -> None:
        while True:
            try:
                conn, addr = listener.accept()
            except OSError:
                return
            with conn:
                connections.append(addr[1])
                q, _ = dns.query.receive_tcp(conn, time.time() + 5)
                r = dns.message.make_response(q)
                r.answer.append(dns.rrset.from_text(DNS_NAME + ".", 30, "IN", "A", "10.233.0.1"))
                dns.query.send_tcp(conn, r, time.time() + 5)

    threading.Thread(target=serve, daemon=True).start()
    probe = probes.DnsProbe(probes.DnsBackend("dns:reused", "127.0.0.1", listener.getsockname()[1], DNS_NAME,
                                              reuse=True), TIMEOUT)
    try:
        for _ in range(3):
            assert probe.sample() is None
            _wait_until(lambda: probe.sock is not None and bool(select_readable(probe.sock)))  # the server closed it
    finally:
        probe.close()
        listener.close()
    assert len(set(connections)) == 3


def select_readable(sock: socket.socket) -> list[socket.socket]:
    import select

    return select.select([sock], [], [], 0)[0]
