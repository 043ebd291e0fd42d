"""Disruption probes and their budget checks.

The prober is tested against three real etcd 3.4 members on 127.0.0.1 (Debian's etcd-server,
installed by ci/setup), over TLS with certificates made here: one member is stopped (SIGSTOP) for a
few seconds and its backend must report one outage matching the recorded stop, while the client
with every endpoint reports none. The containerd probe's node loop runs locally against a unix
socket that is closed and reopened; the HTTP probe against a local server.
"""

from __future__ import annotations

import contextlib
import datetime
import http.server
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from harness.checks import disruption as checks
from harness.checks.disruption import Sample
from harness.probes import disruption as probes
from harness.scenario.model import Scenario

ETCD = shutil.which("etcd")
INTERVAL = 0.25


# -- pure functions ------------------------------------------------------------------------------


def _s(t: float, ok: bool, backend: str = "etcd:node1", error: str | None = None) -> Sample:
    return Sample(t, backend, ok, 1.0, None if ok else (error or "refused"))


def test_outage_runs_from_first_failure_to_next_ok_sample() -> None:
    samples = [_s(0, True), _s(1, False, error="first"), _s(2, False, error="second"), _s(3, True),
               _s(4, True), _s(5, False), _s(6, True)]
    got = checks.outages(reversed(samples))  # order of arrival does not matter
    assert [(o.start, o.end, o.failed_samples, o.error) for o in got] == [(1, 3, 2, "first"), (5, 6, 1, "refused")]
    d = checks.summarize(samples)["etcd:node1"]
    assert d.seconds == 3 and d.failed == 3 and d.samples == 7


def test_outage_still_open_at_the_end_is_counted_to_the_last_sample() -> None:
    (o,) = checks.outages([_s(0, True), _s(1, False), _s(2.5, False)])
    assert o.open and o.seconds == 1.5


def test_budget_key_wins_over_kind() -> None:
    budgets = {"etcd-member": 3, "etcd:node2": 5, "apiserver": 10}
    assert checks.budget_for("etcd:node1", budgets) == ("etcd-member", 3)
    assert checks.budget_for("etcd:node2", budgets) == ("etcd:node2", 5)
    assert checks.budget_for("etcd:all", budgets) is None
    assert checks.budget_for("apiserver:node1:reused", budgets) == ("apiserver", 10)
    assert checks.budget_for("apiserver:node1:reused", {"apiserver:node1": 2}) == ("apiserver:node1", 2)


def test_budget_over_fails_with_the_interval_and_within_passes() -> None:
    d = checks.summarize([_s(100, True), _s(101, False, error="ReadTimeout"), _s(103.5, True)])["etcd:node1"]
    bad = checks.check_budget("etcd:node1", ("etcd-member", 2), d, interval=1.0, origin=100)
    assert not bad.passed
    assert "2.50s unavailable" in bad.summary and "budget 2s (etcd-member)" in bad.summary
    assert "+1.00s" in bad.details and "+3.50s" in bad.details and "ReadTimeout" in bad.details
    assert checks.check_budget("etcd:node1", ("etcd-member", 3), d).passed
    none = checks.check_budget("etcd:all", ("etcd-all", 0), None, why_none="no certificates")
    assert not none.passed and "no certificates" in none.summary


def test_unknown_budget_keys_are_refused_at_load() -> None:
    base = {
        "id": "demo", "description": "d", "installer": "lab",
        "topology": {"nodes": [{"name": "node1", "roles": ["etcd", "worker"]}, {"name": "node2", "roles": ["worker"]}]},
        "baseline": {"versions": {"etcd_version": "3.4.23"}}, "target": {"versions": {"etcd_version": "3.5.16"}},
        "path": "graceful",
    }
    ok = Scenario.model_validate({**base, "budgets": {"etcd-member": 3, "etcd:all": 0, "containerd:node2": 4}})
    assert ok.budgets["etcd:all"] == 0
    for key, says in (("etcd-members", "unknown budget key 'etcd-members'"), ("etcd:node2", "no etcd node 'node2'"),
                      ("containerd:node9", "no node 'node9'"), ("apiserver:node1", "no control-plane node")):
        with pytest.raises(ValueError, match=says):
            Scenario.model_validate({**base, "budgets": {key: 1}})


# -- a real etcd cluster ---------------------------------------------------------------------------


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _certs(d: Path) -> probes.TLSFiles:
    """A CA and one certificate for 127.0.0.1-3 that serves and authenticates (members and client)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "member")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([*(x509.IPAddress(ipaddress.ip_address(f"127.0.0.{i}"))
                                                          for i in (1, 2, 3)), x509.DNSName("localhost")]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (d / "ca.pem").write_bytes(ca.public_bytes(pem))
    (d / "member.pem").write_bytes(cert.public_bytes(pem))
    (d / "member-key.pem").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
    os.chmod(d / "member-key.pem", 0o600)
    return probes.TLSFiles(str(d / "ca.pem"), str(d / "member.pem"), str(d / "member-key.pem"))


@dataclass
class Member:
    name: str
    url: str
    popen: subprocess.Popen[bytes]


@dataclass
class EtcdCluster:
    members: list[Member]
    tls: probes.TLSFiles

    def client(self) -> httpx.Client:
        import ssl

        ctx = ssl.create_default_context(cafile=self.tls.ca)
        ctx.load_cert_chain(self.tls.cert, self.tls.key)
        return httpx.Client(verify=ctx, timeout=5)

    def leader(self) -> str:
        """The leader's member name, from each member's own status."""
        with self.client() as c:
            ids = {m.name: c.post(f"{m.url}/v3/maintenance/status", json={}).json() for m in self.members}
        for name, st in ids.items():
            if st["header"]["member_id"] == st["leader"]:
                return name
        raise AssertionError(f"no leader among {ids}")


@pytest.fixture
def etcd_cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    """Three members on 127.0.0.1, free ports."""
    ports = _free_ports(6)
    yield from _etcd(tmp_path, [(f"m{i + 1}", "127.0.0.1", ports[i], ports[3 + i]) for i in range(3)])


def _etcd(tmp_path: Path, spec: list[tuple[str, str, int, int]]) -> Iterator[EtcdCluster]:
    """Members (name, address, client port, peer port), TLS for clients; all stopped afterwards."""
    if ETCD is None:
        pytest.skip("no etcd binary: install Debian's etcd-server (ci/setup does)")
    tls = _certs(tmp_path)
    peers = ",".join(f"{n}=http://{a}:{pp}" for n, a, _, pp in spec)
    members: list[Member] = []
    try:
        for n, addr, cp, pp in spec:
            url = f"https://{addr}:{cp}"
            argv = [ETCD, "--name", n, "--data-dir", str(tmp_path / n), "--listen-client-urls", url,
                    "--advertise-client-urls", url, "--listen-peer-urls", f"http://{addr}:{pp}",
                    "--initial-advertise-peer-urls", f"http://{addr}:{pp}",
                    "--initial-cluster", peers, "--initial-cluster-state", "new",
                    "--cert-file", tls.cert, "--key-file", tls.key, "--trusted-ca-file", tls.ca,
                    "--client-cert-auth"]
            log = (tmp_path / f"{n}.log").open("wb")
            members.append(Member(n, url, subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)))
        cluster = EtcdCluster(members, tls)
        with cluster.client() as c:
            for m in members:
                for _ in range(200):
                    try:
                        if c.get(f"{m.url}/health").json().get("health") == "true":
                            break
                    except (httpx.HTTPError, ValueError):
                        pass
                    time.sleep(0.1)
                else:
                    raise AssertionError(f"etcd {m.name} never healthy: {(tmp_path / f'{m.name}.log').read_text()[-2000:]}")
        yield cluster
    finally:
        for m in members:
            with contextlib.suppress(ProcessLookupError):
                m.popen.send_signal(signal.SIGCONT)
            m.popen.kill()
            m.popen.wait()


def test_stopped_member_is_one_outage_and_all_endpoints_none(etcd_cluster: EtcdCluster, tmp_path: Path) -> None:
    leader = etcd_cluster.leader()
    # A follower: stopping the leader costs every client an election; the reference is a
    # rolling restart, where the leader hands over first.
    victim = next(m for m in etcd_cluster.members if m.name != leader)
    # The victim first in the all-endpoints list: the client is on it when it stops and must fail over.
    ordered = [victim] + [m for m in etcd_cluster.members if m is not victim]
    config = probes.ProbeConfig(
        interval=INTERVAL, timeout=INTERVAL,  # a stopped member's request fails within the interval
        etcd=(*(probes.EtcdBackend(f"etcd:{m.name}", (m.url,), etcd_cluster.tls) for m in etcd_cluster.members),
              probes.EtcdBackend("etcd:all", tuple(m.url for m in ordered), etcd_cluster.tls)),
    )
    out = tmp_path / "disruption.jsonl"
    prober = probes.Prober(config, out)
    prober.start()
    try:
        _wait_for_samples(out, 8)
        stopped = time.time()
        victim.popen.send_signal(signal.SIGSTOP)
        time.sleep(4)
        victim.popen.send_signal(signal.SIGCONT)
        resumed = time.time()
        _wait_until(lambda: any(s.backend == f"etcd:{victim.name}" and s.ok and s.t > resumed
                                for s in checks.read_samples(out)))
        time.sleep(1)
    finally:
        prober.stop()
    assert prober.popen is not None and prober.popen.returncode == 0, prober.stderr
    got = checks.summarize(checks.read_samples(out))
    assert set(got) == {"etcd:m1", "etcd:m2", "etcd:m3", "etcd:all"}
    d = got[f"etcd:{victim.name}"]
    assert len(d.outages) == 1, checks.describe(d)
    (o,) = d.outages
    # Bounded by the sampling: the outage's ends lie within a sample (interval + timeout) of the
    # recorded stop and resume, plus one interval for the scheduling of a loaded machine.
    slack = 3 * INTERVAL
    assert stopped - slack <= o.start <= stopped + slack, (o, stopped)
    assert resumed - slack <= o.end <= resumed + slack, (o, resumed)
    assert not o.open and "Timeout" in (o.error or "")
    assert got["etcd:all"].seconds == 0 and got["etcd:all"].failed == 0, checks.describe(got["etcd:all"])
    assert got["etcd:all"].samples >= (resumed - stopped) / INTERVAL  # it kept sampling through the stop
    for m in etcd_cluster.members:
        if m is not victim:
            assert got[f"etcd:{m.name}"].seconds == 0, checks.describe(got[f"etcd:{m.name}"])
    # The budget item of that member fails, showing the interval; the all-endpoints one passes at 0 s.
    budgets = {"etcd-member": 1.0, "etcd:all": 0}
    origin = min(x.first for x in got.values() if x.first is not None)
    verdict = checks.check_budget(d.backend, checks.budget_for(d.backend, budgets) or ("?", 0), d,
                                  interval=INTERVAL, origin=origin)
    assert not verdict.passed
    assert f"+{o.start - origin:.2f}s" in verdict.details and "budget 1s (etcd-member)" in verdict.summary
    assert checks.check_budget("etcd:all", ("etcd:all", 0), got["etcd:all"]).passed
    # Its CPU was measured (the bench reads the same figure).
    assert prober.cpu_seconds is not None and prober.cpu_seconds > 0


def _wait_for_samples(path: Path, n: int) -> None:
    _wait_until(lambda: path.exists() and len(checks.read_samples(path)) >= n)


def _wait_until(cond: object, limit: int = 300) -> None:
    assert callable(cond)
    for _ in range(limit):
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError("condition never met")


def test_unreadable_certificate_is_one_failed_sample_saying_so(tmp_path: Path) -> None:
    tls = probes.TLSFiles(str(tmp_path / "ca.pem"), str(tmp_path / "c.pem"), str(tmp_path / "k.pem"))
    out = tmp_path / "s.jsonl"
    port = _free_ports(1)[0]
    with probes.probing(probes.ProbeConfig(interval=INTERVAL, etcd=(
            probes.EtcdBackend("etcd:node1", (f"https://127.0.0.1:{port}",), tls),
            probes.EtcdBackend("etcd:node2", (f"http://127.0.0.1:{port}",)))), out):
        _wait_until(lambda: out.exists() and {s.backend for s in checks.read_samples(out)} == {"etcd:node1", "etcd:node2"})
    got = checks.read_samples(out)
    (bad,) = [s for s in got if s.backend == "etcd:node1"]
    assert not bad.ok and (bad.error or "").startswith("cannot set up the probe: FileNotFoundError")
    refused = [s for s in got if s.backend == "etcd:node2"]
    assert refused and all(not s.ok and "ConnectError" in (s.error or "") for s in refused)


# -- the containerd socket loop, run locally -------------------------------------------------------


def test_socket_loop_sees_the_socket_go_and_come_back(tmp_path: Path) -> None:
    path = str(tmp_path / "containerd.sock")
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    server.listen(64)
    out = tmp_path / "s.jsonl"
    config = probes.ProbeConfig(interval=INTERVAL, sockets=(
        probes.SocketBackend("containerd:node1", ("sh", "-c"), path, sudo=False),))
    backend = "containerd:node1"
    with probes.probing(config, out):
        _wait_until(lambda: out.exists() and sum(s.ok for s in checks.read_samples(out)) >= 3)
        server.close()
        os.unlink(path)
        gone = time.time()
        _wait_until(lambda: sum(not s.ok for s in checks.read_samples(out)) >= 4)
        server = socket.socket(socket.AF_UNIX)
        server.bind(path)
        server.listen(64)
        back = time.time()
        _wait_until(lambda: any(s.ok and s.t > back for s in checks.read_samples(out)))
    server.close()
    (o,) = checks.summarize(checks.read_samples(out))[backend].outages
    assert gone - 3 * INTERVAL <= o.start <= o.end and back - 3 * INTERVAL <= o.end <= back + 3 * INTERVAL
    assert "FileNotFoundError" in (o.error or "")


# -- HTTP (readyz-like) probes, against a local server -------------------------------------------------


def test_http_probe_new_and_reused_connections(tmp_path: Path) -> None:
    state = {"code": 200}
    conns: set[tuple[str, int]] = set()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            conns.add(self.client_address)
            body = b"ok" if state["code"] == 200 else b"not ready"
            self.send_response(state["code"])
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/readyz"
    out = tmp_path / "s.jsonl"
    config = probes.ProbeConfig(interval=INTERVAL, http=(probes.HttpBackend("apiserver:node1", url),
                                                        probes.HttpBackend("apiserver:node1:reused", url, reuse=True)))
    try:
        with probes.probing(config, out):
            _wait_until(lambda: out.exists() and len(checks.read_samples(out)) >= 8)
            state["code"] = 503
            _wait_until(lambda: sum(not s.ok for s in checks.read_samples(out)) >= 4)
            state["code"] = 200
            back = time.time()
            _wait_until(lambda: {s.backend for s in checks.read_samples(out) if s.ok and s.t > back} ==
                        {"apiserver:node1", "apiserver:node1:reused"})
    finally:
        httpd.shutdown()
        httpd.server_close()
    got = checks.summarize(checks.read_samples(out))
    new, reused = got["apiserver:node1"], got["apiserver:node1:reused"]
    assert len(new.outages) == 1 and len(reused.outages) == 1
    assert "HTTP 503" in (new.outages[0].error or "")
    # A new connection per sample shows as one client port per sample; the reused one as a single port.
    assert len(conns) >= new.samples
    assert json.loads(out.read_text().splitlines()[0]).keys() == {"t", "backend", "ok", "latency_ms", "error"}


# -- the pipeline's probing, against members on 127.0.0.1-3 -------------------------------------------


class LoopbackCluster:
    """Fixture standing in for a provider's cluster: nodes are 127.0.0.1-3 on this machine, `run` is a
    local shell in which Kubespray's certificate dir is a temporary one (no root-owned /etc/ssl here),
    and a node's shell is `sh -c` (no ssh)."""

    provider = "loopback"
    name = "t"
    netns = None  # on this machine: no namespace to enter

    def __init__(self, cert_dir: Path) -> None:
        from harness.cluster.base import Node

        self.cert_dir = cert_dir
        self.nodes = [Node(f"node{i}", ("etcd", "worker"), f"127.0.0.{i}") for i in (1, 2, 3)]

    def with_role(self, role: str) -> list[object]:
        return [n for n in self.nodes if role in n.roles]

    def ssh_argv(self, node: str) -> list[str]:
        return ["sh", "-c"]

    def run(self, node: str, command: str, *, check: bool = True, timeout: float | None = 300) -> object:
        from harness import proc

        command = command.replace("/etc/ssl/etcd/ssl", str(self.cert_dir)).replace("sudo ", "")
        return proc.run(["sh", "-c", command], check=check, timeout=timeout)


def _port_free_on_every_address() -> int:
    """A port free on 127.0.0.1, .2 and .3 at once (the pipeline gives every member the same port)."""
    for _ in range(50):
        port = _free_ports(1)[0]
        socks = [socket.socket() for _ in range(3)]
        try:
            for i, s in enumerate(socks, 1):
                s.bind((f"127.0.0.{i}", port))
            return port
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise AssertionError("no port free on 127.0.0.1-3")


@pytest.fixture
def loopback_etcd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[EtcdCluster]:
    """Members node1-3 on 127.0.0.1-3, one client port for all as on real nodes (a free one, not 2379:
    other tests run etcd there), which the pipeline's etcd layout is pointed at."""
    import functools

    from harness.probes import hosts

    client, peer = _port_free_on_every_address(), _port_free_on_every_address()
    monkeypatch.setattr(hosts, "EtcdTLS", functools.partial(hosts.EtcdTLS, endpoint=f"https://{{address}}:{client}"))
    (tmp_path / "etcd").mkdir()
    yield from _etcd(tmp_path / "etcd", [(f"node{i}", f"127.0.0.{i}", client, peer) for i in (1, 2, 3)])


def test_pipeline_probes_around_a_stage(loopback_etcd: EtcdCluster, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """stages.probing as the upgrade stage uses it: credentials fetched off the 'nodes' into the state
    dir (0600), samples in the scenario's artifacts, and the budget items judging them."""
    import io

    from rich.console import Console

    from harness.pipeline import Session, stages
    from harness.record import ScenarioRun
    from harness.scenario import load_catalogue
    from tests.conftest import REPO

    certs = tmp_path / "certs"
    certs.mkdir()
    for i in (1, 2, 3):
        shutil.copy(loopback_etcd.tls.ca, certs / "ca.pem")
        shutil.copy(loopback_etcd.tls.cert, certs / f"admin-node{i}.pem")
        shutil.copy(loopback_etcd.tls.key, certs / f"admin-node{i}-key.pem")
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("HARNESS_PROBE_INTERVAL", str(INTERVAL))
    monkeypatch.setenv("HARNESS_PROBE_TIMEOUT", str(INTERVAL))
    (scenario,) = [s for s in load_catalogue([REPO / "scenarios" / "lab.yaml"]) if s.id == "lab-graceful"]
    scenario = scenario.model_copy(update={"budgets": {"etcd-member": 1.0, "etcd-all": 0.0, "containerd": 0.0}})
    run = ScenarioRun(scenario, tmp_path / "artifacts" / scenario.id)
    run.cluster = LoopbackCluster(certs)  # type: ignore[assignment]
    session = Session.__new__(Session)
    session.console = Console(file=io.StringIO())
    victim = loopback_etcd.members[1] if loopback_etcd.leader() != "node2" else loopback_etcd.members[2]
    with stages.probing(session, run):
        # Credentials: in the state dir, owner-only, while the probing lasts; none in the artifacts.
        kept = sorted((tmp_path / "state" / "disruption").rglob("*.pem"))
        assert len(kept) == 9 and all(p.stat().st_mode & 0o077 == 0 for p in kept)
        out = run.dir / "disruption.jsonl"
        _wait_until(lambda: {s.backend for s in checks.read_samples(out) if s.ok} >= {"etcd:node1", "etcd:all"})
        victim.popen.send_signal(signal.SIGSTOP)
        time.sleep(2.5)
        victim.popen.send_signal(signal.SIGCONT)
        resumed = time.time()
        _wait_until(lambda: any(s.backend == f"etcd:{victim.name}" and s.ok and s.t > resumed
                                for s in checks.read_samples(out)))
    record = run.disruption
    assert record is not None and record.error is None and record.interval == INTERVAL
    assert set(record.backends) >= {"etcd:node1", "etcd:node2", "etcd:node3", "etcd:all"}
    assert record.cpu_seconds is not None and record.started_at is not None
    assert not list((tmp_path / "state" / "disruption").rglob("*.pem"))  # gone with the probing
    assert not [p for p in (tmp_path / "artifacts").rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    # The member that stopped fails its item showing the outage; the all-endpoints client passes at 0 s.
    result, props = checks.judge_run(run, "etcd-member")
    assert not result.passed and result.summary == "1 of 3 checks failed", result.message
    assert f"disruption etcd:{victim.name}: " in result.details and "budget 1s (etcd-member)" in result.details
    seconds = {k: float(v) for k, v in props if k.endswith(":seconds")}
    assert seconds[f"disruption:etcd:{victim.name}:seconds"] > 1.0
    assert [k for k, v in seconds.items() if v > 0] == [f"disruption:etcd:{victim.name}:seconds"]
    all_result, all_props = checks.judge_run(run, "etcd-all")
    assert all_result.passed, all_result.message
    assert ("disruption:etcd:all:seconds", "0.000") in all_props
    # No containerd here and no sudo: its sessions fail, and the item says why rather than passing.
    engine, _ = checks.judge_run(run, "containerd")
    assert not engine.passed and "probe session ended before its first sample" in engine.details, engine.message
