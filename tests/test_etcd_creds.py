"""The disruption prober's etcd client credentials, copied off a node in one round trip
(harness.probes.setup.fetch_etcd_creds): this machine as a static cluster's local etcd node, its files
real, a `sudo` on PATH that runs its command (this process is root or the files are its own)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from harness.cluster.static import StaticProvider
from harness.errors import HarnessError
from harness.probes.hosts import EtcdTLS
from harness.probes.setup import drop_credentials, fetch_etcd_creds


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[object, Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sudo").write_text('#!/bin/sh\nexec "$@"\n')
    (bin_dir / "sudo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    ssl = tmp_path / "ssl"
    ssl.mkdir()
    for name in ("ca", "admin-node1", "admin-node1-key"):
        (ssl / f"{name}.pem").write_text(f"{name} bytes\n")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[etcd]\nnode1 ansible_connection=local ansible_host=127.0.0.1\n")
    return StaticProvider(inventory).cluster(), ssl


def _layout(ssl: Path, ca: str = "ca.pem") -> EtcdTLS:
    return EtcdTLS(cacert=str(ssl / ca), cert=str(ssl / "admin-{node}.pem"), key=str(ssl / "admin-{node}-key.pem"))


def test_credentials_are_copied_0600_into_the_state_dir(node: tuple[object, Path]) -> None:
    cluster, ssl = node
    files = fetch_etcd_creds(cluster, "node1", _layout(ssl))  # type: ignore[arg-type]
    for got, want in ((files.ca, "ca"), (files.cert, "admin-node1"), (files.key, "admin-node1-key")):
        assert Path(got).read_text() == f"{want} bytes\n"
        assert stat.S_IMODE(Path(got).stat().st_mode) == 0o600
        assert not str(got).startswith(str(ssl))
    drop_credentials(cluster)  # type: ignore[arg-type]
    assert not Path(files.key).exists()


def test_a_missing_file_is_named_and_nothing_is_printed(node: tuple[object, Path]) -> None:
    cluster, ssl = node
    with pytest.raises(HarnessError) as e:
        fetch_etcd_creds(cluster, "node1", _layout(ssl, ca="nope.pem"))  # type: ignore[arg-type]
    assert "2 of 3 files in the copy" in str(e.value) and f"{ssl / 'nope.pem'}: Cannot stat" in str(e.value)
    assert "bytes" not in str(e.value)  # the other files' contents never reach the message
