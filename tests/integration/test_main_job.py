"""The main job for real, on the lab default (the container backend), with the real Kubespray
checkout, run as the release gate a maintainer runs before bumping a tag (`harness gate`, which runs
`pytest scenarios/` for the selected scenarios and writes gate.md/json/xml). It is the README's
`-k etcd` plus the container-engine scenarios: every lab scenario (the lab installer's tagged, graceful
and container-engine paths) and Kubespray v2.31.0's own etcd role (`--tags=download,etcd`) and
container-engine roles on the lab. Left out: ks-lab-etcd-documented (the upgrade doc's `--tags=etcd`,
which fails at "Copy etcd binary from download dir", recorded in docs/benchmarks.md; run it with
`pytest scenarios/ -k ks-lab-etcd-documented`).

It brings up a 3-node container lab, deploys the baseline (etcd 3.4.23, containerd 1.6.20, runc 1.1.5)
once, snapshots it, and runs every scenario from that snapshot. Every check is its own JUnit item; this
test reads the gate report, pytest's JUnit report and the artifacts, and the host's kernel settings
(unchanged by the nodes).

Then, on the cluster the main job kept, `harness verify` must pass against the last scenario's
target, and fail naming the node, the component, expected and observed versions once one node's
etcd binary is put back to 3.4.23; then fail naming node3 once its etcd service is stopped.

Last, two faults in one upgrade on a QEMU lab (a VM killed needs VMs), through `harness gate`: a
tagged etcd upgrade (lab-etcd's copy) during which
- node3's etcd is stopped by hand for 10 s as the upgrade starts: the probe of node3's own endpoint
  reports that outage, its budget item fails showing the interval, the all-endpoints probe reports 0 s;
- then node2's QEMU is killed while the upgrade works on node2: the run ends by itself with items
  naming node2, and the fixture then finds nothing of the lab left;
and the gate exits 1 naming the scenario.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from rich.markup import escape

from harness import progress
from harness.cluster.lab.lxc import LxcProvider
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, LabProvider, leftovers
from tests.conftest import host_sysctls, kubespray_checkout

pytestmark = pytest.mark.lab

if os.geteuid() != 0:
    pytest.skip("the lab needs root (network namespaces, libvirtd); run as root, as CI does", allow_module_level=True)

REPO = Path(__file__).resolve().parents[2]
HARNESS = [sys.executable, "-m", "harness.cli"]
# The session's lab is named after the xdist worker; the child inherits our environment.
LAB = "pytest-" + os.environ.get("PYTEST_XDIST_WORKER", "main")
KUBESPRAY = kubespray_checkout()
LAB_SCENARIOS = ("lab-etcd", "lab-graceful-etcd", "lab-container-engine", "lab-graceful")
KS_SCENARIOS = ("ks-lab-etcd", "ks-lab-container-engine") if KUBESPRAY else ()
# See above: the README's `-k etcd` but the documented failure, plus the container-engine scenarios; the
# Kubernetes scenarios have their own test (tests/integration/test_kubernetes.py).
SELECT = "lab- and not documented and not lab-kube" if KUBESPRAY else "lab- and not ks- and not lab-kube"
# The gate's hop. Lab scenarios have no ref; the Kubespray ones upgrade with the --to ref.
GATE_REFS = ["--from", "v2.30.0", "--to", "v2.31.0"]
needs_kubespray = pytest.mark.skipif(KUBESPRAY is None, reason="no Kubespray checkout (../shared/kubespray.git)")


def _junit(path: Path) -> dict[str, str]:
    """test id -> passed | failed | error | skipped | xfailed."""
    out: dict[str, str] = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        status = "passed"
        for child in case:
            if child.tag in ("failure", "error"):
                status = "failed" if child.tag == "failure" else "error"
            elif child.tag == "skipped":
                status = "xfailed" if child.get("type") == "pytest.xfail" else "skipped"
        out[name] = status
    return out


def _gate(argv: list[str], tag: str) -> subprocess.CompletedProcess[str]:
    """`harness gate ...` as a user runs it, its output shown as it comes (a CI log shows where the job
    is) and kept."""
    argv = [*HARNESS, "gate", *argv]
    console, lines = progress.console(), []
    with subprocess.Popen(argv, cwd=REPO, text=True, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT) as child:
        assert child.stdout is not None
        for line in child.stdout:
            lines.append(line)
            console.print(f"[dim]{tag} |[/] {escape(line.rstrip())}", highlight=False)
    return subprocess.CompletedProcess(argv, child.returncode, "".join(lines))


@pytest.fixture(scope="module")
def main_job(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("main-job")
    LabProvider(LAB).down()  # a previous run of this very test
    artifacts, report = tmp / "artifacts", tmp / "gate"
    (tmp / "sysctl-before.json").write_text(json.dumps(host_sysctls()))
    argv = [*GATE_REFS, "-k", SELECT, "--keep", "always", "--artifacts", str(artifacts), "--report", str(report)]
    if KUBESPRAY:
        argv += ["--kubespray", str(KUBESPRAY)]
    proc = _gate([*argv, "--", "-p", "no:cacheprovider", "-rfE"], "main job")
    try:
        yield proc, _junit(report / "junit.xml") if (report / "junit.xml").exists() else {}, artifacts, tmp
    finally:
        LabProvider(LAB).down()
        assert leftovers(LabPaths(lab_prefix(LAB))) == []


def test_every_lab_check_passes(main_job) -> None:
    proc, items, _artifacts, tmp = main_job
    assert proc.returncode == 0, f"`harness gate ... -k {SELECT}` exited {proc.returncode}"
    ran = {k: v for k, v in items.items() if v != "skipped"}
    for scenario in (*(f"[{s}:" for s in LAB_SCENARIOS), *(f"[{s}:" for s in KS_SCENARIOS)):
        mine = {k: v for k, v in ran.items() if scenario in k}
        # playbook, untouched, units, store health and versions, certificates, planted state and
        # order, each its own item (target versions too, except for a documented failure).
        assert len(mine) >= 8, f"{scenario}: {sorted(mine)}"
        assert set(mine.values()) == {"passed"}, mine
    # The gate's own report: a row per scenario, every one passed, each linking its run report.
    gate = json.loads((tmp / "gate" / "gate.json").read_text())
    assert gate["exit_code"] == 0, gate["message"]
    rows = {r["scenario"]: r for r in gate["rows"]}
    assert sorted(rows) == sorted((*LAB_SCENARIOS, *KS_SCENARIOS)), sorted(rows)
    assert {r["verdict"] for r in rows.values()} == {"passed"}, rows
    assert all(r["report"].endswith("report.html") for r in rows.values()), rows
    assert "# Release gate v2.30.0 -> v2.31.0: PASSED" in (tmp / "gate" / "gate.md").read_text()


def test_the_host_kernel_settings_are_unchanged(main_job) -> None:
    """Container nodes share the host's kernel: after the whole main job (its nodes' systemd, etcd and
    containerd, Kubespray's roles), the host's `sysctl -a` is what it was before."""
    _proc, _items, _artifacts, tmp = main_job
    before = json.loads((tmp / "sysctl-before.json").read_text())
    after = host_sysctls()
    assert {k: (v, after.get(k)) for k, v in before.items() if after.get(k) != v} == {}


def test_runs_leave_timelines_and_runner_artifacts(main_job) -> None:
    _proc, _items, artifacts, _ = main_job
    run = json.loads((artifacts / "lab-graceful" / "run.json").read_text())
    assert run["results"]["upgrade"]["rc"] == 0
    upgrade = Path(run["results"]["upgrade"]["artifacts"])
    assert (upgrade / "job_events").is_dir() and (upgrade / "stdout").is_file() and (upgrade / "rc").is_file()
    # The playbook's own seconds (bench/scenarios.py's denominator) lie within the upgrade step's.
    step = next(o["seconds"] for o in run["outcomes"] if o["name"] == "upgrade")
    assert 0 < run["results"]["upgrade"]["seconds"] <= step, (run["results"]["upgrade"], step)
    events = [json.loads(line) for line in (upgrade / "timeline.jsonl").read_text().splitlines()]
    etcd_hosts = {e["host"] for e in events if "etcd" in e["tags"] and e["changed"]}
    assert etcd_hosts == {"node1", "node2", "node3"}
    # Only the first scenario deployed the baseline; the others, Kubespray's included, restored its snapshot.
    runs = (*LAB_SCENARIOS, *KS_SCENARIOS)
    baselines = {s: json.loads((artifacts / s / "run.json").read_text())["baseline"] for s in runs}
    assert sorted(baselines.values()) == ["deployed"] + ["restored"] * (len(runs) - 1), baselines


def test_each_scenario_leaves_its_report_and_timeline(main_job) -> None:
    """Issue 12: report.md, a self-contained report.html and timeline.png per scenario, every item's
    verdict in them, the session report over them all; no archive for a green run (--archive on-failure)."""
    _proc, items, artifacts, _ = main_job
    run_dir = artifacts / "lab-graceful"
    md, html = (run_dir / "report.md").read_text(), (run_dir / "report.html").read_text()
    assert md.startswith("# lab-graceful: passed\n") and "![timeline](timeline.png)" in md
    assert "<svg" in html and "<link" not in html
    assert (run_dir / "timeline.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    recorded = {json.loads(line)["item"] for line in (run_dir / "checks.jsonl").read_text().splitlines()}
    assert recorded == {k for k in items if "[lab-graceful:" in k}  # n/a items too: skipped in their call
    assert not (artifacts / "lab-graceful.tar.gz").exists()
    assert "| lab-graceful | passed |" in (artifacts / "session.md").read_text()
    if KUBESPRAY:
        ks = (artifacts / "ks-lab-container-engine" / "report.md").read_text()
        assert "Failed as documented at `container-engine/crictl : " in ks, ks[:2000]


def _upgrade_events(artifacts: Path, scenario: str) -> tuple[dict, list[dict]]:
    run = json.loads((artifacts / scenario / "run.json").read_text())
    timeline = Path(run["results"]["upgrade"]["artifacts"]) / "timeline.jsonl"
    return run, [json.loads(line) for line in timeline.read_text().splitlines()]


@needs_kubespray
def test_kubespray_etcd_role_upgraded_every_member(main_job) -> None:
    _proc, _items, artifacts, _ = main_job
    run, events = _upgrade_events(artifacts, "ks-lab-etcd")
    assert run["results"]["upgrade"]["rc"] == 0
    upgrade = next(s for s in run["stages"] if s["purpose"] == "upgrade")  # no Kubernetes: no plant stage before it
    assert upgrade["argv"][:4] == ["ansible-playbook", "cluster.yml", "--tags", "download,etcd"]
    # Kubespray's own roles did the work: its download role and its etcd role changed every node.
    for role in ("download", "etcd"):
        hosts = {e["host"] for e in events if e["task"].startswith(f"{role} : ") and e["changed"]}
        assert hosts == {"node1", "node2", "node3"}, (role, hosts)


@pytest.mark.parametrize("phase", ["etcd", "container-engine"])
def test_graceful_upgrades_one_node_at_a_time(main_job, phase: str) -> None:
    """The timeline shows each node's tasks of the phase finishing before the next node's start."""
    _proc, _items, artifacts, _ = main_job
    run = json.loads((artifacts / "lab-graceful" / "run.json").read_text())
    events = [json.loads(line) for line in
              (Path(run["results"]["upgrade"]["artifacts"]) / "timeline.jsonl").read_text().splitlines()]
    spans: dict[str, tuple[str, str]] = {}
    for e in events:
        if phase in e["tags"] and "download" not in e["tags"] and e["status"] != "skipped":
            start, end = spans.get(e["host"], (e["start"], e["end"]))
            spans[e["host"]] = (min(start, e["start"]), max(end, e["end"]))
    assert sorted(spans) == ["node1", "node2", "node3"]
    ordered = sorted(spans.values())
    for (_, end), (nxt, _) in itertools.pairwise(ordered):
        assert end <= nxt, f"{phase} tasks of two nodes overlapped: {spans}"


def _verify(inventory: Path, expect: dict, tmp: Path) -> subprocess.CompletedProcess[str]:
    path = tmp / "expect.yaml"
    path.write_text(yaml.safe_dump(expect))
    return subprocess.run([*HARNESS, "verify", "--inventory", str(inventory), "--expect", str(path)],
                          cwd=REPO, stdin=subprocess.DEVNULL, text=True, capture_output=True, check=False,
                          env={**os.environ, "COLUMNS": "200"})


def test_verify_passes_then_names_the_node_left_behind(main_job) -> None:
    _proc, _items, artifacts, tmp = main_job
    # The kept cluster is where the last scenario left it.
    last = max(artifacts.glob("*/run.json"), key=lambda p: p.stat().st_mtime).parent.name
    from harness.scenario import load_catalogue

    sc = next(s for s in load_catalogue(None) if s.id == last)
    versions = {k.removesuffix("_version"): v for k, v in {**sc.baseline.versions, **sc.target.versions}.items()}
    assert versions["etcd"] != "3.4.23", f"{last} left etcd where the rollback below puts it"
    inventory = tmp / "inventory.yaml"
    subprocess.run([*HARNESS, "lab", "inventory", "--name", LAB, "-o", str(inventory)], cwd=REPO, check=True)

    ok = _verify(inventory, {"installer": "lab", "versions": versions}, tmp)
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # Put node2 back on etcd 3.4.23, the baseline's binary from the files repo's tarball (a restored
    # container node booted afresh: systemd-tmpfiles emptied its /tmp, Kubespray's download dir).
    cluster = LxcProvider(LAB).find()
    assert cluster is not None
    _rollback_etcd(cluster, "node2", "3.4.23")
    bad = _verify(inventory, {"installer": "lab", "versions": versions}, tmp)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    rows = [line for line in bad.stdout.splitlines() if "node2" in line and " etcd " in line]
    assert any(versions["etcd"] in r and "3.4.23" in r and "FAIL" in r for r in rows), bad.stdout
    assert not any("FAIL" in line for line in bad.stdout.splitlines() if line.startswith(("│ node1", "│ node3"))), \
        bad.stdout


def _rollback_etcd(cluster, node: str, version: str) -> None:  # type: ignore[no-untyped-def]
    from harness.installer import files_repo

    tarball = files_repo.default_root() / files_repo.url_path("etcd", version)
    with tarball.open("rb") as f:
        subprocess.run(cluster.ssh_argv(node, (
            f"sudo tar -xzO -f - etcd-v{version}-linux-amd64/etcd > /tmp/etcd-{version}"
            f" && sudo install -m 0755 /tmp/etcd-{version} /usr/local/bin/etcd && (sudo systemctl restart etcd || true)")),
            stdin=f, check=True, capture_output=True, timeout=300)


def test_verify_names_the_member_whose_etcd_stopped(main_job) -> None:
    """A fault after a green upgrade: node3's etcd service stopped. `harness verify` (the same suite the
    scenario items judge with) fails, and its failing checks name node3 and etcd."""
    _proc, _items, _artifacts, tmp = main_job
    inventory = tmp / "inventory.yaml"
    if not inventory.exists():
        subprocess.run([*HARNESS, "lab", "inventory", "--name", LAB, "-o", str(inventory)], cwd=REPO, check=True)
    cluster = LxcProvider(LAB).find()
    assert cluster is not None
    cluster.run("node3", "sudo systemctl stop etcd")
    bad = _verify(inventory, {"installer": "lab"}, tmp)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    lines = bad.stdout.splitlines()
    assert any("FAIL" in line and "units" in line for line in lines), bad.stdout
    # The failing checks' details (printed under their names) name the node and the unit.
    assert any("node3" in line and "etcd" in line and "inactive" in line for line in lines), bad.stdout
    # The healthy member is not blamed (node2's etcd is down too: the test above put 3.4.23 back on it,
    # which cannot start on 3.5 data; measured in the CI trial, with quorum lost as a result).
    assert not any("node1" in line and "etcd" in line and "inactive" in line for line in lines), bad.stdout


# Both faults in one upgrade (one restore, one run: CI's time): node3's etcd stopped by hand for 10 s as
# the upgrade starts, then node2's VM killed once node2 works on an etcd task. The member budget: the
# stop's 10 s must exceed it (a member's own restart measured 2-11 s, scenarios/lab.yaml).
FAULT = "fault-etcd"
MEMBER_BUDGET = 9.0
STOP_SECONDS = 10.0


def _fault_catalogue(tmp: Path) -> Path:
    """lab-etcd (`--tags=etcd`, the lab installer) under another id, required, without its second run,
    with a member budget the 10-s stop exceeds, on a QEMU lab of its own (a baseline deploy there).
    Not lab-graceful-etcd: its upgrade-cluster.yml also walks the container-engine plays (684 s against
    lab-etcd's ~400 s in the run that chose, under the same load)."""
    doc = yaml.safe_load((REPO / "scenarios" / "lab.yaml").read_text())
    sc = next(s for s in doc["scenarios"] if s["id"] == "lab-etcd")
    sc = {
        **sc,
        "id": FAULT,
        "idempotence": False,
        "gate": "required",
        "budgets": {**sc["budgets"], "etcd-member": MEMBER_BUDGET},
        "description": "lab-etcd with node3's etcd stopped by hand for 10 s as the upgrade starts, then node2's VM"
        " killed (SIGKILL of its QEMU) while the upgrade works on node2",
    }
    path = tmp / "fault.yaml"
    path.write_text(yaml.safe_dump({"scenarios": [sc]}, sort_keys=False))
    return path


def _upgrade_events_written(artifacts: Path) -> list[Path]:
    return sorted(artifacts.glob(f"{FAULT}/runner/*-upgrade/artifacts/*/job_events/*.json"))


# A stop that lasts the same every run: etcd 3.4.23, stopped as the leader, handed over its leadership
# and then hung on SIGTERM until systemd's 90-s stop timeout (measured in a CI run: the upgrade's own
# "ensure started" then cancelled this stop job). What is left after 5 s is SIGKILLed; the unit counts
# as stopped once systemd says inactive or failed (no auto-restart: the stop was asked for).
_STOP = (
    "sudo timeout 5 systemctl stop etcd || sudo systemctl kill --signal=SIGKILL etcd; "
    "for i in $(seq 100); do case $(systemctl show -p ActiveState --value etcd) in inactive|failed) exit 0;; esac; "
    "sleep 0.1; done; systemctl status etcd; exit 1"
)
# Started, then served again: `systemctl start` of etcd's notify unit returns once etcd says it is
# ready, which is not yet a read answered. The test's own truth for the outage's end is the first
# linearizable read on the member itself (in the guest, on loopback), timed on the host.
_START = (
    "sudo systemctl start etcd && for i in $(seq 120); do "
    "sudo ETCDCTL_API=3 /usr/local/bin/etcdctl --endpoints=https://127.0.0.1:2379 --cacert=/etc/ssl/etcd/ssl/ca.pem "
    "--cert=/etc/ssl/etcd/ssl/admin-$(hostname).pem --key=/etc/ssl/etcd/ssl/admin-$(hostname)-key.pem "
    "--dial-timeout=2s --command-timeout=2s get /harness-fault >/dev/null 2>&1 && exit 0; sleep 0.2; done; exit 1"
)


def _stop_member_when_upgrade_starts(
    artifacts: Path, node: str, stop: threading.Event
) -> tuple[float, float, float, float] | None:
    """Once the upgrade stage's first job event is written (the probes started before the playbook),
    stop `node`'s etcd for STOP_SECONDS, then start it. Returns epoch seconds, all on the host's clock:
    the stop issued, the stop done (etcd surely down from here), the start issued (surely down until
    here) and the member serving reads again; None if no upgrade began."""
    while not stop.is_set():
        if _upgrade_events_written(artifacts):
            cluster = LabProvider(LAB).find()
            assert cluster is not None
            issued = time.time()
            cluster.run(node, _STOP)
            stopped = time.time()
            time.sleep(STOP_SECONDS)
            started = time.time()
            cluster.run(node, _START)
            return issued, stopped, started, time.time()
        stop.wait(0.5)
    return None


def _kill_when_node_works(artifacts: Path, domain: str, node: str, stop: threading.Event) -> list[str]:
    """SIGKILL the QEMU of `domain` once the upgrade stage's events show `node` working on an etcd task
    (observed in ansible-runner's job events, not guessed by time). Returns the task it was killed in."""
    killed: list[str] = []
    while not stop.is_set() and not killed:
        for path in _upgrade_events_written(artifacts):
            try:
                data = json.loads(path.read_text()).get("event_data", {})
            except (OSError, ValueError):
                continue  # being written
            if data.get("host") == node and "etcd" in (data.get("task") or "").lower():
                # The QEMU process libvirt recorded for the domain (its pid file), never one found by name.
                pid = int((LabPaths(lab_prefix(LAB)).root / "libvirt" / "run" / "qemu" / f"{domain}.pid").read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(data["task"])
                break
        stop.wait(0.5)
    return killed


@pytest.fixture(scope="module")
def faults(main_job):
    """The faulted upgrade through `harness gate` on a QEMU lab: node3's etcd stopped for 10 s, then
    node2's VM killed after the stop is over (never both down at once: quorum stays)."""
    _proc, _items, _artifacts, tmp = main_job
    art, report = tmp / "fault-artifacts", tmp / "fault-gate"
    # A VM killed mid-upgrade needs VMs: these faults run on the QEMU backend, which replaces the main
    # job's kept container lab of the same name (the verify tests above are done with it).
    argv = [*GATE_REFS, "--scenarios", str(_fault_catalogue(tmp)), "-k", FAULT, "--keep", "always",
            "--artifacts", str(art), "--report", str(report), "--", "-p", "no:cacheprovider", "-rfE",
            "--lab-backend", "qemu"]
    done, member_back = threading.Event(), threading.Event()

    def stop_then_kill() -> tuple[tuple[float, float, float, float] | None, list[str]]:
        window = _stop_member_when_upgrade_starts(art, "node3", done)
        member_back.set()
        return window, _kill_when_node_works(art, f"{lab_prefix(LAB)}-node2", "node2", done)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        faulting = pool.submit(stop_then_kill)
        proc = _gate(argv, "faults")
        done.set()
        window, killed_in = faulting.result()
    assert member_back.is_set()
    return proc, window, killed_in, art, report


def _properties(junit: Path, item: str) -> dict[str, list[str]]:
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.get("name", "").startswith(item + "["):
            out: dict[str, list[str]] = {}
            for prop in case.iter("property"):
                out.setdefault(prop.get("name", ""), []).append(prop.get("value", ""))
            return out
    raise AssertionError(f"no {item} item in {junit}")


def _failures(junit: Path) -> dict[str, str]:
    return {
        case.get("name", ""): (child.get("message") or "") + (child.text or "")
        for case in ET.parse(junit).getroot().iter("testcase")
        for child in case
        if child.tag in ("failure", "error")
    }


def test_a_member_stopped_for_10s_fails_its_budget_and_the_gate(faults) -> None:
    """Issue 12's fault, through the release gate (issue 11): node3's etcd stopped by hand for 10 s as
    a tagged etcd upgrade starts. The probe of node3's own endpoint reports an outage matching the stop;
    its budget item fails showing the interval; a client with every endpoint lost nothing (0 s); the
    gate exits 1 naming the scenario."""
    proc, window, _killed_in, _art, report = faults
    assert window is not None, "the upgrade never started: nothing was stopped\n" + proc.stdout[-3000:]
    issued, stopped, started, served = window
    assert proc.returncode == 1, proc.stdout[-3000:]

    junit = report / "junit.xml"
    member = _properties(junit, "test_disruption_etcd_member")
    outages = [tuple(map(float, v.split("-"))) for v in member["disruption:etcd:node3:interval"]]
    # The outage that overlaps the stop covers the time etcd was surely down, and lies within the
    # stop's commands (ssh under emulation takes seconds each way), each bound to one sampling interval
    # plus the probe's timeout.
    hit = [(a, b) for a, b in outages if a <= started and b >= stopped]
    assert len(hit) == 1, (outages, stopped, started)
    a, b = hit[0]
    slack = 1.0 + 5.0  # HARNESS_PROBE_INTERVAL and HARNESS_PROBE_TIMEOUT defaults
    assert a <= stopped + slack and b >= started, (a, b, issued, stopped, started, served)
    assert a >= issued - slack and b <= served + slack, (a, b, issued, stopped, started, served)
    print(f"node3 stopped {started - stopped:.1f} s (down to serving {served - issued:.1f} s); its probe: {b - a:.1f} s")
    assert float(member["disruption:etcd:node3:seconds"][0]) > MEMBER_BUDGET
    everyone = _properties(junit, "test_disruption_etcd_all")
    assert float(everyone["disruption:etcd:all:seconds"][0]) == 0.0, everyone
    items = _junit(junit)
    assert items[next(k for k in items if k.startswith("test_disruption_etcd_all["))] == "passed"

    # The budget item's message shows node3's outage in a from/to table.
    text = next(t for name, t in _failures(junit).items() if name.startswith("test_disruption_etcd_member["))
    assert "etcd:node3" in text and "from" in text and "seconds" in text, text[:3000]

    gate = json.loads((report / "gate.json").read_text())
    (row,) = gate["rows"]
    assert (row["scenario"], row["verdict"], gate["exit_code"]) == (FAULT, "failed", 1), row
    md = (report / "gate.md").read_text()
    assert md.startswith("# Release gate v2.30.0 -> v2.31.0: FAILED") and f"`{FAULT}` (required, failed)" in md, md


def test_a_node_killed_mid_upgrade_is_named(faults) -> None:
    """A fault during the upgrade: node2's VM is killed while the upgrade works on it. The run ends by
    itself, its items fail naming node2 in one line each, never a probe-script dump, and the run's
    record says what happened to node2; the main job's fixture then finds nothing left behind."""
    proc, _window, killed_in, art, report = faults
    out = proc.stdout
    assert killed_in, "node2 was never seen working on an etcd task: nothing was killed\n" + out[-3000:]
    assert proc.returncode == 1, out[-3000:]
    failed = _failures(report / "junit.xml")
    assert failed, "a VM killed mid-upgrade went unnoticed"
    for name, text in failed.items():
        assert "node2" in text, f"{name} fails without naming node2: {text[:2000]}"
        assert "CommandResult(" not in text, f"{name} dumps a raw probe result: {text[:2000]}"
    run = json.loads((art / FAULT / "run.json").read_text())
    assert "node2" in json.dumps(run), run


@needs_kubespray
def test_kubespray_container_engine_stops_at_crictl_after_runc(main_job) -> None:
    """Kubespray's container-engine roles on the lab: runc's role replaced runc on every node, then
    crictl's download failed on every node (the files repo has no crictl); containerd's role never ran.
    Its check items (all passed above) found runc at the target and containerd at its baseline."""
    _proc, _items, artifacts, _ = main_job
    run, events = _upgrade_events(artifacts, "ks-lab-container-engine")
    assert run["results"]["upgrade"]["rc"] != 0
    failed = {(e["host"], e["task"]) for e in events if e["status"] == "failed"}
    assert {h for h, _t in failed} == {"node1", "node2", "node3"}, failed
    assert all(t.startswith("container-engine/crictl : ") for _h, t in failed), failed
    runc = {e["host"] for e in events if e["task"] == "container-engine/runc : Copy runc binary from download dir" and e["changed"]}
    assert runc == {"node1", "node2", "node3"}
    assert not any(e["task"].startswith("container-engine/containerd : ") and e["changed"] for e in events)
