"""--keep: which clusters a session destroys, which it hands to the user, and what it prints."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from harness.options import Options
from harness.pipeline import ScenarioRun, Session
from harness.scenario import load_catalogue


class _Cluster:
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
