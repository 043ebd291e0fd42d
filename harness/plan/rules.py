"""The rules a Kubespray upgrade must follow, and the hop plan that obeys them.

- No downgrade unless explicitly allowed.
- "Do not skip minor releases (patch releases are ok)": v2.29.0 -> v2.31.0 becomes
  v2.29.0 -> v2.30.<newest known> -> v2.31.0.
- kube_version may move by at most one minor per hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources

from harness.errors import PlanError
from harness.plan.versions import Ref, Version


def known_releases() -> list[Ref]:
    """Release tags shipped with the harness (used when no checkout is given)."""
    text = resources.files("harness.plan").joinpath("releases.txt").read_text()
    return release_refs(line for line in text.splitlines() if line and not line.startswith("#"))


def release_refs(tags: Iterable[str]) -> list[Ref]:
    """Keep the final release tags (vX.Y.Z) from a tag list, sorted; drop rc and odd tags."""
    refs = []
    for tag in tags:
        try:
            ref = Ref.parse(tag)
        except PlanError:
            continue
        if ref.version is not None and ref.version.pre is None:
            refs.append(ref)
    return sorted(refs, key=lambda r: r.version)  # type: ignore[arg-type,return-value]


@dataclass(frozen=True)
class Plan:
    source: Ref
    target: Ref
    hops: tuple[Ref, ...]  # every ref to deploy in order, source first, target last

    @property
    def steps(self) -> list[tuple[Ref, Ref]]:
        return list(zip(self.hops, self.hops[1:]))


def plan_hops(
    source: str | Ref,
    target: str | Ref,
    *,
    known: Iterable[str | Ref] | None = None,
    allow_downgrade: bool = False,
) -> Plan:
    """Plan the hops from `source` to `target`, one Kubespray minor at a time."""
    src = source if isinstance(source, Ref) else Ref.parse(source)
    dst = target if isinstance(target, Ref) else Ref.parse(target)
    if src.version is None or dst.version is None:
        # Branches and SHAs have no order we can know without a checkout: one hop, as asked.
        return Plan(src, dst, (src, dst))
    if dst.version < src.version and not allow_downgrade:
        raise PlanError(
            f"{src} -> {dst} is a downgrade; Kubespray does not support downgrades"
            " (pass --allow-downgrade to plan it anyway)"
        )
    if dst.version == src.version:
        return Plan(src, dst, (src, dst))
    releases = list(known_releases() if known is None else release_refs(str(k) for k in known))
    lo, hi = sorted((src.version, dst.version))
    hops = [src]
    for minor in range(lo.minor + 1, hi.minor):
        line = [r for r in releases if r.version and r.version.minor_line == (lo.major, minor)]
        if not line:
            raise PlanError(
                f"{src} -> {dst} skips Kubespray {lo.major}.{minor} and no v{lo.major}.{minor}.x"
                " release is known; pass a checkout with --kubespray so its tags can be read"
            )
        newest = max(line, key=lambda r: r.version)  # type: ignore[arg-type,return-value]
        hops.append(newest)
    if lo.major != hi.major:
        raise PlanError(f"{src} -> {dst} crosses a major release; plan it by hand")
    if src.version > dst.version:
        hops = [src, *reversed(hops[1:])]
    hops.append(dst)
    return Plan(src, dst, tuple(hops))


def check_minor_skip(source: Ref, target: Ref) -> None:
    """Refuse one run that skips a Kubespray minor (a plan has to hop instead)."""
    if source.version and target.version and target.version.minor - source.version.minor > 1:
        raise PlanError(
            f"{source} -> {target} skips a Kubespray minor release; upgrade one minor at a time:"
            f" {' -> '.join(str(h) for h in plan_hops(source, target).hops)}"
        )


def check_kube_version_step(source: str, target: str, *, allow_downgrade: bool = False) -> None:
    """kube_version may move forward by at most one minor per upgrade (kubeadm's rule)."""
    a, b = Version.parse(source), Version.parse(target)
    if b < a and not allow_downgrade:
        raise PlanError(f"kube_version {source} -> {target} is a downgrade")
    if a.major != b.major or b.minor - a.minor > 1:
        raise PlanError(
            f"kube_version {source} -> {target} jumps more than one minor; kubeadm upgrades one"
            f" minor at a time ({a.major}.{a.minor} -> {a.major}.{a.minor + 1} first)"
        )


def check_component_step(name: str, source: str, target: str, *, allow_downgrade: bool = False) -> None:
    """Any other component: versions must parse and not go backwards."""
    a, b = Version.parse(source), Version.parse(target)
    if b < a and not allow_downgrade:
        raise PlanError(f"{name} {source} -> {target} is a downgrade")
