"""The container canary (issue 12, container engine): the before step starts a `sleep` container with ctr
(the node's own /usr bound read-only into an empty rootfs) on every containerd node, the host probe reads it back, and the check wants it RUNNING with the PID
it was planted with.

The parser and the check are tested over output recorded from Debian's containerd 1.6.20 and ctr on
this machine. The real test runs the before step's plant (harness.probes.plant) here with a private containerd (its
own root, state and socket under /tmp), restarts containerd the way an upgrade does (its shim must
outlive it), and kills the container's process to see the check fail naming the node; after each,
this machine is a static cluster's local node, collected by the real host probe and judged by the suite.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.checks import suite
from harness.checks.canary import check_container_canary
from harness.checks.result import CheckResult
from harness.cluster.base import Cluster, Node
from harness.cluster.static import StaticProvider
from harness.probes import collected
from harness.probes.facts import CanaryFacts, HostFacts, from_json, to_json
from harness.probes.hosts import CANARY_NAMESPACE, HostProbe, canary_script, parse_canary
from harness.probes.plant import Plant
from tests.conftest import Containerd, needs_containerd, private_containerd

# -- recorded output (containerd 1.6.20~ds1-1+deb12u3, ctr from the same package) ---------------------

PLANTED = "state=running\npid=6492\nshim_pid=6470\nctr=/usr/bin/ctr\nsocket=/tmp/c2-ctd/state/containerd.sock\nreason=\n"
TASKS_RUNNING = "TASK      PID     STATUS    \ncanary    6492    RUNNING\n"
TASKS_STOPPED = "TASK      PID     STATUS    \ncanary    6492    STOPPED\n"
TASKS_NONE = "TASK    PID    STATUS    \n"
DIAL_FAILED = ('ctr: failed to dial "/run/containerd/containerd.sock": context deadline exceeded: connection error: '
               'desc = "transport: error while dialing: dial unix:///run/containerd/containerd.sock: timeout"')


def _output(planted: str | None, tasks: str | None, rc: str = "0", shim: str | None = None) -> str:
    """The three canary sections as the probe script prints them (None: rc absent)."""
    out = "@@section canary-planted\n" + (f"{planted}@@rc 0\n" if planted is not None else "@@rc absent\n")
    out += "@@section canary-tasks\n" + (f"{tasks}\n@@rc {rc}\n" if tasks is not None else "@@rc absent\n")
    return out + "@@section canary-shim\n" + (f"{shim}\n@@rc 0\n" if shim is not None else "@@rc absent\n")


def test_parse_running_canary() -> None:
    c = parse_canary(_output(PLANTED, TASKS_RUNNING, shim="6470"))
    assert c == CanaryFacts(ctr=True, planted="running", planted_pid=6492, planted_shim_pid=6470, planted_reason=None,
                            status="RUNNING", pid=6492, shim_pid=6470)


def test_parse_stopped_and_vanished_task() -> None:
    stopped = parse_canary(_output(PLANTED, TASKS_STOPPED))
    assert (stopped.status, stopped.pid, stopped.shim_pid, stopped.error) == ("STOPPED", 6492, None, None)
    gone = parse_canary(_output(PLANTED, TASKS_NONE))
    assert (gone.status, gone.pid, gone.error, gone.planted_pid) == (None, None, None, 6492)


def test_parse_ctr_failure_keeps_its_words() -> None:
    c = parse_canary(_output(PLANTED, DIAL_FAILED, rc="1"))
    assert c.ctr and c.status is None
    assert c.error is not None and c.error.startswith("ctr task ls failed (rc=1): ctr: failed to dial")


def test_parse_no_ctr_and_no_record() -> None:
    assert parse_canary(_output(None, None)) == CanaryFacts(ctr=False)
    # ctr there, nothing planted (a cluster the plant never ran on).
    assert parse_canary(_output(None, TASKS_NONE)) == CanaryFacts(ctr=True)


def test_parse_plant_error_record() -> None:
    record = "state=error\npid=\nshim_pid=\nctr=/usr/local/bin/ctr\nsocket=/run/containerd/containerd.sock\nreason=ctr run failed: boom\n"
    c = parse_canary(_output(record, TASKS_NONE))
    assert (c.planted, c.planted_pid, c.planted_reason) == ("error", None, "ctr run failed: boom")


def test_parse_interrupted_script_is_not_absent() -> None:
    c = parse_canary("@@section boot_id\nabc\n@@rc 0\n")
    assert c.ctr and c.error is not None and "printed nothing" in c.error


def test_canary_facts_round_trip_json() -> None:
    h = HostFacts("node1", ("worker",), canary=parse_canary(_output(PLANTED, TASKS_RUNNING, shim="6470")))
    assert from_json(HostFacts, to_json(h)) == h


# -- the check ---------------------------------------------------------------------------------------


def _host(node: str, canary: CanaryFacts | None) -> HostFacts:
    return HostFacts(node, ("worker",), canary=canary)


RUNNING = CanaryFacts(ctr=True, planted="running", planted_pid=100, planted_shim_pid=90, status="RUNNING", pid=100,
                      shim_pid=90)


def test_check_passes_when_pid_kept_and_names_na_nodes() -> None:
    r = check_container_canary([_host("node1", RUNNING), _host("etcd1", CanaryFacts(ctr=False))], require_planted=True)
    assert r.passed and r.applicable
    assert "1 canary container(s)" in r.summary and "etcd1: no ctr" in r.summary
    assert "node1: RUNNING PID 100, shim PID 90" in r.details


@pytest.mark.parametrize(("now", "said"), [
    (CanaryFacts(ctr=True, planted="running", planted_pid=100, status="RUNNING", pid=250),
     "node1: the canary restarted (planted as PID 100, RUNNING as PID 250 now)"),
    (CanaryFacts(ctr=True, planted="running", planted_pid=100, status="STOPPED", pid=100),
     "node1: the canary is STOPPED (planted as PID 100, now PID 100)"),
    (CanaryFacts(ctr=True, planted="running", planted_pid=100),
     "node1: the canary container vanished (planted as PID 100, ctr lists no task now)"),
    (CanaryFacts(ctr=True, planted="running", planted_pid=100, error="ctr task ls failed (rc=1): connection refused"),
     "node1: the canary's state could not be read (planted as PID 100): ctr task ls failed (rc=1): connection refused"),
    (CanaryFacts(ctr=True, planted="error", planted_reason="ctr run failed: boom"),
     "node1: the canary could not be planted: ctr run failed: boom"),
])
def test_check_fails_naming_node_and_pids(now: CanaryFacts, said: str) -> None:
    r = check_container_canary([_host("node1", now), _host("node2", RUNNING)], require_planted=True)
    assert not r.passed and r.applicable
    assert r.summary == said
    assert "node2" not in r.summary


def test_check_table_shows_before_and_after() -> None:
    gone = CanaryFacts(ctr=True, planted="running", planted_pid=100)
    r = check_container_canary([_host("node1", gone)])
    assert "node1  RUNNING PID 100  no task" in r.details


def test_unreachable_node_fails_in_its_one_line() -> None:
    down = HostFacts("node2", ("worker",), error="node2 unreachable: ssh: connect to host 10.0.0.2 port 22: No route to host")
    r = check_container_canary([_host("node1", RUNNING), down], require_planted=True)
    assert not r.passed
    assert r.summary == "node2 unreachable: ssh: connect to host 10.0.0.2 port 22: No route to host"


def test_ctr_without_record_fails_only_when_a_plant_ran() -> None:
    unplanted = [_host("node1", CanaryFacts(ctr=True))]
    failed = check_container_canary(unplanted, require_planted=True)
    assert not failed.passed and failed.applicable
    assert failed.summary.startswith("node1: ctr is there but no canary container was planted")
    na = check_container_canary(unplanted, require_planted=False)
    assert not na.applicable and na.summary == "node1: no canary planted"


def test_no_containerd_anywhere_is_na_not_pass() -> None:
    r = check_container_canary([_host("etcd1", CanaryFacts(ctr=False)), _host("etcd2", CanaryFacts(ctr=False))],
                               require_planted=True)
    assert not r.applicable and r.status == "n/a"
    assert r.summary == "etcd1: no ctr (no containerd); etcd2: no ctr (no containerd)"


def test_registered_in_the_suite_for_items_and_verify() -> None:
    check = suite.CHECKS["container canary"]
    assert check.item == "test_container_canary"
    assert not check.upgrade_only  # part of `harness verify` too
    assert check.requires == ("before", "after")  # the before step plants it
    facts = collected.Facts(nodes={"node1": ("worker",)}, hosts=(_host("node1", RUNNING),))
    (result,) = suite.judge(facts, suite.Expectation(), ["container canary"])
    assert result.passed
    stopped = _host("node1", CanaryFacts(ctr=True, planted="running", planted_pid=100, status="STOPPED", pid=100))
    (result,) = suite.judge(collected.Facts(nodes={"node1": ("worker",)}, hosts=(stopped,)), suite.Expectation(),
                            ["container canary"])
    assert not result.passed and "node1: the canary is STOPPED" in result.summary


# -- the host probe: the canary rides in the host facts' one round trip ---------------------------------


class _CountingHost:
    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, *a: Any, **k: Any) -> Any:
        self.commands.append(command)
        return SimpleNamespace(rc=0, stdout="@@section boot_id\n0b9f5b0e-4c57-4a4a-9c55-0f4c1bd2c0a1\n@@rc 0\n"
                               + _output(PLANTED, TASKS_RUNNING, shim="6470"))


class _OneNode(Cluster):
    def __init__(self) -> None:
        super().__init__("c", [Node("node1", ("worker",), "127.0.0.1")], Path("/dev/null"))

    def snapshot(self, name: str) -> None: ...
    def restore(self, name: str) -> None: ...
    def has_snapshot(self, name: str) -> bool: return False
    def destroy(self) -> None: ...


def test_host_facts_read_the_canary_in_the_same_round_trip() -> None:
    host = _CountingHost()
    facts = HostProbe(_OneNode(), host_factory=lambda node: host).host_facts(Node("node1", ("worker",), "127.0.0.1"))
    assert len(host.commands) == 1
    assert "@@section canary-tasks" in host.commands[0] and "@@section boot_id" in host.commands[0]
    assert facts.canary is not None and (facts.canary.status, facts.canary.pid) == ("RUNNING", 6492)


# -- real: the before step's plant here, a private containerd restarted, the task killed -----------------

@pytest.fixture
def containerd() -> Iterator[Containerd]:
    with private_containerd("canary-", CANARY_NAMESPACE) as d:
        yield d


def _plant(d: Containerd, socket: Path | None = None) -> dict[str, Any]:
    """The before step's facts-and-plant round trip (harness.probes.plant) on this machine as a static
    cluster's local node with no etcd: the canary part alone."""
    inventory = d.dir / "plant.ini"
    inventory.write_text("[kube_node]\nnode1 ansible_connection=local ansible_host=127.0.0.1\n")
    cluster = StaticProvider(inventory).cluster()
    plant = Plant(etcd_node=None, ctr=shutil.which("ctr") or "/usr/bin/ctr", socket=str(socket or d.socket))
    probe = HostProbe(cluster, installer="lab", canary_dir=str(d.dir / "canary"))
    ((facts, planted),) = probe.all_facts_and_plant(plant)
    assert facts.error is None, facts.error
    assert planted.etcd is None  # not an etcd node
    return {planted.node: planted.canary}


def _probe(d: Containerd) -> list[HostFacts]:
    """The host probe's canary sections, run here as it runs them on a node, parsed the same way."""
    text = subprocess.run(["sh", "-c", canary_script(str(d.dir / "canary"))], capture_output=True, text=True,
                          check=True, timeout=60).stdout
    return [HostFacts("node1", ("worker",), canary=parse_canary(text))]


def _collect_and_judge(d: Containerd) -> CheckResult:
    """The whole after-step: this machine as a static cluster node (`ansible_connection=local`), its
    host facts collected by the real HostProbe in one round trip, judged by the suite as an item is."""
    inventory = d.dir / "static.ini"
    inventory.write_text("[kube_node]\nnode1 ansible_connection=local\n")
    cluster = StaticProvider(inventory).cluster()
    facts = suite.collect(cluster, installer="lab", probe=HostProbe(cluster, installer="lab", canary_dir=str(d.dir / "canary")))
    assert "hosts" not in facts.errors, facts.errors
    (result,) = suite.judge(facts, suite.Expectation(installer="lab", require_planted=True), ["container canary"])
    return result


@needs_containerd
def test_real_canary_survives_a_containerd_restart_and_a_kill_fails(containerd: Containerd) -> None:
    planted = _plant(containerd)["node1"]
    assert planted["state"] == "running", planted
    pid = int(planted["pid"])

    # An upgrade restarts containerd with KillMode=process: the daemon goes, the shim and task stay.
    containerd.stop()
    containerd.start()
    after = _collect_and_judge(containerd)
    assert after.passed, after.message
    assert f"node1: RUNNING PID {pid}, shim PID {planted['shim_pid']}" in after.details

    os.kill(pid, signal.SIGKILL)
    for _ in range(100):  # containerd sees the exit through the shim: wait for it, not for a time
        c = _probe(containerd)[0].canary
        if c is not None and c.status != "RUNNING":
            break
        time.sleep(0.1)
    killed = _collect_and_judge(containerd)
    assert not killed.passed
    assert killed.summary == f"node1: the canary is STOPPED (planted as PID {pid}, now PID {pid})"

    # A kept cluster's next plant replaces the stopped canary with a fresh one.
    again = _plant(containerd)["node1"]
    assert again["state"] == "running" and int(again["pid"]) != pid
    assert check_container_canary(_probe(containerd), require_planted=True).passed


@needs_containerd
def test_real_plant_without_containerd_socket_records_why_and_does_not_fail(containerd: Containerd) -> None:
    planted = _plant(containerd, socket=containerd.dir / "nowhere" / "containerd.sock")["node1"]
    assert planted["state"] == "error"
    assert "containerd's socket" in planted["reason"] and "nowhere" in planted["reason"], planted
    r = check_container_canary(_probe(containerd), require_planted=True)
    assert not r.passed and r.summary.startswith("node1: the canary could not be planted: ctr is at"), r.summary
