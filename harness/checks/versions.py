"""Expected versus observed component versions, per node.

The expectation: the target version for what the path upgrades, the baseline for the rest. A
component-tagged run must leave the rest unchanged, so an untouched component the scenario does not
pin is expected at the version the pre-upgrade record saw on that node.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from harness import components
from harness.checks.result import VERSION_HEADERS, CheckResult, text_table
from harness.errors import PlanError
from harness.plan.versions import Version, same_version
from harness.probes.facts import PreUpgradeRecord
from harness.scenario.model import Scenario
from harness.text import plural

ANY = "*"  # expected: present, whatever the version


def components_for_roles(roles: Iterable[str], installer: str = "kubespray", kube: bool = False) -> tuple[str, ...]:
    """The names a node of these roles must report when `installer` deployed it (harness.components):
    the lab installer puts containerd and runc on every node and etcd on etcd nodes, and with `kube`
    (kube_version pinned) its Kubernetes: kubelet and kube-proxy everywhere, the control plane and
    kubectl on control-plane nodes."""
    return tuple(dict.fromkeys(n for c in components.on_roles(roles, installer, kube) for n in c.required))


def expected_versions_per_node(
    nodes: Mapping[str, Iterable[str]],
    versions: Mapping[str, str],
    installer: str = "kubespray",
    pre: PreUpgradeRecord | None = None,
    upgraded: Iterable[str] | None = None,
    present: Mapping[str, Mapping[str, str | None]] | None = None,
) -> dict[str, dict[str, str]]:
    """node -> component -> expected version.

    `nodes` maps node -> roles; `versions` maps component -> version (a scenario's
    `expected_versions()` or a verify file). Components the run must not touch (`upgraded` given and
    the component not in it) that `versions` does not pin are expected at their pre-upgrade version.
    Optional tools (`components.optional_names`) are expected where the pre-upgrade record saw them, and where `present`
    (what is observed now) shows them and a pin covers them: etcdutl on a node that has it must be at
    the etcd pin.
    """
    moved = set(upgraded) if upgraded is not None else None
    optional = components.optional_names()
    kube = components.pins_kubernetes(versions)
    out: dict[str, dict[str, str]] = {}
    for node, roles in nodes.items():
        roles = tuple(roles)
        wanted = list(components_for_roles(roles, installer, kube))
        seen_before = pre.versions.get(node, {}) if pre else {}
        here = present.get(node, {}) if present else {}
        wanted += [c for c in optional if c not in wanted
                   and (seen_before.get(c) or (here.get(c) and components.observed_as(c) in versions))]
        per: dict[str, str] = {}
        for comp in wanted:
            key = components.observed_as(comp)
            if key in versions:
                per[comp] = versions[key]
            elif moved is not None and key not in moved and seen_before.get(comp):
                per[comp] = str(seen_before[comp])
            elif comp not in optional or comp in components_for_roles(roles, installer, kube):
                per[comp] = ANY  # required but unpinned: it must at least be there
        out[node] = per
    return out


def expected_for_scenario(
    scenario: Scenario, nodes: Mapping[str, Iterable[str]], pre: PreUpgradeRecord | None = None,
    resolved: Mapping[str, str] | None = None,
) -> dict[str, dict[str, str]]:
    """The scenario's expectation per node (see `scenario_versions`)."""
    return expected_versions_per_node(nodes, scenario_versions(scenario, resolved), scenario.installer, pre,
                                      scenario.upgraded_components())


def scenario_versions(scenario: Scenario, resolved: Mapping[str, str] | None = None) -> dict[str, str]:
    """component -> version a scenario's run must end at: its pins, and for upgraded components it
    does not pin, what the installer resolved from the target ref's defaults (`resolved`)."""
    versions = dict(scenario.expected_versions())
    upgraded = scenario.upgraded_components()
    for comp, v in (resolved or {}).items():
        if comp in upgraded:
            versions.setdefault(comp, v)
    return versions


def versions_match(expected: str, observed: str) -> bool:
    try:
        return same_version(expected, observed)
    except PlanError:
        return expected.strip() == observed.strip()


def check_versions(
    observed: Mapping[str, Mapping[str, str | None]],
    expected: Mapping[str, Mapping[str, str]],
    name: str = "versions",
    notes: Mapping[str, Mapping[str, str]] | None = None,
) -> CheckResult:
    """Every expected (node, component) is present at its expected version; `v3.5.16` == `3.5.16`.
    `notes` (node -> component -> text: another copy on PATH, ...) go beside the judged versions."""
    rows: list[tuple[str, str, str, str]] = []
    said: list[tuple[str, str, str]] = []
    total = 0
    for node in sorted(expected):
        seen = observed.get(node)
        for comp, want in sorted(expected[node].items()):
            if note := (notes or {}).get(node, {}).get(comp):
                said.append((node, comp, note))
            total += 1
            if seen is None:
                rows.append((node, comp, want, "node not probed"))
                continue
            got = seen.get(comp)
            if got is None:
                if want == ANY and comp not in seen:
                    total -= 1  # nothing pinned and nothing probed: no claim either way
                    continue
                rows.append((node, comp, want, "absent" if comp in seen else "not observed"))
            elif want != ANY and not versions_match(want, got):
                rows.append((node, comp, want, got))
    if total == 0:
        return CheckResult.not_applicable(name, "no component has an expected version")
    noted = ("\n\n" if rows else "") + text_table(("node", "component", "note"), said) if said else ""
    if not rows:
        return CheckResult.ok(name, f"{plural(total, 'component version')} as expected on {len(expected)} node(s)", noted)
    return CheckResult.fail(
        name,
        f"{len(rows)} of {plural(total, 'component version')} differ from expected",
        text_table(VERSION_HEADERS, rows) + noted,
        rows,
    )


def check_unchanged(
    before: Mapping[str, Mapping[str, str | None]],
    after: Mapping[str, Mapping[str, str | None]],
    untouched: Iterable[str],
    name: str = "untouched components unchanged",
) -> CheckResult:
    """A component-tagged run must not move components outside its tags."""
    keep = set(untouched)
    rows: list[tuple[str, str, str, str]] = []
    for node, comps in sorted(before.items()):
        for comp, old in sorted(comps.items()):
            if components.observed_as(comp) not in keep or old is None:
                continue
            new = after.get(node, {}).get(comp)
            if new is None or not versions_match(old, new):
                rows.append((node, comp, old, new or "absent"))
    if not keep:
        return CheckResult.not_applicable(name, "the path upgrades every component")
    if not rows:
        return CheckResult.ok(name, f"{', '.join(sorted(keep))} unchanged")
    return CheckResult.fail(name, f"{len(rows)} component(s) the run should not touch changed",
                            text_table(VERSION_HEADERS, rows), rows)


def minor_line(version: str) -> tuple[int, int]:
    return Version.parse(version).minor_line
