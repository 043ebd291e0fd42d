"""The plant's etcd sentinels for real, on the path a Kubespray cluster takes: playbooks/plant.yml run
against localhost in the `etcd` group, with a real etcd that speaks TLS and wants client certificates
(as Kubespray's does with its per-host admin certs), and Debian's etcdctl. The etcdctl is extracted
into a private directory, not installed: the other localhost plant tests rely on there being none on
PATH (their sentinels are recorded as not planted).

The keys are read back through etcd's own JSON gateway, not through the plant's record; an etcd that
never serves fails the plant, saying so.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_disruption import ETCD, EtcdCluster, _etcd, _free_ports

ANSIBLE_PLAYBOOK = Path(sys.executable).with_name("ansible-playbook")


@pytest.fixture(scope="module")
def etcdctl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Debian's etcd-client, as apt downloads it, unpacked: its usr/bin holds etcdctl."""
    d = tmp_path_factory.mktemp("etcd-client")
    def download() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["apt-get", "download", "etcd-client"], cwd=d, capture_output=True, text=True, check=False,
                              timeout=300)

    got = download()
    if got.returncode != 0 and os.geteuid() == 0:  # a machine whose package lists were never fetched
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False, timeout=600)
        got = download()
    assert got.returncode == 0, f"apt-get download etcd-client: {got.stderr.strip()[-500:]}"
    (deb,) = d.glob("etcd-client_*.deb")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(d / "root")], check=True, timeout=120)
    assert (d / "root" / "usr" / "bin" / "etcdctl").is_file()
    return d / "root" / "usr" / "bin"


@pytest.fixture
def etcd_tls(tmp_path: Path) -> Iterator[EtcdCluster]:
    """One member on 127.0.0.1 (its client port TLS with client certificates), stopped afterwards."""
    client, peer = _free_ports(2)
    yield from _etcd(tmp_path, [("m1", "127.0.0.1", client, peer)])


def _plant(tmp_path: Path, bin_dir: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[etcd]\nnode1 ansible_connection=local ansible_python_interpreter={sys.executable}\n")
    extravars = {
        "harness_plant_kubernetes": "false", "harness_out": str(tmp_path / "out"), "harness_become": "false",
        # The node's tools: the private etcdctl first; no containerd socket here, so the canary is only recorded.
        "harness_bin_path": f"{bin_dir}:/usr/local/bin:/usr/bin:/bin", "containerd_state_dir": str(tmp_path / "no-containerd"),
        "harness_canary_dir": str(tmp_path / "canary"), **extra,
    }
    argv = [str(ANSIBLE_PLAYBOOK), "-i", str(inventory), str(REPO / "playbooks" / "plant.yml")]
    for k, v in extravars.items():
        argv += ["-e", f"{k}={v}"]
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCALHOST_WARNING": "false"}
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(ETCD is None, reason="no etcd binary: install Debian's etcd-server (ci/setup does)")
def test_sentinels_are_written_over_tls_and_read_back(etcd_tls: EtcdCluster, etcdctl_dir: Path, tmp_path: Path) -> None:
    tls = etcd_tls.tls
    run = _plant(tmp_path, etcdctl_dir, harness_etcd_endpoint=etcd_tls.members[0].url,
                 harness_etcd_ca=tls.ca, harness_etcd_cert=tls.cert, harness_etcd_key=tls.key)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    record = json.loads((tmp_path / "out" / "etcd-sentinels.json").read_text())
    assert record["host"] == "node1" and record["planted"] is True
    with etcd_tls.client() as c:
        for key in record["keys"]:
            got = c.post(f"{etcd_tls.members[0].url}/v3/kv/range",
                         json={"key": base64.b64encode(key["key"].encode()).decode()}).json()
            (kv,) = got["kvs"]
            assert base64.b64decode(kv["value"]).decode() == key["value"]  # no newline added by the put
    # The canary's part ran on the same node and only recorded why it planted nothing.
    canaries = json.loads((tmp_path / "out" / "container-canaries.json").read_text())
    assert canaries["node1"]["state"] in ("absent", "error"), canaries


@pytest.mark.skipif(ETCD is None, reason="no etcd binary: install Debian's etcd-server (ci/setup does)")
def test_an_etcd_that_never_serves_fails_the_plant(etcd_tls: EtcdCluster, etcdctl_dir: Path, tmp_path: Path) -> None:
    tls = etcd_tls.tls
    (closed,) = _free_ports(1)
    run = _plant(tmp_path, etcdctl_dir, harness_etcd_endpoint=f"https://127.0.0.1:{closed}", harness_etcd_wait="2",
                 harness_etcd_ca=tls.ca, harness_etcd_cert=tls.cert, harness_etcd_key=tls.key)
    assert run.returncode != 0
    assert "etcd does not serve" in run.stdout, run.stdout[-3000:]
    assert not (tmp_path / "out" / "etcd-sentinels.json").exists()  # nothing recorded as planted
