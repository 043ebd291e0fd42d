"""etcd: every member healthy and listed, every member's server version and the cluster version as expected."""

from __future__ import annotations

from collections.abc import Iterable

from harness.checks.result import CheckResult, text_table
from harness.errors import PlanError
from harness.plan.versions import Version
from harness.probes.facts import EtcdFacts
from harness.checks.versions import versions_match


def _errors(facts: EtcdFacts, *names: str) -> str:
    return "; ".join(f"{k}: {v}" for k, v in facts.errors.items() if not names or k in names)


def check_etcd_healthy(facts: EtcdFacts, expected_members: int) -> CheckResult:
    name = "etcd healthy"
    if not facts.health:
        return CheckResult.fail(name, f"no health answer from etcd via {facts.queried_from or 'any node'}",
                                _errors(facts, "health", "etcd"))
    bad = [h for h in facts.health if not h.healthy]
    if bad:
        rows = [(h.endpoint, h.error or "unhealthy") for h in bad]
        return CheckResult.fail(name, f"{len(bad)} of {len(facts.health)} etcd endpoint(s) unhealthy",
                                text_table(("endpoint", "error"), rows))
    if len(facts.health) < expected_members:
        return CheckResult.fail(name, f"only {len(facts.health)} of {expected_members} etcd members answered")
    return CheckResult.ok(name, f"{len(facts.health)} etcd endpoint(s) healthy")


def check_etcd_members(facts: EtcdFacts, expected_names: Iterable[str]) -> CheckResult:
    """Every etcd node is a started member (a member added but never started has no name)."""
    name = "etcd members"
    want = sorted(set(expected_names))
    if not facts.members:
        return CheckResult.fail(name, "no member list from etcd", _errors(facts, "members", "etcd"))
    have = sorted(m.name for m in facts.members)
    missing = [n for n in want if n not in have]
    extra = [n or f"(unstarted {m.id})" for m in facts.members for n in [m.name] if n not in want]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(missing)}")
        if extra:
            parts.append(f"unexpected {', '.join(extra)}")
        return CheckResult.fail(name, "etcd member list differs: " + "; ".join(parts),
                                f"expected {', '.join(want)}; listed {', '.join(have)}")
    return CheckResult.ok(name, f"members {', '.join(have)}")


def check_etcd_member_versions(facts: EtcdFacts, expected: str) -> CheckResult:
    """Each member's own server version (from `endpoint status --cluster`), named by member."""
    name = "etcd member versions"
    by_url = {u: m.name for m in facts.members for u in m.client_urls}
    if not facts.member_versions:
        return CheckResult.fail(name, "no member reported its version", _errors(facts, "status", "etcd"))
    rows = [(by_url.get(ep, ep), "etcd", expected, v) for ep, v in sorted(facts.member_versions.items())
            if not versions_match(expected, v)]
    unreported = [m.name for m in facts.members if not any(u in facts.member_versions for u in m.client_urls)]
    rows += [(n, "etcd", expected, "no status") for n in unreported]
    if rows:
        return CheckResult.fail(name, f"{len(rows)} etcd member(s) not at {expected}",
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
