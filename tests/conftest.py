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
