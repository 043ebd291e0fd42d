"""The baseline step: the scenario's baseline restored from its snapshot, or deployed by the
baseline's installer and snapshotted; the kubeconfig it left kept for the scenarios that restore it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.cluster.base import Cluster
from harness.cluster.baseline import ensure_baseline
from harness.errors import UpgradeRunError
from harness.installer.registry import baseline_key
from harness.pipeline.kube import newest_admin_conf
from harness.pipeline.playbook import run_playbook
from harness.record import ScenarioRun
from harness.settings import state_dir

if TYPE_CHECKING:
    from pathlib import Path

    from harness.pipeline import Session


def baseline(session: Session, run: ScenarioRun) -> None:
    sc, cluster = run.scenario, run.cluster
    assert cluster is not None

    def deploy() -> None:
        stage = session.installer(sc.baseline_installer).baseline_stage(sc)
        result = run_playbook(session, run, stage)
        if not result.ok:
            raise UpgradeRunError(f"baseline deploy failed:\n{result.summary}")

    key = baseline_key(session.options.provider, sc, cluster.name)
    run.baseline_outcome = ensure_baseline(cluster, key, deploy)
    run.kubeconfig = baseline_kubeconfig(run, cluster, key.snapshot_name)
    if session.offline:
        session.files_url(cluster)  # a restored baseline still needs the server for the upgrade
    session.console.print(f"{sc.id}: baseline {run.baseline_outcome} ({key.snapshot_name})", highlight=False)


def baseline_kubeconfig(run: ScenarioRun, cluster: Cluster, snapshot: str) -> Path | None:
    """The admin.conf of the cluster a baseline left. Kubespray writes it into the deploying run's
    inventory artifacts; a scenario that restores the baseline has none of its own until it runs
    Kubespray, so the deploying run's copy is kept (0600, in the harness's state dir) per snapshot."""
    kept = state_dir() / "kubeconfigs" / f"{cluster.provider}-{cluster.name or 'main'}-{snapshot}.conf"
    if run.baseline_outcome and run.baseline_outcome.startswith("deployed"):
        found = newest_admin_conf(run.dir)
        if found is not None:
            kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            kept.touch(mode=0o600)
            kept.write_bytes(found.read_bytes())
    return kept if kept.exists() else None
