"""Kubernetes on the lab for real: the lab installer's Kubernetes (kubeadm's layout: static pods, PKI,
kubelet units, kube-proxy as a DaemonSet, the bridge CNI) on container nodes, upgraded from the
v1.31.9 set to the v1.32.0 set through the three paths: full (`cluster.yml` again, with etcd 3.5.16 ->
3.5.30), graceful (`upgrade-cluster.yml`: cordon, drain, upgrade, uncordon, one node at a time) and
tagged (`cluster.yml --tags=control-plane`: the kubelets stay), every Kubernetes check judged on live
objects through the API (reached through a forward into the lab's namespace, never at a lab address).

The two sets are the same code labelled apart (../shared/kubernetes/README.md): binaries, static pods,
kubelets and kube-proxy's pods are replaced and restarted in order for real, versions reported by the
API change node by node, but no API change between minors is exercised.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.cluster.lab.lxc import LxcProvider
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, leftovers
from tests.conftest import host_sysctls

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, containers); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
WORKER = "kube"
LAB = f"pytest-{WORKER}"
# In the catalogue's order: lab-kube-sa-key runs last, and the lab is kept where it left it.
SCENARIOS = ("lab-kube-full", "lab-kube-graceful", "lab-kube-control-plane", "lab-kube-sa-key")


def _junit(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = child.tag
            elif child.tag == "skipped":
                status = "skipped"
        out[case.get("name", "")] = status
    return out


@pytest.fixture(scope="module")
def kube_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("kube")
    LxcProvider(LAB).down()
    before = host_sysctls()
    junit = tmp / "junit.xml"
    env = {**os.environ, "PYTEST_XDIST_WORKER": WORKER, "HARNESS_LAB_BACKEND": "lxc"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "-k", " or ".join(SCENARIOS), "-p", "no:cacheprovider",
         "-rfE", "--artifacts", str(tmp / "artifacts"), f"--junitxml={junit}", "--keep", "always"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, text=True, check=False,
    )
    try:
        yield proc, _junit(junit) if junit.exists() else {}, tmp / "artifacts", before, tmp
    finally:
        LxcProvider(LAB).down()
        assert leftovers(LabPaths(lab_prefix(LAB))) == []


def test_every_kubernetes_check_passes_on_live_objects(kube_run) -> None:
    proc, items, _artifacts, _before, _tmp = kube_run
    assert proc.returncode == 0, f"pytest scenarios/ -k {' or '.join(SCENARIOS)} exited {proc.returncode}"
    for sc in SCENARIOS:
        mine = {k: v for k, v in items.items() if f"[{sc}:" in k}
        # The Kubernetes checks, each judged through the API: none may skip.
        api = {k.split("[")[0]: v for k, v in mine.items() if k.split("[")[0] in (
            "test_version_skew", "test_apiserver_versions", "test_nodes_ready", "test_node_versions",
            "test_static_pods", "test_kube_proxy", "test_pods", "test_canaries",
            "test_service_account_tokens")}
        # lab-kube-full's skew and lab-kube-sa-key's tokens fail as their scenarios document: passed.
        assert len(api) == 9 and set(api.values()) == {"passed"}, (sc, api)
        # No cluster DNS is deployed (no CoreDNS build offline: dns_mode none), so that check is n/a.
        assert mine[next(k for k in mine if k.startswith("test_dns["))] == "skipped"
        assert "failure" not in mine.values() and "error" not in mine.values(), (sc, mine)


def test_versions_moved_node_by_node_as_the_api_reports_them(kube_run) -> None:
    _proc, _items, artifacts, _before, _tmp = kube_run
    for sc in SCENARIOS:
        facts = json.loads((artifacts / sc / "facts.json").read_text())["facts"]
        kube = facts["kube"]
        kubelets = {n["name"]: n["kubelet_version"] for n in kube["nodes"]}
        assert set(kubelets) == {"node1", "node2", "node3"}, kubelets
        # --tags=control-plane leaves every kubelet where it was; the other paths move them all.
        want = "v1.31.9+lab." if sc in ("lab-kube-control-plane", "lab-kube-sa-key") else "v1.32.0+lab."
        assert all(v.startswith(want) for v in kubelets.values()), (sc, kubelets)
        assert all(n["ready"] and not n.get("unschedulable") for n in kube["nodes"]), kube["nodes"]
        apis = kube["apiserver_versions"]
        assert apis and all(str(v).startswith("v1.32.0") for v in apis.values()), apis


def test_graceful_cordons_one_node_at_a_time_control_plane_first_as_the_api_saw_it(kube_run) -> None:
    """From the API's node listings sampled while upgrade-cluster.yml ran: node1 (the control plane)
    cordoned first, then node2 and node3, never two at once, each uncordoned before the next; the
    report lists the spans and draws them on the timeline."""
    _proc, items, artifacts, _before, _tmp = kube_run
    states = json.loads((artifacts / "lab-kube-graceful" / "facts.json").read_text())["node_states"]
    cordoned: dict[str, list[str]] = {}
    for s in states:
        if s["unschedulable"]:
            cordoned.setdefault(s["at"], []).append(s["node"])
    assert cordoned and max(len(v) for v in cordoned.values()) == 1, cordoned
    first = {}
    for at, (node,) in sorted(cordoned.items()):
        first.setdefault(node, at)
    assert sorted(first, key=first.__getitem__) == ["node1", "node2", "node3"], first
    assert items[next(k for k in items if k.startswith("test_upgrade_order[lab-kube-graceful:"))] == "passed"
    report = (artifacts / "lab-kube-graceful" / "report.md").read_text()
    for node in ("node1", "node2", "node3"):
        assert f"- {node} cordoned " in report, report[:3000]


def test_the_host_kernel_settings_are_unchanged_by_kubelets(kube_run) -> None:
    _proc, _items, _artifacts, before, _tmp = kube_run
    after = host_sysctls()
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}


def test_a_rotated_signing_key_leaves_stale_tokens_named_and_fixed(kube_run) -> None:
    """lab-kube-sa-key moved the signing key while --tags=control-plane upgraded the control plane:
    kube-proxy's pods came back with fresh tokens, every canary pod kept a token the new key rejects,
    and the token item named each of them (documented: passed). Then, on the cluster that scenario left, `harness
    verify --fix-stale-tokens` (run inside the lab's namespace, as a user reaches its API) deletes
    them, their DaemonSet recreates them, and every check passes; a second verify finds nothing stale."""
    _proc, _items, artifacts, _before, tmp = kube_run
    checks = [json.loads(line) for line in (artifacts / "lab-kube-sa-key" / "checks.jsonl").read_text().splitlines()]
    tokens = next(c for c in checks if c["check"] == "service-account tokens")
    assert tokens["outcome"] == "passed", tokens
    facts = json.loads((artifacts / "lab-kube-sa-key" / "facts.json").read_text())["facts"]
    stale = {t["pod"] for t in facts["pod_tokens"] if not t["mirror"] and not t["review"]["authenticated"]}
    # The canaries (2 Deployments of 2, a DaemonSet on 3 nodes): nothing recreated them. kube-proxy's
    # DaemonSet rolled to its new image: fresh tokens, not stale.
    assert len(stale) == 7 and all(p.startswith("canary-") for p in stale), stale
    fresh = {t["pod"] for t in facts["pod_tokens"] if t["namespace"] == "kube-system" and not t["mirror"]}
    assert fresh and not fresh & stale, fresh

    cluster = LxcProvider(LAB).find()
    assert cluster is not None and cluster.netns
    inventory = tmp / "inventory.yaml"
    subprocess.run([sys.executable, "-m", "harness.cli", "lab", "inventory", "--name", LAB, "-o", str(inventory)],
                   cwd=REPO, check=True)
    kubeconfig = max((artifacts / "lab-kube-sa-key").rglob("admin.conf"), key=lambda p: p.stat().st_mtime)
    expect = tmp / "expect.yaml"
    # The control plane at 1.32.0, the kubelets left at 1.31.9 (--tags=control-plane): the later key wins.
    expect.write_text(json.dumps({"installer": "lab", "dns_mode": "none", "versions": {
        "kube_version": "1.32.0", "kubelet": "1.31.9", "etcd_version": "3.5.16", "containerd_version": "1.7.24",
        "runc_version": "1.1.15"}}))

    def verify(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", cluster.netns, sys.executable, "-m", "harness.cli", "verify", "--inventory",
             str(inventory), "--expect", str(expect), "--kubeconfig", str(kubeconfig), *extra],
            cwd=REPO, stdin=subprocess.DEVNULL, text=True, capture_output=True, check=False,
            env={**os.environ, "COLUMNS": "200"})

    fixed = verify("--fix-stale-tokens")
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    for pod in stale:
        assert pod in fixed.stdout, fixed.stdout
    again = verify()
    assert again.returncode == 0, again.stdout + again.stderr
    assert not any(pod in again.stdout for pod in stale), again.stdout
