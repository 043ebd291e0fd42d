"""Post-upgrade checks: one test item per check and scenario, generated from the suite's table
(`harness.checks.suite.CHECKS`), which `harness verify` runs too. A check is added there, once.

Ids read `test_<check>[<scenario>:<path>:<components>]`, the check's one name spelt for Python
(`etcd health` -> `test_etcd_health`). `-k` selects scenarios by their own words (id, path, the
components they touch: `-k etcd` the scenarios that touch etcd, `-k graceful` the graceful ones) and
`--check NAME` selects checks (harness.pytest_plugin).

Every item measures the cluster; the playbook's exit code is one item among them, never the proof.

Disruption (harness.checks.disruption): one item per probe kind a scenario budgets
(`harness.checks.disruption.BUDGET_ITEMS`), judging each backend of that kind against its budget,
with every backend's measured seconds and outages as JUnit properties. Backends of kinds no budget
judges are reported as properties of the playbook-run item, not as items that could never fail.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.checks import disruption, run_view
from harness.checks.result import assert_check, item_name
from harness.checks.suite import CHECKS, Check


def _item(check: Check) -> Callable[..., None]:
    mark = pytest.mark.check(check.name, needs=check.needs)
    if check.name == "playbook run":
        @mark
        def item(scenario_run: Any, record_property: Callable[[str, object], None]) -> None:
            for key, value in disruption.unbudgeted_properties(scenario_run):
                record_property(key, value)
            assert_check(run_view.check(scenario_run, check.name))
    else:
        @mark
        def item(scenario_run: Any) -> None:
            assert_check(run_view.check(scenario_run, check.name))

    item.__name__ = item.__qualname__ = check.item
    item.__doc__ = check.doc
    return item


def _budget_item(kind: str, doc: str) -> Callable[..., None]:
    @pytest.mark.check(disruption.budget_check(kind), needs=f"budget:{kind}")
    def item(scenario_run: Any, record_property: Callable[[str, object], None]) -> None:
        result, props = disruption.judge_run(scenario_run, kind)
        for key, value in props:  # recorded first: a failing item still carries what was measured
            record_property(key, value)
        scenario_run.require("upgrade")
        assert_check(result)

    item.__name__ = item.__qualname__ = item_name(disruption.budget_check(kind))
    item.__doc__ = doc
    return item


for _check in CHECKS.values():
    globals()[_check.item] = _item(_check)
for _kind, _doc in disruption.BUDGET_ITEMS.items():
    globals()[item_name(disruption.budget_check(_kind))] = _budget_item(_kind, _doc)
del _check, _kind, _doc
