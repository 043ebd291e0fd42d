"""Service-account token facts: read a pod's mounted token, mint one (TokenRequest), review it (TokenReview).

Tokens are secrets. They live only in `pydantic.SecretStr` (whose repr masks them) and in the
request bodies sent to the apiserver; no fact, message or error keeps them. API errors are reduced
to status and reason because a TokenReview's response body echoes the token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import SecretStr

from harness.probes.facts import PodFacts, PodTokenFacts, TokenReviewResult
from harness.probes.kube import _api_error, pod_facts, pod_settled

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# No namespace is skipped by default: after a signing-key rotation CoreDNS in kube-system held a
# stale token like any other pod, and a check that skipped kube-system passed over it.
SKIP_NAMESPACES: tuple[str, ...] = ()

TokenReader = Callable[[Any, str, str], SecretStr]


def read_pod_token(api: Any, namespace: str, pod: str) -> SecretStr:
    """The token mounted in a pod, read with exec `cat` (what the pod itself would present)."""
    from kubernetes import client
    from kubernetes.stream import stream

    out = stream(client.CoreV1Api(api).connect_get_namespaced_pod_exec, pod, namespace,
                 command=["cat", TOKEN_PATH], stderr=False, stdin=False, stdout=True, tty=False)
    token = str(out).strip()
    if not token or " " in token:
        raise ValueError("no service-account token at " + TOKEN_PATH)  # never echo what was read
    return SecretStr(token)


def mint_token(api: Any, namespace: str, service_account: str, seconds: int = 86400) -> SecretStr:
    """A TokenRequest token, minted before the upgrade to test the signing key afterwards."""
    from kubernetes import client

    body = client.AuthenticationV1TokenRequest(
        api_version="authentication.k8s.io/v1", kind="TokenRequest",
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds))
    resp = client.CoreV1Api(api).create_namespaced_service_account_token(service_account, namespace, body)
    if resp.status is None or not resp.status.token:
        raise ValueError(f"TokenRequest for {namespace}/{service_account} returned no token")
    return SecretStr(resp.status.token)


def review_token(api: Any, token: SecretStr) -> TokenReviewResult:
    """Ask the apiserver whether `token` authenticates; the answer keeps no trace of the token."""
    from kubernetes import client

    body = client.V1TokenReview(api_version="authentication.k8s.io/v1", kind="TokenReview",
                                spec=client.V1TokenReviewSpec(token=token.get_secret_value()))
    try:
        resp = client.AuthenticationV1Api(api).create_token_review(body)
    except Exception as e:  # noqa: BLE001  a review that cannot be made is a non-authenticated answer with why
        return TokenReviewResult(False, error=_api_error(e))
    finally:
        del body
    st = resp.status
    if st is None:
        return TokenReviewResult(False, error="TokenReview returned no status")
    user = st.user.username if st.user else None
    return TokenReviewResult(bool(st.authenticated), user, st.error or None)


def safe_error(e: Exception) -> str:
    return _api_error(e) if getattr(e, "status", None) is not None else f"{type(e).__name__}: {str(e)[:120]}"


def pod_token_facts(api: Any, pod: PodFacts, reader: TokenReader = read_pod_token) -> PodTokenFacts:
    """One pod's mounted token, reviewed. A static pod's mirror is recorded as such and not read:
    the kubelet projects no service-account token into static pods."""
    if pod.mirror:
        return PodTokenFacts(pod.namespace, pod.name, TokenReviewResult(False), pod.owner_kind, pod.owner_name,
                             mirror=True)
    try:
        token = reader(api, pod.namespace, pod.name)
    except Exception as e:  # noqa: BLE001  exec/stream errors vary; an unreadable token is a recorded fact
        return PodTokenFacts(pod.namespace, pod.name, TokenReviewResult(False), pod.owner_kind, pod.owner_name,
                             read_error=safe_error(e))
    return PodTokenFacts(pod.namespace, pod.name, review_token(api, token), pod.owner_kind, pod.owner_name)


def collect_pod_tokens(
    api: Any, pods: Iterable[PodFacts], reader: TokenReader = read_pod_token,
    skip_namespaces: Iterable[str] = SKIP_NAMESPACES,
) -> list[PodTokenFacts]:
    """Review the mounted token of every running pod in every namespace (kube-system included)
    but `skip_namespaces`; static (mirror) pods are listed as such, unread."""
    skip = set(skip_namespaces)
    return [pod_token_facts(api, p, reader) for p in pods if p.namespace not in skip and p.phase == "Running"]


def list_pods(api: Any, namespace: str) -> list[PodFacts]:
    from kubernetes import client

    return [pod_facts(p) for p in client.CoreV1Api(api).list_namespaced_pod(namespace).items]


def delete_pod(api: Any, namespace: str, name: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).delete_namespaced_pod(name, namespace)


def wait_for_replacement(
    api: Any, stale: PodTokenFacts, exclude: set[str], timeout: float, interval: float,
    clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
) -> PodFacts | None:
    """A settled pod of the same controller whose UID is not in `exclude` (pods that existed before the
    deletions, and replacements already claimed for other stale pods of the same controller)."""
    start = clock()
    while True:
        for p in list_pods(api, stale.namespace):
            same_owner = p.owner_kind == stale.owner_kind and p.owner_name == stale.owner_name
            if same_owner and not p.mirror and p.uid not in exclude and pod_settled(p):
                return p
        if clock() - start >= timeout:
            return None
        sleep(interval)
