"""The check suite end to end: one facts bundle judged the same by the pytest items and by
`harness verify`; collection through the real probes over fake testinfra hosts and a fake apiserver
(tests/fixtures/k8s, served to the real client); version skew from what the sampler really produces;
the stale-token remedy followed by a fresh collection.

The cluster is Kubespray-shaped: cp1 (control plane + etcd, its apiserver at the fake server) and
node2 (worker), Kubernetes 1.31.4, etcd 3.5.16, containerd 1.7.24, runc 1.1.15.
"""

from __future__ import annotations

import copy
import importlib.util
import re
from collections.abc import Callable, Collection, Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from click.testing import CliRunner
from fixtures.certs import PEM_2099, pem_until
from fixtures.k8s.fixture_server import FakeApiserver, load, serve_cluster
from pydantic import SecretStr

from harness.checks import cli, order, suite
from harness.checks import verify as verify_mod
from harness.checks.result import CheckResult
from harness.checks.suite import ApiAccess, Expectation, Facts, RunRecord
from harness.checks.verify import load_expectation, run_verify
from harness.cluster.base import Cluster, Node
from harness.probes.facts import PreUpgradeRecord, VersionSample
from harness.probes.hosts import HostProbe, kube_samples, sample_sources, take_samples
from harness.probes.kube import pre_upgrade_snapshot
from harness.record import ScenarioRun, StepOutcome
from harness.scenario.model import ExpectedFailure, Scenario
from harness.upgrade.timeline import TaskRecord
from tests.conftest import REPO

CP = Node("cp1", ("control-plane", "etcd"), "127.0.0.1")
WORKER = Node("node2", ("worker",), "127.0.0.2")
SENTINEL = {"/harness/sentinel": "planted-before"}
GOOD = "eyJhbGciOiJSUzI1NiJ9.good-signature"  # the fake apiserver authenticates tokens containing "good"
STALE = "eyJhbGciOiJSUzI1NiJ9.old-key-signature"

# What each tool prints (the forms tests/test_probes_hosts.py checks against real output).
TOOL_OUTPUT = {
    "kubelet": "Kubernetes v{}\n", "kubeadm": "v{}\n", "kubectl": '{{"clientVersion": {{"gitVersion": "v{}"}}}}\n',
    "containerd": "containerd github.com/containerd/containerd v{} 88bf19b2105c8b17560993bee28a01ddc2f97182\n",
    "runc": "runc version {}\n", "crictl": "crictl version v{}\n", "etcd": "etcd Version: {}\n",
    "etcdctl": "etcdctl version: {}\nAPI version: 3.5\n", "etcdutl": "etcdutl version: {}\nAPI version: 3.5\n",
    "calicoctl": "Client Version:    v{}\n", "cni": "CNI loopback plugin v{}\n",
}
WORKER_TOOLS = {"kubelet": "1.31.4", "kubeadm": "1.31.4", "containerd": "1.7.24", "runc": "1.1.15",
                "crictl": "1.31.1", "cni": "1.4.0"}
CP_TOOLS = {**WORKER_TOOLS, "kubectl": "1.31.4", "etcd": "3.5.16", "etcdctl": "3.5.16", "etcdutl": "3.5.16"}


def _etcd_sections(version: str, keys: dict[str, str]) -> dict[str, str]:
    import base64
    import json

    ep = "https://127.0.0.1:2379"
    out = {
        "health": json.dumps([{"endpoint": ep, "health": True, "took": "1.6ms"}]),
        "members": json.dumps({"header": {"cluster_id": 1}, "members": [
            {"ID": 2, "name": "etcd1", "peerURLs": ["https://127.0.0.1:2380"], "clientURLs": [ep]}]}),
        "status": json.dumps([{"Endpoint": ep, "Status": {"header": {"cluster_id": 1}, "version": version}}]),
        "version": json.dumps({"etcdserver": version, "etcdcluster": "{}.{}.0".format(*version.split(".")[:2])}),
    }
    for i, value in enumerate(keys.values()):
        out[f"key{i}"] = json.dumps({"kvs": [{"value": base64.b64encode(value.encode()).decode()}]})
    return out


class FakeHost:
    """A testinfra host answering the probe scripts the way a Kubespray node prints (no ssh here)."""

    def __init__(self, tools: dict[str, str]) -> None:
        self.tools = tools

    def run(self, command: str, *a: Any, **k: Any) -> Any:
        out = ""
        if "@@section kubelet" in command:
            for comp, fmt in TOOL_OUTPUT.items():
                v = self.tools.get(comp)
                out += f"@@section {comp}\n" + (f"{fmt.format(v)}@@rc 0\n" if v else "@@rc absent\n")
        for unit in re.findall(r"@@section unit:([\w.-]+)", command):
            out += f"@@section unit:{unit}\nLoadState=loaded\nActiveState=active\nUnitFileState=enabled\n@@rc 0\n"
        if "BEGIN CERTIFICATE" in command:  # the certificate probe: the file's PEM
            out += f"@@section /etc/kubernetes/ssl/apiserver.crt\n{pem_until(PEM_2099)}@@rc 0\n"
        if "@@section canary-tasks" in command:  # the container canary plant.yml started, still running
            out += ("@@section canary-planted\nstate=running\npid=4242\nshim_pid=4200\n@@rc 0\n"
                    "@@section canary-tasks\nTASK      PID     STATUS\ncanary    4242    RUNNING\n@@rc 0\n"
                    "@@section canary-shim\n4200\n@@rc 0\n")
        if "endpoint health" in command:
            keys = {k: SENTINEL.get(k, "") for k in re.findall(r" get '?([^' ]+)'? -w json", command)}
            for name, body in _etcd_sections(self.tools["etcd"], keys).items():
                out += f"@@section {name}\n{body}\n@@rc 0\n"
        return SimpleNamespace(rc=0, stdout=out)


class FakeCluster(Cluster):
    def __init__(self, tools: dict[str, dict[str, str]] | None = None) -> None:
        super().__init__("ks", [CP, WORKER], Path("/dev/null"))
        self.tools = tools or {"cp1": dict(CP_TOOLS), "node2": dict(WORKER_TOOLS)}

    def testinfra_host(self, node: str) -> Any:
        return FakeHost(self.tools[node])

    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool: return False
    def destroy(self) -> None: ...


def _review(body: dict[str, Any] | None) -> tuple[int, Any]:
    assert body is not None
    out = load("tokenreview-authenticated" if "good" in body["spec"]["token"] else "tokenreview-rejected")
    return 201, out


def _reader(stale: Collection[str] = ()) -> Callable[[Any, str, str], SecretStr]:
    """The fixture's token reader (no exec on the fake apiserver): a stale token for the named pods."""
    return lambda api, ns, pod: SecretStr(STALE if pod in stale else GOOD)


@pytest.fixture
def server() -> Iterator[FakeApiserver]:
    with FakeApiserver() as s:
        serve_cluster(s)
        s.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review
        yield s


def _access(server: FakeApiserver, stale: Collection[str] = ()) -> ApiAccess:
    """The real client against the fixture apiserver, cp1's own apiserver at its address."""
    return ApiAccess(Path("/dev/null"), canaries=("default/canary",), pods_budget=0, load_config=lambda p: server.config(),
                     server_for=lambda n: server.url, token_reader=_reader(stale))


EXPECT = """\
installer: kubespray
versions: {kube_version: 1.31.4, etcd_version: 3.5.16, containerd: 1.7.24, runc: 1.1.15}
canaries: [default/canary]
etcd_keys: {/harness/sentinel: planted-before}
"""


def _scenario() -> Scenario:
    return Scenario.model_validate({
        "id": "ks-two", "description": "two nodes", "installer": "kubespray",
        "topology": {"nodes": [{"name": "cp1", "roles": ["control-plane", "etcd"]},
                               {"name": "node2", "roles": ["worker"]}]},
        "baseline": {"ref": "v2.27.0", "versions": {"kube_version": "1.30.8", "etcd_version": "3.5.9",
                                                    "containerd_version": "1.7.20", "runc_version": "1.1.14"}},
        "target": {"ref": "v2.27.0", "versions": {"kube_version": "1.31.4", "etcd_version": "3.5.16",
                                                  "containerd_version": "1.7.24", "runc_version": "1.1.15"}},
        "path": "full",
    })


def _items() -> dict[str, Callable[[Any], None]]:
    """The shipped pytest items (scenarios/test_upgrade.py), by check name."""
    spec = importlib.util.spec_from_file_location("shipped_items", REPO / "scenarios" / "test_upgrade.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return {c.name: getattr(module, c.item) for c in suite.CHECKS.values()}


def _item_status(item: Callable[..., None], run: ScenarioRun) -> str:
    properties: list[tuple[str, object]] = []  # the playbook-run item also reports disruption properties
    try:
        item(run, lambda k, v: properties.append((k, v))) if item.__name__ == "test_playbook_run" else item(run)
    except pytest.skip.Exception:
        return "n/a"
    except AssertionError:
        return "FAIL"
    return "pass"


def _scenario_run(tmp_path: Path, facts: Facts) -> ScenarioRun:
    """A scenario run as the pipeline leaves it after the upgrade, with `facts` as its 'after' bundle."""
    run = ScenarioRun(_scenario(), tmp_path / "ks-two", cluster=FakeCluster())
    for step in ("plan", "cluster", "baseline", "before", "plant", "upgrade", "after"):
        run.outcomes[step] = StepOutcome(step, True, 0.0)
    run.before = PreUpgradeRecord(datetime(2025, 1, 15, tzinfo=UTC), versions={"cp1": {"etcd": "3.5.9"}})
    run.planted_keys = dict(SENTINEL)
    assert facts.kube is not None
    restarts, names, uids = pre_upgrade_snapshot(facts.kube)
    run.kube_before = PreUpgradeRecord(datetime(2025, 1, 15, tzinfo=UTC), pod_restarts=restarts, pod_names=names,
                                       canary_uids=uids)
    run.facts = facts
    return run


def _both(tmp_path: Path, facts: Facts) -> tuple[dict[str, str], dict[str, str], Any]:
    """The same bundle through the pytest items and through `harness verify`: check -> status each."""
    report = run_verify(FakeCluster(), _expect_file(tmp_path), _access_unused(), collect=lambda *a, **k: facts)
    verify = {r.name: r.status for r in report.results}
    items = _items()
    run = _scenario_run(tmp_path, facts)
    pytest_side = {name: _item_status(items[name], run) for name in verify}
    return pytest_side, verify, report


def _expect_file(tmp_path: Path) -> Expectation:
    p = tmp_path / "expect.yaml"
    p.write_text(EXPECT)
    return load_expectation(p)


def _access_unused() -> ApiAccess:
    def refuse(path: Path) -> Any:
        raise AssertionError("the bundle was handed in: nothing may be collected")

    return ApiAccess(Path("/dev/null"), load_config=refuse)


# -- one bundle, two entry points ---------------------------------------------------------------


def test_one_bundle_same_verdicts_pass(server: FakeApiserver, tmp_path: Path) -> None:
    facts = suite.collect(FakeCluster(), installer="kubespray", etcd_keys=list(SENTINEL), api=_access(server))
    assert not facts.errors, facts.errors
    pytest_side, verify, report = _both(tmp_path, facts)
    assert pytest_side == verify
    # Every check verify runs passed: none of them could only be n/a on a Kubespray cluster.
    assert set(verify.values()) == {"pass"}, {n: r.message for n, r in ((r.name, r) for r in report.results) if not r.passed}
    assert set(verify) == {c.name for c in suite.CHECKS.values() if not c.upgrade_only}
    # kube-apiserver, -controller-manager and -scheduler come from the API and are judged per control-plane node.
    rows = {(node, comp): (want, got, status) for node, comp, want, got, status in report.rows}
    assert rows[("cp1", "kube-apiserver")] == ("1.31.4", "v1.31.4", "pass")
    assert rows[("cp1", "kube-controller-manager")] == ("1.31.4", "v1.31.4", "pass")
    assert rows[("cp1", "kube-scheduler")] == ("1.31.4", "v1.31.4", "pass")
    assert ("node2", "kube-apiserver") not in rows
    assert rows[("cp1", "etcdutl")] == ("3.5.16", "3.5.16", "pass")


def test_kube_proxy_has_a_row_per_node_from_its_pod(server: FakeApiserver, tmp_path: Path) -> None:
    """kube-proxy's version per node is its DaemonSet pod's image tag there, judged like every row:
    a node whose pod is still on the old image fails the table, not only the kube-proxy check."""
    facts = suite.collect(FakeCluster(), installer="kubespray", etcd_keys=list(SENTINEL), api=_access(server))
    report = run_verify(FakeCluster(), _expect_file(tmp_path), _access_unused(), collect=lambda *a, **k: facts)
    rows = {(node, comp): (want, got, status) for node, comp, want, got, status in report.rows}
    assert rows[("cp1", "kube-proxy")] == rows[("node2", "kube-proxy")] == ("1.31.4", "v1.31.4", "pass")
    assert facts.kube is not None
    old = tuple(replace(p, images=("registry.k8s.io/kube-proxy:v1.30.8",)) if p.name == "kube-proxy-wq7tz" else p
                for p in facts.kube.pods)
    behind = replace(facts, kube=replace(facts.kube, pods=old))
    report = run_verify(FakeCluster(), _expect_file(tmp_path), _access_unused(), collect=lambda *a, **k: behind)
    assert ("node2", "kube-proxy", "1.31.4", "v1.30.8", "FAIL") in report.rows
    target = next(r for r in report.results if r.name == "target versions")
    assert target.rows == (("node2", "kube-proxy", "1.31.4", "v1.30.8"),)
    # Removed by the inventory: no row to expect (its absence is the kube-proxy check's).
    removed = replace(_expect_file(tmp_path), kube_proxy_remove=True)
    assert not any(comp == "kube-proxy" for per in suite.expected_per_node(facts, removed).values() for comp in per)


def test_one_bundle_same_verdicts_fail(server: FakeApiserver, tmp_path: Path) -> None:
    """cp1's apiserver left on 1.30, node2's containerd left behind, a sentinel key lost: the same
    checks fail through both entry points, naming the same rows."""
    facts = suite.collect(FakeCluster(), installer="kubespray", etcd_keys=list(SENTINEL), api=_access(server))
    assert facts.kube is not None
    hosts = tuple(replace(h, versions={**h.versions, "containerd": "v1.7.20"}) if h.node == "node2" else h
                  for h in facts.hosts)
    broken = replace(facts, hosts=hosts, kube=replace(facts.kube, apiserver_versions={"cp1": "v1.30.8"}),
                     etcd_keys={"/harness/sentinel": None})
    pytest_side, verify, report = _both(tmp_path, broken)
    assert pytest_side == verify
    failed = {n for n, s in verify.items() if s == "FAIL"}
    assert failed == {"target versions", "apiserver versions", "planted state"}
    target = next(r for r in report.results if r.name == "target versions")
    assert set(target.rows) == {("cp1", "kube-apiserver", "1.31.4", "v1.30.8"), ("node2", "containerd", "1.7.24", "v1.7.20")}
    run = _scenario_run(tmp_path, broken)
    from harness.checks import run_view

    assert run_view.check(run, "target versions").rows == target.rows


def test_a_collection_failure_fails_the_checks_that_need_it(tmp_path: Path) -> None:
    """An API that cannot be read fails the API checks (not n/a) while the host checks still report."""
    dead = ApiAccess(Path("/dev/null"), load_config=lambda p: SimpleNamespace(), pods_budget=0)
    facts = suite.collect(FakeCluster(), installer="kubespray", api=dead)
    assert "api" in facts.errors and facts.kube is None
    results = {r.name: r for r in suite.judge(facts, _expect_file(tmp_path))}
    assert results["nodes ready"].status == "FAIL" and "could not be read" in results["nodes ready"].summary
    assert results["units"].passed and results["certificates"].passed
    # The API's versions are then expected and missing: not silently dropped.
    assert ("cp1", "kube-apiserver", "1.31.4", "not observed") in results["target versions"].rows
    no_api = suite.collect(FakeCluster(), installer="kubespray", no_api="no kubeconfig")
    results = {r.name: r for r in suite.judge(no_api, _expect_file(tmp_path))}
    assert results["nodes ready"].status == "n/a" and results["target versions"].passed


def test_a_check_that_crashes_is_a_failure_and_the_others_stand(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(facts: Facts, expect: Expectation) -> CheckResult:
        raise KeyError("cp1")

    monkeypatch.setitem(suite.CHECKS, "units", replace(suite.CHECKS["units"], judge=boom))
    facts = suite.collect(FakeCluster(), installer="kubespray", no_api="none")
    results = {r.name: r for r in suite.judge(facts, _expect_file(tmp_path))}
    assert results["units"].status == "FAIL" and "crashed: KeyError" in results["units"].summary
    assert results["certificates"].passed


def test_playbook_run_matches_the_documented_task() -> None:
    sc = _scenario().model_copy(update={"expect_failure": ExpectedFailure(
        task="Copy etcd binary from download dir", reason="r", remedy="m")})
    expect = Expectation.for_scenario(sc, None)
    at_task = RunRecord(False, "failed", 2, "summary",
                        ("cp1: [Install etcd] etcd : Install | Copy etcd binary from download dir",))
    elsewhere = RunRecord(False, "failed", 2, "summary", ("cp1: [Install etcd] etcd : Configure",))

    def judged(record: RunRecord) -> CheckResult:
        (r,) = suite.judge(Facts({"cp1": ("etcd",)}, runs={"upgrade": record}), expect, ["playbook run"])
        return r

    assert judged(at_task).passed
    assert not judged(elsewhere).passed and "not at" in judged(elsewhere).summary
    assert not judged(RunRecord(True, "successful", 0)).passed


def test_run_record_from_a_runner_result() -> None:
    failed = TaskRecord("cp1", "Install etcd", "etcd : Copy", ("etcd",), None, None, "failed", False)
    result = SimpleNamespace(ok=False, status="failed", rc=2, summary="s", recap={"cp1": {"changed": 3}},
                             failures=lambda: {"cp1": failed})
    assert RunRecord.of(result) == RunRecord(False, "failed", 2, "s", ("cp1: [Install etcd] etcd : Copy",), {"cp1": 3})


# -- version skew from what the sampler produces ---------------------------------------------------------


def _serve_versions(server: FakeApiserver, apiserver: str, kubelets: dict[str, str]) -> None:
    version = load("version")
    version.update(gitVersion=f"v{apiserver}", minor=apiserver.split(".")[1])
    server.routes[("GET", "/version")] = version
    nodes = load("nodelist")
    for n in nodes["items"]:
        n["status"]["nodeInfo"]["kubeletVersion"] = f"v{kubelets[n['metadata']['name']]}"
    server.routes[("GET", "/api/v1/nodes")] = nodes


def _sample_upgrade(server: FakeApiserver, rounds: list[tuple[str, str, dict[str, str]]]) -> tuple[list[VersionSample], dict[str, str]]:
    """Each round: (cp1's etcd, the apiserver, kubelets): served, then sampled as the pipeline does
    (host tools over the probe, apiserver and kubelets over the API)."""
    cluster = FakeCluster()
    probe = HostProbe(cluster)
    sources = sample_sources(probe, lambda: kube_samples(server.config(), [CP], server_for=lambda n: server.url))
    samples: list[VersionSample] = []
    errors: dict[str, str] = {}
    t0 = datetime(2025, 1, 15, 10, tzinfo=UTC)
    for i, (etcd, apiserver, kubelets) in enumerate(rounds):
        cluster.tools["cp1"].update(etcd=etcd, etcdctl=etcd)
        _serve_versions(server, apiserver, kubelets)
        got, _states, errs = take_samples(t0 + timedelta(minutes=i), sources)
        samples += got
        errors.update(errs)
    return samples, errors


def test_skew_is_judged_on_the_samples_the_sampler_produces(server: FakeApiserver) -> None:
    samples, errors = _sample_upgrade(server, [
        ("3.5.9", "1.30.8", {"cp1": "1.30.8", "node2": "1.30.8"}),
        ("3.5.16", "1.30.8", {"cp1": "1.30.8", "node2": "1.30.8"}),  # etcd first
        ("3.5.16", "1.31.4", {"cp1": "1.30.8", "node2": "1.30.8"}),  # then the control plane
        ("3.5.16", "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"}),  # then the kubelets
    ])
    assert not errors
    assert {(s.node, s.component) for s in samples} >= {("cp1", "kube-apiserver"), ("cp1", "kubelet"),
                                                        ("node2", "kubelet"), ("cp1", "etcd")}
    skew, etcd_first = order.check_version_skew(samples), order.check_etcd_before_control_plane(samples)
    assert skew.applicable and skew.passed, skew.message
    assert etcd_first.applicable and etcd_first.passed, etcd_first.message
    up = Expectation.for_scenario(_scenario(), None)
    (r,) = suite.judge(Facts({"cp1": CP.roles, "node2": WORKER.roles}, samples=tuple(samples)), up, ["version skew"])
    assert r.passed and {p.name for p in r.parts} == {"version skew policy", "etcd upgraded before control plane"}


def test_skew_violation_and_control_plane_before_etcd_are_caught(server: FakeApiserver) -> None:
    samples, _ = _sample_upgrade(server, [
        ("3.5.9", "1.30.8", {"cp1": "1.30.8", "node2": "1.30.8"}),
        ("3.5.9", "1.30.8", {"cp1": "1.30.8", "node2": "1.31.4"}),  # a kubelet ahead of every apiserver
        ("3.5.9", "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"}),  # the apiserver before etcd
        ("3.5.16", "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"}),
    ])
    skew = order.check_version_skew(samples)
    assert not skew.passed and "node2" in skew.details and "kubelet 1.31 > apiserver 1.30" in skew.details
    etcd_first = order.check_etcd_before_control_plane(samples)
    assert not etcd_first.passed and "cp1" in etcd_first.summary


def _documented_skew(check: str = "version skew") -> Expectation:
    sc = _scenario().model_copy(update={"expect_failure": ExpectedFailure(
        check=check, reason="kubelets restart before the control plane", remedy="use upgrade-cluster.yml")})
    return Expectation.for_scenario(sc, None)


def test_a_documented_check_failure_passes_as_documented_and_fails_once_fixed(server: FakeApiserver) -> None:
    """The full path's kubelets a minor ahead of the apiserver, documented: the skew item passes saying
    why, with the violations it found; a run without the violation fails, for the scenario to be updated."""
    ahead, _ = _sample_upgrade(server, [
        ("3.5.16", "1.30.8", {"cp1": "1.30.8", "node2": "1.30.8"}),
        ("3.5.16", "1.30.8", {"cp1": "1.31.4", "node2": "1.31.4"}),
        ("3.5.16", "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"}),
    ])
    nodes = {"cp1": CP.roles, "node2": WORKER.roles}
    # The run went through: everything the path moves is still expected at the target.
    documented = _documented_skew()
    assert documented.upgrade is not None and {"kubelet", "kube-apiserver", "etcd"} <= documented.upgrade.upgraded
    (r,) = suite.judge(Facts(nodes, samples=tuple(ahead)), documented, ["version skew"])
    assert r.passed and "failed as documented" in r.summary and "use upgrade-cluster.yml" in r.summary
    assert "node2" in r.details and "kubelet 1.31 > apiserver 1.30" in r.details
    # Nothing else is excused: the playbook item still judges the run itself.
    in_order, _ = _sample_upgrade(server, [
        ("3.5.16", "1.30.8", {"cp1": "1.30.8", "node2": "1.30.8"}),
        ("3.5.16", "1.31.4", {"cp1": "1.30.8", "node2": "1.30.8"}),
        ("3.5.16", "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"}),
    ])
    (fixed,) = suite.judge(Facts(nodes, samples=tuple(in_order)), _documented_skew(), ["version skew"])
    assert not fixed.passed and "the documented failure did not happen" in fixed.summary
    with pytest.raises(KeyError, match="expect_failure.check 'skew' names no check"):
        suite.judge(Facts(nodes, samples=tuple(in_order)), _documented_skew("skew"), ["version skew"])


def test_an_expected_failure_names_a_task_or_a_check() -> None:
    with pytest.raises(ValueError, match="not neither"):
        ExpectedFailure(reason="r", remedy="x")
    with pytest.raises(ValueError, match="not both"):
        ExpectedFailure(task="t", check="version skew", reason="r", remedy="x")
    with pytest.raises(ValueError, match="'moves' is for a run that stops at a task"):
        ExpectedFailure(check="version skew", reason="r", remedy="x", moves=("etcd",))


def test_an_apiserver_that_does_not_answer_gives_no_sample_but_an_error(server: FakeApiserver) -> None:
    _serve_versions(server, "1.31.4", {"cp1": "1.31.4", "node2": "1.31.4"})
    got = kube_samples(server.config(), [CP], server_for=lambda n: "http://127.0.0.1:9", timeout=2)
    assert {(n, c) for n, c, _v in got.versions} == {("cp1", "kubelet"), ("node2", "kubelet")}  # no None for cp1's apiserver
    assert "apiserver cp1" in got.errors
    # The nodes' state comes from the same listing, whatever the apiservers' /version said.
    assert {n for n, _ready, _cordoned in got.nodes} == {"cp1", "node2"}
    samples, states, errs = take_samples(datetime.now(UTC), {"api": lambda: (_ for _ in ()).throw(ConnectionError("refused"))})
    assert samples == [] and states == [] and errs == {"api": "ConnectionError: refused"}


def test_no_evaluable_sample_with_a_control_plane_fails_the_skew_check() -> None:
    """With a control plane every round samples apiservers and kubelets: no evaluable sample means the
    sampler failed, and that must not pass as n/a."""
    up = Expectation.for_scenario(_scenario(), None)
    facts = Facts({"cp1": CP.roles, "node2": WORKER.roles}, errors={"samples": "api: HTTP 401 Unauthorized"})
    (r,) = suite.judge(facts, up, ["version skew"])
    assert r.status == "FAIL" and "HTTP 401" in r.summary
    (r,) = suite.judge(Facts({"e1": ("etcd",)}), up, ["version skew"])
    assert r.status == "n/a"  # no control plane: no skew policy to apply


# -- the remedy, then a fresh collection -------------------------------------------------------------------


def _stale_token_cluster(server: FakeApiserver) -> dict[str, Any]:
    """The canary pod holds a stale token; deleting it makes its ReplicaSet start one with a good token."""
    pods = load("podlist")
    old = next(p for p in pods["items"] if p["metadata"]["namespace"] == "default")
    new = copy.deepcopy(old)
    new["metadata"].update(name="canary-7d9c6b8f5d-q8r5t", uid="3a7b1e9d-2f4c-4d5e-9b6a-0c9d8e7f6a5b")
    state: dict[str, Any] = {"pods": pods["items"]}

    def listing(items: list[Any]) -> dict[str, Any]:
        return {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": items}

    def delete(_body: Any) -> tuple[int, Any]:
        state["pods"] = [new if p["metadata"]["name"] == old["metadata"]["name"] else p for p in state["pods"]]
        return 200, old

    server.routes[("GET", "/api/v1/pods")] = lambda _b: (200, listing(state["pods"]))
    server.routes[("GET", "/api/v1/namespaces/default/pods")] = lambda _b: (
        200, listing([p for p in state["pods"] if p["metadata"]["namespace"] == "default"]))
    server.routes[("DELETE", f"/api/v1/namespaces/default/pods/{old['metadata']['name']}")] = delete
    return state


def _verify_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, access: ApiAccess, *args: str) -> Any:
    inv, exp, kubeconfig = tmp_path / "hosts.yaml", tmp_path / "expect.yaml", tmp_path / "admin.conf"
    inv.write_text("all: {}\n")
    exp.write_text(EXPECT)
    kubeconfig.write_text("fixture: the fake apiserver's config is handed in\n")
    monkeypatch.setattr(cli, "_static_cluster", lambda inventory: FakeCluster())
    monkeypatch.setattr(verify_mod, "api_access", lambda expect, path: access)
    return CliRunner().invoke(cli.verify, ["--inventory", str(inv), "--expect", str(exp), "--kubeconfig", str(kubeconfig),
                                           *args])


def test_verify_fix_stale_tokens_exits_0_when_the_fix_leaves_every_check_green(
        server: FakeApiserver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _stale_token_cluster(server)
    access = _access(server, stale={"canary-7d9c6b8f5d-x2k4q"})
    without = _verify_cli(tmp_path, monkeypatch, access)
    assert without.exit_code == 1, without.output
    assert "canary-7d9c6b8f5d-x2k4q" in without.output and "remedy" not in without.output.split("\n")[0]

    fixed = _verify_cli(tmp_path, monkeypatch, access, "--fix-stale-tokens")
    assert fixed.exit_code == 0, fixed.output
    assert "remedy fix stale tokens: pass" in fixed.output
    assert ("DELETE", "/api/v1/namespaces/default/pods/canary-7d9c6b8f5d-x2k4q", "") in server.requests
    # The remedy names each pod it replaced, and its replacement.
    remedy = fixed.output.split("collected and checked again")[0]
    assert "default/canary-7d9c6b8f5d-x2k4q" in remedy and "stale pod" in remedy, remedy


def test_verify_fix_that_leaves_a_stale_token_exits_1(server: FakeApiserver, tmp_path: Path) -> None:
    """The replacement's token is rejected too: the fresh collection still fails the token check."""
    _stale_token_cluster(server)
    access = _access(server, stale={"canary-7d9c6b8f5d-x2k4q", "canary-7d9c6b8f5d-q8r5t"})
    report = run_verify(FakeCluster(), _expect_file(tmp_path), access, fix_stale_tokens=True)
    assert not report.ok
    assert [r.status for r in report.remedies] == ["FAIL"]
    tokens = next(r for r in report.results if r.name == "service-account tokens")
    assert not tokens.passed and "canary-7d9c6b8f5d-q8r5t" in tokens.details


# -- the pipeline's 'after' step ------------------------------------------------------------------------------


def test_pipeline_after_step_collects_one_bundle(server: FakeApiserver, tmp_path: Path) -> None:
    """The 'after' step hands collect() the run's samples, timeline and runs, and finds the API through
    the admin.conf Kubespray left; the bundle is saved without the timeline (it has its own file)."""
    import json

    from harness.options import Options
    from harness.pipeline import Session, after

    session = Session(Options(artifacts=tmp_path))
    run = ScenarioRun(_scenario(), tmp_path / "ks-two", cluster=FakeCluster())
    admin = run.dir / "runner" / "00-baseline" / "inventory" / "artifacts" / "admin.conf"
    admin.parent.mkdir(parents=True)
    admin.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "fake",
        "clusters": [{"name": "fake", "cluster": {"server": server.url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
    }))
    record = TaskRecord("cp1", "Upgrade", "etcd : Restart", ("etcd",), "2025-01-15T10:00:00+00:00",
                        "2025-01-15T10:00:05+00:00", "changed", True)
    run.results["upgrade"] = SimpleNamespace(  # type: ignore[assignment]
        ok=True, status="successful", rc=0, summary="", recap={"cp1": {"changed": 1}}, failures=dict,
        records=(record,), artifacts_dir=tmp_path, seconds=5.5)
    run.planted_keys = dict(SENTINEL)
    run.samples = [VersionSample(datetime(2025, 1, 15, 10, tzinfo=UTC), "cp1", "etcd", "3.5.9")]
    run.sample_errors = {"api": "HTTP 503 Service Unavailable"}

    after.after(session, run)

    facts = run.facts
    assert facts is not None and facts.kube is not None
    assert [n.name for n in facts.kube.nodes] == ["cp1", "node2"]
    assert facts.etcd_keys == {"/harness/sentinel": "planted-before"}
    assert facts.samples == tuple(run.samples) and len(facts.timeline) == 1
    assert facts.runs["upgrade"] == RunRecord(True, "successful", 0, "", (), {"cp1": 1})
    assert facts.errors == {"samples": "api: HTTP 503 Service Unavailable"}
    run.save()
    saved = json.loads((run.dir / "facts.json").read_text())
    assert saved["facts"]["timeline"] == [] and len(saved["facts"]["hosts"]) == 2 and len(saved["samples"]) == 1
    assert json.loads((run.dir / "run.json").read_text())["results"]["upgrade"]["seconds"] == 5.5
