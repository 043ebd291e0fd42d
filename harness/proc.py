"""The one subprocess choke point: every external command goes through `run` so tests patch one thing."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import HarnessError


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    rc: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.rc == 0


class CommandError(HarnessError):
    def __init__(self, result: Result) -> None:
        self.result = result
        tail = (result.stderr or result.stdout).strip().splitlines()[-15:]
        super().__init__(
            f"command failed (rc={result.rc}): {shlex.join(result.argv)}\n" + "\n".join(tail)
        )


def run(
    argv: Sequence[str],
    *,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    input: str | None = None,
    netns: str | None = None,
) -> Result:
    """Run argv, capture text output; `netns` wraps it in `ip netns exec` (the lab's rule)."""
    full = list(argv)
    if netns:
        full = ["ip", "netns", "exec", netns, *full]
    proc = subprocess.run(
        full,
        # Never our stdin: a child may set O_NONBLOCK on it (the flag lives on the shared file
        # description), and every Ansible started after that refuses to run (measured on a cold CI).
        stdin=subprocess.DEVNULL if input is None else None,
        capture_output=True,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
        input=input,
        check=False,
    )
    result = Result(tuple(full), proc.returncode, proc.stdout, proc.stderr)
    if check and not result.ok:
        raise CommandError(result)
    return result


def stream(
    argv: Sequence[str],
    *,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout: float | None = None,
    netns: str | None = None,
) -> Result:
    """Like `run` for long commands: stdout and stderr merged, each line handed to `on_line` as it arrives."""
    full = list(argv)
    if netns:
        full = ["ip", "netns", "exec", netns, *full]
    lines: list[str] = []
    with subprocess.Popen(
        full,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        # A process group of its own, so a kill reaches what the child started too (vagrant's, debootstrap's).
        start_new_session=True,
    ) as child:

        def kill() -> None:
            try:
                os.killpg(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

        # A timer rather than polling: the read loop blocks on output.
        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        try:
            assert child.stdout is not None
            for line in child.stdout:
                lines.append(line)
                if on_line:
                    on_line(line.rstrip("\n"))
            rc = child.wait()
        except BaseException:
            kill()  # Ctrl-C or SIGTERM: never leave the child, or anything it started, running
            raise
        finally:
            if timer:
                timer.cancel()
    result = Result(tuple(full), rc, "".join(lines), "")
    if check and not result.ok:
        raise CommandError(result)
    return result
