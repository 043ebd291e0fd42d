"""The plan step: everything that can be refused is refused here, before any machine exists; the
scenario becomes its stages, and the listed stages' `--list-tasks` starts in the background."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.plan.rules import check_component_step, check_kube_version_step
from harness.record import ScenarioRun
from harness.upgrade.paths import pipeline

if TYPE_CHECKING:
    from harness.pipeline import Session

# Stages whose tasks are listed (`--list-tasks`): ansible-runner's events carry no tags, and the order
# checks sort these stages' tasks into phases by them.
LISTED = ("upgrade", "idempotence")


def plan(session: Session, run: ScenarioRun) -> None:
    sc = run.scenario
    for var, (old, new) in sc.changed_versions().items():
        if old is None:
            continue
        if var == "kube_version":
            check_kube_version_step(old, new)
        else:
            check_component_step(var, old, new)
    if sc.baseline_installer != sc.installer:
        session.installer(sc.baseline_installer).prepare(sc)
    prepared = session.installer(sc.installer).prepare(sc)
    run.resolved = dict(prepared.resolved)
    run.stages = pipeline(sc, run.dir, available_tags=prepared.tags)
    # `--list-tasks` depends on the stage alone and costs 1.4 s (the lab's playbooks) to 3.8 s
    # (Kubespray's) of local CPU: it runs while the cluster is restored, not inside the upgrade step.
    for stage in run.stages:
        if stage.purpose in LISTED:
            run.listing[stage.ident] = session.lister.submit(session.stage_installer(run, stage).listed_tasks, stage)
