"""The shipped check items: `-k WORD` for a component, tag or path selects the items of exactly the
scenarios whose own words carry WORD (whatever the checks are named: `etcd health` is a check of
every scenario), `--check NAME` selects checks, and the item set per scenario matches what the
scenario can be checked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.checks.suite import CHECKS
from harness.components import version_vars
from harness.plan.tags import COMPONENT_TAGS
from harness.scenario import load_catalogue
from harness.scenario.model import Scenario
from harness.scenario.select import keywords
from tests.conftest import REPO

WORDS = sorted({*COMPONENT_TAGS, *(v.removesuffix("_version") for v in version_vars()),
                "full", "graceful", "component", "lab", "kubespray", "docker", "download"})


def _collect(*args: str) -> list[str]:
    r = subprocess.run([sys.executable, "-m", "pytest", "scenarios/", "--collect-only", "-q", *args],
                       check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode in (0, 5), r.stdout + r.stderr
    return [line for line in r.stdout.splitlines() if "::" in line]


@pytest.fixture(scope="module")
def all_ids() -> list[str]:
    return _collect()


def _scenario_of(item_id: str) -> Scenario:
    test_id = item_id.split("[", 1)[1].removesuffix("]")
    return next(sc for sc in load_catalogue([REPO / "scenarios"]) if sc.test_id == test_id)


@pytest.mark.parametrize("word", WORDS)
def test_k_word_selects_the_scenarios_whose_words_carry_it(word, all_ids):
    expected = [i for i in all_ids if any(word in k.lower() for k in keywords(_scenario_of(i)))]
    selected = _collect("-k", word)
    assert selected == expected


def test_k_etcd_leaves_the_etcd_checks_of_scenarios_without_etcd(all_ids):
    """The check is named for what it judges; `-k etcd` still means the scenarios that touch etcd."""
    untouched = {i for i in all_ids if "etcd" not in " ".join(keywords(_scenario_of(i)))}
    assert any(i.split("::")[1].startswith("test_etcd_health[") for i in untouched)
    assert not untouched & set(_collect("-k", "etcd"))
    assert set(_collect("-k", "not etcd")) == untouched


def test_check_selects_one_check_across_scenarios(all_ids):
    chosen = _collect("--check", "etcd health", "--check", "playbook run")
    assert sorted(chosen) == sorted(i for i in all_ids if i.split("::")[1].split("[")[0] in ("test_etcd_health", "test_playbook_run"))
    both = _collect("--check", "etcd health", "-k", "graceful")
    assert both and all("graceful" in i.split("[", 1)[1] and "test_etcd_health[" in i for i in both)


def test_an_unknown_check_is_refused_naming_the_known_ones():
    r = subprocess.run([sys.executable, "-m", "pytest", "scenarios/", "--collect-only", "-q", "--check", "etcd helth"],
                       check=False, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 4, r.stdout + r.stderr
    assert "--check 'etcd helth': no such check" in r.stderr and "etcd health" in r.stderr


def test_item_names_are_the_check_names():
    from harness.checks.result import item_name

    assert {CHECKS[n].item for n in CHECKS} == {item_name(n) for n in CHECKS}
    assert item_name("etcd health") == "test_etcd_health" and item_name("kube-proxy") == "test_kube_proxy"


def test_every_scenario_gets_the_common_checks(all_ids):
    for sc in load_catalogue([REPO / "scenarios"]):
        mine = {i.split("::")[1].split("[")[0] for i in all_ids if f"[{sc.test_id}]" in i}
        assert {"test_playbook_run", "test_target_versions", "test_untouched_components", "test_units",
                "test_etcd_health", "test_planted_state", "test_upgrade_order"} <= mine
        api = {"test_nodes_ready", "test_apiserver_versions", "test_service_account_tokens", "test_dns"}
        if "kubernetes" in sc.requirements():
            assert api <= mine
        else:
            assert not api & mine
        assert ("test_idempotence" in mine) == sc.idempotence


def test_the_items_are_the_suites_table(all_ids):
    """A check is added once, in harness.checks.suite.CHECKS: each entry is an item, and nothing else is
    but the disruption budget items (harness.checks.disruption.BUDGET_ITEMS)."""
    from harness.checks.disruption import BUDGET_ITEMS, budget_check
    from harness.checks.result import item_name

    names = {i.split("::")[1].split("[")[0] for i in all_ids}
    assert names == {c.item for c in CHECKS.values()} | {item_name(budget_check(k)) for k in BUDGET_ITEMS}


def test_budget_items_are_the_kinds_each_scenario_budgets(all_ids):
    """One disruption item per probe kind a scenario's budgets judge, none for a scenario without budgets."""
    from harness.checks.disruption import BUDGET_ITEMS, budget_check, scenario_budgeted_kinds
    from harness.checks.result import item_name

    items = {item_name(budget_check(kind)): kind for kind in BUDGET_ITEMS}
    for sc in load_catalogue([REPO / "scenarios"]):
        mine = {items[n] for i in all_ids if f"[{sc.test_id}]" in i and (n := i.split("::")[1].split("[")[0]) in items}
        assert mine == set(scenario_budgeted_kinds(sc)), sc.id
        assert bool(mine) == bool(sc.budgets), sc.id
