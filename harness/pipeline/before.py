"""The before step: the record before the upgrade and the plant (etcd sentinels, container canaries)
in one round trip per node (harness.probes.plant). Kubernetes canaries follow in the plant stage."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from harness import progress
from harness.errors import HarnessError
from harness.probes import plant as planting
from harness.probes.facts import to_jsonable
from harness.probes.hosts import pre_upgrade_record
from harness.record import ScenarioRun

if TYPE_CHECKING:
    from harness.pipeline import Session

PLANT_RECORD = "plant.json"  # etcd sentinels and container canaries, as planted


def before(session: Session, run: ScenarioRun) -> None:
    assert run.cluster is not None
    etcd = run.cluster.with_role("etcd")
    plant = planting.Plant(etcd_node=etcd[0].name if etcd else None)
    with progress.step(f"{run.scenario.id}: facts and plant on {len(run.cluster.nodes)} node(s)"):
        pairs = session.host_probe(run).all_facts_and_plant(plant)
    hosts = [h for h, _ in pairs]
    run.before = pre_upgrade_record(hosts, datetime.now(UTC))  # boot ids too: the reboot check reads them
    run.dir.mkdir(parents=True, exist_ok=True)
    (run.dir / "before.json").write_text(json.dumps(to_jsonable(hosts), indent=2, default=str) + "\n")
    sentinels = planting.sentinel_record(plant, [p for _, p in pairs])
    record = {"etcd_sentinels": sentinels, "container_canaries": {p.node: p.canary for _, p in pairs}}
    (run.dir / PLANT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
    if sentinels["failed"]:
        # An etcd that does not take writes now was broken before the upgrade began.
        raise HarnessError(f"could not plant the etcd sentinels on {plant.etcd_node}: {sentinels['error']}")
    run.planted_keys = planting.planted_keys(sentinels)
