"""The rules a Kubespray upgrade must follow, and the hop plan that obeys them.

- No downgrade unless explicitly allowed.
- "Do not skip minor releases (patch releases are ok)": v2.29.0 -> v2.31.0 becomes
  v2.29.0 -> v2.30.<newest known> -> v2.31.0.
- kube_version may move by at most one minor per hop.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
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


def check_known_release(ref: Ref, releases: Iterable[Ref]) -> None:
    """Without a checkout, a release tag must be one the shipped list (releases.txt) has: `v2.30.99`
    would otherwise be planned as if it existed."""
    if ref.version is None:
        return
    known = list(releases)
    if any(r.version == ref.version for r in known):
        return
    line = [r.text for r in known if r.version is not None and r.version.minor_line == ref.version.minor_line]
    have = f"the {ref.version.major}.{ref.version.minor} line has {', '.join(line)}" if line else (
        f"no {ref.version.major}.{ref.version.minor} release is known")
    newest = known[-1].text if known else "none"
    raise PlanError(
        f"{ref} is not a Kubespray release the harness knows ({have}; the newest known is {newest}): check the"
        " tag, or pass --kubespray PATH to read the checkout's own tags"
    )


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
    """Plan the hops from `source` to `target`, one Kubespray minor at a time.

    The same ref twice is a plan with no hop. A branch or a commit has no order of its own: it must
    have been placed among the releases from a checkout (`place`), or the plan is refused, since
    neither a downgrade nor a skipped minor could be seen."""
    src = source if isinstance(source, Ref) else Ref.parse(source)
    dst = target if isinstance(target, Ref) else Ref.parse(target)
    if src.text == dst.text:
        return Plan(src, dst, (src,))
    unordered = [r for r in (src, dst) if r.order is None]
    if unordered:
        raise PlanError(
            f"{src} -> {dst}: the order of {' and '.join(repr(r.text) for r in unordered)} (a"
            f" {' and a '.join(_KIND[r.kind] for r in unordered)}) cannot be checked without a Kubespray checkout:"
            " pass --kubespray PATH to read where it sits among the releases" + _tag_hint(unordered)
        )
    lo_v, hi_v = src.order, dst.order
    assert lo_v is not None and hi_v is not None
    if hi_v < lo_v and not allow_downgrade:
        raise PlanError(
            f"{src} -> {dst} is a downgrade{_placed(src, dst)}; Kubespray does not support downgrades"
            " (pass --allow-downgrade to plan it anyway)"
        )
    if hi_v == lo_v:
        return Plan(src, dst, (src, dst))
    releases = list(known_releases() if known is None else release_refs(str(k) for k in known))
    lo, hi = sorted((lo_v, hi_v))
    if lo.major != hi.major:
        raise PlanError(f"{src} -> {dst} crosses a major release; plan it by hand")
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
    if lo_v > hi_v:
        hops = [src, *reversed(hops[1:])]
    hops.append(dst)
    return Plan(src, dst, tuple(hops))


_KIND = {"tag": "tag", "branch": "branch", "sha": "commit"}


def _tag_hint(refs: Iterable[Ref]) -> str:
    """`v2.31` or `vX.Y` parse as branch names; say what a release tag looks like."""
    odd = [r.text for r in refs if r.kind == "branch" and r.text.startswith("v") and "." in r.text]
    return f" (if {odd[0]!r} was meant as a release tag: tags are vMAJOR.MINOR.PATCH, e.g. v2.31.0)" if odd else ""


def _placed(*refs: Ref) -> str:
    where = [f"{r}: {placed_as(r)}" for r in refs if r.version is None and r.at is not None]
    return f" ({', '.join(where)})" if where else ""


def placed_as(ref: Ref) -> str:
    """Where `place` put a branch or commit, in words."""
    at = ref.at
    if at is None:
        return "not placed"
    if at.pre == "dev":
        return f"{at.major}.{at.minor}.{at.patch} in development"
    return f"at release {at}"


def place(ref: Ref, *, tags_at_commit: Iterable[str], declared: str | None, released: Iterable[Ref]) -> Ref:
    """Place a branch or commit among the releases, from what its checkout says about it.

    `tags_at_commit`: the tags pointing at its commit (a release tag there gives the exact place).
    `declared`: the version its `galaxy.yml` declares. Kubespray bumps it on master right after a
    release, so an unreleased version means "on the way to it" (v2.31.0 -> master is one minor);
    a released one means "after it" (a release branch past its tag). `git describe` would not do:
    release tags sit on release branches, off master's history, and shallow clones have none."""
    if ref.version is not None:
        return ref
    tagged = release_refs(tags_at_commit)
    if tagged:
        return replace(ref, at=tagged[-1].version)
    if declared is None:
        raise PlanError(
            f"cannot place Kubespray {_KIND[ref.kind]} {ref.text!r} among the releases: no release tag points at"
            " its commit and it has no galaxy.yml version; plan with release tags instead"
        )
    try:
        v = Version.parse(str(declared))
    except PlanError as e:
        raise PlanError(f"cannot place Kubespray {_KIND[ref.kind]} {ref.text!r}: its galaxy.yml version: {e}") from None
    if v in {r.version for r in release_refs(str(r) for r in released)}:
        # Past that release: a development version of the next patch sorts right after it.
        return replace(ref, at=Version(v.major, v.minor, v.patch + 1, "dev"))
    return replace(ref, at=Version(v.major, v.minor, v.patch, "dev"))


def check_minor_skip(source: Ref, target: Ref) -> None:
    """Refuse one run that skips a Kubespray minor (a plan has to hop instead)."""
    if source.version and target.version and target.version.minor - source.version.minor > 1:
        raise PlanError(
            f"{source} -> {target} skips a Kubespray minor release; upgrade one minor at a time:"
            f" {' -> '.join(str(h) for h in plan_hops(source, target).hops)}"
        )


def check_ref_step(source: Ref, target: Ref) -> None:
    """One run from one release to another: no downgrade, no major crossed, no minor skipped.
    Branches and commits pass: their place is known only from a checkout."""
    if source.version is None or target.version is None:
        return
    if target.version < source.version:
        raise PlanError(f"{source} -> {target} is a downgrade; Kubespray does not support downgrades")
    if target.version.major != source.version.major:
        raise PlanError(f"{source} -> {target} crosses a major release; plan it by hand")
    check_minor_skip(source, target)


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
