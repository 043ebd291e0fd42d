"""The plant's etcd sentinels for real, on the path every cluster takes: the before step's round trip
(HostProbe.all_facts_and_plant, harness.probes.plant) on this machine as a static cluster's local
etcd node, with a real etcd that speaks TLS and wants client certificates (as Kubespray's does with its
per-host admin certs), and Debian's etcdctl. The etcdctl is extracted into a private directory put on
PATH for these tests only, not installed: other localhost tests rely on there being none.

The keys are read back through etcd's own JSON gateway, not through the plant's record; an etcd that
never serves fails the plant, saying so.
"""

from __future__ import annotations

import base64
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.cluster.static import StaticProvider
from harness.probes.facts import HostFacts
from harness.probes.hosts import EtcdTLS, HostProbe
from harness.probes.plant import Plant, Planted, parse_planted, planted_keys, sentinel_record
from tests.test_disruption import ETCD, EtcdCluster, _etcd, _free_ports


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


def _plant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bin_dir: Path, tls: EtcdTLS,
           **plant: int) -> tuple[list[tuple[HostFacts, Planted]], Plant]:
    """The before step's facts-and-plant round trip on this machine as the cluster's one etcd node."""
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    inventory = tmp_path / "hosts.ini"
    inventory.write_text("[etcd]\nnode1 ansible_connection=local ansible_host=127.0.0.1\n")
    cluster = StaticProvider(inventory).cluster()
    # No containerd socket here: the canary is only recorded.
    spec = Plant(etcd_node="node1", socket=str(tmp_path / "no-containerd" / "containerd.sock"), **plant)
    probe = HostProbe(cluster, tls=tls, installer="lab", canary_dir=str(tmp_path / "canary"))
    return probe.all_facts_and_plant(spec), spec


@pytest.mark.skipif(ETCD is None, reason="no etcd binary: install Debian's etcd-server (ci/setup does)")
def test_sentinels_are_written_over_tls_and_read_back(etcd_tls: EtcdCluster, etcdctl_dir: Path, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    tls = etcd_tls.tls
    probe_tls = EtcdTLS(cacert=tls.ca, cert=tls.cert, key=tls.key, endpoint=etcd_tls.members[0].url)
    ((facts, planted),), spec = _plant(tmp_path, monkeypatch, etcdctl_dir, probe_tls)
    assert facts.error is None and facts.boot_id, facts  # the host facts rode the same round trip
    assert planted.etcd is True, planted
    record = sentinel_record(spec, [planted])
    assert record["host"] == "node1" and record["planted"] is True and not record["failed"]
    assert planted_keys(record) == dict(spec.sentinels)
    with etcd_tls.client() as c:
        for key, value in spec.sentinels:
            got = c.post(f"{etcd_tls.members[0].url}/v3/kv/range",
                         json={"key": base64.b64encode(key.encode()).decode()}).json()
            (kv,) = got["kvs"]
            assert base64.b64decode(kv["value"]).decode() == value  # no newline added by the put
    # The canary's part ran on the same node and only recorded why it planted nothing.
    assert planted.canary["state"] == "error" and "no-containerd" in planted.canary["reason"], planted.canary


@pytest.mark.skipif(ETCD is None, reason="no etcd binary: install Debian's etcd-server (ci/setup does)")
def test_an_etcd_that_never_serves_fails_the_plant(etcd_tls: EtcdCluster, etcdctl_dir: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    tls = etcd_tls.tls
    (closed,) = _free_ports(1)
    probe_tls = EtcdTLS(cacert=tls.ca, cert=tls.cert, key=tls.key, endpoint=f"https://127.0.0.1:{closed}")
    ((_facts, planted),), spec = _plant(tmp_path, monkeypatch, etcdctl_dir, probe_tls, etcd_tries=2)
    assert planted.etcd is False and "etcd does not serve" in (planted.etcd_error or ""), planted
    record = sentinel_record(spec, [planted])
    assert record["failed"] and not record["planted"]
    assert planted_keys(record) == {}  # nothing the checks would look for


def test_a_node_without_etcdctl_records_why_and_plants_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # PATH_PREFIX adds /usr/local/bin and the sbins
    if any((Path(d) / "etcdctl").exists() for d in ("/usr/local/bin", "/usr/local/sbin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")):
        pytest.skip("this machine has an etcdctl installed")
    ((_facts, planted),), spec = _plant(tmp_path, monkeypatch, empty, EtcdTLS())
    assert planted.etcd is None and planted.etcd_error == "no etcdctl on the node", planted
    record = sentinel_record(spec, [planted])
    assert not record["planted"] and not record["failed"]  # recorded; the planted-state check judges it


def test_a_cut_short_script_is_an_error_record_not_a_plant() -> None:
    """Output that stops before the plant's sections (a probe killed mid-script): nothing counts as
    planted, and the etcd node's part reads as a failure, which stops the before step."""
    text = "@@section boot_id\n0b7a2e8e-0000-4000-8000-000000000000\n@@rc 0\n"
    on_etcd = parse_planted("node1", text, etcd_node=True)
    assert on_etcd.etcd is False and "did not run" in (on_etcd.etcd_error or "")
    assert on_etcd.canary["state"] == "error" and "did not run" in on_etcd.canary["reason"]
    other = parse_planted("node2", text + "@@section plant-canary\nstate=absent\nreason=no ctr on the node\n@@rc 0\n",
                          etcd_node=False)
    assert other.etcd is None and other.canary == {"state": "absent", "reason": "no ctr on the node"}
    record = sentinel_record(Plant(etcd_node="node1"), [on_etcd, other])
    assert record["failed"] and planted_keys(record) == {}
