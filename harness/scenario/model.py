"""The scenario schema. pydantic validates it and reports the failing field's path."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from harness.errors import PlanError
from harness.plan.tags import (
    COMPONENT_TAGS,
    COMPONENT_VARS,
    REF_BUMP_COMPONENTS,
    TAG_COMPONENTS,
    components_of_var,
    normalise_tag,
)
from harness.plan.versions import Ref, Version

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

# What the lab installer can install; a lab scenario may name only these.
LAB_COMPONENTS = ("etcd_version", "containerd_version", "runc_version")

# Kubespray tags whose tasks need no Kubernetes control plane: a Kubespray scenario tagged only
# with these runs on the lab, with Kubespray's own roles.
NO_CONTROL_PLANE_TAGS = frozenset({"download", "etcd", "etcd-secrets", "container-engine"})

_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
_VERSION_VAR = re.compile(r"^[a-z][a-z0-9_]*_version$")


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
    # Who deploys this release; default: the scenario's installer. A Kubespray scenario on the lab
    # takes its baseline from the lab installer (Kubespray's own layout, no Kubernetes needed).
    installer: InstallerKind | None = None

    @field_validator("ref", mode="before")
    @classmethod
    def _ref(cls, v: Any) -> Any:
        if v is None:
            return v
        try:
            Ref.parse(str(v))
        except PlanError as e:
            raise ValueError(str(e)) from None
        return str(v)

    @field_validator("versions", mode="before")
    @classmethod
    def _versions(cls, v: Any) -> Any:
        if not isinstance(v, dict):
            return v  # pydantic reports the type error
        out: dict[str, str] = {}
        for key, value in v.items():
            if not _VERSION_VAR.match(str(key)):
                raise ValueError(
                    f"{key!r} is not a component version variable (expected a Kubespray variable"
                    " such as kube_version, etcd_version, containerd_version)"
                )
            try:
                Version.parse(str(value))
            except PlanError as e:
                raise ValueError(f"{key}: {e}") from None
            out[str(key)] = str(value)
        return out

    @property
    def ref_obj(self) -> Ref | None:
        return Ref.parse(self.ref) if self.ref else None


class ExpectedFailure(_Strict):
    """A path documented to fail: the run must fail at this task, and the check says why."""

    task: str = Field(description="name (or substring) of the task the run must fail at")
    reason: str
    remedy: str


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
    def _budgets(cls, v: dict[str, float]) -> dict[str, float]:
        bad = [k for k, s in v.items() if s < 0]
        if bad:
            raise ValueError(f"negative budget for {', '.join(bad)}")
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.path == "component":
            if not self.tags:
                raise ValueError("path 'component' needs 'tags' (one or more of " + ", ".join(COMPONENT_TAGS) + ")")
            unknown = [t for t in self.tags if t not in TAG_COMPONENTS]
            if unknown:
                raise ValueError(f"unknown tag(s) {', '.join(unknown)}; known: {', '.join(sorted(TAG_COMPONENTS))}")
        elif self.tags:
            raise ValueError(f"'tags' only applies to path 'component', not {self.path!r}")
        if not self.target.ref and not self.target.versions:
            raise ValueError("target names neither a Kubespray ref nor any component version")
        if self.target.installer not in (None, self.installer):
            raise ValueError(f"target.installer: the target is always run by the scenario's installer ({self.installer})")
        if self.installer == "lab" and self.baseline.installer not in (None, "lab"):
            raise ValueError("baseline.installer: a lab scenario's baseline is deployed by the lab installer")
        for rel in ("baseline", "target"):
            r: Release = getattr(self, rel)
            if (r.installer or self.installer) != "lab":
                continue
            if r.ref:
                raise ValueError(f"{rel}.ref: the lab installer has no Kubespray ref")
            extra = sorted(set(r.versions) - set(LAB_COMPONENTS))
            if extra:
                raise ValueError(
                    f"{rel}.versions: the lab installer cannot install {', '.join(extra)}"
                    f" (it installs {', '.join(LAB_COMPONENTS)})"
                )
        if self.installer == "kubespray" and not (self.target.ref or self.baseline.ref):
            raise ValueError("target.ref: a Kubespray scenario needs the Kubespray ref to run")
        return self

    # -- derived views ------------------------------------------------------

    @property
    def baseline_installer(self) -> InstallerKind:
        return self.baseline.installer or self.installer

    def requirements(self) -> set[str]:
        """What the scenario needs to run. Kubespray scenarios need a checkout, and a Kubernetes
        control plane unless both their baseline and their tags need none (Kubespray's etcd and
        container-engine roles over a lab-installed baseline)."""
        req = set(self.requires)
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

    def changed_versions(self) -> dict[str, tuple[str | None, str]]:
        """Version variables the target sets differently from the baseline."""
        out: dict[str, tuple[str | None, str]] = {}
        for var, new in self.target.versions.items():
            old = self.baseline.versions.get(var)
            if old is None or Version.parse(old) != Version.parse(new):
                out[var] = (old, new)
        return out

    def upgraded_components(self) -> set[str]:
        """Components this path is expected to move to the target version; the rest stay put. A
        documented failure moves nothing: its checks measure that the cluster was left as it was."""
        if self.expect_failure is not None:
            return set()
        return self.attempted_components()

    def attempted_components(self) -> set[str]:
        """Components the run sets out to move (what ids and `-k` name), whether or not it can."""
        changed: set[str] = set()
        for var in self.changed_versions():
            changed.update(components_of_var(var))
        if self.path == "component":
            return changed & {c for t in self.tags for c in TAG_COMPONENTS[t]}
        if self.baseline.ref != self.target.ref:
            # A ref bump re-deploys every component at the new ref's defaults.
            changed.update(REF_BUMP_COMPONENTS)
        return changed

    def expected_versions(self) -> dict[str, str]:
        """Component -> version the cluster must show after the upgrade, where the scenario pins it."""
        out: dict[str, str] = {}
        upgraded = self.upgraded_components()
        for comp, var in COMPONENT_VARS.items():
            # Unpinned versions at a ref bump come from the ref's defaults (the installer resolves them).
            value = (self.target if comp in upgraded else self.baseline).versions.get(var)
            if value:
                out[comp] = value
        return out

    def components(self) -> list[str]:
        """Short names of what the scenario touches, for ids and `-k` selection."""
        names: list[str] = list(self.tags) if self.path == "component" else []
        vars_touched = {COMPONENT_VARS[c] for c in self.attempted_components() if c in COMPONENT_VARS}
        for var in sorted(vars_touched):
            short = var.removesuffix("_version")
            if short not in names:
                names.append(short)
        return names

    @property
    def test_id(self) -> str:
        return f"{self.id}:{self.path}:{'+'.join(self.components())}"
