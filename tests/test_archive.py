"""The failure archive: a run dir with planted secrets (a token, a PEM private key, a certificate, a
kubeconfig with client-key-data) archived, then the archive scanned: none survives, the evidence does."""

from __future__ import annotations

import base64
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from harness.report.archive import archive_run, wanted
from harness.upgrade.masking import find_secrets


def _key_and_cert(tmp: Path) -> tuple[str, str]:
    """A real private key and self-signed certificate (openssl), so the shapes are the real ones."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=etcd-node1", "-days", "1",
                    "-keyout", str(tmp / "k.pem"), "-out", str(tmp / "c.pem")], check=True, capture_output=True)
    return (tmp / "k.pem").read_text(), (tmp / "c.pem").read_text()


TOKEN = "abcdef.0123456789abcdef0123"  # a bootstrap-token-like value
JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEifQ.eyJpc3MiOiJrdWJlcm5ldGVzL3NlcnZpY2VhY2NvdW50In0.c2lnbmF0dXJlc2lnbmF0dXJl"


@pytest.fixture
def planted(tmp_path: Path) -> tuple[Path, list[str]]:
    key, cert = _key_and_cert(tmp_path)
    run = tmp_path / "artifacts" / "lab-graceful"
    art = run / "runner" / "02-upgrade" / "artifacts" / "02-upgrade"
    (art / "job_events").mkdir(parents=True)
    kubeconfig = (
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: "
        + base64.b64encode(cert.encode()).decode() + "\n    server: https://10.0.0.1:6443\n  name: c\n"
        "users:\n- name: admin\n  user:\n    client-certificate-data: " + base64.b64encode(cert.encode()).decode()
        + "\n    client-key-data: " + base64.b64encode(key.encode()).decode() + "\n"
    )
    (run / "runner" / "02-upgrade" / "inventory" / "artifacts").mkdir(parents=True)
    (run / "runner" / "02-upgrade" / "inventory" / "artifacts" / "admin.conf").write_text(kubeconfig)
    # A job event whose stdout printed the key, and a token in a task's result.
    event = {"event": "runner_on_ok", "stdout": "ok: [node1]", "event_data": {"res": {
        "stdout": key, "stdout_lines": key.splitlines(), "token": TOKEN, "msg": f"Authorization: Bearer {JWT}"}}}
    (art / "job_events" / "7-abc.json").write_text(json.dumps(event))
    (art / "stdout").write_text(f"TASK [show]\nok: [node1] => kubeadm join --token {TOKEN}\n{cert}\n")
    (art / "command").write_text(json.dumps({"command": ["ansible-playbook"], "env": {"PATH": "/usr/bin",
                                                                                      "CI_TOKEN": TOKEN}}))
    journals = run / "03-collect" / "node1"
    journals.mkdir(parents=True)
    (journals / "journal-etcd.log").write_text(f"etcd started\nloaded key\n{key}\nserving client requests\n")
    (run / "03-collect" / "api").mkdir()
    (run / "03-collect" / "api" / "secrets.json").write_text(json.dumps(
        {"items": [{"metadata": {"name": "sa-token"}, "data": {"token": base64.b64encode(JWT.encode()).decode(),
                                                                 "ca.crt": base64.b64encode(cert.encode()).decode()}}]}))
    (run / "secrets").mkdir()
    (run / "secrets" / "token-default").write_text(TOKEN)  # minted by plant.yml: never archived
    (run / "run.json").write_text(json.dumps({"scenario": "lab-graceful", "outcomes": []}))
    (run / "timeline.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 16)
    (run / "etcd.db").write_bytes(bytes(range(256)))  # binary: cannot be scanned, left out
    body = "".join(line for line in key.splitlines() if not line.startswith("-----"))
    cert_body = "".join(line for line in cert.splitlines() if not line.startswith("-----"))
    return run, [TOKEN, JWT, body[:40], cert_body[:40], base64.b64encode(key.encode()).decode()[:40],
                 base64.b64encode(JWT.encode()).decode()[:40]]


def test_no_planted_secret_survives_the_archive(planted: tuple[Path, list[str]], tmp_path: Path) -> None:
    run, values = planted
    assert find_secrets(run)  # the planting worked: the dir itself is full of them
    archive = archive_run(run)
    assert archive == run.parent / "lab-graceful.tar.gz"
    out = tmp_path / "extracted"
    with tarfile.open(archive) as tar:
        tar.extractall(out, filter="data")
    assert find_secrets(out) == []
    blob = b"".join(p.read_bytes() for p in out.rglob("*") if p.is_file())
    for value in values:
        assert value.encode() not in blob, value
    # The evidence is still there around the masked parts.
    journal = (out / "lab-graceful" / "03-collect" / "node1" / "journal-etcd.log").read_text()
    assert journal.startswith("etcd started\nloaded key\n") and "serving client requests" in journal
    conf = (out / "lab-graceful" / "runner" / "02-upgrade" / "inventory" / "artifacts" / "admin.conf").read_text()
    assert "server: https://10.0.0.1:6443" in conf
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "lab-graceful/timeline.png" in names and "lab-graceful/run.json" in names
    assert "lab-graceful/secrets/token-default" not in names and "lab-graceful/etcd.db" not in names
    manifest = (out / "lab-graceful" / "MANIFEST.txt").read_text()
    assert "secrets/token-default: minted secret, never archived" in manifest
    assert "etcd.db: binary, cannot be scanned for secrets" in manifest
    # The artifact dir itself is left as it was.
    assert (run / "secrets" / "token-default").read_text() == TOKEN


@pytest.mark.parametrize("mode,failed,want", [
    ("on-failure", True, True), ("on-failure", False, False), ("always", False, True), ("never", True, False),
])
def test_archive_modes(mode: str, failed: bool, want: bool) -> None:
    assert wanted(mode, failed=failed) is want


def test_a_bad_archive_option_names_the_option() -> None:
    from harness.options import OptionError, Options

    with pytest.raises(OptionError, match=r"--archive 'sometimes': choose one of on-failure, always, never"):
        Options.resolve(kubespray=None, from_ref=None, to_ref=None, provider="lab", inventory=None, keep="never",
                        artifacts="artifacts", scenario_files=None, archive="sometimes")
