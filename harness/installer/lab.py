"""The lab installer: where its playbooks are, what it installs by default, what a run needs.

The lab installer (playbooks/lab/) is a Kubespray-shaped stand-in that installs real etcd,
containerd and runc from the offline files repo, so the harness can drive real rolling upgrades
where Kubespray itself cannot run. It reads Kubespray's variable names: `files_repo`,
`etcd_version`, `containerd_version`, `runc_version` and the `*_checksums` dicts.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness import components, proc, resources
from harness.errors import InstallerError
from harness.installer.base import HARNESS_PROJECT, PLAYBOOKS_DIR, Prepared, Project, Stage, StageInputs
from harness.installer.files_repo import FilesRepo

if TYPE_CHECKING:
    from harness.cluster.base import Cluster
    from harness.installer.kubespray import ListedTask
    from harness.scenario.model import NodeSpec, Scenario

LAB_DIR = resources.playbooks_dir() / "lab"
ANSIBLE_CFG = LAB_DIR / "ansible.cfg"
PLAYBOOKS: dict[str, Path] = {
    "cluster": LAB_DIR / "cluster.yml",
    "upgrade": LAB_DIR / "upgrade-cluster.yml",
}

# The guests' own Debian suite: its builds are what a lab cluster starts from unless a scenario says otherwise.
# The playbook each upgrade path runs (harness.upgrade.paths), relative to PLAYBOOKS_DIR.
PATH_PLAYBOOKS: dict[str, str] = {
    "full": "lab/cluster.yml",
    "graceful": "lab/upgrade-cluster.yml",
    "component": "lab/cluster.yml",
}
BASELINE_SUITE = "bookworm"


def baseline_versions() -> dict[str, str]:
    """version variable -> the baseline suite's build, for each component the lab installs."""
    return {c.var: c.debian.version_in(BASELINE_SUITE) for c in components.lab_components() if c.debian is not None}


def _installs(var: str) -> bool:
    return var in components.lab_version_vars()

# Tags the lab playbooks carry (tests compare this with --list-tags); pre-upgrade and post-upgrade
# (drain, uncordon) only in upgrade-cluster.yml, as in Kubespray.
TAGS: frozenset[str] = frozenset({
    "always", "etcd", "etcd-secrets", "container-engine", "docker", "node", "download", "control-plane",
    "pre-upgrade", "post-upgrade",
})


def ansible_env() -> dict[str, str]:
    """Environment for ansible-playbook: the lab's ansible.cfg (pipelining, no facts, fixed interpreter)."""
    return {"ANSIBLE_CONFIG": str(ANSIBLE_CFG)}


def lab_vars(files_repo_url: str, versions: Mapping[str, str], repo: FilesRepo) -> dict[str, Any]:
    """Extra vars for a lab run: `files_repo`, the versions, and the repo's checksum dicts.

    Refuses a version the repo does not hold, before any node is touched.
    """
    out: dict[str, Any] = {"files_repo": files_repo_url.rstrip("/")}
    for var, value in versions.items():
        comp = "kubelet" if var == "kube_version" else var.removesuffix("_version")
        if not _installs(var):
            raise InstallerError(
                f"the lab installer cannot install {var}; it installs {', '.join(components.lab_version_vars())}"
            )
        bare = str(value).removeprefix("v")  # the lab's URLs add the `v` themselves, as Kubespray's do
        repo.artifact(comp, bare)
        out[var] = bare
    if "kube_version" in out:
        out["kubeconfig_localhost"] = True  # admin.conf into the inventory's artifacts, as Kubespray's
        # Where each image runs: the control plane's static pods on control-plane nodes, the rest everywhere.
        out["lab_kube_images"] = [
            {"ref": i.ref, "path": i.path, "sha256": i.sha256,
             "groups": ["kube_control_plane"] if _control_plane_image(i.ref) else ["k8s_cluster"]}
            for i in repo.images_for(out["kube_version"])
        ]
    out.update(repo.checksum_vars())
    return out


def _control_plane_image(ref: str) -> bool:
    name = ref.rsplit("/", 1)[-1].split(":", 1)[0]
    return any(c.static_pod and c.name == name for c in components.COMPONENTS)


def playbook_argv(
    playbook: str,
    inventory: Path,
    extra_vars_file: Path | None = None,
    *,
    tags: Iterable[str] = (),
    limit: str | None = None,
    ansible_playbook: str = "ansible-playbook",
) -> list[str]:
    """The ansible-playbook command line for `cluster` or `upgrade` (run it with ansible_env())."""
    if playbook not in PLAYBOOKS:
        raise InstallerError(f"the lab installer has no playbook {playbook!r}; it has {', '.join(PLAYBOOKS)}")
    argv = [ansible_playbook, "-i", str(inventory), str(PLAYBOOKS[playbook])]
    if extra_vars_file:
        argv += ["-e", f"@{extra_vars_file}"]
    tags = list(tags)
    if tags:
        argv += ["--tags", ",".join(tags)]
    if limit:
        argv += ["--limit", limit]
    return argv


def list_tags(playbook: str, inventory: Path, *, ansible_playbook: str = "ansible-playbook") -> set[str]:
    """The tags the playbook's tasks really carry (`ansible-playbook --list-tags`)."""
    r = proc.run([*playbook_argv(playbook, inventory, ansible_playbook=ansible_playbook), "--list-tags"],
                 env=_env(), timeout=120)
    tags: set[str] = set()
    for m in re.finditer(r"TASK TAGS: \[([^\]]*)\]", r.stdout):
        tags.update(t.strip() for t in m.group(1).split(",") if t.strip())
    return tags


def _env() -> dict[str, str]:
    return {**os.environ, **ansible_env()}


def guest_facing_address(netns: str, node_address: str) -> str:
    """The namespace's own address on the guests' network: where guests reach a server bound there.

    Asks the namespace's routing table (`ip -n NS route get NODE`), so it holds for any lab network.
    """
    r = proc.run(["ip", "-n", netns, "-4", "-o", "route", "get", node_address], check=False, timeout=30)
    m = re.search(r"\bsrc (\S+)", r.stdout)
    if not r.ok or not m:
        raise InstallerError(
            f"network namespace {netns!r} has no route to {node_address}: {(r.stderr or r.stdout).strip()}"
        )
    return m.group(1)


def deployed_shape(nodes: tuple[NodeSpec, ...]) -> tuple[NodeSpec, ...]:
    """The topology as the lab installer deploys it: etcd on etcd nodes and the container engine on
    every other Kubespray node, whatever their role: a control-plane role (which Kubespray's inventory
    checks want) does not make another lab baseline."""
    out = []
    for n in nodes:
        roles = (("etcd",) if "etcd" in n.roles else ()) + (
            ("worker",) if {"worker", "control-plane"} & set(n.roles) else ()
        )
        out.append(n.model_copy(update={"roles": roles}))
    return tuple(out)


class LabInstaller:
    """The lab installer behind the pipeline's `Installer` interface (harness.installer.base).

    `files_url` gives the files repo's URL as the cluster's nodes reach it (the session serves it
    inside the lab's network namespace).
    """

    kind = "lab"

    def __init__(self, files_url: Callable[[Cluster], str]) -> None:
        self.files_url = files_url

    def prepare(self, scenario: Scenario) -> Prepared:
        for rel in (scenario.baseline, scenario.target):
            for var in rel.versions:
                if not _installs(var):
                    raise InstallerError(f"scenario {scenario.id}: the lab installer cannot install {var}")
        return Prepared(tags=None, defaults=baseline_versions())

    def baseline_stage(self, scenario: Scenario) -> Stage:
        return Stage("00-baseline", "baseline", PATH_PLAYBOOKS["full"], "harness",
                     extravars=dict(scenario.baseline.versions), installer=self.kind)

    def project(self, stage: Stage) -> Project:
        return HARNESS_PROJECT

    def inputs(self, scenario: Scenario, stage: Stage, cluster: Cluster) -> StageInputs:
        from harness.installer import files_repo

        versions = {**scenario.baseline.versions, **{k: v for k, v in stage.extravars.items() if k.endswith("_version")}}
        wanted: dict[str, Any] = dict(files_repo.default_versions())
        if "kube_version" in versions:
            wanted.update(files_repo.kubernetes_versions())
        repo = files_repo.build(wanted)
        group_vars = {**lab_vars(self.files_url(cluster), versions, repo), **scenario.extra_vars}
        env = ansible_env() if stage.playbook.startswith("lab/") else None
        return StageInputs(group_vars=group_vars, envvars=env)

    def listed_tasks(self, stage: Stage) -> list[ListedTask]:
        from harness.installer.kubespray import list_playbook_tasks
        return list_playbook_tasks(PLAYBOOKS_DIR, stage.playbook, stage.tags)
