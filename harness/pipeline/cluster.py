"""The cluster step: the session's cluster of the scenario's machine shape, its roles set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.record import ScenarioRun

if TYPE_CHECKING:
    from harness.pipeline import Session


def cluster(session: Session, run: ScenarioRun) -> None:
    run.cluster = session.cluster_for(run.scenario)
