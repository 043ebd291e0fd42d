"""`verify`: the expectation file, and the command end to end on a lab-shaped cluster over fake hosts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from fixtures.certs import PEM_2099, pem_until

from harness.checks import cli
from harness.checks.verify import Expectation, load_expectation, run_verify
from harness.cluster.base import Cluster, Node
from harness.errors import ScenarioError

ETCD_STATUS = ('[{"Endpoint":"https://10.0.0.1:2379","Status":{"header":{"cluster_id":1,"member_id":2,"revision":2,'
               '"raft_term":2},"version":"%s","dbSize":20480,"leader":2,"raftIndex":8,"raftTerm":2,'
               '"raftAppliedIndex":8,"dbSizeInUse":16384}}]')


def _versions(etcd: str, etcdutl: str | None = None) -> str:
    """The versions script's output on a lab node; etcdutl at etcd's version unless given ("" = absent)."""
    etcdutl = etcd if etcdutl is None else etcdutl
    sec = {"containerd": ("0", "containerd github.com/containerd/containerd 1.7.24~ds1 1.7.24~ds1-6+deb13u1\n"),
           "runc": ("0", "runc version 1.1.15\n"), "etcd": ("0", f"etcd Version: {etcd}\n"),
           "etcdctl": ("0", f"etcdctl version: {etcd}\nAPI version: 3.5\n"),
           "etcdutl": ("0", f"etcdutl version: {etcdutl}\nAPI version: 3.5\n") if etcdutl else ("absent", "")}
    for k in ("kubelet", "kubeadm", "kubectl", "crictl", "calicoctl", "cni"):
        sec[k] = ("absent", "")
    return "".join(f"@@section {k}\n{b}@@rc {rc}\n" for k, (rc, b) in sec.items())


def _etcd(version: str) -> str:
    parts = {
        "health": '[{"endpoint":"https://10.0.0.1:2379","health":true,"took":"1.6ms"}]\n',
        "members": '{"header":{"cluster_id":1},"members":[{"ID":2,"name":"node1","peerURLs":["https://10.0.0.1:2380"],'
                   '"clientURLs":["https://10.0.0.1:2379"]}]}\n',
        "status": ETCD_STATUS % version + "\n",
        "version": json.dumps({"etcdserver": version, "etcdcluster": "3.5.0"}) + "\n",
    }
    return "".join(f"@@section {k}\n{b}@@rc 0\n" for k, b in parts.items())


class _Host:
    def __init__(self, etcd: str, etcdutl: str | None = None) -> None:
        self.etcd, self.etcdutl = etcd, etcdutl

    def run(self, command: str, *a: Any, **k: Any) -> Any:
        """Answers each probe script the harness sends with what a lab node would print."""
        out = ""
        if "@@section kubelet" in command:
            out += _versions(self.etcd, self.etcdutl)
        if "endpoint health" in command:
            out += _etcd(self.etcd)
        if "BEGIN CERTIFICATE" in command:  # the certificate probe: the file's PEM
            out += f"@@section /etc/ssl/etcd/ssl/ca.pem\n{pem_until(PEM_2099)}@@rc 0\n"
        for unit in re.findall(r"@@section unit:([\w.-]+)", command):
            out += f"@@section unit:{unit}\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n@@rc 0\n"
        return SimpleNamespace(rc=0, stdout=out)


class _LabCluster(Cluster):
    """A cluster whose testinfra hosts answer with recorded output (no ssh on the build machine)."""

    def __init__(self, etcd: str, etcdutl: str | None = None) -> None:
        super().__init__("lab", [Node("node1", ("etcd", "worker"), "10.0.0.1")], Path("/dev/null"))
        self.etcd, self.etcdutl = etcd, etcdutl

    def testinfra_host(self, node: str) -> Any:
        return _Host(self.etcd, self.etcdutl)

    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool: return False
    def destroy(self) -> None: ...


EXPECT = """\
installer: lab
versions:
  etcd_version: v3.5.16
  containerd: 1.7.24
  runc: 1.1.15
"""


def test_load_expectation_expands_variables(tmp_path: Path) -> None:
    p = tmp_path / "e.yaml"
    p.write_text("versions: {kube_version: 1.31.4, etcd: 3.5.16}\nnodes: {node3: {containerd: 1.6.20}}\n")
    e = load_expectation(p)
    assert e.versions["kubelet"] == e.versions["kube-apiserver"] == "1.31.4" and e.versions["etcd"] == "3.5.16"
    assert e.nodes == {"node3": {"containerd": "1.6.20"}}
    p.write_text("versions: {etcd: three}\n")
    with pytest.raises(ScenarioError, match="versions.etcd"):
        load_expectation(p)
    p.write_text("versions: {}\nextra: 1\n")
    with pytest.raises(ScenarioError, match="unknown key"):
        load_expectation(p)


def test_run_verify_lab_api_checks_are_na(tmp_path: Path) -> None:
    exp = Expectation(installer="lab", versions={"etcd": "3.5.16", "containerd": "1.7.24", "runc": "1.1.15"})
    report = run_verify(_LabCluster("3.5.16"), exp)
    na = {r.name: r.summary for r in report.results if not r.applicable}
    assert report.ok
    api = {"apiserver versions", "nodes ready", "node versions", "static pods", "kube-proxy", "dns", "pods",
           "canaries", "service-account tokens"}
    assert api <= set(na) and all(
        na[n] == "no Kubernetes API: the lab installer runs no Kubernetes (none without kube_version)" for n in api)
    # No etcd_keys in the file; no container canary was planted on these hosts (verify does not plant one).
    assert na.keys() - api == {"planted state", "container canary"}
    # Checks about an upgrade run are not part of verify at all.
    assert not {"playbook run", "untouched components", "upgrade order", "version skew"} & {r.name for r in report.results}
    assert ("node1", "etcd", "3.5.16", "3.5.16", "pass") in report.rows


def test_verify_checks_etcdutl_when_the_node_has_it() -> None:
    """The etcd pin covers etcdutl: a node that has it must run it at the pin; one without it is not judged."""
    exp = Expectation(installer="lab", versions={"etcd": "3.5.16", "containerd": "1.7.24", "runc": "1.1.15"})
    assert ("node1", "etcdutl", "3.5.16", "3.5.16", "pass") in run_verify(_LabCluster("3.5.16"), exp).rows
    stale = run_verify(_LabCluster("3.5.16", etcdutl="3.5.9"), exp)
    assert not stale.ok and ("node1", "etcdutl", "3.5.16", "3.5.9", "FAIL") in stale.rows
    target = next(r for r in stale.results if r.name == "target versions")
    assert target.rows == (("node1", "etcdutl", "3.5.16", "3.5.9"),)
    without = run_verify(_LabCluster("3.5.16", etcdutl=""), exp)
    assert without.ok and not any(row[1] == "etcdutl" for row in without.rows)


class _ShadowedHost(_Host):
    """A node as the real one was: Kubespray's etcd 3.5.16 running from /usr/local/bin (its unit's
    MainPID), Debian's etcd 3.4.23 in /usr/bin, not running."""

    def run(self, command: str, *a: Any, **k: Any) -> Any:
        res = super().run(command, *a, **k)
        if "@@section kubelet" in command:
            res.stdout = res.stdout.replace("@@section etcd\n", "@@section etcd\n@@file /usr/local/bin/etcd\n@@pid 4242\n")
            res.stdout += "@@section etcd@/usr/bin/etcd\netcd Version: 3.4.23\nGit SHA: Not provided\n@@rc 0\n"
        return res


def test_verify_row_is_the_running_etcd_and_says_the_other_copy() -> None:
    cluster = _LabCluster("3.5.16")
    cluster.testinfra_host = lambda node: _ShadowedHost("3.5.16")  # type: ignore[method-assign]
    exp = Expectation(installer="lab", versions={"etcd": "3.5.16", "containerd": "1.7.24", "runc": "1.1.15"})
    report = run_verify(cluster, exp)
    assert report.ok, [r.message for r in report.results if not r.passed]
    row = next(r for r in report.rows if r[:2] == ("node1", "etcd"))
    assert row == ("node1", "etcd", "3.5.16", "3.5.16; also /usr/bin/etcd 3.4.23 (not running)", "pass")
    target = next(r for r in report.results if r.name == "target versions")
    assert "also /usr/bin/etcd 3.4.23 (not running)" in target.details


def _run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, etcd: str) -> Any:
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all: {hosts: {node1: {ip: 10.0.0.1}}}\n")
    exp = tmp_path / "expect.yaml"
    exp.write_text(EXPECT)
    monkeypatch.setattr(cli, "_static_cluster", lambda inventory: _LabCluster(etcd))
    return CliRunner().invoke(cli.verify, ["--inventory", str(inv), "--expect", str(exp)])


def test_verify_command_passes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _run(tmp_path, monkeypatch, "3.5.16")
    assert res.exit_code == 0, res.output
    assert "n/a" in res.output and "not counted" in res.output


def test_verify_command_fails_naming_node_component_versions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    res = _run(tmp_path, monkeypatch, "3.4.23")
    assert res.exit_code == 1
    line = next(ln for ln in res.output.splitlines() if ln.split()[:2] == ["node1", "etcd"])
    assert "v3.5.16" in line and "3.4.23" in line
    assert "etcd member versions" in res.output


def test_verify_command_bad_expect_file(tmp_path: Path) -> None:
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all: {}\n")
    exp = tmp_path / "expect.yaml"
    exp.write_text("installer: minikube\n")
    res = CliRunner().invoke(cli.verify, ["--inventory", str(inv), "--expect", str(exp)])
    assert res.exit_code == 2 and "installer" in res.output


def test_the_expect_file_carries_kubesprays_dns_mode(tmp_path: Path) -> None:
    from harness.checks.verify import load_expectation

    p = tmp_path / "e.yaml"
    p.write_text("installer: lab\ndns_mode: none\nversions: {kube_version: 1.32.0}\n")
    assert load_expectation(p).dns_mode == "none"
    p.write_text("versions: {etcd: 3.5.16}\n")
    assert load_expectation(p).dns_mode == "coredns"
    p.write_text("dns_mode: [none]\n")
    with pytest.raises(ScenarioError, match="dns_mode"):
        load_expectation(p)


def test_a_lab_with_kube_version_is_judged_through_its_api(tmp_path: Path) -> None:
    """The lab installs Kubernetes when kube_version is pinned: verify then needs the API like any
    cluster, and says so when it has no kubeconfig."""
    exp = Expectation(installer="lab", versions={"etcd": "3.5.16", "kubelet": "1.32.0", "kube-apiserver": "1.32.0"})
    report = run_verify(_LabCluster("3.5.16"), exp)
    na = {r.name: r.summary for r in report.results if not r.applicable}
    assert "no kubeconfig" in na["nodes ready"], na["nodes ready"]
