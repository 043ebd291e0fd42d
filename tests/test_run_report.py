"""Run reports from realistic artifact dirs: written by the pipeline's own `ScenarioRun.save`, the
runner's timeline writer and the real fact types (a lab-less stand-in only for the VMs), then
reported through `Session.finish` and, end to end, through the pytest plugin."""

from __future__ import annotations

import dataclasses
import json
import tarfile
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from harness.checks.disruption import Sample
from harness.options import Options
from harness.pipeline import Session
from harness.probes.collected import Facts
from harness.probes.facts import HostFacts, PreUpgradeRecord, VersionSample
from harness.record import ScenarioRun, StepOutcome
from harness.report import run_report
from harness.report.session_report import write_session_report
from harness.scenario import load_catalogue
from harness.scenario.model import Scenario
from harness.upgrade.paths import pipeline
from harness.upgrade.runner import RunResult
from harness.upgrade.timeline import TaskRecord, recap_from_stats, write_timeline

T0 = datetime(2026, 11, 28, 6, 56, 0, tzinfo=UTC)
NODES = ("node1", "node2", "node3")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _scenario(sid: str) -> Scenario:
    return next(s for s in load_catalogue(None) if s.id == sid)


def _task(host: str, play: str, task: str, start: float, seconds: float, status: str = "ok",
          msg: str | None = None, tags: tuple[str, ...] = ("etcd",)) -> TaskRecord:
    begin = T0 + timedelta(seconds=start)
    return TaskRecord(host=host, play=play, task=task, tags=tags, start=begin.isoformat(),
                      end=(begin + timedelta(seconds=seconds)).isoformat(), status=status,
                      changed=status == "changed", msg=msg, duration=seconds)


def _upgrade_records(fail: tuple[str, str, str] | None) -> list[TaskRecord]:
    """A graceful etcd upgrade, one member at a time; `fail` = (host, task, message) stops that host."""
    out = [_task(h, "Download files for the upgrade", "download : Download etcd", 5 + i, 40, "changed")
           for i, h in enumerate(NODES)]
    t = 60.0
    for h in NODES:
        for task, secs, status in (("etcd : Stop etcd", 5, "changed"), ("etcd : Install etcd", 20, "changed"),
                                   ("etcd : Restart etcd", 30, "changed"), ("etcd : Wait for health", 10, "ok")):
            if fail and fail[0] == h and fail[1] == task:
                out.append(_task(h, "Upgrade etcd, one member at a time", task, t, secs, "failed", fail[2]))
                return out
            out.append(_task(h, "Upgrade etcd, one member at a time", task, t, secs, status))
            t += secs
    return out


def _result(run: ScenarioRun, purpose: str, records: list[TaskRecord]) -> RunResult:
    stage = next(s for s in run.stages if s.purpose == purpose)
    artifacts = run.dir / "runner" / stage.ident / "artifacts" / stage.ident
    artifacts.mkdir(parents=True)
    path = write_timeline(artifacts / "timeline.jsonl", records)
    failures = {"failures": {r.host: 1 for r in records if r.status == "failed"}}
    recap = recap_from_stats({"ok": {h: 1 for h in NODES}, **failures})
    rc = 2 if failures["failures"] else 0
    return RunResult(stage.ident, stage.playbook, rc, "failed" if rc else "successful", recap, path, artifacts, "",
                     tuple(records))


def realistic_run(scenario: Scenario, run_dir: Path, *, fail: tuple[str, str, str] | None = None,
                  disruption: bool = True) -> ScenarioRun:
    """A scenario run as the pipeline leaves it after the upgrade (saved with its own `save`), with no
    cluster behind it (a fixture: the VMs are what cannot run here)."""
    run = ScenarioRun(scenario, run_dir)
    run.stages = pipeline(scenario, run_dir, available_tags={"etcd", "download", "always"})
    for step, secs in (("plan", 0.1), ("cluster", 0.0), ("baseline", 14.0), ("before", 11.0)):
        run.outcomes[step] = StepOutcome(step, True, secs)
    run.baseline_outcome = "restored"
    run.results["upgrade"] = _result(run, "upgrade", _upgrade_records(fail))
    run.outcomes["upgrade"] = StepOutcome("upgrade", True, 250.0)  # a failed playbook is a result, not a failed step
    old = {"etcd": "3.4.23", "etcdctl": "3.4.23", "containerd": "1.6.20"}
    run.before = PreUpgradeRecord(T0, versions={h: dict(old) for h in NODES})
    moved = NODES[:1] if fail else NODES  # a failure on node2 leaves node2 and node3 behind
    for i, h in enumerate(NODES):
        at = T0 + timedelta(seconds=120 + 65 * i)
        new = "3.5.16" if h in moved else "3.4.23"
        run.samples += [VersionSample(at - timedelta(seconds=20), h, "etcd", "3.4.23"),
                        VersionSample(at, h, "etcd", new), VersionSample(at, h, "etcdctl", new)]
    after = {h: {**old, "etcd": "3.5.16", "etcdctl": "3.5.16"} if h in moved else dict(old) for h in NODES}
    run.facts = Facts(nodes={h: ("etcd", "worker") for h in NODES},
                      hosts=tuple(HostFacts(h, ("etcd", "worker"), versions=after[h]) for h in NODES))
    run.outcomes["after"] = StepOutcome("after", True, 12.0)
    if disruption:
        samples = [Sample((T0 + timedelta(seconds=s)).timestamp(), "etcd:node1", ok, 3.0, None if ok else "ReadTimeout: timed out")
                   for s, ok in ((100, True), (101, False), (102, False), (105, True))]
        samples.append(Sample((T0 + timedelta(seconds=101)).timestamp(), "etcd:all", True, 2.0))
        (run_dir / run_report.DISRUPTION_FILE).write_text("".join(json.dumps(dataclasses.asdict(s)) + "\n" for s in samples))
    run.save()
    return run


def _finish(run: ScenarioRun, tmp_path: Path, *, failed: bool, archive: str = "on-failure") -> str:
    console = Console(record=True, width=200)
    Session(Options(artifacts=tmp_path, archive=archive), console=console).finish(run, failed=failed)
    return console.export_text()


def _verdicts(run_dir: Path, **outcomes: str) -> None:
    for check, outcome in outcomes.items():
        run_report.record_item(run_dir, check=check.replace("_", " "), item=f"test_{check}[x]", outcome=outcome,
                               message="" if outcome == "passed" else f"{check}: node2 etcd expected 3.5.16, observed 3.4.23",
                               seconds=0.5)


def _assert_pictures(run_dir: Path) -> None:
    png = (run_dir / run_report.TIMELINE_PNG).read_bytes()
    assert png.startswith(PNG_MAGIC) and b"matplotlib" in png  # matplotlib signs its PNGs (Software tag)
    svg = ET.parse(run_dir / run_report.TIMELINE_SVG).getroot()
    assert svg.tag.endswith("svg")
    texts = "".join(svg.itertext())
    for host in NODES:
        assert host in texts  # a row per host, as text (svg.fonttype none)


def test_a_green_lab_graceful_run_writes_both_reports_and_the_timeline(tmp_path: Path) -> None:
    run = realistic_run(_scenario("lab-graceful"), tmp_path / "lab-graceful")
    _verdicts(run.dir, target_versions="passed", etcd_health="passed", upgrade_order="passed")
    out = _finish(run, tmp_path, failed=False)
    md = (run.dir / run_report.REPORT_MD).read_text()
    assert md.startswith("# lab-graceful: passed\n")
    assert "Failed" not in md
    assert "| baseline (restored) | 14.0 | ok |" in md
    assert "| upgrade | Upgrade etcd, one member at a time |" in md  # time per play
    assert "| node3 | etcd | 3.4.23 | **3.5.16** | 3.5.16 |" in md  # before, after (changed), target
    assert "| target versions | passed |" in md
    assert "| etcd:node1 | 4 | 2 | 4.0 s |" in md and "| etcd:node1 | 06:57:41 | 06:57:45 |" in md
    assert "![timeline](timeline.png)" in md
    html = (run.dir / run_report.REPORT_HTML).read_text()
    assert "<svg" in html and "<link" not in html and "src=\"http" not in html  # self-contained
    assert "lab-graceful: <span class=\"passed\">passed</span>" in html
    _assert_pictures(run.dir)
    assert f"report {run.dir / 'report.html'}" in out
    assert not (tmp_path / "lab-graceful.tar.gz").exists()  # on-failure: a green run is not archived


def test_a_failed_run_names_the_failing_task_and_host_first(tmp_path: Path) -> None:
    run = realistic_run(_scenario("lab-graceful"), tmp_path / "lab-graceful",
                        fail=("node2", "etcd : Restart etcd", "Unable to restart service etcd: timeout"))
    _verdicts(run.dir, target_versions="failed", etcd_health="passed")
    _finish(run, tmp_path, failed=True)
    md = (run.dir / run_report.REPORT_MD).read_text().splitlines()
    assert md[0] == "# lab-graceful: FAILED"
    first = next(line for line in md[1:] if line)
    assert first == '**Failed at `etcd : Restart etcd` on node2** (stage upgrade, play "Upgrade etcd, one member at a time")'
    assert "> Unable to restart service etcd: timeout" in md
    text = "\n".join(md)
    assert "- **target versions**: target_versions: node2 etcd expected 3.5.16, observed 3.4.23" in text
    assert "| node2 | etcd | 3.4.23 | 3.4.23 | 3.5.16 |" in text  # left behind, in the table
    _assert_pictures(run.dir)
    html = (run.dir / run_report.REPORT_HTML).read_text()
    assert html.index("Failed at <code>etcd : Restart etcd</code> on node2") < html.index("<h2>Plan</h2>")
    assert (tmp_path / "lab-graceful.tar.gz").exists()  # on-failure, the default


def test_a_known_kubespray_failure_comes_with_its_remedy(tmp_path: Path) -> None:
    """ks-lab-etcd documents no failure: the known-failures table gives the remedy."""
    task = "etcd : Install | Copy etcd binary from download dir"
    run = realistic_run(_scenario("ks-lab-etcd"), tmp_path / "ks-lab-etcd",
                        fail=("node1", "etcd : Install etcd", "Source /tmp/releases/etcd-v3.5.30-linux-amd64/etcd not found"))
    # The same failure under Kubespray's task name.
    timeline = run.results["upgrade"].timeline_path
    timeline.write_text(timeline.read_text().replace("etcd : Install etcd", task))
    _finish(run, tmp_path, failed=True, archive="never")
    md = (run.dir / run_report.REPORT_MD).read_text()
    assert f"**Failed at `{task}` on node1**" in md
    assert "- **remedy**: run with --tags=download,etcd (the etcd tag path does not download)" in md
    assert not (tmp_path / "ks-lab-etcd.tar.gz").exists()  # --archive never


def test_a_documented_failure_is_reported_as_documented_with_the_scenarios_remedy(tmp_path: Path) -> None:
    sc = _scenario("ks-lab-etcd-documented")
    assert sc.expect_failure is not None
    task = "etcd : Install | Copy etcd binary from download dir"
    run = realistic_run(sc, tmp_path / sc.id, fail=("node1", "etcd : Install etcd", "not found"))
    timeline = run.results["upgrade"].timeline_path
    timeline.write_text(timeline.read_text().replace("etcd : Install etcd", task))
    _finish(run, tmp_path, failed=False)
    md = (run.dir / run_report.REPORT_MD).read_text()
    assert md.startswith(f"# {sc.id}: passed\n")
    assert f"Failed as documented at `{task}` on node1 (stage upgrade)." in md
    assert f"- remedy: {sc.expect_failure.remedy}" in md


def test_known_failures_match_by_role_and_task() -> None:
    assert run_report.known_failure("upgrade/pre-upgrade : Drain node") is not None
    assert run_report.known_failure("pre-upgrade : Drain node") is not None  # the role's last path part
    # Another role's task of the same name (switching container engines) has no such remedy.
    assert run_report.known_failure("container-engine/validate-container-engine : Drain node") is None
    assert run_report.known_failure("etcd : Restart etcd") is None


def test_the_plugin_records_every_check_and_writes_the_reports(pytester: pytest.Pytester,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Through the pytest plugin as a scenario run uses it: the pipeline's run stood in by a realistic
    saved run (no VMs), the real fixtures, makereport hook, Session.finish and session end."""
    def fake_run(self: Session, scenario: Scenario) -> ScenarioRun:
        return realistic_run(scenario, self.options.artifacts / scenario.id,
                             fail=("node2", "etcd : Restart etcd", "timeout") if scenario.id == "lab-graceful" else None)

    monkeypatch.setattr(Session, "run", fake_run)
    monkeypatch.delenv("HARNESS_KUBESPRAY", raising=False)
    pytester.makepyfile(test_items="""
        import pytest

        @pytest.mark.check("etcd health")
        def test_health(scenario_run):
            assert scenario_run.facts is not None

        @pytest.mark.check("target versions")
        def test_target(scenario_run):
            after = {h.node: h.versions["etcd"] for h in scenario_run.facts.hosts}
            assert set(after.values()) == {"3.5.16"}, f"etcd per node: {after}"
    """)
    chosen = [_scenario("lab-graceful").model_dump(mode="json", exclude_defaults=True),
              _scenario("lab-etcd").model_dump(mode="json", exclude_defaults=True)]
    (pytester.path / "two.yaml").write_text(yaml.safe_dump({"scenarios": chosen}))
    r = pytester.runpytest("-p", "no:cacheprovider", "--scenarios", "two.yaml", "--artifacts", "out")
    r.assert_outcomes(passed=3, failed=1)
    out = pytester.path / "out"
    for sid, status in (("lab-graceful", "FAILED"), ("lab-etcd", "passed")):
        lines = [json.loads(line) for line in (out / sid / run_report.CHECKS_FILE).read_text().splitlines()]
        assert {(d["check"], d["outcome"]) for d in lines} == {
            ("etcd health", "passed"), ("target versions", "failed" if status == "FAILED" else "passed")}
        md = (out / sid / run_report.REPORT_MD).read_text()
        assert md.startswith(f"# {sid}: {status}\n")
        assert (out / sid / run_report.REPORT_HTML).exists() and (out / sid / run_report.TIMELINE_PNG).exists()
    failed_md = (out / "lab-graceful" / run_report.REPORT_MD).read_text()
    assert "etcd per node: {'node1': '3.5.16', 'node2': '3.4.23', 'node3': '3.4.23'}" in failed_md
    assert (out / "lab-graceful.tar.gz").exists() and not (out / "lab-etcd.tar.gz").exists()
    session = (out / "session.md").read_text()
    assert session.startswith("# Session: 1 of 2 scenarios passed")
    assert "| lab-graceful | **FAILED** | etcd : Restart etcd on node2 |" in session
    assert "[report.md](lab-etcd/report.md)" in session
    with tarfile.open(out / "lab-graceful.tar.gz") as tar:
        names = tar.getnames()
    assert "lab-graceful/report.md" in names and "lab-graceful/timeline.png" in names


def test_the_session_report_leaves_out_runs_from_before_the_session(tmp_path: Path) -> None:
    old = realistic_run(_scenario("lab-etcd"), tmp_path / "lab-etcd")
    import os

    os.utime(old.dir / "run.json", (1_000_000, 1_000_000))
    realistic_run(_scenario("lab-graceful"), tmp_path / "lab-graceful")
    assert write_session_report(tmp_path, since=2_000_000) is not None
    text = (tmp_path / "session.md").read_text()
    assert "lab-graceful" in text and "lab-etcd" not in text


def test_a_dir_without_run_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(run_report.ReportError, match=f"{tmp_path}: no run.json"):
        run_report.build(tmp_path)


def test_a_documented_failure_does_not_hide_failed_checks(tmp_path: Path) -> None:
    """The documented failure was hit, but a check failed too: the run failed, and its report says
    the failed checks first (the documented failure is no explanation for them)."""
    sc = _scenario("ks-lab-etcd-documented")
    task = "etcd : Install | Copy etcd binary from download dir"
    run = realistic_run(sc, tmp_path / sc.id, fail=("node1", "etcd : Install etcd", "not found"))
    timeline = run.results["upgrade"].timeline_path
    timeline.write_text(timeline.read_text().replace("etcd : Install etcd", task))
    _verdicts(run.dir, etcd_health="failed", untouched_components="passed")
    _finish(run, tmp_path, failed=True, archive="never")
    md = [line for line in (run.dir / run_report.REPORT_MD).read_text().splitlines() if line]
    assert md[:3] == [f"# {sc.id}: FAILED", "**Failed checks**: etcd health",
                      f"Failed as documented at `{task}` on node1 (stage upgrade)."]
    session = write_session_report(tmp_path)
    assert session is not None
    cell = task.replace("|", "\\|")  # a Markdown table cell escapes the task name's pipe
    assert f"| {sc.id} | **FAILED** | {cell} on node1 (documented); checks: etcd health |" in (tmp_path / "session.md").read_text()


def test_bars_less_than_a_pixel_apart_merge_only_with_their_own_status() -> None:
    from harness.report.timeline_plot import _merged

    px = 0.1
    tasks = [(0.0, 1.0, "ok"), (1.05, 2.0, "ok"), (2.0, 3.0, "changed"), (3.0, 4.0, "ok"), (4.5, 5.0, "ok")]
    assert _merged(tasks, px) == {"ok": [(0.0, 2.0), (3.0, 1.0), (4.5, 0.5)], "changed": [(2.0, 1.0)]}


def test_a_tagged_runs_targets_are_what_its_tags_move_and_build_metadata_is_no_change(tmp_path: Path) -> None:
    """`--tags=control-plane` leaves every kubelet: no target in its row. A kubelet read from its binary
    before the upgrade (v1.31.9) and then from the API (v1.31.9+lab.x) did not change; one that went to
    v1.32.0 did."""
    (tmp_path / "run.json").write_text(json.dumps({"outcomes": []}))
    (tmp_path / run_report.SCENARIO_FILE).write_text(json.dumps({"scenario": {
        "id": "t", "path": "component", "tags": ["control-plane"], "target": {"versions": {"kube_version": "1.32.0"}}}}))
    at = "2026-12-07T20:15:39+00:00"
    (tmp_path / "facts.json").write_text(json.dumps({
        "before": {"taken_at": "2026-12-07T20:15:06+00:00",
                   "versions": {"node1": {"kubelet": "v1.31.9", "kubectl": "v1.31.9"},
                                "node2": {"kubelet": "v1.31.9"}}},
        "samples": [{"at": at, "node": "node1", "component": "kubelet", "version": "v1.31.9+lab.x"},
                    {"at": at, "node": "node1", "component": "kubectl", "version": "v1.32.0"},
                    {"at": at, "node": "node2", "component": "kubelet", "version": "v1.32.0+lab.x"}],
    }))
    r = run_report.build(tmp_path)
    targets = {(v.node, v.component): v.target for v in r.versions}
    assert targets == {("node1", "kubelet"): None, ("node1", "kubectl"): "1.32.0", ("node2", "kubelet"): None}
    assert [(c.node, c.component, c.new) for c in r.changes] == [
        ("node1", "kubectl", "v1.32.0"), ("node2", "kubelet", "v1.32.0+lab.x")]


def test_the_apis_view_of_each_node_is_in_the_report_and_on_the_timeline(tmp_path: Path) -> None:
    """A graceful run's node states (sampled from the API): node2 cordoned for 20 s and not Ready for
    10 s of it, node3 cordoned until the last sample; both listed, and drawn in the SVG's legend."""
    (tmp_path / "run.json").write_text(json.dumps({"outcomes": []}))
    (tmp_path / run_report.SCENARIO_FILE).write_text(json.dumps({"scenario": {"id": "t", "path": "graceful"}}))
    t0 = datetime(2026, 12, 7, 20, 0, tzinfo=UTC)
    rounds = [(set(), set()), ({"node2"}, set()), ({"node2"}, {"node2"}), (set(), set()), ({"node3"}, set())]
    states = [{"at": (t0 + timedelta(seconds=10 * i)).isoformat(), "node": n, "ready": n not in down,
               "unschedulable": n in cordoned}
              for i, (cordoned, down) in enumerate(rounds) for n in ("node2", "node3")]
    (tmp_path / "facts.json").write_text(json.dumps({"node_states": states, "samples": [
        {"at": t0.isoformat(), "node": n, "component": "kubelet", "version": "v1.31.9"} for n in ("node2", "node3")]}))
    r = run_report.build(tmp_path)
    assert [(n.node, n.state, f"{n.start:%S}", f"{n.end:%S}") for n in r.node_spans] == [
        ("node2", "cordoned", "10", "30"), ("node2", "not ready", "20", "30"), ("node3", "cordoned", "40", "40")]
    text = run_report.render_markdown(r)
    assert "- node2 cordoned 20:00:10 - 20:00:30 (20 s)" in text and "- node2 not ready 20:00:20 - 20:00:30 (10 s)" in text
    from harness.report.timeline_plot import plot

    _png, svg = plot(r, tmp_path / "t.png", tmp_path / "t.svg")
    texts = "".join(ET.parse(svg).getroot().itertext())
    assert "node cordoned (API)" in texts and "node not ready (API)" in texts and "node3" in texts
