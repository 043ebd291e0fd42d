"""A signal stops the whole run: the playbook in flight is killed by its runner, then Terminated
unwinds through cleanup (ansible-runner alone would cancel one playbook and let the run go on)."""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from harness import interrupt
from harness.upgrade.runner import run_playbook

SLEEPER = "harness-interrupt-test-sleeper"


def _processes(word: str) -> list[str]:
    out = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if word in text and "pytest" not in text:
            out.append(text)
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    p = tmp_path / "project"
    p.mkdir()
    # `exec -a` names the sleep so this test finds exactly its own process.
    play = [{"hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Sleep", "ansible.builtin.shell": f"exec -a {SLEEPER} sleep 120", "args": {"executable": "/bin/bash"}}]}]
    (p / "sleep.yml").write_text(yaml.safe_dump(play))
    return p


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_a_playbook_stops_the_playbook_and_the_run(project: Path, tmp_path: Path, signum) -> None:
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": {
        "ansible_connection": "local", "ansible_python_interpreter": sys.executable}}}}))
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    restore = interrupt.install()

    def kill_when_sleeping() -> None:
        deadline = time.monotonic() + 60
        while not _processes(SLEEPER) and time.monotonic() < deadline:
            time.sleep(0.2)
        os.kill(os.getpid(), signum)

    threading.Thread(target=kill_when_sleeping, daemon=True).start()
    start = time.monotonic()
    try:
        with pytest.raises(interrupt.Terminated, match=signal.Signals(signum).name):
            run_playbook(tmp_path / "pdd", "sleep.yml", ident="s", inventory=inventory, project_dir=project)
    finally:
        restore()
        interrupt.reset()
    assert time.monotonic() - start < 100, "the playbook ran its course instead of being stopped"
    deadline = time.monotonic() + 15
    while _processes(SLEEPER) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes(SLEEPER) == [], "the playbook's task outlived the run"
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before  # nothing left hijacked
    # The artifacts of the cancelled run were still written (and masked).
    assert (tmp_path / "pdd" / "artifacts" / "s" / "summary.txt").exists()


def test_kill_run_stops_every_process_of_a_run_and_their_groups() -> None:
    """The run's processes are found by the mark in their environment, orphaned or not; a process
    that dropped the mark (`env -i`) still goes with its process group."""
    import subprocess

    mark = interrupt.new_run_mark()
    env = {**os.environ, interrupt.RUN_MARK: mark}
    # The shell starts a worker-like process in a session of its own, which starts a child that drops
    # the mark, and exits: both are reparented away from this process. Each says "up" once started.
    inner = f"echo up; exec -a {SLEEPER}-unmarked sleep 120"
    worker = f"env -i /bin/bash -c {shlex.quote(inner)} & echo up; exec -a {SLEEPER}-orphan sleep 120"
    script = f"setsid /bin/bash -c {shlex.quote(worker)} &"
    child = subprocess.Popen(["/bin/bash", "-c", script], env=env, start_new_session=True,
                             stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    assert [child.stdout.readline().strip() for _ in range(2)] == ["up", "up"]
    child.wait()
    marked = interrupt.run_processes(mark)
    assert marked, "the marked processes were not found"
    assert interrupt.kill_run(mark) == set()
    child.stdout.close()
    assert interrupt.run_processes(mark) == set()
    assert _processes(f"{SLEEPER}-orphan") == [] and _processes(f"{SLEEPER}-unmarked") == []
