"""Pod images made offline from Debian packages and the lab's Kubernetes builds, as OCI image tarballs
containerd imports.

No registry is reachable from the lab, so the images a Kubernetes node needs are made here and
loaded with `ctr -n k8s.io images import FILE` (import_argv()), never pulled. images_for(version)
gives every image a node needs for one Kubernetes version:

- the pod sandbox, tagged `registry.k8s.io/pause:3.10` (the tag containerd's CRI and the kubelet ask
  for), from Debian's catatonit: `catatonit -P` is a pause process (it sleeps, reaps what is
  reparented to it, and exits 0 on SIGTERM or SIGINT). Chosen over a pause built from C because it
  is a Debian package, fetched and checksummed by apt like the files repo's, and statically linked:
  the image needs no libc and the machine no compiler (a static C build needs libc6-dev, which the
  set-up does not install).
- the control plane kubeadm (and so Kubespray) runs as static pods, tagged as upstream tags them:
  `registry.k8s.io/kube-apiserver:v1.32.0`, `kube-controller-manager`, `kube-scheduler`, each the
  labelled set's static binary at /usr/local/bin/<name> (../shared/kubernetes: both sets are the same
  1.32-beta code, only the version label differs), its entrypoint.
- `registry.k8s.io/kube-proxy:v1.32.0`, the binary plus what iptables mode runs inside it: Debian
  bookworm's iptables (nft and legacy), conntrack, the libraries they load (resolved from their ELF
  headers, the loader included) and the alternatives links Debian's postinst would make.
- a stand-in for `registry.k8s.io/e2e-test-images/agnhost:2.53`, the canaries' image
  (playbooks/templates/canary.yml.j2), made from busybox-static and a shell entrypoint: it serves
  only netexec's GET /hostname (busybox httpd) and `pause`. It says so in its labels.
- a workload image tagged `harness.local/busybox:<version>` (a harness name: it is Debian's
  busybox-static, not the upstream image), with a shell and `nc`. Its `wget` segfaulted in pods on
  these nodes (../shared/LAB-CONTAINERS.md); `nc` and `httpd` work.

Each tarball is an OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/`) with one gzip
layer, written byte for byte here (fixed owners, order and times, gzip without a timestamp), so the
same inputs give the same digests. Tarballs are cached under the harness cache, keyed by what builds
them (the spec, and a Kubernetes binary's sha256 from its set's SHA256SUMS).
"""

from __future__ import annotations

import fnmatch
import gzip
import hashlib
import io
import json
import os
import struct
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from harness import proc, progress
from harness.errors import InstallerError
from harness.installer import files_repo
from harness.settings import cache_dir, file_lock

FORMAT = 2  # bump when the image layout or config changes, so cached tarballs get rebuilt
ARCH = "amd64"
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
# Level 6: as small as 9 on these binaries (the Kubernetes ones: 64 MiB -> 18 MiB either way) in a
# third of the time.
GZIP_LEVEL = 6

_OCI_INDEX = "application/vnd.oci.image.index.v1+json"
_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
_OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
_OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# containerd's import names an image by this annotation (its own export writes it); OCI's ref.name
# carries the tag alone, as the image layout spec means it.
_CONTAINERD_NAME = "io.containerd.image.name"
_OCI_REF_NAME = "org.opencontainers.image.ref.name"
_OCI_DESCRIPTION = "org.opencontainers.image.description"

# Where the dynamic loader of Debian's glibc looks without an ld.so.cache (bookworm's packages are not
# usr-merged: libc6 ships /lib/x86_64-linux-gnu, others /usr/lib/x86_64-linux-gnu).
_LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib", "lib64")


@dataclass(frozen=True)
class ImageSpec:
    """What one image is made of: files from Debian packages, Kubernetes binaries and a few of its own."""

    ref: str  # the name containerd imports it under
    debs: tuple[tuple[str, str], ...] = ()  # (package, upstream version, or a whole Debian version to pin one suite's)
    keep: tuple[str, ...] = ()  # fnmatch patterns of paths in the unpacked packages kept in the image
    kubernetes: tuple[str, ...] = ()  # binaries of the set `kube_version`, kept at usr/local/bin/<name>
    kube_version: str = ""
    links: tuple[tuple[str, str], ...] = ()  # (path, target) symlinks of its own
    files: tuple[tuple[str, int, str], ...] = ()  # (path, mode, text) files of its own
    requires: tuple[str, ...] = ()  # paths the image must end up with (a package that moved them is named)
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    user: str = ""
    applets: bool = False  # a link per applet the first kept binary lists (`busybox --list-full`)
    base: bool = False  # /etc/passwd and /etc/group (root, nobody), /tmp, /root, /var, /run
    dynamic: bool = False  # its programs may need the loader: the libraries come along (_closure)
    description: str = ""

    @property
    def name(self) -> str:
        """A file-name-safe short name (`pause`, `kube-apiserver`, `agnhost`)."""
        return self.ref.rsplit("/", 1)[-1].split(":", 1)[0]

    @property
    def tag(self) -> str:
        return self.ref.rsplit(":", 1)[-1]

    def key(self, inputs: Mapping[str, str] | None = None) -> str:
        """What the tarball depends on: the spec, the layout's FORMAT and `inputs` (binary -> sha256)."""
        text = json.dumps({"format": FORMAT, "arch": ARCH, "gzip": GZIP_LEVEL, **asdict(self),
                           "inputs": dict(inputs or {})}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


# The user and group Kubernetes' own pause image runs as.
PAUSE = ImageSpec("registry.k8s.io/pause:3.10", debs=(("catatonit", "0.1.7"),), keep=("usr/bin/catatonit",),
                  entrypoint=("/usr/bin/catatonit", "-P"), user="65535:65535",
                  description="pause: Debian bookworm's static catatonit run as `catatonit -P`")
BUSYBOX = ImageSpec("harness.local/busybox:1.35.0", debs=(("busybox-static", "1.35.0"),), keep=("bin/busybox",),
                    requires=("bin/sh", "usr/bin/nc"), cmd=("sh",), applets=True, base=True,
                    description="Debian bookworm's busybox-static with a link per applet")

# The canaries' image cannot be downloaded, so this stand-in carries agnhost's tag and its entrypoint's
# shape (`/agnhost SUBCOMMAND FLAGS`, default `pause`) but implements only what the canaries use.
AGNHOST_SCRIPT = r"""#!/bin/sh
# A stand-in for registry.k8s.io/e2e-test-images/agnhost:2.53, made offline from busybox (the real
# image cannot be downloaded here). It implements only:
#   netexec [--http-port=N]   GET /hostname answers this container's hostname over HTTP on N (8080)
#   pause                     sleeps until SIGTERM or SIGINT
# No other subcommand and no other netexec endpoint (/echo, /shell, /dial, UDP) exists here.
set -eu
sub=${1:-pause}
[ $# -gt 0 ] && shift
child=
# sh runs as PID 1: without a trap SIGTERM would be ignored and a pod would wait out its grace period.
trap '[ -n "$child" ] && kill "$child" 2>/dev/null; exit 0' TERM INT
case "$sub" in
netexec)
    port=8080
    while [ $# -gt 0 ]; do
        case "$1" in
        --http-port=*) port=${1#--http-port=} ;;
        --http-port) shift; port=${1:-} ;;
        *) echo "agnhost stand-in: netexec: $1 ignored (only /hostname is served)" >&2 ;;
        esac
        shift
    done
    case "$port" in ''|*[!0-9]*) echo "agnhost stand-in: netexec: bad --http-port '$port'" >&2; exit 2 ;; esac
    www=/tmp/netexec
    mkdir -p "$www"
    printf %s "$(hostname)" > "$www/hostname"  # as agnhost: the name alone, no newline
    httpd -f -p "$port" -h "$www" &
    ;;
pause)
    sleep inf &
    ;;
*)
    echo "agnhost stand-in: no '$sub' here: this image serves only netexec's /hostname and pause" >&2
    exit 2
    ;;
esac
child=$!
wait "$child"
"""
AGNHOST = ImageSpec(
    "registry.k8s.io/e2e-test-images/agnhost:2.53", debs=BUSYBOX.debs, keep=BUSYBOX.keep,
    files=(("agnhost", 0o755, AGNHOST_SCRIPT),), requires=("bin/sh", "usr/sbin/httpd", "bin/hostname"),
    entrypoint=("/agnhost",), cmd=("pause",), applets=True, base=True,
    description="STAND-IN for agnhost 2.53, not the upstream image: /agnhost is a shell script over"
                " Debian's busybox-static serving only `netexec --http-port=N` GET /hostname (busybox httpd)"
                " and `pause`",
)

CONTROL_PLANE = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# Debian bookworm's iptables 1.8.9 and what its programs load. libnfnetlink0 is pinned by its whole version:
# trixie and sid carry the same upstream 1.0.2, built against newer glibcs.
_IPTABLES_DEBS = (
    ("iptables", "1.8.9"), ("libxtables12", "1.8.9"), ("libip4tc2", "1.8.9"), ("libip6tc2", "1.8.9"),
    ("libnftnl11", "1.2.4"), ("libmnl0", "1.0.4"), ("libnfnetlink0", "1.0.2-2"),
    ("libnetfilter-conntrack3", "1.0.9"), ("conntrack", "1.4.7"), ("libc6", "2.36"),
)
_IPTABLES_KEEP = (
    "usr/sbin/xtables-nft-multi", "usr/sbin/xtables-legacy-multi",
    "usr/sbin/iptables-nft*", "usr/sbin/ip6tables-nft*", "usr/sbin/iptables-legacy*", "usr/sbin/ip6tables-legacy*",
    "usr/lib/x86_64-linux-gnu/xtables/*",  # the match and target extensions iptables loads by name
    "usr/sbin/conntrack",
)  # no netbase (/etc/protocols): libxtables knows tcp, udp, sctp, icmp and the rest kube-proxy names
# What Debian's iptables postinst makes with update-alternatives (nft the default), links included.
_ALTERNATIVES = tuple(
    link
    for family in ("iptables", "ip6tables")
    for tool in ("", "-save", "-restore")
    for link in ((f"usr/sbin/{family}{tool}", f"/etc/alternatives/{family}{tool}"),
                 (f"etc/alternatives/{family}{tool}", f"/usr/sbin/{family}-nft{tool}"))
)


def kubernetes_image(name: str, kube_version: str) -> ImageSpec:
    """A control-plane component's image: its static binary at /usr/local/bin, the entrypoint."""
    v = kube_version.removeprefix("v")
    return ImageSpec(f"registry.k8s.io/{name}:v{v}", kubernetes=(name,), kube_version=v,
                     entrypoint=(f"/usr/local/bin/{name}",), base=True,
                     description=f"{name} of the lab's Kubernetes set v{v} (../shared/kubernetes), static")


def kube_proxy_image(kube_version: str) -> ImageSpec:
    """kube-proxy with iptables (nft backend, legacy beside it) and conntrack from Debian bookworm."""
    v = kube_version.removeprefix("v")
    return ImageSpec(
        f"registry.k8s.io/kube-proxy:v{v}", debs=_IPTABLES_DEBS, keep=_IPTABLES_KEEP,
        kubernetes=("kube-proxy",), kube_version=v, links=_ALTERNATIVES,
        requires=tuple(p for p, _t in _ALTERNATIVES) + ("usr/sbin/conntrack", "lib64/ld-linux-x86-64.so.2"),
        entrypoint=("/usr/local/bin/kube-proxy",), base=True, dynamic=True,
        description=f"kube-proxy of the lab's Kubernetes set v{v} with Debian bookworm's iptables 1.8.9"
                    " (nft default, legacy beside it) and conntrack",
    )


def specs_for(kube_version: str) -> tuple[ImageSpec, ...]:
    """Every image a node needs for one Kubernetes version (no build)."""
    v = kube_version.removeprefix("v")
    return (PAUSE, *(kubernetes_image(n, v) for n in CONTROL_PLANE), kube_proxy_image(v), AGNHOST, BUSYBOX)


@dataclass(frozen=True)
class Image:
    """A built image tarball."""

    ref: str
    path: Path
    digest: str  # the manifest's digest, as `ctr images ls` shows it
    size: int  # the tarball's bytes
    sha256: str  # the tarball's sha256 (what the files repo lists)
    sources: tuple[str, ...] = field(default=())  # the Debian package files and Kubernetes binaries it was made from

    @classmethod
    def load(cls, meta: Path) -> Image | None:
        """The record beside a cached tarball; None when either is missing or torn (rebuild)."""
        try:
            data = json.loads(meta.read_text())
            image = cls(data["ref"], Path(data["path"]), data["digest"], int(data["size"]), data["sha256"],
                        tuple(data["sources"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return image if image.path.is_file() and image.path.stat().st_size == image.size else None


def default_root() -> Path:
    return cache_dir() / "images"


def build(spec: ImageSpec, *, root: Path | None = None, mirror: str | None = None) -> Image:
    """The image's tarball, built if the cache lacks it; a second call reads a small record."""
    root = root or default_root()
    root.mkdir(parents=True, exist_ok=True)
    sums = _kubernetes_sums(spec)
    stem = f"{spec.name}-{spec.tag}-{spec.key(sums)}"
    meta = root / f"{stem}.json"
    with file_lock(root.parent / f"{root.name}.lock"):
        cached = Image.load(meta)
        if cached is not None:
            return cached
        what = ", ".join([*(f"Debian {p} {v}" for p, v in spec.debs),
                          *(f"Kubernetes {b} v{spec.kube_version}" for b in spec.kubernetes)])
        with progress.step(f"pod image {spec.ref} from {what}"):
            debs = files_repo.debian_packages(dict(spec.debs), root.parent / f"{root.name}.work" / "debs",
                                              mirror=mirror) if spec.debs else []
            binaries = {}
            if spec.kubernetes:
                unpacked = files_repo.kubernetes_binaries() / f"v{spec.kube_version}"
                binaries = {b: unpacked / b for b in spec.kubernetes}
            with tempfile.TemporaryDirectory(dir=root) as tmp:
                tree = Path(tmp) / "x"
                tree.mkdir()
                for deb in debs:
                    proc.run(["dpkg-deb", "-x", str(deb), str(tree)])
                entries = _rootfs(spec, tree, binaries, sums)
                out = root / f"{stem}.tar"
                part = out.with_name(out.name + ".part")
                manifest_digest = _write_image(spec, entries, Path(tmp), part)
                os.replace(part, out)
        sources = (*(d.name for d in debs), *(f"{p} sha256:{sums[b]}" for b, p in sorted(binaries.items())))
        image = Image(spec.ref, out, manifest_digest, out.stat().st_size, files_repo.sha256_file(out), sources)
        meta.write_text(json.dumps({**asdict(image), "path": str(image.path)}, indent=2) + "\n")
        return image


def build_all(*, root: Path | None = None, mirror: str | None = None) -> tuple[Image, ...]:
    """The images no Kubernetes version decides: the sandbox and the canaries' workloads."""
    return tuple(build(spec, root=root, mirror=mirror) for spec in (PAUSE, AGNHOST, BUSYBOX))


def images_for(kube_version: str, *, root: Path | None = None, mirror: str | None = None) -> tuple[Image, ...]:
    """Every image a node of that Kubernetes version needs (specs_for()), built if the cache lacks them:
    the sandbox, the control plane's static pods, kube-proxy and the canaries' images."""
    return tuple(build(spec, root=root, mirror=mirror) for spec in specs_for(kube_version))


def import_argv(image: Image, *, namespace: str = "k8s.io", address: str | None = None,
                ctr: str = "ctr") -> list[str]:
    """`ctr images import` of the tarball into `namespace` (k8s.io: the one the CRI plugin reads)."""
    argv = [ctr]
    if address:
        argv += ["--address", address]
    return [*argv, "-n", namespace, "images", "import", str(image.path)]


def _kubernetes_sums(spec: ImageSpec) -> dict[str, str]:
    """The sha256 of each Kubernetes binary the image holds, from its set's SHA256SUMS (the cache key)."""
    if not spec.kubernetes:
        return {}
    src = files_repo.kubernetes_source()
    sums_file = src / f"v{spec.kube_version}" / "SHA256SUMS"
    sums: dict[str, str] = {}
    if sums_file.is_file():
        for line in sums_file.read_text().splitlines():
            digest, _sep, name = line.partition("  ")
            sums[name.strip()] = digest
    absent = [b for b in spec.kubernetes if b not in sums]
    if absent:
        have = ", ".join(sorted(files_repo.kubernetes_sets(src), key=lambda s: [int(x) for x in s.split(".")]))
        raise InstallerError(f"{spec.ref}: no Kubernetes {', '.join(absent)} {spec.kube_version} in {src}"
                             f" (its sets: {have or 'none'})")
    return {b: sums[b] for b in spec.kubernetes}


# -- the root file system ---------------------------------------------------------


@dataclass(frozen=True)
class _Entry:
    """One member of the layer: a directory, a file (its bytes, or a file to read) or a symlink (its target)."""

    path: str
    kind: str  # "dir", "file", "link"
    mode: int
    data: bytes = b""
    src: Path | None = None
    target: str = ""


def _rootfs(spec: ImageSpec, tree: Path, binaries: Mapping[str, Path], sums: Mapping[str, str]) -> list[_Entry]:
    entries: dict[str, _Entry] = {}

    def add_dirs(path: str) -> None:
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            entries.setdefault(d, _Entry(d, "dir", 0o755))

    def add(entry: _Entry) -> None:
        add_dirs(entry.path)
        entries[entry.path] = entry

    kept = _select(tree, spec.keep)
    missing = [pat for pat in spec.keep if not any(fnmatch.fnmatchcase(p, pat) for p in kept)]
    if missing:
        raise InstallerError(f"{spec.ref}: the Debian packages ({', '.join(p for p, _v in spec.debs)}) have no"
                             f" {', '.join(missing)}")
    if spec.dynamic:
        kept |= _closure(spec, tree, kept)
    for rel in sorted(kept):
        p = tree / rel
        if p.is_symlink():
            add(_Entry(rel, "link", 0o777, target=os.readlink(p)))
        elif not spec.dynamic and _is_elf(p) and _needs_loader(p):
            raise InstallerError(f"{spec.ref}: {rel} is dynamically linked; the image has no libc")
        else:
            add(_Entry(rel, "file", p.stat().st_mode & 0o7777, src=p))
    for name, binary in binaries.items():
        if not binary.is_file():
            raise InstallerError(f"{spec.ref}: no {binary} (files_repo.kubernetes_binaries() unpacks it)")
        if files_repo.sha256_file(binary) != sums[name]:
            raise InstallerError(f"{spec.ref}: {binary} is not the sha256 its set's SHA256SUMS lists")
        if _needs_loader(binary):
            raise InstallerError(f"{spec.ref}: {binary} is dynamically linked; Kubernetes builds here are static")
        add(_Entry(f"usr/local/bin/{name}", "file", 0o755, src=binary))
    if spec.applets:
        first = tree / spec.keep[0]
        listed = proc.run([str(first), "--list-full"], timeout=60).stdout.split()
        if not listed:
            raise InstallerError(f"{spec.ref}: {spec.keep[0]} --list-full listed no applets")
        for applet in listed:
            applet = applet.strip("/")
            if applet not in entries:
                add(_Entry(applet, "link", 0o777, target="/" + spec.keep[0]))
    if spec.base:
        for d, mode in (("etc", 0o755), ("tmp", 0o1777), ("root", 0o700), ("var", 0o755), ("run", 0o755)):
            entries.setdefault(d, _Entry(d, "dir", mode))
        etc = {
            "etc/passwd": "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
            "etc/group": "root:x:0:\nnogroup:x:65534:\n",
        }
        for path, text in etc.items():
            add(_Entry(path, "file", 0o644, text.encode()))
    for path, mode, text in spec.files:
        add(_Entry(path, "file", mode, text.encode()))
    for path, target in spec.links:
        add(_Entry(path, "link", 0o777, target=target))
    absent = [r for r in spec.requires if _resolve(entries, r) is None]
    dangling = [e.path for e in entries.values() if e.kind == "link" and _resolve(entries, e.path) is None]
    if absent or dangling:
        raise InstallerError(f"{spec.ref}: the image lacks {', '.join(absent + dangling)}"
                             + (" (links pointing nowhere)" if dangling else ""))
    return sorted(entries.values(), key=lambda e: e.path)


def _select(tree: Path, patterns: Iterable[str]) -> set[str]:
    """The files and links under `tree` matching a pattern, and each kept link's target inside the tree."""
    pats = tuple(patterns)
    out: set[str] = set()
    for dirpath, dirs, names in os.walk(tree):
        for n in [*names, *(d for d in dirs if os.path.islink(os.path.join(dirpath, d)))]:
            rel = os.path.relpath(os.path.join(dirpath, n), tree)
            if any(fnmatch.fnmatchcase(rel, pat) for pat in pats):
                out.add(rel)
    for rel in list(out):
        out |= _link_chain(tree, rel)
    return out


def _link_chain(tree: Path, rel: str) -> set[str]:
    """`rel` and every link it passes through to a file in the tree (empty when it leads outside)."""
    seen: set[str] = set()
    while rel not in seen and len(seen) < 40:
        seen.add(rel)
        p = tree / rel
        if not p.is_symlink():
            return seen if p.is_file() else set()
        target = os.readlink(p)
        rel = os.path.normpath(target.lstrip("/") if target.startswith("/") else os.path.join(os.path.dirname(rel),
                                                                                               target))
    return set()


def _resolve(entries: Mapping[str, _Entry], path: str) -> _Entry | None:
    """The file or directory `path` leads to inside the image, following its links."""
    for _ in range(40):
        e = entries.get(path)
        if e is None or e.kind != "link":
            return e
        t = e.target
        path = os.path.normpath(t.lstrip("/") if t.startswith("/") else os.path.join(os.path.dirname(path), t))
    return None


def _closure(spec: ImageSpec, tree: Path, kept: set[str]) -> set[str]:
    """The loader and every shared library the kept ELF files need, found in the tree as the loader
    finds them (its default directories; there is no ld.so.cache in the image); what the packages lack
    is refused by name, so a missing library is a build error and not a container that cannot start."""
    out: set[str] = set()
    pending = [r for r in kept if not (tree / r).is_symlink() and _is_elf(tree / r)]
    done: set[str] = set()
    missing: dict[str, list[str]] = {}
    while pending:
        rel = pending.pop()
        if rel in done:
            continue
        done.add(rel)
        interp, needed = _elf_deps(tree / rel)
        wants = [interp.lstrip("/")] if interp else []
        for lib in needed:
            found = next((f"{d}/{lib}" for d in _LIB_DIRS if (tree / d / lib).exists()), None)
            if found is None:
                missing.setdefault(lib, []).append(rel)
            else:
                wants.append(found)
        for w in wants:
            chain = _link_chain(tree, w)
            if not chain:
                missing.setdefault(w, []).append(rel)
            out |= chain
            pending += [c for c in chain if not (tree / c).is_symlink()]
    if missing:
        raise InstallerError(
            f"{spec.ref}: the Debian packages ({', '.join(p for p, _v in spec.debs)}) lack "
            + "; ".join(f"{lib} (needed by {', '.join(sorted(set(by))[:3])})" for lib, by in sorted(missing.items()))
            + ": add the package holding it"
        )
    return out


def _is_elf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(4) == b"\x7fELF"


def _program_headers(fh: BinaryIO) -> list[tuple[int, int, int, int, int]]:
    """(type, offset, vaddr, filesz, memsz) of each program header of a 64-bit little-endian ELF."""
    head = fh.read(64)
    if head[:4] != b"\x7fELF" or head[4] != 2 or head[5] != 1:
        raise InstallerError(f"{getattr(fh, 'name', '?')}: not a 64-bit little-endian ELF")
    phoff, = struct.unpack_from("<Q", head, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", head, 0x36)
    fh.seek(phoff)
    table = fh.read(phentsize * phnum)
    out = []
    for i in range(phnum):
        p_type, _flags, off, vaddr, _paddr, filesz, memsz, _align = struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
        out.append((p_type, off, vaddr, filesz, memsz))
    return out


def _needs_loader(binary: Path) -> bool:
    """An ELF program header of type PT_INTERP: the binary needs a dynamic loader (and so a libc)."""
    with open(binary, "rb") as fh:
        if fh.read(5)[4:] != b"\x02":
            return True  # not a 64-bit ELF: nothing this image could run
        fh.seek(0)
        return any(h[0] == 3 for h in _program_headers(fh))


def _elf_deps(path: Path) -> tuple[str, list[str]]:
    """An ELF file's loader (PT_INTERP, '' for a library) and DT_NEEDED names, read from its headers."""
    with open(path, "rb") as fh:
        headers = _program_headers(fh)
        interp = ""
        for p_type, off, _vaddr, filesz, _memsz in headers:
            if p_type == 3:  # PT_INTERP
                fh.seek(off)
                interp = fh.read(filesz).rstrip(b"\0").decode()
        dyn = next((h for h in headers if h[0] == 2), None)  # PT_DYNAMIC
        if dyn is None:
            return interp, []
        fh.seek(dyn[1])
        raw = fh.read(dyn[3])
        tags = [struct.unpack_from("<qQ", raw, i) for i in range(0, len(raw) - 15, 16)]
        strtab = next((v for t, v in tags if t == 5), None)  # DT_STRTAB, a virtual address
        if strtab is None:
            return interp, []
        load = next((h for h in headers if h[0] == 1 and h[2] <= strtab < h[2] + h[3]), None)  # its PT_LOAD
        if load is None:
            raise InstallerError(f"{path}: DT_STRTAB outside every loaded segment")
        base = strtab - load[2] + load[1]
        needed = []
        for t, v in tags:
            if t == 0:  # DT_NULL
                break
            if t == 1:  # DT_NEEDED
                fh.seek(base + v)
                needed.append(fh.read(256).split(b"\0", 1)[0].decode())
        return interp, needed


# -- the OCI image layout ---------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class _Hashing(io.RawIOBase):
    """A write-only stream that hashes and counts what passes through it to `out`."""

    def __init__(self, out: Callable[[bytes], object]) -> None:
        self.out = out
        self.hash = hashlib.sha256()
        self.size = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self.hash.update(b)
        self.size += len(b)
        self.out(bytes(b))
        return len(b)

    def digest(self) -> str:
        return "sha256:" + self.hash.hexdigest()


def _write_layer(entries: Iterable[_Entry], dest: Path, mtime: int) -> tuple[str, str, int]:
    """The gzip layer into `dest`, streamed (a Kubernetes binary is ~90 MiB): root-owned, in path order,
    every member at `mtime`. Returns (diff_id, digest, size)."""
    with open(dest, "wb") as fh:
        packed = _Hashing(fh.write)
        with gzip.GzipFile(fileobj=packed, mode="wb", mtime=0, compresslevel=GZIP_LEVEL) as gz:
            raw = _Hashing(gz.write)
            with tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for e in entries:
                    ti = tarfile.TarInfo(e.path)
                    ti.mode, ti.mtime = e.mode, mtime
                    ti.uid = ti.gid = 0
                    ti.uname = ti.gname = "root"
                    if e.kind == "dir":
                        ti.type = tarfile.DIRTYPE
                        tar.addfile(ti)
                    elif e.kind == "link":
                        ti.type, ti.linkname = tarfile.SYMTYPE, e.target
                        tar.addfile(ti)
                    elif e.src is not None:
                        ti.size = e.src.stat().st_size
                        with open(e.src, "rb") as src:
                            tar.addfile(ti, src)
                    else:
                        ti.size = len(e.data)
                        tar.addfile(ti, io.BytesIO(e.data))
    return raw.digest(), packed.digest(), packed.size


def _image_mtime(entries: Iterable[_Entry]) -> int:
    """The newest Debian file's time (the packages' own: the same packages give the same layer); 0, the
    epoch, for an image of Kubernetes binaries alone (their files' times are when they were unpacked)."""
    return max((int(e.src.stat().st_mtime) for e in entries
                if e.src is not None and not e.path.startswith("usr/local/bin/")), default=0)


def _write_image(spec: ImageSpec, entries: list[_Entry], work: Path, dest: Path) -> str:
    """The image as one uncompressed OCI layout tar (what `ctr images import` reads); its manifest digest."""
    mtime = _image_mtime(entries)
    layer = work / "layer.tar.gz"
    diff_id, layer_digest, layer_size = _write_layer(entries, layer, mtime)
    created = datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    origin = f"harness.installer.images: {spec.description}"
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
            "Labels": {_OCI_DESCRIPTION: origin},
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": origin}],
    }
    config_bytes = _json(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": _OCI_MANIFEST,
        "config": {"mediaType": _OCI_CONFIG, "digest": _digest(config_bytes), "size": len(config_bytes)},
        "layers": [{"mediaType": _OCI_LAYER, "digest": layer_digest, "size": layer_size}],
        "annotations": {_OCI_DESCRIPTION: origin},
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
    blobs: dict[str, bytes | Path] = {layer_digest: layer, _digest(config_bytes): config_bytes,
                                      _digest(manifest_bytes): manifest_bytes}
    _write_layout(dest, blobs, index, mtime)
    return _digest(manifest_bytes)


def _write_layout(dest: Path, blobs: Mapping[str, bytes | Path], index: Mapping[str, object], mtime: int) -> None:
    members: list[tuple[str, bytes | Path | None]] = [
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
            elif isinstance(data, Path):
                ti.mode, ti.size = 0o644, data.stat().st_size
                with open(data, "rb") as fh:
                    tar.addfile(ti, fh)
            else:
                ti.mode, ti.size = 0o644, len(data)
                tar.addfile(ti, io.BytesIO(data))
