"""The check suite: collect once, judge once.

`collect` gathers one `Facts` bundle from a cluster (host probes, etcd, the Kubernetes API, pod
tokens, the pre-upgrade token's review) together with what a run recorded (version samples, the
upgrade's timeline, the playbook runs). `judge` runs the table `CHECKS` over (facts, `Expectation`).
The pytest items (scenarios/test_upgrade.py, one per entry of the table) and `harness verify` call
these same two functions, so a check is added here once and both report it the same way.

Remedies are their own step: `fix_stale_tokens` deletes pods whose token went stale; the caller then
collects and judges again, so a verdict is always about the cluster as it is.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from harness import components
from harness.checks import certs as cert_checks
from harness.checks import etcd as etcd_checks
from harness.checks import kube as kube_checks
from harness.checks import order as order_checks
from harness.checks import tokens as token_checks
from harness.checks.canary import check_container_canary
from harness.checks.result import CheckResult, combine, item_name
from harness.checks.state import PlantedState, check_planted_state
from harness.checks.units import check_reboots, check_units
from harness.checks.versions import (
    ANY,
    check_unchanged,
    check_versions,
    expected_versions_per_node,
    scenario_versions,
)
from harness.cluster.base import Cluster, Node
from harness.plan.tags import normalise_tags
from harness.probes import kube as kube_probe
from harness.probes import tokens as token_probe
from harness.probes.collected import Facts, RunRecord
from harness.probes.facts import (
    EtcdFacts,
    HostFacts,
    KubeFacts,
    NodeStateSample,
    PodTokenFacts,
    PreUpgradeRecord,
    StateFacts,
    TokenReviewResult,
    VersionSample,
    unprobed,
)
from harness.probes.hosts import EtcdTLS, HostProbe
from harness.scenario.model import ExpectedFailure, Scenario
from harness.text import plural
from harness.upgrade.runner import RunResult
from harness.upgrade.timeline import TaskRecord

# -- facts ------------------------------------------------------------------------------------


def run_records(results: Mapping[str, RunResult]) -> dict[str, RunRecord]:
    """stage purpose -> its run, from a pipeline's `RunResult`s."""
    return {purpose: RunRecord.of(r) for purpose, r in results.items()}


def run_timeline(results: Mapping[str, RunResult]) -> tuple[TaskRecord, ...]:
    """The upgrade run's timeline, as the runner recorded it (the one timeline record type)."""
    upgrade = results.get("upgrade")
    return upgrade.records if upgrade is not None else ()


@dataclass(frozen=True)
class ApiAccess:
    """How `collect` reaches the Kubernetes API. The defaults are the real client; tests hand in a
    fake apiserver's config, address and token reader."""

    kubeconfig: Path
    canaries: tuple[str, ...] = ()  # namespace/name Deployments to read
    pods_budget: float = 120.0  # seconds to wait for nodes and pods to settle
    minted_token: Path | None = None  # a token minted before the upgrade: read, reviewed, dropped
    load_config: Callable[[Path], Any] = kube_probe.load_config
    server_for: Callable[[Node], str] | None = None  # a control-plane node's own apiserver URL
    # None: exec `cat` in the pod, else the token file on the pod's node over the cluster's ssh
    token_reader: token_probe.TokenReader | None = None

    def reader(self, cluster: Cluster) -> token_probe.TokenReader:
        if self.token_reader is not None:
            return self.token_reader
        return token_probe.token_reader(lambda node, command: cluster.run(node, command).stdout)


def collect(
    cluster: Cluster,
    *,
    installer: str,
    tls: EtcdTLS | None = None,
    etcd_keys: Sequence[str] = (),
    api: ApiAccess | None = None,
    no_api: str = "no kubeconfig",
    samples: Iterable[VersionSample] = (),
    node_states: Iterable[NodeStateSample] = (),
    timeline: Iterable[TaskRecord] = (),
    runs: Mapping[str, RunRecord] | None = None,
    errors: Mapping[str, str] | None = None,
    probe: HostProbe | None = None,
) -> Facts:
    """One facts bundle for the checks. What cannot be collected is recorded in `errors`, not raised:
    the checks that need it fail saying why, the others still report (a broken API does not hide
    the host versions)."""
    probe = probe or HostProbe(cluster, tls=tls, installer=installer)
    errs = dict(errors or {})
    hosts: list[HostFacts] = []
    etcd: EtcdFacts | None = None
    keys: dict[str, str | None] = {}
    # etcd's view beside the host facts, not after them: each is seconds on an emulated guest.
    with ThreadPoolExecutor(max_workers=1) as pool:
        from_etcd = pool.submit(probe.etcd, keys=list(etcd_keys)) if cluster.with_role("etcd") else None
        try:
            hosts = probe.all_host_facts()
        except Exception as e:  # noqa: BLE001  an unreachable node is a finding, reported by the checks
            errs["hosts"] = _why(e)
        if from_etcd is not None:
            try:
                etcd, keys = from_etcd.result()
            except Exception as e:  # noqa: BLE001
                errs["etcd"] = _why(e)
    kube: KubeFacts | None = None
    tokens: tuple[PodTokenFacts, ...] | None = None
    review: TokenReviewResult | None = None
    if api is not None:
        try:
            kube, tokens, review = _collect_api(cluster, api)
        except Exception as e:  # noqa: BLE001  status and reason only: an API error body may echo a token
            errs["api"] = kube_probe.api_error(e)
    return Facts(
        nodes={n.name: tuple(n.roles) for n in cluster.nodes},
        addresses={n.name: n.address for n in cluster.nodes},
        hosts=tuple(hosts), etcd=etcd, etcd_keys=keys, kube=kube, no_api=no_api if api is None else "",
        pod_tokens=tokens, minted_review=review, samples=tuple(samples), node_states=tuple(node_states),
        timeline=tuple(timeline),
        runs=dict(runs or {}), errors=errs,
    )


def _collect_api(cluster: Cluster, api: ApiAccess) -> tuple[KubeFacts, tuple[PodTokenFacts, ...], TokenReviewResult | None]:
    cfg = api.load_config(api.kubeconfig)
    k8s_nodes = [n.name for n in cluster.nodes if {"control-plane", "worker"} & set(n.roles)]
    kube = kube_probe.collect_kube_facts(cfg, cluster.with_role("control-plane"), api.canaries,
                                         pods_budget=api.pods_budget, server_for=api.server_for,
                                         expected_nodes=k8s_nodes)
    review = None
    with kube_probe.api_client(cfg) as client:
        tokens = token_probe.collect_pod_tokens(client, kube.pods, api.reader(cluster))
        if api.minted_token is not None:
            # The token lives only in this SecretStr and the review's request.
            review = token_probe.review_token(client, SecretStr(api.minted_token.read_text().strip()))
    return kube, tuple(tokens), review


def _why(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:300] if text else ''}".rstrip(": ")


# -- the remedy ---------------------------------------------------------------------------------


def fix_stale_tokens(cluster: Cluster, facts: Facts, api: ApiAccess, timeout: float = 300,
                     interval: float = 5) -> CheckResult:
    """Delete each pod whose token was rejected so its controller recreates it with a fresh one.
    Not a check: the caller collects and judges again afterwards."""
    stale = token_checks.stale_pods(facts.pod_tokens or ())
    if not stale:
        return CheckResult.not_applicable("fix stale tokens", "no stale token to fix")
    with kube_probe.api_client(api.load_config(api.kubeconfig)) as client:
        return token_checks.fix_stale_tokens(client, stale, api.reader(cluster), timeout=timeout, interval=interval)


# -- the expectation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpgradeExpectation:
    """What an upgrade run adds: what moves, what was there before, how the run must end."""

    path: str  # full | graceful | component
    upgraded: frozenset[str]  # components the path moves; the rest must stay put
    before: PreUpgradeRecord  # host versions before the upgrade
    kube_before: PreUpgradeRecord | None = None  # pod restarts and canary UIDs before (plant stage)
    expect_failure: ExpectedFailure | None = None  # a documented failure the run must hit
    serial: str = "20%"  # upgrade-cluster.yml's worker batch (Kubespray's default), from extra_vars
    tags: tuple[str, ...] = ()  # the component path's `--tags` (normalised): what put each task in the run


@dataclass(frozen=True)
class Expectation:
    """What the cluster must look like: from a scenario and its before-facts (`for_scenario`), or from
    an `--expect` file (harness.checks.verify.load_expectation). `upgrade` is None for the latter."""

    installer: str = "kubespray"  # which components each role must have (versions.components_for_roles)
    versions: dict[str, str] = field(default_factory=dict)  # component -> version
    nodes: dict[str, dict[str, str]] = field(default_factory=dict)  # per-node overrides
    kube_proxy_remove: bool = False
    # Kubespray's dns_mode: `none` deploys no cluster DNS, so the CoreDNS check has nothing to judge.
    dns_mode: str = "coredns"
    canaries: tuple[str, ...] = ()  # namespace/name Deployments that must exist and be available
    etcd_tls: EtcdTLS = field(default_factory=EtcdTLS)
    etcd_keys: dict[str, str] = field(default_factory=dict)  # sentinel keys that must read back
    require_planted: bool = False  # a scenario plants keys: none planted is a failure, not n/a
    pods_budget: float = 120.0
    cert_days: int = cert_checks.DEFAULT_MIN_DAYS
    rotates_sa_key: bool = False
    upgrade: UpgradeExpectation | None = None

    @classmethod
    def for_scenario(
        cls, scenario: Scenario, before: PreUpgradeRecord | None, resolved: Mapping[str, str] | None = None,
        planted_keys: Mapping[str, str] | None = None, kube_before: PreUpgradeRecord | None = None,
    ) -> Expectation:
        return cls(
            installer=scenario_installer(scenario),
            versions=scenario_versions(scenario, resolved),
            kube_proxy_remove=bool(scenario.extra_vars.get("kube_proxy_remove", False)),
            dns_mode=str(scenario.extra_vars.get("dns_mode", "coredns")),
            etcd_keys=dict(planted_keys or {}),
            require_planted=True,
            pods_budget=max(scenario.budgets.values(), default=300.0),
            rotates_sa_key=scenario.rotates_sa_key,
            upgrade=UpgradeExpectation(
                path=scenario.path,
                upgraded=frozenset(scenario.upgraded_components()),
                before=before or PreUpgradeRecord(taken_at=datetime.now(UTC)),
                kube_before=kube_before,
                expect_failure=scenario.expect_failure,
                serial=str(scenario.extra_vars.get("serial", "20%")),
                tags=tuple(normalise_tags(scenario.tags)) if scenario.path == "component" else (),
            ),
        )

    def version_for(self, component: str) -> str | None:
        """The version `component` must run cluster-wide: pinned (or resolved), or for a component the
        upgrade does not move, the one version the pre-upgrade record saw for it or for a component
        sharing its variable (kube-apiserver follows kubelet and kubeadm: all are kube_version)."""
        if component in self.versions:
            return self.versions[component]
        up = self.upgrade
        if up is None or component in up.upgraded:
            return None
        comp = components.find(component)
        siblings = set(components.components_of_var(comp.var)) if comp else {component}
        seen = {v for per in up.before.versions.values() for c, v in per.items()
                if v and components.observed_as(c) in siblings}
        return seen.pop() if len(seen) == 1 else None


def scenario_installer(scenario: Scenario) -> str:
    """Which component table a scenario's nodes are held to: the table of the installer that deployed
    them. A lab-deployed baseline's nodes carry the lab's components (its Kubernetes where it pins
    kube_version), whichever installer upgrades them: Kubespray's etcd and engine roles over it install
    no kubelet, and its node role adds no crictl."""
    if scenario.baseline_installer == "lab":
        return "lab"
    return scenario.installer if "kubernetes" in scenario.requirements() else "lab"


def expected_per_node(facts: Facts, expect: Expectation) -> dict[str, dict[str, str]]:
    """node -> component -> expected version, for the nodes the facts describe."""
    up = expect.upgrade
    out = expected_versions_per_node(facts.nodes, expect.versions, expect.installer,
                                     pre=up.before if up else None, upgraded=up.upgraded if up else None,
                                     present=facts.observed)
    for node, per in out.items():
        for comp, want in per.items():
            # Unpinned, and not seen on this node before: the one version the component shows
            # cluster-wide (Expectation.version_for), the same the API checks hold it to.
            if want == ANY and (known := expect.version_for(components.observed_as(comp))):
                per[comp] = known
    for node, overrides in expect.nodes.items():
        out.setdefault(node, {}).update(overrides)
    if expect.kube_proxy_remove:
        # Removed on purpose: its absence is the kube-proxy check's to judge, not a missing row.
        out = {node: {c: v for c, v in per.items() if c != "kube-proxy"} for node, per in out.items()}
    if facts.kube is None and "api" not in facts.errors:
        # No API, and none expected: what only the API can show is not expected; its checks say n/a and why.
        api_only = components.api_only()
        out = {node: {c: v for c, v in per.items() if c not in api_only} for node, per in out.items()}
    return out


def _split(expected: Mapping[str, Mapping[str, str]], moved: frozenset[str], upgraded: bool) -> dict[str, dict[str, str]]:
    return {node: {c: v for c, v in per.items() if (components.observed_as(c) in moved) == upgraded}
            for node, per in expected.items()}


# -- the checks ---------------------------------------------------------------------------------------


def _hosts_missing(facts: Facts, name: str) -> CheckResult | None:
    if "hosts" in facts.errors:
        return CheckResult.fail(name, f"host facts could not be collected: {facts.errors['hosts']}")
    return None


def _etcd_missing(facts: Facts, name: str) -> CheckResult | None:
    if not facts.with_role("etcd"):
        return CheckResult.not_applicable(name, "no etcd node in the inventory")
    if facts.etcd is None:
        return CheckResult.fail(name, f"etcd facts could not be collected: {facts.errors.get('etcd', 'not collected')}")
    return None


def _api(facts: Facts, name: str) -> KubeFacts | CheckResult:
    if facts.kube is not None:
        return facts.kube
    if "api" in facts.errors:
        return CheckResult.fail(name, f"the Kubernetes API could not be read: {facts.errors['api']}")
    return CheckResult.not_applicable(name, f"no Kubernetes API: {facts.no_api}")


def _upgrade(expect: Expectation) -> UpgradeExpectation:
    if expect.upgrade is None:
        raise ValueError("an upgrade-run check was asked of an expectation without an upgrade")
    return expect.upgrade


def _playbook(facts: Facts, expect: Expectation) -> CheckResult:
    name = "playbook run"
    run = facts.runs.get("upgrade")
    if run is None:
        return CheckResult.fail(name, "no upgrade run was recorded")
    said = f"upgrade run ended {run.status} (rc={run.rc})"
    documented = _upgrade(expect).expect_failure
    if documented is None or documented.task is None:
        return CheckResult.ok(name, said) if run.ok else CheckResult.fail(name, said, run.summary)
    if run.ok:
        return CheckResult.fail(name, f"the documented failure did not happen: the run succeeded, so"
                                f" '{documented.task}' may be fixed; drop expect_failure from the scenario")
    if not any(documented.task.lower() in where.lower() for where in run.failed_at):
        return CheckResult.fail(name, f"the run failed, but not at '{documented.task}'", run.summary)
    return CheckResult.ok(name, f"failed at '{documented.task}' as documented: {documented.reason};"
                          f" remedy: {documented.remedy}")


def _with_unprobed(facts: Facts, name: str, result: CheckResult, before: Mapping[str, str] | None = None) -> CheckResult:
    """`result` judged the nodes that were probed; each node whose probe failed (now, or `before` the
    upgrade) fails the check too, with its one line (never a version row per component it could not read)."""
    bad = unprobed(facts.hosts)
    lines = [bad[n] for n in sorted(bad)] + [f"before the upgrade: {why}" for _n, why in sorted((before or {}).items())]
    if not lines:
        return result
    failed = CheckResult.fail(name, "; ".join(lines))
    return failed if not result.applicable else combine(name, [result, failed])


def _target_versions(facts: Facts, expect: Expectation) -> CheckResult:
    name = "target versions"
    if missing := _hosts_missing(facts, name):
        return missing
    expected = expected_per_node(facts, expect)
    if expect.upgrade is not None:
        expected = _split(expected, expect.upgrade.upgraded, upgraded=True)
    bad = unprobed(facts.hosts)
    expected = {n: per for n, per in expected.items() if n not in bad}
    return _with_unprobed(facts, name, check_versions(facts.observed, expected, name, facts.notes))


def _untouched(facts: Facts, expect: Expectation) -> CheckResult:
    name = "untouched components"
    if missing := _hosts_missing(facts, name):
        return missing
    up = _upgrade(expect)
    observed = facts.observed
    untouched = {components.observed_as(c) for comps in up.before.versions.values() for c in comps} - up.upgraded
    bad = unprobed(facts.hosts)
    expected = {n: per for n, per in expected_per_node(facts, expect).items() if n not in bad}
    before = {n: comps for n, comps in up.before.versions.items() if n not in bad}
    return _with_unprobed(facts, name, combine(name, [
        check_versions(observed, _split(expected, up.upgraded, upgraded=False), "untouched at baseline"),
        check_unchanged(before, observed, untouched),
    ]), up.before.unprobed)


def _units(facts: Facts, expect: Expectation) -> CheckResult:
    return _hosts_missing(facts, "units") or check_units(facts.hosts)


def _reboots(facts: Facts, expect: Expectation) -> CheckResult:
    before = _upgrade(expect).before
    return _hosts_missing(facts, "reboots") or check_reboots(before.boot_ids, facts.hosts, before.unprobed)


def _certificates(facts: Facts, expect: Expectation) -> CheckResult:
    return _hosts_missing(facts, "certificates") or cert_checks.check_certs(facts.hosts, expect.cert_days)


def _etcd_nodes(facts: Facts) -> dict[str, str]:
    return {n: facts.addresses.get(n, "") for n in facts.with_role("etcd")}


def _store_health(facts: Facts, expect: Expectation) -> CheckResult:
    name = "etcd health"
    if missing := _etcd_missing(facts, name):
        return missing
    assert facts.etcd is not None
    members = _etcd_nodes(facts)
    return combine(name, [etcd_checks.check_etcd_healthy(facts.etcd, len(members), members),
                          etcd_checks.check_etcd_members(facts.etcd, members)])


def _store_versions(facts: Facts, expect: Expectation) -> CheckResult:
    name = "etcd versions"
    if missing := _etcd_missing(facts, name):
        return missing
    assert facts.etcd is not None
    want = expect.version_for("etcd")
    if not want:
        return CheckResult.not_applicable(name, "no etcd version expected (pin etcd_version)")
    # The cluster version is MAJOR.MINOR.0: check_etcd_cluster_version compares minor lines.
    return combine(name, [etcd_checks.check_etcd_member_versions(facts.etcd, want, _etcd_nodes(facts)),
                          etcd_checks.check_etcd_cluster_version(facts.etcd, want)])


def _planted(facts: Facts, expect: Expectation) -> CheckResult:
    name = "planted state"
    if not facts.with_role("etcd"):
        return CheckResult.not_applicable(name, "no etcd node in the inventory")
    if not expect.etcd_keys:
        if expect.require_planted:
            return CheckResult.fail(name, "no etcd sentinel key was planted before the upgrade (see the plant stage)")
        return CheckResult.not_applicable(name, "no sentinel key to read back (etcd_keys)")
    if missing := _etcd_missing(facts, name):
        return missing
    return check_planted_state(PlantedState(etcd_keys=dict(expect.etcd_keys)), StateFacts(etcd_keys=dict(facts.etcd_keys)))


def _container_canary(facts: Facts, expect: Expectation) -> CheckResult:
    # require_planted: a scenario's plant stage started one wherever ctr was; verify judges what it finds.
    return (_hosts_missing(facts, "container canary")
            or check_container_canary(facts.hosts, require_planted=expect.require_planted))


def _order(facts: Facts, expect: Expectation) -> CheckResult:
    name = "upgrade order"
    up = _upgrade(expect)
    if "upgrade" not in facts.runs:
        return CheckResult.fail(name, "no upgrade run was recorded")
    orders = {n: order_checks.phase_order(up.path, roles) for n, roles in facts.nodes.items()}
    results = [order_checks.check_task_order(facts.timeline, orders, up.tags),
               order_checks.check_sample_order(facts.samples, orders)]
    if up.path == "graceful":
        phases = components.sample_phases()
        touched = {phases[c] for c in up.upgraded if c in phases}
        for phase, hosts in order_checks.serial_phases(expect.installer, facts.nodes):
            if phase in touched:
                results.append(order_checks.check_one_at_a_time(facts.timeline, phase, hosts))
        if facts.kube is not None:
            nodes, cp = _k8s_nodes(facts), facts.with_role("control-plane")
            workers = len(set(nodes) - set(cp))
            results.append(order_checks.check_cordon_order(
                facts.node_states, cp, nodes, order_checks.serial_count(up.serial, workers)))
    return combine(name, results)


def _idempotence(facts: Facts, expect: Expectation) -> CheckResult:
    name = "idempotence"
    second = facts.runs.get("idempotence")
    if second is None:
        return CheckResult.fail(name, "no second run was recorded")
    if not second.ok:
        return CheckResult.fail(name, f"the second run failed ({second.status})", second.summary)
    changed = {h: n for h, n in second.changed.items() if n}
    if changed:
        return CheckResult.fail(name, "the second run of the same path changed things: "
                                + ", ".join(f"{h} changed={n}" for h, n in sorted(changed.items())))
    return CheckResult.ok(name, "second run: changed=0 on every host")


def _skew(facts: Facts, expect: Expectation) -> CheckResult:
    name = "version skew"
    skew = order_checks.check_version_skew(facts.samples)
    if not skew.applicable and facts.with_role("control-plane"):
        # With a control plane every sampling round asks each apiserver and every kubelet: no
        # evaluable sample means the sampler failed, which must not pass as "n/a".
        why = facts.errors.get("samples")
        return CheckResult.fail(name, f"no version sample during the upgrade had both a kube-apiserver and a"
                                f" kubelet version ({plural(len(facts.samples), 'sample')})" + (f"; sampling: {why}" if why else ""))
    return combine(name, [skew, order_checks.check_etcd_before_control_plane(facts.samples)])


def _apiserver_versions(facts: Facts, expect: Expectation) -> CheckResult:
    name = "apiserver versions"
    kube = _api(facts, name)
    if isinstance(kube, CheckResult):
        return kube
    want = expect.version_for("kube-apiserver")
    if not want:
        return CheckResult.not_applicable(name, "no kube version expected (pin kube_version)")
    return kube_checks.check_apiserver_versions(kube, facts.with_role("control-plane"), want)


def _k8s_nodes(facts: Facts) -> list[str]:
    """Kubernetes nodes: control-plane and worker hosts (Kubespray registers no etcd-only host)."""
    return sorted(n for n, roles in facts.nodes.items() if {"control-plane", "worker"} & set(roles))


def _nodes_ready(facts: Facts, expect: Expectation) -> CheckResult:
    kube = _api(facts, "nodes ready")
    if isinstance(kube, CheckResult):
        return kube
    return kube_checks.check_nodes_ready(kube, _k8s_nodes(facts), expect.pods_budget)


def _node_versions(facts: Facts, expect: Expectation) -> CheckResult:
    kube = _api(facts, "node versions")
    if isinstance(kube, CheckResult):
        return kube
    return kube_checks.check_node_versions(kube, expect.version_for("kubelet"), expect.version_for("containerd"))


def _static_pods(facts: Facts, expect: Expectation) -> CheckResult:
    name = "static pods"
    kube = _api(facts, name)
    if isinstance(kube, CheckResult):
        return kube
    # Each pod against its own expectation, the versions table's: a controller-manager pinned apart
    # from kube_version is judged at its pin, in both places.
    per_node = expected_per_node(facts, expect)
    want = {node: {c: per_node.get(node, {}).get(c, ANY) for c in components.static_pods()}
            for node in facts.with_role("control-plane")}
    if want and all(v == ANY for per in want.values() for v in per.values()):
        return CheckResult.not_applicable(name, "no kube version expected (pin kube_version)")
    return kube_checks.check_static_pods(kube, want)


def _kube_proxy(facts: Facts, expect: Expectation) -> CheckResult:
    kube = _api(facts, "kube-proxy")
    if isinstance(kube, CheckResult):
        return kube
    return kube_checks.check_kube_proxy(kube, expect.kube_proxy_remove, _k8s_nodes(facts),
                                        expect.version_for("kube-proxy"))


def _dns(facts: Facts, expect: Expectation) -> CheckResult:
    if expect.dns_mode == "none":
        return CheckResult.not_applicable("dns", "dns_mode: none: the cluster is deployed without DNS")
    kube = _api(facts, "dns")
    return kube if isinstance(kube, CheckResult) else kube_checks.check_coredns(kube)


def _pods(facts: Facts, expect: Expectation) -> CheckResult:
    name = "pods"
    kube = _api(facts, name)
    if isinstance(kube, CheckResult):
        return kube
    results = [kube_checks.check_pods_healthy(kube, expect.pods_budget)]
    before = expect.upgrade.kube_before if expect.upgrade else None
    if before is not None:
        results.append(kube_checks.check_restarts(kube, before))
    return combine(name, results)


def _canaries(facts: Facts, expect: Expectation) -> CheckResult:
    name = "canaries"
    kube = _api(facts, name)
    if isinstance(kube, CheckResult):
        return kube
    if expect.upgrade is not None:
        if expect.upgrade.kube_before is None:
            return CheckResult.fail(name, "no pre-upgrade record of the canary Deployments (plant stage)")
        return kube_checks.check_canaries(kube, expect.upgrade.kube_before)
    # Without a pre-upgrade record there are no UIDs to compare: each listed canary must exist and be available.
    if not expect.canaries:
        return CheckResult.not_applicable(name, "no canary Deployment listed (canaries)")
    found = {d.key: d for d in kube.canaries}
    bad = []
    for key in sorted(expect.canaries):
        d = found.get(key)
        if d is None:
            bad.append(f"{key}: missing")
        elif d.replicas == 0 or d.ready_replicas < d.replicas:
            bad.append(f"{key}: {d.ready_replicas}/{d.replicas} ready")
    if bad:
        return CheckResult.fail(name, f"{len(bad)} of {len(expect.canaries)} canary Deployment(s) missing or"
                                " unavailable", "\n".join(bad))
    return CheckResult.ok(name, f"{len(expect.canaries)} canary Deployment(s) available")


def _tokens(facts: Facts, expect: Expectation) -> CheckResult:
    name = "service-account tokens"
    kube = _api(facts, name)
    if isinstance(kube, CheckResult):
        return kube
    if facts.pod_tokens is None:
        return CheckResult.fail(name, "pod tokens were not collected")
    return combine(name, [token_checks.check_pod_tokens(facts.pod_tokens, expect.rotates_sa_key),
                          token_checks.check_pre_upgrade_token(facts.minted_review, expect.rotates_sa_key)])


# -- the table -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    """One named check: the same name in this table, the report and the docs; its pytest item is that
    name spelt for Python (`item`). `needs` which scenarios get the item (the pytest plugin's `check` marker: etcd | kubernetes |
    idempotence); `requires` the pipeline steps whose failure fails the item before judging."""

    name: str
    judge: Callable[[Facts, Expectation], CheckResult]
    doc: str
    upgrade_only: bool = False  # about an upgrade run: not part of `harness verify`
    needs: str | None = None
    requires: tuple[str, ...] = ("after",)

    @property
    def item(self) -> str:
        return item_name(self.name)


CHECKS: dict[str, Check] = {c.name: c for c in (
    Check("playbook run", _playbook,
          "The run ended as the scenario expects: success, or the documented failure at its task.",
          upgrade_only=True, requires=("plan", "cluster", "baseline", "before", "upgrade")),
    Check("target versions", _target_versions,
          "Every component the path upgrades (verify: every expected one) is at its version on every node that has it."),
    Check("untouched components", _untouched,
          "Components outside the path stay at their baseline version (a tagged run moves only its tags).",
          upgrade_only=True, requires=("before", "after")),
    Check("units", _units, "Each role's systemd units exist, run and are enabled."),
    Check("reboots", _reboots,
          "No node rebooted during the upgrade: its boot id is the one recorded before it.",
          upgrade_only=True, requires=("before", "after")),
    Check("etcd health", _store_health, "etcd: every member healthy and listed.",
          needs="etcd"),
    Check("etcd versions", _store_versions,
          "etcd: each member's server version and the cluster version.", needs="etcd"),
    Check("certificates", _certificates, "No certificate expires within the limit."),
    Check("planted state", _planted, "State planted before the upgrade is intact after it.",
          needs="etcd", requires=("before", "after")),
    Check("container canary", _container_canary,
          "A container started with ctr on each containerd node before the upgrade still runs with the same PID.",
          requires=("before", "after")),
    Check("upgrade order", _order,
          "Per node, components changed in the installer's order; graceful paths went one node at a time.",
          upgrade_only=True, requires=("upgrade",)),
    Check("idempotence", _idempotence,
          "A second run of the same path changes nothing.", upgrade_only=True, needs="idempotence",
          requires=("idempotence",)),
    Check("version skew", _skew,
          "At every sample: no kubelet newer than the oldest apiserver nor too far behind; etcd before the control plane.",
          upgrade_only=True, needs="kubernetes", requires=("upgrade",)),
    Check("apiserver versions", _apiserver_versions,
          "Each control-plane node's own apiserver serves the expected version.", needs="kubernetes"),
    Check("nodes ready", _nodes_ready, "Every Kubernetes node is registered, Ready and schedulable.",
          needs="kubernetes"),
    Check("node versions", _node_versions, "nodeInfo: kubelet and container runtime versions.",
          needs="kubernetes"),
    Check("static pods", _static_pods,
          "Control-plane static pods Running, Ready, at the expected image.", needs="kubernetes"),
    Check("kube-proxy", _kube_proxy,
          "kube-proxy runs everywhere, or is absent when the inventory removed it.", needs="kubernetes"),
    Check("dns", _dns, "CoreDNS Service ports target the containers' ports and have endpoints.",
          needs="kubernetes"),
    Check("pods", _pods, "Every pod Running and Ready; none restarted during the upgrade.",
          needs="kubernetes"),
    Check("canaries", _canaries,
          "Canary Deployments kept their UID (verify: exist) and are available.", needs="kubernetes"),
    Check("service-account tokens", _tokens,
          "Pods' service-account tokens, and one minted before the upgrade, still authenticate.", needs="kubernetes"),
)}


def judge(facts: Facts, expect: Expectation, names: Iterable[str] | None = None) -> list[CheckResult]:
    """The named checks (all that apply by default: an upgrade's every check, a plain cluster's all
    but the upgrade-run ones), each result named as in the table. A check that crashes is a FAIL
    with its traceback; the other verdicts stand."""
    if names is None:
        chosen = [c for c in CHECKS.values() if expect.upgrade is not None or not c.upgrade_only]
    else:
        unknown = [n for n in names if n not in CHECKS]
        if unknown:
            raise KeyError(f"no check named {', '.join(map(repr, unknown))}; known: {', '.join(CHECKS)}")
        chosen = [CHECKS[n] for n in names]
    documented = expect.upgrade.expect_failure if expect.upgrade is not None else None
    if documented is not None and documented.check is not None and documented.check not in CHECKS:
        raise KeyError(f"expect_failure.check {documented.check!r} names no check; known: {', '.join(CHECKS)}")
    out = []
    for check in chosen:
        if check.upgrade_only and expect.upgrade is None:
            out.append(CheckResult.not_applicable(check.name, "not an upgrade run"))
            continue
        try:
            result = check.judge(facts, expect)
        except Exception as e:  # noqa: BLE001  a bug in one check must not hide the other verdicts
            result = CheckResult.fail(check.name, f"the check crashed: {type(e).__name__}: {e}",
                                      "".join(traceback.format_exception(e)[-6:]))
        result = result if result.name == check.name else replace(result, name=check.name)
        if documented is not None and documented.check == check.name:
            result = _as_documented(result, documented)
        out.append(result)
    return out


def _as_documented(result: CheckResult, documented: ExpectedFailure) -> CheckResult:
    """A check the scenario documents as failing: its failure passes, saying why and what to do
    instead, with every row it found; its passing fails, for the scenario to be updated."""
    if result.passed or not result.applicable:
        outcome = "passed" if result.passed else "was not applicable"
        return CheckResult.fail(result.name, f"the documented failure did not happen: the check {outcome}, so it"
                                " may be fixed; drop expect_failure from the scenario", result.message)
    return CheckResult.ok(result.name, f"failed as documented ({result.summary}): {documented.reason};"
                          f" remedy: {documented.remedy}", result.details)
