"""Which installer a scenario names: the one place an installer kind turns into an `Installer`, and
what each kind says before one is built (the topology as its baseline deploys it, hence the baseline
snapshot's key)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from harness.cluster.base import Cluster, ClusterSpec
from harness.cluster.baseline import BaselineKey
from harness.errors import HarnessError
from harness.installer.base import Installer, StageRunner

if TYPE_CHECKING:
    from harness.installer.kubespray import Kubespray
    from harness.scenario.model import NodeSpec, Scenario


class Resources(Protocol):
    """What a session shares with the installers it builds (harness.pipeline.Session has these)."""

    def files_url(self, cluster: Cluster) -> str:
        """The lab's offline files repo as the cluster's nodes reach it."""
        ...

    def kubespray(self) -> Kubespray:
        """The Kubespray checkout (`--kubespray`)."""
        ...

    @property
    def offline(self) -> bool:
        """Whether the nodes download from the lab's files repo (a lab provider's clusters)."""
        ...


def _lab(resources: Resources) -> Installer:
    from harness.installer.lab import LabInstaller

    return LabInstaller(resources.files_url)


def _kubespray(resources: Resources) -> Installer:
    from harness.installer.files_repo import build
    from harness.installer.kubespray_installer import KubesprayInstaller

    offline = resources.offline
    return KubesprayInstaller(resources.kubespray(), files_url=resources.files_url if offline else None,
                              files_repo=build if offline else None)


def _as_is(nodes: tuple[NodeSpec, ...]) -> tuple[NodeSpec, ...]:
    return nodes


def _lab_shape(nodes: tuple[NodeSpec, ...]) -> tuple[NodeSpec, ...]:
    from harness.installer.lab import deployed_shape

    return deployed_shape(nodes)


@dataclass(frozen=True)
class UpgradePlaybooks:
    """How an installer kind runs the upgrade paths: the playbook of each path, which Ansible runs it
    (a Kubespray ref's, or the harness's), and the tags its playbooks carry when none were read."""

    path_playbooks: Mapping[str, str]
    runner: StageRunner
    uses_ref: bool  # a Kubespray ref's worktree and Ansible run it: the scenario must name a ref
    known_tags: frozenset[str] | None = None  # None: read from the ref (Kubespray.list_tags), never assumed
    where: str = "{playbook}"  # how a message names a playbook ({ref}, {playbook})


def _lab_playbooks() -> UpgradePlaybooks:
    from harness.installer.lab import PATH_PLAYBOOKS, TAGS

    return UpgradePlaybooks(PATH_PLAYBOOKS, "harness", False, TAGS, "the lab installer's {playbook}")


def _kubespray_playbooks() -> UpgradePlaybooks:
    from harness.installer.kubespray_installer import PATH_PLAYBOOKS

    return UpgradePlaybooks(PATH_PLAYBOOKS, "kubespray", True, None, "Kubespray {ref} {playbook}")


@dataclass(frozen=True)
class Kind:
    """What one installer kind says of itself: how it is built, the topology its baseline deploys,
    how it runs the upgrade paths. Each a function: its module is imported only when asked."""

    build: Callable[[Resources], Installer]
    shape: Callable[[tuple[NodeSpec, ...]], tuple[NodeSpec, ...]]
    playbooks: Callable[[], UpgradePlaybooks]


# Imported lazily, each: Kubespray's installer and the files repo cost what a lab-only run need not pay.
KINDS: dict[str, Kind] = {
    "lab": Kind(_lab, _lab_shape, _lab_playbooks),
    "kubespray": Kind(_kubespray, _as_is, _kubespray_playbooks),
}


def _kind(kind: str) -> Kind:
    try:
        return KINDS[kind]
    except KeyError:
        raise HarnessError(f"no installer {kind!r}; installers: {', '.join(KINDS)}") from None


def upgrade_playbooks(kind: str) -> UpgradePlaybooks:
    return _kind(kind).playbooks()


def installer_for(kind: str, resources: Resources) -> Installer:
    return _kind(kind).build(resources)


def baseline_key(provider: str, scenario: Scenario, cluster_name: str = "") -> BaselineKey:
    """The key of the snapshot a scenario's baseline is restored from: the machine shape, the roles as
    the baseline's installer deploys them, the installer, its ref and versions. The pipeline restores
    by it and the pytest plugin groups scenarios by it for xdist: one formula for both."""
    nodes = _kind(scenario.baseline_installer).shape(tuple(scenario.topology.nodes))
    spec = ClusterSpec(name=cluster_name, nodes=nodes)
    return BaselineKey.of(provider, spec, scenario.baseline_installer, scenario.baseline.ref, scenario.baseline.versions)
