"""The shipped check items: every `-k WORD` for a component, tag or path selects only scenarios
whose id carries WORD (check names must not contain such words), and the item set per scenario
matches what the scenario can be checked for."""

from __future__ import annotations

import subprocess
import sys

import pytest

from harness.components import version_vars
from harness.plan.tags import COMPONENT_TAGS
from harness.scenario import load_catalogue
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


@pytest.mark.parametrize("word", WORDS)
def test_k_word_matches_only_ids_carrying_it(word, all_ids):
    expected = [i for i in all_ids if word in i.split("[", 1)[1]]
    selected = _collect("-k", word)
    assert selected == expected


def test_every_scenario_gets_the_common_checks(all_ids):
    for sc in load_catalogue([REPO / "scenarios"]):
        mine = {i.split("::")[1].split("[")[0] for i in all_ids if f"[{sc.test_id}]" in i}
        assert {"test_playbook_run", "test_target_versions", "test_others_unchanged", "test_units_active",
                "test_store_health", "test_planted_state", "test_upgrade_order"} <= mine
        api = {"test_all_ready", "test_apiserver_versions", "test_service_account_tokens", "test_resolver_service"}
        if "kubernetes" in sc.requirements():
            assert api <= mine
        else:
            assert not api & mine
        assert ("test_second_run_changes_nothing" in mine) == sc.idempotence


def test_the_items_are_the_suites_table(all_ids):
    """A check is added once, in harness.checks.suite.CHECKS: each entry is an item, and nothing else is
    but the disruption budget items (harness.checks.disruption.BUDGET_ITEMS)."""
    from harness.checks.disruption import BUDGET_ITEMS
    from harness.checks.suite import CHECKS

    names = {i.split("::")[1].split("[")[0] for i in all_ids}
    assert names == {c.item for c in CHECKS.values()} | {item for item, _ in BUDGET_ITEMS.values()}


def test_budget_items_are_the_kinds_each_scenario_budgets(all_ids):
    """One disruption item per probe kind a scenario's budgets judge, none for a scenario without budgets."""
    from harness.checks.disruption import BUDGET_ITEMS, scenario_budgeted_kinds

    items = {item: kind for kind, (item, _) in BUDGET_ITEMS.items()}
    for sc in load_catalogue([REPO / "scenarios"]):
        mine = {items[n] for i in all_ids if f"[{sc.test_id}]" in i and (n := i.split("::")[1].split("[")[0]) in items}
        assert mine == set(scenario_budgeted_kinds(sc)), sc.id
        assert bool(mine) == bool(sc.budgets), sc.id
