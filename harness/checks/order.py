"""Upgrade order, from the run's timeline (Ansible task events) and the version samples taken during it.

Kubespray changes a node in the order of its plays, and the two playbooks differ (read at v2.31.0):
- cluster.yml (full and component paths): container engine -> etcd -> kubelet (node) -> control
  plane -> network plugin (the kubeadm play) -> add-ons. (Older write-ups put the network plugin
  before the control plane; the playbook does not.)
- upgrade-cluster.yml (graceful, playbooks/upgrade_cluster.yml): etcd first; then, one at a time,
  each control-plane node's container engine, kubelet and control plane; then the network plugin
  everywhere; then the workers' container engine and kubelet. Etcd-only hosts get their container
  engine before etcd. Graceful paths also go one node at a time.
And at every sample the version-skew policy must hold: no kubelet newer than the oldest apiserver,
no kubelet more than three minors behind, etcd upgraded before the control plane.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import UTC, datetime

from harness import components
from harness.checks.result import CheckResult, text_table
from harness.errors import PlanError
from harness.plan.versions import Version
from harness.probes.facts import NodeStateSample, VersionSample
from harness.text import plural
from harness.upgrade.timeline import TaskRecord

PHASES: tuple[str, ...] = ("container-engine", "etcd", "node", "control-plane", "network", "apps")
GRACEFUL_CONTROL_PLANE: tuple[str, ...] = ("etcd", "container-engine", "node", "control-plane", "network", "apps")
GRACEFUL_WORKER: tuple[str, ...] = ("etcd", "network", "container-engine", "node")
GRACEFUL_ETCD_ONLY: tuple[str, ...] = ("container-engine", "etcd")


def phase_order(path: str, roles: Iterable[str]) -> tuple[str, ...]:
    """The order a node of these roles changes in on this upgrade path (see the module's docstring)."""
    if path != "graceful":
        return PHASES
    roles = set(roles)
    if "control-plane" in roles:
        return GRACEFUL_CONTROL_PLANE
    if "worker" in roles:
        return GRACEFUL_WORKER
    return GRACEFUL_ETCD_ONLY

# Tags that put a task in a phase; the first phase in PHASE_PRIORITY whose tags match wins,
# because Kubespray tasks carry several tags (an etcd client-cert task on a control-plane node: etcd).
PHASE_TAGS: dict[str, frozenset[str]] = {
    "container-engine": frozenset({"container-engine", "docker", "containerd", "runc", "crictl", "crio"}),
    "etcd": frozenset({"etcd", "etcd-secrets"}),
    "node": frozenset({"node", "kubelet", "kube-proxy"}),
    "network": frozenset({"network", "calico", "flannel", "cilium", "cni"}),
    "control-plane": frozenset({"control-plane", "master", "kubeadm"}),
    "apps": frozenset({"apps", "coredns", "dns"}),
}
PHASE_PRIORITY: tuple[str, ...] = ("etcd", "container-engine", "network", "control-plane", "apps", "node")
# Tasks that fetch files change nothing on the node's components.
IGNORED_TAGS: frozenset[str] = frozenset({"download"})


def at(timestamp: str | None) -> datetime | None:
    """A timeline record's time (ISO 8601, as ansible-runner writes it); naive times are UTC."""
    if not timestamp:
        return None
    try:
        t = datetime.fromisoformat(timestamp)
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def phase_of(event: TaskRecord, selected: Collection[str] = ()) -> str | None:
    """The phase a task belongs to. In a run limited by `--tags` (`selected`), a task ran because it
    carries one of those tags: Kubespray's node role writes the kubelet's config under its own tags
    `kubelet, kubeadm` beside the role's `node`, so only the selected tags say which phase ran it."""
    tags = set(event.tags)
    if tags & IGNORED_TAGS:
        return None
    chosen = tags & set(selected)
    for phase in PHASE_PRIORITY:
        if chosen & PHASE_TAGS[phase]:
            return phase
    for phase in PHASE_PRIORITY:
        if tags & PHASE_TAGS[phase]:
            return phase
    return None


def _fmt(t: datetime | None) -> str:
    return t.strftime("%H:%M:%S") if t else "?"


def serial_phases(installer: str, roles: Mapping[str, Iterable[str]]) -> list[tuple[str, list[str]]]:
    """(phase, nodes) a graceful run must take one node at a time.

    Kubespray's upgrade_cluster.yml: `serial: 1` only for the control-plane play (engine, kubelet,
    control plane); etcd's play has no serial and workers go in batches of `serial` (20%).
    The lab's upgrade-cluster.yml: etcd and every node's container engine, `serial: 1`."""
    if installer == "lab":
        every = sorted(roles)
        return [("etcd", [n for n in every if "etcd" in roles[n]]), ("container-engine", every)]
    planes = sorted(n for n, r in roles.items() if "control-plane" in r)
    return [("container-engine", planes), ("node", planes), ("control-plane", planes)]


def _order_for(order: Sequence[str] | Mapping[str, Sequence[str]], host: str) -> Sequence[str]:
    return order.get(host, PHASES) if isinstance(order, Mapping) else order


def _describe(order: Sequence[str] | Mapping[str, Sequence[str]]) -> str:
    if not isinstance(order, Mapping):
        return " -> ".join(order)
    by_order: dict[tuple[str, ...], list[str]] = {}
    for host, o in sorted(order.items()):
        by_order.setdefault(tuple(o), []).append(host)
    return "; ".join(f"{', '.join(hosts)}: {' -> '.join(o)}" for o, hosts in by_order.items())


def check_task_order(events: Iterable[TaskRecord],
                     order: Sequence[str] | Mapping[str, Sequence[str]] = PHASES,
                     selected: Collection[str] = ()) -> CheckResult:
    """Per host, every changed task of an earlier phase starts before the first changed task of a
    later one. `order` is one order for every host, or one per host (`phase_order`); `selected`: the
    run's `--tags` (phase_of)."""
    name = "per-node phase order (timeline)"
    spans: dict[str, dict[str, tuple[datetime, datetime]]] = {}
    for e in events:
        phase, start = phase_of(e, selected), at(e.start)
        if not e.changed or phase is None or start is None or phase not in _order_for(order, e.host):
            continue
        first, last = spans.setdefault(e.host, {}).get(phase, (start, start))
        spans[e.host][phase] = (min(first, start), max(last, start))
    if not spans:
        return CheckResult.not_applicable(name, "no changed task in a known phase")
    rows = []
    for host, phases in sorted(spans.items()):
        rank = {p: i for i, p in enumerate(_order_for(order, host))}
        present = sorted(phases, key=rank.__getitem__)
        for i, early in enumerate(present):
            for late in present[i + 1:]:
                if phases[late][0] < phases[early][1]:
                    rows.append((host, f"{late} before {early}",
                                 f"{late} changed at {_fmt(phases[late][0])}, {early} still at {_fmt(phases[early][1])}"))
    if rows:
        return CheckResult.fail(name, f"{len(rows)} out-of-order phase pair(s); expected {_describe(order)}",
                                text_table(("node", "violation", "when"), rows))
    return CheckResult.ok(name, f"{len(spans)} node(s) changed in order {_describe(order)}")


def check_one_at_a_time(events: Iterable[TaskRecord], phase: str, hosts: Iterable[str] | None = None) -> CheckResult:
    """Graceful paths: a node's tasks of `phase` finish before the next node's start (serial: 1)."""
    name = f"one node at a time ({phase})"
    only = set(hosts) if hosts is not None else None
    spans: dict[str, list[datetime]] = {}
    for e in events:
        start = at(e.start)
        if e.status == "skipped" or start is None or phase_of(e) != phase or (only is not None and e.host not in only):
            continue
        end = at(e.end) or start
        s = spans.setdefault(e.host, [start, end])
        s[0], s[1] = min(s[0], start), max(s[1], end)
    if len(spans) < 2:
        return CheckResult.not_applicable(name, f"{len(spans)} node(s) ran {phase} tasks; nothing to serialise")
    ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
    rows = []
    for (a, (_a0, a1)), (b, (b0, _b1)) in itertools.pairwise(ordered):
        if b0 < a1:
            rows.append((b, f"started {_fmt(b0)}", f"before {a} finished ({_fmt(a1)})"))
    if rows:
        return CheckResult.fail(name, f"{phase} ran on several nodes at once",
                                text_table(("node", "start", "overlap"), rows))
    return CheckResult.ok(name, f"{phase} ran one node at a time: {', '.join(h for h, _ in ordered)}")


def state_spans(states: Iterable[NodeStateSample],
                flag: Callable[[NodeStateSample], bool]) -> dict[str, list[tuple[datetime, datetime]]]:
    """node -> the spans a state held (cordoned, not Ready), each from its first sample to the first
    sample without it (or the last sample, if it never ended)."""
    spans: dict[str, list[tuple[datetime, datetime]]] = {}
    since: dict[str, datetime] = {}
    last: datetime | None = None
    for s in sorted(states, key=lambda s: s.at):
        last = s.at
        if flag(s):
            since.setdefault(s.node, s.at)
        elif s.node in since:
            spans.setdefault(s.node, []).append((since.pop(s.node), s.at))
    for node, start in since.items():
        spans.setdefault(node, []).append((start, last or start))
    return spans


def cordon_spans(states: Iterable[NodeStateSample]) -> dict[str, list[tuple[datetime, datetime]]]:
    """node -> the spans the API showed it cordoned (unschedulable)."""
    return state_spans(states, lambda s: s.unschedulable)


def serial_count(serial: str | int, hosts: int) -> int:
    """Ansible's batch size for `serial` (a count or a percentage) over `hosts` hosts: at least 1."""
    text = str(serial).strip()
    if text.endswith("%"):
        return max(1, int(hosts * float(text[:-1]) / 100))
    return max(1, int(text))


def check_cordon_order(states: Sequence[NodeStateSample], control_plane: Iterable[str], nodes: Iterable[str],
                       serial: int = 1) -> CheckResult:
    """Graceful paths, from the API's view of the nodes while the upgrade ran: every node cordoned
    (drained) once, control-plane nodes before any other, at most `serial` at a time. (A node left
    cordoned after the run is the nodes check's: the last round may come before the last uncordon.)"""
    name = "cordon order (API)"
    if not states:
        return CheckResult.fail(name, "no node state was sampled from the API during the upgrade")
    cp = set(control_plane)
    spans = cordon_spans(states)
    rows: list[tuple[str, str, str]] = []
    for node in sorted(set(nodes) - set(spans)):
        rows.append((node, "never cordoned", "the API never showed it unschedulable while the upgrade ran"))
    ordered = sorted(((start, end, node) for node, ss in spans.items() for start, end in ss))
    first_worker = next((start for start, _end, node in ordered if node not in cp), None)
    for start, _end, node in ordered:
        if node in cp and first_worker is not None and start > first_worker:
            rows.append((node, "control plane after a worker", f"cordoned {_fmt(start)}, a worker at {_fmt(first_worker)}"))
    rounds: dict[datetime, set[str]] = {}
    for s in states:
        if s.unschedulable:
            rounds.setdefault(s.at, set()).add(s.node)
    # Control-plane nodes go alone (Kubespray's serial: 1); workers in batches of `serial`.
    crowded = sorted((t, ns) for t, ns in rounds.items() if len(ns) > (1 if ns & cp else serial))
    if crowded:
        t, ns = crowded[0]
        when = f"at {_fmt(t)} (workers' serial {serial}); {plural(len(crowded), 'round')} like it"
        rows.append((", ".join(sorted(ns)), f"{len(ns)} cordoned at once", when))
    if rows:
        return CheckResult.fail(name, plural(len(rows), "drain-order problem"), text_table(("node", "problem", "detail"), rows))
    return CheckResult.ok(name, "cordoned one at a time, control plane first: " + ", ".join(
        f"{node} {_fmt(start)}-{_fmt(end)}" for start, end, node in ordered))


# -- version samples -------------------------------------------------------------


def change_times(samples: Iterable[VersionSample]) -> dict[str, dict[str, datetime]]:
    """node -> component -> when its version first differed from its first sample."""
    first: dict[tuple[str, str], str | None] = {}
    out: dict[str, dict[str, datetime]] = {}
    for s in sorted(samples, key=lambda s: s.at):
        key = (s.node, s.component)
        if key not in first:
            first[key] = s.version
        elif s.version != first[key] and s.component not in out.get(s.node, {}):
            out.setdefault(s.node, {})[s.component] = s.at
    return out


def check_sample_order(samples: Iterable[VersionSample],
                       order: Sequence[str] | Mapping[str, Sequence[str]] = PHASES,
                       component_phase: Mapping[str, str] | None = None) -> CheckResult:
    """Per node, measured version changes follow the phase order (one for all, or one per node).
    Each change counts in its component's phase (`components.sample_phases()` unless given)."""
    name = "per-node upgrade order (versions)"
    component_phase = components.sample_phases() if component_phase is None else component_phase
    changes = change_times(samples)
    rows = []
    for node, comps in sorted(changes.items()):
        rank = {p: i for i, p in enumerate(_order_for(order, node))}
        ranked = [(c, t) for c, t in comps.items() if component_phase.get(c) in rank]
        for c1, t1 in ranked:
            for c2, t2 in ranked:
                if rank[component_phase[c1]] < rank[component_phase[c2]] and t2 < t1:
                    rows.append((node, f"{c2} before {c1}", f"{c2} changed {_fmt(t2)}, {c1} changed {_fmt(t1)}"))
    if not changes:
        return CheckResult.not_applicable(name, "no sampled version changed")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} component(s) changed out of order; expected {_describe(order)}",
                                text_table(("node", "violation", "when"), sorted(rows)))
    return CheckResult.ok(name, f"version changes on {len(changes)} node(s) follow {_describe(order)}")


def _minor(v: str | None) -> tuple[int, int] | None:
    if not v:
        return None
    try:
        return Version.parse(v).minor_line
    except PlanError:
        return None


def check_version_skew(samples: Iterable[VersionSample], max_kubelet_lag: int = 3) -> CheckResult:
    """Replay the samples in time order and test Kubernetes' skew policy at every one.

    The policy is about minor versions: a kubelet must not be newer than the oldest kube-apiserver,
    nor more than `max_kubelet_lag` minors older than the newest one."""
    name = "version skew policy"
    state: dict[tuple[str, str], tuple[int, int] | None] = {}
    seen: set[tuple[str, str, str]] = set()
    rows: list[tuple[str, str, str, str]] = []
    evaluated = False
    for s in sorted(samples, key=lambda s: s.at):
        state[(s.node, s.component)] = _minor(s.version)
        apis = {n: v for (n, c), v in state.items() if c == "kube-apiserver" and v}
        kubelets = {n: v for (n, c), v in state.items() if c == "kubelet" and v}
        if not apis or not kubelets:
            continue
        evaluated = True
        oldest, newest = min(apis.values()), max(apis.values())
        for node, kv in kubelets.items():
            problems = []
            if kv > oldest:
                problems.append(("kubelet newer than oldest apiserver", f"kubelet {kv[0]}.{kv[1]} > apiserver {oldest[0]}.{oldest[1]}"))
            if kv[0] == newest[0] and newest[1] - kv[1] > max_kubelet_lag:
                problems.append((f"kubelet > {plural(max_kubelet_lag, 'minor')} behind", f"kubelet {kv[0]}.{kv[1]}, apiserver {newest[0]}.{newest[1]}"))
            for rule, detail in problems:
                if (node, rule, detail) not in seen:
                    seen.add((node, rule, detail))
                    rows.append((s.at.strftime("%H:%M:%S"), node, rule, detail))
    if not evaluated:
        return CheckResult.not_applicable(name, "no sample had both a kubelet and a kube-apiserver version")
    if rows:
        return CheckResult.fail(name, f"{len(rows)} skew violation(s)", text_table(("time", "node", "rule", "detail"), rows))
    return CheckResult.ok(name, "kubelets within the skew policy at every sample")


def check_etcd_before_control_plane(samples: Iterable[VersionSample]) -> CheckResult:
    """Every etcd member reaches its final version before any apiserver changes."""
    name = "etcd upgraded before control plane"
    samples = list(samples)
    changes = change_times(samples)
    etcd = [(t, n) for n, comps in changes.items() for c, t in comps.items() if c == "etcd"]
    api = [(t, n) for n, comps in changes.items() for c, t in comps.items() if c == "kube-apiserver"]
    if not etcd or not api:
        return CheckResult.not_applicable(name, "etcd and the apiserver did not both change")
    # The last etcd change, not the first: a node's etcd could move twice (3.4 -> 3.5 -> 3.5.x).
    last_etcd = max(t for n, comps in _all_changes(samples, "etcd").items() for t in comps)
    first_api, api_node = min(api)
    if first_api < last_etcd:
        return CheckResult.fail(name, f"apiserver on {api_node} changed at {_fmt(first_api)} while etcd was still"
                                f" changing until {_fmt(last_etcd)}")
    return CheckResult.ok(name, f"etcd done {_fmt(last_etcd)}, first apiserver change {_fmt(first_api)}")


def _all_changes(samples: Iterable[VersionSample], component: str) -> dict[str, list[datetime]]:
    """node -> every time `component`'s version differed from the previous sample."""
    prev: dict[str, str | None] = {}
    out: dict[str, list[datetime]] = {}
    for s in sorted((s for s in samples if s.component == component), key=lambda s: s.at):
        if s.node in prev and s.version != prev[s.node]:
            out.setdefault(s.node, []).append(s.at)
        prev[s.node] = s.version
    return out
