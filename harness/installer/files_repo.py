"""An offline files repo in Kubespray's layout, built from real Debian packages and the lab's Kubernetes builds.

Kubespray downloads release files from `{{ files_repo }}/github.com/...` and `{{ files_repo }}/dl.k8s.io/...`
when offline (docs/operations/offline-environment.md). No GitHub or Kubernetes release is reachable
here, so this module repackages the Debian archive's builds of etcd, containerd and runc into the
upstream release file names and layouts (etcd's `etcd-vX-linux-amd64/` tarball, containerd's `bin/`
tarball, runc's bare `runc.amd64`), puts the Kubernetes binaries built from source (two labelled
sets, kubernetes_source()) where Kubespray's `dl_k8s_io_url` downloads them, writes checksums in
Kubespray's variable shape, and serves the tree over HTTP inside the lab's network namespace. Which
packages, versions and layouts: the component table (harness.components, `Component.debian` and
`Component.built`).

Debian packages come through a private apt configuration (own sources, lists and cache under the
harness cache), so the machine's apt sources are never touched.
"""

from __future__ import annotations

import contextlib
import ctypes
import gzip
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Self

import yaml

from harness import components, debian, proc, progress, resources
from harness.components import Component, DebianSource
from harness.errors import InstallerError, PrerequisiteError
from harness.settings import cache_dir, file_lock, state_dir

ARCH = "amd64"
# Debian suites the private apt configuration names; LAB.md's table lists what each carries.
SUITES: tuple[str, ...] = ("bookworm", "trixie", "sid")
# The lab's guests run Debian bookworm: a binary needing a newer glibc cannot run there.
GUEST_GLIBC = "2.36"
FORMAT = 1  # bump when the repo's layout or manifest changes, so old caches get rebuilt


# Binaries inside a Debian package live in one of these.
_BIN_DIRS = ("usr/bin", "usr/sbin", "bin", "sbin")


def _component(component: str) -> Component:
    """A component the repo can hold (harness.components); refuses any other."""
    c = components.repo_components().get(component)
    if c is None:
        raise InstallerError(f"the files repo has no component {component!r}; it has {', '.join(components.repo_components())}")
    return c


def source(component: str) -> tuple[Component, DebianSource]:
    """A component the repo builds from Debian packages, with where it comes from; refuses any other."""
    c = _component(component)
    if c.debian is None:
        raise InstallerError(f"the files repo takes {component} from the Kubernetes builds, not from Debian")
    return c, c.debian


def default_versions() -> dict[str, tuple[str, ...]]:
    """What the lab can install by default: each component's bookworm, trixie and sid builds (LAB.md).
    trixie's and sid's runc ask for glibc 2.38 through one C23 symbol; relink_c23_symbols() maps it back.

    The Kubernetes binaries are not among them (kubernetes_versions()): a repo holding kubelet also
    gives Kubespray a `kubelet_checksums`, whose first key is Kubespray's default `kube_version`."""
    return {name: tuple(v for _suite, v in c.debian.versions)
            for name, c in components.repo_components().items() if c.debian is not None}


def kubernetes_versions() -> dict[str, tuple[str, ...]]:
    """Every Kubernetes binary in every labelled set the table names (kubelet: 1.31.9, 1.32.0; ...)."""
    return {c.name: c.built.sets for c in components.kubernetes_components() if c.built is not None}


def url_path(component: str, version: str, arch: str = ARCH) -> str:
    """The file's path under `files_repo`, exactly as Kubespray's *_download_url builds it.

    roles/kubespray_defaults/defaults/main/download.yml, with `github_url: {{ files_repo }}/github.com`
    and `dl_k8s_io_url: {{ files_repo }}/dl.k8s.io`.
    """
    c = _component(component)
    src = c.debian or c.built
    assert src is not None  # repo_components() holds only components with a source
    return src.url_path.format(v=version.removeprefix("v"), arch=arch)


@dataclass(frozen=True)
class Artifact:
    component: str
    version: str
    path: str  # relative to the repo root
    sha256: str
    size: int
    debs: tuple[str, ...]  # the Debian package files it was made from
    binaries: tuple[str, ...]
    glibc: str | None  # newest GLIBC_ symbol version any binary needs
    patched: tuple[str, ...] = ()  # symbol relinks applied (see relink_c23_symbols)
    origin: str = ""  # where a file not made from Debian packages came from (a Kubernetes set's folder)


IMAGES_DIR = "images"


def image_path(ref: str) -> str:
    """A pod image tarball's path under `files_repo`: images/<name>_<tag>.tar
    (registry.k8s.io/kube-proxy:v1.32.0 -> images/kube-proxy_v1.32.0.tar)."""
    name, _sep, tag = ref.rsplit("/", 1)[-1].partition(":")
    return f"{IMAGES_DIR}/{name}_{tag}.tar"


@dataclass(frozen=True)
class ImageFile:
    """A pod image tarball in the repo (harness.installer.images), for `ctr -n k8s.io images import`."""

    ref: str  # the name it imports under
    path: str  # relative to the repo root (image_path())
    sha256: str  # the tarball's
    size: int
    digest: str  # its manifest's digest, as `ctr images ls` shows it
    kube_versions: tuple[str, ...]  # the Kubernetes sets it is part of (images.images_for())


@dataclass
class FilesRepo:
    """A built repo: its root directory and what it holds."""

    root: Path
    artifacts: dict[tuple[str, str], Artifact] = field(default_factory=dict)
    images: dict[str, ImageFile] = field(default_factory=dict)  # by ref

    MANIFEST = "manifest.json"
    SUMS = "SHA256SUMS"
    CHECKSUMS_VARS = "checksums.yml"

    def has(self, component: str, version: str) -> bool:
        a = self.artifacts.get((component, version))
        return a is not None and (self.root / a.path).is_file()

    def artifact(self, component: str, version: str) -> Artifact:
        a = self.artifacts.get((component, version))
        if a is None:
            have = sorted(v for c, v in self.artifacts if c == component)
            raise InstallerError(
                f"the files repo at {self.root} has no {component} {version}"
                f" (it has {', '.join(have) or 'none'}); build it with files_repo.build({{{component!r}: [{version!r}]}})"
            )
        return a

    def path(self, component: str, version: str) -> Path:
        return self.root / self.artifact(component, version).path

    def images_for(self, kube_version: str) -> list[ImageFile]:
        """The pod image tarballs a node of that Kubernetes version imports (empty for a repo built
        without Kubernetes)."""
        v = kube_version.removeprefix("v")
        return [i for i in self.images.values() if v in i.kube_versions]

    def versions(self, component: str) -> list[str]:
        return sorted((v for c, v in self.artifacts if c == component), key=_vkey)

    def checksum_vars(self, arch: str = ARCH) -> dict[str, dict[str, dict[str, str]]]:
        """Kubespray's checksum dicts (`etcd_binary_checksums[arch][version]: sha256:...`), by name,
        each newest version first as Kubespray lists them: its `kube_version` defaults to the first
        key of `kubelet_checksums`. Files Kubespray has no checksum variable for (the Kubernetes
        server binaries) are only in SHA256SUMS and the manifest."""
        out: dict[str, dict[str, dict[str, str]]] = {}
        by_table = sorted(((t, ver, a) for (comp, ver), a in self.artifacts.items() if (t := _checksum_table(comp))),
                          key=lambda x: (x[0], [-n for n in _vkey(x[1])]))
        for table, ver, a in by_table:
            out.setdefault(table, {arch: {}})[arch][ver] = f"sha256:{a.sha256}"
        return out

    def verify(self) -> list[str]:
        """Re-hash every file; returns the paths whose content no longer matches (empty = good)."""
        files: list[Artifact | ImageFile] = [*self.artifacts.values(), *self.images.values()]
        return [a.path for a in files if sha256_file(self.root / a.path) != a.sha256]

    @classmethod
    def load(cls, root: Path) -> FilesRepo:
        repo = cls(root)
        m = root / cls.MANIFEST
        if not m.is_file():
            return repo
        try:
            data = json.loads(m.read_text())
        except (OSError, ValueError):
            return repo  # a torn manifest means rebuild, not crash
        if data.get("format") != FORMAT:
            return repo
        for a in data.get("artifacts", []):
            art = Artifact(**{**a, "debs": tuple(a["debs"]), "binaries": tuple(a["binaries"]),
                               "patched": tuple(a.get("patched", ())), "origin": a.get("origin", "")})
            repo.artifacts[(art.component, art.version)] = art
        for i in data.get("images", []):
            img = ImageFile(**{**i, "kube_versions": tuple(i["kube_versions"])})
            repo.images[img.ref] = img
        return repo

    def _write_indexes(self) -> None:
        arts = sorted(self.artifacts.values(), key=lambda a: (a.component, _vkey(a.version)))
        imgs = sorted(self.images.values(), key=lambda i: i.path)
        _atomic_write(
            self.root / self.MANIFEST,
            json.dumps({"format": FORMAT, "arch": ARCH, "artifacts": [asdict(a) for a in arts],
                        "images": [asdict(i) for i in imgs]}, indent=2) + "\n",
        )
        # `sha256sum -c SHA256SUMS` from the repo root checks every file.
        files: list[Artifact | ImageFile] = [*arts, *imgs]
        _atomic_write(self.root / self.SUMS, "".join(f"{a.sha256}  {a.path}\n" for a in files))
        _atomic_write(
            self.root / self.CHECKSUMS_VARS,
            "# Kubespray-shaped checksum variables for this files repo (ansible-playbook -e @checksums.yml)\n"
            + yaml.safe_dump(self.checksum_vars(), default_flow_style=False, sort_keys=False),  # its order is Kubespray's
        )


def default_root() -> Path:
    return cache_dir() / "files-repo"


def build(
    versions: Mapping[str, Iterable[str]] | None = None,
    *,
    root: Path | None = None,
    mirror: str | None = None,
    guest_glibc: str | None = GUEST_GLIBC,
    on_line: Callable[[str], None] | None = None,
) -> FilesRepo:
    """Make sure the repo holds `versions` (component -> versions); return it.

    Cached: files already built are not rebuilt, so a second call costs a manifest read.
    `guest_glibc` refuses binaries the lab's guests could not run (None skips the check).
    Kubernetes binaries (kubernetes_versions()) come from the unpacked sets in the harness cache
    (kubernetes_binaries()), hard-linked into the repo where the file system allows. A repo with
    Kubernetes binaries of a set also holds the pod images a node of that version needs
    (harness.installer.images.images_for(), at image_path()), linked from the images cache.
    """
    wanted = _normalise(versions if versions is not None else default_versions())
    root = root or default_root()
    root.mkdir(parents=True, exist_ok=True)
    work = root.parent / f"{root.name}.work"
    pod_images = _pod_images(wanted, mirror)  # before this repo's lock: the images fetch Debian packages under the default repo's
    with file_lock(root.parent / f"{root.name}.lock"):
        repo = FilesRepo.load(root)
        missing = [(c, v) for c, v in wanted if not repo.has(c, v)]
        stale = [f for f in pod_images if repo.images.get(f.ref) != f or not (root / f.path).is_file()]
        if stale:
            with progress.step(f"files repo: {len(stale)} pod image(s)"):
                for f in stale:
                    repo.images[f.ref] = _place_image(root, f, pod_images[f])
                    repo._write_indexes()
        if not missing:
            return repo
        from_debian = [(c, v) for c, v in missing if _component(c).debian is not None]
        apt = _PrivateApt(work / "apt", mirror or debian_mirror()) if from_debian else None
        unpacked: Path | None = None
        with progress.step(f"files repo: {len(missing)} file(s)") as line:
            show = on_line or line
            if apt is not None:
                show("apt-get update (private lists: " + " ".join(SUITES) + ")")
                apt.update()
            if len(from_debian) < len(missing):
                show(f"Kubernetes binaries: unpacking {kubernetes_source()} into the cache")
                unpacked = kubernetes_binaries()
            for i, (comp, ver) in enumerate(missing, 1):
                show(f"[{i}/{len(missing)}] {comp} {ver}")
                if apt is not None and (comp, ver) in from_debian:
                    art = _build_one(apt, repo.root, work, comp, ver, guest_glibc)
                else:
                    assert unpacked is not None
                    art = _place_kubernetes(repo.root, unpacked, comp, ver)
                repo.artifacts[(comp, ver)] = art
                repo._write_indexes()  # after each file, so an interrupted build keeps what it made
        return repo


def _pod_images(wanted: Iterable[tuple[str, str]], mirror: str | None) -> dict[ImageFile, Path]:
    """The pod images of every Kubernetes set among `wanted` (none without Kubernetes), built into the
    images cache if it lacks them: the repo entry each should have -> the cached tarball."""
    sets = sorted({v for c, v in wanted if _component(c).built is not None}, key=_vkey)
    if not sets:
        return {}
    # harness.installer.images builds on this module (its Debian packages, the Kubernetes binaries), so
    # it is imported only when a repo holds Kubernetes.
    from harness.installer import images

    built: dict[str, tuple[Path, str, str, int, list[str]]] = {}
    for v in sets:
        for image in images.images_for(v, mirror=mirror):
            _p, _s, _d, _z, vs = built.setdefault(image.ref, (image.path, image.sha256, image.digest, image.size, []))
            vs.append(v)
    return {ImageFile(ref, image_path(ref), sha, size, digest, tuple(vs)): path
            for ref, (path, sha, digest, size, vs) in built.items()}


def _place_image(root: Path, entry: ImageFile, cached: Path) -> ImageFile:
    """The cached tarball at its repo path: a hard link (the images cache replaces, never rewrites, a
    tarball) or a copy, its sha256 checked against the cache's record."""
    dest = root / entry.path
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(cached, tmp)
    except OSError:
        shutil.copyfile(cached, tmp)
    digest = sha256_file(tmp)
    if digest != entry.sha256:
        tmp.unlink()
        raise InstallerError(f"pod image {entry.ref}: {cached} has sha256 {digest}, its record says {entry.sha256}")
    os.replace(tmp, dest)
    return entry


def _normalise(versions: Mapping[str, Iterable[str]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for comp, vers in versions.items():
        comp = comp.removesuffix("_version")
        if comp not in components.repo_components():
            raise InstallerError(f"the files repo cannot hold {comp!r}; it holds {', '.join(components.repo_components())}")
        if isinstance(vers, str):
            vers = [vers]
        for v in vers:
            v = str(v).removeprefix("v")
            if not re.fullmatch(r"\d+\.\d+\.\d+", v):
                raise InstallerError(f"{comp} version {v!r} is not X.Y.Z")
            if (comp, v) not in out:
                out.append((comp, v))
    # A Kubernetes set the source lacks is refused here, before any download or unpack.
    if any(_component(c).built is not None for c, _v in out):
        sets = kubernetes_sets()
        for comp, v in out:
            if _component(comp).built is not None and comp not in sets.get(v, ()):
                have = sorted((s for s, names in sets.items() if comp in names), key=_vkey)
                raise InstallerError(
                    f"no Kubernetes {comp} {v} in {kubernetes_source()} (its sets: {', '.join(have) or 'none'})"
                )
    return out


def _build_one(apt: _PrivateApt, root: Path, work: Path, comp: str, ver: str, guest_glibc: str | None) -> Artifact:
    spec, src = source(comp)
    debs = [apt.download(pkg, ver, work / "debs") for pkg in src.packages]
    with tempfile.TemporaryDirectory(dir=work) as tmp:
        tree = Path(tmp) / "x"
        for deb in debs:
            proc.run(["dpkg-deb", "-x", str(deb), str(tree)])
        found = _find_binaries(tree, [b.name for b in spec.binaries])
        absent = [b.name for b in spec.binaries if b.always and b.name not in found]
        if absent:
            raise InstallerError(
                f"{comp} {ver}: Debian packages {', '.join(d.name for d in debs)} lack {', '.join(absent)}"
            )
        patched: list[str] = []
        needs = max((_glibc_need(p) for p in found.values()), key=_glibc_key, default=None)
        if guest_glibc and needs and _glibc_key(needs) > _glibc_key(guest_glibc):
            for name, p in found.items():
                if _glibc_key(_glibc_need(p)) > _glibc_key(guest_glibc):
                    patched += [f"{name}: {r}" for r in relink_c23_symbols(p, guest_glibc)]
            needs = max((_glibc_need(p) for p in found.values()), key=_glibc_key, default=None)
            if needs and _glibc_key(needs) > _glibc_key(guest_glibc):
                raise InstallerError(
                    f"{comp} {ver} from Debian needs GLIBC_{needs} but the lab's guests have glibc {guest_glibc};"
                    " pick a version from an older suite (LAB.md's table) or a newer guest"
                )
        rel = url_path(comp, ver)
        dest = root / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp_out = dest.with_name(dest.name + ".part")
        if src.archive_top is not None:
            # The upstream tarball's layout (etcd-vX-linux-amd64/, containerd's bin/), as Kubespray unpacks it.
            _write_tgz(tmp_out, src.archive_top.format(v=ver, arch=ARCH), found)
        else:
            shutil.copyfile(found[spec.binaries[0].name], tmp_out)  # a bare binary (runc.amd64)
            tmp_out.chmod(0o755)
        os.replace(tmp_out, dest)
    return Artifact(
        component=comp,
        version=ver,
        path=rel,
        sha256=sha256_file(dest),
        size=dest.stat().st_size,
        debs=tuple(d.name for d in debs),
        binaries=tuple(sorted(found)),
        glibc=needs,
        patched=tuple(patched),
    )


def _checksum_table(component: str) -> str | None:
    """Kubespray's checksum dict for the component's release file (`etcd_binary_checksums`); None when
    Kubespray has none (kube-apiserver: kubeadm runs it as an image)."""
    c = _component(component)
    return c.checksums[0].table if c.checksums else None


# -- the Kubernetes binaries built from source ---------------------------------


def kubernetes_source() -> Path:
    """The Kubernetes builds (one folder per labelled set, each with SHA256SUMS, and their `unpack`
    script): `HARNESS_KUBERNETES`, else `shared/kubernetes` beside this repository's checkout (an installed
    harness has none: beside the folder it runs from, as a checkout would be)."""
    env = os.environ.get("HARNESS_KUBERNETES")
    if env:
        return Path(env)
    return (resources.checkout() or Path.cwd()).parent / "shared" / "kubernetes"


def kubernetes_sets(src: Path | None = None) -> dict[str, frozenset[str]]:
    """Set (version, no `v`) -> the binaries its SHA256SUMS lists; refuses a source that is not there."""
    src = src or kubernetes_source()
    sums = sorted(src.glob("v*/SHA256SUMS"))
    if not sums:
        raise PrerequisiteError(
            f"no Kubernetes binaries at {src} (v*/SHA256SUMS); set HARNESS_KUBERNETES to the folder holding them"
        )
    return {p.parent.name.removeprefix("v"): frozenset(_read_sums(p)) for p in sums}


def _read_sums(path: Path) -> dict[str, str]:
    out: dict[str, str] = {}
    for line in path.read_text().splitlines():
        digest, _sep, name = line.partition("  ")
        if name:
            out[name.strip()] = digest
    return out


def kubernetes_cache() -> Path:
    return cache_dir() / "kubernetes"


def kubernetes_binaries(src: Path | None = None, dest: Path | None = None) -> Path:
    """Every set unpacked, sha256-checked, into `dest` (default: the harness cache); returns `dest`.

    The source's own `unpack` does it (xz for the first set, xdelta3 patches for the next) and keeps
    files that already match their sum: ~15-25 s on 2 cores the first time, ~10 s of re-hashing 2 GB
    after. A stamp of what it checked (the sums, each file's size, inode and mtime) skips even that
    while nothing changed, so the cache is reused across runs for free."""
    src = src or kubernetes_source()
    dest = dest or kubernetes_cache()
    kubernetes_sets(src)  # a missing source is named before anything else
    stamp = dest / ".unpacked.json"
    with file_lock(dest.parent / f"{dest.name}.lock"):
        if stamp.is_file() and stamp.read_text() == _unpack_stamp(src, dest):
            return dest
        absent = [f"{t} ({pkg})" for t, pkg in (("xz", "xz-utils"), ("xdelta3", "xdelta3")) if not shutil.which(t)]
        if absent:
            raise PrerequisiteError(
                f"unpacking the Kubernetes binaries needs {', '.join(absent)}: apt-get install xz-utils xdelta3"
                " (ci/setup does)"
            )
        stamp.unlink(missing_ok=True)
        try:
            proc.run([str(src / "unpack"), str(dest)], timeout=1800)
        except proc.CommandError as e:
            raise InstallerError(f"unpacking the Kubernetes binaries from {src} into {dest} failed:\n{e}") from e
        _atomic_write(stamp, _unpack_stamp(src, dest))
    return dest


def _unpack_stamp(src: Path, dest: Path) -> str:
    """What a finished unpack checked: every set's SHA256SUMS and the identity of each file it vouched for."""
    out: dict[str, object] = {}
    for sums in sorted(src.glob("v*/SHA256SUMS")):
        files: dict[str, list[int] | None] = {}
        for name in sorted(_read_sums(sums)):
            try:
                st = (dest / sums.parent.name / name).stat()
            except OSError:
                files[name] = None
                continue
            files[name] = [st.st_size, st.st_ino, st.st_mtime_ns]  # not ctime: the repo's hard links change it
        out[sums.parent.name] = {"sums": sums.read_text(), "files": files}
    return json.dumps(out, sort_keys=True)


def _place_kubernetes(root: Path, unpacked: Path, comp: str, ver: str) -> Artifact:
    """One unpacked binary at its dl.k8s.io path; its sum checked against the set's SHA256SUMS again,
    since a copy (not a link) could differ from what unpack checked."""
    src_dir = kubernetes_source() / f"v{ver}"
    want = _read_sums(src_dir / "SHA256SUMS").get(comp)
    binary = unpacked / f"v{ver}" / comp
    if want is None or not binary.is_file():
        raise InstallerError(f"no Kubernetes {comp} {ver} in {unpacked} (unpacked from {src_dir})")
    rel = url_path(comp, ver)
    dest = root / rel
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    tmp.unlink(missing_ok=True)
    try:
        os.link(binary, tmp)  # 1 GB for both sets: share the cache's inodes (unpack replaces, never rewrites, a file)
    except OSError:
        shutil.copyfile(binary, tmp)
        tmp.chmod(0o755)
    digest = sha256_file(tmp)
    if digest != want:
        tmp.unlink()
        raise InstallerError(f"Kubernetes {comp} {ver}: sha256 {digest} is not {want} ({src_dir / 'SHA256SUMS'})")
    os.replace(tmp, dest)
    return Artifact(
        component=comp, version=ver, path=rel, sha256=digest, size=dest.stat().st_size, debs=(),
        binaries=(comp,), glibc=None,  # built with CGO_ENABLED=0: static, no glibc needed
        origin=str(src_dir),
    )


def _find_binaries(tree: Path, names: Iterable[str]) -> dict[str, Path]:
    found: dict[str, Path] = {}
    for name in names:
        for d in _BIN_DIRS:
            p = tree / d / name
            if p.is_file() and not p.is_symlink():
                found[name] = p
                break
    return found


def _write_tgz(dest: Path, top: str, files: Mapping[str, Path]) -> None:
    """A reproducible tarball: fixed owner and order, gzip without a timestamp, so rebuilds hash the same."""
    mtime = max(int(p.stat().st_mtime) for p in files.values())

    def _norm(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.uid = ti.gid = 0
        ti.uname = ti.gname = "root"
        ti.mtime = mtime
        return ti

    with (
        open(dest, "wb") as raw,
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=6) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar,
    ):
        d = tarfile.TarInfo(top)
        d.type = tarfile.DIRTYPE
        d.mode = 0o755
        tar.addfile(_norm(d))
        for name in sorted(files):
            ti = tar.gettarinfo(str(files[name]), arcname=f"{top}/{name}")
            ti.mode = 0o755
            with open(files[name], "rb") as fh:
                tar.addfile(_norm(ti), fh)


def _glibc_need(binary: Path) -> str | None:
    """The newest GLIBC_x.y a binary's dynamic symbols ask for (LAB.md: objdump -T)."""
    r = proc.run(["objdump", "-T", str(binary)], check=False)
    found = re.findall(r"GLIBC_(\d+(?:\.\d+)+)", r.stdout)
    return max(found, key=_glibc_key) if found else None


# glibc 2.38 redirects strtol & co. to C23 variants when code is built with _GNU_SOURCE; they
# differ only in also accepting "0b" prefixes. Debian trixie/sid's runc asks for just
# __isoc23_strtol@GLIBC_2.38, which pins an otherwise bookworm-compatible binary to glibc 2.38.
_C23_SYMBOLS: dict[str, str] = {
    "__isoc23_strtol": "strtol",
    "__isoc23_strtoul": "strtoul",
    "__isoc23_strtoll": "strtoll",
    "__isoc23_strtoull": "strtoull",
}
_OLD_VERSION = "GLIBC_2.2.5"  # the x86_64 base version every one of those symbols also has


def _elf_hash(name: bytes) -> int:
    h = 0
    for c in name:
        h = ((h << 4) + c) & 0xFFFFFFFF
        g = h & 0xF0000000
        if g:
            h ^= g >> 24
        h &= ~g & 0xFFFFFFFF
    return h


def relink_c23_symbols(binary: Path, guest_glibc: str) -> list[str]:
    """Point a binary's glibc-2.38 C23 `strto*` imports back at the base `strto*` symbols.

    Edits .dynstr and .gnu.version_r in place: the symbol names shrink to the old names and the
    GLIBC_2.38 version requirement becomes GLIBC_2.2.5. Refuses (returns []) when anything but
    those symbols needs the newer version, so no other behaviour changes. ELF64 little-endian only.
    """
    import struct

    data = bytearray(binary.read_bytes())
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return []
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", data, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize) for i in range(shnum)]
    by_type: dict[int, tuple[int, ...]] = {}
    for sh in sections:
        by_type.setdefault(sh[1], sh)
    dynsym, versym, verneed = by_type.get(11), by_type.get(0x6FFFFFFF), by_type.get(0x6FFFFFFE)
    if not (dynsym and versym and verneed):
        return []
    dynstr = sections[dynsym[6]]
    str_off, str_size = dynstr[4], dynstr[5]

    def cstr(off: int) -> bytes:
        start = str_off + off
        return bytes(data[start : data.index(0, start)])

    base_name = data.find(_OLD_VERSION.encode() + b"\0", str_off, str_off + str_size)
    if base_name < 0:
        return []
    # Find the vernaux entries asking for versions newer than the guest has.
    newer: dict[int, int] = {}  # vna_other -> file offset of the vernaux
    off = verneed[4]
    for _ in range(verneed[7]):
        _ver, cnt, _file, aux, nxt = struct.unpack_from("<HHIII", data, off)
        a = off + aux
        for _ in range(cnt):
            _h, _flags, other, name, anext = struct.unpack_from("<IHHII", data, a)
            m = re.fullmatch(rb"GLIBC_(\d+(?:\.\d+)+)", cstr(name))
            if m and _glibc_key(m.group(1).decode()) > _glibc_key(guest_glibc):
                newer[other] = a
            a += anext
        off += nxt
        if not nxt:
            break
    if not newer:
        return []
    # Every symbol on those versions must be one we know how to map back.
    renames: list[tuple[int, str, str]] = []
    nsyms = dynsym[5] // 24
    for i in range(nsyms):
        ver = struct.unpack_from("<H", data, versym[4] + 2 * i)[0] & 0x7FFF
        if ver in newer:
            st_name = struct.unpack_from("<I", data, dynsym[4] + 24 * i)[0]
            name = cstr(st_name).decode()
            if name not in _C23_SYMBOLS:
                return []
            renames.append((str_off + st_name, name, _C23_SYMBOLS[name]))
    for pos, old, new in renames:
        data[pos : pos + len(new) + 1] = new.encode() + b"\0"  # shorter: fits in place
    for a in newer.values():
        struct.pack_into("<I", data, a, _elf_hash(_OLD_VERSION.encode()))
        struct.pack_into("<I", data, a + 8, base_name - str_off)
    tmp = binary.with_name(binary.name + ".relink")
    tmp.write_bytes(bytes(data))
    tmp.chmod(binary.stat().st_mode)
    os.replace(tmp, binary)
    return [f"{old}@GLIBC_2.38 -> {new}@{_OLD_VERSION}" for _, old, new in renames]


def _glibc_key(v: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in v.split(".")) if v else ()


def _vkey(v: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", v)[:3])


def sha256_file(path: Path) -> str:
    """A file's SHA-256, hex, read in chunks (release files and Kubernetes binaries run to 100 MB)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


# -- the private apt configuration ------------------------------------------


def debian_mirror(sources: Iterable[Path] | None = None) -> str:
    """The machine's Debian archive (harness.debian; `HARNESS_DEBIAN_MIRROR` overrides)."""
    return debian.debian_mirror(None, sources)


class _PrivateApt:
    """apt-get/apt-cache with their own sources, lists and cache: the machine's apt is left alone."""

    KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

    def __init__(self, base: Path, mirror: str) -> None:
        self.base = base
        self.mirror = mirror
        for d in ("sources", "lists/partial", "cache/archives/partial"):
            (base / d).mkdir(parents=True, exist_ok=True)
        (base / "sources" / "lab.sources").write_text(
            "Types: deb\n"
            f"URIs: {mirror}\n"
            f"Suites: {' '.join(SUITES)}\n"
            "Components: main\n"
            f"Architectures: {ARCH}\n"
            f"Signed-By: {self.KEYRING}\n"
        )

    def _opts(self) -> list[str]:
        b = self.base
        return [
            "-o", "Dir::Etc::sourcelist=/dev/null",
            "-o", f"Dir::Etc::sourceparts={b / 'sources'}",
            "-o", f"Dir::State::Lists={b / 'lists'}",
            "-o", f"Dir::Cache={b / 'cache'}",
            # Root's apt drops to _apt for fetching, which cannot write into the harness cache.
            "-o", "APT::Sandbox::User=root",
            "-o", "Acquire::Languages=none",
            "-o", "Debug::NoLocking=true",
        ]

    def update(self) -> None:
        for tool in ("apt-get", "apt-cache", "dpkg-deb", "objdump"):
            if not shutil.which(tool):
                raise PrerequisiteError(f"{tool} is needed to build the files repo (apt-get install apt dpkg binutils)")
        lists = self.base / "lists"
        fresh = [p for p in lists.glob("*_Packages*") if time.time() - p.stat().st_mtime < 6 * 3600]
        if len(fresh) >= len(SUITES):
            return  # lists younger than six hours: the suites' versions have not moved
        try:
            proc.run(["apt-get", *self._opts(), "update"], timeout=900)
        except proc.CommandError as e:
            raise InstallerError(f"apt-get update of {self.mirror} ({' '.join(SUITES)}) failed:\n{e}") from e

    def package_version(self, package: str, upstream: str) -> str:
        """The Debian version of `package` whose upstream part is `upstream` (3.5.16 -> 3.5.16-4), or
        `upstream` itself when it is a whole Debian version (1.0.2-2): suites can share an upstream version."""
        r = proc.run(["apt-cache", *self._opts(), "madison", package], check=False)
        have: list[str] = []
        for line in r.stdout.splitlines():
            cols = [c.strip() for c in line.split("|")]
            if len(cols) >= 2 and cols[0] == package:
                have.append(cols[1])
                if upstream in (cols[1], _upstream(cols[1])):
                    return cols[1]
        raise InstallerError(
            f"no Debian {package} {upstream} in {' '.join(SUITES)} at {self.mirror}"
            f" (available: {', '.join(have) or 'none'})"
        )

    def download(self, package: str, upstream: str, dest: Path) -> Path:
        version = self.package_version(package, upstream)
        dest.mkdir(parents=True, exist_ok=True)
        name = f"{package}_{version.split(':')[-1]}_{ARCH}.deb"
        if (dest / name).is_file():
            return dest / name
        try:
            proc.run(["apt-get", *self._opts(), "download", f"{package}={version}"], cwd=str(dest), timeout=900)
        except proc.CommandError as e:
            raise InstallerError(f"apt-get download {package}={version} failed:\n{e}") from e
        if not (dest / name).is_file():
            # apt escapes some characters in file names: take whatever it wrote for this package.
            cands = sorted(dest.glob(f"{package}_*{_upstream(version)}*_{ARCH}.deb"))
            if not cands:
                raise InstallerError(f"apt-get download {package}={version} wrote no .deb into {dest}")
            return cands[-1]
        return dest / name


def debian_packages(
    wanted: Mapping[str, str], dest: Path, *, root: Path | None = None, mirror: str | None = None
) -> list[Path]:
    """Debian package files (package -> upstream version, from any of SUITES) fetched into `dest`
    through the files repo's private apt configuration, under the repo's lock: its lists are reused
    (and refreshed after six hours), the machine's apt is left alone. For other offline builders
    (harness.installer.images); a package already in `dest` costs no apt run (each apt-cache or
    apt-get call reads every suite's lists: seconds)."""
    root = root or default_root()
    have = {p: d for p, v in wanted.items() if (d := _deb_in(dest, p, v)) is not None}
    if len(have) == len(wanted):
        return [have[p] for p in wanted]
    with file_lock(root.parent / f"{root.name}.lock"):
        apt = _PrivateApt(root.parent / f"{root.name}.work" / "apt", mirror or debian_mirror())
        apt.update()
        return [have.get(package) or apt.download(package, upstream, dest) for package, upstream in wanted.items()]


def _deb_in(folder: Path, package: str, upstream: str) -> Path | None:
    """A package file apt-get download wrote for that upstream version (its name escapes `:` as %3a)."""
    for deb in sorted(folder.glob(f"{package}_*_{ARCH}.deb")):
        version = urllib.parse.unquote(deb.name.removeprefix(f"{package}_").removesuffix(f"_{ARCH}.deb"))
        if upstream in (version.split(":", 1)[-1], _upstream(version)):
            return deb
    return None


def _upstream(debian_version: str) -> str:
    """3.4.23-4+b4 -> 3.4.23; 1:1.7.24~ds1-6 -> 1.7.24; 2.1.9+ds1-5 -> 2.1.9."""
    v = debian_version.split(":", 1)[-1]
    m = re.match(r"\d+(?:\.\d+)*", v)
    return m.group(0) if m else v


# -- serving the repo inside the lab's network namespace ---------------------


@dataclass
class FilesServer:
    """`python -m http.server` over the repo, running inside a network namespace."""

    root: Path
    netns: str
    address: str
    port: int
    log: Path
    _popen: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int | None:
        return self._popen.pid if self._popen else None

    def url(self, host: str | None = None) -> str:
        """The `files_repo` value; `host` is the address guests reach (needed when bound to 0.0.0.0)."""
        h = host or self.address
        if h in ("0.0.0.0", "::"):
            raise InstallerError("the server listens on every address; pass the address the guests reach it at")
        return f"http://{h}:{self.port}"

    def running(self) -> bool:
        return self._popen is not None and self._popen.poll() is None

    def stop(self, timeout: float = 10) -> None:
        """Stop the server and reap it; safe to call twice."""
        p = self._popen
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=timeout)
        self._popen = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _die_with_parent() -> None:
    # If the harness dies without calling stop(), the kernel ends the server too (PR_SET_PDEATHSIG).
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)


def serve(
    repo_dir: Path,
    netns: str,
    address: str = "0.0.0.0",
    port: int = 8080,
    *,
    ready_timeout: float = 20,
) -> FilesServer:
    """Serve `repo_dir` over HTTP inside network namespace `netns`; returns once it answers.

    Only inside the namespace: the lab's addresses never appear in the root namespace.
    """
    repo_dir = Path(repo_dir).resolve()
    if not repo_dir.is_dir():
        raise InstallerError(f"files repo {repo_dir} does not exist; build it first (files_repo.build())")
    if os.geteuid() != 0:
        raise PrerequisiteError("serving the files repo inside a network namespace needs root (ip netns exec)")
    if proc.run(["ip", "netns", "exec", netns, "true"], check=False).rc != 0:
        raise InstallerError(f"network namespace {netns!r} does not exist (ip netns list)")
    log = state_dir() / f"files-server-{netns}-{port}.log"
    argv = [
        "ip", "netns", "exec", netns,
        sys.executable, "-u", "-m", "http.server", "--bind", address, "--directory", str(repo_dir), str(port),
    ]
    # A long-running child: proc.run waits for exit, so this one process is started directly.
    with open(log, "wb") as logfh:
        popen = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=logfh, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=_die_with_parent,  # noqa: PLW1509  # prctl only, before exec
        )
    server = FilesServer(repo_dir, netns, address, port, log, popen)
    probe_host = "127.0.0.1" if address in ("0.0.0.0", "") else ("::1" if address == "::" else address)
    probe = f"import socket; socket.create_connection(({probe_host!r}, {port}), 1).close()"
    deadline = time.monotonic() + ready_timeout
    while True:
        if popen.poll() is not None:
            tail = log.read_text(errors="replace").strip().splitlines()[-5:]
            server.stop()
            raise InstallerError(
                f"the files server in netns {netns} on {address}:{port} exited (rc={popen.returncode}):\n"
                + "\n".join(tail)
            )
        # Its own "Serving HTTP" line proves it bound the port (another server might answer the probe).
        if "Serving HTTP" in log.read_text(errors="replace") and proc.run(
            [sys.executable, "-c", probe], netns=netns, check=False, timeout=10
        ).ok:
            return server
        if time.monotonic() > deadline:
            server.stop()
            raise InstallerError(f"the files server in netns {netns} did not answer on {address}:{port} within {ready_timeout:.0f}s")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    """`python -m harness.installer.files_repo [--root DIR]`: build the default repo, with progress."""
    import argparse

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--root", type=Path, default=None)
    args = ap.parse_args(argv)
    repo = build(root=args.root)
    console = progress.console()
    for (c, v), a in sorted(repo.artifacts.items()):
        console.print(f"{c:11} {v:8} {a.path}  glibc>={a.glibc}", highlight=False)
    console.print(f"root: {repo.root}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
