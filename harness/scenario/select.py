"""`-k` selection over scenarios, with pytest's own expression language. The CLI and the pytest
plugin both select through `matches`, so `harness scenarios -k` and `pytest scenarios/ -k` select
the same scenarios, by the scenario's own words only (never a check's name)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from harness.errors import PlanError
from harness.scenario.loader import revalidated
from harness.scenario.model import Scenario

if TYPE_CHECKING:
    from _pytest.mark.expression import Expression


def keywords(scenario: Scenario) -> list[str]:
    """The names `-k` matches against: the scenario's id, path, installer and components, and its
    item id as pytest prints it (`[lab-etcd:graceful:etcd]`, which CI matrices select by)."""
    return [f"[{scenario.test_id}]", scenario.id, scenario.path, scenario.installer, *scenario.components()]


def compile_expression(expr: str) -> Expression:
    """A `-k` expression in pytest's grammar (no public API; imported here: it brings much of pytest,
    which a listing without -k need not start)."""
    from _pytest.mark.expression import Expression

    try:
        return Expression.compile(expr)
    except SyntaxError as e:  # pytest >= 8.4 raises SyntaxError, older ParseError (a SyntaxError-like)
        raise PlanError(f"bad -k expression {expr!r}: {e}") from None


def matches(compiled: Expression, scenario: Scenario) -> bool:
    return bool(compiled.evaluate(_matcher([k.lower() for k in keywords(scenario)])))


def select(scenarios: Iterable[Scenario], expr: str | None) -> list[Scenario]:
    items = list(scenarios)
    if not expr:
        return items
    compiled = compile_expression(expr)
    return [sc for sc in items if matches(compiled, sc)]


def _matcher(names: list[str]) -> Callable[..., bool]:
    """pytest's -k: a word matches when it is a substring of any keyword, case-insensitively."""

    def match(sub: str, /, **kwargs: object) -> bool:
        if kwargs:
            raise PlanError("-k: keyword expressions take no call parameters")
        low = sub.lower()
        return any(low in n for n in names)

    return match


def unmet_requirement(
    scenario: Scenario, *, kubespray: object | None, provider: str, lab_backend: str = "lxc"
) -> str | None:
    """Why this scenario cannot run with these options, saying what to pass; None when it can."""
    req = scenario.requirements()
    if "kubespray" in req and kubespray is None:
        return f"{scenario.id} needs a Kubespray checkout: pass --kubespray PATH"
    # Kubespray over a Kubernetes the lab installer deployed (its kubelets from the files repo): the lab
    # hosts that cluster as it hosts its own.
    on_lab_kubernetes = scenario.installer == "lab" or (
        scenario.baseline_installer == "lab" and "kube_version" in scenario.baseline.versions
    )
    if "kubernetes" in req and provider == "lab" and on_lab_kubernetes and lab_backend != "lxc":
        return (
            f"{scenario.id} runs Kubernetes, which the lab's QEMU nodes are too slow to host under software"
            " emulation: run it on the container backend (--lab-backend lxc)"
        )
    if "kubernetes" in req and provider == "lab" and not on_lab_kubernetes:
        return (
            f"{scenario.id} needs Kubespray to install Kubernetes, which the lab cannot give it (its network"
            " plugin, CoreDNS and other images are on no reachable registry): pass --provider vagrant, or"
            " --provider static --inventory FILE"
        )
    return None


def with_refs(scenario: Scenario, from_ref: str | None, to_ref: str | None) -> Scenario:
    """`--from/--to` move a Kubespray scenario's refs; lab scenarios have none and stay as they are."""
    if scenario.installer != "kubespray" or not (from_ref or to_ref):
        return scenario
    origin = " ".join(f"{flag} {v}" for flag, v in (("--from", from_ref), ("--to", to_ref)) if v)
    if scenario.baseline_installer == "lab":
        # The lab installer deployed the baseline: only the Kubespray that runs the upgrade has a ref.
        ref = to_ref or from_ref
        return revalidated(scenario.model_copy(update={"target": scenario.target.model_copy(update={"ref": ref})}), origin)
    same = scenario.baseline.ref == scenario.target.ref  # component paths run at one ref
    base = from_ref or scenario.baseline.ref
    target = to_ref or (base if same and from_ref else scenario.target.ref)
    if same and to_ref and not from_ref:
        base = to_ref
    moved = scenario.model_copy(
        update={
            "baseline": scenario.baseline.model_copy(update={"ref": base}),
            "target": scenario.target.model_copy(update={"ref": target}),
        }
    )
    return revalidated(moved, origin)
