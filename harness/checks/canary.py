"""The container canary survives the container-engine upgrade: the container plant.yml started with
ctr on each containerd node is still RUNNING with the PID it had when planted. containerd restarts
with KillMode=process, so the task's shim (and the task) must outlive it; a restarted or vanished
container means the upgrade killed the workloads on the node."""

from __future__ import annotations

from collections.abc import Iterable

from harness.checks.result import CheckResult, text_table
from harness.probes.facts import CanaryFacts, HostFacts

NAME = "container canary"


def _pid(pid: int | None) -> str:
    return f"PID {pid}" if pid is not None else "no PID"


def _now(c: CanaryFacts) -> str:
    if c.error is not None:
        return "unreadable"
    if c.status is None:
        return "no task"
    return f"{c.status} {_pid(c.pid)}"


def _judge_node(node: str, c: CanaryFacts | None, require_planted: bool) -> tuple[str, str | None]:
    """One node -> ("ok" | "n/a" | "fail", the line that says why; None for ok)."""
    if c is None:
        return "fail", f"{node}: the host probe did not report the canary"
    if c.planted is None:
        if not c.ctr:
            return "n/a", f"{node}: no ctr (no containerd)"
        if require_planted:
            said = f" ({c.error})" if c.error else ""
            return "fail", f"{node}: ctr is there but no canary container was planted (no plant record on the node){said}"
        return "n/a", f"{node}: no canary planted" + (f" ({c.error})" if c.error else "")
    if c.planted != "running":
        return "fail", f"{node}: the canary could not be planted: {c.planted_reason or c.planted}"
    before = f"planted as {_pid(c.planted_pid)}"
    if c.error is not None:
        return "fail", f"{node}: the canary's state could not be read ({before}): {c.error}"
    if c.status is None:
        return "fail", f"{node}: the canary container vanished ({before}, ctr lists no task now)"
    if c.status != "RUNNING":
        return "fail", f"{node}: the canary is {c.status} ({before}, now {_pid(c.pid)})"
    if c.pid != c.planted_pid:
        return "fail", f"{node}: the canary restarted ({before}, RUNNING as {_pid(c.pid)} now)"
    return "ok", None


def check_container_canary(hosts: Iterable[HostFacts], require_planted: bool = False) -> CheckResult:
    """Per node: the planted canary RUNNING with its planted PID. A node without ctr is n/a (named in
    the summary); an unreachable node fails in its probe's one line. `require_planted`: a node with
    ctr but no plant record fails (an upgrade run planted one everywhere ctr was), else it is n/a."""
    fails: list[str] = []
    skipped: list[str] = []
    kept: list[str] = []
    rows: list[tuple[str, str, str]] = []
    for h in hosts:
        if h.error is not None:
            fails.append(h.error)  # nothing is known of its canary: the error is the finding
            continue
        verdict, line = _judge_node(h.node, h.canary, require_planted)
        c = h.canary
        if verdict == "fail":
            fails.append(line or h.node)
            if c is not None and c.planted == "running":
                rows.append((h.node, f"RUNNING {_pid(c.planted_pid)}", _now(c)))
        elif verdict == "n/a":
            skipped.append(line or h.node)
        else:
            assert c is not None
            shim = f", shim PID {c.shim_pid}" if c.shim_pid is not None else ""
            kept.append(f"{h.node}: RUNNING {_pid(c.pid)}{shim}")
    na = f"; n/a: {'; '.join(skipped)}" if skipped else ""
    if fails:
        table = text_table(("node", "planted", "now"), rows) if rows else ""
        return CheckResult.fail(NAME, "; ".join(fails) + na, table)
    if not kept:
        return CheckResult.not_applicable(NAME, "; ".join(skipped) or "no node was probed")
    return CheckResult.ok(NAME, f"{len(kept)} canary container(s) still running with their planted PID{na}",
                          "\n".join(kept))
