"""Pod images made offline (harness/installer/images.py): built for real from Debian packages (catatonit,
busybox-static, bookworm's iptables and conntrack) and the lab's Kubernetes sets (../shared/kubernetes),
their OCI layout checked blob by blob, then imported into a private real containerd (its own root,
state and socket, as tests/test_canary_container.py starts one) and run with ctr."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import InstallerError
from harness.installer import files_repo, images
from tests.conftest import Containerd, needs_containerd, private_containerd

NAMESPACE = "k8s.io"  # the namespace the CRI plugin reads: where a lab node imports them
SETS = ("1.31.9", "1.32.0")  # ../shared/kubernetes's labelled sets
LABEL = "+lab.cd13ec4a"  # their build metadata: every version they report carries it


def _need_debian() -> None:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("building the pod images needs apt-get and dpkg-deb (Debian)")


@pytest.fixture(scope="module")
def built() -> dict[str, images.Image]:
    _need_debian()
    return {i.ref: i for i in images.build_all()}


@pytest.fixture(scope="module")
def kube() -> dict[str, dict[str, images.Image]]:
    """images_for() of every set: Kubernetes version -> ref -> image (the version-free ones shared)."""
    _need_debian()
    src = files_repo.kubernetes_source()
    if not (src / "unpack").is_file():
        pytest.skip(f"no Kubernetes binaries at {src} (set HARNESS_KUBERNETES)")
    absent = [t for t in ("xz", "xdelta3") if not shutil.which(t)]
    if absent:
        pytest.skip(f"unpacking the Kubernetes binaries needs {', '.join(absent)} (apt-get install xz-utils xdelta3)")
    return {v: {i.ref: i for i in images.images_for(v)} for v in SETS}


def _members(image: images.Image) -> dict[str, bytes]:
    with tarfile.open(image.path) as t:
        out: dict[str, bytes] = {}
        for m in t.getmembers():
            if m.isfile():
                f = t.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
        return out


def _blob(files: dict[str, bytes], digest: str) -> bytes:
    data = files[f"blobs/sha256/{digest.removeprefix('sha256:')}"]
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest  # content-addressed for real
    return data


def _image_parts(image: images.Image) -> tuple[dict[str, object], dict[str, object], tarfile.TarFile]:
    """index entry, config and the unpacked layer of a one-layer image, every digest checked."""
    files = _members(image)
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    index = json.loads(files["index.json"])
    (entry,) = index["manifests"]
    manifest = json.loads(_blob(files, entry["digest"]))
    config = json.loads(_blob(files, manifest["config"]["digest"]))
    (layer_desc,) = manifest["layers"]
    assert layer_desc["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
    raw = gzip.decompress(_blob(files, layer_desc["digest"]))
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(raw).hexdigest()]
    return entry, config, tarfile.open(fileobj=io.BytesIO(raw))


def test_pause_image_layout(built: dict[str, images.Image]) -> None:
    pause = built["registry.k8s.io/pause:3.10"]
    entry, config, layer = _image_parts(pause)
    assert entry["annotations"] == {"io.containerd.image.name": "registry.k8s.io/pause:3.10",
                                    "org.opencontainers.image.ref.name": "3.10"}
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"} and entry["digest"] == pause.digest
    assert config["config"]["Entrypoint"] == ["/usr/bin/catatonit", "-P"]
    assert config["config"]["User"] == "65535:65535"  # as Kubernetes' own pause image
    names = layer.getnames()
    assert names == ["usr", "usr/bin", "usr/bin/catatonit"]
    member = layer.getmember("usr/bin/catatonit")
    assert member.mode == 0o755 and member.uid == 0
    assert len(pause.sources) == 1 and pause.sources[0].startswith("catatonit_0.1.7")
    assert pause.sha256 == hashlib.sha256(pause.path.read_bytes()).hexdigest()


def test_busybox_image_layout(built: dict[str, images.Image]) -> None:
    bb = built[images.BUSYBOX.ref]
    assert bb.ref == "harness.local/busybox:1.35.0" and bb.sources[0].startswith("busybox-static_")
    entry, config, layer = _image_parts(bb)
    assert entry["annotations"]["io.containerd.image.name"] == bb.ref
    assert config["config"]["Cmd"] == ["sh"] and "Entrypoint" not in config["config"]
    links = {m.name: m.linkname for m in layer.getmembers() if m.issym()}
    assert links["bin/sh"] == links["usr/bin/nc"] == "/bin/busybox"
    assert layer.getmember("bin/busybox").isfile()
    assert layer.getmember("tmp").mode == 0o1777
    passwd = layer.extractfile("etc/passwd")
    assert passwd is not None and passwd.read().startswith(b"root:x:0:0:")


def test_agnhost_stand_in_layout(built: dict[str, images.Image]) -> None:
    """Tagged as the canaries ask (playbooks/templates/canary.yml.j2), shaped like agnhost (/agnhost,
    default `pause`), and saying in its config and its manifest that it is a stand-in."""
    ag = built["registry.k8s.io/e2e-test-images/agnhost:2.53"]
    canary = Path(__file__).resolve().parents[1] / "playbooks" / "plant.yml"
    assert f"harness_canary_image: {ag.ref}" in canary.read_text()
    entry, config, layer = _image_parts(ag)
    assert entry["annotations"]["org.opencontainers.image.ref.name"] == "2.53"
    assert config["config"]["Entrypoint"] == ["/agnhost"] and config["config"]["Cmd"] == ["pause"]
    label = config["config"]["Labels"]["org.opencontainers.image.description"]
    assert "STAND-IN" in label and "/hostname" in label and "not the upstream image" in label
    manifest = json.loads(_blob(_members(ag), entry["digest"]))
    assert manifest["annotations"]["org.opencontainers.image.description"] == label
    script = layer.getmember("agnhost")
    assert script.mode == 0o755 and script.isfile()
    text = layer.extractfile(script)
    assert text is not None and b"stand-in" in text.read()
    links = {m.name: m.linkname for m in layer.getmembers() if m.issym()}
    assert links["usr/sbin/httpd"] == links["bin/sh"] == links["bin/hostname"] == "/bin/busybox"


def test_specs_for_a_version() -> None:
    refs = [s.ref for s in images.specs_for("v1.32.0")]
    assert refs == [
        "registry.k8s.io/pause:3.10",
        "registry.k8s.io/kube-apiserver:v1.32.0",
        "registry.k8s.io/kube-controller-manager:v1.32.0",
        "registry.k8s.io/kube-scheduler:v1.32.0",
        "registry.k8s.io/kube-proxy:v1.32.0",
        "registry.k8s.io/e2e-test-images/agnhost:2.53",
        "harness.local/busybox:1.35.0",
    ]
    assert [s.ref for s in images.specs_for("1.31.9")][1] == "registry.k8s.io/kube-apiserver:v1.31.9"
    assert [files_repo.image_path(r) for r in refs[:2] + refs[-2:]] == [
        "images/pause_3.10.tar", "images/kube-apiserver_v1.32.0.tar", "images/agnhost_2.53.tar",
        "images/busybox_1.35.0.tar",
    ]


def test_a_set_the_source_lacks_is_named() -> None:
    if not (files_repo.kubernetes_source() / "v1.32.0" / "SHA256SUMS").is_file():
        pytest.skip("no Kubernetes binaries (set HARNESS_KUBERNETES)")
    with pytest.raises(InstallerError, match=r"no Kubernetes kube-apiserver 1\.35\.4 in .* \(its sets: 1\.31\.9, 1\.32\.0\)"):
        images.build(images.kubernetes_image("kube-apiserver", "v1.35.4"))


def test_control_plane_image_layout(kube: dict[str, dict[str, images.Image]]) -> None:
    """One static binary at /usr/local/bin, its entrypoint, the very file its set's SHA256SUMS lists."""
    for v in SETS:
        sums = files_repo._read_sums(files_repo.kubernetes_source() / f"v{v}" / "SHA256SUMS")
        for name in images.CONTROL_PLANE:
            image = kube[v][f"registry.k8s.io/{name}:v{v}"]
            entry, config, layer = _image_parts(image)
            assert entry["annotations"]["org.opencontainers.image.ref.name"] == f"v{v}"
            assert config["config"]["Entrypoint"] == [f"/usr/local/bin/{name}"]
            assert config["created"] == "1970-01-01T00:00:00Z"  # no unpack time leaks into the digest
            files = sorted(m.name for m in layer.getmembers() if not m.isdir())
            assert files == ["etc/group", "etc/passwd", f"usr/local/bin/{name}"]
            binary = layer.extractfile(f"usr/local/bin/{name}")
            assert binary is not None and hashlib.sha256(binary.read()).hexdigest() == sums[name]
            assert layer.getmember("tmp").mode == 0o1777
            assert image.sources == (f"{files_repo.kubernetes_cache() / f'v{v}' / name} sha256:{sums[name]}",)


def test_kube_proxy_image_layout(kube: dict[str, dict[str, images.Image]]) -> None:
    image = kube["1.32.0"]["registry.k8s.io/kube-proxy:v1.32.0"]
    _entry, config, layer = _image_parts(image)
    assert config["config"]["Entrypoint"] == ["/usr/local/bin/kube-proxy"]
    links = {m.name: m.linkname for m in layer.getmembers() if m.issym()}
    # Debian's alternatives, as its postinst leaves them: nft the default, legacy beside it.
    for tool in ("iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"):
        assert links[f"usr/sbin/{tool}"] == f"/etc/alternatives/{tool}"
        family, _sep, rest = tool.partition("-")
        assert links[f"etc/alternatives/{tool}"] == f"/usr/sbin/{family}-nft{'-' + rest if rest else ''}"
    assert links["usr/sbin/iptables-nft"] == "xtables-nft-multi"
    assert links["usr/sbin/iptables-legacy"] == "xtables-legacy-multi"
    names = set(layer.getnames())
    assert {"usr/sbin/conntrack", "usr/local/bin/kube-proxy", "lib/x86_64-linux-gnu/libc.so.6",
            "usr/lib/x86_64-linux-gnu/xtables/libxt_comment.so", "usr/lib/x86_64-linux-gnu/xtables/libxt_statistic.so",
            "usr/lib/x86_64-linux-gnu/xtables/libxt_conntrack.so"} <= names
    debs = {s.split("_", 1)[0]: s for s in image.sources if s.endswith(".deb")}
    assert debs["libc6"].startswith("libc6_2.36-") and debs["iptables"].startswith("iptables_1.8.9-")
    assert debs["libnfnetlink0"] == "libnfnetlink0_1.0.2-2_amd64.deb"  # bookworm's, not trixie's 1.0.2-3
    assert not any(n.startswith("usr/share/") for n in names)  # documentation and man pages left out


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot needs root")
def test_kube_proxy_image_resolves_every_library_inside_itself(kube: dict[str, dict[str, images.Image]],
                                                               tmp_path: Path) -> None:
    """ldd's question asked in the image's own root: the loader lists each program's and each iptables
    extension's libraries, every one found there."""
    _entry, _config, layer = _image_parts(kube["1.32.0"]["registry.k8s.io/kube-proxy:v1.32.0"])
    layer.extractall(tmp_path, filter="tar")
    xt = sorted(p.relative_to(tmp_path) for p in (tmp_path / "usr/lib/x86_64-linux-gnu/xtables").glob("*.so"))
    programs = ["usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi", "usr/sbin/conntrack", *map(str, xt)]
    assert len(programs) > 50
    for prog in programs:
        r = subprocess.run(["chroot", str(tmp_path), "/lib64/ld-linux-x86-64.so.2", "--list", f"/{prog}"],
                           check=False, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and "not found" not in r.stdout, (prog, r.stdout, r.stderr)
    r = subprocess.run(["chroot", str(tmp_path), "iptables", "--version"], check=False, capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == "iptables v1.8.9 (nf_tables)", r.stderr


def test_a_library_the_packages_lack_is_named(kube: dict[str, dict[str, images.Image]], tmp_path: Path) -> None:
    """The closure refuses, naming the library and who needs it, instead of an image that cannot start."""
    debs = images.default_root().parent / "images.work" / "debs"  # the `kube` fixture's build fetched iptables there
    (deb,) = debs.glob("iptables_1.8.9-*_amd64.deb")
    tree = tmp_path / "x"
    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True)
    spec = images.ImageSpec("x/iptables:only", debs=(("iptables", "1.8.9"),), dynamic=True)
    with pytest.raises(InstallerError, match=r"lack .*libc\.so\.6 \(needed by usr/sbin/xtables-nft-multi\).*add the package"):
        images._closure(spec, tree, {"usr/sbin/xtables-nft-multi"})


def test_second_build_is_instant_and_a_rebuild_is_identical(built: dict[str, images.Image],
                                                            kube: dict[str, dict[str, images.Image]],
                                                            tmp_path: Path) -> None:
    start = time.monotonic()
    again = {i.ref: i for i in images.build_all()}
    for v in SETS:
        assert {i.ref: i for i in images.images_for(v)} == kube[v]
    assert time.monotonic() - start < 1
    assert again == built
    # From nothing (its own root, the package fetched again): the same bytes, so the same digests.
    fresh = images.build(images.PAUSE, root=tmp_path / "images")
    assert fresh.digest == built[images.PAUSE.ref].digest
    assert fresh.path.read_bytes() == built[images.PAUSE.ref].path.read_bytes()
    # A Kubernetes binary's image too: its file times are the unpack's, so none is taken.
    ref = "registry.k8s.io/kube-scheduler:v1.32.0"
    fresh = images.build(images.kubernetes_image("kube-scheduler", "1.32.0"), root=tmp_path / "images")
    assert fresh.digest == kube["1.32.0"][ref].digest and fresh.sha256 == kube["1.32.0"][ref].sha256


def test_a_dynamically_linked_binary_is_seen() -> None:
    assert images._needs_loader(Path("/bin/ls"))
    interp, needed = images._elf_deps(Path("/bin/ls"))
    assert interp == "/lib64/ld-linux-x86-64.so.2" and "libc.so.6" in needed


def test_import_argv() -> None:
    image = images.Image("registry.k8s.io/pause:3.10", Path("/c/pause.tar"), "sha256:x", 1, "0" * 64, ("catatonit.deb",))
    assert images.import_argv(image) == ["ctr", "-n", "k8s.io", "images", "import", "/c/pause.tar"]
    assert images.import_argv(image, address="/run/x.sock")[:3] == ["ctr", "--address", "/run/x.sock"]


# -- real: imported into a private containerd and run with ctr --------------------------------------

@pytest.fixture
def containerd() -> Iterator[Containerd]:
    with private_containerd("images-", NAMESPACE) as d:
        yield d


def _import(d: Containerd, image: images.Image) -> None:
    r = d.ctr(*images.import_argv(image)[3:])  # the module's own command, against this containerd
    assert image.ref in r.stdout, r.stdout + r.stderr


@needs_containerd
def test_images_import_under_their_names_and_digests(containerd: Containerd, built: dict[str, images.Image],
                                                     kube: dict[str, dict[str, images.Image]]) -> None:
    every = {**built, **kube["1.31.9"], **kube["1.32.0"]}
    assert len(every) == 3 + 2 * 4  # pause, agnhost, busybox; per set the control plane and kube-proxy
    for image in every.values():
        _import(containerd, image)
    listed = {line.split()[0]: line.split()[2] for line in containerd.ctr("images", "ls").stdout.splitlines()[1:]}
    assert listed == {i.ref: i.digest for i in every.values()}


@needs_containerd
def test_pause_stays_running_and_exits_on_sigterm(containerd: Containerd, built: dict[str, images.Image]) -> None:
    pause = built[images.PAUSE.ref]
    _import(containerd, pause)
    run = subprocess.Popen(containerd.argv("run", "--rm", pause.ref, "pause-test"), stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT)
    try:
        pid = None
        for _ in range(100):
            pid = containerd.task_pid("pause-test")
            if pid is not None:
                break
            assert run.poll() is None, run.communicate()[0]
            time.sleep(0.1)
        assert pid is not None, "the pause task never showed RUNNING"
        time.sleep(2)  # it stays: a pause process that exited on its own would be gone by now
        assert containerd.task_pid("pause-test") == pid and run.poll() is None
        status = Path(f"/proc/{pid}/status").read_text()
        assert "\nUid:\t65535\t" in status  # the image's User
        assert Path(f"/proc/{pid}/exe").resolve().name == "catatonit"
        containerd.ctr("task", "kill", "-s", "SIGTERM", "pause-test")
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out  # exited on SIGTERM, status 0
    finally:
        if run.poll() is None:
            containerd.ctr("task", "kill", "-s", "SIGKILL", "pause-test", check=False)
            run.wait(timeout=30)
    assert "pause-test" not in containerd.ctr("container", "ls", "-q").stdout.split()  # --rm removed it


@needs_containerd
def test_busybox_runs_a_shell_and_netcat(containerd: Containerd, built: dict[str, images.Image]) -> None:
    bb = built[images.BUSYBOX.ref]
    _import(containerd, bb)
    r = containerd.ctr("run", "--rm", bb.ref, "bb-echo", "sh", "-c", "echo ok")
    assert r.stdout == "ok\n", r.stderr
    # nc both ways over the container's own loopback: a listener, then a client sending to it.
    script = "nc -l -p 7000 > /tmp/got & sleep 0.5; echo canary | nc 127.0.0.1 7000; wait; cat /tmp/got"
    r = containerd.ctr("run", "--rm", bb.ref, "bb-nc", "sh", "-c", script)
    assert r.stdout == "canary\n", r.stdout + r.stderr


@needs_containerd
def test_control_plane_images_say_their_version(containerd: Containerd,
                                                kube: dict[str, dict[str, images.Image]]) -> None:
    """Run as kubeadm's static pods run them (`command: [kube-apiserver, ...]`, found on the image's PATH)."""
    for v in SETS:
        for name in images.CONTROL_PLANE:
            image = kube[v][f"registry.k8s.io/{name}:v{v}"]
            _import(containerd, image)
            r = containerd.ctr("run", "--rm", image.ref, f"{name}-{v}".replace(".", "-"), name, "--version")
            assert r.stdout.strip() == f"Kubernetes v{v}{LABEL}", r.stdout + r.stderr


@needs_containerd
def test_kube_proxy_image_runs_iptables_and_conntrack(containerd: Containerd,
                                                      kube: dict[str, dict[str, images.Image]]) -> None:
    image = kube["1.32.0"]["registry.k8s.io/kube-proxy:v1.32.0"]
    _import(containerd, image)

    def run(cid: str, *argv: str, privileged: bool = False) -> subprocess.CompletedProcess[str]:
        flags = ["--privileged"] if privileged else []
        return containerd.ctr("run", "--rm", *flags, image.ref, cid, *argv, check=False)

    r = run("kp-version", "kube-proxy", "--version")
    assert r.stdout.strip() == f"Kubernetes v1.32.0{LABEL}", r.stdout + r.stderr
    r = run("kp-ipt", "iptables", "--version")
    assert r.stdout.strip() == "iptables v1.8.9 (nf_tables)", r.stdout + r.stderr
    r = run("kp-ipt-legacy", "iptables-legacy", "--version")
    assert r.stdout.strip() == "iptables v1.8.9 (legacy)", r.stdout + r.stderr
    r = run("kp-conntrack", "conntrack", "--version")
    assert "conntrack v1.4.7" in r.stdout + r.stderr, r.stdout + r.stderr
    rules = ("*nat\n:KUBE-SERVICES - [0:0]\n:KUBE-SEP-TEST - [0:0]\n"
             "-A KUBE-SERVICES -d 10.233.0.10/32 -p tcp -m comment --comment \"ns/svc:http\" -m tcp --dport 80"
             " -m statistic --mode random --probability 0.5 -j KUBE-SEP-TEST\n"
             "-A KUBE-SEP-TEST -p tcp -m tcp -j DNAT --to-destination 10.233.64.5:8080\nCOMMIT\n"
             "*filter\n:KUBE-FORWARD - [0:0]\n-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP\n"
             "-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT\nCOMMIT\n")
    # A pod's shape: a pause sandbox holds a network namespace of its own (no --net-host: nothing here
    # touches the host's rules) and kube-proxy's tools join it, one container after another.
    pause = kube["1.32.0"][images.PAUSE.ref]
    _import(containerd, pause)
    sandbox = subprocess.Popen(containerd.argv("run", "--rm", pause.ref, "kp-sandbox"), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    try:
        pid = None
        for _ in range(100):
            pid = containerd.task_pid("kp-sandbox")
            if pid is not None:
                break
            assert sandbox.poll() is None, sandbox.communicate()[0]
            time.sleep(0.1)
        assert pid is not None, "the sandbox never showed RUNNING"
        netns = f"network:/proc/{pid}/ns/net"
        # Rules in the shape kube-proxy writes, through iptables-restore, so the extensions it uses load.
        # (A file, not stdin: ctr run does not pass on its stdin's end.)
        (containerd.dir / "rules").write_text(rules)
        got = containerd.ctr("run", "--rm", "--privileged", "--with-ns", netns,
                             "--mount", f"type=bind,src={containerd.dir / 'rules'},dst=/rules,options=rbind:ro",
                             image.ref, "kp-restore", "iptables-restore", "--noflush", "/rules", check=False)
        assert got.returncode == 0, got.stdout + got.stderr
        r = containerd.ctr("run", "--rm", "--privileged", "--with-ns", netns, image.ref, "kp-save", "iptables-save",
                           check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        for rule in (('-A KUBE-SERVICES -d 10.233.0.10/32 -p tcp -m comment --comment "ns/svc:http" -m tcp --dport 80'
                      " -m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-TEST"),
                     "-A KUBE-SEP-TEST -p tcp -m tcp -j DNAT --to-destination 10.233.64.5:8080",
                     "-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP",
                     "-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -j ACCEPT"):
            assert rule in r.stdout.splitlines(), r.stdout
        r = containerd.ctr("run", "--rm", "--privileged", "--with-ns", netns, image.ref, "kp-save6", "ip6tables-save",
                           check=False)
        assert r.returncode == 0 and "KUBE-" not in r.stdout, r.stdout + r.stderr
    finally:
        containerd.ctr("task", "kill", "-s", "SIGKILL", "kp-sandbox", check=False)
        sandbox.wait(timeout=30)
    # Unprivileged, iptables-save still loads (binary, libraries, extensions) and says why it cannot read.
    r = run("kp-save-unpriv", "iptables-save")
    assert "error while loading shared libraries" not in r.stderr
    assert r.returncode == 0 or "Permission denied" in r.stderr or "Operation not permitted" in r.stderr, r.stderr


def _free_port(preferred: int) -> int:
    """`preferred` if nothing listens on it here, else any free port."""
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@needs_containerd
def test_agnhost_stand_in_serves_its_hostname(containerd: Containerd, built: dict[str, images.Image]) -> None:
    """The canaries' arguments (`netexec --http-port=8080`), host networking, a Python client here."""
    import http.client

    ag = built["registry.k8s.io/e2e-test-images/agnhost:2.53"]
    _import(containerd, ag)
    port = _free_port(8080)
    run = subprocess.Popen(containerd.argv("run", "--rm", "--net-host", ag.ref, "agnhost-test", "/agnhost", "netexec",
                                           f"--http-port={port}"), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        body, status = b"", 0
        for _ in range(100):
            assert run.poll() is None, run.communicate()[0]
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/hostname")
                resp = conn.getresponse()
                status, body = resp.status, resp.read()
                conn.close()
                break
            except OSError:
                time.sleep(0.1)
        assert status == 200, (status, body)
        # ctr gives the container a UTS namespace of its own, which starts with the host's name.
        assert body.decode() == socket.gethostname()
        start = time.monotonic()
        containerd.ctr("task", "kill", "-s", "SIGTERM", "agnhost-test")
        out, _ = run.communicate(timeout=30)
        assert run.returncode == 0, out  # the entrypoint's trap: a pod is not left to its grace period
        assert time.monotonic() - start < 5
    finally:
        if run.poll() is None:
            containerd.ctr("task", "kill", "-s", "SIGKILL", "agnhost-test", check=False)
            run.wait(timeout=30)
    # What it is not: any other agnhost subcommand is refused, saying so.
    r = containerd.ctr("run", "--rm", ag.ref, "agnhost-dns", "/agnhost", "dns-server", check=False)
    assert r.returncode == 2 and "stand-in" in r.stdout + r.stderr, r.stdout + r.stderr
