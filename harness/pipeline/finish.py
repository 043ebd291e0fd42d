"""The end of a scenario: evidence for a failed one (journals, cluster dumps), its report, and
whether its cluster is kept (`--keep`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.pipeline.stages import stage_step
from harness.record import ScenarioRun
from harness.report.run_report import finish_scenario

if TYPE_CHECKING:
    from harness.pipeline import Session

# The stage that fetches journals and cluster dumps: evidence for a failed scenario only (~90 s a run
# on the lab), taken after its items have judged it.
EVIDENCE = "collect"
# Steps after which the cluster is at baseline and measuring it makes sense.
MEASURABLE = ("baseline",)


def finish(session: Session, run: ScenarioRun, *, failed: bool) -> None:
    if failed and run.cluster is not None and any(run.ok(s) for s in MEASURABLE):
        # The cluster is still where this scenario left it: its items have run, the next
        # scenario has not restored anything yet.
        for stage in run.stages:
            if stage.purpose == EVIDENCE and stage.purpose not in run.outcomes:
                session.console.print(f"{run.scenario.id} failed: collecting journals and cluster state", highlight=False)
                session.step(run, stage.purpose, stage_step(stage))
        run.save()
    finish_scenario(run, failed=failed, archive=session.options.archive, console=session.console)
    keep = session.options.keep == "always" or (session.options.keep == "on-failure" and failed)
    if keep and run.cluster is not None:
        if run.cluster not in session.kept:
            session.kept.append(run.cluster)
        if failed:
            session.console.print(f"[yellow]{run.scenario.id} failed[/]: its cluster will be kept", highlight=False)
