"""Baseline snapshots: deploy a baseline once per cluster, restore it for every later scenario.

A baseline is identified by what produced it: provider, topology, installer, baseline ref and
versions. That key hashes to a short stable snapshot name. Which baselines a cluster holds is also
recorded in `baselines.json` beside the cluster's state (it disappears with the lab), so another
process (`lab status`, a later pytest run reusing a kept lab) can tell without asking the hypervisor.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.cluster.base import Cluster, ClusterSpec
from harness.settings import state_dir

Outcome = Literal["restored", "deployed", "deployed-no-snapshot"]


@dataclass(frozen=True)
class BaselineKey:
    provider: str
    topology: tuple[str, ...]
    installer: str
    ref: str | None = None
    versions: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def of(
        cls, provider: str, spec: ClusterSpec, installer: str, ref: str | None, versions: Mapping[str, str]
    ) -> BaselineKey:
        return cls(provider=provider, topology=spec.key(), installer=installer, ref=ref, versions=dict(versions))

    def as_json(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "topology": list(self.topology),
            "installer": self.installer,
            "ref": self.ref,
            "versions": dict(sorted(self.versions.items())),
        }

    @property
    def snapshot_name(self) -> str:
        """`baseline-<12 hex>`: stable across processes and Python versions (sorted JSON, sha256)."""
        raw = json.dumps(self.as_json(), sort_keys=True, separators=(",", ":"))
        return "baseline-" + hashlib.sha256(raw.encode()).hexdigest()[:12]


def record_file(cluster: Cluster) -> Path:
    """`baselines.json` in the cluster's own state directory when it has one (`state_root`)."""
    root = cluster.state_root
    if root is None:
        root = state_dir() / "baselines" / f"{cluster.provider}-{cluster.name}"
    return Path(root) / "baselines.json"


def recorded(cluster: Cluster) -> dict[str, dict[str, Any]]:
    """Snapshot name -> {key, created} for the baselines recorded for this cluster."""
    try:
        data = json.loads(record_file(cluster).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _record(cluster: Cluster, key: BaselineKey) -> None:
    path = record_file(cluster)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = recorded(cluster)
    data[key.snapshot_name] = {"key": key.as_json(), "created": time.time()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def _forget(cluster: Cluster, name: str) -> None:
    data = recorded(cluster)
    if data.pop(name, None) is not None:
        record_file(cluster).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def ensure_baseline(cluster: Cluster, key: BaselineKey, deploy: Callable[[], None]) -> Outcome:
    """Put `cluster` at baseline `key`: restore its snapshot if there is one, else deploy and snapshot.

    The hypervisor is the truth: a recorded key whose snapshot is gone is deployed again. Clusters
    without snapshots (static) deploy every time.
    """
    name = key.snapshot_name
    if not cluster.supports_snapshots:
        deploy()
        return "deployed-no-snapshot"
    if cluster.has_snapshot(name):
        cluster.restore(name)
        _record(cluster, key)
        return "restored"
    _forget(cluster, name)
    deploy()
    cluster.snapshot(name)
    _record(cluster, key)
    return "deployed"
