"""Component versions and Kubespray refs.

Kubespray wrote versions as `v1.28.6` until 2.28 and `1.35.4` since, so both parse to the same
`Version`; `render` writes them back in the style a given Kubespray ref expects.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import total_ordering

from harness.errors import PlanError

_VERSION = re.compile(
    r"^v?(?P<major>0|[1-9]\d*)\.(?P<minor>0|[1-9]\d*)(?:\.(?P<patch>0|[1-9]\d*))?"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?$"
)
_SHA = re.compile(r"^[0-9a-f]{7,40}$")
# What git allows in a branch name, roughly; refuses spaces, `..`, `~^:?*[\` and a leading `-`.
_BRANCH = re.compile(r"^(?!-)(?!.*\.\.)[A-Za-z0-9._/+-]+$")


@total_ordering
@dataclass(frozen=True)
class Version:
    major: int
    minor: int
    patch: int
    pre: str | None = field(default=None, compare=False)
    had_v: bool = field(default=False, compare=False)

    @classmethod
    def parse(cls, text: str | float) -> Version:
        s = str(text).strip()
        m = _VERSION.match(s)
        if not m:
            raise PlanError(
                f"bad version string {s!r}: expected MAJOR.MINOR.PATCH with an optional leading 'v'"
                " (for example 1.35.4 or v1.28.6)"
            )
        return cls(
            int(m["major"]),
            int(m["minor"]),
            int(m["patch"] or 0),
            m["pre"],
            s.startswith("v"),
        )

    def _key(self) -> tuple[int, int, int, int, str]:
        # A pre-release sorts before its release (1.5.0-rc.1 < 1.5.0).
        return (self.major, self.minor, self.patch, 0 if self.pre else 1, self.pre or "")

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    @property
    def minor_line(self) -> tuple[int, int]:
        return (self.major, self.minor)

    def plain(self) -> str:
        s = f"{self.major}.{self.minor}.{self.patch}"
        return f"{s}-{self.pre}" if self.pre else s

    def render(self, with_v: bool) -> str:
        return ("v" if with_v else "") + self.plain()

    def __str__(self) -> str:
        return self.render(self.had_v)


def same_version(a: str, b: str) -> bool:
    """`v3.5.16` and `3.5.16` name the same thing; compare that way everywhere."""
    return Version.parse(a) == Version.parse(b)


@dataclass(frozen=True)
class Ref:
    """A Kubespray ref: a release tag, a branch or a commit."""

    text: str
    kind: str  # "tag" | "branch" | "sha"
    version: Version | None = None  # set for release tags

    @classmethod
    def parse(cls, text: str) -> Ref:
        s = str(text).strip()
        if not s:
            raise PlanError("empty Kubespray ref: name a tag (v2.30.0), a branch or a commit SHA")
        if s.startswith("v") and _VERSION.match(s):
            return cls(s, "tag", Version.parse(s))
        if _SHA.match(s):
            return cls(s, "sha")
        if _BRANCH.match(s) and not s.endswith((".lock", "/", ".")):
            return cls(s, "branch")
        raise PlanError(
            f"invalid Kubespray ref {s!r}: expected a release tag like v2.30.0, a branch name or a"
            " commit SHA (7-40 hex digits)"
        )

    @property
    def is_release(self) -> bool:
        return self.version is not None

    def __str__(self) -> str:
        return self.text


def kubespray_uses_v_prefix(ref: Ref | None) -> bool:
    """Kubespray dropped the leading `v` from component versions in v2.28.0."""
    if ref is None or ref.version is None:
        return False  # branches and commits are assumed current
    return ref.version < Version(2, 28, 0)
