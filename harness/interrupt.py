"""SIGTERM, SIGHUP and Ctrl-C stop the whole run, and the run unwinds through its cleanup.

Why this module exists: ansible-runner's `run()` installs SIGTERM/SIGINT handlers that only cancel
the playbook in flight, and never puts the previous ones back. Left alone, a killed pytest session
would cancel one playbook, record it as a failed stage, and carry on with the next scenario; and
Ctrl-C would never work again in that process.

So the entry points (pytest plugin, lab CLI) call `install()`; the runner hands `cancelled` to
ansible-runner as its cancel callback (ansible-runner then installs no handler of its own) and calls
`raise_if_requested()` when the playbook has stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any, Self

SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)

_requested = threading.Event()
_signal_name: list[str] = []
_deferring = threading.local()


class Terminated(KeyboardInterrupt):
    """A BaseException like Ctrl-C: no `except Exception` on the way up swallows it, and pytest
    ends the session and tears its fixtures (and with them the clusters) down."""


def _handler(signum: int, _frame: FrameType | None) -> None:
    _requested.set()
    _signal_name[:] = [signal.Signals(signum).name]
    if not getattr(_deferring, "active", False):
        raise Terminated(f"interrupted by {_signal_name[0]}")


def install() -> Callable[[], None]:
    """Install the handlers (main thread only; elsewhere a no-op). Returns a function restoring the previous ones."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous: dict[int, Any] = {s: signal.signal(s, _handler) for s in SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h)

    return restore


def cancelled() -> bool:
    """ansible-runner's cancel callback: true once a stop signal arrived.

    ansible-runner then SIGKILLs the process group of the ansible-playbook it spawned, but Ansible's
    workers run tasks in process groups of their own, which would outlive the run. So every process
    group below this process is signalled here, and remembered for `reap()`."""
    if not _requested.is_set():
        return False
    groups = _descendant_process_groups()
    _doomed.update(groups)
    _signal_groups(groups, signal.SIGTERM)
    return True


def reap() -> None:
    """SIGKILL what `cancelled()` signalled and is still there (reparented away from us by now)."""
    _signal_groups(_doomed, signal.SIGKILL)
    _doomed.clear()


_doomed: set[int] = set()


def _signal_groups(groups: set[int], signum: int) -> None:
    for pgid in groups:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def _descendant_process_groups() -> set[int]:
    """Process groups of every process below this one, except our own group."""
    children: dict[int, list[int]] = {}
    pgids: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        children.setdefault(int(fields[1]), []).append(pid)
        pgids[pid] = int(fields[2])
    mine, todo, groups = os.getpgrp(), list(children.get(os.getpid(), [])), set()
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        if pgids.get(pid, mine) != mine:
            groups.add(pgids[pid])
    return groups


# Every process a playbook run starts inherits this variable (a fresh value per run), so the run's
# processes can be found after Ansible's workers, in process groups of their own, were orphaned and
# reparented away from us: parentage and process groups no longer lead to them by then.
RUN_MARK = "HARNESS_RUN_ID"


def new_run_mark() -> str:
    return uuid.uuid4().hex


def run_processes(mark: str) -> set[int]:
    """Live processes whose environment carries RUN_MARK=mark (zombies are dead and carry nothing)."""
    needle = f"{RUN_MARK}={mark}".encode()
    found: set[int] = set()
    me = os.getpid()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle not in environ.read_bytes().split(b"\0"):
                continue
        except OSError:  # gone meanwhile, or another user's
            continue
        pid = int(environ.parent.name)
        if pid != me:
            found.add(pid)
    return found


def kill_run(mark: str, *, grace: float = 2.0, wait: float = 10.0) -> set[int]:
    """Stop every process of one run, and the process group of each (a task's own children), with
    SIGTERM, then SIGKILL after `grace` seconds. Returns the pids still alive after `wait` (none,
    normally): the caller reports them rather than pretending the run is gone."""
    mine = os.getpgrp()
    deadline = time.monotonic() + grace
    signum = signal.SIGTERM
    while True:
        pids = run_processes(mark)
        if not pids:
            return set()
        groups = set()
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, signum)
            with contextlib.suppress(OSError):
                groups.add(os.getpgid(pid))
        _signal_groups(groups - {mine}, signum)
        if time.monotonic() > deadline:
            if signum == signal.SIGKILL:
                return pids
            signum, deadline = signal.SIGKILL, time.monotonic() + wait
        time.sleep(0.1)


class deferred:
    """While a child process (a playbook) runs, a signal only marks the run cancelled, so the child is
    stopped by its runner instead of being orphaned; `raise_if_requested()` raises afterwards."""

    def __enter__(self) -> Self:
        _deferring.active = True
        return self

    def __exit__(self, *exc: object) -> None:
        _deferring.active = False


# Every process of a playbook run also carries who started it (pid and start time, which together
# survive pid reuse): a run whose harness process was killed (kill -9, a CI timeout) goes on as
# orphans in the root namespace, and only this says they are a dead run's.
RUN_OWNER = "HARNESS_RUN_OWNER"


def _start_time(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def run_owner(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid}:{_start_time(pid)}"


def orphaned_runs() -> dict[str, set[int]]:
    """Run mark -> live processes of playbook runs whose harness process is gone."""
    out: dict[str, set[int]] = {}
    alive: dict[str, bool] = {}
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            env = dict(v.split(b"=", 1) for v in environ.read_bytes().split(b"\0") if b"=" in v)
        except OSError:  # gone meanwhile
            continue
        owner, mark = env.get(RUN_OWNER.encode()), env.get(RUN_MARK.encode())
        if owner is None or mark is None:
            continue
        key = owner.decode(errors="replace")
        if key not in alive:
            pid, _, start = key.partition(":")
            alive[key] = pid.isdigit() and _start_time(int(pid)) == start
        if not alive[key]:
            out.setdefault(mark.decode(errors="replace"), set()).add(int(environ.parent.name))
    return out


def kill_orphaned_runs() -> dict[str, set[int]]:
    """Stop every playbook run whose harness process died (with the process groups of its tasks).
    Returns what was found, mark -> pids, for the caller to report."""
    found = orphaned_runs()
    for mark in found:
        kill_run(mark)
    return found


def raise_if_requested() -> None:
    if _requested.is_set():
        reap()
        raise Terminated(f"interrupted by {_signal_name[0] if _signal_name else 'a signal'}")


def reset() -> None:
    """For tests: forget an earlier request."""
    _requested.clear()
    _signal_name.clear()
