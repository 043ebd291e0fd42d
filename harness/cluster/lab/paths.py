"""Where the lab keeps things: shared, rebuildable artefacts in the cache; running labs in the state dir."""

from __future__ import annotations

import re
from pathlib import Path

from harness.settings import cache_dir, state_dir


def lab_cache() -> Path:
    """Box images, kernels, the lab ssh key, the accelerator verdict and the lab's VAGRANT_HOME."""
    p = cache_dir() / "lab"
    p.mkdir(parents=True, exist_ok=True)
    return p


def labs_root() -> Path:
    p = state_dir() / "labs"
    p.mkdir(parents=True, exist_ok=True)
    return p


def vagrant_home() -> Path:
    """A VAGRANT_HOME of the lab's own, so lab boxes never mix with a user's boxes."""
    p = lab_cache() / "vagrant.d"
    p.mkdir(parents=True, exist_ok=True)
    return p


def lab_prefix(name: str) -> str:
    """`ksh-<name>`: the namespace name and the prefix of every domain, volume and network of lab `name`."""
    clean = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    if not clean:
        raise ValueError(f"lab name {name!r} has no usable characters (use letters, digits, '-')")
    # netns names end up in paths and interface-ish places: keep them short.
    return f"ksh-{clean[:24]}"


