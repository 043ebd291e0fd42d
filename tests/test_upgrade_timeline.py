"""ansible-runner event dicts -> timeline records and recap (pure; shapes taken from real runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.upgrade.timeline import (
    TimelineBuilder,
    build_timeline,
    first_failures,
    read_timeline,
    recap_from_stats,
    summarize,
    write_timeline,
)

PLAY_UUID = "02fc0000-0001-37e9-66a4-000000000004"


def _base(task: str, task_uuid: str) -> dict[str, Any]:
    return {
        "playbook": "cluster.yml",
        "play": "Install etcd",
        "play_uuid": PLAY_UUID,
        "play_pattern": "etcd",
        "task": task,  # without the role: ansible-runner gives that as `role`
        "task_uuid": task_uuid,
        "task_action": "ansible.builtin.command",
        "resolved_action": "ansible.builtin.command",
        "task_args": "",
        "task_path": "/ks/roles/etcd/tasks/main.yml:12",
        "role": "etcd",
    }


def _ev(counter: int, event: str, data: dict[str, Any], created: str = "2026-11-25T11:52:38.000000+00:00") -> dict[str, Any]:
    return {"uuid": f"u{counter}", "counter": counter, "event": event, "created": created, "event_data": data}


def _events() -> list[dict[str, Any]]:
    t1 = _base("Install etcd", "t-1")
    t2 = _base("Configure etcd", "t-2")
    t3 = _base("Write secret", "t-3")
    res_ok = {"changed": True, "rc": 0, "stdout": "done", "_ansible_no_log": False}
    res_fail = {
        "changed": True,
        "rc": 1,
        "msg": "non-zero return code",
        "stderr": "cp: cannot stat '/tmp/releases/etcd-v3.6.10-linux-amd64/etcd': No such file or directory",
        "_ansible_no_log": False,
    }
    return [
        _ev(1, "playbook_on_start", {"playbook": "cluster.yml"}),
        _ev(2, "playbook_on_play_start", {"play": "Install etcd", "name": "Install etcd"}),
        _ev(3, "playbook_on_task_start", {**t1, "name": t1["task"]}),
        _ev(4, "runner_on_start", {**t1, "host": "node1", "start": "2026-11-25T11:52:37.0+00:00"}),
        _ev(5, "runner_on_start", {**t1, "host": "node2"}, created="2026-11-25T11:52:37.5+00:00"),
        _ev(6, "runner_on_start", {**t1, "host": "node3"}),
        _ev(7, "runner_on_ok", {**t1, "host": "node1", "res": res_ok, "start": "2026-11-25T11:52:37.0+00:00",
                                "end": "2026-11-25T11:52:39.0+00:00", "duration": 2.0}),
        # No start/end in the result event: taken from runner_on_start and the event's `created`.
        _ev(8, "runner_on_failed", {**t1, "host": "node2", "res": res_fail, "ignore_errors": None},
            created="2026-11-25T11:52:40.0+00:00"),
        _ev(9, "runner_on_unreachable", {**t1, "host": "node3", "res": {
            "unreachable": True, "msg": "Failed to connect to the host via ssh: Connection refused", "changed": False}}),
        _ev(10, "playbook_on_task_start", {**t2, "name": t2["task"]}),
        _ev(11, "runner_on_failed", {**t2, "host": "node1", "res": {"changed": False, "msg": "meh", "rc": 2},
                                     "ignore_errors": True}),
        _ev(12, "runner_on_skipped", {**t2, "host": "node1"}),
        _ev(13, "playbook_on_task_start", {**t3, "name": t3["task"]}),
        _ev(14, "runner_on_ok", {**t3, "host": "node1", "res": {
            "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result",
            "changed": True}}),
        _ev(15, "runner_on_failed", {**t3, "host": "node1", "res": {"censored": "the output has been hidden"}}),
        _ev(16, "playbook_on_stats", {
            "changed": {"node1": 2}, "dark": {"node3": 1}, "failures": {"node2": 1, "node1": 1},
            "ignored": {"node1": 1}, "ok": {"node1": 3}, "processed": {"node1": 1, "node2": 1, "node3": 1},
            "rescued": {}, "skipped": {"node1": 1}}),
    ]


def test_one_record_per_task_per_host_with_statuses() -> None:
    records, _ = build_timeline(_events())
    got = [(r.host, r.task, r.status, r.changed, r.ignored) for r in records]
    assert got == [
        ("node1", "etcd : Install etcd", "changed", True, False),
        ("node2", "etcd : Install etcd", "failed", True, False),
        ("node3", "etcd : Install etcd", "unreachable", False, False),
        ("node1", "etcd : Configure etcd", "failed", False, True),
        ("node1", "etcd : Configure etcd", "skipped", False, False),
        ("node1", "etcd : Write secret", "changed", True, False),
        ("node1", "etcd : Write secret", "failed", False, False),
    ]
    r = records[1]
    assert r.play == "Install etcd" and r.action == "ansible.builtin.command"
    assert r.start == "2026-11-25T11:52:37.5+00:00" and r.end == "2026-11-25T11:52:40.0+00:00"
    assert "No such file or directory" in (r.msg or "") and "non-zero return code" in (r.msg or "")
    assert records[0].duration == 2.0 and records[0].end == "2026-11-25T11:52:39.0+00:00"


def test_events_out_of_order_are_sorted_by_counter() -> None:
    a, _ = build_timeline(_events())
    b, _ = build_timeline(list(reversed(_events())))
    assert a == b


def test_no_log_results_stay_censored() -> None:
    records, _ = build_timeline(_events())
    failed_secret = records[-1]
    assert failed_secret.msg == "(output censored: no_log)"


def test_tags_from_event_data_or_a_list_tasks_map() -> None:
    events = _events()
    events[6]["event_data"]["tags"] = ["etcd", "upgrade"]
    for e in events:  # node2's run of it as a play-level task: no role to fall back on
        if e["event_data"].get("host") == "node2":
            e["event_data"]["role"] = ""
    # --list-tasks names role tasks `ROLE : TASK`.
    listed = {("Install etcd", "etcd : Configure etcd"): ("etcd", "etcd-secrets")}
    records, _ = build_timeline(events, task_tags=listed)
    assert records[0].tags == ("etcd", "upgrade")
    assert records[3].tags == ("etcd", "etcd-secrets")
    assert (records[1].host, records[1].tags) == ("node2", ())
    assert records[2].tags == ("etcd",)  # not listed (a handler, say): the role's path words


def test_role_path_words_stand_in_for_unlisted_tags() -> None:
    b = TimelineBuilder()
    data = {**_base("Restart containerd", "t-9"), "role": "container-engine/containerd", "host": "node1",
            "res": {"changed": True}}
    record = b.feed(_ev(1, "runner_on_ok", data))
    assert record is not None and record.tags == ("container-engine", "containerd")
    assert record.task == "container-engine/containerd : Restart containerd"  # as Ansible prints it


def test_recap_per_host() -> None:
    _, recap = build_timeline(_events())
    assert recap["node1"] == {"ok": 3, "changed": 2, "unreachable": 0, "failed": 1, "skipped": 1, "rescued": 0, "ignored": 1}
    assert recap["node3"]["unreachable"] == 1 and recap["node2"]["failed"] == 1
    assert recap_from_stats({}) == {}


def test_summary_names_first_failure_per_host_unreachables_and_recap() -> None:
    records, recap = build_timeline(_events())
    firsts = first_failures(records)
    # node1's ignored failure is not its first failure.
    assert firsts["node1"].task == "etcd : Write secret"
    text = summarize(records, recap)
    lines = text.splitlines()
    assert lines[1].startswith("node2: failed at [Install etcd] 'etcd : Install etcd': non-zero return code")
    assert "unreachable: node3" in text and "Connection refused" in text
    assert "PLAY RECAP" in text and "node1: ok=3 changed=2 unreachable=0 failed=1" in text


def test_progress_state() -> None:
    b = TimelineBuilder()
    for e in _events()[:8]:
        b.feed(e)
    assert (b.current_play, b.current_task, b.hosts_done) == ("Install etcd", "Install etcd", {"node1", "node2"})


def test_jsonl_round_trip(tmp_path: Path) -> None:
    records, _ = build_timeline(_events())
    path = write_timeline(tmp_path / "timeline.jsonl", records)
    assert len(path.read_text().splitlines()) == len(records)
    assert read_timeline(path) == records
