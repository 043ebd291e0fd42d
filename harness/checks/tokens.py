"""Service-account tokens survive the upgrade, or, after a signing-key rotation, stale ones are named and fixed.

When kubeadm's `sa.key` changes, every token signed with the old key stops authenticating; pods keep
their stale tokens until deleted (kubespray#1573, #10946), in kube-system too (CoreDNS was found
stale on a real cluster). The remedy is to delete each such pod so its controller recreates it with
a fresh token; `fix_stale_tokens` does that and checks the result. Static pods are named, never
deleted: the kubelet projects no token into them, and deleting a mirror pod recreates nothing.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import PodTokenFacts, TokenReviewResult
from harness.probes.tokens import (
    NodeRunner,
    TokenReader,
    delete_pod,
    list_pods,
    pod_token_facts,
    safe_error,
    token_reader,
    wait_for_replacement,
)

REMEDY = ("delete each listed pod so its controller recreates it with a fresh token"
          " (kubectl delete pod -n NAMESPACE NAME), or run verify --fix-stale-tokens")


def stale_pods(tokens: Iterable[PodTokenFacts]) -> list[PodTokenFacts]:
    """Pods whose mounted token was read and rejected (unreadable tokens are unknown, not stale;
    static pods have none)."""
    return [t for t in tokens if not t.mirror and t.read_error is None and not t.review.authenticated]


def _notes(tokens: Sequence[PodTokenFacts]) -> str:
    """What was not reviewed, named rather than dropped: static pods and unreadable tokens."""
    mirrors = [t.key for t in tokens if t.mirror]
    unread = [f"{t.key} ({t.read_error})" for t in tokens if not t.mirror and t.read_error is not None]
    parts = [f"{len(mirrors)} static pod(s) carry no service-account token: {', '.join(mirrors)}"] if mirrors else []
    parts += [f"{len(unread)} token(s) unreadable (unknown, not stale): {'; '.join(unread)}"] if unread else []
    return "; ".join(parts)


def check_pod_tokens(tokens: Sequence[PodTokenFacts], rotated: bool = False) -> CheckResult:
    """Every running pod, in every namespace (kube-system included), still authenticates with its
    mounted token. Static (mirror) pods have no projected token: they are named, not judged."""
    name = "pod service-account tokens"
    readable = [t for t in tokens if not t.mirror and t.read_error is None]
    notes = _notes(tokens)
    if not readable:
        return CheckResult.not_applicable(name, "no pod token could be read" + (f": {notes}" if notes else ""))
    stale = stale_pods(readable)
    namespaces = ", ".join(sorted({t.namespace for t in readable}))
    if stale:
        why = "the service-account signing key was rotated" if rotated else "tokens stopped authenticating"
        rows = [(t.namespace, t.pod, t.review.error or "not authenticated") for t in stale]
        return CheckResult.fail(
            name, f"{len(stale)} of {len(readable)} pod(s) hold a token that no longer authenticates ({why})",
            text_table(("namespace", "pod", "review"), rows) + f"\nremedy: {REMEDY}" + (f"\n{notes}" if notes else ""))
    return CheckResult.ok(name, f"{len(readable)} pod token(s) authenticate (namespaces {namespaces})", notes)


def check_pre_upgrade_token(review: TokenReviewResult | None, rotates_sa_key: bool) -> CheckResult:
    """A token minted before the upgrade still authenticates, unless the scenario rotates the signing key."""
    name = "pre-upgrade token"
    if review is None:
        return CheckResult.not_applicable(name, "no token was minted before the upgrade")
    if rotates_sa_key:
        outcome = "still authenticates (old public key still trusted)" if review.authenticated else "is rejected"
        return CheckResult.not_applicable(name, f"the scenario rotates the signing key; the old token {outcome}")
    if not review.authenticated:
        return CheckResult.fail(name, "a token minted before the upgrade no longer authenticates although the"
                                " scenario does not rotate the signing key (sa.key changed?)",
                                review.error or "")
    return CheckResult.ok(name, f"pre-upgrade token authenticates as {review.username or 'its service account'}")


def fix_stale_tokens(
    api: Any,
    stale: Sequence[PodTokenFacts],
    reader: TokenReader | None = None,
    timeout: float = 300,
    interval: float = 5,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    run_on_node: NodeRunner | None = None,
) -> CheckResult:
    """Delete each stale pod, wait for its controller's replacement, and check the new token authenticates.

    Covers every namespace, kube-system included, but only pods a controller recreates: never a
    static pod's mirror (owned by its Node; deleting it recreates the same mirror, token-less).
    Pods go one at a time, each replaced before the next is deleted, so a controller such as
    CoreDNS never loses all its replicas at once."""
    from kubernetes.client.exceptions import ApiException

    name = "fix stale tokens"
    if not stale:
        return CheckResult.not_applicable(name, "no stale token to fix")
    read = reader or token_reader(run_on_node)  # replacements are read the way the check read them
    rows: list[tuple[str, str, str]] = []
    done: list[tuple[str, str]] = []  # (stale pod, its replacement), named in the verdict
    fixed = 0
    for ns in sorted({t.namespace for t in stale}):
        existing = {p.uid for p in list_pods(api, ns)}  # none of these can be a replacement
        for t in (t for t in stale if t.namespace == ns):
            if t.mirror or t.owner_kind == "Node":
                rows.append((t.key, "-", "a static pod (mirror): not deleted; its token is not projected"))
                continue
            if not t.owner_kind:
                rows.append((t.key, "-", "no controller would recreate it: recreate it by hand"))
                continue
            try:
                delete_pod(api, ns, t.pod)
            except ApiException as e:  # the pod may be gone already; say so and go on with the others
                rows.append((t.key, "-", f"delete failed: {safe_error(e)}"))
                continue
            new = wait_for_replacement(api, t, existing, timeout, interval, clock, sleep)
            if new is None:
                rows.append((t.key, "-", f"no Ready replacement from {t.owner_kind}/{t.owner_name} within {timeout:.0f}s"))
                continue
            existing.add(new.uid)
            review = pod_token_facts(api, new, read)
            if review.read_error or not review.review.authenticated:
                rows.append((t.key, new.key, review.read_error or review.review.error or "still not authenticated"))
            else:
                fixed += 1
                done.append((t.key, new.key))
    if rows:
        return CheckResult.fail(name, f"{len(rows)} of {len(stale)} stale pod(s) not fixed",
                                text_table(("stale pod", "replacement", "problem"), rows))
    return CheckResult.ok(name, f"{fixed} pod(s) recreated; their fresh tokens authenticate",
                          text_table(("stale pod", "replacement"), done))
