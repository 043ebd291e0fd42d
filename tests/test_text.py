"""Counts in what the harness prints: the noun agrees with the number."""

from __future__ import annotations

from harness.checks.result import CheckResult, combine
from harness.text import plural


def test_plural() -> None:
    assert [plural(n, "check") for n in (0, 1, 2)] == ["0 checks", "1 check", "2 checks"]
    assert plural(1, "other entry", "other entries") == "1 other entry"
    assert plural(3, "other entry", "other entries") == "3 other entries"


def test_a_family_of_one_check_says_one_check() -> None:
    """`harness verify` printed "1 checks passed" for a family with one applicable check."""
    one = combine("etcd versions", [CheckResult.ok("etcd member versions", "ok"),
                                    CheckResult.not_applicable("etcd cluster version", "n/a")])
    assert one.summary == "1 check passed"
    assert combine("x", [CheckResult.fail("a", "bad")]).summary == "1 of 1 check failed"
    two = combine("x", [CheckResult.ok("a", "ok"), CheckResult.fail("b", "bad")])
    assert two.summary == "1 of 2 checks failed"


def test_verify_and_the_session_report_count_one_as_one(capsys: object) -> None:
    """The last line of `harness verify` and the session report's heading, with one of each."""
    import pytest

    from harness.checks import cli
    from harness.checks.verify import VerifyReport
    from harness.report import session_report

    assert isinstance(capsys, pytest.CaptureFixture)
    cli._render(VerifyReport([CheckResult.ok("units", "3 unit(s) active and enabled")], []))
    assert "1 of 1 applicable check passed; 0 n/a" in capsys.readouterr().out
    row = session_report.Row("lab-etcd", "passed", "", 1.0, 1.0, "1 passed", "lab-etcd/report.html")
    assert session_report.render_markdown([row]).startswith("# Session: 1 of 1 scenario passed\n")
    assert "1 of 1 scenario passed</h1>" in session_report.render_html([row])
