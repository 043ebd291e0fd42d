"""Run one playbook with ansible-runner and keep everything it says.

One call = one stage = one `ident`: artifacts land in `<private_data_dir>/artifacts/<ident>/`
(ansible-runner's `stdout`, `job_events/`, `rc`, `status`) next to the harness's `timeline.jsonl`
and `summary.txt`. All of it is masked before the call returns. The caller decides what a failure
means (`UpgradeRunError(result.summary)`, or an expected failure).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from rich.markup import escape

from harness import interrupt, progress
from harness.errors import InstallerError
from harness.installer.base import HARNESS_PROJECT, Project, Stage
from harness.upgrade.masking import mask_artifacts, mask_text
from harness.upgrade.timeline import TaskRecord, TimelineBuilder, first_failures, summarize


@dataclass(frozen=True)
class RunResult:
    ident: str
    playbook: str
    rc: int
    status: str  # ansible-runner's: successful | failed | timeout | canceled
    recap: dict[str, dict[str, int]]
    timeline_path: Path
    artifacts_dir: Path
    summary: str
    records: tuple[TaskRecord, ...]
    # The value of interrupt.RUN_MARK in the environment of every process the run started.
    run_mark: str = ""
    # Transient trouble the run got through or died of: tasks retried, hosts unreachable (run.json notes).
    notes: tuple[str, ...] = ()
    # ansible-runner's run() call: ansible-playbook's process from its start (Python, the playbook's
    # parse: 5 s of Kubespray's) to its exit. What the installer costs by itself, whoever runs it.
    seconds: float | None = None

    @property
    def ok(self) -> bool:
        return self.rc == 0 and self.status == "successful"

    def failures(self) -> dict[str, TaskRecord]:
        """The first failed (or unreachable) task per host."""
        return first_failures(self.records)


def _masked(record: TaskRecord) -> TaskRecord:
    """A timeline record with its free text masked like the artifacts (the checks quote it)."""
    def masked(text: str | None) -> str | None:
        return mask_text(text) if text else text

    return dataclasses.replace(record, play=mask_text(record.play), task=mask_text(record.task),
                               msg=masked(record.msg), task_path=masked(record.task_path))


def recap_changed(result: RunResult) -> dict[str, int]:
    """`changed=` per host from the recap: an idempotent second run shows 0 everywhere."""
    return {host: counts.get("changed", 0) for host, counts in result.recap.items()}


def ansible_binary(venv: Path | None) -> Path:
    """The ansible-playbook a run uses: a Kubespray ref's venv, or the harness's own (lab installer)."""
    bindir = venv / "bin" if venv is not None else Path(sys.executable).parent
    binary = bindir / "ansible-playbook"
    if not binary.exists():
        where = f"virtualenv {venv}" if venv is not None else f"the harness's environment ({bindir})"
        raise InstallerError(f"no ansible-playbook in {where}; rebuild it (delete the directory) or install ansible-core")
    return binary


class _Progress:
    """The live line: current play and task, hosts done. Only when asked for (`show_progress`)."""

    def __init__(self, show: bool, ident: str) -> None:
        self._step = progress.step(f"ansible {ident}") if show else None
        self._line: Callable[[str], None] = lambda _line: None
        self._play: str | None = None

    def __enter__(self) -> Self:
        if self._step is not None:
            self._line = self._step.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._step is not None:
            self._step.__exit__(exc_type, exc, tb)

    def update(self, b: TimelineBuilder) -> None:
        if self._step is None:
            return
        if b.current_play != self._play and b.current_play:
            self._play = b.current_play  # every play start is worth a line, even in a CI log
            progress.console().print(f"  [dim]play[/] {escape(b.current_play)}", highlight=False)
        failed = sum(1 for r in b.records if r.status in ("failed", "unreachable") and not r.ignored)
        self._line(
            f"[{b.current_play}] {b.current_task} — {len(b.hosts_done)} host(s) done"
            + (f", {failed} failure(s) so far" if failed else "")
        )


def run_playbook(
    private_data_dir: Path,
    playbook: str,
    *,
    ident: str,
    inventory: Path | None = None,
    extravars: Mapping[str, Any] | None = None,
    tags: Sequence[str] = (),
    limit: str | None = None,
    timeout: float | None = None,
    project_dir: Path | None = None,
    venv: Path | None = None,
    envvars: Mapping[str, str] | None = None,
    show_progress: bool = False,
    task_tags: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
) -> RunResult:
    """Run `playbook` (relative to `project_dir`) and return what happened; never raises on a failed play.

    `venv` picks the Ansible (a Kubespray ref's virtualenv; None = the harness's own). `show_progress`
    turns on the progress line (harness.progress). `task_tags` fills the timeline's tags from a
    `--list-tasks` preview, since ansible-runner's events do not carry them.
    """
    import ansible_runner  # type: ignore[import-untyped]  # lazily: planning and pure tests do not need it

    private_data_dir.mkdir(parents=True, exist_ok=True)
    binary = ansible_binary(venv)
    # `binary=` would make ansible-runner drop the playbook from the command line; PATH picks the venv's.
    env = {
        "PATH": f"{binary.parent}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
        "ANSIBLE_FORCE_COLOR": "false",
        "ANSIBLE_NOCOLOR": "true",
    }
    if venv is not None:
        env["VIRTUAL_ENV"] = str(venv)
    env.update(envvars or {})
    mark = interrupt.new_run_mark()
    env[interrupt.RUN_MARK] = mark  # finds the run's processes after a timeout (harness.interrupt.kill_run)
    env[interrupt.RUN_OWNER] = interrupt.run_owner()  # ... and after this process was killed (kill_orphaned_runs)

    artifacts = private_data_dir / "artifacts" / ident
    artifacts.mkdir(parents=True, exist_ok=True)
    timeline_path = artifacts / "timeline.jsonl"
    builder = TimelineBuilder(task_tags=task_tags or {})

    with timeline_path.open("w") as timeline, _Progress(show_progress, ident) as live:

        def on_event(event: dict[str, Any]) -> bool:
            record = builder.feed(event)
            if record is not None:
                timeline.write(record.to_json() + "\n")
                timeline.flush()  # a killed run still leaves the tasks it got through
            live.update(builder)
            return True

        kwargs: dict[str, Any] = {
            "private_data_dir": str(private_data_dir),
            "playbook": playbook,
            "ident": ident,
            "envvars": env,
            "event_handler": on_event,
            "quiet": True,
            "suppress_env_files": True,  # env/ would keep extravars (secrets) on disk in clear
        }
        if project_dir is not None:
            kwargs["project_dir"] = str(project_dir)
        if inventory is not None:
            kwargs["inventory"] = str(inventory)
        if extravars:
            kwargs["extravars"] = dict(extravars)
        if tags:
            kwargs["tags"] = ",".join(tags)
        if limit:
            kwargs["limit"] = limit
        if timeout:
            kwargs["timeout"] = int(timeout)
        # Our cancel callback keeps ansible-runner from taking over SIGTERM/SIGINT for good; a signal
        # now stops the playbook (its runner kills it) and, below, the whole run (harness.interrupt).
        kwargs["cancel_callback"] = interrupt.cancelled
        with interrupt.deferred():
            began = time.monotonic()
            r = ansible_runner.run(**kwargs)
            seconds = time.monotonic() - began

    rc = int(r.rc) if r.rc is not None else -1
    status = str(r.status)
    survivors: set[int] = set()
    if status in ("timeout", "canceled"):
        # ansible-runner kills only ansible-playbook's process group; Ansible's workers run tasks in
        # groups of their own and would go on (a drain, a `sleep`) after the run was given up.
        survivors = interrupt.kill_run(mark)
    recap = builder.recap
    summary = "" if rc == 0 and status == "successful" else summarize(builder.records, recap)
    if status == "timeout":
        # The task in flight, from the events: the one that hung (a drain, a wait, a stuck download).
        waiting = builder.running()
        task = f"[{builder.current_play}] {builder.current_task!r}" if builder.current_task else "before any task started"
        summary = (f"{playbook} timed out after {int(timeout or 0)}s during {task}"
                   + (f", still running on {', '.join(waiting)}" if waiting else "") + "\n" + summary)
    elif rc != 0 and not summary.strip():
        summary = f"{playbook} failed (rc={rc}, status={status}) before any task ran; see {artifacts / 'stdout'}"
    if survivors:
        summary += f"\nprocesses of the run still alive after SIGKILL: {', '.join(map(str, sorted(survivors)))}"
    notes = transient_notes(ident, builder)
    mask_artifacts(artifacts)
    (artifacts / "summary.txt").write_text(summary + ("\n" if summary else ""))
    interrupt.raise_if_requested()  # after masking: an interrupted run leaves no secret behind either
    return RunResult(
        ident=ident,
        playbook=playbook,
        rc=rc,
        status=status,
        recap=recap,
        timeline_path=timeline_path,
        artifacts_dir=artifacts,
        summary=summary,
        records=tuple(_masked(rec) for rec in builder.records),  # as masked as the timeline file
        run_mark=mark,
        notes=notes,
        seconds=seconds,
    )


def transient_notes(ident: str, builder: TimelineBuilder) -> tuple[str, ...]:
    """Retried tasks and unreachable hosts, one note each: under load (two labs on two cores) ssh and
    the guests' network have failed for a moment, and a retry that hid it should still be seen."""
    notes: list[str] = []
    for (host, task), attempts in builder.retried.items():
        outcome = next((r.status for r in reversed(builder.records) if r.host == host and r.task == task), "no result")
        notes.append(f"{ident}: {host}: {task!r} retried {len(attempts)} time(s) (then {outcome});"
                     f" last failed attempt: {attempts[-1]}")
    for r in builder.records:
        if r.status == "unreachable":
            notes.append(f"{ident}: {r.host} unreachable at {r.task!r}: {r.msg or '(no message)'}")
    return tuple(mask_text(n) for n in notes)



def run_stage(
    stage: Stage,
    private_data_dir: Path,
    inventory: Path,
    *,
    project: Project = HARNESS_PROJECT,
    timeout: float | None = None,
    show_progress: bool = False,
    task_tags: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
    envvars: Mapping[str, str] | None = None,
) -> RunResult:
    """Run a `Stage` in its installer's project (a Kubespray ref's worktree and venv, or the harness's
    playbooks with the harness's Ansible), for at most `timeout` (else the project's).

    What the harness playbooks fetch (`harness_out`) is masked like ansible-runner's artifacts.
    """
    project_dir, venv = project.dir, project.venv
    timeout = project.timeout if timeout is None else timeout
    result = run_playbook(
        private_data_dir,
        stage.playbook,
        ident=stage.ident,
        inventory=inventory,
        extravars=stage.extravars,
        tags=stage.tags,
        limit=stage.limit,
        timeout=timeout,
        project_dir=project_dir,
        venv=venv,
        envvars=envvars,
        show_progress=show_progress,
        task_tags=task_tags,
    )
    out = stage.extravars.get("harness_out")
    if out:
        mask_artifacts(Path(out))
    return result
