"""Post-upgrade checks: one test item per check and scenario, generated from the suite's table
(`harness.checks.suite.CHECKS`), which `harness verify` runs too. A check is added there, once.

Ids read `test_<check>[<scenario>:<path>:<components>]`, so `-k etcd` selects the scenarios that
touch etcd and `-k graceful` the graceful ones. Item names stay clear of component and path words
on purpose: `-k` matches test names too.

Every item measures the cluster; the playbook's exit code is one item among them, never the proof.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from harness.checks import run_view
from harness.checks.result import assert_check
from harness.checks.suite import CHECKS, Check


def _item(check: Check) -> Callable[[Any], None]:
    @pytest.mark.check(check.name, needs=check.needs, after_upgrade=check.after_upgrade)
    def item(scenario_run: Any) -> None:
        assert_check(run_view.check(scenario_run, check.name))

    item.__name__ = item.__qualname__ = check.item
    item.__doc__ = check.doc
    return item


for _check in CHECKS.values():
    globals()[_check.item] = _item(_check)
del _check
