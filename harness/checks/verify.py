"""Run the whole check suite against an existing cluster, without upgrading it (`harness verify`).

The expectation file (docs/verify.md) names the versions the cluster must run. Clusters without a
Kubernetes API (the lab installer's etcd-only clusters, or no kubeconfig) get the API checks as
"n/a": reported, never counted as passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness.checks import certs as certs_checks
from harness.checks import etcd as etcd_checks
from harness.checks import kube as kube_checks
from harness.checks import tokens as token_checks
from harness.checks.result import CheckResult
from harness.checks.state import PlantedState, check_planted_state
from harness.checks.units import check_units
from harness.checks.versions import ANY, check_versions, expected_versions_per_node, observed_from_kube, versions_match
from harness.cluster.base import Cluster
from harness.errors import ScenarioError
from harness.plan.tags import COMPONENT_VARS, components_of_var
from harness.plan.versions import Version
from harness.probes.facts import HostFacts, KubeFacts, StateFacts
from harness.probes.hosts import EtcdTLS, HostProbe, merge_observed, observed_versions
from harness.probes.kube import STATIC_COMPONENTS, static_pod_tags

API_COMPONENTS: tuple[str, ...] = ("kube-apiserver", *STATIC_COMPONENTS[1:])
_KEYS = {"installer", "versions", "nodes", "kube_proxy_remove", "canaries", "etcd", "etcd_keys", "pods_budget"}


@dataclass(frozen=True)
class Expectation:
    installer: str = "kubespray"
    versions: dict[str, str] = field(default_factory=dict)  # component -> version
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # per-node overrides
    kube_proxy_remove: bool = False
    canaries: tuple[str, ...] = ()
    etcd_tls: EtcdTLS = field(default_factory=EtcdTLS)
    etcd_keys: dict[str, str] = field(default_factory=dict)
    pods_budget: float = 120.0


def _versions(file: str, where: str, raw: Any) -> dict[str, str]:
    """Accept component names (`etcd`) and Kubespray variables (`kube_version` -> kubelet, kube-apiserver, ...)."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(file, None, where, "expected a mapping of component (or *_version variable) to version")
    out: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        comps = components_of_var(key) if key.endswith("_version") else [key]
        if key.endswith("_version") and key not in COMPONENT_VARS.values():
            raise ScenarioError(file, None, f"{where}.{key}", "unknown version variable; known: "
                                + ", ".join(sorted(set(COMPONENT_VARS.values()))))
        try:
            Version.parse(str(value))
        except Exception as e:
            raise ScenarioError(file, None, f"{where}.{key}", str(e)) from None
        for c in comps:
            out[c] = str(value)
    return out


def load_expectation(path: Path) -> Expectation:
    file = str(path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ScenarioError(file, None, None, f"cannot read the expectation file: {e}") from None
    if not isinstance(data, dict):
        raise ScenarioError(file, None, None, "expected a mapping at the top level")
    unknown = sorted(set(data) - _KEYS)
    if unknown:
        raise ScenarioError(file, None, unknown[0], f"unknown key; known: {', '.join(sorted(_KEYS))}")
    installer = str(data.get("installer", "kubespray"))
    if installer not in ("kubespray", "lab"):
        raise ScenarioError(file, None, "installer", f"{installer!r}: expected kubespray or lab")
    nodes = {str(n): _versions(file, f"nodes.{n}", v) for n, v in (data.get("nodes") or {}).items()}
    etcd = data.get("etcd") or {}
    tls = EtcdTLS(**{k: etcd[k] for k in ("cacert", "cert", "key", "endpoint") if k in etcd})
    return Expectation(
        installer=installer,
        versions=_versions(file, "versions", data.get("versions") or {}),
        nodes=nodes,
        kube_proxy_remove=bool(data.get("kube_proxy_remove", False)),
        canaries=tuple(str(c) for c in data.get("canaries") or ()),
        etcd_tls=tls,
        etcd_keys={str(k): str(v) for k, v in (data.get("etcd_keys") or {}).items()},
        pods_budget=float(data.get("pods_budget", 120)),
    )


@dataclass
class VerifyReport:
    results: list[CheckResult]
    # (node, component, expected, observed, status) for the per-node table
    rows: list[tuple[str, str, str, str, str]]

    @property
    def ok(self) -> bool:
        applicable = [r for r in self.results if r.applicable]
        return bool(applicable) and all(r.passed for r in applicable)


def version_rows(expected: Mapping[str, Mapping[str, str]], observed: Mapping[str, Mapping[str, str | None]],
                 ) -> list[tuple[str, str, str, str, str]]:
    rows = []
    for node in sorted(expected):
        for comp, want in sorted(expected[node].items()):
            seen = observed.get(node, {})
            got = seen.get(comp)
            if comp not in seen and want == ANY:
                status = "n/a"
            elif got is None:
                status = "FAIL"
            else:
                status = "pass" if want == ANY or versions_match(want, got) else "FAIL"
            rows.append((node, comp, "any" if want == ANY else want,
                         got if got is not None else ("absent" if comp in seen else "not observed"), status))
    return rows


def run_verify(
    cluster: Cluster,
    expect: Expectation,
    kubeconfig: Path | None = None,
    cert_days: int = certs_checks.DEFAULT_MIN_DAYS,
    fix_stale_tokens: bool = False,
    probe: HostProbe | None = None,
    load_kube: Callable[[Path], Any] | None = None,
) -> VerifyReport:
    probe = probe or HostProbe(cluster, tls=expect.etcd_tls, installer=expect.installer)
    hosts: list[HostFacts] = probe.all_host_facts()
    results: list[CheckResult] = []

    etcd_nodes = {n.name: n.address for n in cluster.with_role("etcd")}
    etcd, values = probe.etcd(keys=list(expect.etcd_keys))
    want_etcd = expect.versions.get("etcd")
    results += [etcd_checks.check_etcd_healthy(etcd, len(etcd_nodes)), etcd_checks.check_etcd_members(etcd, etcd_nodes)]
    if want_etcd:
        results += [etcd_checks.check_etcd_member_versions(etcd, want_etcd, etcd_nodes),
                    etcd_checks.check_etcd_cluster_version(etcd, want_etcd)]

    kube: KubeFacts | None = None
    api_results: list[CheckResult] = []
    cp = cluster.with_role("control-plane")
    if expect.installer == "kubespray" and kubeconfig is not None and cp:
        kube, api_results = _api_checks(cluster, expect, kubeconfig, fix_stale_tokens, load_kube)
    else:
        why = ("the lab installer runs no Kubernetes" if expect.installer == "lab"
               else "no kubeconfig" if kubeconfig is None else "no control-plane node in the inventory")
        for name in ("apiserver version per control-plane node", "nodes ready", "control-plane static pods",
                     "kube-proxy DaemonSet", "CoreDNS service", "pods running and ready", "pod service-account tokens"):
            api_results.append(CheckResult.not_applicable(name, f"no Kubernetes API: {why}"))
    results += api_results

    roles = {n.name: n.roles for n in cluster.nodes}
    expected = expected_versions_per_node(roles, expect.versions, expect.installer)
    for node, overrides in expect.nodes.items():
        expected.setdefault(node, {}).update(overrides)
    if kube is None:  # without the API these cannot be observed; the n/a rows above say so
        for per in expected.values():
            for comp in API_COMPONENTS:
                per.pop(comp, None)
    tags = static_pod_tags(kube.pods, [n.name for n in cp]) if kube else {}
    observed = merge_observed(observed_versions(hosts), observe_kube(kube, tags))
    results.insert(0, check_versions(observed, expected))
    results += [check_units(hosts), certs_checks.check_certs(hosts, cert_days)]
    if expect.etcd_keys:
        results.append(check_planted_state(PlantedState(etcd_keys=expect.etcd_keys), StateFacts(etcd_keys=values)))
    return VerifyReport(results, version_rows(expected, observed))


def observe_kube(kube: KubeFacts | None, tags: Mapping[str, Mapping[str, str | None]]) -> dict[str, dict[str, str | None]]:
    return observed_from_kube(kube, tags) if kube else {}


def _api_checks(cluster: Cluster, expect: Expectation, kubeconfig: Path, fix: bool,
                load_kube: Callable[[Path], Any] | None) -> tuple[KubeFacts, list[CheckResult]]:
    from harness.probes import kube as kube_probe
    from harness.probes import tokens as token_probe

    cfg = (load_kube or kube_probe.load_config)(kubeconfig)
    cp = cluster.with_role("control-plane")
    k8s_nodes = [n.name for n in cluster.nodes if {"control-plane", "worker"} & set(n.roles)]
    kube = kube_probe.collect_kube_facts(cfg, cp, expect.canaries, pods_budget=expect.pods_budget)
    kv = expect.versions.get("kube-apiserver")
    out = [
        kube_checks.check_apiserver_versions(kube, [n.name for n in cp], kv) if kv
        else CheckResult.not_applicable("apiserver version per control-plane node", "no kube version expected"),
        kube_checks.check_nodes_ready(kube, k8s_nodes),
        kube_checks.check_node_versions(kube, expect.versions.get("kubelet"), expect.versions.get("containerd")),
        kube_checks.check_static_pods(kube, [n.name for n in cp], kv) if kv
        else CheckResult.not_applicable("control-plane static pods", "no kube version expected"),
        kube_checks.check_kube_proxy(kube, expect.kube_proxy_remove),
        kube_checks.check_coredns(kube),
        kube_checks.check_pods_healthy(kube, expect.pods_budget),
    ]
    with kube_probe.api_client(cfg) as api:
        tokens = token_probe.collect_pod_tokens(api, kube.pods)
        out.append(token_checks.check_pod_tokens(tokens))
        stale = token_checks.stale_pods(tokens)
        if fix and stale:
            out.append(token_checks.fix_stale_tokens(api, stale))
    return kube, out
