"""Kubernetes on the lab for real: the lab installer's Kubernetes (kubeadm's layout: static pods, PKI,
kubelet units, kube-proxy as a DaemonSet, the bridge CNI) on container nodes, upgraded from the
v1.31.9 set to the v1.32.0 set through the full path (`cluster.yml` again, with etcd 3.5.16 -> 3.5.30)
and the graceful path (`upgrade-cluster.yml`: cordon, drain, upgrade, uncordon, one node at a time),
every Kubernetes check judged on live objects through the API (reached through a forward into the
lab's namespace, never at a lab address).

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
SCENARIOS = ("lab-kube-full", "lab-kube-graceful")


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
         "-rfE", "--artifacts", str(tmp / "artifacts"), f"--junitxml={junit}"],
        cwd=REPO, env=env, stdin=subprocess.DEVNULL, text=True, check=False,
    )
    try:
        yield proc, _junit(junit) if junit.exists() else {}, tmp / "artifacts", before
    finally:
        LxcProvider(LAB).down()
        assert leftovers(LabPaths(lab_prefix(LAB))) == []


def test_every_kubernetes_check_passes_on_live_objects(kube_run) -> None:
    proc, items, _artifacts, _before = kube_run
    assert proc.returncode == 0, f"pytest scenarios/ -k {' or '.join(SCENARIOS)} exited {proc.returncode}"
    for sc in SCENARIOS:
        mine = {k: v for k, v in items.items() if f"[{sc}:" in k}
        # The Kubernetes checks, each judged through the API: none may skip.
        api = {k.split("[")[0]: v for k, v in mine.items() if k.split("[")[0] in (
            "test_version_skew", "test_apiserver_versions", "test_all_ready", "test_agent_versions",
            "test_static_pods", "test_proxy_daemonset", "test_pods_healthy", "test_canaries_kept",
            "test_service_account_tokens")}
        assert len(api) == 9 and set(api.values()) == {"passed"}, (sc, api)
        # No cluster DNS is deployed (no CoreDNS build offline: dns_mode none), so that check is n/a.
        assert mine[next(k for k in mine if k.startswith("test_resolver_service["))] == "skipped"
        assert "failure" not in mine.values() and "error" not in mine.values(), (sc, mine)


def test_versions_moved_node_by_node_as_the_api_reports_them(kube_run) -> None:
    _proc, _items, artifacts, _before = kube_run
    for sc in SCENARIOS:
        facts = json.loads((artifacts / sc / "facts.json").read_text())["facts"]
        kube = facts["kube"]
        kubelets = {n["name"]: n["kubelet_version"] for n in kube["nodes"]}
        assert set(kubelets) == {"node1", "node2", "node3"}, kubelets
        assert all(v.startswith("v1.32.0+lab.") for v in kubelets.values()), kubelets
        assert all(n["ready"] and not n.get("unschedulable") for n in kube["nodes"]), kube["nodes"]


def test_the_host_kernel_settings_are_unchanged_by_kubelets(kube_run) -> None:
    _proc, _items, _artifacts, before = kube_run
    after = host_sysctls()
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}
