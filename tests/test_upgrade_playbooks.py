"""The bundled playbooks: syntax-checked, and run for real against localhost as a lab-like node."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness.installer.base import PLAYBOOKS_DIR
from harness.installer.inventory import write_inventory
from harness.scenario.model import Scenario
from harness.upgrade.paths import pipeline
from harness.upgrade.runner import run_stage

ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"
BUNDLED = ["plant.yml", "collect.yml"]


@pytest.mark.parametrize("playbook", BUNDLED)
def test_syntax_check(playbook: str, tmp_path: Path) -> None:
    inv = tmp_path / "inv.ini"
    inv.write_text("[etcd]\n[kube_control_plane]\n[kube_node]\n[k8s_cluster:children]\nkube_control_plane\nkube_node\n")
    r = subprocess.run(
        [str(ANSIBLE_PLAYBOOK), "--syntax-check", "-i", str(inv), playbook],
        check=False,
        cwd=PLAYBOOKS_DIR,
        stdin=subprocess.DEVNULL,  # Ansible refuses a non-blocking stdin
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("playbook", BUNDLED)
def test_only_builtin_modules(playbook: str) -> None:
    text = (PLAYBOOKS_DIR / playbook).read_text()
    modules = set(re.findall(r"^\s+-?\s*([a-z_]+\.[a-z_]+\.[a-z_]+):", text, re.MULTILINE))
    assert modules and all(m.startswith("ansible.builtin.") for m in modules), modules


def test_token_tasks_are_no_log() -> None:
    text = (PLAYBOOKS_DIR / "plant.yml").read_text()
    for task in ("Mint a ServiceAccount token", "Save the tokens"):
        start = text.index(task)
        end = text.find("\n\n", start)
        block = text[start : end if end != -1 else None]
        assert "no_log: true" in block, task
    assert 'mode: "0600"' in text


@pytest.fixture
def lab_scenario() -> Scenario:
    return Scenario.model_validate(
        {
            "id": "lab-etcd",
            "description": "d",
            "installer": "lab",
            "topology": {"nodes": [{"name": "node1", "roles": ["etcd", "worker"]}]},
            "baseline": {"versions": {"etcd_version": "3.5.16"}},
            "target": {"versions": {"etcd_version": "3.5.21"}},
            "path": "component",
            "tags": ["etcd"],
        }
    )


def test_harness_stages_run_on_a_lab_like_node(lab_scenario: Scenario, tmp_path: Path) -> None:
    """The harness's stages of a lab scenario on localhost (no Kubernetes: collect alone; the before
    step plants): each succeeds."""
    out = tmp_path / "out"
    inv = {
        "all": {
            "hosts": {"node1": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}},
            "children": {"etcd": {"hosts": {"node1": None}}, "kube_node": {"hosts": {"node1": None}}, "kube_control_plane": {"hosts": {}}},
        }
    }
    inventory = write_inventory(tmp_path / "pdd", inv, {"harness_become": False}) / "hosts.yml"
    results = {}
    for stage in pipeline(lab_scenario, out):
        if stage.purpose in ("upgrade", "idempotence"):  # the lab installer itself is not run here
            continue
        local = {"harness_node_dir": str(tmp_path / "node")}
        stage = dataclasses.replace(stage, extravars={**stage.extravars, **local})
        results[stage.purpose] = r = run_stage(stage, tmp_path / "pdd", inventory)
        assert r.ok, r.summary
    assert list(results) == ["collect"]
    assert [p.relative_to(out).parts[0] for p in out.glob("*/node1/journal-etcd.log")] == ["02-collect"]
    assert not (out / "secrets").exists()
