"""Upgrade-path rules, table-driven."""

from __future__ import annotations

import pytest

from harness.errors import PlanError
from harness.plan.rules import (
    check_component_step,
    check_kube_version_step,
    check_minor_skip,
    check_ref_step,
    known_releases,
    place,
    plan_hops,
)
from harness.plan.versions import Ref, Version, kubespray_uses_v_prefix, same_version

KNOWN = ["v2.28.0", "v2.28.1", "v2.29.0", "v2.29.1", "v2.30.0", "v2.30.2", "v2.30.1", "v2.31.0", "v2.31.0-rc.1", "junk"]


@pytest.mark.parametrize(
    "text,kind,version",
    [
        ("v2.30.0", "tag", (2, 30, 0)),
        ("v2.31.0-rc.1", "tag", (2, 31, 0)),
        ("master", "branch", None),
        ("release-2.30", "branch", None),
        ("feature/etcd-fix", "branch", None),
        ("46dbdd3", "sha", None),
        ("46dbdd3994b32640bcd806b0097f50e8fdf1d514", "sha", None),
    ],
)
def test_ref_parsing(text, kind, version):
    ref = Ref.parse(text)
    assert ref.kind == kind
    if version:
        assert (ref.version.major, ref.version.minor, ref.version.patch) == version
    else:
        assert ref.version is None


@pytest.mark.parametrize("text", ["", "bad ref!", "a..b", "-x", "v2.30.0 ", "release/"])
def test_bad_refs_refused(text):
    if text.strip() and text != text.strip():
        # surrounding whitespace is trimmed, not an error
        assert Ref.parse(text).text == text.strip()
        return
    with pytest.raises(PlanError, match="ref"):
        Ref.parse(text)


@pytest.mark.parametrize(
    "a,b,equal",
    [("v1.28.6", "1.28.6", True), ("3.5.16", "v3.5.16", True), ("1.35.4", "1.35.3", False), ("1.35", "1.35.0", True)],
)
def test_versions_with_or_without_v(a, b, equal):
    assert same_version(a, b) is equal


@pytest.mark.parametrize("text", ["three", "1.x.0", "v", "1.2.3.4", ""])
def test_bad_versions(text):
    with pytest.raises(PlanError, match="bad version string"):
        Version.parse(text)


def test_prerelease_sorts_before_release():
    assert Version.parse("3.6.0-rc.1") < Version.parse("3.6.0") < Version.parse("3.6.1")


@pytest.mark.parametrize(
    "ref,with_v", [("v2.27.1", True), ("v2.28.0", False), ("v2.31.0", False), ("master", False), (None, False)]
)
def test_v_prefix_dropped_in_2_28(ref, with_v):
    assert kubespray_uses_v_prefix(Ref.parse(ref) if ref else None) is with_v
    assert Version.parse("1.35.4").render(with_v) == ("v1.35.4" if with_v else "1.35.4")


@pytest.mark.parametrize(
    "src,dst,hops",
    [
        ("v2.29.0", "v2.31.0", ["v2.29.0", "v2.30.2", "v2.31.0"]),  # newest patch of the skipped minor
        ("v2.28.0", "v2.31.0", ["v2.28.0", "v2.29.1", "v2.30.2", "v2.31.0"]),
        ("v2.30.0", "v2.31.0", ["v2.30.0", "v2.31.0"]),
        ("v2.30.0", "v2.30.2", ["v2.30.0", "v2.30.2"]),  # patch skips are fine
        ("v2.30.0", "v2.30.0", ["v2.30.0"]),  # the same ref: nothing to do, no hop
        ("master", "master", ["master"]),
    ],
)
def test_hop_plans(src, dst, hops):
    assert [str(h) for h in plan_hops(src, dst, known=KNOWN).hops] == hops


def test_hop_plan_uses_shipped_release_list_by_default():
    assert [str(h) for h in plan_hops("v2.29.0", "v2.31.0").hops] == ["v2.29.0", "v2.30.0", "v2.31.0"]
    assert all(r.version.pre is None for r in known_releases())


@pytest.mark.parametrize(
    "src,dst,words",
    [
        ("v2.31.0", "v2.29.0", "is a downgrade"),
        ("v2.30.2", "v2.30.0", "is a downgrade"),
    ],
)
def test_downgrades_refused(src, dst, words):
    with pytest.raises(PlanError, match=words):
        plan_hops(src, dst, known=KNOWN)


def test_downgrade_allowed_when_asked():
    assert [str(h) for h in plan_hops("v2.31.0", "v2.29.0", known=KNOWN, allow_downgrade=True).hops] == [
        "v2.31.0", "v2.30.2", "v2.29.0"
    ]


def test_unknown_intermediate_minor_is_an_error():
    with pytest.raises(PlanError, match=r"skips Kubespray 2\.30 and no v2\.30\.x release is known"):
        plan_hops("v2.29.0", "v2.31.0", known=["v2.29.0", "v2.31.0"])


def test_minor_skip_in_one_run_refused_with_the_plan():
    with pytest.raises(PlanError, match=r"skips a Kubespray minor release.*v2\.29\.0 -> v2\.30\.0 -> v2\.31\.0"):
        check_minor_skip(Ref.parse("v2.29.0"), Ref.parse("v2.31.0"))
    check_minor_skip(Ref.parse("v2.30.0"), Ref.parse("v2.31.0"))  # one minor: fine


@pytest.mark.parametrize(
    "src,dst,error",
    [
        ("1.34.3", "1.35.4", None),
        ("v1.34.3", "1.35.4", None),
        ("1.35.3", "1.35.4", None),
        ("1.33.5", "1.35.4", "jumps more than one minor"),
        ("1.35.4", "1.34.3", "downgrade"),
        ("1.35.4", "2.0.0", "jumps more than one minor"),
    ],
)
def test_kube_version_steps(src, dst, error):
    if error:
        with pytest.raises(PlanError, match=error):
            check_kube_version_step(src, dst)
    else:
        check_kube_version_step(src, dst)


def test_component_downgrade_refused():
    with pytest.raises(PlanError, match="etcd_version 3.5.16 -> 3.4.23 is a downgrade"):
        check_component_step("etcd_version", "3.5.16", "3.4.23")
    check_component_step("etcd_version", "3.5.16", "3.4.23", allow_downgrade=True)


@pytest.mark.parametrize("value", [3.5, 3.1, 3, True, None, "3.5", "v3.5"])
def test_pinned_versions_refuse_numbers_and_major_minor(value):
    with pytest.raises(PlanError, match="MAJOR.MINOR.PATCH"):
        Version.pinned(value)


def test_pinned_versions_accept_full_ones():
    assert Version.pinned("3.5.16") == Version.pinned("v3.5.16") == Version(3, 5, 16)
    assert Version.pinned("3.6.0-rc.1").pre == "rc.1"


def test_parse_never_turns_a_number_into_a_version():
    with pytest.raises(PlanError, match="not a version string"):
        Version.parse(3.1)  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ["v2.31", 2.31])
def test_release_tag_without_patch_or_as_a_number_refused(text):
    with pytest.raises(PlanError, match="vMAJOR.MINOR.PATCH|not a ref"):
        Ref.parse(text)


@pytest.mark.parametrize("src,dst", [("v2.30.0", "master"), ("46dbdd3", "v2.31.0"), ("vX.Y", "v2.31.0")])
def test_unordered_refs_refused_until_placed(src, dst):
    with pytest.raises(PlanError, match="cannot be checked without a Kubespray checkout"):
        plan_hops(src, dst, known=KNOWN)


def test_placed_refs_are_planned_like_releases():
    master = place(Ref.parse("master"), tags_at_commit=[], declared="2.32.0", released=KNOWN_REFS)
    assert master.at == Version(2, 32, 0, "dev") and master.at < Version(2, 32, 0)
    assert [str(h) for h in plan_hops("v2.30.0", master, known=KNOWN).hops] == ["v2.30.0", "v2.31.0", "master"]
    assert [str(h) for h in plan_hops("v2.31.0", master, known=KNOWN).hops] == ["v2.31.0", "master"]
    with pytest.raises(PlanError, match="is a downgrade.*master: 2.32.0 in development"):
        plan_hops(master, "v2.31.0", known=KNOWN)
    # A release branch past its tag (galaxy.yml still says the released version) sorts after it.
    branch = place(Ref.parse("release-2.30"), tags_at_commit=[], declared="2.30.2", released=KNOWN_REFS)
    assert Version(2, 30, 2) < branch.at < Version(2, 30, 3)
    # A commit a release tag points at is that release.
    sha = place(Ref.parse("0c6a295"), tags_at_commit=["v2.29.1", "not-a-release"], declared="2.29.1", released=KNOWN_REFS)
    assert sha.at == Version(2, 29, 1) and sha.at.pre is None
    with pytest.raises(PlanError, match="cannot place Kubespray branch 'old'"):
        place(Ref.parse("old"), tags_at_commit=[], declared=None, released=KNOWN_REFS)


KNOWN_REFS = [Ref.parse(k) for k in KNOWN if k != "junk"]


@pytest.mark.parametrize(
    "src,dst,words",
    [
        ("v2.29.0", "v2.31.0", "skips a Kubespray minor"),
        ("v2.31.0", "v2.30.0", "is a downgrade"),
        ("v2.31.0", "v3.0.0", "crosses a major release"),
        ("v2.30.0", "v2.31.0", None),
        ("v2.30.0", "master", None),  # unordered: left to the run, which has the checkout
    ],
)
def test_ref_step(src, dst, words):
    if words:
        with pytest.raises(PlanError, match=words):
            check_ref_step(Ref.parse(src), Ref.parse(dst))
    else:
        check_ref_step(Ref.parse(src), Ref.parse(dst))
