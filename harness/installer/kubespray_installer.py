"""Kubespray itself behind the pipeline's `Installer` interface (harness.installer.base).

Every stage runs the ref's own playbooks in its worktree with its own Ansible. On the lab, where no
Kubernetes binary or image can be had, Kubespray's roles that need none (etcd, the container engine)
still run for real: the harness points Kubespray's download URLs at the lab's files repo, hands it
the repo's checksums, and narrows Kubespray's `downloads` to what the repo holds. The narrowing is
computed from the ref's own `downloads` (templated by its Ansible) and reported in the run's notes.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from harness import components
from harness.errors import InstallerError
from harness.installer.base import HARNESS_PROJECT, PLAYBOOKS_DIR, Prepared, Project, Stage, StageInputs
from harness.installer.inventory import harness_vars, mirror_host_vars
from harness.plan.rules import check_minor_skip
from harness.plan.versions import Ref
from harness.text import plural

if TYPE_CHECKING:
    from harness.cluster.base import Cluster
    from harness.installer.files_repo import FilesRepo
    from harness.installer.kubespray import Kubespray, ListedTask
    from harness.scenario.model import Scenario

# Where Kubespray's unconditional `Prep_kubeadm_images | Copy kubeadm binary from download dir` copies
# from when kubeadm is not downloaded: a file every node has. kubeadm never runs on the lab
# (`skip_kubeadm_images`); the copy only has to succeed.
# The playbook each upgrade path runs (harness.upgrade.paths).
PATH_PLAYBOOKS: dict[str, str] = {"full": "cluster.yml", "graceful": "upgrade-cluster.yml", "component": "cluster.yml"}
# Kubespray's cluster.yml on emulated guests takes far longer than the lab installer's playbooks.
KUBESPRAY_TIMEOUT = 3600.0
KUBEADM_STAND_IN = "/bin/false"


class KubesprayInstaller:
    kind = "kubespray"

    def __init__(
        self,
        kubespray: Kubespray,
        *,
        files_url: Callable[[Cluster], str] | None = None,
        files_repo: Callable[[], FilesRepo] | None = None,
    ) -> None:
        """`files_url`/`files_repo` given: the lab's offline files repo serves every download."""
        self.kubespray = kubespray
        self.files_url = files_url
        self.files_repo = files_repo

    @property
    def offline(self) -> bool:
        return self.files_url is not None and self.files_repo is not None

    def _ref(self, scenario: Scenario, stage: Stage | None = None) -> str:
        ref = (stage.ref if stage else None) or scenario.target.ref or scenario.baseline.ref
        if ref is None:
            raise InstallerError(f"scenario {scenario.id}: a Kubespray run needs a ref")
        return ref

    def prepare(self, scenario: Scenario) -> Prepared:
        ks = self.kubespray
        base, target = scenario.baseline.ref_obj, scenario.target.ref_obj
        if base and target:
            check_minor_skip(base, target)
        ref = self._ref(scenario)
        tags = ks.list_tags(ref) if scenario.path == "component" else None
        extra: dict[str, Any] = {}
        if self.offline:
            assert self.files_repo is not None
            repo = self.files_repo()
            extra.update(repo.checksum_vars())
            for var, version in scenario.target.versions.items():
                comp = var.removesuffix("_version")
                if comp in {c for c, _ in repo.artifacts}:
                    repo.artifact(comp, version.removeprefix("v"))  # refuses a version the repo lacks
        extra.update(scenario.extra_vars)
        for var, version in scenario.target.versions.items():
            ks.checksum_known(ref, var.removesuffix("_version"), version, extra_vars=extra)
        defaults = ks.default_versions(ref)
        return Prepared(tags=tags, defaults=defaults, resolved=components.by_component(defaults))

    def baseline_stage(self, scenario: Scenario) -> Stage:
        return Stage(
            "00-baseline", "baseline", PATH_PLAYBOOKS["full"], "kubespray", ref=scenario.baseline.ref,
            extravars=dict(scenario.baseline.versions), installer=self.kind,
        )

    def project(self, stage: Stage) -> Project:
        """Kubespray's own stages in the ref's worktree with the ref's virtualenv; the harness's
        playbooks (plant, collect) with the harness's."""
        if stage.runner != "kubespray":
            return HARNESS_PROJECT
        if stage.ref is None:
            raise InstallerError(f"stage {stage.ident} runs Kubespray's {stage.playbook} but names no ref")
        return Project(self.kubespray.worktree(stage.ref), self.kubespray.venv(stage.ref), KUBESPRAY_TIMEOUT)

    def inputs(self, scenario: Scenario, stage: Stage, cluster: Cluster) -> StageInputs:
        ref = self._ref(scenario, stage)
        group_vars: dict[str, Any] = {
            "ansible_become": True,  # Kubespray's docs run every playbook with -b
            **harness_vars(scenario.baseline.versions, Ref.parse(ref), extra_vars=scenario.extra_vars),
        }
        if stage.runner != "kubespray" or not self.offline:
            return StageInputs(group_vars=group_vars)
        extravars, notes = self.offline_vars(ref, cluster, {**group_vars, **stage.extravars})
        return StageInputs(group_vars=group_vars, extravars=extravars, notes=notes)

    def offline_vars(
        self, ref: str, cluster: Cluster, run_vars: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Extra vars (`-e`: the checksums are role vars, which group_vars cannot override) that make
        Kubespray download from the lab's files repo, and what that changed, in words."""
        assert self.files_url is not None and self.files_repo is not None
        repo = self.files_repo()
        out: dict[str, Any] = {
            **mirror_host_vars(self.files_url(cluster)),
            **repo.checksum_vars(),
            "download_container": False,  # no registry is reachable: no image can be pulled
            "skip_kubeadm_images": True,  # the image list comes from kubeadm, which the lab lacks
        }
        # Each kept entry is templated on its own (the ref's raw entry handed to its Ansible): templating
        # the whole `downloads` would fail on the first entry whose checksum the lab cannot know.
        raw = self.kubespray.variables(ref, typed=True).get("downloads")
        if not isinstance(raw, dict):
            raise InstallerError(f"Kubespray {ref} has no `downloads` mapping in its defaults to narrow")
        held = {c for c, _ in repo.artifacts}
        kube = str(run_vars.get("kube_version", "")).removeprefix("v")
        if not (kube and ("kubeadm", kube) in repo.artifacts):
            held.discard("kubeadm")  # no Kubernetes in this run (or none of that version): the stand-in below
        keep = sorted(held & set(raw))
        entries = {f"harness_download_{name}": raw[name] for name in [*keep, "kubeadm"] if name in raw}
        resolved = self.kubespray.resolve(ref, list(entries), {**run_vars, **out, **entries})
        narrowed: dict[str, Any] = {}
        for name in keep:
            entry = resolved[f"harness_download_{name}"]
            if not isinstance(entry, dict):
                raise InstallerError(f"Kubespray {ref}: cannot template its download entry {name!r}: {entry}")
            narrowed[name] = entry
        real_kubeadm = "kubeadm" in narrowed  # a Kubernetes on the lab: the repo's kubeadm at its kube_version
        if "kubeadm" in raw and not real_kubeadm:
            kubeadm = resolved["harness_download_kubeadm"]
            base = kubeadm if isinstance(kubeadm, dict) else {"file": True, "groups": ["kube_control_plane"]}
            narrowed["kubeadm"] = {**base, "enabled": False, "dest": KUBEADM_STAND_IN}
        out["downloads"] = narrowed
        dropped = sorted(set(raw) - set(narrowed))
        kept = ", ".join(keep)
        notes = [
            (f"lab: Kubespray's downloads narrowed to what the lab's files repo holds ({kept});"
            f" {plural(len(dropped), 'other entry', 'other entries')} dropped ({', '.join(dropped)})"),
        ]
        if real_kubeadm:
            notes.append(f"lab: kubeadm {kube} comes from the files repo (a Kubernetes build); no image is pulled"
                         " (skip_kubeadm_images, download_container set)")
        else:
            notes.append(f"lab: kubeadm is not downloaded; Kubespray's unconditional 'Copy kubeadm binary' copies"
                         f" {KUBEADM_STAND_IN} (no Kubernetes in this run; skip_kubeadm_images, download_container set)")
        return out, tuple(notes)

    def listed_tasks(self, stage: Stage) -> list[ListedTask]:
        if stage.runner != "kubespray" or stage.ref is None:
            from harness.installer.kubespray import list_playbook_tasks
            return list_playbook_tasks(PLAYBOOKS_DIR, stage.playbook, stage.tags)
        return self.kubespray.list_tasks(stage.ref, stage.playbook, stage.tags)
