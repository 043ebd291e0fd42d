"""`pytest scenarios/ -n N`: every item of a scenario on one xdist worker, so each scenario's pipeline
runs once; scenarios restoring the same baseline stay together; one existing cluster (--provider
static) is never upgraded from two workers.

The pipelines here are reached for real and fail fast, with nothing created: the scenarios are
Kubespray's on a lab baseline, given a checkout that is not a git repository, so each pipeline stops at
its `plan` step (before any cluster exists) and still writes its run.json. The items are the real
check items of scenarios/test_upgrade.py. A spy (a conftest wrapping `Session.run`, calling through)
logs every pipeline started, by worker.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

import pytest

from tests.conftest import REPO

# Three scenarios: ks-a and ks-b restore the same lab baseline, ks-c another one.
CATALOGUE = """\
x-topology: &topology
  nodes:
    - {name: node1, roles: [control-plane, etcd, worker]}
    - {name: node2, roles: [etcd, worker]}
x-baseline: &baseline
  installer: lab
  versions: {etcd_version: 3.4.23, containerd_version: 1.6.20, runc_version: 1.1.5}
scenarios:
  - id: ks-a
    description: etcd by Kubespray over the lab baseline
    installer: kubespray
    topology: *topology
    baseline: *baseline
    target: {ref: v2.31.0, versions: {etcd_version: 3.5.30}}
    path: component
    tags: [download, etcd]
  - id: ks-b
    description: the container engine by Kubespray over the same baseline
    installer: kubespray
    topology: *topology
    baseline: *baseline
    target: {ref: v2.31.0, versions: {containerd_version: 1.7.24, runc_version: 1.1.15}}
    path: component
    tags: [download, container-engine]
  - id: ks-c
    description: etcd by Kubespray over another baseline (a newer etcd)
    installer: kubespray
    topology: *topology
    baseline: {installer: lab, versions: {etcd_version: 3.5.16, containerd_version: 1.6.20, runc_version: 1.1.5}}
    target: {ref: v2.31.0, versions: {etcd_version: 3.5.30}}
    path: component
    tags: [download, etcd]
"""

# A spy on the real pipeline: logs (worker, scenario) for every pipeline started, then calls through.
SPY = """\
import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _pipeline_spy():
    from harness.pipeline import Session

    real = Session.run

    def run(self, scenario):
        with open(os.environ["SPY_LOG"], "a") as f:
            f.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {scenario.id}\\n")
        return real(self, scenario)

    Session.run = run
    yield
    Session.run = real
"""

# Undoes the plugin's grouping (xdist's own load scheduling), to show the assertions below catch a split.
UNGROUPED = """\
import pytest


@pytest.hookimpl(trylast=True)
def pytest_configure(config):
    config.pluginmanager.unregister(name="harness-xdist-scheduler")
"""

# `-v` under xdist: "[gw1] [ 40%] FAILED test_upgrade.py::test_x[ks-a:component:etcd]"
ITEM_LINE = re.compile(r"^\[(gw\d+)\] \[\s*\d+%\] (PASSED|FAILED|ERROR|SKIPPED) \S+\[([^:\]]+):")


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    # Neutral rootdir (pytester's is named after the test and -k matches folder names).
    root = pytester.mkdir("suite")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_upgrade.py").write_text((REPO / "scenarios" / "test_upgrade.py").read_text())
    (root / "catalogue.yaml").write_text(CATALOGUE)
    (root / "conftest.py").write_text(SPY)
    checkout = root / "not-a-repo"  # passes --kubespray's check; Kubespray.open refuses it at plan
    (checkout / ".git").mkdir(parents=True)
    (checkout / "cluster.yml").write_text("[]\n")
    monkeypatch.chdir(root)
    monkeypatch.delenv("HARNESS_KUBESPRAY", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    monkeypatch.setenv("SPY_LOG", str(tmp_path / "spy.log"))
    return pytester


def _run(project: pytest.Pytester, tmp_path: Path, *args: str) -> pytest.RunResult:
    return project.runpytest_subprocess(
        "-v", "-p", "no:cacheprovider", "--scenarios", "catalogue.yaml", "--kubespray", "not-a-repo",
        "--artifacts", str(tmp_path / "artifacts"), *args,
    )


def _workers_by_scenario(result: pytest.RunResult) -> dict[str, set[str]]:
    out: dict[str, set[str]] = defaultdict(set)
    for line in result.outlines:
        m = ITEM_LINE.match(line)
        if m:
            out[m.group(3)].add(m.group(1))
    return dict(out)


def _pipelines(tmp_path: Path) -> list[tuple[str, str]]:
    log = tmp_path / "spy.log"
    return [tuple(line.split()) for line in log.read_text().splitlines()] if log.exists() else []  # type: ignore[misc]


def test_each_scenario_runs_once_on_one_worker(project: pytest.Pytester, tmp_path: Path) -> None:
    r = _run(project, tmp_path, "-n", "2")
    assert r.ret == pytest.ExitCode.TESTS_FAILED, r.outlines[-20:]  # every item: "step 'plan' ... failed"
    by_scenario = _workers_by_scenario(r)
    assert set(by_scenario) == {"ks-a", "ks-b", "ks-c"}, r.outlines
    for sid, workers in by_scenario.items():
        assert len(workers) == 1, f"{sid}'s items ran on {sorted(workers)}"
    # One pipeline per scenario in the whole run, on the worker that ran its items.
    started = _pipelines(tmp_path)
    assert sorted(sid for _, sid in started) == ["ks-a", "ks-b", "ks-c"], started
    for worker, sid in started:
        assert by_scenario[sid] == {worker}
        doc = json.loads((tmp_path / "artifacts" / sid / "run.json").read_text())
        assert doc["worker"] == worker
        assert [(o["name"], o["ok"]) for o in doc["outcomes"]] == [("plan", False)]  # nothing was created
        assert "is not a git repository" in doc["outcomes"][0]["error"]
    # Grouped by baseline: the two scenarios restoring one snapshot share a worker (and its cluster).
    assert by_scenario["ks-a"] == by_scenario["ks-b"]


def test_group_by_scenario_spreads_scenarios_of_one_baseline(project: pytest.Pytester, tmp_path: Path) -> None:
    r = _run(project, tmp_path, "-n", "2", "--group-by", "scenario")
    by_scenario = _workers_by_scenario(r)
    assert all(len(w) == 1 for w in by_scenario.values()), by_scenario
    assert sorted(sid for _, sid in _pipelines(tmp_path)) == ["ks-a", "ks-b", "ks-c"]
    assert set().union(*by_scenario.values()) == {"gw0", "gw1"}  # both workers had a scenario


def test_the_checks_above_see_a_split_when_grouping_is_undone(project: pytest.Pytester, tmp_path: Path) -> None:
    """Control: with plain load scheduling the same run splits a scenario over both workers and runs
    its pipeline twice, which is what the assertions of the first test would catch."""
    (project.path / "suite" / "conftest.py").write_text(SPY + "\n\n" + UNGROUPED)
    r = _run(project, tmp_path, "-n", "2")
    by_scenario = _workers_by_scenario(r)
    assert any(len(w) > 1 for w in by_scenario.values()), by_scenario
    started = [sid for _, sid in _pipelines(tmp_path)]
    assert len(started) > len(set(started)), started


def test_budget_items_of_some_scenarios_never_split_a_scenario(project: pytest.Pytester, tmp_path: Path) -> None:
    """Budget items exist only for the scenarios that budget their kind: pytest's own ordering then
    interleaves scenarios, and the session-scoped `scenario` parameter, switched back, ran a pipeline
    again (lab-graceful-etcd upgraded twice in one bench session). Each pipeline runs once, its items
    together, with or without workers."""
    # The lab catalogue's shapes: budget kinds and an idempotence item that differ by scenario.
    budgeted = CATALOGUE.replace(
        "    tags: [download, etcd]\n", "    tags: [download, etcd]\n    budgets: {etcd-member: 20, etcd-all: 0, containerd: 0}\n",
    ).replace(
        "    tags: [download, container-engine]\n", "    tags: [download, container-engine]\n    budgets: {etcd-all: 0, containerd: 90}\n",
    ).replace("  - id: ks-a\n", "  - id: ks-a\n    idempotence: true\n")
    assert budgeted.count("budgets:") == 3
    (project.path / "suite" / "catalogue.yaml").write_text(budgeted)
    collected = _run(project, tmp_path, "--collect-only", "-q")
    order = [m.group(1) for line in collected.outlines if (m := re.search(r"\[([^:\]]+):", line))]
    assert any("disruption" in line for line in collected.outlines)  # the budget items are there
    assert order == sorted(order, key=order.index), order  # one run of items per scenario
    for args in ([], ["-n", "2"]):
        (tmp_path / "spy.log").unlink(missing_ok=True)
        r = _run(project, tmp_path, *args)
        assert r.ret == pytest.ExitCode.TESTS_FAILED, r.outlines[-20:]
        started = [sid for _, sid in _pipelines(tmp_path)]
        assert sorted(started) == ["ks-a", "ks-b", "ks-c"], (args, started)


def test_static_provider_refuses_several_workers(project: pytest.Pytester, tmp_path: Path) -> None:
    inventory = tmp_path / "hosts.yaml"
    inventory.write_text("all:\n  children:\n    etcd: {hosts: {node1: {ansible_host: 127.0.0.1, ansible_port: 9}}}\n")
    r = _run(project, tmp_path, "-n", "2", "--provider", "static", "--inventory", str(inventory))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*--provider static with 2 xdist workers*upgrade it at the same time*without -n*"])
    assert _pipelines(tmp_path) == []
    # One worker is fine: the pipeline runs once, on gw0.
    r = _run(project, tmp_path, "-n", "1", "--provider", "static", "--inventory", str(inventory), "-k", "ks-a")
    assert r.ret == pytest.ExitCode.TESTS_FAILED
    assert _pipelines(tmp_path) == [("gw0", "ks-a")]
    assert json.loads((tmp_path / "artifacts" / "ks-a" / "run.json").read_text())["worker"] == "gw0"


@pytest.mark.parametrize("args,words", [
    (["--group-by", "cluster"], "--group-by 'cluster': choose one of baseline, scenario"),
    (["-n", "2", "--dist", "each"], "--dist each runs every item on every worker"),
])
def test_bad_distribution_is_a_usage_error(project: pytest.Pytester, tmp_path: Path, args: list[str], words: str) -> None:
    r = _run(project, tmp_path, *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert words in r.stderr.str()
