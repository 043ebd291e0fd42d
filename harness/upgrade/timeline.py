"""ansible-runner events -> a timeline: one record per task per host, plus the play recap.

Pure: feed it event dicts (as `event_handler` receives them or as `job_events/*.json` hold them)
and read records back. The runner writes them as JSON lines; checks and reports read those.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.upgrade.masking import mask_text

Status = str  # "ok" | "changed" | "failed" | "skipped" | "unreachable"

_RESULT_EVENTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_skipped": "skipped",
    "runner_on_unreachable": "unreachable",
    "runner_on_async_failed": "failed",
    "runner_on_async_ok": "ok",
}
# playbook_on_stats keys -> the names the recap line uses.
_RECAP_KEYS = {
    "ok": "ok",
    "changed": "changed",
    "dark": "unreachable",
    "failures": "failed",
    "skipped": "skipped",
    "rescued": "rescued",
    "ignored": "ignored",
}
RECAP_FIELDS = ("ok", "changed", "unreachable", "failed", "skipped", "rescued", "ignored")
_CENSORED = "(output censored: no_log)"


@dataclass(frozen=True)
class TaskRecord:
    host: str
    play: str
    task: str
    tags: tuple[str, ...]
    start: str | None
    end: str | None
    status: Status
    changed: bool
    ignored: bool = False  # failed under ignore_errors: not a failure of the run
    msg: str | None = None
    action: str | None = None
    task_path: str | None = None
    duration: float | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TaskRecord:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        known["tags"] = tuple(known.get("tags") or ())
        return cls(**known)


def _message(res: Mapping[str, Any]) -> str | None:
    """What went wrong, in one line or a few; never un-censors a no_log result."""
    if "censored" in res:
        return _CENSORED
    parts: list[str] = []
    msg = res.get("msg")
    if msg:
        parts.append(str(msg))
    # Loops: the first failing item says more than "One or more items failed".
    for item in res.get("results") or []:
        if isinstance(item, Mapping) and item.get("failed"):
            inner = _message(item)
            if inner:
                parts.append(f"item: {inner}")
            break
    stderr = str(res.get("stderr") or "").strip()
    if stderr:
        parts.append("stderr: " + " | ".join(stderr.splitlines()[-5:]))
    elif res.get("rc") not in (None, 0) and res.get("stdout"):
        parts.append("stdout: " + " | ".join(str(res["stdout"]).strip().splitlines()[-5:]))
    text = "; ".join(parts)
    return mask_text(text)[:2000] if text else None


@dataclass
class TimelineBuilder:
    """Stateful over one run's event stream; `feed` returns the record an event completes."""

    task_tags: Mapping[tuple[str, str], tuple[str, ...]] = field(default_factory=dict)
    records: list[TaskRecord] = field(default_factory=list)
    recap: dict[str, dict[str, int]] = field(default_factory=dict)
    current_play: str = ""
    current_task: str = ""
    hosts_done: set[str] = field(default_factory=set)
    # (host, task) -> what each failed attempt of a task under `until`/`retries` said (runner_retry)
    retried: dict[tuple[str, str], list[str]] = field(default_factory=dict)
    _starts: dict[tuple[str, str], str] = field(default_factory=dict)

    def feed(self, event: Mapping[str, Any]) -> TaskRecord | None:
        name = event.get("event", "")
        data: Mapping[str, Any] = event.get("event_data") or {}
        if name == "playbook_on_play_start":
            self.current_play = str(data.get("play") or data.get("name") or "")
            return None
        if name in ("playbook_on_task_start", "playbook_on_handler_task_start"):  # a handler can hang too
            self.current_play = str(data.get("play") or self.current_play)
            self.current_task = str(data.get("task") or data.get("name") or "")
            self.hosts_done = set()
            return None
        if name == "runner_on_start":
            host = str(data.get("host") or "")
            self._starts[(str(data.get("task_uuid") or ""), host)] = str(data.get("start") or event.get("created") or "")
            return None
        if name == "playbook_on_stats":
            self.recap = recap_from_stats(data)
            return None
        if name == "runner_retry":  # an attempt failed and the task goes again: worth a note, not a record
            res = data.get("res")
            task = str(data.get("task") or self.current_task)
            role = str(data.get("role") or "")
            if role and not task.startswith(f"{role} : "):
                task = f"{role} : {task}"
            msg = _message(res) if isinstance(res, Mapping) else None
            self.retried.setdefault((str(data.get("host") or ""), task), []).append(msg or "(no message)")
            return None
        status = _RESULT_EVENTS.get(name)
        if status is None:
            return None
        record = self._record(event, data, status)
        self.records.append(record)
        self.hosts_done.add(record.host)
        return record

    def running(self) -> list[str]:
        """Hosts a task started on that have not answered yet (what a timed-out run was waiting for)."""
        return sorted({host for (_task, host) in self._starts})

    def _listed_tags(self, play: str, task: str, role: str) -> tuple[str, ...]:
        """Tags from the `--list-tasks` preview (keyed by play and `ROLE : TASK`); for what the
        preview does not list (handlers, dynamic includes), the role's path words stand in:
        `container-engine/containerd` -> container-engine, containerd."""
        listed = self.task_tags.get((play, task))
        if listed:
            return tuple(listed)
        return tuple(w for w in role.split("/") if w) if role else ()

    def _record(self, event: Mapping[str, Any], data: Mapping[str, Any], status: str) -> TaskRecord:
        host = str(data.get("host") or "")
        res: Mapping[str, Any] = data.get("res") or {}
        if not isinstance(res, Mapping):
            res = {}
        changed = bool(res.get("changed")) if "censored" not in res else bool(res.get("changed", False))
        if status == "ok" and changed:
            status = "changed"
        play, task = str(data.get("play") or self.current_play), str(data.get("task") or self.current_task)
        role = str(data.get("role") or "")
        if role and not task.startswith(f"{role} : "):
            task = f"{role} : {task}"  # as Ansible prints it (TASK [etcd : ...]) and --list-tasks lists it
        tags = data.get("tags") or data.get("task_tags") or self._listed_tags(play, task, role)
        started = self._starts.pop((str(data.get("task_uuid") or ""), host), None)  # answered: not running()
        start = data.get("start") or started
        end = data.get("end") or event.get("created")
        duration = data.get("duration")
        return TaskRecord(
            host=host,
            play=play,
            task=task,
            tags=tuple(str(t) for t in tags),
            start=str(start) if start else None,
            end=str(end) if end else None,
            status=status,
            changed=changed,
            ignored=bool(data.get("ignore_errors")) and status == "failed",
            msg=_message(res) if status in ("failed", "unreachable") else None,
            action=str(data.get("resolved_action") or data.get("task_action") or "") or None,
            task_path=str(data.get("task_path") or "") or None,
            duration=float(duration) if isinstance(duration, (int, float)) else None,
        )


def recap_from_stats(data: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """`playbook_on_stats` event data -> {host: {ok, changed, unreachable, failed, skipped, rescued, ignored}}."""
    hosts: set[str] = set()
    for key in (*_RECAP_KEYS, "processed"):
        value = data.get(key)
        if isinstance(value, Mapping):
            hosts |= {str(h) for h in value}
    recap: dict[str, dict[str, int]] = {h: dict.fromkeys(RECAP_FIELDS, 0) for h in sorted(hosts)}
    for key, label in _RECAP_KEYS.items():
        for host, count in (data.get(key) or {}).items():
            recap[str(host)][label] = int(count)
    return recap


def build_timeline(
    events: Iterable[Mapping[str, Any]],
    task_tags: Mapping[tuple[str, str], tuple[str, ...]] | None = None,
) -> tuple[list[TaskRecord], dict[str, dict[str, int]]]:
    """All records and the recap of one run's events (sorted by their counter, as ansible-runner numbers them)."""
    builder = TimelineBuilder(task_tags=task_tags or {})
    for event in sorted(events, key=lambda e: int(e.get("counter") or 0)):
        builder.feed(event)
    return builder.records, builder.recap


def read_job_events(artifact_dir: Path) -> list[dict[str, Any]]:
    """The events ansible-runner saved under `artifacts/<ident>/job_events/`."""
    out = []
    for p in (artifact_dir / "job_events").glob("*.json"):
        try:
            out.append(json.loads(p.read_text()))
        except ValueError:
            continue  # a partial file from a killed run
    return sorted(out, key=lambda e: int(e.get("counter") or 0))


def write_timeline(path: Path, records: Iterable[TaskRecord]) -> Path:
    with path.open("w") as fh:
        for r in records:
            fh.write(r.to_json() + "\n")
    return path


def read_timeline(path: Path) -> list[TaskRecord]:
    return [TaskRecord.from_dict(json.loads(line)) for line in path.read_text().splitlines() if line.strip()]


def first_failures(records: Iterable[TaskRecord]) -> dict[str, TaskRecord]:
    """The first real failure per host (ignored failures and rescued ones still count as first seen)."""
    out: dict[str, TaskRecord] = {}
    for r in records:
        if r.status in ("failed", "unreachable") and not r.ignored and r.host not in out:
            out[r.host] = r
    return out


def summarize(records: list[TaskRecord], recap: Mapping[str, Mapping[str, int]]) -> str:
    """A failure summary a person can act on: where each host failed and why, then the recap."""
    lines: list[str] = []
    failures = first_failures(records)
    unreachable = sorted(h for h, r in failures.items() if r.status == "unreachable")
    unreachable += sorted(h for h, c in recap.items() if c.get("unreachable") and h not in unreachable)
    for host, r in sorted(failures.items()):
        if r.status == "failed":
            lines.append(f"{host}: failed at [{r.play}] {r.task!r}: {r.msg or '(no message)'}")
    if unreachable:
        lines.append("unreachable: " + ", ".join(unreachable))
        for host in unreachable:
            found = failures.get(host)
            if found is not None and found.msg:
                lines.append(f"{host}: unreachable at {found.task!r}: {found.msg}")
    if recap:
        lines.append("PLAY RECAP")
        for host, counts in recap.items():
            lines.append(f"  {host}: " + " ".join(f"{k}={counts.get(k, 0)}" for k in RECAP_FIELDS))
    return mask_text("\n".join(lines))
