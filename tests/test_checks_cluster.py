"""etcd, certificate, unit and planted-state checks: pass and fail."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

from harness.checks.certs import check_certs
from harness.checks.etcd import (
    check_etcd_cluster_version,
    check_etcd_healthy,
    check_etcd_member_versions,
    check_etcd_members,
)
from harness.checks.state import PlantedState, check_planted_state, digest
from harness.checks.units import check_units
from harness.probes.facts import CertExpiry, EtcdEndpointHealth, EtcdFacts, EtcdMember, HostFacts, StateFacts, UnitState

URLS = {n: f"https://10.0.0.{i}:2379" for i, n in enumerate(("node1", "node2", "node3"), 1)}
ADDRESSES = {n: f"10.0.0.{i}" for i, n in enumerate(("node1", "node2", "node3"), 1)}


def _etcd(versions: dict[str, str], cluster: str = "3.5.0", unhealthy: str | None = None,
          names: tuple[str, ...] = ("node1", "node2", "node3")) -> EtcdFacts:
    return EtcdFacts(
        queried_from="node1",
        health=tuple(EtcdEndpointHealth(URLS[n], n != unhealthy, "context deadline exceeded" if n == unhealthy else None)
                     for n in names),
        # Kubespray names members etcd1, etcd2, ... by their place in the etcd group.
        members=tuple(EtcdMember(f"{i:x}", f"etcd{n[-1]}", (URLS[n].replace("2379", "2380"),), (URLS[n],))
                      for i, n in enumerate(names)),
        member_versions={URLS[n]: v for n, v in versions.items()},
        cluster_version=cluster,
    )


def test_etcd_all_good() -> None:
    f = _etcd({"node1": "3.5.16", "node2": "3.5.16", "node3": "3.5.16"})
    assert check_etcd_healthy(f, 3).passed
    r = check_etcd_members(f, ADDRESSES)
    assert r.passed and "etcd1=node1" in r.summary  # matched by address: Kubespray names members etcdN
    assert check_etcd_member_versions(f, "v3.5.16").passed
    assert check_etcd_cluster_version(f, "3.5.16").passed


def test_etcd_failures() -> None:
    f = _etcd({"node1": "3.5.16", "node2": "3.4.23"}, cluster="3.4.0", unhealthy="node3")
    r = check_etcd_healthy(f, 3)
    assert not r.passed and "https://10.0.0.3:2379" in r.details and "deadline" in r.details
    r = check_etcd_healthy(f, 3, ADDRESSES)  # with the inventory: the node is named, in the one line too
    # ... with its cause beside it: the one line a CI summary shows says why, not only who.
    assert r.summary == "1 of 3 etcd endpoints unhealthy: node3 (context deadline exceeded)"
    assert "node3" in r.details and "https://10.0.0.3:2379" in r.details
    r = check_etcd_member_versions(f, "3.5.16", ADDRESSES)
    assert not r.passed and ("node2", "etcd", "3.5.16", "3.4.23") in r.rows and ("node3", "etcd", "3.5.16", "no status") in r.rows
    assert "node2 runs 3.4.23" in r.summary
    assert ("etcd2", "etcd", "3.5.16", "3.4.23") in check_etcd_member_versions(f, "3.5.16").rows  # no inventory: member names
    r = check_etcd_cluster_version(f, "3.5.16")
    assert not r.passed and "expected 3.5.0" in r.summary
    r = check_etcd_members(_etcd({}, names=("node1", "node2")), ADDRESSES)
    assert not r.passed and "missing node3" in r.summary


def test_etcd_members_matched_by_peer_address() -> None:
    f = _etcd({})
    stranger = EtcdMember("ff", "etcd9", ("https://10.0.0.9:2380",), ("https://10.0.0.9:2379",))
    unstarted = EtcdMember("aa", "", ("https://10.0.0.3:2380",), ())
    r = check_etcd_members(dataclasses.replace(f, members=(*f.members, stranger)), ADDRESSES)
    assert not r.passed and "unexpected etcd9 https://10.0.0.9:2380" in r.summary
    r = check_etcd_members(dataclasses.replace(f, members=(*f.members[:2], unstarted)), ADDRESSES)
    assert not r.passed and "not started node3" in r.summary
    # The same members, named after hosts instead (etcd_member_name): still matched.
    assert check_etcd_members(_etcd({}), {"node1": "10.0.0.1", "node2": "10.0.0.2", "node3": "10.0.0.3"}).passed
    assert not check_etcd_healthy(_etcd({}, names=("node1", "node2")), 3).passed
    assert not check_etcd_healthy(EtcdFacts("node1", errors={"health": "rc=1: no JSON"}), 1).passed


def test_certs() -> None:
    now = datetime(2025, 1, 15, tzinfo=UTC)
    good = HostFacts("cp1", ("control-plane",), certs={"/etc/kubernetes/ssl/apiserver.crt": CertExpiry(
        "/etc/kubernetes/ssl/apiserver.crt", now + timedelta(days=365))})
    assert check_certs([good], 30, now).passed
    soon = HostFacts("node1", ("etcd",), certs={
        "/etc/ssl/etcd/ssl/member-node1.pem": CertExpiry("/etc/ssl/etcd/ssl/member-node1.pem", now + timedelta(days=5)),
        "/etc/ssl/etcd/ssl/ca.pem": CertExpiry("/etc/ssl/etcd/ssl/ca.pem", None, "Unable to load certificate")})
    r = check_certs([good, soon], 30, now)
    assert not r.passed and "member-node1.pem" in r.details and "5 days left" in r.details and "unreadable" in r.details
    assert check_certs([soon], 3, now).passed is False  # the unreadable one still fails
    assert not check_certs([HostFacts("x", ())], 30, now).passed  # no certificate at all is suspicious


def test_units() -> None:
    ok = HostFacts("n1", ("etcd",), units={"etcd": UnitState("etcd", True, True, True)})
    assert check_units([ok]).passed
    bad = HostFacts("n2", ("etcd",), units={"etcd": UnitState("etcd", True, True, False),
                                            "containerd": UnitState("containerd", False, False, False)})
    r = check_units([ok, bad])
    assert not r.passed and "disabled" in r.details and "not installed" in r.details
    assert not check_units([HostFacts("n", ())]).applicable


def test_planted_state() -> None:
    planted = PlantedState(etcd_keys={"/harness/sentinel": "hello"}, configmaps={"default/planted": {"k": "v"}},
                           secret_digests={"default/planted": {"password": digest("hunter2")}},
                           canary_data={"default/canary:/data/x": "42"})
    same = StateFacts(etcd_keys={"/harness/sentinel": "hello"}, configmaps={"default/planted": {"k": "v"}},
                      secret_digests={"default/planted": {"password": digest("hunter2")}},
                      canary_data={"default/canary:/data/x": "42"})
    assert check_planted_state(planted, same).passed
    lost = StateFacts(etcd_keys={"/harness/sentinel": None}, configmaps={"default/planted": {"k": "w"}},
                      secret_digests={"default/planted": {"password": digest("changed")}}, canary_data={})
    r = check_planted_state(planted, lost)
    assert not r.passed and r.summary.startswith("4 planted item(s)")
    assert "/harness/sentinel" in r.details and "default/planted:k" in r.details and "differs" in r.details
    assert digest("hunter2") not in r.details and digest("changed") not in r.details
    assert not check_planted_state(PlantedState(), same).applicable
