"""Service-account token probes, checks and the stale-token fixer, against the real client and a local apiserver."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures.k8s.fixture_server import FakeApiserver, deserialize, load
from pydantic import SecretStr

from harness.checks import tokens as checks
from harness.probes import tokens as probe
from harness.probes.facts import PodTokenFacts, TokenReviewResult, to_json
from harness.probes.kube import api_client, pod_facts

GOOD = "eyJhbGciOiJSUzI1NiJ9.good-signature"  # shaped like a JWT; the fake apiserver accepts "good"
STALE = "eyJhbGciOiJSUzI1NiJ9.old-key-signature"


def _review(body: dict[str, Any] | None) -> tuple[int, Any]:
    assert body is not None and body["apiVersion"] == "authentication.k8s.io/v1" and body["kind"] == "TokenReview"
    token = body["spec"]["token"]
    out = load("tokenreview-authenticated" if "good" in token else "tokenreview-rejected")
    out["spec"]["token"] = token  # a real apiserver echoes the token back: the code must drop it
    return 201, out


@pytest.fixture
def server() -> Iterator[FakeApiserver]:
    with FakeApiserver() as s:
        s.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = _review
        yield s


def _canary_pod(name: str = "canary-7d9c6b8f5d-x2k4q", uid: str = "0d4e8b6a-9c1f-4a2b-8e3d-7f6a5b4c3d2e") -> dict[str, Any]:
    pod = copy.deepcopy(next(p for p in load("podlist")["items"] if p["metadata"]["namespace"] == "default"))
    pod["metadata"].update(name=name, uid=uid)
    return pod


def test_review_token_and_no_leak(server: FakeApiserver) -> None:
    with api_client(server.config()) as api:
        ok = probe.review_token(api, SecretStr(GOOD))
        bad = probe.review_token(api, SecretStr(STALE))
    assert ok == TokenReviewResult(True, "system:serviceaccount:default:default", None)
    assert bad.authenticated is False and "invalid bearer token" in (bad.error or "")
    for obj in (ok, bad):
        assert GOOD not in repr(obj) + to_json(obj) and STALE not in repr(obj) + to_json(obj)


def test_review_error_is_status_only(server: FakeApiserver) -> None:
    server.routes[("POST", "/apis/authentication.k8s.io/v1/tokenreviews")] = lambda body: (
        403, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Forbidden",
              "message": f"echo {body['spec']['token']}", "code": 403})
    with api_client(server.config()) as api:
        r = probe.review_token(api, SecretStr(GOOD))
    assert r.authenticated is False and r.error == "HTTP 403 Forbidden"
    assert GOOD not in repr(r)


def test_mint_token_is_masked(server: FakeApiserver) -> None:
    server.routes[("POST", "/api/v1/namespaces/default/serviceaccounts/default/token")] = lambda body: (
        201, load("tokenrequest"))
    with api_client(server.config()) as api:
        tok = probe.mint_token(api, "default", "default", 3600)
    assert tok.get_secret_value() == "fixture-dummy-token-not-a-jwt"
    assert "fixture-dummy" not in repr(tok) and "fixture-dummy" not in str(tok)
    assert b'"expirationSeconds": 3600' in server.bodies[-1]


def _reader(tokens: dict[str, str]) -> probe.TokenReader:
    def read(api: Any, ns: str, pod: str) -> SecretStr:
        if pod not in tokens:
            raise RuntimeError("command terminated with non-zero exit code: cat: no such file")
        return SecretStr(tokens[pod])
    return read


def _facts(pods: list[dict[str, Any]]) -> list[Any]:
    return [pod_facts(p) for p in deserialize({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": pods},
                                              "V1PodList").items]


def test_collect_covers_kube_system_and_checks_pass(server: FakeApiserver) -> None:
    pods = _facts(load("podlist")["items"])
    readable = ["coredns-5c54f84c97-7xq2m", "kube-proxy-4vj8n", "kube-proxy-wq7tz", "canary-7d9c6b8f5d-x2k4q"]
    with api_client(server.config()) as api:
        facts = probe.collect_pod_tokens(api, pods, _reader(dict.fromkeys(readable, GOOD)))
    assert [f.pod for f in facts if not f.mirror] == readable
    assert sorted(f.pod for f in facts if f.mirror) == [
        "kube-apiserver-cp1", "kube-controller-manager-cp1", "kube-scheduler-cp1"]
    r = checks.check_pod_tokens(facts)
    assert r.passed and r.summary == "4 pod token(s) authenticate (namespaces default, kube-system)"
    assert "3 static pod(s) carry no service-account token" in r.details
    # Skipping stays possible when asked for by name.
    with api_client(server.config()) as api:
        only = probe.collect_pod_tokens(api, pods, _reader(dict.fromkeys(readable, GOOD)), skip_namespaces=["kube-system"])
    assert [f.key for f in only] == ["default/canary-7d9c6b8f5d-x2k4q"]


def test_stale_tokens_listed_with_remedy(server: FakeApiserver) -> None:
    pods = _facts([_canary_pod(), _canary_pod("canary-7d9c6b8f5d-b9z1w", "1e5f9c7b-0d2a-4b3c-9f4e-8a7b6c5d4e3f"),
                   _canary_pod("no-sa-token", "2f6a0d8c-1e3b-4c4d-8a5f-9b8c7d6e5f4a")])
    with api_client(server.config()) as api:
        facts = probe.collect_pod_tokens(api, pods, _reader({"canary-7d9c6b8f5d-x2k4q": STALE,
                                                             "canary-7d9c6b8f5d-b9z1w": GOOD}))
    r = checks.check_pod_tokens(facts, rotated=True)
    assert not r.passed
    assert "canary-7d9c6b8f5d-x2k4q" in r.details and "canary-7d9c6b8f5d-b9z1w" not in r.details
    # Unreadable is unknown, not stale: named as such, not among the stale rows.
    assert "1 token(s) unreadable (unknown, not stale): default/no-sa-token" in r.details
    assert "1 of 2 pod(s)" in r.summary
    assert "delete each listed pod" in r.details and "rotated" in r.summary
    assert STALE not in r.message and GOOD not in r.message
    assert [t.pod for t in checks.stale_pods(facts)] == ["canary-7d9c6b8f5d-x2k4q"]


def test_no_readable_token_is_not_applicable() -> None:
    facts = [PodTokenFacts("default", "p", TokenReviewResult(False), read_error="RuntimeError: cat failed")]
    r = checks.check_pod_tokens(facts)
    assert not r.applicable and not r.passed


def test_pre_upgrade_token() -> None:
    assert checks.check_pre_upgrade_token(TokenReviewResult(True, "system:serviceaccount:default:default"), False).passed
    r = checks.check_pre_upgrade_token(TokenReviewResult(False, error="invalid bearer token"), False)
    assert not r.passed and "sa.key" in r.summary
    assert not checks.check_pre_upgrade_token(TokenReviewResult(False), True).applicable
    assert not checks.check_pre_upgrade_token(None, False).applicable


def test_fix_stale_tokens_deletes_and_verifies(server: FakeApiserver) -> None:
    old = _canary_pod()
    new = _canary_pod("canary-7d9c6b8f5d-q8r5t", "3a7b1e9d-2f4c-4d5e-9b6a-0c9d8e7f6a5b")
    state = {"pods": [old]}

    def delete(_body: Any) -> tuple[int, Any]:
        state["pods"] = [new]  # the ReplicaSet replaces the deleted pod
        return 200, old

    server.routes[("GET", "/api/v1/namespaces/default/pods")] = lambda _b: (
        200, {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"}, "items": state["pods"]})
    server.routes[("DELETE", "/api/v1/namespaces/default/pods/canary-7d9c6b8f5d-x2k4q")] = delete
    stale = [PodTokenFacts("default", "canary-7d9c6b8f5d-x2k4q", TokenReviewResult(False), "ReplicaSet",
                           "canary-7d9c6b8f5d")]
    with api_client(server.config()) as api:
        r = checks.fix_stale_tokens(api, stale, _reader({"canary-7d9c6b8f5d-q8r5t": GOOD}), timeout=5, interval=0.01)
    assert r.passed, r.message
    assert ("DELETE", "/api/v1/namespaces/default/pods/canary-7d9c6b8f5d-x2k4q", "") in server.requests


def test_fix_stale_tokens_reports_failures(server: FakeApiserver) -> None:
    old = _canary_pod()
    bare = _canary_pod("bare", "4b8c2f0e-3a5d-4e6f-8c7b-1d0e9f8a7b6c")
    bare["metadata"].pop("ownerReferences")
    server.routes[("GET", "/api/v1/namespaces/default/pods")] = lambda _b: (
        200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [old, bare]})
    server.routes[("DELETE", "/api/v1/namespaces/default/pods/canary-7d9c6b8f5d-x2k4q")] = lambda _b: (200, old)
    stale = [PodTokenFacts("default", "canary-7d9c6b8f5d-x2k4q", TokenReviewResult(False), "ReplicaSet", "canary-7d9c6b8f5d"),
             PodTokenFacts("default", "bare", TokenReviewResult(False))]
    now = [0.0]
    with api_client(server.config()) as api:
        r = checks.fix_stale_tokens(api, stale, _reader({}), timeout=10, interval=5, clock=lambda: now[0],
                                    sleep=lambda s: now.__setitem__(0, now[0] + s))
    assert not r.passed
    assert "no Ready replacement" in r.details and "recreate it by hand" in r.details
    assert not any(m == "DELETE" and p.endswith("/bare") for m, p, _ in server.requests)
