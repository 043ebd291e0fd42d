"""Where the harness keeps its caches and state. Resolved once, overridable by environment."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def cache_dir() -> Path:
    """Box images, the offline files repo, Kubespray worktrees and venvs: safe to delete, slow to rebuild.

    `HARNESS_CACHE` overrides; the default follows XDG.
    """
    env = os.environ.get("HARNESS_CACHE")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kubespray-upgrade-harness"
    base.mkdir(parents=True, exist_ok=True)
    return base


def state_dir() -> Path:
    """Running labs' state (ssh configs, Vagrant dirs): `HARNESS_STATE` overrides."""
    env = os.environ.get("HARNESS_STATE")
    base = Path(env) if env else cache_dir() / "state"
    base.mkdir(parents=True, exist_ok=True)
    return base


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive advisory lock, so xdist workers never build the same box, lab, files repo,
    worktree or venv at once: one builds, the others then find it made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
