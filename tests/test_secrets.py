"""Secrets never leave a run. A real playbook runs on localhost through the harness's runner and
prints what an upgrade can print: a bearer token, a private key, a certificate, a kubeconfig with
client-key-data (`cat`, then a debug of the registered result and of its `stdout_lines`), and fails
with the kubeconfig as its message. The run is saved as the pipeline saves it (run.json, facts.json)
and its playbook check is reported to JUnit by a real pytest run. Then every file is scanned: no
planted value anywhere, nothing secret-shaped (`find_secrets`), and the masks where the secrets were.

The key and certificate are made by openssl for this test; the tokens are random per run.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import proc
from harness.checks import suite
from harness.installer.inventory import write_inventory
from harness.probes import collected
from harness.probes.facts import to_jsonable
from harness.record import ScenarioRun, StepOutcome
from harness.scenario.loader import load_catalogue
from harness.upgrade.masking import MASK, find_secrets
from harness.upgrade.runner import RunResult, run_playbook

IDENT = "03-upgrade"
ENV_NAME = "HARNESS_TEST_CREDENTIAL"  # a caller's variable of no telling name: ansible-runner saves the environment


@dataclass(frozen=True)
class Planted:
    dir: Path  # the inputs: key.pem, cert.pem, admin.conf (outside everything the run writes)
    bearer: str
    kube_token: str
    env_value: str
    key: str
    cert: str

    @property
    def values(self) -> dict[str, str]:
        """name -> a value that must appear in nothing the run writes."""
        b64 = {"key base64": base64.b64encode(self.key.encode()).decode(),
               "cert base64": base64.b64encode(self.cert.encode()).decode()}
        body = {f"{what} line {i}": line for what, pem in (("key", self.key), ("cert", self.cert))
                for i, line in enumerate(pem.splitlines()[1:-1]) if len(line) >= 16}
        return {"bearer": self.bearer, "kubeconfig token": self.kube_token, "env": self.env_value, **b64, **body}


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> Planted:
    d = tmp_path_factory.mktemp("inputs")
    proc.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
              "-keyout", str(d / "key.pem"), "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=harness-planted"])
    p = Planted(d, "planted0bearer0" + secrets.token_hex(12), "planted0kube0token0" + secrets.token_hex(12),
                "planted0env0" + secrets.token_hex(12), (d / "key.pem").read_text(), (d / "cert.pem").read_text())
    b64 = {k: base64.b64encode(v.encode()).decode() for k, v in (("key", p.key), ("cert", p.cert))}
    (d / "admin.conf").write_text(f"""\
apiVersion: v1
kind: Config
clusters:
- cluster:
    certificate-authority-data: {b64["cert"]}
    server: https://127.0.0.1:6443
  name: cluster.local
users:
- name: kubernetes-admin
  user:
    client-certificate-data: {b64["cert"]}
    client-key-data: {b64["key"]}
    token: {p.kube_token}
""")
    return p


def _playbook(p: Planted) -> str:
    return f"""\
- name: Upgrade that talks too much
  hosts: all
  gather_facts: false
  tasks:
    - name: Call the API
      ansible.builtin.command: "echo 'curl -H \\"Authorization: Bearer {p.bearer}\\" https://127.0.0.1:6443/version'"
    - name: Show the key
      ansible.builtin.command: cat {p.dir / "key.pem"}
      register: key_out
    - name: Show the certificate
      ansible.builtin.command: cat {p.dir / "cert.pem"}
    - name: Show the kubeconfig
      ansible.builtin.command: cat {p.dir / "admin.conf"}
      register: kc
    - name: Debug the kubeconfig
      ansible.builtin.debug:
        var: kc
    - name: Debug the key lines
      ansible.builtin.debug:
        msg: "{{{{ key_out.stdout_lines }}}}"
    - name: Fail with the kubeconfig
      ansible.builtin.fail:
        msg: "{{{{ kc.stdout }}}}"
"""


@dataclass(frozen=True)
class LeakRun:
    run_dir: Path  # what the pipeline writes for one scenario: runner/<ident>/..., run.json, facts.json
    result: RunResult


@pytest.fixture(scope="module")
def leak_run(planted: Planted, tmp_path_factory: pytest.TempPathFactory) -> LeakRun:
    project = tmp_path_factory.mktemp("project")  # the playbook is an input, not something the run writes
    (project / "leak.yml").write_text(_playbook(planted))
    run_dir = tmp_path_factory.mktemp("artifacts") / "leak"
    pdd = run_dir / "runner" / IDENT  # where the pipeline puts a stage's private data dir
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inventory = write_inventory(pdd, {"all": {"hosts": {"node1": local}}}, {}) / "hosts.yml"
    result = run_playbook(pdd, "leak.yml", ident=IDENT, inventory=inventory, project_dir=project, timeout=300,
                          envvars={ENV_NAME: planted.env_value})
    # Saved as the pipeline saves a run whose stage failed: its outcome carries the run's summary.
    run = ScenarioRun(load_catalogue(None)[0], run_dir)
    run.outcomes["upgrade"] = StepOutcome("upgrade", False, 1.0, f"stage {IDENT} (leak.yml) failed:\n{result.summary}")
    run.results["upgrade"] = result
    run.facts = collected.Facts(nodes={"node1": ("etcd",)}, runs=suite.run_records(run.results),
                            timeline=suite.run_timeline(run.results))
    run.save()
    return LeakRun(run_dir, result)


def _junit(leak_run: LeakRun, pytester: pytest.Pytester) -> Path:
    """The playbook check's item, reported by a real pytest run to JUnit (its failure message carries
    the run's summary, as the scenario items do)."""
    record = leak_run.run_dir / "record.json"
    record.write_text(json.dumps(to_jsonable(collected.RunRecord.of(leak_run.result))))
    pytester.makepyfile(test_reported=f"""
        import json
        from datetime import datetime, timezone
        from harness.checks import suite
        from harness.probes import collected
        from harness.checks.result import assert_check
        from harness.probes.facts import PreUpgradeRecord

        def test_playbook_run():
            data = json.loads(open({str(record)!r}).read())
            data["failed_at"] = tuple(data["failed_at"])
            facts = collected.Facts(nodes={{"node1": ("etcd",)}}, runs={{"upgrade": collected.RunRecord(**data)}})
            before = PreUpgradeRecord(datetime.now(timezone.utc))
            expect = suite.Expectation(upgrade=suite.UpgradeExpectation("full", frozenset(), before))
            (result,) = suite.judge(facts, expect, ["playbook run"])
            print(result.message)
            assert_check(result)
    """)
    junit = leak_run.run_dir / "junit.xml"
    pytester.runpytest("-p", "no:cacheprovider", f"--junitxml={junit}").assert_outcomes(failed=1)
    return junit


def test_the_playbook_printed_every_secret(leak_run: LeakRun) -> None:
    """The run really went through every task (so there was something to mask) and ended failed."""
    r = leak_run.result
    assert r.status == "failed" and r.failures()["node1"].task == "Fail with the kubeconfig"
    tasks = {x.task for x in r.records}
    assert {"Call the API", "Show the key", "Show the certificate", "Show the kubeconfig", "Debug the kubeconfig",
            "Debug the key lines"} <= tasks


def test_the_scanner_finds_the_planted_secrets_in_their_inputs(planted: Planted) -> None:
    """The inputs hold every kind the run printed: a scan that finds nothing afterwards means something."""
    kinds = {kind for _path, kind in find_secrets(planted.dir)}
    assert {"private key", "certificate", "base64 DER (a key or certificate body)", "base64 PEM (kubeconfig data)",
            "kubeconfig credential", "token"} <= kinds
    bearer = planted.dir / "bearer.txt"
    bearer.write_text(f"Authorization: Bearer {planted.bearer}\n")
    assert find_secrets(bearer) == [(bearer, "bearer token")]
    bearer.unlink()


def test_nothing_a_run_writes_holds_a_secret(leak_run: LeakRun, planted: Planted, pytester: pytest.Pytester) -> None:
    junit = _junit(leak_run, pytester)
    pdd_artifacts = leak_run.run_dir / "runner" / IDENT / "artifacts" / IDENT
    written = {p.relative_to(leak_run.run_dir).as_posix() for p in leak_run.run_dir.rglob("*") if p.is_file()}
    for must in ("run.json", "facts.json", "junit.xml", f"runner/{IDENT}/artifacts/{IDENT}/stdout",
                 f"runner/{IDENT}/artifacts/{IDENT}/timeline.jsonl", f"runner/{IDENT}/artifacts/{IDENT}/summary.txt",
                 f"runner/{IDENT}/artifacts/{IDENT}/command"):
        assert must in written, f"the run did not write {must}: the scan would miss it"
    assert any(w.startswith(f"runner/{IDENT}/artifacts/{IDENT}/job_events/") for w in written)

    leaks = [(p.relative_to(leak_run.run_dir).as_posix(), name)
             for p in sorted(leak_run.run_dir.rglob("*")) if p.is_file()
             for name, value in planted.values.items() if value in p.read_text(errors="replace")]
    assert leaks == []
    assert find_secrets(leak_run.run_dir) == []

    # Masked, not dropped: the placeholders stand where the secrets were.
    stdout = (pdd_artifacts / "stdout").read_text()
    for mask in ("-----BEGIN PRIVATE KEY-----" + MASK + "-----END PRIVATE KEY-----",
                 "client-key-data: " + MASK, "token: " + MASK):
        assert mask in stdout, mask
    events = [json.loads(p.read_text()) for p in (pdd_artifacts / "job_events").glob("*.json")]
    ok = {e["event_data"]["task"]: e["event_data"]["res"] for e in events if e["event"] == "runner_on_ok"}
    assert ok["Call the API"]["stdout"] == f"curl -H \"Authorization: Bearer {MASK}\" https://127.0.0.1:6443/version"
    assert ok["Show the certificate"]["stdout"] == "-----BEGIN CERTIFICATE-----" + MASK + "-----END CERTIFICATE-----"
    lines = ok["Debug the key lines"]["msg"]  # stdout_lines: the body's lines one by one
    assert lines[0].startswith("-----BEGIN PRIVATE KEY-----") and set(lines[1:-1]) == {MASK}
    assert lines[-1] == "-----END PRIVATE KEY-----"
    summary = (pdd_artifacts / "summary.txt").read_text()
    assert "failed at [Upgrade that talks too much] 'Fail with the kubeconfig'" in summary
    assert "client-key-data: " + MASK in summary and "server: https://127.0.0.1:6443" in summary
    assert "client-key-data: " + MASK in (leak_run.run_dir / "facts.json").read_text()
    assert "client-key-data: " + MASK in (leak_run.run_dir / "run.json").read_text()
    assert json.loads((pdd_artifacts / "command").read_text())["env"][ENV_NAME] == MASK

    report = junit.read_text()
    assert "Fail with the kubeconfig" in report and "client-key-data: " + MASK in report
    assert find_secrets(junit) == []

