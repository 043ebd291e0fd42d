"""What one scenario's checks read, collected once (harness.checks.suite.collect): the host probes,
etcd, the Kubernetes API and pod tokens, with what the run recorded (samples, timeline, playbook runs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.probes import kube as kube_probe
from harness.probes.facts import (
    EtcdFacts,
    HostFacts,
    KubeFacts,
    NodeStateSample,
    PodTokenFacts,
    TokenReviewResult,
    VersionSample,
)
from harness.probes.hosts import merge_observed, observed_versions, version_notes
from harness.upgrade.timeline import TaskRecord


@dataclass(frozen=True)
class RunRecord:
    """One playbook run as the checks read it (from `harness.upgrade.runner.RunResult`)."""

    ok: bool
    status: str
    rc: int
    summary: str = ""
    failed_at: tuple[str, ...] = ()  # "host: [play] task" where each host first failed
    changed: dict[str, int] = field(default_factory=dict)  # host -> changed= in the recap

    @classmethod
    def of(cls, result: Any) -> RunRecord:
        return cls(
            ok=bool(result.ok), status=str(result.status), rc=int(result.rc), summary=str(result.summary),
            failed_at=tuple(f"{h}: [{r.play}] {r.task}" for h, r in sorted(result.failures().items())),
            changed={h: int(c.get("changed", 0)) for h, c in result.recap.items()},
        )



@dataclass(frozen=True)
class Facts:
    """Everything the checks read, collected once. No secret: tokens are reviewed, never kept."""

    nodes: dict[str, tuple[str, ...]]  # inventory node -> roles
    addresses: dict[str, str] = field(default_factory=dict)  # node -> address (etcd members match by it)
    hosts: tuple[HostFacts, ...] = ()
    etcd: EtcdFacts | None = None  # None: no etcd node, or not collected (see errors)
    etcd_keys: dict[str, str | None] = field(default_factory=dict)  # sentinel keys read back
    kube: KubeFacts | None = None  # None: no API (see no_api), or not readable (see errors)
    no_api: str = "no Kubernetes API was asked"
    pod_tokens: tuple[PodTokenFacts, ...] | None = None
    minted_review: TokenReviewResult | None = None  # the token minted before the upgrade, reviewed now
    samples: tuple[VersionSample, ...] = ()
    node_states: tuple[NodeStateSample, ...] = ()  # the API's nodes at each sampling round
    timeline: tuple[TaskRecord, ...] = ()
    runs: dict[str, RunRecord] = field(default_factory=dict)  # stage purpose -> run
    # hosts | etcd | api | samples -> why it could not be collected: a check that needs it fails saying so
    errors: dict[str, str] = field(default_factory=dict)

    def with_role(self, role: str) -> list[str]:
        return sorted(n for n, roles in self.nodes.items() if role in roles)

    @property
    def observed(self) -> dict[str, dict[str, str | None]]:
        """node -> component -> version, host probes and the API merged: the one place they meet.

        A host probe's answer wins where both report (kubelet: the file its unit's process runs;
        nodeInfo is judged by its own check); the API adds what no host probe can see: each
        apiserver's /version, controller-manager and scheduler static pods, kube-proxy."""
        host = observed_versions(self.hosts)
        if self.kube is None:
            return host
        api = kube_probe.observed_from_kube(self.kube, kube_probe.static_pod_tags(self.kube.pods, self.with_role("control-plane")))
        return merge_observed(api, host)

    @property
    def notes(self) -> dict[str, dict[str, str]]:
        """node -> component -> what its version row must add: another copy on PATH, a replaced file."""
        return version_notes(self.hosts)
