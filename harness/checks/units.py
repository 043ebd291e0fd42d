"""systemd units: each role's units exist, run and are enabled (an upgrade that leaves etcd disabled breaks on reboot)."""

from __future__ import annotations

from collections.abc import Iterable

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import HostFacts


def check_units(hosts: Iterable[HostFacts]) -> CheckResult:
    name = "units active and enabled"
    rows: list[tuple[str, str, str]] = []
    total = 0
    for h in hosts:
        for u in h.units.values():
            total += 1
            if not u.exists:
                rows.append((h.node, u.name, "not installed"))
            elif not (u.active and u.enabled):
                state = ", ".join(s for s, bad in (("inactive", not u.active), ("disabled", not u.enabled)) if bad)
                rows.append((h.node, u.name, state))
    if total == 0:
        return CheckResult.not_applicable(name, "no unit was probed")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {total} unit(s) not active and enabled",
                                text_table(("node", "unit", "state"), rows))
    return CheckResult.ok(name, f"{total} unit(s) active and enabled")
