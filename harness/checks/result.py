"""What every check returns, plus the plain-text table its failure messages use."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from harness.text import plural


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict. `applicable=False` means "n/a": neither a pass nor a failure."""

    name: str
    passed: bool
    summary: str
    details: str = ""
    applicable: bool = True
    # node -> component -> (expected, observed) for mismatches; the CLI turns it into its table
    rows: tuple[tuple[str, str, str, str], ...] = field(default=())
    # The results `combine` folded into this one, so a report can still list each of them.
    parts: tuple[CheckResult, ...] = field(default=())

    @classmethod
    def ok(cls, name: str, summary: str, details: str = "") -> CheckResult:
        return cls(name, True, summary, details)

    @classmethod
    def fail(
        cls, name: str, summary: str, details: str = "", rows: Sequence[tuple[str, str, str, str]] = ()
    ) -> CheckResult:
        return cls(name, False, summary, details, rows=tuple(rows))

    @classmethod
    def not_applicable(cls, name: str, reason: str) -> CheckResult:
        return cls(name, False, reason, applicable=False)

    @property
    def status(self) -> str:
        if not self.applicable:
            return "n/a"
        return "pass" if self.passed else "FAIL"

    @property
    def message(self) -> str:
        text = f"{self.name}: {self.summary}"
        return f"{text}\n{self.details}" if self.details else text


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An aligned plain-text table; plain so it reads the same in a terminal, a log and JUnit XML."""
    cells = [list(headers), *[[str(c) for c in r] for r in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


VERSION_HEADERS = ("node", "component", "expected", "observed")


def assert_check(result: CheckResult) -> None:
    """Make a pytest item a one-liner: fail with the check's message, skip when n/a."""
    __tracebackhide__ = True
    if not result.applicable:
        import pytest  # only test items call this

        pytest.skip(f"{result.name}: n/a: {result.summary}")
    if not result.passed:
        raise AssertionError(result.message)


def combine(name: str, results: Sequence[CheckResult]) -> CheckResult:
    """Fold several results into one (used when a pytest item covers a family of checks)."""
    parts = tuple(results)
    applicable = [r for r in results if r.applicable]
    if not applicable:
        reason = "; ".join(r.summary for r in results) or "nothing to check"
        return replace(CheckResult.not_applicable(name, reason), parts=parts)
    failed = [r for r in applicable if not r.passed]
    if not failed:
        return replace(CheckResult.ok(name, f"{plural(len(applicable), 'check')} passed"), parts=parts)
    rows = tuple(row for r in failed for row in r.rows)
    details = "\n\n".join(r.message for r in failed)
    return replace(CheckResult.fail(name, f"{len(failed)} of {plural(len(applicable), 'check')} failed", details, rows), parts=parts)


def item_name(check: str) -> str:
    """A check's pytest item: its one name in Python's spelling (`etcd health` -> test_etcd_health).
    `-k` selects scenarios by their own words, not by these (harness.pytest_plugin), so a check is
    free to be named for what it judges."""
    return "test_" + re.sub(r"[^a-z0-9]+", "_", check.lower()).strip("_")
