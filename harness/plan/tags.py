"""Kubespray tags as its docs name them, mapped to what its playbooks carry today."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence

from harness import components
from harness.errors import PlanError
from harness.plan.versions import Version

# Older docs' names for tags that still exist under another name.
ALIASES: dict[str, str] = {
    "master": "control-plane",
    "docker": "container-engine",
}

# Tags that are gone, with what replaced them.
REMOVED: dict[str, str] = {
    "vault": "Vault was removed from Kubespray; etcd certificates are made by the `etcd-secrets` tag"
    " and Kubernetes certificates by kubeadm (`control-plane`)",
    "k8s-gen-certs": "kubeadm makes the Kubernetes certificates now: use `--tags=control-plane`"
    " (and `etcd-secrets` for etcd's)",
    "k8s-gen-tokens": "kubeadm issues bootstrap tokens now: use `--tags=control-plane` (or `kubeadm`)",
}

# The component tags a scenario may name for the component path (the seed doc's list).
COMPONENT_TAGS: tuple[str, ...] = (
    "etcd",
    "container-engine",
    "node",
    "control-plane",
    "network",
    "apps",
    "helm",
)

# Tags that move no component themselves but belong beside one: `download` fetches what the
# component tags install (`--tags=download,etcd` is the working etcd path), `etcd-secrets` makes
# etcd's certificates.
COMPANION_TAGS = frozenset({"download", "etcd-secrets"})

# Every tag a scenario may name: those that move a component (harness.components) and the companions.
KNOWN_TAGS = frozenset(components.tags()) | COMPANION_TAGS


def normalise_tag(tag: str) -> str:
    """Map a doc's tag to today's name; refuse a removed tag, saying what replaced it."""
    t = tag.strip()
    if t in REMOVED:
        raise PlanError(f"tag {t!r} was removed from Kubespray: {REMOVED[t]}")
    return ALIASES.get(t, t)


def normalise_tags(tags: Iterable[str]) -> list[str]:
    out: list[str] = []
    for tag in tags:
        n = normalise_tag(tag)
        if n not in out:
            out.append(n)
    return out


def check_tags_exist(tags: Iterable[str], available: Iterable[str], where: str) -> None:
    """A tag no task carries is not an Ansible error: the run exits 0 having done nothing. Refuse it."""
    have = set(available)
    missing = [t for t in tags if t not in have]
    if missing:
        raise PlanError(
            f"{where} has no task tagged {', '.join(repr(t) for t in missing)}; "
            f"tags that exist: {', '.join(sorted(have))}"
        )


def check_tags_move(tags: Sequence[str], changed: Collection[str]) -> None:
    """Tags that move none of the components a target changes can only ever give a green no-op
    upgrade (`--tags=master`, today's `control-plane`, on an etcd bump). Refuse that, naming the tags,
    the components and the tags that would move them. A component no tag is known to move (an older
    release's `docker_version`) cannot be judged, so it passes; companions alone move nothing."""
    if not changed or not set(changed) <= components.tagged():
        return
    if any(set(components.moved_by(t)) & set(changed) for t in tags):
        return
    movers = [t for t in COMPONENT_TAGS if set(components.moved_by(t)) & set(changed)]
    keep = [t for t in tags if t in COMPANION_TAGS]
    idle = ", ".join(repr(t) for t in tags)
    raise PlanError(
        f"tag{'s' if len(tags) > 1 else ''} {idle} move{'' if len(tags) > 1 else 's'} none of what this"
        f" scenario changes ({', '.join(sorted(changed))}): the run could only be a green no-op upgrade;"
        f" use tags: [{', '.join([*keep, *movers])}]"
    )


def check_tags_keep_skew(tags: Sequence[str], kube_source: str, kube_target: str) -> None:
    """A minor kube_version step through tags that move the kubelets but not the control plane
    (`--tags=node`, the upgrade doc's order) leaves every kubelet a minor newer than its apiserver,
    which Kubernetes' version skew policy forbids. Refuse it, saying what to run first."""
    moved = {c for t in tags for c in components.moved_by(t)}
    a, b = Version.parse(kube_source), Version.parse(kube_target)
    if "kubelet" in moved and "kube-apiserver" not in moved and (b.major, b.minor) > (a.major, a.minor):
        raise PlanError(
            f"tags {', '.join(tags)} move every kubelet to {b.major}.{b.minor} while the control plane stays at"
            f" {a.major}.{a.minor}: a kubelet newer than its apiserver breaks Kubernetes' version skew policy;"
            " upgrade the control plane first (--tags=control-plane), then the nodes"
        )
