"""How the steps reach a scenario's Kubernetes API: the kubeconfig its runs left, its server reached
the way the cluster says (a lab's: a forward into its namespace), and the record the plant stage's
canaries leave before the upgrade."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from harness.cluster.base import Node
from harness.errors import HarnessError
from harness.probes.facts import PreUpgradeRecord
from harness.probes.hosts import kube_samples
from harness.probes.kube import ClientConfig, collect_kube_facts, load_config, pre_upgrade_snapshot
from harness.record import ScenarioRun

if TYPE_CHECKING:
    from harness.probes.hosts import SampleSource

# The canary Deployments plant.yml creates (namespace/name).
CANARIES = ("harness-canary-a/canary", "harness-canary-b/canary")


def newest_admin_conf(run_dir: Path) -> Path | None:
    """The admin.conf the newest of a scenario's Kubespray runs wrote (kubeconfig_localhost: true)."""
    found = sorted(run_dir.glob("runner/*/inventory/artifacts/admin.conf"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def kubeconfig(run: ScenarioRun) -> Path:
    """Kubespray writes admin.conf into the inventory's artifacts/ (kubeconfig_localhost: true);
    the newest one this scenario's runs left wins, else the one its baseline left."""
    found = newest_admin_conf(run.dir)
    if found is not None:
        return found
    if run.kubeconfig is not None:
        return run.kubeconfig
    raise HarnessError(
        f"no admin.conf for {run.scenario.id}: Kubespray writes it with kubeconfig_localhost: true into"
        " the inventory's artifacts/ folder"
    )


def api_config(run: ScenarioRun, path: Path) -> ClientConfig:
    """The kubeconfig's client configuration, its server reached the way the cluster says this
    process reaches that node's API server (a lab's: a forward into its namespace)."""
    assert run.cluster is not None
    cfg = load_config(path)
    if run.cluster.netns is None:
        return cfg  # reached as the kubeconfig says
    host = urlsplit(cfg.host).hostname
    port = urlsplit(cfg.host).port or 6443
    node = next((n for n in run.cluster.nodes if n.address == host or n.name == host), None)
    if node is not None:
        cfg.host = run.cluster.api_server(node, port)
    return cfg


def server_for(run: ScenarioRun) -> Callable[[Node], str] | None:
    """How this process reaches a node's own API server: through the cluster when it lives in a
    namespace this process is not in, else at the node's address."""
    assert run.cluster is not None
    return run.cluster.api_server if run.cluster.netns is not None else None


def kube_before(run: ScenarioRun) -> None:
    """Pod restarts, names and canary UIDs before the upgrade (after the plant stage)."""
    assert run.cluster is not None
    cfg = api_config(run, kubeconfig(run))
    facts = collect_kube_facts(cfg, run.cluster.with_role("control-plane"), CANARIES, pods_budget=300,
                               server_for=server_for(run))
    restarts, names, uids = pre_upgrade_snapshot(facts)
    run.kube_before = PreUpgradeRecord(
        taken_at=datetime.now(UTC), pod_restarts=restarts, pod_names=names, canary_uids=uids
    )


def api_sampler(run: ScenarioRun) -> SampleSource | None:
    """The API's sampling source, for scenarios with Kubernetes; none (and why) without a kubeconfig."""
    if "kubernetes" not in run.scenario.requirements():
        return None
    assert run.cluster is not None
    try:
        cfg = api_config(run, kubeconfig(run))
    except Exception as e:  # noqa: BLE001  no API samples: the skew check fails saying why
        run.sample_errors["api"] = f"no kubeconfig to sample the API with: {e}"
        return None
    control_plane = run.cluster.with_role("control-plane")
    reach = server_for(run)
    return lambda: kube_samples(cfg, control_plane, server_for=reach)
