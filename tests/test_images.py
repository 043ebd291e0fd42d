"""Pod images made offline (harness/installer/images.py): built for real from Debian's catatonit and
busybox-static, their OCI layout checked blob by blob, then imported into a private real containerd
(its own root, state and socket, as tests/test_canary_container.py starts one) and run with ctr."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.installer import images

NAMESPACE = "k8s.io"  # the namespace the CRI plugin reads: where a lab node imports them


@pytest.fixture(scope="module")
def built() -> dict[str, images.Image]:
    if not shutil.which("apt-get") or not shutil.which("dpkg-deb"):
        pytest.skip("building the pod images needs apt-get and dpkg-deb (Debian)")
    return {i.ref: i for i in images.build_all()}


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
    assert pause.deb.startswith("catatonit_0.1.7")


def test_busybox_image_layout(built: dict[str, images.Image]) -> None:
    bb = built[images.BUSYBOX.ref]
    assert bb.ref == "harness.local/busybox:1.35.0" and bb.deb.startswith("busybox-static_")
    entry, config, layer = _image_parts(bb)
    assert entry["annotations"]["io.containerd.image.name"] == bb.ref
    assert config["config"]["Cmd"] == ["sh"] and "Entrypoint" not in config["config"]
    links = {m.name: m.linkname for m in layer.getmembers() if m.issym()}
    assert links["bin/sh"] == links["usr/bin/nc"] == "/bin/busybox"
    assert layer.getmember("bin/busybox").isfile()
    assert layer.getmember("tmp").mode == 0o1777
    passwd = layer.extractfile("etc/passwd")
    assert passwd is not None and passwd.read().startswith(b"root:x:0:0:")


def test_second_build_is_instant_and_a_rebuild_is_identical(built: dict[str, images.Image], tmp_path: Path) -> None:
    start = time.monotonic()
    again = {i.ref: i for i in images.build_all()}
    assert time.monotonic() - start < 1
    assert again == built
    # From nothing (its own root, the package fetched again): the same bytes, so the same digests.
    fresh = images.build(images.PAUSE, root=tmp_path / "images")
    assert fresh.digest == built[images.PAUSE.ref].digest
    assert fresh.path.read_bytes() == built[images.PAUSE.ref].path.read_bytes()


def test_a_dynamically_linked_binary_is_seen() -> None:
    assert images._needs_loader(Path("/bin/ls"))


def test_import_argv() -> None:
    image = images.Image("registry.k8s.io/pause:3.10", Path("/c/pause.tar"), "sha256:x", 1, "catatonit.deb")
    assert images.import_argv(image) == ["ctr", "-n", "k8s.io", "images", "import", "/c/pause.tar"]
    assert images.import_argv(image, address="/run/x.sock")[:3] == ["ctr", "--address", "/run/x.sock"]


# -- real: imported into a private containerd and run with ctr --------------------------------------

NEEDED = {"containerd": "containerd", "ctr": "containerd", "containerd-shim-runc-v2": "containerd", "runc": "runc"}
MISSING = sorted({pkg for exe, pkg in NEEDED.items() if shutil.which(exe) is None})
real = pytest.mark.skipif(
    os.geteuid() != 0 or bool(MISSING),
    reason=("needs root" if os.geteuid() != 0 else f"needs Debian's {', '.join(MISSING)} (apt-get install {' '.join(MISSING)})"),
)


@dataclass
class Containerd:
    """A containerd of our own: its own root, state dir and socket; no CRI plugin."""

    dir: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.dir / "state" / "containerd.sock"

    def start(self) -> None:
        config = self.dir / "config.toml"
        config.write_text(f'version = 2\nroot = "{self.dir}/root"\nstate = "{self.dir}/state"\n'
                          f'disabled_plugins = ["io.containerd.grpc.v1.cri"]\n[grpc]\n  address = "{self.socket}"\n')
        log = (self.dir / "containerd.log").open("ab")
        self.proc = subprocess.Popen(["containerd", "--config", str(config)], stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        for _ in range(100):
            if self.ctr("version", check=False).returncode == 0:
                return
            assert self.proc.poll() is None, (self.dir / "containerd.log").read_text()[-2000:]
            time.sleep(0.2)
        raise AssertionError("containerd did not answer on its socket: " + (self.dir / "containerd.log").read_text()[-2000:])

    def argv(self, *args: str) -> list[str]:
        return ["ctr", "--address", str(self.socket), "-n", NAMESPACE, *args]

    def ctr(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(self.argv(*args), capture_output=True, text=True, check=check, timeout=timeout)

    def shims(self) -> list[int]:
        """This containerd's shims: the processes whose command line names its own socket."""
        out = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if cmd and cmd[0].endswith(b"containerd-shim-runc-v2") and str(self.socket).encode() in cmd:
                    out.append(int(p.name))
        return out

    def task_pid(self, container: str) -> int | None:
        for line in self.ctr("task", "ls").stdout.splitlines()[1:]:
            cols = line.split()
            if cols and cols[0] == container and cols[2] == "RUNNING":
                return int(cols[1])
        return None


@pytest.fixture
def containerd() -> Iterator[Containerd]:
    # Under /tmp with a short name: unix socket paths are limited to 108 bytes.
    d = Containerd(Path(tempfile.mkdtemp(prefix="images-", dir="/tmp")))
    try:
        d.start()
        yield d
    finally:
        for line in d.ctr("task", "ls", check=False).stdout.splitlines()[1:]:
            d.ctr("task", "kill", "-s", "SIGKILL", line.split()[0], check=False)
        for line in d.ctr("container", "ls", "-q", check=False).stdout.split():
            d.ctr("task", "rm", "-f", line, check=False)
            d.ctr("container", "rm", line, check=False)
        shims = d.shims()
        if d.proc is not None and d.proc.poll() is None:
            d.proc.send_signal(signal.SIGTERM)
            d.proc.wait(timeout=30)
        for pid in shims:  # a shim exits once its task is deleted; one left behind is ended by its id
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["umount", "-R", str(d.dir / "root")], check=False, capture_output=True)
        shutil.rmtree(d.dir, ignore_errors=True)


def _import(d: Containerd, image: images.Image) -> None:
    r = d.ctr(*images.import_argv(image)[3:])  # the module's own command, against this containerd
    assert image.ref in r.stdout, r.stdout + r.stderr


@real
def test_images_import_under_their_names_and_digests(containerd: Containerd, built: dict[str, images.Image]) -> None:
    for image in built.values():
        _import(containerd, image)
    listed = {line.split()[0]: line.split()[2] for line in containerd.ctr("images", "ls").stdout.splitlines()[1:]}
    assert listed == {i.ref: i.digest for i in built.values()}


@real
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


@real
def test_busybox_runs_a_shell_and_netcat(containerd: Containerd, built: dict[str, images.Image]) -> None:
    bb = built[images.BUSYBOX.ref]
    _import(containerd, bb)
    r = containerd.ctr("run", "--rm", bb.ref, "bb-echo", "sh", "-c", "echo ok")
    assert r.stdout == "ok\n", r.stderr
    # nc both ways over the container's own loopback: a listener, then a client sending to it.
    script = "nc -l -p 7000 > /tmp/got & sleep 0.5; echo canary | nc 127.0.0.1 7000; wait; cat /tmp/got"
    r = containerd.ctr("run", "--rm", bb.ref, "bb-nc", "sh", "-c", script)
    assert r.stdout == "canary\n", r.stdout + r.stderr
