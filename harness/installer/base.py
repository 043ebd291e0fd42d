"""What the pipeline asks of an installer. Two implement it: the lab installer (playbooks/lab/,
harness.installer.lab) and Kubespray itself (harness.installer.kubespray_installer).

The pipeline never asks which installer it holds: it plans, deploys a baseline and runs stages
through this interface, and an installer says in `notes` what it changed about a run (for example
the downloads it narrowed on the lab), so the scenario's report shows it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from harness import resources

if TYPE_CHECKING:
    from harness.cluster.base import Cluster
    from harness.installer.kubespray import ListedTask
    from harness.scenario.model import Scenario


# The repository's playbooks/ folder: the harness's own playbooks and the lab installer.
PLAYBOOKS_DIR = resources.playbooks_dir()

StageRunner = Literal["kubespray", "harness"]


@dataclass(frozen=True)
class Stage:
    """One playbook run: its ident names the artifacts folder, its runner says which Ansible runs it."""

    ident: str
    purpose: str  # plant | upgrade | idempotence | collect
    playbook: str  # relative to the project dir (a Kubespray worktree, or PLAYBOOKS_DIR)
    runner: StageRunner
    ref: str | None = None  # the Kubespray ref whose worktree and venv run it (runner == "kubespray")
    tags: tuple[str, ...] = ()
    limit: str | None = None
    extravars: Mapping[str, Any] = field(default_factory=dict)
    may_fail: bool = False  # evidence collection must not hide the upgrade's own result
    # The installer kind whose stage this is (its baseline, its upgrade); None: one of the harness's own
    # playbooks (plant, collect), run with the scenario's installer's variables.
    installer: str | None = None

    def argv(self) -> list[str]:
        """The equivalent command line, for reports and for a person to rerun by hand."""
        out = ["ansible-playbook", self.playbook]
        if self.tags:
            out += ["--tags", ",".join(self.tags)]
        if self.limit:
            out += ["--limit", self.limit]
        for k, v in self.extravars.items():
            out += ["-e", f"{k}={v}"]
        return out


@dataclass(frozen=True)
class Project:
    """Where a stage's playbook runs: the project folder, the virtualenv whose Ansible runs it (None:
    the harness's own), and how long a run may take before it is stopped."""

    dir: Path
    venv: Path | None = None
    timeout: float = 1800.0


# The harness's own playbooks and the lab installer's, with the harness's Ansible. Generous: guests may
# run under software emulation; a hung run still ends.
HARNESS_PROJECT = Project(PLAYBOOKS_DIR, None, 1800.0)


@dataclass(frozen=True)
class Prepared:
    """What planning learnt from the installer before any VM exists."""

    tags: frozenset[str] | None  # the tags its playbooks really carry (None: not read)
    defaults: Mapping[str, str] = field(default_factory=dict)  # version variable -> the installer's default
    # component -> the version a target leaves unpinned resolves to (a Kubespray ref's defaults); empty
    # when the installer pins nothing of its own choosing
    resolved: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StageInputs:
    """Everything one playbook run gets besides the stage itself."""

    group_vars: Mapping[str, Any]  # written next to the inventory (group_vars/all)
    extravars: Mapping[str, Any] = field(default_factory=dict)  # `-e`: above every role var
    envvars: Mapping[str, str] | None = None
    notes: tuple[str, ...] = ()  # what the installer changed about this run, for the report


class Installer(Protocol):
    kind: str

    def prepare(self, scenario: Scenario) -> Prepared:
        """Refuse, before any VM exists, what this installer cannot do for the scenario."""
        ...

    def baseline_stage(self, scenario: Scenario) -> Stage:
        """The playbook run that deploys the scenario's baseline."""
        ...

    def inputs(self, scenario: Scenario, stage: Stage, cluster: Cluster) -> StageInputs:
        """Variables and environment for one of this installer's stages on this cluster."""
        ...

    def project(self, stage: Stage) -> Project:
        """Where the stage runs, with which Ansible, for how long at most."""
        ...

    def listed_tasks(self, stage: Stage) -> list[ListedTask]:
        """`--list-tasks` of the stage: tags per task for the order checks (runner events carry none)."""
        ...
