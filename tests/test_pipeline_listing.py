"""The upgrade's `--list-tasks` starts in the plan step, beside the cluster's restore, and the stage
takes that listing instead of listing again inside the upgrade step (the harness's own cost)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from rich.console import Console

from harness.errors import InstallerError
from harness.installer.base import PLAYBOOKS_DIR
from harness.installer.kubespray import list_playbook_tasks
from harness.options import Options
from harness.pipeline import LISTED, Session, playbook
from harness.pipeline import plan as plan_step
from harness.record import ScenarioRun
from harness.scenario import load_catalogue


def _lab_scenario(name: str = "lab-etcd"):  # type: ignore[no-untyped-def]
    return next(s for s in load_catalogue(None) if s.id == name)


def _listed_now(stage):  # type: ignore[no-untyped-def]
    """What the stage's tags are, listed here by the real `ansible-playbook --list-tasks`."""
    return {(t.play, t.name): tuple(sorted(t.tags)) for t in list_playbook_tasks(PLAYBOOKS_DIR, stage.playbook, stage.tags)}


def test_the_plan_step_starts_the_listing_and_the_stage_takes_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(Options(artifacts=tmp_path), console=Console(record=True))
    installer = session.installer("lab")
    threads: list[str] = []
    real = installer.listed_tasks

    def listed(stage):  # type: ignore[no-untyped-def]
        threads.append(threading.current_thread().name)
        return real(stage)

    monkeypatch.setattr(installer, "listed_tasks", listed)
    run = ScenarioRun(_lab_scenario(), tmp_path / "lab-etcd")
    plan_step.plan(session, run)
    listed_stages = [s for s in run.stages if s.purpose in LISTED]
    assert listed_stages and set(run.listing) == {s.ident for s in listed_stages}
    upgrade = next(s for s in listed_stages if s.purpose == "upgrade")

    tags = playbook.task_tags(run, installer, upgrade)
    # The bundled playbook's real listing, listed once, off the main thread.
    assert tags == _listed_now(upgrade) and tags
    assert threads and all(t.startswith("list-tasks") for t in threads)
    assert len(threads) == len(listed_stages) and upgrade.ident not in run.listing
    session.close(failed=False)


def test_a_listing_that_failed_fails_the_stage_that_needs_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    session = Session(Options(artifacts=tmp_path), console=Console(record=True))
    installer = session.installer("lab")

    def broken(stage):  # type: ignore[no-untyped-def]
        raise InstallerError(f"`ansible-playbook {stage.playbook} --list-tasks` failed")

    monkeypatch.setattr(installer, "listed_tasks", broken)
    run = ScenarioRun(_lab_scenario(), tmp_path / "lab-etcd")
    plan_step.plan(session, run)  # the plan itself does not wait for the listing
    upgrade = next(s for s in run.stages if s.purpose == "upgrade")
    with pytest.raises(InstallerError, match="--list-tasks` failed"):
        playbook.task_tags(run, installer, upgrade)
    session.close(failed=True)


def test_without_a_started_listing_the_stage_lists_itself(tmp_path: Path) -> None:
    session = Session(Options(artifacts=tmp_path), console=Console(record=True))
    installer = session.installer("lab")
    run = ScenarioRun(_lab_scenario(), tmp_path / "lab-etcd")
    plan_step.plan(session, run)
    upgrade = next(s for s in run.stages if s.purpose == "upgrade")
    run.listing.clear()
    assert playbook.task_tags(run, installer, upgrade) == _listed_now(upgrade)
    session.close(failed=False)
