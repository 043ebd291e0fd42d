"""`harness verify`: the check suite against an existing cluster, without upgrading it.

The `--expect` file (docs/verify.md) becomes an `Expectation`; `run_verify` collects and judges
through the same two functions as the pytest items (harness.checks.suite), with every check that
is not about an upgrade run. Clusters without a Kubernetes API (the lab installer, or no kubeconfig)
get the API checks as "n/a": reported, never counted as passes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from harness import components, userinput
from harness.checks import suite
from harness.checks.result import CheckResult
from harness.checks.suite import ApiAccess, Expectation
from harness.checks.versions import ANY, versions_match
from harness.cluster.base import Cluster
from harness.components import components_of_var, version_vars
from harness.errors import PlanError, ScenarioError
from harness.plan.versions import Version
from harness.probes.collected import Facts
from harness.probes.hosts import EtcdTLS, HostProbe
from harness.userinput import BadValue

T = TypeVar("T")

_KEYS = {"installer", "versions", "nodes", "kube_proxy_remove", "dns_mode", "canaries", "etcd", "etcd_keys", "pods_budget"}


def _versions(file: str, where: str, raw: Any) -> dict[str, str]:
    """Accept component names (`etcd`) and Kubespray variables (`kube_version` -> kubelet, kube-apiserver, ...)."""
    if not isinstance(raw, Mapping):
        raise ScenarioError(file, None, where, "expected a mapping of component (or *_version variable) to version")
    out: dict[str, str] = {}
    for key, value in raw.items():
        key = str(key)
        comps = components_of_var(key) if key.endswith("_version") else [key]
        if key.endswith("_version") and key not in version_vars():
            raise ScenarioError(file, None, f"{where}.{key}", "unknown version variable; known: "
                                + ", ".join(sorted(version_vars())))
        try:
            # As in scenarios: an unquoted `etcd: 3.10` is the YAML float 3.1, and `3.5` pins nothing.
            Version.pinned(value)
        except PlanError as e:
            raise ScenarioError(file, None, f"{where}.{key}", str(e)) from None
        for c in comps:
            out[c] = str(value)
    return out


def _typed(file: str, field: str, read: Callable[[object], T], value: object) -> T:
    try:
        return read(value)
    except BadValue as e:
        raise ScenarioError(file, None, field, str(e)) from None


def load_expectation(path: str | Path) -> Expectation:
    """An `--expect` file (docs/verify.md) as an `Expectation`. An empty file is refused: read as
    "nothing pinned", it would judge the cluster against nothing."""
    file = userinput.shown(path)
    data = userinput.read_yaml(path, what="an expectation file")
    if data is None or data == {}:
        raise ScenarioError(file, None, None, "empty: nothing to expect (give at least 'installer:' or 'versions:';"
                            " see docs/verify.md)")
    if not isinstance(data, dict):
        raise ScenarioError(file, None, None, f"expected a mapping at the top level, not {userinput.yaml_kind(data)}")
    unknown = sorted((str(k) for k in set(data) - _KEYS), key=str)
    if unknown:
        raise ScenarioError(file, None, unknown[0], f"unknown key{userinput.did_you_mean(unknown[0], _KEYS)}; known:"
                            f" {', '.join(sorted(_KEYS))}")
    installer = data.get("installer", "kubespray")
    if installer not in ("kubespray", "lab"):
        raise ScenarioError(file, None, "installer", f"{installer!r}: expected kubespray or lab")
    for key in ("nodes", "etcd_keys"):
        if not isinstance(data.get(key) or {}, Mapping):
            raise ScenarioError(file, None, key, "expected a mapping")
    canaries = data.get("canaries") or []
    if not isinstance(canaries, list) or not all(isinstance(c, str) and c.count("/") == 1 for c in canaries):
        raise ScenarioError(file, None, "canaries", "expected a list of namespace/name")
    nodes = {str(n): _versions(file, f"nodes.{n}", v) for n, v in (data.get("nodes") or {}).items()}
    etcd = data.get("etcd") or {}
    if not isinstance(etcd, Mapping):
        raise ScenarioError(file, None, "etcd", "expected a mapping (cacert, cert, key, endpoint)")
    tls = EtcdTLS(**{k: etcd[k] for k in ("cacert", "cert", "key", "endpoint") if k in etcd})
    budget = _typed(file, "pods_budget", userinput.seconds, data.get("pods_budget", 120))
    kube_proxy_remove = _typed(file, "kube_proxy_remove", userinput.strict_bool, data.get("kube_proxy_remove", False))
    dns_mode = data.get("dns_mode", "coredns")
    if not isinstance(dns_mode, str) or not dns_mode:
        raise ScenarioError(file, None, "dns_mode", "expected Kubespray's dns_mode (coredns, coredns_dual, manual, none)")
    return Expectation(
        installer=installer,
        versions=_versions(file, "versions", data.get("versions") or {}),
        nodes=nodes,
        kube_proxy_remove=kube_proxy_remove,
        dns_mode=dns_mode,
        canaries=tuple(canaries),
        etcd_tls=tls,
        etcd_keys={str(k): str(v) for k, v in (data.get("etcd_keys") or {}).items()},
        pods_budget=budget,
    )


Row = tuple[str, str, str, str, str]  # node, component, expected, observed, status


@dataclass
class VerifyReport:
    results: list[CheckResult]
    rows: list[Row]  # the per-node version table
    # Remedies applied before `results` were collected (--fix-stale-tokens); shown, not counted.
    remedies: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        applicable = [r for r in self.results if r.applicable]
        return bool(applicable) and all(r.passed for r in applicable)


def version_rows(expected: Mapping[str, Mapping[str, str]], observed: Mapping[str, Mapping[str, str | None]],
                 notes: Mapping[str, Mapping[str, str]] | None = None) -> list[Row]:
    """One row per expected (node, component); `notes` (harness.probes.hosts.version_notes) are added
    to the observed cell: the version judged is the running file's, and other copies are said."""
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
            shown = got if got is not None else ("absent" if comp in seen else "not observed")
            note = (notes or {}).get(node, {}).get(comp)
            rows.append((node, comp, "any" if want == ANY else want, f"{shown}; {note}" if note else shown, status))
    return rows


def report(facts: Facts, expect: Expectation, remedies: list[CheckResult] | None = None) -> VerifyReport:
    return VerifyReport(suite.judge(facts, expect),
                        version_rows(suite.expected_per_node(facts, expect), facts.observed, facts.notes), remedies or [])


def api_access(expect: Expectation, kubeconfig: Path | None) -> ApiAccess | None:
    """How the real client reaches the cluster's API: None without a kubeconfig."""
    if kubeconfig is None:
        return None
    return ApiAccess(kubeconfig, canaries=expect.canaries, pods_budget=expect.pods_budget)


def _no_api(cluster: Cluster, expect: Expectation, api: ApiAccess | None) -> str:
    """Why there is no API to ask ("" when there is one)."""
    if expect.installer == "lab" and not components.pins_kubernetes(expect.versions):
        return "the lab installer runs no Kubernetes (none without kube_version)"
    if api is None:
        return "no kubeconfig (--kubeconfig, or <inventory dir>/artifacts/admin.conf)"
    if not cluster.with_role("control-plane"):
        return "no control-plane node in the inventory"
    return ""


def run_verify(
    cluster: Cluster,
    expect: Expectation,
    api: ApiAccess | None = None,
    fix_stale_tokens: bool = False,
    probe: HostProbe | None = None,
    collect: Callable[..., Facts] | None = None,
) -> VerifyReport:
    """Collect, judge; with `fix_stale_tokens` and stale tokens found, apply the remedy, then collect
    and judge again: the verdict is about the cluster as the fix left it. `collect` defaults to
    `suite.collect` (tests hand in a bundle of facts)."""
    collect = collect or suite.collect
    no_api = _no_api(cluster, expect, api)
    if no_api:
        api = None

    def facts() -> Facts:
        return collect(cluster, installer=expect.installer, tls=expect.etcd_tls, etcd_keys=list(expect.etcd_keys),
                       api=api, no_api=no_api, probe=probe)

    first = facts()
    if not (fix_stale_tokens and api is not None and first.pod_tokens):
        return report(first, expect)
    fixed = suite.fix_stale_tokens(cluster, first, api)
    if not fixed.applicable:  # nothing was stale: the first collection stands
        return report(first, expect)
    return report(facts(), expect, [fixed])
