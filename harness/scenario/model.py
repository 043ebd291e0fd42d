"""The scenario schema. pydantic validates it and reports the failing field's path."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from harness import components
from harness.components import components_of_var
from harness.errors import PlanError
from harness.plan.rules import check_component_step, check_kube_version_step, check_ref_step
from harness.plan.tags import COMPONENT_TAGS, KNOWN_TAGS, check_tags_keep_skew, check_tags_move, normalise_tag
from harness.plan.versions import Ref, Version
from harness.scenario.budgets import budget_key_problem

Role = Literal["control-plane", "etcd", "worker"]
PathKind = Literal["full", "graceful", "component"]
InstallerKind = Literal["kubespray", "lab"]
Requirement = Literal["kubernetes", "kubespray"]

# Kubespray's inventory group for each role.
ROLE_GROUPS: dict[str, str] = {
    "control-plane": "kube_control_plane",
    "etcd": "etcd",
    "worker": "kube_node",
}

# Kubespray tags whose tasks need no Kubernetes control plane: a Kubespray scenario tagged only
# with these runs on the lab, with Kubespray's own roles.
NO_CONTROL_PLANE_TAGS = frozenset({"download", "etcd", "etcd-secrets", "container-engine"})
# The check (harness.checks.suite) that judges kubelets against their apiserver along the run.
SKEW_CHECK = "version skew"

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_VERSION_VAR = re.compile(r"^[a-z][a-z0-9_]*_version$")


class FieldProblems(ValueError):
    """Every problem a validator found, each at its own field (relative to where it was raised), so
    the loader can name `target.versions.etcd_version` rather than `target`, and report them all."""

    def __init__(self, problems: list[tuple[str | None, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{f}: {m}" if f else m for f, m in problems))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NodeSpec(_Strict):
    name: str
    roles: tuple[Role, ...] = Field(min_length=1)
    cpus: int = Field(default=1, ge=1, le=16)
    memory: int = Field(default=1024, ge=256, description="MiB")

    @field_validator("name")
    @classmethod
    def _hostname(cls, v: str) -> str:
        if not _NAME.match(v):
            raise ValueError(f"{v!r} is not a valid host name (lowercase letters, digits, '-')")
        return v

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(ROLE_GROUPS[r] for r in self.roles)


class Topology(_Strict):
    nodes: tuple[NodeSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> Topology:
        names = [n.name for n in self.nodes]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate node name(s): {', '.join(dup)}")
        if not any("etcd" in n.roles for n in self.nodes):
            raise ValueError("no node has the 'etcd' role; Kubespray needs at least one etcd member")
        return self

    def with_role(self, role: str) -> list[NodeSpec]:
        return [n for n in self.nodes if role in n.roles]


class Release(_Strict):
    """A point in time: a Kubespray ref and/or pinned component versions."""

    ref: str | None = None
    versions: dict[str, str] = Field(default_factory=dict)
    # Settings only the upgrade's run gets (`-e`, over the scenario's extra_vars): what the upgrade
    # changes besides versions (the lab's kube_sa_key_generation rotates the signing key). Target only.
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    # Who deploys this release; default: the scenario's installer. A Kubespray scenario on the lab
    # takes its baseline from the lab installer (Kubespray's own layout, no Kubernetes needed).
    installer: InstallerKind | None = None

    @field_validator("ref", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            Ref.parse(v)  # refuses a YAML number (`ref: 2.31`) instead of reading it as a branch
        except PlanError as e:
            raise ValueError(str(e)) from None
        return v

    @field_validator("versions", mode="before")
    @classmethod
    def _versions(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic reports the type error
        problems: list[tuple[str | None, str]] = []
        for key, value in v.items():
            if not _VERSION_VAR.match(str(key)):
                problems.append((str(key), ("not a component version variable (expected a Kubespray variable"
                                 " such as kube_version, etcd_version, containerd_version)")))
                continue
            try:
                Version.pinned(value)
            except PlanError as e:
                problems.append((str(key), str(e)))
        if problems:
            raise FieldProblems(problems)
        return v

    @property
    def ref_obj(self) -> Ref | None:
        return Ref.parse(self.ref) if self.ref else None


class ExpectedFailure(_Strict):
    """A path documented to fail: the run must fail at this task, or this check must fail on what the
    run did (the full path's kubelets ahead of the apiserver: the version skew check), and says why.
    Either way, a run that no longer fails there fails, so the scenario is updated when it is fixed."""

    task: str | None = Field(default=None, description="name (or substring) of the task the run must fail at")
    check: str | None = Field(default=None, description="name of the check that must fail (e.g. 'version skew')")
    reason: str
    remedy: str
    # What the run still changes before it stops (measured): checked at the target, the rest at baseline.
    moves: tuple[str, ...] = Field(default=(), description="components moved to the target before the failure")

    @model_validator(mode="after")
    def _one_place(self) -> ExpectedFailure:
        if (self.task is None) == (self.check is None):
            raise ValueError("name either the task the run fails at ('task') or the check that fails ('check'), not"
                             + (" both" if self.task else " neither"))
        if self.check is not None and self.moves:
            raise ValueError("'moves' is for a run that stops at a task; a documented check failure moves everything")
        return self


class Scenario(_Strict):
    id: str
    description: str
    installer: InstallerKind
    topology: Topology
    baseline: Release
    target: Release
    path: PathKind
    tags: tuple[str, ...] = ()
    extra_vars: dict[str, Any] = Field(default_factory=dict)
    budgets: dict[str, float] = Field(default_factory=dict, description="allowed disruption seconds per probe")
    gate: Literal["required", "advisory"] = "required"
    requires: tuple[Requirement, ...] = ()
    rotates_sa_key: bool = False
    idempotence: bool = False
    expect_failure: ExpectedFailure | None = None

    # Derived views, computed once: `-k` selection and pytest's parametrisation ask for the test id
    # of every scenario once per check. Cleared by `model_copy` (with_refs moves refs).
    _derived: dict[str, Any] = PrivateAttr(default_factory=dict)

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Scenario:
        copy = super().model_copy(update=update, deep=deep)
        copy._derived = {}
        return copy

    @field_validator("id")
    @classmethod
    def _id(cls, v: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9.-]{1,62}$", v):
            raise ValueError(f"{v!r}: ids are lowercase letters, digits, '.' and '-'")
        return v

    @field_validator("tags", mode="before")
    @classmethod
    def _tags(cls, v: Any) -> Any:
        if isinstance(v, str):
            v = [t for t in v.split(",") if t]
        if not isinstance(v, (list, tuple)):
            return v
        out: list[str] = []
        for t in v:
            try:
                n = normalise_tag(str(t))
            except PlanError as e:
                raise ValueError(str(e)) from None
            if n not in out:
                out.append(n)
        return tuple(out)

    @field_validator("budgets")
    @classmethod
    def _budgets(cls, v: dict[str, float], info: ValidationInfo) -> dict[str, float]:
        bad = [k for k, s in v.items() if s < 0]
        if bad:
            raise ValueError(f"negative budget for {', '.join(bad)}")
        # Keys name probe kinds or backends of this topology (harness.scenario.budgets): a typo would
        # otherwise be a budget nothing is judged against.
        topology = info.data.get("topology")
        nodes = {n.name: tuple(n.roles) for n in topology.nodes} if topology is not None else {}
        problems = [p for k in v if (p := budget_key_problem(k, nodes))]
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        """Every rule that needs no cluster, all applied at load time so a bad catalogue never reaches
        CI (the pipeline applies the plan rules again, with the checkout, before a run)."""
        problems: list[tuple[str | None, str]] = []
        tags_ok = True
        if self.path == "component":
            if not self.tags:
                tags_ok = False
                problems.append(("tags", "path 'component' needs 'tags' (one or more of " + ", ".join(COMPONENT_TAGS) + ")"))
            unknown = [t for t in self.tags if t not in KNOWN_TAGS]
            if unknown:
                tags_ok = False
                hints = [f"{t!r} (did you mean {close[0]!r}?)" if (close := difflib.get_close_matches(t, KNOWN_TAGS, 1))
                         else repr(t) for t in unknown]
                problems.append(("tags", f"unknown tag(s) {', '.join(hints)}; known: {', '.join(sorted(KNOWN_TAGS))}"))
        elif self.tags:
            problems.append(("tags", f"'tags' only applies to path 'component', not {self.path!r}"))
        versions_in_vars = sorted(k for k in self.target.extra_vars if _VERSION_VAR.match(str(k)))
        if versions_in_vars:
            problems.append(("target.extra_vars", (f"{', '.join(versions_in_vars)}: versions go in target.versions,"
                             " where the checks read what the upgrade must reach")))
        if self.baseline.extra_vars:
            problems.append(("baseline.extra_vars", ("settings for the upgrade's run only go in target.extra_vars;"
                             " settings both runs share go in the scenario's extra_vars")))
        if not self.target.ref and not self.target.versions:
            problems.append(("target", "names neither a Kubespray ref nor any component version"))
        if self.target.installer not in (None, self.installer):
            problems.append(("target.installer", f"the target is always run by the scenario's installer ({self.installer})"))
        if self.installer == "lab" and self.baseline.installer not in (None, "lab"):
            problems.append(("baseline.installer", "a lab scenario's baseline is deployed by the lab installer"))
        lab_vars = components.lab_version_vars()  # what the lab installer can install
        for rel in ("baseline", "target"):
            r: Release = getattr(self, rel)
            if (r.installer or self.installer) != "lab":
                continue
            if r.ref:
                problems.append((f"{rel}.ref", "the lab installer has no Kubespray ref"))
            extra = sorted(set(r.versions) - set(lab_vars))
            if extra:
                problems.append((f"{rel}.versions", (f"the lab installer cannot install {', '.join(extra)}"
                                 f" (it installs {', '.join(lab_vars)})")))
        if self.expect_failure is not None and tags_ok:
            stray = sorted(set(self.expect_failure.moves) - self.attempted_components())
            if stray:
                moved = ", ".join(sorted(self.attempted_components())) or "nothing"
                problems.append(("expect_failure.moves", f"{', '.join(stray)} is not moved by this scenario (it moves {moved})"))
        if self.installer == "kubespray" and not (self.target.ref or self.baseline.ref):
            problems.append(("target.ref", "a Kubespray scenario needs the Kubespray ref to run"))
        problems += self._plan_problems(tags_ok)
        if problems:
            raise FieldProblems(problems)
        return self

    def _plan_problems(self, tags_ok: bool) -> list[tuple[str | None, str]]:
        """The plan rules (harness.plan.rules) over what the file alone says: no downgrade, kube_version
        one minor at a time, no skipped Kubespray minor, tags that move what the target changes."""
        problems: list[tuple[str | None, str]] = []
        changed = self.changed_versions()
        for var, (old, new) in changed.items():
            if old is None:
                continue
            try:
                if var == "kube_version":
                    check_kube_version_step(old, new)
                else:
                    check_component_step(var, old, new)
            except PlanError as e:
                problems.append((f"target.versions.{var}", str(e)))
        base, target = self.baseline.ref_obj, self.target.ref_obj
        if base is not None and target is not None:
            try:
                check_ref_step(base, target)
            except PlanError as e:
                problems.append(("target.ref", str(e)))
        if self.path == "component" and tags_ok and not self.ref_bump:
            if not changed:
                problems.append(("target", ("changes no component version from the baseline (and not the Kubespray"
                                 " ref): the run could only be a green no-op upgrade")))
            else:
                moved: set[str] = set()
                for var in changed:
                    moved.update(components_of_var(var))
                try:
                    check_tags_move(self.tags, moved)
                    kube = changed.get("kube_version")
                    # A scenario that documents the skew (expect_failure.check: version skew) runs the
                    # doc's `--tags=node` to show what it does; the skew check must then find it.
                    documented = self.expect_failure is not None and self.expect_failure.check == SKEW_CHECK
                    if kube is not None and kube[0] is not None and not documented:
                        check_tags_keep_skew(self.tags, kube[0], kube[1])
                except PlanError as e:
                    problems.append(("tags", str(e)))
        return problems

    # -- derived views ------------------------------------------------------

    @property
    def ref_bump(self) -> bool:
        """Baseline and target at different Kubespray refs: the new ref's defaults may move anything."""
        return bool(self.baseline.ref and self.target.ref and self.baseline.ref != self.target.ref)

    @property
    def baseline_installer(self) -> InstallerKind:
        return self.baseline.installer or self.installer

    def requirements(self) -> set[str]:
        """What the scenario needs to run. Kubespray scenarios need a checkout, and a Kubernetes
        control plane unless both their baseline and their tags need none (Kubespray's etcd and
        container-engine roles over a lab-installed baseline)."""
        req: set[str] = set(self.requires)
        if self.installer == "lab" and "kube_version" in {**self.baseline.versions, **self.target.versions}:
            req.add("kubernetes")
        if self.installer == "kubespray":
            req.add("kubespray")
            without_kubernetes = (
                self.path == "component"
                and set(self.tags) <= NO_CONTROL_PLANE_TAGS
                and self.baseline_installer == "lab"
            )
            if not without_kubernetes:
                req.add("kubernetes")
        return req

    def _memo(self) -> dict[str, Any]:
        # Straight to pydantic's private storage: `self._derived` goes through BaseModel.__getattr__,
        # which cost more than the views themselves on a 5,000-scenario catalogue.
        memo: dict[str, Any] = self.__pydantic_private__["_derived"]  # type: ignore[index]
        return memo

    def changed_versions(self) -> dict[str, tuple[str | None, str]]:
        """Version variables the target sets differently from the baseline."""
        memo = self._memo()
        if "changed" not in memo:
            out: dict[str, tuple[str | None, str]] = {}
            for var, new in self.target.versions.items():
                old = self.baseline.versions.get(var)
                if old is None or Version.parse(old) != Version.parse(new):
                    out[var] = (old, new)
            memo["changed"] = out
        return dict(memo["changed"])

    def upgraded_components(self) -> set[str]:
        """Components this path is expected to move to the target version; the rest stay put. A
        failure documented at a task moves nothing but its `moves`: its checks measure that the cluster
        was left as it was. A documented check failure is a run that went through: everything moved."""
        if self.expect_failure is not None and self.expect_failure.task is not None:
            return set(self.expect_failure.moves)
        return self.attempted_components()

    def attempted_components(self) -> set[str]:
        """Components the run sets out to move (what ids and `-k` name), whether or not it can."""
        memo = self._memo()
        if "attempted" not in memo:
            changed: set[str] = set()
            for var in self.changed_versions():
                changed.update(components_of_var(var))
            if self.path == "component":
                changed &= {c for t in self.tags for c in components.moved_by(t)}
            elif self.baseline.ref != self.target.ref:
                # A ref bump re-deploys every component at the new ref's defaults.
                changed.update(components.ref_bump_components())
            memo["attempted"] = frozenset(changed)
        return set(memo["attempted"])

    def expected_versions(self) -> dict[str, str]:
        """Component -> version the cluster must show after the upgrade, where the scenario pins it."""
        out: dict[str, str] = {}
        upgraded = self.upgraded_components()
        for c in components.COMPONENTS:
            # Unpinned versions at a ref bump come from the ref's defaults (the installer resolves them).
            value = (self.target if c.name in upgraded else self.baseline).versions.get(c.var)
            if value:
                out[c.name] = value
        return out

    def components(self) -> list[str]:
        """Short names of what the scenario touches, for ids and `-k` selection."""
        memo = self._memo()
        if "components" not in memo:
            names: list[str] = list(self.tags) if self.path == "component" else []
            vars_touched = {c.var for name in self.attempted_components() if (c := components.find(name))}
            for var in sorted(vars_touched):
                short = var.removesuffix("_version")
                if short not in names:
                    names.append(short)
            memo["components"] = tuple(names)
        return list(memo["components"])

    @property
    def test_id(self) -> str:
        memo = self._memo()
        if "test_id" not in memo:
            memo["test_id"] = f"{self.id}:{self.path}:{'+'.join(self.components())}"
        return str(memo["test_id"])
