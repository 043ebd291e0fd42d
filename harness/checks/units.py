"""Node state: each role's systemd units exist, run and are enabled (an upgrade that leaves etcd
disabled breaks on reboot), and no node rebooted during the upgrade (its boot id is unchanged)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import HostFacts


def check_units(hosts: Iterable[HostFacts]) -> CheckResult:
    name = "units active and enabled"
    rows: list[tuple[str, str, str]] = []
    unreachable: list[str] = []
    total = 0
    for h in hosts:
        if h.error is not None:
            unreachable.append(h.error)  # nothing is known of its units: the error is the finding
            continue
        for u in h.units.values():
            total += 1
            if not u.exists:
                rows.append((h.node, u.name, "not installed"))
            elif not (u.active and u.enabled):
                state = ", ".join(s for s, bad in (("inactive", not u.active), ("disabled", not u.enabled)) if bad)
                rows.append((h.node, u.name, state))
    table = text_table(("node", "unit", "state"), rows) if rows else ""
    if unreachable:
        other = f"; {len(rows)} of {total} unit(s) on the other nodes not active and enabled" if rows else ""
        return CheckResult.fail(name, "; ".join(unreachable) + other, table)
    if total == 0:
        return CheckResult.not_applicable(name, "no unit was probed")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {total} unit(s) not active and enabled", table)
    return CheckResult.ok(name, f"{total} unit(s) active and enabled")


def check_reboots(before: Mapping[str, str], hosts: Iterable[HostFacts],
                  unprobed_before: Mapping[str, str] | None = None) -> CheckResult:
    """Each node's boot id now against the one recorded before the upgrade (`PreUpgradeRecord.boot_ids`;
    `unprobed_before`: its `unprobed`, the nodes that could not be asked then).

    A node that rebooted mid-upgrade is named even when everything else looks right: it explains an
    ssh failure or a restarted pod, and Kubespray's upgrade paths do not reboot nodes."""
    name = "no node rebooted"
    missed = dict(unprobed_before or {})
    if not before and not missed:
        return CheckResult.not_applicable(name, "no boot id was recorded before the upgrade")
    lines: list[str] = []
    total = 0
    for h in hosts:
        total += 1
        if h.error is not None:
            lines.append(h.error)
        elif h.node in missed:
            lines.append(f"before the upgrade: {missed[h.node]}")
        elif h.node not in before:
            lines.append(f"{h.node}: no boot id was recorded before the upgrade")
        elif h.boot_id is None:
            lines.append(f"{h.node}: boot id unreadable after the upgrade: {h.errors.get('boot_id', 'not probed')}")
        elif h.boot_id != before[h.node]:
            lines.append(f"{h.node} rebooted during the upgrade (boot id changed)")
    if lines:
        return CheckResult.fail(name, "; ".join(lines))
    return CheckResult.ok(name, f"{total} node(s) kept their boot id")
