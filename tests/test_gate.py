"""`harness gate`, run for real as a command: pytest in a subprocess, real pipelines, real reports.

Nothing here creates a cluster or installs anything. Scenarios fail or pass for real, fast:
- Kubespray scenarios given a checkout that is not a git repository stop at their `plan` step;
- with `--provider static` and an inventory whose only host is none of the scenario's nodes, a lab
  scenario's plan passes and its `cluster` step is refused before anything runs (a static cluster
  cannot add nodes).
Most tests run a one-item check module (`--tests`): did the scenario's plan pass? One runs the real
check items of scenarios/ under xdist.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

LAB_OK = """\
id: lab-ok
description: a lab scenario whose plan passes
installer: lab
topology: {nodes: [{name: node1, roles: [etcd, worker]}]}
baseline: {versions: {etcd_version: 3.4.23}}
target: {versions: {etcd_version: 3.5.16}}
path: component
tags: [etcd]
"""


def _ks(sid: str, gate: str = "required") -> str:
    return f"""\
id: {sid}
description: Kubespray over a lab baseline; its checkout is no git repository, so its plan fails
installer: kubespray
topology: {{nodes: [{{name: node1, roles: [control-plane, etcd, worker]}}]}}
baseline: {{installer: lab, versions: {{etcd_version: 3.4.23}}}}
target: {{ref: v2.31.0, versions: {{etcd_version: 3.5.30}}}}
path: component
tags: [download, etcd]
gate: {gate}
"""


PLAN_CHECK = """\
import pytest


@pytest.mark.check("plan")
def test_plan(scenario_run):
    scenario_run.require("plan")
"""


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace: the catalogue, a checkout that is not a repository, a static inventory, the checks."""
    (tmp_path / "catalogue").mkdir()
    (tmp_path / "catalogue" / "lab-ok.yaml").write_text(LAB_OK)
    (tmp_path / "catalogue" / "ks-broken.yaml").write_text(_ks("ks-broken"))
    (tmp_path / "catalogue" / "ks-advisory.yaml").write_text(_ks("ks-advisory", gate="advisory"))
    checkout = tmp_path / "not-a-repo"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "cluster.yml").write_text("[]\n")
    (tmp_path / "hosts.yaml").write_text("all:\n  children:\n    etcd: {hosts: {elsewhere: {ansible_host: 127.0.0.1}}}\n")
    checks = tmp_path / "checks"
    checks.mkdir()
    (checks / "pytest.ini").write_text("[pytest]\n")
    (checks / "test_plan.py").write_text(PLAN_CHECK)
    monkeypatch.delenv("HARNESS_KUBESPRAY", raising=False)
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    return tmp_path


def gate(ws: Path, *args: str, checks: bool = True, static: bool = True) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "harness.cli", "gate", "--from", "v2.30.0", "--to", "v2.31.0",
            "--scenarios", str(ws / "catalogue"), "--artifacts", str(ws / "artifacts")]
    if checks:
        argv += ["--tests", str(ws / "checks" / "test_plan.py")]
    if static:
        argv += ["--provider", "static", "--inventory", str(ws / "hosts.yaml")]
    argv += list(args)
    return subprocess.run(argv, check=False, cwd=ws, capture_output=True, text=True, timeout=600, env=os.environ | {"COLUMNS": "200"})


def report(ws: Path) -> dict:
    return json.loads((ws / "artifacts" / "gate.json").read_text())


def rows(ws: Path) -> dict[str, dict]:
    return {r["scenario"]: r for r in report(ws)["rows"]}


KS = ["--", "--kubespray", "not-a-repo"]  # to pytest only: the gate's own --kubespray would open it to plan


def test_required_passed_advisory_failed_exits_0(ws: Path) -> None:
    r = gate(ws, "-k", "lab-ok or ks-advisory", *KS)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(ws)
    assert set(got) == {"lab-ok", "ks-advisory"}
    assert (got["lab-ok"]["verdict"], got["lab-ok"]["gate"]) == ("passed", "required")
    assert (got["ks-advisory"]["verdict"], got["ks-advisory"]["gate"]) == ("failed", "advisory")
    assert "is not a git repository" in got["ks-advisory"]["detail"]
    # The pipeline really ran: lab-ok's plan passed, then the static cluster refused its node.
    run = json.loads((ws / "artifacts" / "lab-ok" / "run.json").read_text())
    assert [(o["name"], o["ok"]) for o in run["outcomes"]] == [("plan", True), ("cluster", False)]
    assert "has no host(s) node1" in run["outcomes"][1]["error"]
    assert got["lab-ok"]["report"]  # a link to the scenario's report (report.html, else run.json)
    assert (ws / "artifacts" / got["lab-ok"]["report"]).exists()
    md = (ws / "artifacts" / "gate.md").read_text()
    assert md.startswith("# Release gate v2.30.0 -> v2.31.0: PASSED")
    assert "| `ks-advisory` | component | advisory | failed |" in md
    suite = ET.parse(ws / "artifacts" / "gate.xml").getroot().find("testsuite")
    assert suite is not None and (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("2", "0", "1")
    assert (ws / "artifacts" / "junit.xml").exists()  # pytest's, one case per check item
    assert "every required scenario passed (1); advisory not passed: ks-advisory" in r.stdout


def test_a_failed_required_scenario_fails_the_gate_and_is_named(ws: Path) -> None:
    r = gate(ws, *KS)
    assert r.returncode == 1, r.stdout + r.stderr
    got = rows(ws)
    assert {k: v["verdict"] for k, v in got.items()} == {"ks-advisory": "failed", "ks-broken": "failed", "lab-ok": "passed"}
    assert "1 required scenario(s) did not pass: ks-broken (failed)" in r.stdout
    md = (ws / "artifacts" / "gate.md").read_text()
    assert md.startswith("# Release gate v2.30.0 -> v2.31.0: FAILED")
    assert "| `ks-broken` | component | required | FAILED |" in md
    assert "- `ks-broken` (required, failed): test_plan: AssertionError: step 'plan' of ks-broken failed" in md
    suite = ET.parse(ws / "artifacts" / "gate.xml").getroot().find("testsuite")
    assert suite is not None
    failed = [c.get("name") for c in suite.iter("testcase") if c.find("failure") is not None]
    assert failed == ["ks-broken"]
    assert report(ws)["exit_code"] == 1


def test_last_failed_reruns_only_what_failed_and_keeps_the_rest(ws: Path) -> None:
    assert gate(ws, *KS).returncode == 1
    # ks-broken is repaired (a lab scenario now, whose plan passes); lab-ok is not rerun.
    (ws / "catalogue" / "ks-broken.yaml").write_text(LAB_OK.replace("lab-ok", "ks-broken"))
    r = gate(ws, "--last-failed", *KS)
    assert r.returncode == 0, r.stdout + r.stderr
    got = rows(ws)
    assert {k: (v["verdict"], v["carried"]) for k, v in got.items()} == {
        "lab-ok": ("passed", True), "ks-broken": ("passed", False), "ks-advisory": ("failed", False)}
    ran = {c.get("name") for c in ET.parse(ws / "artifacts" / "junit.xml").getroot().iter("testcase")}
    assert ran == {"test_plan[ks-broken:component:etcd]", "test_plan[ks-advisory:component:download+etcd]"}
    assert "(previous run)" in (ws / "artifacts" / "gate.md").read_text()


def test_last_failed_needs_a_previous_report_of_the_same_refs(ws: Path) -> None:
    r = gate(ws, "--last-failed")
    assert r.returncode == 2
    assert "--last-failed: no previous gate report at" in r.stderr
    assert gate(ws, "-k", "lab-ok").returncode == 0
    r = gate(ws, "--last-failed")
    assert r.returncode == 5  # nothing failed last time: nothing ran now, and that is never a pass
    assert "had no failed scenario; nothing to rerun" in r.stdout


@pytest.mark.parametrize("args,words", [
    (["-k", "no-such-scenario"], "no scenario ran: -k 'no-such-scenario' selects no scenario of the catalogue"),
    (["-k", "ks-"], ("no scenario ran: all 2 selected scenario(s) were skipped, e.g. ks-advisory:"
                     " ks-advisory needs a Kubespray checkout: pass --kubespray PATH")),
])
def test_zero_scenarios_run_is_its_own_exit_code(ws: Path, args: list[str], words: str) -> None:
    r = gate(ws, *args)
    assert r.returncode == 5, r.stdout + r.stderr
    assert words in " ".join(r.stdout.split())
    assert report(ws)["exit_code"] == 5


def test_real_check_items_under_xdist(ws: Path) -> None:
    """scenarios/'s own items, two workers, the lab provider (nothing is created: both plans fail)."""
    r = gate(ws, "-k", "ks-", "-n", "2", *KS, checks=False, static=False)
    assert r.returncode == 1, r.stdout + r.stderr
    got = rows(ws)
    assert {k: v["verdict"] for k, v in got.items()} == {"ks-broken": "failed", "ks-advisory": "failed"}
    for sid, row in got.items():
        assert row["items"]["failed"] > 1 and row["items"]["passed"] == 0  # every check item failed
        assert row["worker"] in ("gw0", "gw1")
        assert json.loads((ws / "artifacts" / sid / "run.json").read_text())["worker"] == row["worker"]
    names = [c.get("name") for c in ET.parse(ws / "artifacts" / "junit.xml").getroot().iter("testcase")]
    assert names and all("[ks-broken:" in n or "[ks-advisory:" in n for n in names)


@pytest.mark.parametrize("args,words", [
    (["--to", "v2.30.0"], "the same ref; nothing to gate"),
    (["--to", "v2.29.0"], "is a downgrade"),
    (["-n", "2"], "--provider static with 2 xdist workers"),
    (["--keep", "sometimes"], "Invalid value for '--keep'"),
    (["--provider", "static", "--inventory", "/nonexistent.yaml"], "--inventory /nonexistent.yaml: no such file"),
])
def test_bad_input_exits_2(ws: Path, args: list[str], words: str) -> None:
    r = gate(ws, *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert words in r.stdout + r.stderr


def test_disruption_column_reads_the_probes_samples(tmp_path: Path) -> None:
    from harness.gate import disruption_summary

    samples = tmp_path / "disruption.jsonl"
    assert disruption_summary(samples, {}) == ""  # no probes ran
    lines = [{"t": t, "backend": "etcd:node2", "ok": t not in (2.0, 3.0), "latency_ms": 1.0} for t in range(6)]
    lines += [{"t": t, "backend": "etcd:all", "ok": True, "latency_ms": 1.0} for t in range(6)]
    samples.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    assert disruption_summary(samples, {"etcd:node2": 5}) == "etcd:node2 2.0 s (budget 5 s)"
    assert disruption_summary(samples, {"etcd-member": 1}) == "etcd:node2 2.0 s (budget 1 s); over budget: etcd:node2"
    samples.write_text("\n".join(json.dumps(x | {"ok": True}) for x in lines) + "\n")
    assert disruption_summary(samples, {}) == "none"


def test_hops_run_in_turn_and_lab_scenarios_once(ws: Path) -> None:
    """v2.29.1 -> v2.31.0 is two hops; the lab scenario has no Kubespray ref to move, so only the first
    hop runs it, while the Kubespray scenario runs in both (its run.json in each hop's folder)."""
    argv_from = ["--from", "v2.29.1"]
    r = subprocess.run([sys.executable, "-m", "harness.cli", "gate", *argv_from, "--to", "v2.31.0",
                        "--scenarios", str(ws / "catalogue"), "--artifacts", str(ws / "artifacts"),
                        "--tests", str(ws / "checks" / "test_plan.py"), "--provider", "static",
                        "--inventory", str(ws / "hosts.yaml"), "-k", "lab-ok or ks-broken", *KS],
                       check=False, cwd=ws, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stdout + r.stderr
    doc = report(ws)
    assert doc["hops"] == ["v2.29.1->v2.30.0", "v2.30.0->v2.31.0"]
    assert [(x["hop"], x["scenario"], x["verdict"]) for x in doc["rows"]] == [
        ("v2.29.1->v2.30.0", "ks-broken", "failed"), ("v2.29.1->v2.30.0", "lab-ok", "passed"),
        ("v2.30.0->v2.31.0", "ks-broken", "failed")]
    assert doc["junit"] == ["junit-hop1.xml", "junit-hop2.xml"]
    for hop in ("hop1-v2.29.1-v2.30.0", "hop2-v2.30.0-v2.31.0"):
        assert (ws / "artifacts" / hop / "ks-broken" / "run.json").exists()
    assert not (ws / "artifacts" / "hop2-v2.30.0-v2.31.0" / "lab-ok").exists()
    assert "| hop | scenario |" in (ws / "artifacts" / "gate.md").read_text()
