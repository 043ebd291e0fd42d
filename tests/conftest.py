from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

GOOD_SCENARIO = """\
id: demo-etcd
description: a demo
installer: lab
topology:
  nodes:
    - {name: node1, roles: [etcd, worker]}
baseline: {versions: {etcd_version: 3.4.23}}
target: {versions: {etcd_version: 3.5.16}}
path: component
tags: [etcd]
"""


@pytest.fixture
def write(tmp_path: Path):
    def _write(name: str, text: str) -> Path:
        p = tmp_path / name
        p.write_text(text)
        return p

    return _write


def kubespray_checkout() -> Path | None:
    """The real Kubespray the tests drive: `HARNESS_KUBESPRAY`, else the workplace's shared clone
    next to this repository (`../shared/kubespray.git`). None when neither exists."""
    import os

    env = os.environ.get("HARNESS_KUBESPRAY")
    for candidate in ([Path(env)] if env else []) + [REPO.parent / "shared" / "kubespray.git"]:
        if candidate.exists():
            return candidate.resolve()
    return None


@pytest.fixture(scope="session")
def real_kubespray():
    """A `Kubespray` over the real checkout (worktrees and venvs in the harness's cache, reused)."""
    from harness.installer.kubespray import Kubespray

    path = kubespray_checkout()
    if path is None:
        pytest.skip("no Kubespray checkout: set HARNESS_KUBESPRAY or put one at ../shared/kubespray.git")
    return Kubespray.open(path)
