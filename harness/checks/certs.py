"""Certificates must not expire within N days (kubeadm renews them on upgrade; a missed renewal shows here)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import HostFacts
from harness.text import plural

DEFAULT_MIN_DAYS = 30


def check_certs(hosts: Iterable[HostFacts], min_days: int = DEFAULT_MIN_DAYS, now: datetime | None = None) -> CheckResult:
    name = f"certificates valid > {plural(min_days, 'day')}"
    now = now or datetime.now(UTC)
    limit = now + timedelta(days=min_days)
    rows: list[tuple[str, str, str]] = []
    unreachable: list[str] = []
    total = 0
    for h in hosts:
        if h.error is not None:
            unreachable.append(h.error)  # its certificates are unknown: the error is the finding
            continue
        for path, c in sorted(h.certs.items()):
            total += 1
            if c.not_after is None:
                rows.append((h.node, path, f"unreadable: {c.error}"))
            elif c.not_after <= limit:
                days = (c.not_after - now).total_seconds() / 86400
                state = "EXPIRED" if days < 0 else f"{plural(round(days), 'day')} left"
                rows.append((h.node, path, f"{c.not_after:%Y-%m-%d %H:%M} UTC ({state})"))
    if unreachable:
        other = (f"; {len(rows)} of {total} certificate(s) on the other nodes expire within {plural(min_days, 'day')} or are"
                 " unreadable") if rows else ""
        return CheckResult.fail(name, "; ".join(unreachable) + other,
                                text_table(("node", "certificate", "notAfter"), rows) if rows else "")
    if total == 0:
        return CheckResult.fail(name, "no certificate found on any node (wrong paths?)")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {total} certificate(s) expire within {plural(min_days, 'day')} or are"
                                " unreadable", text_table(("node", "certificate", "notAfter"), rows))
    return CheckResult.ok(name, f"{total} certificate(s) valid beyond {limit:%Y-%m-%d}")
