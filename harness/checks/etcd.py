"""etcd: every member healthy and listed, every member's server version and the cluster version as expected."""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

from harness.checks.result import CheckResult, text_table
from harness.checks.versions import versions_match
from harness.errors import PlanError
from harness.plan.versions import Version
from harness.probes.facts import EtcdFacts
from harness.probes.hosts import innermost_cause
from harness.text import plural


def _errors(facts: EtcdFacts, *names: str) -> str:
    return "; ".join(f"{k}: {v}" for k, v in facts.errors.items() if not names or k in names)


def check_etcd_healthy(facts: EtcdFacts, expected_members: int, nodes: Mapping[str, str] | None = None) -> CheckResult:
    """`nodes`: node name -> address, so an unhealthy endpoint is named by its node (a VM killed
    mid-upgrade showed only as `https://10.x.y.z:2379 context deadline exceeded`)."""
    name = "etcd healthy"
    if not facts.health:
        why = _errors(facts, "health", "etcd")
        # etcdctl's own words (e.g. "connection refused") belong in the one line a CI summary shows,
        # whole: gRPC's wrapping (~200 characters) used to push an x509 cause past a cut.
        return CheckResult.fail(name, f"no health answer from etcd via {facts.queried_from or 'any node'}"
                                + (f": {_cause(why)}" if why else ""), why)
    bad = [h for h in facts.health if not h.healthy]
    if bad:
        by_address = {addr: node for node, addr in (nodes or {}).items() if addr}
        named = [by_address.get(_host(h.endpoint), _host(h.endpoint)) for h in bad]
        rows = [(n, h.endpoint, h.error or "unhealthy") for n, h in zip(named, bad, strict=True)]
        each = ", ".join(f"{n} ({_cause(h.error or 'unhealthy')})" for n, h in zip(named, bad, strict=True))
        return CheckResult.fail(name, f"{len(bad)} of {plural(len(facts.health), 'etcd endpoint')} unhealthy: {each}",
                                text_table(("member", "endpoint", "error"), rows))
    if len(facts.health) < expected_members:
        return CheckResult.fail(name, f"only {len(facts.health)} of {plural(expected_members, 'etcd member')} answered")
    return CheckResult.ok(name, f"{len(facts.health)} etcd endpoint(s) healthy")


def _cause(error: str) -> str:
    """An error's first line as its cause: gRPC's innermost, without the wrapping that precedes it."""
    return innermost_cause(error.splitlines()[0]) if error.strip() else error


def _host(url: str) -> str:
    return urlsplit(url).hostname or url


def check_etcd_members(facts: EtcdFacts, expected: Mapping[str, str]) -> CheckResult:
    """Every etcd node (name -> address) is a started member, and nothing else is.

    Members are matched to nodes by the address in their peer URLs, not by name: Kubespray names
    members etcd1, etcd2, ... (or `etcd_member_name`), not after hosts. A member added but never
    started has no name and no client URLs."""
    name = "etcd members"
    if not facts.members:
        why = _errors(facts, "members", "etcd")
        return CheckResult.fail(name, "no member list from etcd" + (f": {_cause(why)}" if why else ""), why)
    node_of = {addr: node for node, addr in expected.items()}
    matched: dict[str, str] = {}
    extra: list[str] = []
    for m in facts.members:
        nodes = {node_of[h] for h in map(_host, m.peer_urls) if h in node_of}
        label = m.name or f"(unstarted {m.id})"
        if not nodes:
            extra.append(f"{label} {', '.join(m.peer_urls)}")
        for n in nodes:
            matched[n] = label if m.name and m.client_urls else f"{label} (not started)"
    missing = [n for n in sorted(expected) if n not in matched]
    unstarted = [f"{n}: {v}" for n, v in sorted(matched.items()) if v.endswith("(not started)")]
    rows = [(n, expected[n], matched.get(n, "-")) for n in sorted(expected)]
    details = text_table(("node", "address", "member"), rows) + (f"\nmembers on no etcd node of the inventory: {'; '.join(extra)}" if extra else "")
    if missing or extra or unstarted:
        parts = [f"missing {', '.join(missing)}"] if missing else []
        parts += [f"not started {', '.join(unstarted)}"] if unstarted else []
        parts += [f"unexpected {', '.join(extra)}"] if extra else []
        return CheckResult.fail(name, "etcd member list differs: " + "; ".join(parts), details)
    return CheckResult.ok(name, "members " + ", ".join(f"{matched[n]}={n}" for n in sorted(expected)), details)


def check_etcd_member_versions(facts: EtcdFacts, expected: str, nodes: Mapping[str, str] | None = None) -> CheckResult:
    """Each member's own server version (from `endpoint status --cluster`), named by node when its
    address is one of `nodes` (name -> address), else by member name."""
    name = "etcd member versions"
    node_of = {addr: node for node, addr in (nodes or {}).items()}
    by_url = {u: m.name for m in facts.members for u in m.client_urls}

    def label(url: str) -> str:
        return node_of.get(_host(url)) or by_url.get(url) or url

    if not facts.member_versions:
        return CheckResult.fail(name, "no member reported its version", _errors(facts, "status", "etcd"))
    rows = [(label(ep), "etcd", expected, v) for ep, v in sorted(facts.member_versions.items())
            if not versions_match(expected, v)]
    unreported = [m for m in facts.members if not any(u in facts.member_versions for u in m.client_urls)]
    rows += [(label(m.client_urls[0]) if m.client_urls else m.name or m.id, "etcd", expected, "no status")
             for m in unreported]
    if rows:
        return CheckResult.fail(name, f"{len(rows)} etcd member(s) not at {expected}: "
                                + ", ".join(f"{r[0]} runs {r[3]}" for r in rows),
                                text_table(("member", "component", "expected", "observed"), rows), rows)
    return CheckResult.ok(name, f"{len(facts.member_versions)} member(s) at {expected}")


def check_etcd_cluster_version(facts: EtcdFacts, expected: str) -> CheckResult:
    """The cluster version is MAJOR.MINOR.0 and moves only once every member runs the new minor."""
    name = "etcd cluster version"
    if facts.cluster_version is None:
        return CheckResult.fail(name, "etcd's /version gave no cluster version", _errors(facts, "version"))
    try:
        ok = Version.parse(facts.cluster_version).minor_line == Version.parse(expected).minor_line
    except PlanError as e:
        return CheckResult.fail(name, str(e))
    if not ok:
        want = "{}.{}.0".format(*Version.parse(expected).minor_line)
        return CheckResult.fail(name, f"cluster version {facts.cluster_version}, expected {want}",
                                "a member still runs the old minor, or the cluster has not finished converging")
    return CheckResult.ok(name, f"cluster version {facts.cluster_version}")
