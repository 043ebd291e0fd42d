"""Expected-versus-observed version checks and the table their failures print."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from harness.checks.result import CheckResult, assert_check, combine, text_table
from harness.checks.versions import (
    ANY,
    check_unchanged,
    check_versions,
    components_for_roles,
    expected_for_scenario,
    expected_versions_per_node,
)
from harness.probes.facts import KubeFacts, NodeFacts, PreUpgradeRecord
from harness.probes.kube import observed_from_kube
from harness.scenario.model import Scenario

LAB_NODES = {"node1": ("etcd", "worker"), "node2": ("worker",)}


def _scenario(**kw: object) -> Scenario:
    base = {
        "id": "etcd-up", "description": "d", "installer": "lab",
        "topology": {"nodes": [{"name": "node1", "roles": ["etcd", "worker"]}, {"name": "node2", "roles": ["worker"]}]},
        "baseline": {"versions": {"etcd_version": "3.4.23", "containerd_version": "1.6.20", "runc_version": "1.1.5"}},
        "target": {"versions": {"etcd_version": "v3.5.16", "containerd_version": "1.7.24", "runc_version": "1.1.15"}},
        "path": "component", "tags": ["etcd"],
    }
    base.update(kw)
    return Scenario.model_validate(base)


def test_components_by_role() -> None:
    assert components_for_roles(("etcd",), "lab") == ("containerd", "runc", "etcd", "etcdctl")
    assert "kubectl" in components_for_roles(("control-plane",))
    assert "kubectl" not in components_for_roles(("worker",))


def test_component_run_expects_target_only_for_its_tags() -> None:
    exp = expected_for_scenario(_scenario(), LAB_NODES)
    assert exp["node1"] == {"containerd": "1.6.20", "runc": "1.1.5", "etcd": "v3.5.16", "etcdctl": "v3.5.16"}
    assert exp["node2"] == {"containerd": "1.6.20", "runc": "1.1.5"}


def test_unpinned_untouched_component_expected_at_pre_upgrade_version() -> None:
    pre = PreUpgradeRecord(datetime(2025, 1, 1, tzinfo=UTC),
                           versions={"node1": {"etcdutl": "3.5.16", "calicoctl": None}})
    exp = expected_versions_per_node({"node1": ("etcd",)}, {"etcd": "3.5.30"}, "lab", pre, upgraded={"etcd"})
    assert exp["node1"]["etcdutl"] == "3.5.30"  # versioned by etcd_version
    exp = expected_versions_per_node({"node1": ("etcd",)}, {}, "lab", pre, upgraded={"containerd"})
    assert exp["node1"]["etcdutl"] == "3.5.16" and exp["node1"]["etcd"] == ANY and "calicoctl" not in exp["node1"]


def test_versions_pass_with_and_without_v() -> None:
    r = check_versions({"node1": {"etcd": "3.5.16", "containerd": "v1.7.24"}},
                       {"node1": {"etcd": "v3.5.16", "containerd": "1.7.24"}})
    assert r.passed and "2 component versions" in r.summary
    assert_check(r)


def test_versions_fail_names_node_component_expected_observed() -> None:
    observed = {"node1": {"etcd": "3.4.23", "etcdctl": "3.5.16", "containerd": "1.7.24"},
                "node2": {"containerd": None}}
    expected = {"node1": {"etcd": "3.5.16", "etcdctl": "3.5.16", "containerd": "1.7.24"},
                "node2": {"containerd": "1.7.24", "runc": "1.1.15"}}
    r = check_versions(observed, expected)
    assert not r.passed and r.summary == "3 of 5 component versions differ from expected"
    lines = r.details.splitlines()
    assert lines[0].split() == ["node", "component", "expected", "observed"]
    assert lines[2].split() == ["node1", "etcd", "3.5.16", "3.4.23"]
    assert lines[3].split() == ["node2", "containerd", "1.7.24", "absent"]
    assert lines[4].split() == ["node2", "runc", "1.1.15", "not", "observed"]
    with pytest.raises(AssertionError) as e:
        assert_check(r)
    assert "node1" in str(e.value) and "3.4.23" in str(e.value)


def test_any_means_present() -> None:
    assert check_versions({"n": {"kubelet": "v1.31.4"}}, {"n": {"kubelet": ANY}}).passed
    assert not check_versions({"n": {"kubelet": None}}, {"n": {"kubelet": ANY}}).passed
    # Not probed at all and nothing pinned: no claim either way.
    assert not check_versions({"n": {}}, {"n": {"kubelet": ANY}}).applicable


def test_unparsed_output_fails_a_pin() -> None:
    r = check_versions({"n": {"cni": "unparsed: weird"}}, {"n": {"cni": "1.4.0"}})
    assert not r.passed and ("n", "cni", "1.4.0", "unparsed: weird") in r.rows


def test_unchanged_outside_tags() -> None:
    before = {"node1": {"containerd": "1.6.20", "etcd": "3.4.23", "etcdctl": "3.4.23"}}
    after_ok = {"node1": {"containerd": "1.6.20", "etcd": "3.5.16", "etcdctl": "3.5.16"}}
    after_bad = {"node1": {"containerd": "1.7.24", "etcd": "3.5.16", "etcdctl": "3.5.16"}}
    assert check_unchanged(before, after_ok, {"containerd", "runc"}).passed
    r = check_unchanged(before, after_bad, {"containerd", "runc"})
    assert not r.passed and ("node1", "containerd", "1.6.20", "1.7.24") in r.rows


def test_observed_from_kube() -> None:
    f = KubeFacts(apiserver_versions={"cp1": "v1.31.4"},
                  nodes=(NodeFacts("cp1", True, False, "v1.31.4", "", "containerd://1.7.24"),))
    assert observed_from_kube(f, {"cp1": {"kube-scheduler": "v1.31.4"}}) == {
        "cp1": {"kube-apiserver": "v1.31.4", "kubelet": "v1.31.4", "kube-scheduler": "v1.31.4"}}


def test_text_table_and_combine() -> None:
    assert text_table(("a", "bb"), [("xxx", "y")]) == "a    bb\n---  --\nxxx  y"
    ok, bad = CheckResult.ok("one", "fine"), CheckResult.fail("two", "broken", "why", [("n", "c", "1", "2")])
    na = CheckResult.not_applicable("three", "no API")
    c = combine("all", [ok, bad, na])
    assert not c.passed and c.summary == "1 of 2 checks failed" and c.rows == (("n", "c", "1", "2"),)
    assert combine("all", [ok, na]).passed
    assert not combine("all", [na]).applicable
    assert na.status == "n/a" and ok.status == "pass" and bad.status == "FAIL"


def test_the_lab_installers_kubernetes_is_expected_only_when_kube_version_is_pinned() -> None:
    """The lab installs kubelet and kube-proxy on every Kubernetes node and the control plane and
    kubectl on control-plane nodes when a scenario pins kube_version (no kubeadm, no crictl); an
    etcd-only lab scenario expects none of it."""
    from harness.checks.versions import expected_versions_per_node

    nodes = {"node1": ("control-plane", "etcd", "worker"), "node2": ("etcd", "worker")}
    kube = {c: "1.32.0" for c in ("kubelet", "kube-proxy", "kube-apiserver", "kube-controller-manager",
                                  "kube-scheduler", "kubectl", "kubeadm")}
    with_kube = expected_versions_per_node(nodes, {"etcd": "3.5.16", **kube}, "lab")
    assert {"kubelet", "kube-proxy", "kube-apiserver", "kube-scheduler", "kubectl"} <= set(with_kube["node1"])
    assert {"kubelet", "kube-proxy"} <= set(with_kube["node2"]) and "kube-apiserver" not in with_kube["node2"]
    assert "kubeadm" not in with_kube["node1"] and "crictl" not in with_kube["node1"]
    without = expected_versions_per_node(nodes, {"etcd": "3.5.16"}, "lab")
    assert not {"kubelet", "kube-proxy", "kubectl"} & set(without["node1"])
