"""Upgrade order and version skew from timelines and version samples: pass and fail."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from harness.checks.order import (
    at,
    check_cordon_order,
    check_etcd_before_control_plane,
    check_one_at_a_time,
    check_sample_order,
    check_task_order,
    check_version_skew,
    phase_of,
    serial_count,
)
from harness.probes.facts import NodeStateSample, VersionSample
from harness.upgrade.timeline import TaskRecord

T0 = datetime(2025, 1, 15, 10, 0, tzinfo=UTC)


def ev(host: str, minute: float, tags: list[str], task: str = "t", changed: bool = True, dur: float = 0.5,
       status: str = "changed") -> TaskRecord:
    """A timeline record as the runner writes it (times as ansible-runner's ISO strings)."""
    start = T0 + timedelta(minutes=minute)
    return TaskRecord(host, "play", task, tuple(tags), start.isoformat(), (start + timedelta(minutes=dur)).isoformat(),
                      status, changed)


def s(minute: float, node: str, comp: str, version: str | None) -> VersionSample:
    return VersionSample(T0 + timedelta(minutes=minute), node, comp, version)


def test_phase_of() -> None:
    assert phase_of(ev("n", 0, ["etcd", "etcd-secrets"])) == "etcd"
    assert phase_of(ev("n", 0, ["download", "etcd"])) is None  # fetching a tarball changes nothing on the node
    assert phase_of(ev("n", 0, ["control-plane", "kubeadm"])) == "control-plane"
    assert phase_of(ev("n", 0, ["preinstall"])) is None


def test_a_tagged_run_puts_each_task_in_the_phase_its_selected_tag_names() -> None:
    """Kubespray v2.31.0 `cluster.yml --tags=download,node` on the lab: preinstall's "Create kubernetes
    directories" (tags down to `network` and `control-plane`) and the node role's kubelet config
    (`kubelet, kubeadm` beside the role's `node`) ran because of `node`: they are node tasks, and the
    run is in order. Without the run's tags the same records read as network and control-plane work
    on workers before their kubelet."""
    dirs = ["kubelet", "k8s-secrets", "kube-controller-manager", "kube-apiserver", "bootstrap_os", "apps",
            "network", "control-plane", "node"]
    run = [ev("node2", 0, dirs), ev("node2", 1, ["kubeadm", "kubelet", "node"]), ev("node2", 2, ["node", "kubelet"])]
    assert phase_of(run[0], ("download", "node")) == "node" and phase_of(run[0]) == "network"
    assert phase_of(run[1], ("download", "node")) == "node" and phase_of(run[1]) == "control-plane"
    assert check_task_order(run, selected=("download", "node")).passed
    r = check_task_order(run)
    assert not r.passed and "network before node" in r.details
    # A selected tag no task phase knows changes nothing: the task's own tags decide.
    assert phase_of(ev("n", 0, ["etcd", "preinstall"]), ("preinstall",)) == "etcd"


def test_checks_read_the_runners_timeline_records() -> None:
    """One record type: what the runner writes to timeline.jsonl is what the order checks read."""
    line = json.dumps({"host": "cp1", "play": "Upgrade", "task": "etcd | Restart", "tags": ["etcd"],
                       "start": "2025-01-15T10:00:00.5+00:00", "end": "2025-01-15T10:00:05Z",
                       "status": "changed", "changed": True, "msg": None})
    e = TaskRecord.from_dict(json.loads(line))
    assert e.tags == ("etcd",) and phase_of(e) == "etcd"
    assert at(e.end) - at(e.start) == timedelta(seconds=4.5)  # type: ignore[operator]
    assert at("2025-01-15T10:00:00") == datetime(2025, 1, 15, 10, tzinfo=UTC)  # naive: UTC
    assert at(None) is None and at("not a time") is None
    # A record without a start (an event the runner could not time) is left out, not a crash.
    assert check_task_order([e, TaskRecord("cp1", "p", "t", ("control-plane",), None, None, "changed", True)]).passed


def test_task_order_pass_and_fail() -> None:
    good = [ev("cp1", 0, ["container-engine"]), ev("cp1", 1, ["etcd"]), ev("cp1", 2, ["node"]),
            ev("cp1", 3, ["control-plane"]), ev("cp1", 4, ["network"]), ev("cp1", 5, ["apps"]),
            ev("cp1", 6, ["etcd"], changed=False)]  # unchanged tasks do not count
    assert check_task_order(good).passed
    bad = [ev("cp1", 0, ["container-engine"]), ev("cp1", 1, ["control-plane"]), ev("cp1", 2, ["etcd"])]
    r = check_task_order(bad)
    assert not r.passed and "cp1" in r.details and "control-plane before etcd" in r.details
    # cluster.yml's kubeadm play (network plugin) comes after the control-plane play.
    assert not check_task_order([ev("cp1", 0, ["network"]), ev("cp1", 1, ["control-plane"])]).passed


def test_one_at_a_time_pass_and_fail() -> None:
    serial = [ev("cp1", 0, ["etcd"]), ev("cp1", 1, ["etcd"]), ev("cp2", 2, ["etcd"]), ev("cp3", 4, ["etcd"])]
    assert check_one_at_a_time(serial, "etcd").passed
    parallel = [ev("cp1", 0, ["etcd"]), ev("cp2", 0.1, ["etcd"]), ev("cp1", 1, ["etcd"])]
    r = check_one_at_a_time(parallel, "etcd")
    assert not r.passed and "cp2" in r.details and "before cp1 finished" in r.details
    assert not check_one_at_a_time(serial[:2], "etcd").applicable
    assert check_one_at_a_time([*serial, ev("cp2", 0.2, ["etcd"], status="skipped")], "etcd").passed


def test_sample_order_pass_and_fail() -> None:
    good = [s(0, "cp1", "containerd", "1.6.20"), s(0, "cp1", "etcd", "3.4.23"), s(0, "cp1", "kube-apiserver", "v1.30.8"),
            s(1, "cp1", "containerd", "1.7.24"), s(2, "cp1", "etcd", "3.5.16"), s(3, "cp1", "kube-apiserver", "v1.31.4")]
    assert check_sample_order(good).passed
    bad = [s(0, "cp1", "containerd", "1.6.20"), s(0, "cp1", "etcd", "3.4.23"),
           s(1, "cp1", "etcd", "3.5.16"), s(2, "cp1", "containerd", "1.7.24")]
    r = check_sample_order(bad)
    assert not r.passed and "etcd before containerd" in r.details
    assert not check_sample_order(good[:3]).applicable


def test_version_skew_pass() -> None:
    samples = [s(0, "cp1", "kube-apiserver", "v1.30.8"), s(0, "cp2", "kube-apiserver", "v1.30.8"),
               s(0, "w1", "kubelet", "v1.30.8"),
               s(1, "cp1", "kube-apiserver", "v1.31.4"), s(2, "cp2", "kube-apiserver", "v1.31.4"),
               s(3, "w1", "kubelet", "v1.31.4")]
    assert check_version_skew(samples).passed


def test_version_skew_kubelet_newer_than_oldest_apiserver() -> None:
    samples = [s(0, "cp1", "kube-apiserver", "v1.30.8"), s(0, "cp2", "kube-apiserver", "v1.30.8"),
               s(1, "cp1", "kube-apiserver", "v1.31.4"), s(1, "w1", "kubelet", "v1.31.4"),
               s(2, "cp2", "kube-apiserver", "v1.31.4")]
    r = check_version_skew(samples)
    assert not r.passed and "w1" in r.details and "kubelet 1.31 > apiserver 1.30" in r.details
    assert "10:01:00" in r.details


def test_version_skew_kubelet_too_old() -> None:
    samples = [s(0, "cp1", "kube-apiserver", "v1.31.4"), s(0, "w1", "kubelet", "v1.27.9")]
    r = check_version_skew(samples)
    assert not r.passed and "3 minors behind" in r.details
    assert check_version_skew([s(0, "cp1", "kube-apiserver", "v1.31.4"), s(0, "w1", "kubelet", "v1.28.0")]).passed
    assert not check_version_skew([s(0, "w1", "kubelet", "v1.28.0")]).applicable


def test_etcd_before_control_plane() -> None:
    good = [s(0, "e1", "etcd", "3.4.23"), s(0, "e2", "etcd", "3.4.23"), s(0, "cp1", "kube-apiserver", "v1.30.8"),
            s(1, "e1", "etcd", "3.5.16"), s(2, "e2", "etcd", "3.5.16"), s(3, "cp1", "kube-apiserver", "v1.31.4")]
    assert check_etcd_before_control_plane(good).passed
    bad = [s(0, "e1", "etcd", "3.4.23"), s(0, "e2", "etcd", "3.4.23"), s(0, "cp1", "kube-apiserver", "v1.30.8"),
           s(1, "e1", "etcd", "3.5.16"), s(2, "cp1", "kube-apiserver", "v1.31.4"), s(3, "e2", "etcd", "3.5.16")]
    r = check_etcd_before_control_plane(bad)
    assert not r.passed and "cp1" in r.summary and "10:03:00" in r.summary
    assert not check_etcd_before_control_plane(good[:3]).applicable


def test_graceful_order_is_per_role() -> None:
    """upgrade-cluster.yml: etcd first; workers get the network plugin before their engine and kubelet;
    control-plane nodes their engine, kubelet and control plane before the network plugin."""
    from harness.checks.order import phase_order

    orders = {"cp1": phase_order("graceful", ("control-plane", "etcd")),
              "w1": phase_order("graceful", ("etcd", "worker")),
              "e1": phase_order("graceful", ("etcd",))}
    graceful = [ev("cp1", 0, ["etcd"]), ev("cp1", 1, ["container-engine"]), ev("cp1", 2, ["node"]),
                ev("cp1", 3, ["control-plane"]), ev("cp1", 4, ["network"]),
                ev("w1", 0.5, ["etcd"]), ev("w1", 4.5, ["network"]), ev("w1", 5, ["container-engine"]),
                ev("w1", 6, ["node"]),
                ev("e1", -1, ["container-engine"]), ev("e1", 0.2, ["etcd"])]
    r = check_task_order(graceful, orders)
    assert r.passed, r.message
    assert not check_task_order(graceful).passed  # cluster.yml's order: the engine comes before etcd
    # A worker whose kubelet moved before its network plugin broke upgrade-cluster.yml's order.
    late = [e if not (e.host == "w1" and e.tags == ("network",)) else ev("w1", 7, ["network"]) for e in graceful]
    r = check_task_order(late, orders)
    assert not r.passed and "w1" in r.details and "before network" in r.details
    samples = [s(0, "w1", "etcd", "3.4.23"), s(0, "w1", "containerd", "1.6.20"),
               s(1, "w1", "etcd", "3.5.16"), s(1, "w1", "containerd", "1.6.20"),
               s(2, "w1", "etcd", "3.5.16"), s(2, "w1", "containerd", "1.7.24")]
    assert check_sample_order(samples, orders).passed
    assert not check_sample_order(samples).passed
    assert phase_order("component", ("etcd", "worker")) == phase_order("full", ("control-plane",))


def test_serial_phases_follow_each_installers_playbook() -> None:
    from harness.checks.order import serial_phases

    roles = {"cp1": ("control-plane", "etcd"), "cp2": ("control-plane", "etcd"), "w1": ("worker",)}
    # Kubespray: control-plane nodes one at a time; etcd's play and the workers are not serial.
    assert serial_phases("kubespray", roles) == [
        ("container-engine", ["cp1", "cp2"]), ("node", ["cp1", "cp2"]), ("control-plane", ["cp1", "cp2"])]
    assert serial_phases("lab", roles) == [("etcd", ["cp1", "cp2"]), ("container-engine", ["cp1", "cp2", "w1"])]
    # Kubespray's etcd restarts in parallel are fine; a control plane upgraded on two nodes at once is not.
    parallel_etcd = [ev("cp1", 0, ["etcd"]), ev("cp2", 0.1, ["etcd"])]
    assert not check_one_at_a_time(parallel_etcd, "etcd").passed  # what the lab forbids
    both = [ev("cp1", 0, ["control-plane"], dur=2), ev("cp2", 1, ["control-plane"]), ev("w1", 1, ["control-plane"])]
    r = check_one_at_a_time(both, "control-plane", ["cp1", "cp2"])
    assert not r.passed and "cp2" in r.details


def _states(rounds: list[set[str]], nodes: tuple[str, ...] = ("cp1", "w1", "w2")) -> list[NodeStateSample]:
    """One sampling round per entry, 10 s apart: the nodes cordoned in it."""
    return [NodeStateSample(T0 + timedelta(seconds=10 * i), n, True, n in cordoned)
            for i, cordoned in enumerate(rounds) for n in nodes]


def test_cordon_order_from_the_apis_view() -> None:
    nodes, cp = ("cp1", "w1", "w2"), ["cp1"]
    good = check_cordon_order(_states([set(), {"cp1"}, {"cp1"}, set(), {"w1"}, set(), {"w2"}, set()]), cp, nodes)
    assert good.passed and "cp1 10:00:10-10:00:30" in good.message and good.message.index("cp1") < good.message.index("w2")

    skipped = check_cordon_order(_states([set(), {"cp1"}, set(), {"w2"}, set()]), cp, nodes)
    assert not skipped.passed and "w1" in skipped.details and "never cordoned" in skipped.details

    worker_first = check_cordon_order(_states([{"w1"}, set(), {"cp1"}, set(), {"w2"}, set()]), cp, nodes)
    assert not worker_first.passed and "cp1" in worker_first.details and "control plane after a worker" in worker_first.details

    together = check_cordon_order(_states([{"cp1"}, set(), {"w1", "w2"}, set()]), cp, nodes)
    assert not together.passed and "w1, w2" in together.details and "2 cordoned at once" in together.details
    # ... unless the workers' batch (serial) allows two.
    assert check_cordon_order(_states([{"cp1"}, set(), {"w1", "w2"}, set()]), cp, nodes, serial=2).passed
    # A control-plane node goes alone whatever the workers' batch.
    assert not check_cordon_order(_states([{"cp1", "w1"}, set(), {"w2"}, set()]), cp, nodes, serial=2).passed

    none = check_cordon_order([], cp, nodes)
    assert not none.passed and "no node state" in none.summary


def test_serial_count_is_ansibles_batch() -> None:
    assert serial_count("20%", 2) == 1 and serial_count("20%", 10) == 2 and serial_count("50%", 5) == 2
    assert serial_count(3, 10) == 3 and serial_count("0", 4) == 1
