"""The lab installer's etcd certificate script, rendered and run for real (openssl on this machine):
it must leave Kubespray's whole set on the first member (ca, member-/admin- per etcd host, node- per
host), so Kubespray's etcd role over a lab baseline finds nothing to generate or resync."""

from __future__ import annotations

import base64
import io
import subprocess
import tarfile
from pathlib import Path

import jinja2

TEMPLATE = Path(__file__).parents[1] / "playbooks" / "lab" / "roles" / "etcd" / "templates" / "make-certs.sh.j2"
HOSTS = {"node1": "10.1.0.11", "node2": "10.1.0.12", "node3": "10.1.0.13"}


def _run(existing: str = "") -> tuple[str, dict[str, bytes]]:
    script = jinja2.Template(TEMPLATE.read_text()).render(
        groups={"etcd": ["node1", "node2", "node3"], "all": ["node3", "node1", "node2"]},
        hostvars={h: {"ansible_host": a} for h, a in HOSTS.items()},
        etcd_cert_days=30,
    )
    out = subprocess.run(["bash", "-c", script], input=existing, capture_output=True, text=True, check=True)
    status, blob = out.stdout.splitlines()[0], out.stdout.splitlines()[-1]
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(blob))) as tar:
        files = {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}  # type: ignore[union-attr]
    return status + "\n" + blob, files


def test_makes_kubesprays_whole_set_and_keeps_it() -> None:
    first, files = _run()
    assert first.startswith("GENERATED")
    expected = {"ca.pem", "ca-key.pem"} | {f"{kind}-{h}{sfx}.pem" for kind in ("member", "admin", "node")
                                            for h in HOSTS for sfx in ("", "-key")}
    assert set(files) == expected
    again, same = _run(first.splitlines()[-1])
    assert again.startswith("UNCHANGED") and same == files


def test_node_certs_are_client_certs_signed_by_the_ca(tmp_path: Path) -> None:
    _, files = _run()
    for name in ("ca.pem", "node-node2.pem"):
        (tmp_path / name).write_bytes(files[name])
    verify = subprocess.run(["openssl", "verify", "-purpose", "sslclient", "-CAfile", str(tmp_path / "ca.pem"),
                             str(tmp_path / "node-node2.pem")], capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-noout", "-subject", "-ext", "subjectAltName", "-in",
                           str(tmp_path / "node-node2.pem")], capture_output=True, text=True, check=True).stdout
    assert "etcd-node-node2" in text and "10.1.0.12" in text
