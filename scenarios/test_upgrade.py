"""Post-upgrade checks: one test item per check and scenario.

Ids read `test_<check>[<scenario>:<path>:<components>]`, so `-k etcd` selects the scenarios that
touch etcd and `-k graceful` the graceful ones. Check names here stay clear of component and path
words on purpose: `-k` matches test names too.

Every item measures the cluster; the playbook's exit code is one item among them, never the proof.
"""

from __future__ import annotations

import pytest

from harness.checks import run_view as view
from harness.checks.result import assert_check


@pytest.mark.check("playbook", after_upgrade=False)
def test_playbook_run(scenario_run):
    """The run ended as the scenario expects: success, or the documented failure at its task."""
    assert_check(view.playbook_outcome(scenario_run))


@pytest.mark.check("target versions")
def test_target_versions(scenario_run):
    """Every component the path upgrades is at the target version on every node that has it."""
    assert_check(view.target_versions(scenario_run))


@pytest.mark.check("untouched")
def test_others_unchanged(scenario_run):
    """Components outside the path stay at their baseline version (a tagged run moves only its tags)."""
    assert_check(view.untouched_components(scenario_run))


@pytest.mark.check("units")
def test_units_active(scenario_run):
    assert_check(view.units(scenario_run))


@pytest.mark.check("store", needs="etcd")
def test_store_health(scenario_run):
    """etcd: every member healthy and listed."""
    assert_check(view.store_health(scenario_run))


@pytest.mark.check("store versions", needs="etcd")
def test_store_member_versions(scenario_run):
    """etcd: each member's server version and the cluster version."""
    assert_check(view.store_versions(scenario_run))


@pytest.mark.check("certificates")
def test_certificates(scenario_run):
    assert_check(view.certificates(scenario_run))


@pytest.mark.check("planted state", needs="etcd")
def test_planted_state(scenario_run):
    """State planted before the upgrade is intact after it."""
    assert_check(view.planted_state(scenario_run))


@pytest.mark.check("order")
def test_upgrade_order(scenario_run):
    """Per node, components changed in Kubespray's order; graceful paths went one node at a time."""
    assert_check(view.upgrade_order(scenario_run))


@pytest.mark.check("idempotence", needs="idempotence")
def test_second_run_changes_nothing(scenario_run):
    assert_check(view.idempotence(scenario_run))


# -- Kubernetes API (generated only for scenarios with a control plane) ------------------------


@pytest.mark.check("skew", needs="kubernetes")
def test_version_skew(scenario_run):
    assert_check(view.version_skew(scenario_run))


@pytest.mark.check("apiservers", needs="kubernetes")
def test_apiserver_versions(scenario_run):
    assert_check(view.apiserver_versions(scenario_run))


@pytest.mark.check("nodes", needs="kubernetes")
def test_all_ready(scenario_run):
    assert_check(view.nodes_ready(scenario_run))


@pytest.mark.check("node versions", needs="kubernetes")
def test_agent_versions(scenario_run):
    assert_check(view.node_versions(scenario_run))


@pytest.mark.check("static pods", needs="kubernetes")
def test_static_pods(scenario_run):
    assert_check(view.static_pods(scenario_run))


@pytest.mark.check("kube-proxy", needs="kubernetes")
def test_proxy_daemonset(scenario_run):
    assert_check(view.kube_proxy(scenario_run))


@pytest.mark.check("dns", needs="kubernetes")
def test_resolver_service(scenario_run):
    assert_check(view.dns_service(scenario_run))


@pytest.mark.check("pods", needs="kubernetes")
def test_pods_healthy(scenario_run):
    assert_check(view.pods_healthy(scenario_run))


@pytest.mark.check("canaries", needs="kubernetes")
def test_canaries_kept(scenario_run):
    assert_check(view.canaries(scenario_run))


@pytest.mark.check("tokens", needs="kubernetes")
def test_service_account_tokens(scenario_run):
    assert_check(view.tokens(scenario_run))
