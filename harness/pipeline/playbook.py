"""One playbook run of a scenario: the stage's installer gives its inputs and project, the inventory
is written beside the run's private data dir, and ansible-runner runs it (harness.upgrade.runner).
The baseline step and the stage steps both run their playbooks through here."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from harness.installer.base import Installer, Stage
from harness.installer.inventory import write_inventory
from harness.pipeline.plan import LISTED
from harness.record import ScenarioRun
from harness.upgrade.runner import RunResult, run_stage

if TYPE_CHECKING:
    from harness.pipeline import Session


def run_playbook(session: Session, run: ScenarioRun, stage: Stage) -> RunResult:
    assert run.cluster is not None
    installer = session.stage_installer(run, stage)
    pdd = run.dir / "runner" / stage.ident
    inputs = installer.inputs(run.scenario, stage, run.cluster)
    for note in inputs.notes:
        if note not in run.notes:
            run.notes.append(note)
            shown = note if len(note) <= 240 else note[:240] + "... (whole note in run.json)"
            session.console.print(f"{run.scenario.id}: {shown}", highlight=False)
    inventory = write_inventory(pdd, run.cluster.inventory(), inputs.group_vars)
    if inputs.extravars:
        stage = dataclasses.replace(stage, extravars={**inputs.extravars, **stage.extravars})
    tags = task_tags(run, installer, stage) if stage.purpose in LISTED else None
    result = run_stage(stage, pdd, inventory, project=installer.project(stage), show_progress=True,
                       envvars=inputs.envvars, task_tags=tags)
    run.notes += [n for n in result.notes if n not in run.notes]  # retries and unreachables: said, not hidden
    return result


def task_tags(run: ScenarioRun, installer: Installer, stage: Stage) -> dict[tuple[str, str], tuple[str, ...]]:
    """Each task's tags, from the listing the plan step started (or listed now, without one); a
    listing that failed fails here, in the stage that needs it."""
    started = run.listing.pop(stage.ident, None)
    listed = started.result() if started is not None else installer.listed_tasks(stage)
    return {(t.play, t.name): tuple(sorted(t.tags)) for t in listed}
