"""Real ansible-runner runs against localhost (ansible_connection=local): events, timeline, masking."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path

import pytest

from harness import interrupt
from harness.installer.base import Stage
from harness.installer.inventory import write_inventory
from harness.upgrade.runner import RunResult, ansible_binary, recap_changed, run_playbook, run_stage
from harness.upgrade.timeline import build_timeline, read_job_events, read_timeline

JWT = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJzeXN0ZW06YWRtaW4ifQ.c2lnbmF0dXJlLWhlcmU"

PLAYBOOK = f"""\
- name: Demo upgrade
  hosts: all
  gather_facts: false
  tasks:
    - name: Read the version
      ansible.builtin.command: echo 3.5.16
      changed_when: false
    - name: Print a kubeconfig token
      ansible.builtin.command: "echo 'token: {JWT}'"
    - name: Handle a secret
      ansible.builtin.command: echo s3cr3t-value
      no_log: true
    - name: Skipped step
      ansible.builtin.debug: msg=x
      when: false
    - name: Tolerated failure
      ansible.builtin.command: /bin/false
      ignore_errors: true
    - name: Copy etcd binary
      ansible.builtin.fail:
        msg: "cannot stat etcd-v3.6.10-linux-amd64/etcd"
      when: inventory_hostname == 'node2'
"""

IDEMPOTENT = """\
- name: Nothing to change
  hosts: all
  gather_facts: false
  tasks:
    - name: Look
      ansible.builtin.command: "true"
      changed_when: false
"""


def _inventory(pdd: Path, *, unreachable: bool = False) -> Path:
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    hosts: dict[str, object] = {"node1": dict(local), "node2": dict(local)}
    if unreachable:
        hosts["node3"] = {"ansible_host": "127.0.0.1", "ansible_port": 1, "ansible_connection": "ssh"}
    inv = {"all": {"hosts": hosts, "children": {"etcd": {"hosts": dict.fromkeys(hosts)}}}}
    return write_inventory(pdd, inv, {}) / "hosts.yml"


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("project")
    (d / "demo.yml").write_text(PLAYBOOK)
    (d / "idem.yml").write_text(IDEMPOTENT)
    (d / "slow.yml").write_text(
        "- hosts: all\n  gather_facts: false\n  tasks:\n    - name: Long drain\n      ansible.builtin.command: sleep 60\n"
    )
    return d


@pytest.fixture(scope="module")
def failed_run(project: Path, tmp_path_factory: pytest.TempPathFactory) -> RunResult:
    pdd = tmp_path_factory.mktemp("run")
    return run_playbook(pdd, "demo.yml", ident="03-upgrade", inventory=_inventory(pdd, unreachable=True),
                        project_dir=project, extravars={"harness_label": "x"}, timeout=300)


def test_failed_run_result(failed_run: RunResult) -> None:
    r = failed_run
    assert not r.ok and r.rc != 0 and r.status == "failed"
    assert r.artifacts_dir.name == "03-upgrade" and (r.artifacts_dir / "stdout").exists()
    assert r.recap["node1"]["failed"] == 0 and r.recap["node1"]["ignored"] == 1
    assert r.recap["node2"]["failed"] == 1 and r.recap["node3"]["unreachable"] == 1
    failures = r.failures()
    assert failures["node2"].task == "Copy etcd binary" and "node1" not in failures
    assert failures["node3"].status == "unreachable"
    assert "node2: failed at [Demo upgrade] 'Copy etcd binary': cannot stat etcd-v3.6.10-linux-amd64/etcd" in r.summary
    assert "unreachable: node3" in r.summary and "PLAY RECAP" in r.summary
    assert (r.artifacts_dir / "summary.txt").read_text().strip() == r.summary.strip()


def test_timeline_file_matches_real_events(failed_run: RunResult) -> None:
    records = read_timeline(failed_run.timeline_path)
    assert list(records) == list(failed_run.records)
    by = {(x.host, x.task): x for x in records}
    assert by[("node1", "Read the version")].status == "ok"
    assert by[("node1", "Print a kubeconfig token")].status == "changed"
    assert by[("node1", "Skipped step")].status == "skipped"
    assert by[("node1", "Tolerated failure")].ignored
    assert by[("node1", "Handle a secret")].start and by[("node1", "Handle a secret")].end
    # Rebuilding from ansible-runner's own job_events gives the same timeline.
    again, recap = build_timeline(read_job_events(failed_run.artifacts_dir))
    assert again == records and recap == failed_run.recap


def test_secrets_masked_everywhere_written(failed_run: RunResult) -> None:
    for p in failed_run.artifacts_dir.rglob("*"):
        if p.is_file():
            text = p.read_text(errors="replace")
            assert JWT not in text, p
            assert "s3cr3t-value" not in text, p  # no_log held in ansible-runner's events too
    events = read_job_events(failed_run.artifacts_dir)
    assert any("token: ********" in json.dumps(e) for e in events)


def test_success_and_idempotence_recap(project: Path, tmp_path: Path) -> None:
    r = run_playbook(tmp_path, "idem.yml", ident="04-idempotence", inventory=_inventory(tmp_path), project_dir=project)
    assert r.ok and r.summary == ""
    assert recap_changed(r) == {"node1": 0, "node2": 0}
    r2 = run_playbook(tmp_path, "demo.yml", ident="05-again", inventory=_inventory(tmp_path), project_dir=project)
    assert recap_changed(r2)["node1"] >= 1
    # Every ident keeps its own artifacts.
    assert {p.name for p in (tmp_path / "artifacts").iterdir()} == {"04-idempotence", "05-again"}
    # The run's seconds are ansible-playbook's whole process: they hold its events' span, first to recap.
    at = {}
    for path in (r2.artifacts_dir / "job_events").glob("*.json"):
        event = json.loads(path.read_text())
        if event["event"] in ("playbook_on_start", "playbook_on_stats"):
            at[event["event"]] = datetime.fromisoformat(event["created"])
    assert r2.seconds is not None and r2.seconds >= (at["playbook_on_stats"] - at["playbook_on_start"]).total_seconds()


def _processes_with_env(marker: str) -> list[str]:
    """Live processes whose environment holds `marker`: every process a run started inherits it, even
    one orphaned into a process group of its own (Ansible's workers) and reparented away from us."""
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if marker.encode() not in environ.read_bytes().split(b"\0"):
                continue
            cmdline = (environ.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        found.append(f"{environ.parent.name}: {cmdline}")
    return found


def test_timeout(project: Path, tmp_path: Path) -> None:
    """A run that hits its timeout leaves nothing of itself behind: not ansible-playbook's workers (each
    in a process group of its own), not the task's `sleep`."""
    marker = f"HARNESS_TEST_TIMEOUT={tmp_path.name}-{id(tmp_path)}"
    key, value = marker.split("=", 1)
    r = run_playbook(tmp_path, "slow.yml", ident="slow", inventory=_inventory(tmp_path), project_dir=project,
                     timeout=3, envvars={key: value})
    assert r.status == "timeout" and not r.ok
    assert r.summary.startswith("slow.yml timed out after 3s during") and "Long drain" in r.summary
    assert _processes_with_env(marker) == [], "processes of the timed-out run survived it"


HUNG = """\
- name: Upgrade that hangs
  hosts: all
  gather_facts: false
  tasks:
    - name: Look first
      ansible.builtin.command: "true"
      changed_when: false
    - name: Drain that never ends
      # The shell's pid and the run's mark go to a file, then the shell becomes the sleep itself.
      ansible.builtin.shell: "echo $$ $HARNESS_RUN_ID > {{ seen_dir }}/{{ inventory_hostname }}; exec sleep 600"
"""


def test_hung_task_fails_at_the_stage_timeout_naming_it_and_nothing_survives(tmp_path: Path) -> None:
    """Through run_stage, as the pipeline runs a stage: a task that sleeps past the stage's timeout ends
    the stage as a timeout naming the task and the hosts it hung on, and no process of the run is left:
    not ansible-playbook, not its workers, not the `sleep` on the (local) target."""
    book = tmp_path / "hung.yml"
    book.write_text(HUNG)
    seen = tmp_path / "seen"
    seen.mkdir()
    pdd = tmp_path / "pdd"
    stage = Stage(ident="04-upgrade", purpose="upgrade", playbook=str(book), runner="harness",
                  extravars={"seen_dir": str(seen)})
    r = run_stage(stage, pdd, _inventory(pdd), timeout=10)  # ansible-playbook starts within it, even on a busy machine
    assert r.status == "timeout" and not r.ok
    assert r.summary.splitlines()[0] == (
        f"{book} timed out after 10s during [Upgrade that hangs] 'Drain that never ends', still running on node1, node2"
    )
    assert [t.task for t in r.records] == ["Look first", "Look first"]  # the hung task has no result
    # The sleeps really ran, carrying the run's mark: the count below is of something that existed.
    sleepers = {p.name: p.read_text().split() for p in seen.iterdir()}
    assert sorted(sleepers) == ["node1", "node2"] and {m for _pid, m in sleepers.values()} == {r.run_mark}
    assert r.run_mark and len(interrupt.run_processes(r.run_mark)) == 0
    for pid, _mark in sleepers.values():
        assert not Path(f"/proc/{pid}").exists() or _state(int(pid)) == "Z", f"sleep {pid} of the run survived"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


FLAKY = """\
- name: Flaky network
  hosts: all
  gather_facts: false
  tasks:
    - name: Fetch from the files repo
      # Fails on its first two attempts per host (a guest whose network is not up yet), then works.
      ansible.builtin.shell: >-
        n=$(cat {{ seen_dir }}/{{ inventory_hostname }} 2>/dev/null || echo 0);
        echo $((n + 1)) > {{ seen_dir }}/{{ inventory_hostname }};
        if [ "$n" -lt 2 ]; then echo '[Errno 101] Network is unreachable' >&2; exit 1; fi
      register: fetched
      until: fetched is succeeded
      retries: 4
      delay: 0
"""


def test_retried_tasks_and_unreachable_hosts_are_notes(project: Path, tmp_path: Path, failed_run: RunResult) -> None:
    """A retry that hid a transient failure is reported, with what the failed attempts said."""
    book = tmp_path / "flaky.yml"
    book.write_text(FLAKY)
    pdd = tmp_path / "pdd"
    r = run_playbook(pdd, str(book), ident="04-upgrade", inventory=_inventory(pdd), project_dir=project,
                     extravars={"seen_dir": str(tmp_path)})
    assert r.ok, r.summary
    assert sorted(r.notes) == [
        f"04-upgrade: {h}: 'Fetch from the files repo' retried 2 time(s) (then changed); last failed attempt:"
        " non-zero return code; stderr: [Errno 101] Network is unreachable" for h in ("node1", "node2")
    ]
    # The failed run's unreachable host is a note too (besides its summary).
    [unreachable] = [n for n in failed_run.notes if "unreachable at" in n]
    assert unreachable.startswith("03-upgrade: node3 unreachable at 'Read the version': ")


def test_runs_the_chosen_venvs_ansible(project: Path, tmp_path: Path) -> None:
    """A Kubespray ref's venv: its bin/ansible-playbook is the one that runs (PATH, not the harness's)."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    marker = tmp_path / "used"
    real = Path(sys.executable).parent / "ansible-playbook"
    wrapper = venv / "bin" / "ansible-playbook"
    wrapper.write_text(f'#!/bin/sh\necho "$VIRTUAL_ENV" > {marker}\nexec {real} "$@"\n')
    wrapper.chmod(0o755)
    r = run_playbook(tmp_path / "pdd", "idem.yml", ident="v", inventory=_inventory(tmp_path / "pdd"),
                     project_dir=project, venv=venv)
    assert r.ok
    assert marker.read_text().strip() == str(venv)
    with pytest.raises(Exception, match="no ansible-playbook in virtualenv"):
        ansible_binary(tmp_path / "nope")


def test_progress_names_each_play_and_the_outcome(project: Path, tmp_path: Path) -> None:
    """A CI log (no terminal) shows the stage, every play as it starts, and how the stage ended."""
    from rich.console import Console

    from harness import progress

    console = Console(record=True, force_terminal=False, force_interactive=False, width=200)
    progress.use(console)
    try:
        r = run_playbook(tmp_path, "idem.yml", ident="p", inventory=_inventory(tmp_path), project_dir=project,
                         show_progress=True)
    finally:
        progress.use(None)
    assert r.ok
    out = console.export_text()
    plays = [json.loads(line)["play"] for line in r.timeline_path.read_text().splitlines()]
    assert plays, "the playbook ran no task"
    assert out.splitlines()[0] == "… ansible p"
    for play in set(plays):
        assert f"play {play}" in out
    assert "✓ ansible p" in out.splitlines()[-1]
