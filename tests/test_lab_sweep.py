"""The sweep of what killed runs leave: their labs (found stale by their dead owner) and their playbook
runs still going as orphans (found by the owner every run's processes carry in their environment).

Real processes and real lab state directories; no VM (tests/integration/test_orphans.py does the
same with real labs and a SIGKILLed pytest).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness import interrupt
from harness.cluster.lab import cli
from harness.cluster.lab.provider import LabPaths, stale_reason, sweep
from harness.interrupt import RUN_OWNER, kill_orphaned_runs, orphaned_runs, run_owner
from harness.settings import file_lock


def _dead_owner() -> str:
    p = subprocess.Popen(["sleep", "30"])
    owner = run_owner(p.pid)
    p.kill()
    p.wait()
    return owner


def _run(mark: str, owner: str) -> subprocess.Popen[bytes]:
    """A stand-in for a playbook run: a worker in a session of its own with a child (a task's sleep)."""
    env = {**os.environ, interrupt.RUN_MARK: mark, RUN_OWNER: owner}
    return subprocess.Popen(["bash", "-c", "sleep 300 & exec sleep 301"], env=env, start_new_session=True)


def _wait_for(mark: str, count: int) -> None:
    deadline = time.monotonic() + 30  # a guard against hanging, not a measurement
    while len(interrupt.run_processes(mark)) < count:
        assert time.monotonic() < deadline, f"the stand-in run {mark} never started its {count} processes"
        time.sleep(0.05)


def test_runs_of_a_dead_harness_are_found_and_stopped_and_live_ones_kept() -> None:
    dead, live = interrupt.new_run_mark(), interrupt.new_run_mark()
    orphan, mine = _run(dead, _dead_owner()), _run(live, run_owner())
    try:
        _wait_for(dead, 2)
        _wait_for(live, 2)
        found = orphaned_runs()
        assert found.get(dead) == interrupt.run_processes(dead) and len(found[dead]) == 2
        assert live not in found
        assert dead in kill_orphaned_runs()
        orphan.wait(timeout=30)
        assert interrupt.run_processes(dead) == set()
        assert len(interrupt.run_processes(live)) == 2  # its harness (this process) is alive
    finally:
        interrupt.kill_run(live)
        interrupt.kill_run(dead)
        mine.wait(timeout=30)


def _lab(name: str, **state: object) -> LabPaths:
    paths = LabPaths(name)
    paths.root.mkdir(parents=True)
    (paths.root / "vagrant").mkdir()
    paths.state.write_text(json.dumps({"name": name, "prefix": name, "nodes": [], **state}))
    return paths


@pytest.fixture
def labs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, LabPaths]:
    """Lab state directories as runs leave them (no namespace, no VM), in a state dir of the test's own."""
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    me = {"pid": os.getpid(), "start": run_owner().split(":")[1]}
    pid, start = _dead_owner().split(":")
    return {
        "killed": _lab("ksh-test-killed", ready=True, owner={"pid": int(pid), "start": start}),
        "killed-early": _lab("ksh-test-early", ready=False, owner={"pid": int(pid), "start": start}),
        "in-use": _lab("ksh-test-in-use", ready=True, owner=me),
        "kept": _lab("ksh-test-kept", ready=True, owner=None),
        "half-made": _lab("ksh-test-half", ready=False, owner=None),
        "being-made": _lab("ksh-test-making", ready=False, owner=None),
    }


def test_stale_labs_are_the_dead_runs_and_the_half_made(labs: dict[str, LabPaths]) -> None:
    reasons = {k: stale_reason(p) for k, p in labs.items()}
    assert reasons["killed"] == reasons["killed-early"] and "is gone" in str(reasons["killed"])
    assert reasons["in-use"] is None and reasons["kept"] is None
    assert reasons["half-made"] == reasons["being-made"] == "incomplete: its `up` never finished"


def test_status_then_sweep_removes_only_the_stale_labs_no_one_is_making(labs: dict[str, LabPaths]) -> None:
    with file_lock(labs["being-made"].lock):  # an `up` in progress holds its lab's lock
        status = CliRunner().invoke(cli.lab, ["status"])
        assert status.exit_code == 0, status.output
        lines = {ln.split(":")[0]: ln for ln in status.output.splitlines() if ln.startswith("ksh-")}
        for key in ("killed", "killed-early", "half-made"):
            assert "(stale, " in lines[labs[key].prefix] and "harness lab down --stale" in lines[labs[key].prefix]
        for key in ("in-use", "kept", "being-made"):
            assert "stale" not in lines[labs[key].prefix], lines[labs[key].prefix]
        removed = {what for what, _why in sweep(stale_only=True)}
    assert {w for w in removed if w.startswith("lab ")} == {f"lab {labs[k].prefix}" for k in ("killed", "killed-early", "half-made")}
    assert {k for k, p in labs.items() if p.root.exists()} == {"in-use", "kept", "being-made"}


def test_down_refuses_name_with_stale_or_all() -> None:
    r = CliRunner().invoke(cli.lab, ["down", "--stale", "--name", "x"])
    assert r.exit_code == 2 and "without --name" in r.output
