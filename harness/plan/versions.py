"""Component versions and Kubespray refs.

Kubespray wrote versions as `v1.28.6` until 2.28 and `1.35.4` since, so both parse to the same
`Version`; `render` writes them back in the style a given Kubespray ref expects.
"""

from __future__ import annotations

import functools
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
    def parse(cls, text: str) -> Version:
        """Any version text, as observed or as written; a missing patch reads as 0 (`1.35` is 1.35.0).
        Scenario input goes through `pinned`, which is stricter."""
        if not isinstance(text, str):
            # YAML reads `3.10` as the number 3.1: a number is never silently turned into a version.
            raise PlanError(f"bad version {text!r}: a {type(text).__name__}, not a version string")
        return _parse(text)

    @classmethod
    def _parse(cls, text: str) -> Version:
        s = text.strip()
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

    @classmethod
    def pinned(cls, value: object) -> Version:
        """A version a scenario pins: MAJOR.MINOR.PATCH exactly, written as a string.

        Kubespray pins exact versions (its checksums are per patch release), so `3.5` names nothing
        it can install; and YAML reads an unquoted `3.5` as a float (`3.10` even becomes 3.1), so a
        number is refused rather than guessed at."""
        if isinstance(value, bool) or not isinstance(value, str):
            number = isinstance(value, (int, float)) and not isinstance(value, bool)
            raise PlanError(
                f"{value!r} is a YAML {'number' if number else type(value).__name__}, not a version string"
                + (" (YAML reads an unquoted 3.10 as the number 3.1)" if number else "")
                + ': quote the full version, MAJOR.MINOR.PATCH, for example "3.5.16"'
            )
        v = cls.parse(value)
        m = _VERSION.match(value.strip())
        if m is not None and m["patch"] is None:
            raise PlanError(
                f"{value!r} has no patch number: Kubespray pins exact versions (checksums are per patch"
                f' release); quote the full version you mean, MAJOR.MINOR.PATCH: "{v.major}.{v.minor}.<patch>"'
            )
        return v

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


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> Version:
    """Versions are frozen: one parse per distinct text (a large catalogue repeats the same few)."""
    return Version._parse(text)


def same_version(a: str, b: str) -> bool:
    """`v3.5.16` and `3.5.16` name the same thing; compare that way everywhere."""
    return Version.parse(a) == Version.parse(b)


@dataclass(frozen=True)
class Ref:
    """A Kubespray ref: a release tag, a branch or a commit."""

    text: str
    kind: str  # "tag" | "branch" | "sha"
    version: Version | None = None  # set for release tags
    # Where a branch or commit sits among the releases, once a checkout has told us (`rules.place`).
    at: Version | None = None

    @classmethod
    def parse(cls, text: str) -> Ref:
        if not isinstance(text, str):
            raise PlanError(
                f"Kubespray ref {text!r} is a YAML {type(text).__name__}, not a ref: quote it, and name a"
                " release tag like v2.30.0, a branch or a commit SHA"
            )
        s = text.strip()
        if not s:
            raise PlanError("empty Kubespray ref: name a tag (v2.30.0), a branch or a commit SHA")
        m = _VERSION.match(s)
        if s.startswith("v") and m:
            if m["patch"] is None:
                raise PlanError(f"Kubespray ref {s!r}: release tags are vMAJOR.MINOR.PATCH (for example {s}.0)")
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

    @property
    def order(self) -> Version | None:
        """What the ref sorts by: its release version, or where a checkout placed it; None if unknown."""
        return self.version or self.at

    def __str__(self) -> str:
        return self.text


def kubespray_uses_v_prefix(ref: Ref | None) -> bool:
    """Kubespray dropped the leading `v` from component versions in v2.28.0."""
    if ref is None or ref.version is None:
        return False  # branches and commits are assumed current
    return ref.version < Version(2, 28, 0)
