"""What a scenario's `budgets` keys may name: a disruption probe's kind, or one backend of the
topology (harness.checks.disruption explains the backends and how budgets are judged)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

# kind -> backend prefix; a kind key in `budgets` applies to every backend of that kind.
KINDS: dict[str, str] = {
    "etcd-member": "etcd",
    "etcd-all": "etcd",
    "containerd": "containerd",
    "apiserver": "apiserver",
    "canary": "canary",
    "dns": "dns",
}
REUSED = ":reused"


def kind_of(backend: str) -> str:
    """The budget kind of a backend name (`etcd:all` -> etcd-all, `etcd:node1` -> etcd-member)."""
    prefix, _, name = backend.partition(":")
    if prefix == "etcd":
        return "etcd-all" if name == "all" else "etcd-member"
    return prefix


def budget_key_problem(key: str, nodes: Mapping[str, Sequence[str]]) -> str | None:
    """Why `key` is not a budget key for a topology (node -> roles), or None when it is one."""
    if key in KINDS or key == "dns" + REUSED:  # dns is a kind and its one backend
        return None
    prefix, sep, name = key.partition(":")
    name = name.removesuffix(REUSED)
    known = f"known kinds: {', '.join(KINDS)}; or one backend: etcd:<node>, etcd:all, containerd:<node>," \
            " apiserver:<node>, apiserver:endpoint, canary:<node>, dns:reused (each with :reused too)"
    if not sep or prefix not in set(KINDS.values()) or not name:
        return f"unknown budget key {key!r}; {known}"
    if prefix == "etcd":
        if name == "all" or "etcd" in nodes.get(name, ()):
            return None
        return f"budget {key!r}: no etcd node {name!r} (etcd nodes: {', '.join(n for n, r in nodes.items() if 'etcd' in r) or 'none'})"
    if prefix == "apiserver" and name == "endpoint":
        return None
    if prefix == "apiserver" and "control-plane" not in nodes.get(name, ()):
        return f"budget {key!r}: no control-plane node {name!r}"
    if name not in nodes:
        return f"budget {key!r}: no node {name!r} (nodes: {', '.join(nodes)})"
    return None
