"""CI matrix rows from the catalogue: one job per scenario."""

from __future__ import annotations

import json
from typing import Any

import yaml

from harness.scenario.model import Release, Scenario


def _point(rel: Release) -> str:
    """A release as one short string: the ref, then pinned versions."""
    parts = [rel.ref] if rel.ref else []
    parts += [f"{k.removesuffix('_version')}={v}" for k, v in sorted(rel.versions.items())]
    return " ".join(parts) or "defaults"


def row(sc: Scenario) -> dict[str, Any]:
    return {
        "id": sc.id,
        "path": sc.path,
        "from": _point(sc.baseline),
        "to": _point(sc.target),
        "installer": sc.installer,
        "components": sc.components(),
        "tags": list(sc.tags),
        "gate": sc.gate,
        "requires": sorted(sc.requirements()),
        # Select exactly this scenario's items in a matrix job: `pytest scenarios/ -k "[$K]"`; -k matches
        # substrings, and without the brackets `lab-etcd:component:etcd` would select `x-lab-etcd:component:etcd` too.
        "k": sc.test_id,
    }


def render(scenarios: list[Scenario], fmt: str) -> str:
    rows = [row(sc) for sc in scenarios]
    if fmt == "github":
        return json.dumps({"include": rows}, separators=(",", ":"))
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "gitlab":
        # GitLab's parallel:matrix wants variables with list values.
        matrix = [
            {
                "SCENARIO": [r["id"]],
                "UPGRADE_PATH": [r["path"]],
                "FROM": [r["from"]],
                "TO": [r["to"]],
                "INSTALLER": [r["installer"]],
                "GATE": [r["gate"]],
                # `pytest -k "[$K]"`: the brackets make it this scenario's items only (see the "k" above)
                "K": [r["k"]],
            }
            for r in rows
        ]
        return yaml.safe_dump({"parallel": {"matrix": matrix}}, sort_keys=False)
    raise ValueError(f"unknown matrix format {fmt!r}")
