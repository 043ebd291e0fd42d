"""Pod images made offline from Debian packages, as OCI image tarballs containerd imports.

No registry is reachable from the lab, so the images a Kubernetes node needs are made here and
loaded with `ctr -n k8s.io images import FILE` (import_argv()), never pulled:

- the pod sandbox, tagged `registry.k8s.io/pause:3.10` (the tag containerd's CRI and the kubelet ask
  for), from Debian's catatonit: `catatonit -P` is a pause process (it sleeps, reaps what is
  reparented to it, and exits 0 on SIGTERM or SIGINT). Chosen over a pause built from C because it
  is a Debian package, fetched and checksummed by apt like the files repo's, and statically linked:
  the image needs no libc and the machine no compiler (a static C build needs libc6-dev, which the
  set-up does not install).
- a workload image for the canaries, tagged `harness.local/busybox:<version>` (a harness name: it is
  Debian's busybox-static, not the upstream image), with a shell and `nc`. Its `wget` segfaulted in
  pods on these nodes (../shared/LAB-CONTAINERS.md); `nc` works.

Each tarball is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) with one gzip
layer, written byte for byte here (fixed owners, order and times, gzip without a timestamp), so the
same package gives the same digests. Tarballs are cached under the harness cache, keyed by what
builds them.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from harness import proc, progress
from harness.errors import InstallerError
from harness.installer import files_repo
from harness.settings import cache_dir, file_lock

FORMAT = 1  # bump when the image layout or config changes, so cached tarballs get rebuilt
ARCH = "amd64"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd's import names an image by this annotation (its own export writes it); OCI's ref.name
# carries the tag alone, as the image layout spec means it.
_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_REF_NAME = "org.opencontainers.image.ref.name"


@dataclass(frozen=True)
class ImageSpec:
    """An image of one statically linked binary from one Debian package."""

    ref: str  # the name containerd imports it under
    package: str  # the Debian package its binary comes from
    version: str  # the package's upstream version (bookworm's: the guests' suite)
    binary: str  # the binary's path in the package, kept in the image
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    applets: bool = False  # a link per applet the binary lists (`busybox --list-full`), and /etc, /tmp, /root

    @property
    def name(self) -> str:
        """A file-name-safe short name (`pause`, `busybox`)."""
        return self.ref.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[-1]

    def key(self) -> str:
        """What the tarball depends on: the spec and the layout's FORMAT."""
        text = json.dumps({"format": FORMAT, "arch": ARCH, **asdict(self)}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The user and group Kubernetes' own pause image runs as.
PAUSE = ImageSpec("registry.k8s.io/pause:3.10", "catatonit", "0.1.7", "usr/bin/catatonit",
                  entrypoint=("/usr/bin/catatonit", "-P"), user="65535:65535")
BUSYBOX = ImageSpec("harness.local/busybox:1.35.0", "busybox-static", "1.35.0", "bin/busybox",
                    cmd=("sh",), applets=True)
IMAGES: tuple[ImageSpec, ...] = (PAUSE, BUSYBOX)


@dataclass(frozen=True)
class Image:
    """A built image tarball."""

    ref: str
    path: Path
    digest: str  # the manifest's digest, as `ctr images ls` shows it
    size: int  # the tarball's bytes
    deb: str  # the Debian package file it was made from

    @classmethod
    def load(cls, meta: Path) -> Image | None:
        """The record beside a cached tarball; None when either is missing or torn (rebuild)."""
        try:
            data = json.loads(meta.read_text())
            image = cls(data["ref"], Path(data["path"]), data["digest"], int(data["size"]), data["deb"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return image if image.path.is_file() and image.path.stat().st_size == image.size else None


def default_root() -> Path:
    return cache_dir() / "images"


def build(spec: ImageSpec, *, root: Path | None = None, mirror: str | None = None) -> Image:
    """The image's tarball, built if the cache lacks it; a second call reads a small record."""
    root = root or default_root()
    root.mkdir(parents=True, exist_ok=True)
    stem = f"{spec.name}-{spec.tag}-{spec.key()}"
    meta = root / f"{stem}.json"
    with file_lock(root.parent / f"{root.name}.lock"):
        cached = Image.load(meta)
        if cached is not None:
            return cached
        with progress.step(f"pod image {spec.ref} from Debian {spec.package} {spec.version}"):
            (deb,) = files_repo.debian_packages({spec.package: spec.version}, root.parent / f"{root.name}.work" / "debs",
                                                mirror=mirror)
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                tree = Path(tmp) / "x"
                proc.run(["dpkg-deb", "-x", str(deb), str(tree)])
                files = _rootfs(spec, tree, deb.name)
                blobs, index, manifest_digest = _layout(spec, files)
                out = root / f"{stem}.tar"
                part = out.with_name(out.name + ".part")
                _write_layout(part, blobs, index, _mtime(files))
                os.replace(part, out)
        image = Image(spec.ref, out, manifest_digest, out.stat().st_size, deb.name)
        meta.write_text(json.dumps({**asdict(image), "path": str(image.path)}, indent=2) + "\n")
        return image


def build_all(*, root: Path | None = None, mirror: str | None = None) -> tuple[Image, ...]:
    """Every image a lab node needs (the sandbox and the canaries' workload)."""
    return tuple(build(spec, root=root, mirror=mirror) for spec in IMAGES)


def import_argv(image: Image, *, namespace: str = "k8s.io", address: str | None = None,
                ctr: str = "ctr") -> list[str]:
    """`ctr images import` of the tarball into `namespace` (k8s.io: the one the CRI plugin reads)."""
    argv = [ctr]
    if address:
        argv += ["--address", address]
    return [*argv, "-n", namespace, "images", "import", str(image.path)]


# -- the root file system ---------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One member of the layer: a directory, a file (its bytes) or a symlink (its target)."""

    path: str
    kind: str  # "dir", "file", "link"
    mode: int
    data: bytes = b""
    target: str = ""
    mtime: int = 0


def _rootfs(spec: ImageSpec, tree: Path, deb: str) -> list[_Entry]:
    binary = tree / spec.binary
    if not binary.is_file() or binary.is_symlink():
        raise InstallerError(f"{spec.ref}: Debian {deb} has no {spec.binary}")
    mtime = int(binary.stat().st_mtime)  # the package's own time: the same package gives the same layer
    if _needs_loader(binary):
        raise InstallerError(f"{spec.ref}: {spec.binary} from {deb} is dynamically linked; the image has no libc")
    entries: dict[str, _Entry] = {}

    def add_dirs(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, _Entry(d, "dir", 0o755, mtime=mtime))

    add_dirs(spec.binary)
    entries[spec.binary] = _Entry(spec.binary, "file", 0o755, binary.read_bytes(), mtime=mtime)
    if spec.applets:
        listed = proc.run([str(binary), "--list-full"], timeout=60).stdout.split()
        if not listed:
            raise InstallerError(f"{spec.ref}: {spec.binary} --list-full listed no applets")
        for applet in listed:
            applet = applet.strip("/")
            if applet == spec.binary or applet in entries:
                continue
            add_dirs(applet)
            entries[applet] = _Entry(applet, "link", 0o777, target="/" + spec.binary, mtime=mtime)
        for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("var", 0o755)):
            entries.setdefault(d, _Entry(d, "dir", mode, mtime=mtime))
        etc = {
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        }
        for path, text in etc.items():
            entries[path] = _Entry(path, "file", 0o644, text.encode(), mtime=mtime)
    missing = [w for w in ("bin/sh", "usr/bin/nc") if spec.applets and w not in entries]
    if missing:
        raise InstallerError(f"{spec.ref}: {spec.binary} from {deb} lacks {', '.join(missing)}")
    return sorted(entries.values(), key=lambda e: e.path)


def _needs_loader(binary: Path) -> bool:
    """An ELF program header of type PT_INTERP: the binary needs a dynamic loader (and so a libc)."""
    import struct

    with open(binary, "rb") as fh:
        head = fh.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            return True  # not a 64-bit ELF: nothing this image could run
        phoff, = struct.unpack_from("<Q", head, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
        fh.seek(phoff)
        table = fh.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


def _mtime(entries: Iterable[_Entry]) -> int:
    return max((e.mtime for e in entries), default=0)


# -- the OCI image layout ---------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _layer(entries: Iterable[_Entry]) -> bytes:
    """The uncompressed layer tar: root-owned, in path order."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            ti = tarfile.TarInfo(e.path)
            ti.mode, ti.mtime = e.mode, e.mtime
            ti.uid = ti.gid = 0
            ti.uname = ti.gname = "root"
            if e.kind == "dir":
                ti.type = tarfile.DIRTYPE
                tar.addfile(ti)
            elif e.kind == "link":
                ti.type, ti.linkname = tarfile.SYMTYPE, e.target
                tar.addfile(ti)
            else:
                ti.size = len(e.data)
                tar.addfile(ti, io.BytesIO(e.data))
    return buf.getvalue()


def _layout(spec: ImageSpec, entries: list[_Entry]) -> tuple[dict[str, bytes], dict[str, object], str]:
    """The blobs (digest -> bytes), index.json and manifest digest of a one-layer image."""
    raw = _layer(entries)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", mtime=0, compresslevel=9) as fh:
        fh.write(raw)
    layer = gz.getvalue()
    created = datetime.fromtimestamp(_mtime(entries), UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = f"harness.installer.images: {spec.binary} from Debian {spec.package} {spec.version}"
    config: dict[str, object] = {
        "created": created,
        "architecture": ARCH,
        "os": "linux",
        "config": {
            "Env": [PATH_ENV],
            "WorkingDir": "/",
            **({"Entrypoint": list(spec.entrypoint)} if spec.entrypoint else {}),
            **({"Cmd": list(spec.cmd)} if spec.cmd else {}),
            **({"User": spec.user} if spec.user else {}),
            "Labels": {"org.opencontainers.image.description": origin},
        },
        "rootfs": {"type": "layers", "diff_ids": [_digest(raw)]},
        "history": [{"created": created, "created_by": origin}],
    }
    config_bytes = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": {"mediaType": _OCI_CONFIG, "digest": _digest(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": _OCI_LAYER, "digest": _digest(layer), "size": len(layer)}],
    }
    manifest_bytes = _json(manifest)
    index: dict[str, object] = {
        "schemaVersion": 2,
        "mediaType": _OCI_INDEX,
        "manifests": [{
            "mediaType": _OCI_MANIFEST,
            "digest": _digest(manifest_bytes),
            "size": len(manifest_bytes),
            "platform": {"architecture": ARCH, "os": "linux"},
            "annotations": {_CONTAINERD_NAME: spec.ref, _OCI_REF_NAME: spec.tag},
        }],
    }
    blobs = {_digest(b): b for b in (layer, config_bytes, manifest_bytes)}
    return blobs, index, _digest(manifest_bytes)


def _write_layout(dest: Path, blobs: Mapping[str, bytes], index: Mapping[str, object], mtime: int) -> None:
    """The layout as one uncompressed tar (what `ctr images import` reads)."""
    members: list[tuple[str, bytes | None]] = [
        ("blobs", None), ("blobs/sha256", None),
        *((f"blobs/sha256/{d.removeprefix('sha256:')}", b) for d, b in sorted(blobs.items())),
        ("index.json", _json(index)),
        ("oci-layout", _json({"imageLayoutVersion": "1.0.0"})),
    ]
    with open(dest, "wb") as raw, tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = mtime, 0, 0, "root", "root"
            if data is None:
                ti.type, ti.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(ti)
            else:
                ti.mode, ti.size = 0o644, len(data)
                tar.addfile(ti, io.BytesIO(data))
