"""Baseline keys and the restore-or-deploy rule."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cluster.base import Cluster, ClusterSpec, Node
from harness.cluster.baseline import BaselineKey, ensure_baseline, record_file, recorded
from harness.scenario.model import NodeSpec

SPEC = ClusterSpec(name="s", nodes=(NodeSpec(name="node1", roles=("etcd", "worker")),))


def key(**over: object) -> BaselineKey:
    fields: dict[str, object] = {
        "provider": "lab",
        "topology": SPEC.key(),
        "installer": "lab",
        "ref": None,
        "versions": {"etcd_version": "3.4.23"},
    }
    fields.update(over)
    return BaselineKey(**fields)  # type: ignore[arg-type]


def test_snapshot_name_is_short_stable_and_pinned() -> None:
    # Pinned: a change here silently orphans every cached baseline, so it must be deliberate.
    assert key().snapshot_name == "baseline-46b75062a1d3"


def test_version_order_does_not_matter() -> None:
    a = key(versions={"etcd_version": "3.4.23", "runc_version": "1.1.5"})
    b = key(versions={"runc_version": "1.1.5", "etcd_version": "3.4.23"})
    assert a.snapshot_name == b.snapshot_name


@pytest.mark.parametrize(
    "change",
    [
        {"provider": "vagrant"},
        {"topology": ("node1:etcd,worker:2:1024",)},
        {"installer": "kubespray"},
        {"ref": "v2.26.0"},
        {"versions": {"etcd_version": "3.5.16"}},
        {"versions": {}},
    ],
)
def test_every_field_changes_the_name(change: dict[str, object]) -> None:
    assert key(**change).snapshot_name != key().snapshot_name


def test_key_of_a_spec_uses_its_topology() -> None:
    k = BaselineKey.of("lab", SPEC, "lab", None, {"etcd_version": "3.4.23"})
    assert k == key()
    bigger = ClusterSpec(name="s", nodes=(NodeSpec(name="node1", roles=("etcd", "worker"), memory=2048),))
    assert BaselineKey.of("lab", bigger, "lab", None, {"etcd_version": "3.4.23"}).snapshot_name != k.snapshot_name


class FakeCluster(Cluster):
    """Snapshots in a dict: enough to test the rule, which is all this module decides."""

    provider = "fake"

    def __init__(self, root: Path, *, snapshots: bool = True) -> None:
        super().__init__("f", [Node("node1", ("etcd",), "10.0.0.1")], root / "ssh_config")
        self.root = root
        self.supports_snapshots = snapshots
        self.snaps: set[str] = set()
        self.calls: list[str] = []

    @property
    def state_root(self) -> Path:
        return self.root

    def snapshot(self, name: str) -> None:
        self.calls.append(f"snapshot {name}")
        self.snaps.add(name)

    def restore(self, name: str) -> None:
        self.calls.append(f"restore {name}")

    def has_snapshot(self, name: str) -> bool:
        return name in self.snaps

    def destroy(self) -> None:
        self.snaps.clear()


def test_deploy_once_then_restore(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path)
    deploys: list[int] = []
    k = key()
    assert ensure_baseline(cluster, k, lambda: deploys.append(1)) == "deployed"
    assert ensure_baseline(cluster, k, lambda: deploys.append(1)) == "restored"
    assert deploys == [1]
    assert cluster.calls == [f"snapshot {k.snapshot_name}", f"restore {k.snapshot_name}"]
    record = json.loads(record_file(cluster).read_text())
    assert record[k.snapshot_name]["key"]["versions"] == {"etcd_version": "3.4.23"}
    assert record_file(cluster) == tmp_path / "baselines.json"  # beside the cluster's own state


def test_a_failed_deploy_takes_no_snapshot(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path)

    def broken() -> None:
        raise RuntimeError("playbook failed")

    with pytest.raises(RuntimeError):
        ensure_baseline(cluster, key(), broken)
    assert cluster.snaps == set() and recorded(cluster) == {}


def test_a_recorded_baseline_whose_snapshot_is_gone_is_redeployed(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path)
    ensure_baseline(cluster, key(), lambda: None)
    cluster.destroy()  # e.g. the lab was recreated
    deploys: list[int] = []
    assert ensure_baseline(cluster, key(), lambda: deploys.append(1)) == "deployed"
    assert deploys == [1]


def test_without_snapshots_every_call_deploys(tmp_path: Path) -> None:
    cluster = FakeCluster(tmp_path, snapshots=False)
    deploys: list[int] = []
    for _ in range(2):
        assert ensure_baseline(cluster, key(), lambda: deploys.append(1)) == "deployed-no-snapshot"
    assert deploys == [1, 1] and cluster.calls == []
