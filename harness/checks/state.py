"""Planted state survives the upgrade: etcd sentinel keys, a ConfigMap, a Secret, canary data.

Secret values are compared as SHA-256 digests so neither side ever holds them in a message.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import StateFacts


def digest(value: str | bytes) -> str:
    data = value.encode() if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class PlantedState:
    """What was planted before the upgrade. `secret_digests` holds digests; use `digest()` to build it."""

    etcd_keys: dict[str, str] = field(default_factory=dict)
    configmaps: dict[str, dict[str, str]] = field(default_factory=dict)
    secret_digests: dict[str, dict[str, str]] = field(default_factory=dict)
    canary_data: dict[str, str] = field(default_factory=dict)


def _short(v: str | None) -> str:
    if v is None:
        return "missing"
    return v if len(v) <= 40 else v[:37] + "..."


def _compare_maps(kind: str, want: Mapping[str, Mapping[str, str]], got: Mapping[str, Mapping[str, str] | None],
                  secret: bool) -> list[tuple[str, str, str, str]]:
    rows = []
    for obj, data in sorted(want.items()):
        seen = got.get(obj)
        if seen is None:
            rows.append((kind, obj, "present", "missing"))
            continue
        for k, v in sorted(data.items()):
            if seen.get(k) != v:
                # A Secret's value never appears, not even its digest: say only that it differs.
                shown = ("missing" if k not in seen else "differs") if secret else _short(seen.get(k))
                rows.append((kind, f"{obj}:{k}", "(secret)" if secret else _short(v), shown))
    return rows


def check_planted_state(planted: PlantedState, observed: StateFacts) -> CheckResult:
    name = "planted state intact"
    rows: list[tuple[str, str, str, str]] = []
    for key, value in sorted(planted.etcd_keys.items()):
        got = observed.etcd_keys.get(key)
        if got != value:
            rows.append(("etcd key", key, _short(value), _short(got)))
    rows += _compare_maps("ConfigMap", planted.configmaps, observed.configmaps, secret=False)
    rows += _compare_maps("Secret", planted.secret_digests, observed.secret_digests, secret=True)
    for key, value in sorted(planted.canary_data.items()):
        got = observed.canary_data.get(key)
        if got != value:
            rows.append(("canary data", key, _short(value), _short(got)))
    total = (len(planted.etcd_keys) + len(planted.configmaps) + len(planted.secret_digests)
             + len(planted.canary_data))
    if total == 0:
        return CheckResult.not_applicable(name, "nothing was planted")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} planted item(s) lost or changed",
                                text_table(("kind", "item", "planted", "read back"), rows))
    return CheckResult.ok(name, f"{total} planted item(s) read back unchanged")
