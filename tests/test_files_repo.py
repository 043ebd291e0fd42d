"""The offline files repo: a real build from the Debian archive (cached), the Kubernetes binaries built from
source (../shared/kubernetes), their layout, checksums and server."""

from __future__ import annotations

import hashlib
import json
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
from harness.errors import InstallerError, PrerequisiteError
from harness.installer import files_repo as fr
from harness.installer import images

# -- pure parts ---------------------------------------------------------------


def test_url_paths_are_kubespray_release_paths() -> None:
    assert fr.url_path("etcd", "3.5.16") == "github.com/etcd-io/etcd/releases/download/v3.5.16/etcd-v3.5.16-linux-amd64.tar.gz"
    assert (
        fr.url_path("containerd", "1.7.24")
        == "github.com/containerd/containerd/releases/download/v1.7.24/containerd-1.7.24-linux-amd64.tar.gz"
    )
    assert fr.url_path("runc", "v1.1.15") == "github.com/opencontainers/runc/releases/download/v1.1.15/runc.amd64"
    # Kubespray's {{ dl_k8s_io_url }}/release/v{{ kube_version }}/bin/linux/{{ image_arch }}/kubelet, and the
    # server binaries Kubespray never downloads beside it.
    assert fr.url_path("kubelet", "1.32.0") == "dl.k8s.io/release/v1.32.0/bin/linux/amd64/kubelet"
    assert fr.url_path("kube-apiserver", "v1.31.9") == "dl.k8s.io/release/v1.31.9/bin/linux/amd64/kube-apiserver"
    with pytest.raises(InstallerError, match="no component"):
        fr.url_path("crictl", "1.35.0")


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


def _fake_kubernetes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A Kubernetes source with two sets' SHA256SUMS and no binaries (HARNESS_KUBERNETES)."""
    src = tmp_path / "kubernetes"
    for v in ("v1.31.9", "v1.32.0"):
        (src / v).mkdir(parents=True)
        (src / v / "SHA256SUMS").write_text(f"{'0' * 64}  kubelet\n{'1' * 64}  kubectl\n")
    monkeypatch.setenv("HARNESS_KUBERNETES", str(src))
    return src


def test_bad_requests_are_refused_before_any_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InstallerError, match="cannot hold"):
        fr.build({"crictl": ["1.35.0"]}, root=tmp_path / "r")
    with pytest.raises(InstallerError, match="not X.Y.Z"):
        fr.build({"etcd": ["3.5"]}, root=tmp_path / "r")
    _fake_kubernetes(tmp_path, monkeypatch)
    with pytest.raises(InstallerError, match=r"no Kubernetes kubelet 1\.35\.4 in .*kubernetes \(its sets: 1\.31\.9, 1\.32\.0\)"):
        fr.build({"kubelet": ["1.35.4"]}, root=tmp_path / "r")
    with pytest.raises(InstallerError, match=r"no Kubernetes kubeadm 1\.32\.0 .*its sets: none"):
        fr.build({"kubeadm": ["1.32.0"]}, root=tmp_path / "r")
    assert not (tmp_path / "r" / "dl.k8s.io").exists()


def test_kubernetes_source_is_named_when_absent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_KUBERNETES", str(tmp_path / "nowhere"))
    with pytest.raises(PrerequisiteError, match="no Kubernetes binaries at .*nowhere.*HARNESS_KUBERNETES"):
        fr.build({"kubelet": ["1.32.0"]}, root=tmp_path / "r")
    assert fr.kubernetes_sets(_fake_kubernetes(tmp_path, monkeypatch)) == {
        "1.31.9": frozenset({"kubelet", "kubectl"}), "1.32.0": frozenset({"kubelet", "kubectl"})}


def test_checksum_vars_are_kubesprays_shape_and_order(tmp_path: Path) -> None:
    """Tables by name, versions newest first as Kubespray lists them (its kube_version defaults to the first
    key of kubelet_checksums); a file Kubespray has no variable for is in SHA256SUMS only."""
    repo = fr.FilesRepo(tmp_path)
    for comp, v in (("kubelet", "1.31.9"), ("kubelet", "1.32.0"), ("kube-apiserver", "1.32.0"),
                    ("etcd", "3.4.23"), ("etcd", "3.5.16"), ("etcd", "3.5.30")):
        repo.artifacts[(comp, v)] = fr.Artifact(comp, v, fr.url_path(comp, v), f"{len(v):064x}", 1, (), (comp,), None)
    ks = repo.checksum_vars()
    assert list(ks) == ["etcd_binary_checksums", "kubelet_checksums"]
    assert list(ks["kubelet_checksums"]["amd64"]) == ["1.32.0", "1.31.9"]
    assert list(ks["etcd_binary_checksums"]["amd64"]) == ["3.5.30", "3.5.16", "3.4.23"]
    repo._write_indexes()
    written = yaml.safe_load((tmp_path / "checksums.yml").read_text())
    assert written == ks and list(written["kubelet_checksums"]["amd64"]) == ["1.32.0", "1.31.9"]  # order kept
    assert "dl.k8s.io/release/v1.32.0/bin/linux/amd64/kube-apiserver" in (tmp_path / "SHA256SUMS").read_text()


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
    # The default root is the harness cache's, shared: whoever built it with Kubernetes too left their
    # binaries there (the Kubernetes tests below check those); these are the Debian-made files.
    for (comp, v), a in repo.artifacts.items():
        if comp not in fr.default_versions():
            continue
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


def test_default_repo_holds_no_kubernetes() -> None:
    """Kubernetes binaries only when asked: a repo holding kubelet hands Kubespray a kubelet_checksums,
    which moves its default kube_version and what its downloads keep."""
    assert not set(fr.default_versions()) & set(fr.kubernetes_versions())
    assert fr._pod_images(fr._normalise(fr.default_versions()), None) == {}  # nor pod images
    assert set(fr.kubernetes_versions()) == {"kubelet", "kubectl", "kubeadm", "kube-apiserver",
                                             "kube-controller-manager", "kube-scheduler", "kube-proxy"}


# -- the Kubernetes binaries, unpacked into the cache and put at Kubespray's dl.k8s.io paths -------------


@pytest.fixture(scope="module")
def k8s_repo(tmp_path_factory: pytest.TempPathFactory) -> fr.FilesRepo:
    src = fr.kubernetes_source()
    if not (src / "unpack").is_file():
        pytest.skip(f"no Kubernetes binaries at {src} (set HARNESS_KUBERNETES)")
    absent = [t for t in ("xz", "xdelta3") if not shutil.which(t)]
    if absent:
        pytest.skip(f"unpacking the Kubernetes binaries needs {', '.join(absent)} (apt-get install xz-utils xdelta3)")
    # A repo of its own (the default one stays Debian-only); the unpacked binaries are the cache's, reused.
    return fr.build(fr.kubernetes_versions(), root=tmp_path_factory.mktemp("k8s") / "files-repo")


def test_kubernetes_binaries_at_kubesprays_paths_with_their_sums(k8s_repo: fr.FilesRepo) -> None:
    src = fr.kubernetes_source()
    ks = yaml.safe_load((k8s_repo.root / "checksums.yml").read_text())
    for comp, versions in fr.kubernetes_versions().items():
        for v in versions:
            a = k8s_repo.artifact(comp, v)
            assert a.path == f"dl.k8s.io/release/v{v}/bin/linux/amd64/{comp}"
            # The set's own SHA256SUMS, the repo's SHA256SUMS line and the manifest agree.
            assert fr._read_sums(src / f"v{v}" / "SHA256SUMS")[comp] == a.sha256
            assert a.origin == str(src / f"v{v}") and a.debs == () and a.glibc is None
            table = {"kubelet": "kubelet_checksums", "kubectl": "kubectl_checksums", "kubeadm": "kubeadm_checksums"}
            if comp in table:
                assert ks[table[comp]]["amd64"][v] == f"sha256:{a.sha256}"
    assert set(ks) == {"kubelet_checksums", "kubectl_checksums", "kubeadm_checksums"}
    assert proc.run(["sha256sum", "--quiet", "-c", "SHA256SUMS"], cwd=str(k8s_repo.root), timeout=300).ok


def test_kubernetes_cache_is_reused_and_linked(k8s_repo: fr.FilesRepo, tmp_path: Path) -> None:
    """The unpacked sets stay in the cache: while nothing changed its stamp skips the unpack; without
    the stamp unpack runs and rewrites nothing; a repo's files are hard links of the cache's (the cache
    and the repo share a file system here), not 1 GB more."""
    cache = fr.kubernetes_cache()
    kubelet = cache / "v1.32.0" / "kubelet"
    before = kubelet.stat()
    start = time.monotonic()
    fr.kubernetes_binaries()
    assert time.monotonic() - start < 2  # the stamp matched: no unpack, no re-hash
    (cache / ".unpacked.json").unlink()
    start = time.monotonic()
    fr.kubernetes_binaries()
    took = time.monotonic() - start
    after = kubelet.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns), "unpack rewrote a matching binary"
    assert took < 20, took  # a re-hash, not xz and xdelta3 again
    assert (cache / ".unpacked.json").is_file()
    if os.stat(k8s_repo.root).st_dev == before.st_dev:
        assert k8s_repo.path("kubelet", "1.32.0").stat().st_ino == before.st_ino
    # A second repo is built from the same cache: no unpack is needed for it to be right.
    other = fr.build({"kubelet": ["1.32.0"]}, root=tmp_path / "other")
    assert other.artifact("kubelet", "1.32.0").sha256 == k8s_repo.artifact("kubelet", "1.32.0").sha256


def test_kubernetes_repo_holds_each_sets_pod_images(k8s_repo: fr.FilesRepo) -> None:
    """images.images_for() of every set, at images/<name>_<tag>.tar, hard links of the images cache,
    listed in the manifest and SHA256SUMS; an image both sets share is there once."""
    sums = dict(reversed(line.split("  ", 1)) for line in (k8s_repo.root / "SHA256SUMS").read_text().splitlines())
    manifest = {i["ref"]: i for i in json.loads((k8s_repo.root / "manifest.json").read_text())["images"]}
    for v in ("1.31.9", "1.32.0"):
        built = images.images_for(v)
        held = {i.ref: i for i in k8s_repo.images_for(v)}
        assert set(held) == {i.ref for i in built} and len(held) == 7
        for image in built:
            f = held[image.ref]
            assert f.path == fr.image_path(image.ref) and f.path.startswith("images/") and f.path.endswith(".tar")
            assert f.sha256 == image.sha256 == sums[f.path] == manifest[image.ref]["sha256"]
            assert f.digest == image.digest and f.size == image.size
            on_disk = (k8s_repo.root / f.path).stat()
            if on_disk.st_dev == image.path.stat().st_dev:
                assert on_disk.st_ino == image.path.stat().st_ino  # linked, not copied
    assert k8s_repo.images["registry.k8s.io/pause:3.10"].kube_versions == ("1.31.9", "1.32.0")
    assert k8s_repo.images["registry.k8s.io/kube-proxy:v1.31.9"].kube_versions == ("1.31.9",)
    assert len(k8s_repo.images) == 3 + 2 * 4
    assert fr.FilesRepo.load(k8s_repo.root).images == k8s_repo.images
    assert k8s_repo.verify() == []


def test_a_removed_image_is_put_back(k8s_repo: fr.FilesRepo) -> None:
    (k8s_repo.root / "images" / "pause_3.10.tar").unlink()
    again = fr.build(fr.kubernetes_versions(), root=k8s_repo.root)
    assert (again.root / "images" / "pause_3.10.tar").is_file() and again.images == k8s_repo.images


def test_kubelet_served_over_http_matches_its_checksum_and_version(k8s_repo: fr.FilesRepo, netns: str,
                                                                   tmp_path: Path) -> None:
    port = _free_port()
    got = tmp_path / "kubelet"
    with fr.serve(k8s_repo.root, netns, "127.0.0.1", port) as server:
        url = f"{server.url()}/{fr.url_path('kubelet', '1.32.0')}"
        fetch = f"import urllib.request; urllib.request.urlretrieve({url!r}, {str(got)!r})"
        proc.run([sys.executable, "-c", fetch], netns=netns, timeout=300)
    ks = yaml.safe_load((k8s_repo.root / "checksums.yml").read_text())
    assert f"sha256:{hashlib.sha256(got.read_bytes()).hexdigest()}" == ks["kubelet_checksums"]["amd64"]["1.32.0"]
    got.chmod(0o755)
    assert proc.run([str(got), "--version"]).stdout.strip() == "Kubernetes v1.32.0+lab.cd13ec4a"
    # The other set says its own label: the same code, labelled for an upgrade (../shared/kubernetes/README.md).
    old = proc.run([str(k8s_repo.path("kubelet", "1.31.9")), "--version"]).stdout.strip()
    assert old == "Kubernetes v1.31.9+lab.cd13ec4a"


def test_pod_image_served_over_http_matches_sha256sums(k8s_repo: fr.FilesRepo, netns: str, tmp_path: Path) -> None:
    """What a node does: fetch its images from the repo, check them against SHA256SUMS, import them."""
    port = _free_port()
    got = tmp_path / "kube-proxy.tar"
    with fr.serve(k8s_repo.root, netns, "127.0.0.1", port) as server:
        url = f"{server.url()}/{fr.image_path('registry.k8s.io/kube-proxy:v1.32.0')}"
        fetch = f"import urllib.request; urllib.request.urlretrieve({url!r}, {str(got)!r})"
        proc.run([sys.executable, "-c", fetch], netns=netns, timeout=300)
    line = f"{hashlib.sha256(got.read_bytes()).hexdigest()}  images/kube-proxy_v1.32.0.tar\n"
    assert line in (k8s_repo.root / "SHA256SUMS").read_text()
    with tarfile.open(got) as t:
        member = t.extractfile("index.json")
        assert member is not None
        index = json.loads(member.read())
    assert index["manifests"][0]["annotations"]["io.containerd.image.name"] == "registry.k8s.io/kube-proxy:v1.32.0"


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
