"""The checks, applied to one scenario run: each function picks the facts a check needs out of a
`ScenarioRun` and the expectation out of its scenario, and returns the check's `CheckResult`.

Kept apart from the checks themselves so those stay small functions over plain facts.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.checks.certs import check_certs
from harness.checks.etcd import (
    check_etcd_cluster_version,
    check_etcd_healthy,
    check_etcd_member_versions,
    check_etcd_members,
)
from harness.checks.order import (
    check_etcd_before_control_plane,
    check_one_at_a_time,
    check_sample_order,
    check_task_order,
    check_version_skew,
    phase_order,
    serial_phases,
)
from harness.checks.result import CheckResult, combine
from harness.checks.state import PlantedState, check_planted_state
from harness.checks.units import check_units
from harness.checks.versions import OBSERVED_AS, check_unchanged, check_versions, expected_for_scenario
from harness.plan.versions import Version
from harness.probes.facts import StateFacts, TimelineEvent, timeline_from_jsonl
from harness.probes.hosts import observed_versions

if TYPE_CHECKING:
    from harness.pipeline import ScenarioRun

# Certificates must outlive the run by this much (Kubespray renews kube certs on upgrade).
CERT_MIN_DAYS = 30


def _expected(run: ScenarioRun) -> dict[str, dict[str, str]]:
    nodes = {h.node: h.roles for h in run.hosts}
    return expected_for_scenario(run.scenario, nodes, run.before, run.resolved)


def _split(run: ScenarioRun, upgraded: bool) -> dict[str, dict[str, str]]:
    moved = run.scenario.upgraded_components()
    return {
        node: {c: v for c, v in comps.items() if (OBSERVED_AS.get(c, c) in moved) == upgraded}
        for node, comps in _expected(run).items()
    }


def playbook_outcome(run: ScenarioRun) -> CheckResult:
    name = "playbook run"
    run.require("plan", "cluster", "baseline", "before")
    result = run.upgrade_result()
    if result is None:
        run.require("upgrade")
    expect = run.scenario.expect_failure
    if expect is None:
        if result.ok:
            return CheckResult.ok(name, f"upgrade run ended {result.status} (rc={result.rc})")
        return CheckResult.fail(name, f"upgrade run ended {result.status} (rc={result.rc})", result.summary)
    # A documented failure: it must happen, and at the documented task.
    failed_at = [f for f in result.failures() if expect.task.lower() in str(f).lower()]
    if result.ok:
        return CheckResult.fail(
            name,
            f"the documented failure did not happen: the run succeeded, so '{expect.task}' may be fixed;"
            " drop expect_failure from the scenario",
        )
    if not failed_at:
        return CheckResult.fail(name, f"the run failed, but not at '{expect.task}'", result.summary)
    return CheckResult.ok(
        name, f"failed at '{expect.task}' as documented: {expect.reason}; remedy: {expect.remedy}"
    )


def target_versions(run: ScenarioRun) -> CheckResult:
    run.require("after")
    return check_versions(observed_versions(run.hosts), _split(run, upgraded=True), "target versions")


def untouched_components(run: ScenarioRun) -> CheckResult:
    run.require("after")
    observed = observed_versions(run.hosts)
    moved = run.scenario.upgraded_components()
    assert run.before is not None
    untouched = {OBSERVED_AS.get(c, c) for comps in run.before.versions.values() for c in comps} - moved
    return combine(
        "untouched components",
        [
            check_versions(observed, _split(run, upgraded=False), "untouched at baseline"),
            check_unchanged(run.before.versions, observed, untouched),
        ],
    )


def units(run: ScenarioRun) -> CheckResult:
    run.require("after")
    return check_units(run.hosts)


def store_health(run: ScenarioRun) -> CheckResult:
    run.require("after")
    assert run.etcd is not None
    assert run.cluster is not None
    members = {n.name: n.address for n in run.cluster.with_role("etcd")}
    return combine("etcd health", [check_etcd_healthy(run.etcd, len(members)), check_etcd_members(run.etcd, members)])


def store_versions(run: ScenarioRun) -> CheckResult:
    run.require("after")
    assert run.etcd is not None and run.cluster is not None
    want = run.scenario.expected_versions().get("etcd") or run.resolved.get("etcd")
    if not want:
        return CheckResult.not_applicable("etcd versions", "the scenario pins no etcd version")
    v = Version.parse(want)
    # etcd's cluster version is MAJOR.MINOR.0 once every member runs the new minor.
    return combine(
        "etcd versions",
        [check_etcd_member_versions(run.etcd, want, {n.name: n.address for n in run.cluster.with_role("etcd")}),
         check_etcd_cluster_version(run.etcd, f"{v.major}.{v.minor}.0")],
    )


def certificates(run: ScenarioRun) -> CheckResult:
    run.require("after")
    return check_certs(run.hosts, CERT_MIN_DAYS)


def planted_state(run: ScenarioRun) -> CheckResult:
    run.require("after", "plant")
    if not run.planted_keys:
        return CheckResult.fail("planted state", "no etcd sentinel key was planted before the upgrade (see the plant stage)")
    return check_planted_state(PlantedState(etcd_keys=run.planted_keys), StateFacts(etcd_keys=run.etcd_keys))


def timeline(run: ScenarioRun) -> list[TimelineEvent]:
    result = run.upgrade_result()
    if result is None:
        return []
    return timeline_from_jsonl(Path(result.timeline_path).read_text())


def upgrade_order(run: ScenarioRun) -> CheckResult:
    run.require("upgrade")
    assert run.cluster is not None
    events = timeline(run)
    orders = {n.name: phase_order(run.scenario.path, n.roles) for n in run.cluster.nodes}
    results = [check_task_order(events, orders), check_sample_order(run.samples, orders)]
    if run.scenario.path == "graceful":
        touched = _phases_touched(run)
        for phase, hosts in serial_phases(run.scenario.installer, {n.name: n.roles for n in run.cluster.nodes}):
            if phase in touched:
                results.append(check_one_at_a_time(events, phase, hosts))
    return combine("upgrade order", results)


def _phases_touched(run: ScenarioRun) -> set[str]:
    from harness.checks.order import COMPONENT_PHASE

    return {COMPONENT_PHASE[c] for c in run.scenario.upgraded_components() if c in COMPONENT_PHASE}


def idempotence(run: ScenarioRun) -> CheckResult:
    from harness.upgrade.runner import recap_changed

    run.require("idempotence")
    second = run.results["idempotence"]
    changed = {h: n for h, n in recap_changed(second).items() if n}
    if not second.ok:
        return CheckResult.fail("idempotence", f"the second run failed ({second.status})", second.summary)
    if changed:
        return CheckResult.fail(
            "idempotence",
            "the second run of the same path changed things: " + ", ".join(f"{h} changed={n}" for h, n in sorted(changed.items())),
        )
    return CheckResult.ok("idempotence", "second run: changed=0 on every host")


# -- Kubernetes API ------------------------------------------------------------------------


def _kube(run: ScenarioRun):  # type: ignore[no-untyped-def]
    run.require("after")
    kube = getattr(run, "kube", None)
    if kube is None:
        raise AssertionError(f"no Kubernetes API facts were collected for {run.scenario.id} (see the 'after' step)")
    return kube


def version_skew(run: ScenarioRun) -> CheckResult:
    run.require("upgrade")
    return combine("version skew", [check_version_skew(run.samples), check_etcd_before_control_plane(run.samples)])


def apiserver_versions(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_apiserver_versions

    cp = [n.name for n in run.scenario.topology.with_role("control-plane")]
    return check_apiserver_versions(_kube(run), cp, _expected_kube(run, "kube-apiserver"))


def nodes_ready(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_nodes_ready

    return check_nodes_ready(_kube(run), [n.name for n in run.scenario.topology.nodes])


def node_versions(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_node_versions

    exp = run.scenario.expected_versions()
    return check_node_versions(
        _kube(run), _expected_kube(run, "kubelet"), exp.get("containerd") or run.resolved.get("containerd")
    )


def static_pods(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_static_pods

    cp = [n.name for n in run.scenario.topology.with_role("control-plane")]
    return check_static_pods(_kube(run), cp, _expected_kube(run, "kube-apiserver"))


def kube_proxy(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_kube_proxy

    return check_kube_proxy(_kube(run), bool(run.scenario.extra_vars.get("kube_proxy_remove", False)))


def dns_service(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_coredns

    return check_coredns(_kube(run))


def pods_healthy(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_pods_healthy, check_restarts

    kube = _kube(run)
    results = [check_pods_healthy(kube)]
    if getattr(run, "kube_before", None) is not None:
        results.append(check_restarts(kube, run.kube_before))
    return combine("pods", results)


def canaries(run: ScenarioRun) -> CheckResult:
    from harness.checks.kube import check_canaries

    pre = getattr(run, "kube_before", None)
    if pre is None:
        return CheckResult.fail("canaries", "no pre-upgrade record of the canary Deployments (plant stage)")
    return check_canaries(_kube(run), pre)


def tokens(run: ScenarioRun) -> CheckResult:
    from harness.checks.tokens import check_pod_tokens, check_pre_upgrade_token

    _kube(run)
    pod_tokens = getattr(run, "pod_tokens", None)
    if pod_tokens is None:
        return CheckResult.fail("service-account tokens", "pod tokens were not collected")
    return combine(
        "service-account tokens",
        [
            check_pod_tokens(pod_tokens, run.scenario.rotates_sa_key),
            check_pre_upgrade_token(getattr(run, "minted_review", None), run.scenario.rotates_sa_key),
        ],
    )


def _expected_kube(run: ScenarioRun, component: str) -> str:
    want = run.scenario.expected_versions().get(component) or run.resolved.get(component)
    if not want:
        raise AssertionError(f"{run.scenario.id}: no expected {component} version (pinned or resolved from the ref)")
    return want
