"""The Debian archive this machine's apt already uses: one reading of its sources, for the lab's box
(debootstrap) and the files repo (a private apt). `HARNESS_DEBIAN_MIRROR` overrides both."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from harness.errors import PrerequisiteError

CODENAMES = frozenset({"buster", "bullseye", "bookworm", "trixie", "forky", "sid", "stable", "testing", "unstable"})


@dataclass(frozen=True)
class Source:
    uri: str
    suites: tuple[str, ...]
    components: tuple[str, ...]


def parse_sources(text: str, *, deb822: bool) -> Iterator[Source]:
    """`deb` sources of a one-line `sources.list` or a deb822 `.sources` file (disabled ones skipped)."""
    if deb822:
        for stanza in re.split(r"\n\s*\n", text):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                k, _, v = line.partition(":")
                fields[k.strip().lower()] = v.strip()
            if "deb" in fields.get("types", "").split() and fields.get("enabled", "yes").lower() != "no":
                for uri in fields.get("uris", "").split():
                    yield Source(uri, tuple(fields.get("suites", "").split()), tuple(fields.get("components", "").split()))
        return
    for line in text.splitlines():
        parts = re.sub(r"\[[^]]*\]", "", line.split("#", 1)[0]).split()  # drop `[arch=... signed-by=...]`
        if len(parts) >= 3 and parts[0] == "deb":
            yield Source(parts[1], (parts[2],), tuple(parts[3:]))


def mirror_from_sources(text: str, *, deb822: bool, suite: str | None = None) -> str | None:
    """The first main-archive URI (not debian-security, not a third-party repo) serving `suite`'s
    main component (any Debian codename when `suite` is None)."""
    for s in parse_sources(text, deb822=deb822):
        serves = suite in s.suites if suite else any(x in CODENAMES for x in s.suites)
        if serves and "security" not in s.uri and (not s.components or "main" in s.components):
            return s.uri.rstrip("/")
    return None


def sources_files() -> list[Path]:
    d = Path("/etc/apt/sources.list.d")
    return [Path("/etc/apt/sources.list"), *(sorted(d.iterdir()) if d.is_dir() else [])]


def debian_mirror(suite: str | None = None, sources: Iterable[Path] | None = None) -> str:
    """The Debian mirror of the machine's own apt sources (`HARNESS_DEBIAN_MIRROR` overrides)."""
    env = os.environ.get("HARNESS_DEBIAN_MIRROR")
    if env:
        return env.rstrip("/")
    for f in sources if sources is not None else sources_files():
        if f.suffix not in (".list", ".sources"):
            continue
        try:
            text = f.read_text(errors="replace")
        except OSError:
            continue
        mirror = mirror_from_sources(text, deb822=f.suffix == ".sources", suite=suite)
        if mirror:
            return mirror
    raise PrerequisiteError(
        f"no Debian mirror{f' serving {suite}' if suite else ''} found in /etc/apt/sources.list or /etc/apt/sources.list.d;"
        " set HARNESS_DEBIAN_MIRROR=http://deb.debian.org/debian"
    )
