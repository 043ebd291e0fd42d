"""Host probe parsers on real tool output, and the collector over a fake testinfra host.

Samples marked "measured" were printed by Debian's packages run on the build machine (bookworm:
etcd 3.4.23, containerd 1.6.20, runc 1.1.5, CNI plugins 1.1.1; trixie: etcd 3.5.16, containerd
1.7.24) and by a real etcd 3.5.16 started on 127.0.0.1. The upstream forms are the release
binaries' documented output.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fixtures.k8s.recorded import recorded_text

from harness.checks import etcd as etcd_checks
from harness.cluster.base import Node
from harness.components import Binary, find
from harness.components import parsers as pv
from harness.probes import hosts as h
from harness.probes.facts import BinaryFile, EtcdFacts, HostFacts, UnitState, from_json, to_json

# measured: trixie etcd-server 3.5.16
ETCD_35 = """etcd Version: 3.5.16
Git SHA: Not provided (use ./build instead of go build)
Go Version: go1.24.0
Go OS/Arch: linux/amd64
"""
ETCD_34 = "etcd Version: 3.4.23\nGit SHA: Not provided (use ./build instead of go build)\nGo Version: go1.19.8\nGo OS/Arch: linux/amd64\n"
ETCDCTL_35 = "etcdctl version: 3.5.16\nAPI version: 3.5\n"
ETCDUTL_35 = "etcdutl version: 3.5.16\nAPI version: 3.5\n"
CONTAINERD_DEBIAN_12 = "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n"
CONTAINERD_DEBIAN_13 = "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n"
CONTAINERD_UPSTREAM = "containerd github.com/containerd/containerd v1.7.24 88bf19b2105c8b17560993bee28a01ddc2f97182\n"
CONTAINERD_UPSTREAM_2 = "containerd github.com/containerd/containerd/v2 v2.0.0 207ad711eabd375a01713109a8a197d197ff6542\n"
RUNC_DEBIAN = "runc version 1.1.5+ds1\ncommit: 1.1.5+ds1-1+deb12u1\nspec: 1.0.2-dev\ngo: go1.19.8\nlibseccomp: 2.5.4\n"
RUNC_UPSTREAM = "runc version 1.1.15\ncommit: v1.1.15-0-gbc20cb44\nspec: 1.0.2-dev\ngo: go1.22.8\nlibseccomp: 2.5.5\n"
CNI_DEBIAN = "CNI loopback plugin version unknown\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0\ndpkg 1.1.1+ds1-3+b5\n"
CNI_UPSTREAM = "CNI loopback plugin v1.4.0\nCNI protocol versions supported: 0.1.0, 0.2.0, 0.3.0, 0.3.1, 0.4.0, 1.0.0, 1.1.0\n"
KUBECTL_JSON = """{
  "clientVersion": {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.4",
    "gitCommit": "a78aa47129b8539636eb86a9d00e31b2720fe06b",
    "gitTreeState": "clean",
    "buildDate": "2024-12-10T18:05:49Z",
    "goVersion": "go1.22.10",
    "compiler": "gc",
    "platform": "linux/amd64"
  },
  "kustomizeVersion": "v5.4.2"
}
"""


@pytest.mark.parametrize(
    ("parse", "text", "want"),
    [
        (pv.parse_etcd_version, ETCD_35, "3.5.16"),
        (pv.parse_etcd_version, ETCD_34, "3.4.23"),
        (pv.parse_etcdctl_version, ETCDCTL_35, "3.5.16"),
        (pv.parse_etcdutl_version, ETCDUTL_35, "3.5.16"),
        (pv.parse_containerd_version, CONTAINERD_DEBIAN_12, "1.6.20"),
        (pv.parse_containerd_version, CONTAINERD_DEBIAN_13, "1.7.24"),
        (pv.parse_containerd_version, CONTAINERD_UPSTREAM, "v1.7.24"),
        (pv.parse_containerd_version, CONTAINERD_UPSTREAM_2, "v2.0.0"),
        (pv.parse_runc_version, RUNC_DEBIAN, "1.1.5"),
        (pv.parse_runc_version, RUNC_UPSTREAM, "1.1.15"),
        (pv.parse_kubelet_version, "Kubernetes v1.31.4\n", "v1.31.4"),
        (pv.parse_kubeadm_version, "v1.31.4\n", "v1.31.4"),
        (pv.parse_kubeadm_version, "v1.32.0+lab.cd13ec4a\n", "v1.32.0"),  # the lab's build, with its metadata
        (pv.parse_kubectl_version, KUBECTL_JSON, "v1.31.4"),
        (pv.parse_crictl_version, "crictl version v1.31.1\n", "v1.31.1"),
        (pv.parse_calicoctl_version, ("Client Version:    v3.28.1\nGit commit:        601856343\n"
                                     "Unable to retrieve Cluster Version or Type: connection refused\n"), "v3.28.1"),
        (pv.parse_cni_version, CNI_DEBIAN, "1.1.1"),
        (pv.parse_cni_version, CNI_UPSTREAM, "v1.4.0"),
    ],
)
def test_version_parsers(parse: Any, text: str, want: str) -> None:
    assert parse(text) == want


def test_parsers_refuse_other_tools_output() -> None:
    assert pv.parse_etcd_version(ETCDCTL_35) is None
    assert pv.parse_containerd_version(RUNC_DEBIAN) is None
    assert pv.parse_runc_version("bash: runc: command not found") is None
    assert pv.parse_cni_version("CNI loopback plugin version unknown\n") is None


def _script_output(sections: dict[str, tuple[str, str]]) -> str:
    return "".join(f"@@section {k}\n{body}@@rc {rc}\n" for k, (rc, body) in sections.items())


def test_parse_versions_tells_absent_from_unreadable() -> None:
    out = _script_output({
        "kubelet": ("absent", ""), "kubeadm": ("absent", ""), "kubectl": ("absent", ""),
        "containerd": ("0", CONTAINERD_DEBIAN_13), "runc": ("0", RUNC_DEBIAN), "crictl": ("absent", ""),
        "etcd": ("0", ETCD_35), "etcdctl": ("0", ETCDCTL_35), "etcdutl": ("0", ETCDUTL_35),
        "calicoctl": ("absent", ""), "cni": ("127", "sh: 1: /opt/cni/bin/loopback: Permission denied\n"),
    })
    versions, errors = h.parse_versions(out)
    assert versions["containerd"] == "1.7.24" and versions["etcd"] == "3.5.16" and versions["runc"] == "1.1.5"
    assert versions["kubelet"] is None and "kubelet" not in errors
    assert versions["cni"] == "unparsed: sh: 1: /opt/cni/bin/loopback: Permission denied" and "cni" in errors


def test_versions_script_runs_and_reports_absent_tools() -> None:
    """The script itself, run by the local shell: tools missing here come back as absent."""
    from harness import proc

    cni = find("cni")
    assert cni is not None
    missing = Binary("nosuch-tool-xyz", "nosuch-tool-xyz --version", pv.parse_runc_version)
    elsewhere = replace(cni.binaries[0], dirs=("/nonexistent",))  # CNI plugins: looked for in directories
    res = proc.run(["sh", "-c", h.versions_script([missing, elsewhere])])
    sections = h.split_sections(res.stdout)
    # `identities`: what the closing stat still found (nothing here), for the cache to trust
    assert sections == {"nosuch-tool-xyz": ("absent", ""), "cni": ("absent", ""), "identities": ("0", "")}


def _openssl_cert(tmp_path: Path, name: str, days: int) -> Path:
    """A real certificate and its key, as openssl writes them (the key beside it, as Kubespray's are)."""
    from harness import proc

    proc.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(tmp_path / f"{name}-key.pem"),
              "-out", str(tmp_path / f"{name}.pem"), "-days", str(days), "-subj", f"/CN={name}"])
    return tmp_path / f"{name}.pem"


def test_certs_script_on_real_certificates(tmp_path: Path) -> None:
    """The script run by the local shell over real files: the date read on the controller is openssl's,
    a key never leaves the node, a bundle counts by its first certificate (as `openssl x509` reads it)."""
    from harness import proc

    ca = _openssl_cert(tmp_path, "ca", 10)
    member = _openssl_cert(tmp_path, "member", 400)
    (tmp_path / "bundle.pem").write_text(member.read_text() + ca.read_text())
    (tmp_path / "combined.pem").write_text((tmp_path / "ca-key.pem").read_text() + ca.read_text())
    (tmp_path / "empty.pem").write_text("not a certificate\n")
    (tmp_path / "locked.pem").write_text(ca.read_text())
    (tmp_path / "locked.pem").chmod(0)
    res = proc.run(["sh", "-c", h.certs_script([str(tmp_path / "*.pem")])], check=False)
    assert "PRIVATE KEY" not in res.stdout  # neither the -key.pem files nor the key inside combined.pem
    certs = h.parse_certs(res.stdout)
    assert sorted(Path(p).name for p in certs) == ["bundle.pem", "ca.pem", "combined.pem", "empty.pem", "locked.pem",
                                                   "member.pem"]
    enddate = proc.run(["openssl", "x509", "-enddate", "-noout", "-in", str(ca)]).stdout.strip().split("=", 1)[1]
    assert certs[str(ca)].not_after == datetime.strptime(" ".join(enddate.split()), "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC)
    assert certs[str(tmp_path / "combined.pem")].not_after == certs[str(ca)].not_after
    assert certs[str(tmp_path / "bundle.pem")].not_after == certs[str(member)].not_after
    assert (certs[str(member)].not_after - datetime.now(UTC)).days in (399, 400)  # type: ignore[operator]
    assert certs[str(tmp_path / "empty.pem")] == h.CertExpiry(str(tmp_path / "empty.pem"), None, "no certificate in the file")
    import os

    if os.geteuid() != 0:  # root reads a mode-0 file
        locked = certs[str(tmp_path / "locked.pem")]
        assert locked.not_after is None and "Permission denied" in str(locked.error)


def test_parse_certs_says_why_a_certificate_is_unreadable() -> None:
    certs = h.parse_certs(
        "@@section /etc/kubernetes/ssl/apiserver.crt\nsed: can't read /etc/kubernetes/ssl/apiserver.crt: No such file\n@@rc 2\n"
        "@@section /etc/ssl/etcd/ssl/ca.pem\n-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n@@rc 0\n")
    assert certs["/etc/kubernetes/ssl/apiserver.crt"].error == "sed: can't read /etc/kubernetes/ssl/apiserver.crt: No such file"
    bad = certs["/etc/ssl/etcd/ssl/ca.pem"]
    assert bad.not_after is None and bad.error


# measured: etcdctl 3.5.16 against a real etcd 3.5.16, a second endpoint down
HEALTH = ('[{"endpoint":"http://127.0.0.1:23790","health":true,"took":"2.172063ms"},'
          '{"endpoint":"http://127.0.0.1:23799","health":false,"took":"2.001242272s","error":"context deadline exceeded"}]\n'
          "Error: unhealthy cluster\n")
MEMBERS = ('{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"raft_term":2},"members":'
           '[{"ID":3319814642761637952,"name":"node1","peerURLs":["http://127.0.0.1:23800"],'
           '"clientURLs":["http://127.0.0.1:23790"]}]}\n')
STATUS = ('[{"Endpoint":"http://127.0.0.1:23790","Status":{"header":{"cluster_id":324952591200643719,'
          '"member_id":3319814642761637952,"revision":2,"raft_term":2},"version":"3.5.16","dbSize":20480,'
          '"leader":3319814642761637952,"raftIndex":8,"raftTerm":2,"raftAppliedIndex":8,"dbSizeInUse":16384}}]\n')
VERSION = '{"etcdserver":"3.5.16","etcdcluster":"3.5.0"}'
GET = ('{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":2,"raft_term":2},'
       '"kvs":[{"key":"L2hhcm5lc3Mvc2VudGluZWw=","create_revision":2,"mod_revision":2,"version":1,"value":"aGVsbG8="}],"count":1}\n')
GET_MISSING = '{"header":{"cluster_id":324952591200643719,"member_id":3319814642761637952,"revision":2,"raft_term":2}}\n'


def test_parse_etcd_outputs() -> None:
    health = h.parse_etcd_health(HEALTH)
    assert [(x.endpoint, x.healthy, x.error) for x in health] == [
        ("http://127.0.0.1:23790", True, None), ("http://127.0.0.1:23799", False, "context deadline exceeded")]
    (m,) = h.parse_etcd_members(MEMBERS)
    assert m.id == format(3319814642761637952, "x") == "2e1259d415f2a040" and m.name == "node1" and m.client_urls == ("http://127.0.0.1:23790",)
    assert h.parse_etcd_status(STATUS) == {"http://127.0.0.1:23790": "3.5.16"}
    assert h.parse_etcd_version_endpoint(VERSION) == ("3.5.16", "3.5.0")
    assert h.parse_etcd_get(GET) == "hello" and h.parse_etcd_get(GET_MISSING) is None


def test_parse_etcd_facts_records_errors() -> None:
    text = _script_output({"health": ("1", HEALTH), "members": ("0", MEMBERS), "status": ("0", STATUS),
                           "version": ("7", "curl: (7) Failed to connect to 10.0.0.1 port 2379\n"),
                           "key0": ("0", GET), "key1": ("0", GET_MISSING)})
    facts, values = h.parse_etcd_facts("node1", text, ["/harness/sentinel", "/harness/missing"])
    assert values == {"/harness/sentinel": "hello", "/harness/missing": None}
    assert facts.cluster_version is None and "version" in facts.errors and "curl: (7)" in facts.errors["version"]
    assert len(facts.health) == 2 and facts.member_versions == {"http://127.0.0.1:23790": "3.5.16"}
    assert from_json(EtcdFacts, to_json(facts)) == facts


# recorded: etcdctl 3.5.16, tests/fixtures/k8s-recorded (its README says how)
REC_FAIL_OUT = recorded_text("etcdctl-failure-stdout.txt")
REC_FAIL_ERR = recorded_text("etcdctl-failure-stderr.txt")
REFUSED = "dial tcp 127.0.0.1:1: connect: connection refused"


def test_etcdctl_failure_reports_the_connection_error() -> None:
    # The section as etcd_script assembles it: stdout, then (on failure) the tail of stderr.
    (health,) = h.parse_etcd_health(REC_FAIL_OUT + REC_FAIL_ERR)
    assert health.endpoint == "http://127.0.0.1:1" and health.healthy is False
    assert health.error == f"context deadline exceeded (transport: Error while dialing: {REFUSED})"


def test_etcdctl_failure_without_stdout_is_not_a_parser_error() -> None:
    # With nothing on stdout (the cluster-wide commands fail before printing anything) the only JSON
    # in the section is etcdctl's zap log line; it used to be parsed as the output and reported as
    # "string indices must be integers, not 'str'" (health) or as an empty member list (members).
    text = _script_output({"health": ("1", REC_FAIL_ERR), "members": ("1", REC_FAIL_ERR),
                           "status": ("1", REC_FAIL_ERR), "version": ("7", "curl: (7) Failed to connect to 127.0.0.1 port 1\n")})
    facts, _ = h.parse_etcd_facts("node1", text)
    assert facts.health == () and facts.members == () and facts.member_versions == {}
    for section in ("health", "members", "status"):
        err = facts.errors[section]
        assert "string indices" not in err and "TypeError" not in err
        assert err.startswith(f"rc=1: {'endpoint health' if section == 'health' else 'member list' if section == 'members' else 'endpoint status'}: Error: unhealthy cluster; retrying of unary invoker failed")
        assert REFUSED in err
    r = etcd_checks.check_etcd_healthy(facts, 1)
    # The line leads with the cause; etcdctl's verdict and gRPC's wrapping are in the details.
    assert not r.passed and r.summary == f"no health answer from etcd via node1: transport: Error while dialing: {REFUSED}"
    assert "Error: unhealthy cluster" in r.details
    r = etcd_checks.check_etcd_members(facts, {"node1": "127.0.0.1"})
    assert not r.passed and REFUSED in r.details and r.summary.endswith(REFUSED)


def test_the_etcd_lines_keep_a_long_cause_whole() -> None:
    """A TLS failure's cause is long, and gRPC wraps it in ~200 characters: the health line used to be
    cut at 300 characters, inside `x509: certificat`. The recorded zap line, with the x509 cause Go
    prints for a client that does not trust the server's CA in place of the connection refusal."""
    import json

    # gRPC quotes the cause with Go's %q: its own quotes come backslashed inside `desc = "..."`.
    x509 = ('x509: certificate signed by unknown authority (possibly because of "crypto/rsa: verification error"'
            ' while trying to verify candidate authority certificate "etcd-ca")')
    whole = f"transport: authentication handshake failed: tls: failed to verify certificate: {x509}"
    line, rest = REC_FAIL_ERR.split("\n", 1)
    zap = json.loads(line)
    refused = f"transport: Error while dialing: {REFUSED}"
    assert refused in zap["error"]
    zap["error"] = zap["error"].replace(refused, whole.replace('"', '\\"'))
    stderr = json.dumps(zap) + "\n" + rest
    text = _script_output({"health": ("1", stderr), "members": ("1", stderr), "status": ("1", stderr),
                           "version": ("60", "curl: (60) SSL certificate problem: unable to get local issuer certificate\n")})
    facts, _ = h.parse_etcd_facts("node1", text)
    r = etcd_checks.check_etcd_healthy(facts, 3)
    assert r.summary == f"no health answer from etcd via node1: {whole}", r.summary
    assert etcd_checks.check_etcd_members(facts, {"node1": "127.0.0.1"}).summary == f"no member list from etcd: {whole}"


def test_etcd_recorded_success_outputs_parse_and_pass() -> None:
    text = _script_output({"health": ("0", recorded_text("etcdctl-health-ok.json")),
                           "members": ("0", recorded_text("etcdctl-member-list.json")),
                           "status": ("0", recorded_text("etcdctl-endpoint-status.json")), "version": ("0", VERSION)})
    facts, _ = h.parse_etcd_facts("node1", text)
    assert facts.errors == {}
    (m,) = facts.members
    # IDs above 2^53: exact here, where a float64 parser would round them.
    assert int(m.id, 16) == 3319814642761637952 and int(float(3319814642761637952)) != 3319814642761637952
    assert (m.name, m.peer_urls, m.client_urls) == ("node1", ("http://127.0.0.1:23800",), ("http://127.0.0.1:23790",))
    assert facts.member_versions == {"http://127.0.0.1:23790": "3.5.16"}  # from the capitalised `Endpoint`/`Status`
    assert [(x.endpoint, x.healthy, x.error) for x in facts.health] == [("http://127.0.0.1:23790", True, None)]
    nodes = {"node1": "127.0.0.1"}
    assert etcd_checks.check_etcd_healthy(facts, 1).passed
    assert etcd_checks.check_etcd_members(facts, nodes).passed
    assert etcd_checks.check_etcd_member_versions(facts, "3.5.16", nodes).passed
    assert etcd_checks.check_etcd_cluster_version(facts, "3.5.16").passed


def test_etcdctl_output_shapes() -> None:
    _, said = h.etcdctl_output(REC_FAIL_ERR)
    assert said == [(f'retrying of unary invoker failed: rpc error: code = DeadlineExceeded desc = latest balancer error:'
                     f' last connection error: connection error: desc = "transport: Error while dialing: {REFUSED}"'),
                    "Error: unhealthy cluster"]
    with pytest.raises(h.EtcdctlError, match="member list: no output"):
        h.parse_etcd_members("")
    # A JSON value of the wrong kind is named, not indexed into.
    with pytest.raises(h.EtcdctlError, match="endpoint health: expected a JSON array"):
        h.parse_etcd_health('{"header":{}}')


def test_etcd_tls_defaults_follow_kubespray() -> None:
    tls = h.EtcdTLS()
    script = h.etcd_script("node1", "192.168.121.11", tls)
    assert "--cacert=/etc/ssl/etcd/ssl/ca.pem" in script
    assert "--cert=/etc/ssl/etcd/ssl/admin-node1.pem --key=/etc/ssl/etcd/ssl/admin-node1-key.pem" in script
    assert "--endpoints=https://192.168.121.11:2379" in script and "https://192.168.121.11:2379/version" in script
    plain = h.etcd_script("node1", "10.0.0.1", h.EtcdTLS(None, None, None, "http://{address}:2379"))
    assert "--cacert" not in plain and "--endpoints=http://10.0.0.1:2379" in plain


@dataclass
class _Res:
    stdout: str
    rc: int = 0


@dataclass
class _Svc:
    exists: bool
    is_running: bool
    is_enabled: bool


class _FakeHost:
    """Stands in for a testinfra host (no ssh here): answers the probe scripts with recorded output."""

    def __init__(self, outputs: dict[str, str], services: dict[str, _Svc]) -> None:
        self.outputs, self.services, self.commands = outputs, services, []  # type: ignore[var-annotated]

    def run(self, command: str, *args: Any, **kwargs: Any) -> _Res:
        self.commands.append(command)
        out = "".join(o for marker, o in self.outputs.items() if marker in command)
        for name in re.findall(r"@@section unit:([\w.-]+)", command):
            svc = self.services.get(name, _Svc(False, False, False))
            out += _systemctl_show(name, svc)
        return _Res(out)


def _systemctl_show(name: str, svc: _Svc) -> str:
    """What `systemctl show -p LoadState -p ActiveState -p UnitFileState NAME` prints (systemd 252)."""
    if not svc.exists:
        props = "LoadState=not-found\nActiveState=inactive\nUnitFileState=\n"
    else:
        props = (f"LoadState=loaded\nActiveState={'active' if svc.is_running else 'inactive'}\n"
                 f"UnitFileState={'enabled' if svc.is_enabled else 'disabled'}\n")
    return f"@@section unit:{name}\n{props}@@rc 0\n"


class _Cluster:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]


def test_host_probe_collects_and_reuses_hosts() -> None:
    versions = _script_output({"containerd": ("0", CONTAINERD_DEBIAN_12), "runc": ("0", RUNC_DEBIAN),
                               "etcd": ("0", ETCD_34), "etcdctl": ("0", "etcdctl version: 3.4.23\nAPI version: 3.4\n"),
                               **{k: ("absent", "") for k in ("kubelet", "kubeadm", "kubectl", "crictl", "etcdutl",
                                                              "calicoctl", "cni")}})
    host = _FakeHost({"@@section kubelet": versions,
                      "openssl x509": "@@section /etc/ssl/etcd/ssl/ca.pem\n-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n@@rc 0\n"},
                     {"containerd": _Svc(True, True, True), "etcd": _Svc(True, True, False)})
    made: list[str] = []

    def factory(node: str) -> _FakeHost:
        made.append(node)
        return host

    node = Node("node1", ("etcd",), "10.0.0.1")
    probe = h.HostProbe(_Cluster([node]), installer="lab", host_factory=factory)  # type: ignore[arg-type]
    facts = probe.host_facts(node)
    assert len(host.commands) == 1  # versions, units and certificates in one round trip
    probe.versions("node1")
    assert made == ["node1"]  # one testinfra host per node, reused
    assert facts.versions["etcd"] == "3.4.23" and facts.versions["kubelet"] is None
    assert facts.units["etcd"].enabled is False and facts.units["containerd"].active is True
    assert set(facts.units) == {"containerd", "etcd"}
    assert from_json(HostFacts, to_json(facts)) == facts


def test_parse_units_from_systemctl_show() -> None:
    text = (
        "@@section unit:etcd\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n@@rc 0\n"
        "@@section unit:containerd\nLoadState=loaded\nActiveState=failed\nUnitFileState=disabled\n@@rc 0\n"
        "@@section unit:kubelet\nLoadState=not-found\nActiveState=inactive\nUnitFileState=\n@@rc 0\n"
        "@@section /etc/ssl/etcd/ssl/ca.pem\n-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n@@rc 0\n"
    )
    units = h.parse_units(text)
    assert units == {
        "etcd": UnitState("etcd", True, True, True),
        "containerd": UnitState("containerd", True, False, False),
        "kubelet": UnitState("kubelet", False, False, False),
    }
    assert list(h.parse_certs(text)) == ["/etc/ssl/etcd/ssl/ca.pem"]  # each parser reads its own sections


def test_units_for_roles() -> None:
    assert h.units_for(("control-plane", "etcd")) == ("containerd", "kubelet", "etcd")
    assert h.units_for(("etcd", "worker"), installer="lab") == ("containerd", "etcd")


def test_etcd_script_output_parses_when_a_tool_ends_without_a_newline(tmp_path) -> None:
    """The real script run by a real shell, with etcdctl and curl standing in as recorded output.
    curl prints etcd's /version JSON with no final newline (measured on the lab): the section's end
    marker then lands on the same line, and the cluster version must still be read."""
    import os
    import subprocess

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    outputs = {"endpoint health": HEALTH, "member list": MEMBERS, "endpoint status": STATUS, " get ": GET}
    cases = "\n".join(f'  *"{k}"*) printf %s {shlex.quote(v)};;' for k, v in outputs.items())
    (bin_dir / "etcdctl").write_text(f'#!/bin/sh\ncase " $* " in\n{cases}\nesac\n')
    (bin_dir / "curl").write_text(f"#!/bin/sh\nprintf %s {shlex.quote(VERSION)}\n")
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    script = h.etcd_script("node1", "127.0.0.1", h.EtcdTLS(), ["/harness/sentinel"]).replace(h.PATH_PREFIX, "")
    out = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True,
                         env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}).stdout
    facts, values = h.parse_etcd_facts("node1", out, ["/harness/sentinel"])
    assert facts.errors == {}
    assert facts.cluster_version == "3.5.0" and values == {"/harness/sentinel": "hello"}


def test_boot_id_section() -> None:
    """The boot id as the host script prints it (measured: this machine's /proc), and what is not one."""
    from harness import proc

    res = proc.run(["sh", "-c", h.BOOT_ID_SCRIPT])
    boot_id, why = h.parse_boot_id(res.stdout)
    assert why is None and boot_id == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert h.parse_boot_id("@@section boot_id\ncat: /proc/sys/kernel/random/boot_id: No such file or directory\n@@rc 1\n") \
        == (None, "unreadable boot id (rc=1): 'cat: /proc/sys/kernel/random/boot_id: No such file or directory'")
    assert h.parse_boot_id("@@section kubelet\n@@rc absent\n")[0] is None


def test_host_facts_without_a_boot_id_say_why() -> None:
    """A node whose script printed no boot id section (an older guest, an interrupted script) keeps
    its other facts; the boot id's absence is an error of its own, not a reboot."""
    host = _FakeHost({}, {})
    node = Node("node1", ("etcd",), "10.0.0.1")
    facts = h.HostProbe(_Cluster([node]), installer="lab", host_factory=lambda _n: host).host_facts(node)  # type: ignore[arg-type]
    assert facts.error is None and facts.boot_id is None and "boot_id" in facts.errors
    assert "; cat /proc/sys/kernel/random/boot_id" in host.commands[0]


# -- the version cache: a binary is run again only when its file changed ----------------------------


def _fake_tool(path: Path, version: str) -> None:
    """An executable printing etcd's version line and counting its runs beside itself."""
    new = path.with_suffix(".new")
    new.write_text(f"#!/bin/sh\necho run >> {shlex.quote(str(path))}.runs\necho 'etcd Version: {version}'\n")
    new.chmod(0o755)
    new.replace(path)  # as an installer does: a new file renamed over the old one (a new inode)


def _runs(path: Path) -> int:
    runs = path.with_name(path.name + ".runs")
    return len(runs.read_text().splitlines()) if runs.exists() else 0


def test_version_cache_runs_a_binary_again_only_when_its_file_changed(tmp_path: Path) -> None:
    import os

    from harness import proc

    tool = tmp_path / "faketool"
    _fake_tool(tool, "3.4.23")
    binaries = [Binary("faketool", "faketool --version", pv.parse_etcd_version)]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    cache = h.VersionCache()

    def probe() -> tuple[str | None, str]:
        raw = proc.run(["sh", "-c", h.versions_script(binaries, cache.known("node1"))], env=env).stdout
        versions, errors = h.parse_versions(cache.resolve("node1", raw), binaries)
        assert not errors, errors
        return versions["faketool"], raw

    assert probe()[0] == "3.4.23" and _runs(tool) == 1
    version, raw = probe()
    assert version == "3.4.23" and _runs(tool) == 1 and "@@rc same" in raw  # answered from the cache
    _fake_tool(tool, "3.5.16")  # replaced: a new inode
    assert probe()[0] == "3.5.16" and _runs(tool) == 2
    # Rewritten in place, same size, its mtime put back: the ctime still moves.
    st = tool.stat()
    tool.write_text(tool.read_text().replace("3.5.16", "3.5.17"))
    os.utime(tool, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert tool.stat().st_size == st.st_size and tool.stat().st_mtime_ns == st.st_mtime_ns
    assert probe()[0] == "3.5.17" and _runs(tool) == 3
    assert probe()[0] == "3.5.17" and _runs(tool) == 3


def test_version_cache_never_answers_for_a_failed_run_or_another_node(tmp_path: Path) -> None:
    cache = h.VersionCache()
    failed = "@@section etcd\n@@id /usr/bin/etcd 1:2:3:4:5\nsegfault\n@@rc 139\n"
    assert h.parse_versions(cache.resolve("node1", failed), [find("etcd").binaries[0]])[1]  # type: ignore[union-attr]
    assert cache.known("node1") == {}  # a failure is asked again next time
    ok = f"@@section etcd\n@@id /usr/bin/etcd 1:2:3:4:5\n{ETCD_34}@@rc 0\n"
    cache.resolve("node1", ok)
    assert cache.known("node1") == {"etcd": "/usr/bin/etcd 1:2:3:4:5"} and cache.known("node2") == {}
    # `same` for an identity the cache no longer holds: said, not answered with another file's output.
    text = cache.resolve("node1", "@@section etcd\n@@id /usr/bin/etcd 9:9:9:9:9\n@@rc same\n")
    versions, errors = h.parse_versions(text, [find("etcd").binaries[0]])  # type: ignore[union-attr]
    assert versions["etcd"] is not None and versions["etcd"].startswith("unparsed") and "nothing cached" in errors["etcd"]
    assert cache.known("node1") == {}


def test_host_probe_shares_its_cache_across_probes_of_a_real_host(tmp_path: Path) -> None:
    """This machine as a static node (`ansible_connection=local`) through the real testinfra backend:
    the second probe answers every binary from the first one's runs, with the same versions."""
    from harness.cluster.static import StaticProvider

    inventory = tmp_path / "static.ini"
    inventory.write_text("[kube_node]\nnode1 ansible_connection=local\n")
    cluster = StaticProvider(inventory).cluster()
    seen: list[str] = []

    class Recording:
        def __init__(self, host: Any) -> None:
            self.host = host

        def run(self, command: str, *args: Any, **kwargs: Any) -> Any:
            res = self.host.run(command, *args, **kwargs)
            seen.append(str(res.stdout))
            return res

    cache = h.VersionCache()
    probes = [h.HostProbe(cluster, installer="lab", versions=cache,
                          host_factory=lambda n: Recording(cluster.testinfra_host(n))) for _ in range(2)]
    first, second = (p.versions("node1") for p in probes)
    assert first == second
    present = [name for name, v in first[0].items() if v is not None]
    if not present:
        pytest.skip("no probed binary on this machine (ci/setup installs etcd-server)")
    # Each names the file it asked, then its identity (the cache's key).
    assert all(re.search(rf"@@section {name}\n@@file /\S+\n(@@pid \d+\n)?@@id /", seen[0]) for name in present), seen[0]
    assert "@@rc same" not in seen[0]
    assert seen[1].count("@@rc same") == len(present), seen[1]


def test_version_cache_saved_and_loaded_answers_a_new_session(tmp_path: Path) -> None:
    """The cache kept beside a cluster: a new session's first probe runs no unchanged binary, a file
    that cannot be read is an empty cache, and a binary replaced since is asked again."""
    import os

    from harness import proc

    tool = tmp_path / "faketool"
    _fake_tool(tool, "3.4.23")
    binaries = [Binary("faketool", "faketool --version", pv.parse_etcd_version)]
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}

    def probe(cache: h.VersionCache) -> str | None:
        raw = proc.run(["sh", "-c", h.versions_script(binaries, cache.known("node1"))], env=env).stdout
        return h.parse_versions(cache.resolve("node1", raw), binaries)[0]["faketool"]

    first = h.VersionCache()
    assert probe(first) == "3.4.23" and _runs(tool) == 1
    saved = tmp_path / "versions.json"
    first.save(saved)
    assert probe(h.VersionCache.load(saved)) == "3.4.23" and _runs(tool) == 1  # answered from the saved cache
    _fake_tool(tool, "3.5.16")
    assert probe(h.VersionCache.load(saved)) == "3.5.16" and _runs(tool) == 2
    for junk in ("{not json", '["a list"]', '{"node1": {"faketool": []}}'):
        saved.write_text(junk)
        assert h.VersionCache.load(saved).known("node1") == {}
    assert h.VersionCache.load(tmp_path / "missing.json").known("node1") == {}


# -- which file a version is read from: what runs, not the first copy on PATH -------------------------


def _coreutils(text: str) -> str | None:
    """`sleep --version`'s first line: `sleep (GNU coreutils) 9.1` (a real ELF stands in for etcd)."""
    m = re.search(r"\(GNU coreutils\) (\S+)", text)
    return m.group(1) if m else None


def _script_tool(path: Path, version: str) -> None:
    new = path.with_suffix(".new")
    new.write_text(f"#!/bin/sh\necho 'sleep (GNU coreutils) {version}'\n")
    new.chmod(0o755)
    new.replace(path)


def test_versions_script_reads_the_running_process_not_the_first_copy_on_path(tmp_path: Path) -> None:
    """A node with Debian's older copy first on PATH and its unit running another: the version is the
    running file's (its unit's MainPID -> /proc/PID/exe), the other copy is said beside it. Once the
    running file is replaced, the process still runs the old one; once nothing runs, the installed
    file in Kubespray's bin_dir is read, whatever PATH puts first. No systemd here: `systemctl` is a
    stand-in answering MainPID; the process and /proc are real."""
    import os
    import subprocess

    from harness import proc

    run, first, installed = (tmp_path / d for d in ("run", "path", "installed"))
    for d in (run, first, installed):
        d.mkdir()
    (run / "faked").write_bytes(Path("/bin/sleep").read_bytes())
    (run / "faked").chmod(0o755)
    _script_tool(first / "faked", "0.1")  # the older copy first on PATH
    running = _coreutils(proc.run(["/bin/sleep", "--version"]).stdout)
    assert running and running != "0.1"
    child = subprocess.Popen([str(run / "faked"), "60"])
    try:
        systemctl = tmp_path / "systemctl"
        main = tmp_path / "mainpid"
        main.write_text(f"{child.pid}\n")
        # Answers only the exact question the probe must ask: the unit's MainPID.
        systemctl.write_text(f'#!/bin/sh\n[ "$*" = "show -p MainPID --value faked" ] && cat {main} || echo 0\n')
        systemctl.chmod(0o755)
        binaries = [Binary("faked", "faked --version", _coreutils, unit="faked")]
        env = {**os.environ, "PATH": f"{first}:{run}:{os.environ['PATH']}"}
        cache = h.VersionCache()

        def probe() -> tuple[str | None, BinaryFile]:
            script = h.versions_script(binaries, cache.known("node1"), bin_dir=str(installed), systemctl=str(systemctl))
            text = cache.resolve("node1", proc.run(["sh", "-c", script], env=env).stdout)
            versions, errors = h.parse_versions(text, binaries)
            assert not errors, errors
            return versions["faked"], h.parse_binary_files(text, binaries)["faked"]

        version, f = probe()
        assert version == running
        assert (f.path, f.pid, f.others) == (str(run / "faked"), child.pid, {str(first / "faked"): "0.1"})
        assert h.file_note("faked", version, f) == f"also {first / 'faked'} 0.1 (not running)"
        assert probe() == (version, f)  # answered from the cache: the file and its copies still said
        _script_tool(run / "faked", "9.9")  # replaced, not restarted: the process runs the old file
        version, f = probe()
        assert version == running and f.path == f"{run / 'faked'} (deleted)"
        assert f.others == {str(first / "faked"): "0.1", str(run / "faked"): "9.9"}
        assert "runs a file replaced since it started" in (h.file_note("faked", version, f) or "")
        main.write_text("0\n")  # stopped: the installed file, not the first on PATH
        _script_tool(installed / "faked", "2.0")
        version, f = probe()
        assert version == "2.0" and f.pid is None and f.path == str(installed / "faked")
        assert h.file_note("faked", version, f) == (f"also {first / 'faked'} 0.1 (nothing runs; reported {installed / 'faked'});"
                                                    f" also {run / 'faked'} 9.9 (nothing runs; reported {installed / 'faked'})")
    finally:
        child.kill()
        child.wait()


def test_a_unit_running_a_wrapper_is_said_and_the_installed_file_read() -> None:
    """etcd.service's main process is not etcd (a wrapper script's shell): never read as etcd's version."""
    text = _script_output({"etcd": ("0", f"@@main 812 /usr/bin/bash\n@@file /usr/local/bin/etcd\n{ETCD_35}")})
    (f,) = h.parse_binary_files(text, [find("etcd").binaries[0]]).values()  # type: ignore[union-attr]
    assert f == BinaryFile("/usr/local/bin/etcd", None, "etcd", "812 /usr/bin/bash", {})
    assert h.file_note("etcd", "3.5.16", f) == "etcd.service's main process 812 runs /usr/bin/bash, not etcd"


def test_host_facts_carry_the_file_each_version_came_from() -> None:
    """The probe's sections through HostProbe into HostFacts (and its JSON), then into the version notes."""
    node = Node("node1", ("etcd",), "10.0.0.1")
    out = (f"@@section etcd\n@@file /usr/local/bin/etcd\n@@pid 4242\n@@id /proc/4242/exe 1:2:3:4:5\n{ETCD_35}@@rc 0\n"
           f"@@section etcd@/usr/bin/etcd\n{ETCD_34}@@rc 0\n")

    class Host:
        def run(self, command: str, *a: Any, **k: Any) -> Any:
            return SimpleNamespace(rc=0, stdout=out)

    facts = h.HostProbe(_Cluster([node]), installer="lab", host_factory=lambda n: Host()).host_facts(node)  # type: ignore[arg-type]
    assert facts.versions["etcd"] == "3.5.16"
    assert facts.files["etcd"] == BinaryFile("/usr/local/bin/etcd", 4242, "etcd", None, {"/usr/bin/etcd": "3.4.23"})
    assert from_json(HostFacts, to_json(facts)) == facts
    assert h.version_notes([facts]) == {"node1": {"etcd": "also /usr/bin/etcd 3.4.23 (not running)"}}
