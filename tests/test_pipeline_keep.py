"""--keep: which clusters a session destroys, which it hands to the user, and what it prints."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from rich.console import Console

import harness.pipeline as pipeline_steps
from harness.options import Options
from harness.pipeline import Session
from harness.record import ScenarioRun
from harness.scenario import load_catalogue


class _Cluster:
    name = "t"

    def __init__(self) -> None:
        self.calls: list[str] = []

    def release(self) -> None:
        self.calls.append("release")

    def destroy(self) -> None:
        self.calls.append("destroy")

    def describe_access(self) -> str:
        return "harness lab ssh --name x node1"


class _Provider:
    def __init__(self) -> None:
        self.cleaned = False

    def cleanup(self) -> None:
        self.cleaned = True


@pytest.mark.parametrize("keep,failed,kept", [
    ("never", True, False), ("on-failure", False, False), ("on-failure", True, True), ("always", False, True),
])
def test_keep_releases_or_destroys(tmp_path: Path, keep: str, failed: bool, kept: bool) -> None:
    console = Console(record=True, width=200, force_terminal=False)
    session = Session(Options(keep=keep, artifacts=tmp_path), console=console)
    cluster, provider = _Cluster(), _Provider()
    session._clusters[("k",)] = cluster  # type: ignore[assignment]
    session._provider = provider  # type: ignore[assignment]
    scenario = load_catalogue(None)[0]
    run = ScenarioRun(scenario, tmp_path / scenario.id, cluster=cluster)  # type: ignore[arg-type]
    session.finish(run, failed=failed)
    session.close(failed=failed)
    out = console.export_text()
    if kept:
        assert cluster.calls == ["release"] and not provider.cleaned
        assert "kept harness lab ssh --name x node1" in out  # how to reach it, printed once, at the end
    else:
        assert cluster.calls == ["destroy"] and provider.cleaned
        assert "kept" not in out


def _staged_session(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Session, list[str]]:
    """A session whose steps record themselves instead of touching a cluster (a fixture)."""
    from harness.upgrade.paths import pipeline

    session = Session(Options(artifacts=tmp_path), console=Console(record=True, width=200))
    ran: list[str] = []

    def plan(_session: Session, run: ScenarioRun) -> None:
        run.stages = pipeline(run.scenario, run.dir, available_tags={"etcd", "always"})

    def recorder(name: str) -> Callable[[Session, ScenarioRun], None]:
        return lambda _session, _run: ran.append(name)

    monkeypatch.setattr(pipeline_steps, "STEPS", (
        ("plan", plan),
        ("cluster", lambda _session, run: setattr(run, "cluster", _Cluster())),
        ("baseline", recorder("_baseline")),
        ("before", recorder("_before")),
    ))
    monkeypatch.setattr(pipeline_steps.after, "after", recorder("_after"))
    monkeypatch.setattr(pipeline_steps.stages, "stage_step", lambda stage: recorder(stage.purpose))
    monkeypatch.setattr(pipeline_steps.finish, "stage_step", lambda stage: recorder(stage.purpose))
    return session, ran


@pytest.mark.parametrize("failed", [False, True])
def test_evidence_is_collected_only_for_a_failed_scenario(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                          failed: bool) -> None:
    session, ran = _staged_session(tmp_path, monkeypatch)
    scenario = next(s for s in load_catalogue(None) if s.id == "lab-etcd")
    run = session.run(scenario)
    assert ran == ["_baseline", "_before", "upgrade", "idempotence", "_after"]  # no Kubernetes: no plant stage
    session.finish(run, failed=failed)
    assert ran[5:] == (["collect"] if failed else [])
    assert ("collect" in run.outcomes) == failed
