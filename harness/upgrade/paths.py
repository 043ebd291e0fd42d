"""The three upgrade paths as data: a Scenario (+ the ref's real tags) -> an ordered list of Stages.

Pure: nothing here runs anything. Checks that must hold before any playbook runs (tags that exist
at the ref) are made here, so a bad component scenario fails before the cluster is touched.

  full       cluster.yml with the target versions and upgrade_cluster_setup=true (kubespray#4139)
  graceful   upgrade-cluster.yml with the target versions
  component  cluster.yml --tags=<normalised tags>, each tag checked against the ref's real tags

The lab installer gets the same mapping against playbooks/lab/{cluster,upgrade-cluster}.yml.
Around the upgrade, the harness's own playbooks record versions, plant state and collect evidence.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from harness.errors import PlanError
from harness.installer.base import Stage
from harness.installer.inventory import render_versions
from harness.installer.registry import upgrade_playbooks
from harness.plan.tags import check_tags_exist, normalise_tags
from harness.plan.versions import Ref
from harness.scenario.model import Scenario


def _target_ref(scenario: Scenario) -> str | None:
    return scenario.target.ref or scenario.baseline.ref


def target_extravars(scenario: Scenario) -> dict[str, Any]:
    """The target's pinned versions in the ref's style; unpinned ones come from the ref's defaults."""
    ref = _target_ref(scenario)
    return dict(render_versions(scenario.target.versions, Ref.parse(ref) if ref else None))


def upgrade_stage(
    scenario: Scenario,
    *,
    available_tags: Iterable[str] | None = None,
    ident: str = "upgrade",
    purpose: str = "upgrade",
) -> Stage:
    """The one playbook run the scenario's path names. Component tags are checked before anything runs."""
    books = upgrade_playbooks(scenario.installer)
    ref = _target_ref(scenario) if books.uses_ref else None
    if books.uses_ref and ref is None:
        raise PlanError(f"scenario {scenario.id!r}: a Kubespray path needs a ref (baseline.ref or target.ref)")
    playbook = books.path_playbooks[scenario.path]
    extravars = {**target_extravars(scenario), **scenario.target.extra_vars}
    tags: tuple[str, ...] = ()
    if scenario.path == "full":
        # Without it kubeadm upgrades nothing and the run still ends failed=0 (kubespray#4139).
        extravars["upgrade_cluster_setup"] = True
    elif scenario.path == "component":
        tags = tuple(normalise_tags(scenario.tags))
        if available_tags is None:
            if books.known_tags is None:
                raise PlanError(
                    f"scenario {scenario.id!r}: cannot check tags {', '.join(tags)} without Kubespray {ref}'s"
                    " real tags (read them with Kubespray.list_tags)"
                )
            available_tags = books.known_tags
        check_tags_exist(tags, available_tags, books.where.format(ref=ref, playbook=playbook))
    return Stage(ident=ident, purpose=purpose, playbook=playbook, runner=books.runner, ref=ref, tags=tags,
                 extravars=extravars, installer=scenario.installer)


def pipeline(
    scenario: Scenario,
    artifacts_dir: Path,
    *,
    available_tags: Iterable[str] | None = None,
    idempotence: bool | None = None,
) -> list[Stage]:
    """Every stage of one scenario run, in order, with idents that keep each run's artifacts apart.

    `artifacts_dir` is where the harness playbooks fetch their evidence to (one folder per stage);
    the plant stage's ServiceAccount tokens go to `artifacts_dir/secrets/` (0600, unmasked).
    """
    tags = None if available_tags is None else frozenset(available_tags)
    has_kubernetes = "kubernetes" in scenario.requirements()
    stages: list[Stage] = []

    def add(purpose: str, playbook: str, extravars: dict[str, Any], *, may_fail: bool = False) -> None:
        ident = f"{len(stages) + 1:02d}-{purpose}"
        out = str(artifacts_dir / ident)
        stages.append(
            Stage(ident, purpose, playbook, "harness", extravars={"harness_out": out, **extravars}, may_fail=may_fail)
        )

    # Versions before and after are measured by the host probes (testinfra), not by a playbook.
    # Tokens live outside every stage's folder: those are masked after the run, the tokens must stay usable.
    secrets = str(artifacts_dir / "secrets")
    # etcd sentinels and container canaries are planted by the before step (harness.probes.plant);
    # this stage plants what goes through kubectl.
    if has_kubernetes:
        add("plant", "plant.yml", {"harness_secret_dir": secrets})
    stages.append(upgrade_stage(scenario, available_tags=tags, ident=f"{len(stages) + 1:02d}-upgrade"))
    if scenario.idempotence if idempotence is None else idempotence:
        stages.append(
            upgrade_stage(scenario, available_tags=tags, ident=f"{len(stages) + 1:02d}-idempotence", purpose="idempotence")
        )
    add("collect", "collect.yml", {}, may_fail=True)
    return stages
