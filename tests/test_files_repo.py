"""The offline files repo: a real build from the Debian archive (cached), its layout, checksums and server."""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import sys
import tarfile
import time
import uuid
from pathlib import Path

import pytest
import yaml

from harness import proc
from harness.errors import InstallerError
from harness.installer import files_repo as fr

# -- pure parts ---------------------------------------------------------------


def test_url_paths_are_kubespray_release_paths() -> None:
    assert fr.url_path("etcd", "3.5.16") == "github.com/etcd-io/etcd/releases/download/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"
    assert (
        fr.url_path("containerd", "1.7.24")
        == "github.com/containerd/containerd/releases/download/v1.7.24/containerd-1.7.24-linux-amd64.tar.gz"
    )
    assert fr.url_path("runc", "v1.1.15") == "github.com/opencontainers/runc/releases/download/v1.1.15/runc.amd64"
    with pytest.raises(InstallerError, match="no component"):
        fr.url_path("kubelet", "1.35.4")


def test_upstream_version_of_debian_versions() -> None:
    assert fr._upstream("3.4.23-4+b4") == "3.4.23"
    assert fr._upstream("1.7.24~ds1-6+deb13u1") == "1.7.24"
    assert fr._upstream("2.1.9+ds1-5") == "2.1.9"
    assert fr._upstream("1:1.1.5+ds1-1") == "1.1.5"


def test_debian_mirror_from_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HARNESS_DEBIAN_MIRROR", raising=False)
    deb822 = tmp_path / "debian.sources"
    deb822.write_text(
        "Types: deb\nURIs: http://deb.example.org/debian-security\nSuites: bookworm-security\nComponents: main\n\n"
        "Types: deb\nURIs: http://deb.example.org/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n"
    )
    assert fr.debian_mirror([deb822]) == "http://deb.example.org/debian"
    one_line = tmp_path / "sources.list"
    one_line.write_text("# comment\ndeb [arch=amd64] http://mirror.example/debian bookworm main\n")
    assert fr.debian_mirror([one_line]) == "http://mirror.example/debian"
    third_party = tmp_path / "x.sources"
    third_party.write_text("Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n")
    with pytest.raises(Exception, match="no Debian mirror"):
        fr.debian_mirror([third_party])
    monkeypatch.setenv("HARNESS_DEBIAN_MIRROR", "http://override/debian/")
    assert fr.debian_mirror([third_party]) == "http://override/debian"


def test_bad_requests_are_refused_before_any_download(tmp_path: Path) -> None:
    with pytest.raises(InstallerError, match="cannot hold"):
        fr.build({"kubelet": ["1.35.4"]}, root=tmp_path / "r")
    with pytest.raises(InstallerError, match="not X.Y.Z"):
        fr.build({"etcd": ["3.5"]}, root=tmp_path / "r")


# -- a real build, cached in the harness cache ---------------------------------


@pytest.fixture(scope="module")
def repo() -> fr.FilesRepo:
    if not shutil.which("apt-get") or not shutil.which("objdump"):
        pytest.skip("building the files repo needs apt-get, dpkg-deb and objdump (Debian)")
    # The default root: a first build downloads ~190 MB of Debian packages, later ones are instant.
    return fr.build(fr.default_versions())


def test_repo_holds_every_default_version_at_its_url_path(repo: fr.FilesRepo) -> None:
    for comp, versions in fr.default_versions().items():
        for v in versions:
            a = repo.artifact(comp, v)
            assert a.path == fr.url_path(comp, v)
            assert (repo.root / a.path).is_file()
            assert a.glibc is None or fr._glibc_key(a.glibc) <= fr._glibc_key(fr.GUEST_GLIBC), a


def test_checksum_files_agree_with_the_files(repo: fr.FilesRepo) -> None:
    sums = {}
    for line in (repo.root / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split("  ", 1)
        sums[path] = digest
    ks = yaml.safe_load((repo.root / "checksums.yml").read_text())
    for (comp, v), a in repo.artifacts.items():
        real = hashlib.sha256((repo.root / a.path).read_bytes()).hexdigest()
        assert sums[a.path] == real == a.sha256
        var = {"etcd": "etcd_binary_checksums", "containerd": "containerd_archive_checksums",
               "runc": "runc_checksums"}[comp]  # Kubespray's names
        assert ks[var]["amd64"][v] == f"sha256:{real}"
    # sha256sum itself agrees, as an operator would check it.
    assert proc.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=str(repo.root)).ok


def test_tarballs_have_the_upstream_layout(repo: fr.FilesRepo) -> None:
    with tarfile.open(repo.path("etcd", "3.5.16")) as t:
        assert sorted(t.getnames()) == [
            "etcd-v3.5.16-linux-amd64",
            "etcd-v3.5.16-linux-amd64/etcd",
            "etcd-v3.5.16-linux-amd64/etcdctl",
            "etcd-v3.5.16-linux-amd64/etcdutl",
        ]
    with tarfile.open(repo.path("etcd", "3.4.23")) as t:  # etcdutl arrived in 3.5
        assert "etcd-v3.4.23-linux-amd64/etcdutl" not in t.getnames()
        assert "etcd-v3.4.23-linux-amd64/etcdctl" in t.getnames()
    for v in fr.default_versions()["containerd"]:
        with tarfile.open(repo.path("containerd", v)) as t:
            names = t.getnames()
            assert {"bin/containerd", "bin/containerd-shim-runc-v2", "bin/ctr"} <= set(names)
            assert all(n == "bin" or n.startswith("bin/") for n in names)
            assert all(m.mode & 0o111 for m in t.getmembers() if m.isfile())
    runc = repo.path("runc", "1.1.5")
    assert runc.read_bytes()[:4] == b"\x7fELF" and os.access(runc, os.X_OK)


def test_binaries_report_their_versions(repo: fr.FilesRepo, tmp_path: Path) -> None:
    """They run here (glibc 2.36, like the guests) and say the version their path names."""
    with tarfile.open(repo.path("etcd", "3.5.16")) as t:
        t.extractall(tmp_path, filter="data")
    out = proc.run([str(tmp_path / "etcd-v3.5.16-linux-amd64" / "etcd"), "--version"]).stdout
    assert "etcd Version: 3.5.16" in out
    # trixie's runc asked for GLIBC_2.38 through __isoc23_strtol; relinked, it runs on glibc 2.36.
    a = repo.artifact("runc", "1.1.15")
    assert any("__isoc23_strtol" in p for p in a.patched)
    objdump = proc.run(["objdump", "-T", str(repo.path("runc", "1.1.15"))]).stdout
    assert "GLIBC_2.38" not in objdump and "__isoc23" not in objdump
    assert "runc version 1.1.15" in proc.run([str(repo.path("runc", "1.1.15")), "--version"]).stdout


def test_second_build_is_instant_and_identical(repo: fr.FilesRepo) -> None:
    start = time.monotonic()
    again = fr.build(fr.default_versions())
    assert time.monotonic() - start < 2
    assert again.artifacts == repo.artifacts
    assert fr.FilesRepo.load(repo.root).artifacts == repo.artifacts


def test_missing_version_is_named(repo: fr.FilesRepo) -> None:
    with pytest.raises(InstallerError, match="no etcd 9.9.9.*3.4.23"):
        repo.artifact("etcd", "9.9.9")


# -- serving inside a network namespace ---------------------------------------


@pytest.fixture
def netns() -> str:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    if not shutil.which("ip"):
        pytest.skip("needs iproute2")
    name = f"hfr-{uuid.uuid4().hex[:8]}"
    proc.run(["ip", "netns", "add", name])
    try:
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
        yield name
    finally:
        pids = proc.run(["ip", "netns", "pids", name], check=False).stdout.split()
        proc.run(["ip", "netns", "delete", name], check=False)
        assert not pids, f"processes left in {name}: {pids}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_inside_namespace_and_stop_leaves_nothing(netns: str, tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "github.com").mkdir(parents=True)
    (root / "github.com" / "hello.txt").write_text("from the files repo\n")
    port = _free_port()
    server = fr.serve(root, netns, "127.0.0.1", port)
    try:
        assert server.running()
        fetch = (
            "import urllib.request, sys;"
            f"sys.stdout.write(urllib.request.urlopen('{server.url()}/github.com/hello.txt', timeout=5).read().decode())"
        )
        assert proc.run([sys.executable, "-c", fetch], netns=netns).stdout == "from the files repo\n"
        # Inside the namespace only: the root namespace's loopback has nothing on that port.
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()
        pid = server.pid
        assert pid is not None
        assert str(pid) in proc.run(["ip", "netns", "pids", netns]).stdout.split()
    finally:
        server.stop()
    assert not server.running()
    assert proc.run(["ip", "netns", "pids", netns]).stdout.split() == []
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    server.stop()  # twice is harmless


def test_serve_reports_a_server_that_cannot_start(netns: str, tmp_path: Path) -> None:
    port = _free_port()
    first = fr.serve(tmp_path, netns, "127.0.0.1", port)
    try:
        with pytest.raises(InstallerError, match="exited"):
            fr.serve(tmp_path, netns, "127.0.0.1", port)
    finally:
        first.stop()
    assert proc.run(["ip", "netns", "pids", netns]).stdout.split() == []


def test_serve_refuses_a_missing_namespace(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    with pytest.raises(InstallerError, match="does not exist"):
        fr.serve(tmp_path, f"nope-{uuid.uuid4().hex[:6]}")
