"""Service-account token facts: read a pod's mounted token, mint one (TokenRequest), review it (TokenReview).

Tokens are secrets. They live only in `pydantic.SecretStr` (whose repr masks them) and in the
request bodies sent to the apiserver; no fact, message or error keeps them. API errors are reduced
to status and reason because a TokenReview's response body echoes the token.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable, Iterable
from typing import Any

from pydantic import SecretStr

from harness.probes.facts import PodFacts, PodTokenFacts, TokenReviewResult
from harness.probes.kube import api_error, pod_facts, pod_settled

TOKEN_PATH = "/var/run/secrets/kubernetes.io/serviceaccount/token"
# No namespace is skipped by default: after a signing-key rotation CoreDNS in kube-system held a
# stale token like any other pod, and a check that skipped kube-system passed over it.
SKIP_NAMESPACES: tuple[str, ...] = ()

KUBELET_ROOT = "/var/lib/kubelet"  # Kubespray's kubelet root dir (`kubelet_root`)

TokenReader = Callable[[Any, str, str], SecretStr]
NodeRunner = Callable[[str, str], str]  # (node, shell command) -> stdout; raises when the command fails


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


def read_token_on_node(api: Any, namespace: str, pod: str, run_on_node: NodeRunner,
                       kubelet_root: str = KUBELET_ROOT) -> SecretStr:
    """The token file the kubelet projects for a pod, read on the pod's node: the same bytes the
    pod presents, readable whatever the image (CoreDNS and kube-proxy images have no `cat`)."""
    from kubernetes import client

    facts = pod_facts(client.CoreV1Api(api).read_namespaced_pod(pod, namespace))
    if not facts.node or not facts.token_file:
        raise ValueError(f"{namespace}/{pod} mounts no projected service-account token")
    volume, _, name = facts.token_file.partition("/")
    path = f"{kubelet_root}/pods/{facts.uid}/volumes/kubernetes.io~projected/{volume}/{name}"
    token = run_on_node(facts.node, f"sudo cat {shlex.quote(path)}").strip()
    if not token or any(c.isspace() for c in token):
        raise ValueError(f"no service-account token at {path} on {facts.node}")  # never echo what was read
    return SecretStr(token)


def token_reader(run_on_node: NodeRunner | None = None, kubelet_root: str = KUBELET_ROOT) -> TokenReader:
    """exec `cat` in the pod, then, when that fails and nodes can be reached, the file on the node.

    Without `run_on_node` a pod whose image has no `cat` (CoreDNS, kube-proxy: distroless) stays
    unreadable, which the check reports as unknown, never as fine."""
    if run_on_node is None:
        return read_pod_token
    runner = run_on_node

    def read(api: Any, namespace: str, pod: str) -> SecretStr:
        try:
            return read_pod_token(api, namespace, pod)
        except Exception as in_pod:  # noqa: BLE001  exec errors vary (no cat, no shell, 403)
            try:
                return read_token_on_node(api, namespace, pod, runner, kubelet_root)
            except Exception as on_node:  # noqa: BLE001  reported with both causes below
                raise TokenReadError(f"exec: {safe_error(in_pod)}; on the node: {safe_error(on_node)}") from None

    return read


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
        return TokenReviewResult(False, error=api_error(e))
    finally:
        del body
    st = resp.status
    if st is None:
        return TokenReviewResult(False, error="TokenReview returned no status")
    user = st.user.username if st.user else None
    return TokenReviewResult(bool(st.authenticated), user, st.error or None)


class TokenReadError(ValueError):
    """Why a token could not be read, already reduced to safe text (no token, no response body)."""


def safe_error(e: Exception) -> str:
    """An error as short text without a response body. websocket-client appends the response
    headers after " -+-+- " on a failed exec handshake: dropped."""
    if isinstance(e, TokenReadError):
        return str(e)
    if getattr(e, "status", None) is not None:
        return api_error(e)
    text = str(e).split(" -+-+- ", 1)[0].splitlines()[0] if str(e) else ""
    return f"{type(e).__name__}: {text[:160]}"


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
    api: Any, pods: Iterable[PodFacts], reader: TokenReader | None = None,
    skip_namespaces: Iterable[str] = SKIP_NAMESPACES, run_on_node: NodeRunner | None = None,
) -> list[PodTokenFacts]:
    """Review the mounted token of every running pod in every namespace (kube-system included)
    but `skip_namespaces`; static (mirror) pods are listed as such, unread. `run_on_node` lets
    tokens that exec cannot read be read on their node (see `token_reader`)."""
    read = reader or token_reader(run_on_node)
    skip = set(skip_namespaces)
    return [pod_token_facts(api, p, read) for p in pods if p.namespace not in skip and p.phase == "Running"]


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
