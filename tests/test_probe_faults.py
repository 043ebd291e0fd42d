"""A node whose probe fails costs only that node: retries of ssh's transient failures, one line per
failed node (never testinfra's `CommandResult(...)` dump of the whole script), the other nodes' facts
kept, and the checks failing for that node alone. Plus boot ids: a node that rebooted is named.

The probes run through real testinfra (its ssh backend) against `fake_ssh`, a fixture standing in
for the `ssh` binary (no VM here): it fails a node's first connections the way ssh does (exit 255,
its message on stderr) and otherwise runs the probe script on this machine.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from testinfra.backend.ssh import SshBackend  # type: ignore[import-untyped]
from testinfra.host import Host  # type: ignore[import-untyped]

from harness.checks import suite
from harness.checks.certs import check_certs
from harness.checks.units import check_reboots, check_units
from harness.cluster.base import Node
from harness.probes import collected
from harness.probes import hosts as h
from harness.probes.facts import CertExpiry, HostFacts, PreUpgradeRecord, UnitState, from_json, to_json

KEX = "kex_exchange_identification: Connection closed by remote host"
NODES = [Node("node1", ("etcd",), "127.0.0.1"), Node("node2", ("etcd",), "127.0.0.2"), Node("node3", ("worker",), "127.0.0.3")]
BOOT_ID = Path("/proc/sys/kernel/random/boot_id").read_text().strip()

# The host is ssh's next-to-last argument, the remote command its last (testinfra builds it so).
FAKE_SSH = """#!/bin/sh
for a; do host=$cmd; cmd=$a; done
echo "$host" >> "$FAKE_SSH_STATE/calls"
f="$FAKE_SSH_STATE/$host.fail"
if [ -f "$f" ]; then
  n=$(cat "$f")
  if [ "$n" = always ] || [ "$n" -gt 0 ]; then
    [ "$n" = always ] || echo $((n - 1)) > "$f"
    printf 'Warning: Permanently added %s (ED25519) to the list of known hosts.\\r\\n' "$host" >&2
    cat "$FAKE_SSH_STATE/$host.stderr" >&2
    exit "$(cat "$FAKE_SSH_STATE/$host.rc")"
  fi
fi
exec sh -c "$cmd"
"""


@dataclass
class FakeSsh:
    """Fixture: an `ssh` on PATH that testinfra's ssh backend runs. `fail(node, times, stderr, rc)`
    makes a node's next `times` connections fail ("always": every one)."""

    state: Path

    def fail(self, node: str, times: int | str, stderr: str = KEX, rc: int = 255) -> None:
        (self.state / f"{node}.fail").write_text(str(times))
        (self.state / f"{node}.stderr").write_text(stderr + "\r\n")
        (self.state / f"{node}.rc").write_text(str(rc))

    def calls(self, node: str) -> int:
        log = self.state / "calls"
        return log.read_text().split().count(node) if log.exists() else 0

    def host(self, node: str) -> Host:
        return Host(SshBackend(node, controlpersist=0))


@pytest.fixture
def fake_ssh(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeSsh:
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    ssh = bin_dir / "ssh"
    ssh.write_text(FAKE_SSH)
    ssh.chmod(ssh.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SSH_STATE", str(state))
    return FakeSsh(state)


class _Cluster:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes

    def with_role(self, role: str) -> list[Node]:
        return [n for n in self.nodes if role in n.roles]


def _probe(fake_ssh: FakeSsh, slept: list[float], nodes: list[Node] = NODES) -> h.HostProbe:
    return h.HostProbe(_Cluster(nodes), installer="lab", host_factory=fake_ssh.host,  # type: ignore[arg-type]
                       cert_globs=("/nonexistent/*.pem",), sleep=slept.append)


# -- collection ---------------------------------------------------------------------------------


def test_a_transient_ssh_failure_is_retried(fake_ssh: FakeSsh) -> None:
    fake_ssh.fail("node2", 2)
    slept: list[float] = []
    facts = {f.node: f for f in _probe(fake_ssh, slept).all_host_facts()}
    assert fake_ssh.calls("node2") == 3 and fake_ssh.calls("node1") == 1
    assert slept == list(h.RETRY_DELAYS[:2])  # a backoff before each retry, none after the answer
    assert facts["node2"].error is None and facts["node2"].boot_id == BOOT_ID
    assert set(facts["node2"].versions) == set(facts["node1"].versions) and facts["node2"].versions


def test_a_node_that_stays_unreachable_is_one_line_and_the_others_survive(fake_ssh: FakeSsh) -> None:
    fake_ssh.fail("node2", "always")
    slept: list[float] = []
    facts = _probe(fake_ssh, slept).all_host_facts()
    assert [f.node for f in facts] == ["node1", "node2", "node3"]  # the cluster's order
    by = {f.node: f for f in facts}
    assert by["node2"].error == f"node2 unreachable: {KEX}"  # ssh's last line: not its warning, not the script
    assert by["node2"].versions == {} and by["node2"].boot_id is None
    assert fake_ssh.calls("node2") == len(h.RETRY_DELAYS) + 1 and slept == list(h.RETRY_DELAYS)
    for node in ("node1", "node3"):
        assert by[node].error is None and by[node].boot_id == BOOT_ID and by[node].versions
    assert from_json(HostFacts, to_json(by["node2"])) == by["node2"]


@pytest.mark.parametrize(("stderr", "rc", "want"), [
    ("vagrant@node2: Permission denied (publickey).", 255, "node2 unreachable: vagrant@node2: Permission denied (publickey)."),
    ("ssh: Could not resolve hostname node2: Name or service not known", 255,
     "node2 unreachable: ssh: Could not resolve hostname node2: Name or service not known"),
    ("sudo: a password is required", 1, "node2 probe failed (rc=1): sudo: a password is required"),
])
def test_a_lasting_failure_is_reported_at_once(fake_ssh: FakeSsh, stderr: str, rc: int, want: str) -> None:
    fake_ssh.fail("node2", "always", stderr, rc)
    slept: list[float] = []
    by = {f.node: f for f in _probe(fake_ssh, slept).all_host_facts()}
    assert by["node2"].error == want
    assert fake_ssh.calls("node2") == 1 and slept == []  # waiting would not heal it


@pytest.mark.parametrize("said", ["ssh: connect to host node2 port 22: Connection refused",
                                  "ssh: connect to host node2 port 22: Connection timed out",
                                  "kex_exchange_identification: read: Connection reset by peer"])
def test_transient_shapes(fake_ssh: FakeSsh, said: str) -> None:
    fake_ssh.fail("node2", 1, said)
    slept: list[float] = []
    (facts,) = _probe(fake_ssh, slept, [NODES[1]]).all_host_facts()
    assert facts.error is None and fake_ssh.calls("node2") == 2 and slept == [h.RETRY_DELAYS[0]]


def test_etcd_is_read_from_the_next_member_when_the_first_is_unreachable(fake_ssh: FakeSsh) -> None:
    fake_ssh.fail("node1", "always")
    etcd, _ = _probe(fake_ssh, []).etcd()
    assert etcd.queried_from == "node2"
    fake_ssh.fail("node2", "always")
    with pytest.raises(h.ProbeError) as e:
        _probe(fake_ssh, []).etcd()
    assert str(e.value) == f"node1 unreachable: {KEX}; node2 unreachable: {KEX}"


def test_the_exception_testinfra_raises_becomes_one_line() -> None:
    """testinfra's ssh backend raises RuntimeError(CommandResult) on exit 255: its text is the whole
    command, the probe script included."""
    from testinfra.backend.base import CommandResult  # type: ignore[import-untyped]

    backend = SshBackend("node2")
    script = h.versions_script()
    result = CommandResult(backend, 255, script.encode(), b"", f"Warning: added\r\n{KEX}\r\n".encode())
    assert "@@section" in str(RuntimeError(result))  # the dump the checks used to print
    err = h.probe_failure("node2", RuntimeError(result))
    assert str(err) == f"node2 unreachable: {KEX}" and err.transient
    err = h.probe_failure("node2", ConnectionResetError(104, "Connection reset by peer"))
    assert err.transient and str(err) == "node2 unreachable: ConnectionResetError: [Errno 104] Connection reset by peer"
    err = h.probe_failure("node2", ValueError(f"bad\n@@section kubelet\n{script}"))
    assert str(err) == "node2 probe failed: ValueError: bad" and not err.transient


# -- the checks over a cluster with one node unreachable --------------------------------------------


def _good(node: str, boot_id: str = "0f0c8a43-3b6e-4d43-9c2b-3f1e2d8b1a11") -> HostFacts:
    return HostFacts(
        node=node, roles=("etcd",), boot_id=boot_id,
        versions={"containerd": "1.7.24", "runc": "1.1.15", "etcd": "3.5.16", "etcdctl": "3.5.16"},
        units={u: UnitState(u, True, True, True) for u in ("containerd", "etcd")},
        certs={"/etc/ssl/etcd/ssl/ca.pem": CertExpiry("/etc/ssl/etcd/ssl/ca.pem", datetime(2099, 1, 1, tzinfo=UTC))},
    )


UNREACHABLE = HostFacts(node="node2", roles=("etcd",), error=f"node2 unreachable: {KEX}")
HOST_CHECKS = ("target versions", "untouched components", "units", "certificates", "reboots")


def _judge(hosts: list[HostFacts], before: PreUpgradeRecord) -> dict[str, suite.CheckResult]:
    facts = collected.Facts(nodes={x.node: x.roles for x in hosts}, hosts=tuple(hosts))
    expect = suite.Expectation(installer="lab", versions={"etcd": "3.5.16"}, upgrade=suite.UpgradeExpectation(
        path="component", upgraded=frozenset({"etcd"}), before=before))
    return {r.name: r for r in suite.judge(facts, expect, HOST_CHECKS)}


def test_the_host_checks_fail_for_the_unreachable_node_only_with_its_line() -> None:
    ids = {"node1": "0f0c8a43-3b6e-4d43-9c2b-3f1e2d8b1a11", "node3": "5d7e6f1a-2b3c-4d5e-8f9a-0b1c2d3e4f5a",
           "node2": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"}
    before = h.pre_upgrade_record([_good(n, ids[n]) for n in ("node1", "node2", "node3")], datetime.now(UTC))
    healthy = [_good(n, ids[n]) for n in ("node1", "node2", "node3")]
    for name, r in _judge(healthy, before).items():
        assert r.passed, (name, r.message)  # so what fails below is node2 alone
    results = _judge([healthy[0], UNREACHABLE, healthy[2]], before)
    for name in HOST_CHECKS:
        r = results[name]
        assert not r.passed and r.applicable, name
        assert r.message.count(f"node2 unreachable: {KEX}") == 1, (name, r.message)
        assert "CommandResult" not in r.message and "@@section" not in r.message
        assert "node1" not in r.message and "node3" not in r.message, (name, r.message)


def test_a_node_unreachable_before_the_upgrade_is_named_after_it() -> None:
    ids = {n: f"0f0c8a43-3b6e-4d43-9c2b-3f1e2d8b1a1{i}" for i, n in enumerate(("node1", "node2"))}
    before = h.pre_upgrade_record([_good("node1", ids["node1"]), UNREACHABLE], datetime.now(UTC))
    results = _judge([_good("node1", ids["node1"]), _good("node2", ids["node2"])], before)
    for name in ("untouched components", "reboots"):
        assert not results[name].passed and f"before the upgrade: node2 unreachable: {KEX}" in results[name].message
    assert results["units"].passed and results["target versions"].passed


def test_units_and_certs_still_judge_the_other_nodes() -> None:
    bad_units = HostFacts(node="node1", roles=("etcd",), units={"etcd": UnitState("etcd", True, False, True)})
    r = check_units([bad_units, UNREACHABLE])
    assert not r.passed and r.summary.startswith(f"node2 unreachable: {KEX}; 1 of 1 unit(s)")
    assert "node1" in r.details and "inactive" in r.details
    expired = HostFacts(node="node1", roles=("etcd",), certs={"/c.pem": CertExpiry("/c.pem", datetime(2000, 1, 1, tzinfo=UTC))})
    r = check_certs([expired, UNREACHABLE])
    assert not r.passed and f"node2 unreachable: {KEX}" in r.summary and "EXPIRED" in r.details
    r = check_certs([UNREACHABLE])  # not "no certificate found on any node (wrong paths?)"
    assert r.summary == f"node2 unreachable: {KEX}"


# -- reboots -------------------------------------------------------------------------------------


def test_a_rebooted_node_is_named() -> None:
    before = {"node1": "0f0c8a43-3b6e-4d43-9c2b-3f1e2d8b1a11", "node2": "9a8b7c6d-5e4f-4a3b-9c2d-1e0f9a8b7c6d"}
    same = [_good("node1", before["node1"]), _good("node2", before["node2"])]
    assert check_reboots(before, same).passed
    rebooted = [same[0], _good("node2", "11111111-2222-4333-8444-555555555555")]
    r = check_reboots(before, rebooted)
    assert not r.passed and r.summary == "node2 rebooted during the upgrade (boot id changed)"
    assert not check_reboots({}, same).applicable  # an older record without boot ids
    unread = HostFacts(node="node2", roles=(), errors={"boot_id": "unreadable boot id (rc=1): ''"})
    r = check_reboots(before, [same[0], unread])
    assert not r.passed and r.summary == "node2: boot id unreadable after the upgrade: unreadable boot id (rc=1): ''"
    r = check_reboots({"node1": before["node1"]}, same, {"node2": f"node2 unreachable: {KEX}"})
    assert not r.passed and r.summary == f"before the upgrade: node2 unreachable: {KEX}"


def test_the_pre_upgrade_record_keeps_boot_ids_and_who_was_unreachable() -> None:
    rec = h.pre_upgrade_record([_good("node1"), UNREACHABLE], datetime(2026, 1, 1, tzinfo=UTC))
    assert rec.boot_ids == {"node1": "0f0c8a43-3b6e-4d43-9c2b-3f1e2d8b1a11"}
    assert rec.unprobed == {"node2": f"node2 unreachable: {KEX}"}
    assert set(rec.versions) == {"node1"}  # no empty entry reading as "every tool absent"
    assert from_json(PreUpgradeRecord, to_json(rec)) == rec
    old = from_json(PreUpgradeRecord, '{"taken_at": "2026-01-01T00:00:00+00:00", "versions": {}}')
    assert old.boot_ids == {} and old.unprobed == {}  # records saved before boot ids still load


def test_the_probe_reads_the_boot_id(fake_ssh: FakeSsh) -> None:
    (facts,) = _probe(fake_ssh, [], [NODES[0]]).all_host_facts()
    assert facts.boot_id == BOOT_ID and "boot_id" not in facts.errors

