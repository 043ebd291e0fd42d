"""Host facts over pytest-testinfra: tool versions, systemd units, certificates, etcd health.

Each node gets one shell script per probe (not one ssh round trip per tool): under TCG a command
costs about a second. The scripts print `@@section NAME` blocks that pure functions parse; those
parsers are what the unit tests exercise on real output.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from urllib.parse import urlsplit

from harness import components
from harness.cluster.base import Cluster, Node
from harness.components import Binary
from harness.errors import ClusterError
from harness.probes.facts import (
    BinaryFile,
    CanaryFacts,
    CertExpiry,
    EtcdEndpointHealth,
    EtcdFacts,
    EtcdMember,
    HostFacts,
    NodeStateSample,
    PreUpgradeRecord,
    UnitState,
    VersionSample,
)

if TYPE_CHECKING:
    from harness.probes.plant import Plant, Planted

T = TypeVar("T")

# Kubespray installs into /usr/local/bin and CNI plugins into /opt/cni/bin; sudo's secure_path may lack them.
PATH_PREFIX = 'export PATH="/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin:$PATH"; export ETCDCTL_API=3'


# -- versions (pure) -----------------------------------------------------------

# Which binary the probe asks and how: harness.components; how each answer reads: harness.components.parsers.


# A binary's identity: its path, device, inode, size, and mtime and ctime to the nanosecond. Any
# replacement (a new inode) or write changes it, and no user-space tool can set a ctime.
_IDENTITY = "%n %d:%i:%s:%.9Y:%.9Z"


# Kubespray's bin_dir: where a binary nothing runs is read first, whatever PATH puts before it.
BIN_DIR = "/usr/local/bin"


def _locate(i: int, b: Binary, bin_dir: str, systemctl: str) -> str:
    """Sets `_hp<i>` (the file to stat and run), `_hf<i>` (that file as shown), `_hr<i>` (the pid running
    it) and `_hm<i>` ("PID EXE" when its unit's main process runs another executable: a wrapper).

    What runs is its unit's MainPID, never a process found by name (a container's processes are
    visible on the host); /proc/PID/exe is the very file it runs, even one replaced since it started.
    Nothing running: the installed file in `bin_dir`, else the first on PATH."""
    name = shlex.quote(b.name)
    installed = shlex.quote(f"{bin_dir.rstrip('/')}/{b.name}")
    lines = [f"_hp{i}=; _hf{i}=; _hr{i}=; _hm{i}="]
    if b.unit:
        lines.append(
            f"_pid=$({shlex.quote(systemctl)} show -p MainPID --value {shlex.quote(b.unit)} 2>/dev/null); "
            "case \"$_pid\" in ''|0|*[!0-9]*) ;; *) _exe=$(readlink \"/proc/$_pid/exe\" 2>/dev/null); "
            f"case \"${{_exe% (deleted)}}\" in */{name}) _hp{i}=/proc/$_pid/exe; _hf{i}=$_exe; _hr{i}=$_pid;; "
            f"*) _hm{i}=\"$_pid ${{_exe:-(executable unreadable)}}\";; esac;; esac"
        )
    lines.append(f"if [ -z \"$_hp{i}\" ]; then if [ -x {installed} ]; then _hp{i}={installed}; "
                 f"else _hp{i}=$(command -v {name} 2>/dev/null); fi; _hf{i}=$_hp{i}; fi")
    return "\n".join(lines)


# `_harness_also NAME FILE ARGS...`: a section `NAME@PATH` with the output of every other executable
# copy of NAME on PATH (a distribution's package beside Kubespray's, or the file that replaced a
# running one), each file once. Not cached: such copies are rare, and never what is judged.
_ALSO = """_harness_also() (
  set -f; n=$1; seen=$2; shift 2; IFS=:
  for d in $PATH; do
    f="$d/$n"; [ -f "$f" ] && [ -x "$f" ] || continue
    dup=; IFS='
'
    for s in $seen; do if [ "$f" -ef "$s" ]; then dup=1; break; fi; done
    IFS=:; [ -z "$dup" ] || continue
    seen="$seen
$f"
    echo "@@section $n@$f"; timeout 20 "$f" "$@" 2>&1; echo "@@rc $?"
  done
)"""


def _version_section(i: int, b: Binary, known: str | None = None) -> str:
    """One binary's section; rc `absent` when it is not installed. `@@file` names the file asked (`@@pid`:
    the process running it), `@@id` gives its identity; rc `same` (its command not run) when that is
    `known`: the output cached for it still holds."""
    if b.dirs:
        # Not on PATH: the first of `dirs` holding it (CNI plugins), and its Debian package's version.
        # Never cached: the package's version is printed beside it.
        exe = shlex.quote(b.argv.split()[0] if b.argv else b.name)
        dirs = " ".join(shlex.quote(d) for d in b.dirs)
        dpkg = (f"dpkg-query -W -f='dpkg ${{Version}}\\n' {shlex.quote(b.dpkg)} 2>/dev/null; " if b.dpkg else "")
        return (
            f"echo '@@section {b.name}'; found=; for d in {dirs}; do if [ -x \"$d/{exe}\" ]; then found=1; "
            f"\"$d/{exe}\" 2>&1; {dpkg}break; fi; done; "
            "if [ -n \"$found\" ]; then echo '@@rc 0'; else echo '@@rc absent'; fi"
        )
    args = " ".join(shlex.quote(a) for a in (b.argv or b.name).split()[1:])
    run = f"timeout 20 \"$_hp{i}\" {args} 2>&1; echo \"@@rc $?\""
    if known is not None:
        run = f"if [ \"$id\" = {shlex.quote(known)} ]; then echo '@@rc same'; else {run}; fi"
    return (
        f"echo '@@section {b.name}'; [ -z \"$_hm{i}\" ] || echo \"@@main $_hm{i}\"; if [ -n \"$_hp{i}\" ]; then "
        f"echo \"@@file $_hf{i}\"; [ -z \"$_hr{i}\" ] || echo \"@@pid $_hr{i}\"; "
        f"id=$(_harness_id \"$_hp{i}\"); echo \"@@id $id\"; {run}; _harness_also {shlex.quote(b.name)} \"$_hp{i}\" {args}; "
        "else echo '@@rc absent'; fi"
    )


# Every binary's identity from one `stat` (a process start costs ~0.1 s on an emulated guest); each
# section picks its line with shell builtins alone (`_harness_id PATH`). A second `stat` at the end
# (section `identities`) tells VersionCache which identities still held once the versions were read: a
# binary replaced in between (mid-upgrade) must not have its new output cached under its old file.
def _identities(located: Sequence[int], var: str = "_harness_ids") -> str:
    files = " ".join(f'"$_hp{i}"' for i in located)
    return f"{var}=$(stat -L -c '{_IDENTITY}' {files} 2>/dev/null)"


_PICK_IDENTITY = (
    "_harness_id() { (IFS='\n'; for l in $_harness_ids; do case \"$l\" in \"$1 \"*) printf '%s\\n' \"$l\"; exit;; esac;"
    " done) }"
)


def versions_script(
    binaries: Sequence[Binary] | None = None, known: Mapping[str, str] | None = None, *,
    bin_dir: str = BIN_DIR, systemctl: str = "systemctl",
) -> str:
    """One script printing each binary's version in its own section (default: every one the table
    probes); `known` (name -> identity) skips the binaries whose output a VersionCache holds."""
    known = known or {}
    table = components.host_binaries() if binaries is None else binaries
    located = [i for i, b in enumerate(table) if not b.dirs]
    return "\n".join([
        PATH_PREFIX, _PICK_IDENTITY, _ALSO, *(_locate(i, table[i], bin_dir, systemctl) for i in located),
        _identities(located), *(_version_section(i, b, known.get(b.name)) for i, b in enumerate(table)),
        "echo '@@section identities'", _identities(located, "_harness_end"), "printf '%s\\n' \"$_harness_end\"; echo '@@rc 0'",
    ])


class VersionCache:
    """Each node's version output by binary identity, across a session's probes of one cluster: a
    binary that has not changed is not run again. Under emulation a Go binary's `--version` costs a
    second or more, and the probe asks every binary before, every 20 s during and after each upgrade.
    A restored snapshot brings back the very files (same identities), so their output stays known."""

    def __init__(self) -> None:
        self._nodes: dict[str, dict[str, tuple[str, str]]] = {}  # node -> binary -> (identity, output)
        self._lock = threading.Lock()

    # Kept beside the cluster between sessions: the first probe after a restore then runs no binary
    # the snapshot brought back (under emulation ~2.5 s of a 3-node probe).
    @classmethod
    def load(cls, path: Path) -> VersionCache:
        """The cache saved at `path`; an empty one when there is none or it cannot be read (a cache
        only saves work: losing it never changes a result)."""
        cache = cls()
        try:
            data = json.loads(path.read_text())
            cache._nodes = {str(node): {str(b): (str(v[0]), str(v[1])) for b, v in entries.items()}
                            for node, entries in data.items()}
        except (OSError, ValueError, TypeError, AttributeError, IndexError, KeyError):
            cache._nodes = {}
        return cache

    def save(self, path: Path) -> None:
        with self._lock:
            text = json.dumps({n: {b: list(v) for b, v in e.items()} for n, e in self._nodes.items()}, indent=1)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text + "\n")
        tmp.replace(path)  # whole or not at all: a run killed mid-write leaves the previous file

    def known(self, node: str) -> dict[str, str]:
        with self._lock:
            return {name: ident for name, (ident, _out) in self._nodes.get(node, {}).items()}

    def resolve(self, node: str, text: str) -> str:
        """The script's sections with each `same` one given its cached output back; a section that ran
        (rc 0, with an identity) is remembered. Other sections pass through untouched, and every
        section keeps what it says of its file (`@@file`, `@@pid`, `@@main`)."""
        out: list[str] = []
        sections = list(_sections(text))
        # The identities the script saw at its end; None (hand-written output): each section's own.
        held_at_end = next((set(body) for name, _m, _rc, body in sections if name == "identities"), None)
        with self._lock:
            cache = self._nodes.setdefault(node, {})
            for name, meta, rc, body in sections:
                ident = meta.get("id")
                output = "\n".join(body)
                if rc == "same":
                    held = cache.get(name)
                    if held is not None and held[0] == ident:
                        rc, output = "0", held[1]
                    else:  # the script was built from a cache entry since replaced: ask again next time
                        cache.pop(name, None)
                        output = f"nothing cached for identity {ident}"
                elif rc == "0" and ident and (held_at_end is None or ident in held_at_end):
                    cache[name] = (ident, output)
                said = "".join(f"@@{k} {v}\n" for k, v in meta.items() if k != "id")
                out.append(f"@@section {name}\n{said}" + (f"{output}\n" if output else "") + f"@@rc {rc}")
        return "\n".join(out) + "\n"


# What a version section says of its file besides the output: `@@id` (its identity, for VersionCache),
# `@@file` (the file asked), `@@pid` (the process running it), `@@main` (its unit's main process
# running another executable).
_META = ("id", "file", "pid", "main")


def _sections(text: str) -> Iterator[tuple[str, dict[str, str], str, list[str]]]:
    """`@@section NAME` ... `@@rc X` blocks in order -> (NAME, its `_META` lines, X, output lines)."""
    name: str | None = None
    meta: dict[str, str] = {}
    body: list[str] = []
    for line in text.splitlines():
        if line.startswith("@@section "):
            name, meta, body = line.split(" ", 1)[1].strip(), {}, []
        elif name is not None and (key := line[2:].split(" ", 1)[0]) in _META and line.startswith(f"@@{key} "):
            value = line[len(key) + 3:].strip()
            if value:
                meta[key] = value
        elif "@@rc " in line and name is not None:
            # Output without a final newline (curl's JSON) puts the marker at the end of its last line.
            head, _, rc = line.rpartition("@@rc ")
            if head:
                body.append(head)
            yield name, meta, rc.strip(), body
            name = None
        elif name is not None:
            body.append(line)


def split_sections(text: str) -> dict[str, tuple[str, str]]:
    """`@@section NAME` ... `@@rc X` blocks -> NAME -> (rc text, output)."""
    return {name: (rc, "\n".join(body)) for name, _meta, rc, body in _sections(text)}


def parse_versions(text: str, binaries: Sequence[Binary] | None = None) -> tuple[dict[str, str | None], dict[str, str]]:
    """The versions script's output -> (name -> version or None when absent, name -> error)."""
    sections = split_sections(text)
    versions: dict[str, str | None] = {}
    errors: dict[str, str] = {}
    for b in components.host_binaries() if binaries is None else binaries:
        if b.parse is None:
            continue
        if b.name not in sections:
            errors[b.name] = "the probe printed nothing for it (script interrupted?)"
            continue
        rc, body = sections[b.name]
        if rc == "absent":
            versions[b.name] = None
            continue
        v = b.parse(body)
        if v is None:
            # Installed but unreadable: not "absent", so a check can tell the two apart.
            errors[b.name] = f"unrecognised version output (rc={rc}): {body.strip()[:200]!r}"
            first = (body.strip().splitlines() or [f"rc={rc}"])[0][:60]
            v = f"unparsed: {first}"
        versions[b.name] = v
    return versions, errors


def parse_binary_files(text: str, binaries: Sequence[Binary] | None = None) -> dict[str, BinaryFile]:
    """The versions script's output -> name -> the file its version came from and the node's other
    copies of it, for each binary the script found or whose unit runs something."""
    sections = list(_sections(text))
    out: dict[str, BinaryFile] = {}
    for b in components.host_binaries() if binaries is None else binaries:
        if b.dirs or b.parse is None:
            continue
        meta = next((m for name, m, _rc, _body in sections if name == b.name), {})
        if "file" not in meta and "main" not in meta:
            continue
        others = {name.split("@", 1)[1]: b.parse("\n".join(body))
                  for name, _m, _rc, body in sections if name.startswith(f"{b.name}@")}
        out[b.name] = BinaryFile(meta.get("file", ""), _int(meta.get("pid")), b.unit, meta.get("main"), others)
    return out


def file_note(name: str, version: str | None, f: BinaryFile) -> str | None:
    """What `name`'s version row says beside `version`: its unit running another executable, a running
    file replaced since it started, and each other copy of another version (a row showing only the
    running copy would hide what a shell, or the next restart, gets instead)."""
    notes = []
    if f.main:
        pid, _, exe = f.main.partition(" ")
        runs = "cannot be read (not root?)" if exe.startswith("(") else f"runs {exe}, not {name}"
        notes.append(f"{f.unit}.service's main process {pid} {runs}")
    if f.pid is not None and f.path.endswith(" (deleted)"):
        notes.append(f"pid {f.pid} runs a file replaced since it started")
    if f.pid is not None:
        where = "not running"
    else:
        where = ("nothing runs; " if f.unit and not f.main else "") + f"reported {f.path}"
    notes += [f"also {path} {v or '(version unreadable)'} ({where})"
              for path, v in sorted(f.others.items()) if v is None or v != version]
    return "; ".join(notes) or None


def version_notes(facts: Iterable[HostFacts]) -> dict[str, dict[str, str]]:
    """node -> reported name -> its `file_note`, where there is one."""
    out: dict[str, dict[str, str]] = {}
    for h in facts:
        for name, f in h.files.items():
            if note := file_note(name, h.versions.get(name), f):
                out.setdefault(h.node, {})[name] = note
    return out


# -- certificates (pure) ------------------------------------------------------------

# Kubespray: kubeadm's certs in /etc/kubernetes/ssl, etcd's in /etc/ssl/etcd/ssl (keys end in -key.pem).
CERT_GLOBS: tuple[str, ...] = ("/etc/kubernetes/ssl/*.crt", "/etc/kubernetes/pki/*.crt", "/etc/ssl/etcd/ssl/*.pem")


# The first certificate block of each file, as `openssl x509` would read it, and never a key block, in
# one awk over every file: the controller reads the date. Under emulation every process start on a guest
# costs ~0.1 s (an `openssl` per file cost 5 s of etcd's ten certificates, a `sed` per file still 1 s).
_FIRST_CERTS = (
    'FNR == 1 { if (f != "") print "@@rc 0"; f = FILENAME; print "@@section " f; inb = 0; done = 0 } '
    "done { next } "
    "/^-----BEGIN CERTIFICATE-----/ { inb = 1 } "
    "inb { print } "
    "inb && /^-----END CERTIFICATE-----/ { done = 1; inb = 0 } "
    'END { if (f != "") print "@@rc 0" }'
)


def certs_script(globs: Sequence[str] = CERT_GLOBS) -> str:
    # awk never sees an empty file (no first line: no section) nor one it cannot read (it would stop):
    # the shell gives those their sections itself.
    return (
        "set --; for f in " + " ".join(globs) + "; do case \"$f\" in *-key.pem|*.key) continue;; esac; "
        "[ -f \"$f\" ] || continue; "
        "if [ ! -r \"$f\" ]; then echo \"@@section $f\"; echo \"$f: Permission denied\"; echo '@@rc 1'; "
        "elif [ ! -s \"$f\" ]; then echo \"@@section $f\"; echo '@@rc 0'; "
        "else set -- \"$@\" \"$f\"; fi; done; "
        f"[ $# -eq 0 ] || awk {shlex.quote(_FIRST_CERTS)} \"$@\" 2>&1"
    )


def parse_cert(pem: str) -> datetime:
    """A certificate's PEM -> its notAfter, an aware UTC datetime."""
    from cryptography import x509

    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise ValueError("no certificate in the file")
    return x509.load_pem_x509_certificate(pem.strip().encode()).not_valid_after_utc


def parse_certs(text: str) -> dict[str, CertExpiry]:
    out: dict[str, CertExpiry] = {}
    for path, (rc, body) in split_sections(text).items():
        if not path.startswith("/"):
            continue  # another probe's section in the same output
        try:
            if rc != "0":
                raise ValueError(body.strip().splitlines()[-1] if body.strip() else f"sed rc={rc}")
            out[path] = CertExpiry(path, parse_cert(body))
        except ValueError as e:
            out[path] = CertExpiry(path, None, str(e).splitlines()[0][:200] if str(e) else type(e).__name__)
    return out


# -- systemd units (pure) ------------------------------------------------------------

# `systemctl is-enabled` exits 0 for these UnitFileState values; testinfra's is_enabled is that exit code.
ENABLED_STATES = frozenset({"enabled", "enabled-runtime", "static", "alias", "indirect", "generated", "transient"})


def units_script(units: Iterable[str]) -> str:
    """One `systemctl show` per unit, in sections `unit:NAME` (one round trip instead of three per unit)."""
    return "; ".join(
        f"echo '@@section unit:{u}'; systemctl show -p LoadState -p ActiveState -p UnitFileState "
        f"{shlex.quote(u)} 2>&1; echo \"@@rc $?\""
        for u in units
    )


def parse_units(text: str) -> dict[str, UnitState]:
    out: dict[str, UnitState] = {}
    for section, (_rc, body) in split_sections(text).items():
        if not section.startswith("unit:"):
            continue
        name = section.removeprefix("unit:")
        props = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
        exists = props.get("LoadState", "not-found") not in ("not-found", "")
        out[name] = UnitState(
            name,
            exists,
            exists and props.get("ActiveState") == "active",
            exists and props.get("UnitFileState", "") in ENABLED_STATES,
        )
    return out


# -- boot id (pure) -------------------------------------------------------------------

# A new boot id means the node rebooted: the kernel draws a fresh one at every boot.
BOOT_ID_SCRIPT = "echo '@@section boot_id'; cat /proc/sys/kernel/random/boot_id 2>&1; echo \"@@rc $?\""
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def parse_boot_id(text: str) -> tuple[str | None, str | None]:
    """The boot_id section -> (boot id, None), or (None, why it could not be read)."""
    sections = split_sections(text)
    if "boot_id" not in sections:
        return None, "the probe printed no boot id (script interrupted?)"
    rc, body = sections["boot_id"]
    value = body.strip()
    if rc == "0" and _UUID.match(value):
        return value, None
    return None, f"unreadable boot id (rc={rc}): {value[:100]!r}"


# -- container canary (pure) ------------------------------------------------------------

# What playbooks/plant.yml starts on every containerd node (its harness_canary_* variables): one
# container in its own ctr namespace, and a key=value record of it on the node (state, pid, shim_pid,
# ctr, socket, reason) that tells this probe which ctr and socket to ask.
CANARY_DIR = "/var/lib/harness-canary"
CANARY_NAMESPACE = "harness"
CANARY_ID = "canary"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"  # Kubespray's and the lab's (containerd_state_dir)


def canary_script(canary_dir: str = CANARY_DIR) -> str:
    """The plant's record, `ctr task ls` in the canary's namespace and the task's parent (its shim),
    in sections canary-planted, canary-tasks and canary-shim; rc `absent` for no record, no ctr, no task."""
    rec = shlex.quote(f"{canary_dir}/planted")
    ns, cid = shlex.quote(CANARY_NAMESPACE), shlex.quote(CANARY_ID)
    return "\n".join((
        f"echo '@@section canary-planted'; if [ -f {rec} ]; then cat {rec}; echo '@@rc 0'; else echo '@@rc absent'; fi",
        f"out=; ctr=$(sed -n 's/^ctr=//p' {rec} 2>/dev/null); sock=$(sed -n 's/^socket=//p' {rec} 2>/dev/null)",
        '[ -n "$ctr" ] && [ -x "$ctr" ] || ctr=$(command -v ctr 2>/dev/null)',
        f'[ -n "$sock" ] || sock={shlex.quote(CONTAINERD_SOCKET)}',
        "echo '@@section canary-tasks'",
        (f'if [ -n "$ctr" ]; then out=$(timeout 20 "$ctr" --address "$sock" -n {ns} task ls 2>&1); rc=$?; '
         "printf '%s\\n' \"$out\"; echo \"@@rc $rc\"; else echo '@@rc absent'; fi"),
        "echo '@@section canary-shim'",
        f"pid=$(printf '%s\\n' \"$out\" | awk -v id={cid} '$1 == id {{print $2}}')",
        ('if [ -n "$pid" ] && [ -r "/proc/$pid/stat" ]; then awk \'{print $4}\' "/proc/$pid/stat"; echo \'@@rc 0\'; '
         "else echo '@@rc absent'; fi"),
    ))


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text else None
    except ValueError:
        return None


def parse_canary(text: str, container_id: str = CANARY_ID) -> CanaryFacts:
    """The canary sections -> what was planted and what runs now. ctr's own words when it failed."""
    sections = split_sections(text)
    if "canary-tasks" not in sections:
        # Unknown is not absent: `ctr` stays True so the check cannot read a lost answer as "no containerd".
        return CanaryFacts(ctr=True, error="the probe printed nothing for the canary (script interrupted?)")
    record: dict[str, str] = {}
    planted_rc, planted_body = sections.get("canary-planted", ("absent", ""))
    if planted_rc == "0":
        record = dict(line.split("=", 1) for line in planted_body.splitlines() if "=" in line)
    rc, body = sections["canary-tasks"]
    status = pid = error = None
    if rc not in ("0", "absent"):
        error = f"ctr task ls failed (rc={rc}): {_last_line(body) or 'no output'}"
    for line in body.splitlines() if rc == "0" else ():
        fields = line.split()
        if len(fields) >= 3 and fields[0] == container_id:
            pid, status = _int(fields[1]), fields[2]
    shim_rc, shim_body = sections.get("canary-shim", ("absent", ""))
    return CanaryFacts(
        ctr=rc != "absent",
        planted=record.get("state") or ("error" if record else None),
        planted_pid=_int(record.get("pid")),
        planted_shim_pid=_int(record.get("shim_pid")),
        planted_reason=record.get("reason") or None,
        status=status,
        pid=pid,
        shim_pid=_int(shim_body.strip()) if shim_rc == "0" else None,
        error=error,
    )


# -- etcd (pure) -----------------------------------------------------------------------


@dataclass(frozen=True)
class EtcdTLS:
    """Where a node's etcd client credentials live. Defaults follow Kubespray's /etc/ssl/etcd/ssl layout.

    `{node}` in `cert`/`key` is the inventory host name. `cacert=None` talks plain HTTP (a lab etcd)."""

    cacert: str | None = "/etc/ssl/etcd/ssl/ca.pem"
    cert: str | None = "/etc/ssl/etcd/ssl/admin-{node}.pem"
    key: str | None = "/etc/ssl/etcd/ssl/admin-{node}-key.pem"
    endpoint: str = "https://{address}:2379"

    def flags(self, node: str) -> str:
        out = []
        if self.cacert:
            out.append(f"--cacert={shlex.quote(self.cacert)}")
        if self.cert:
            out.append(f"--cert={shlex.quote(self.cert.format(node=node))}")
        if self.key:
            out.append(f"--key={shlex.quote(self.key.format(node=node))}")
        return " ".join(out)

    def curl_flags(self, node: str) -> str:
        out = []
        if self.cacert:
            out.append(f"--cacert {shlex.quote(self.cacert)}")
        if self.cert:
            out.append(f"--cert {shlex.quote(self.cert.format(node=node))}")
        if self.key:
            out.append(f"--key {shlex.quote(self.key.format(node=node))}")
        return " ".join(out)

    def url(self, address: str) -> str:
        return self.endpoint.format(address=address)

    def etcdctl_args(self, node: str, address: str, *, plain: bool = False) -> str:
        """etcdctl's endpoint, credentials and timeouts for `node`; `plain` drops TLS (an etcd without certs)."""
        if plain:
            return f"--endpoints={shlex.quote(self.url(address).replace('https://', 'http://'))} {ETCDCTL_TIMEOUTS}"
        return f"--endpoints={shlex.quote(self.url(address))} {self.flags(node)} {ETCDCTL_TIMEOUTS}"


# Bounded: an etcd that does not answer must not hang a probe script.
ETCDCTL_TIMEOUTS = "--dial-timeout=5s --command-timeout=10s"


def etcd_script(node: str, address: str, tls: EtcdTLS, keys: Iterable[str] = ()) -> str:
    ctl = f"etcdctl {tls.etcdctl_args(node, address)}"
    sections = {
        "health": f"{ctl} endpoint health --cluster -w json",
        "members": f"{ctl} member list -w json",
        "status": f"{ctl} endpoint status --cluster -w json",
        "version": f"curl -sS --max-time 10 {tls.curl_flags(node)} {shlex.quote(tls.url(address) + '/version')}",
    }
    for i, key in enumerate(keys):
        sections[f"key{i}"] = f"{ctl} get {shlex.quote(key)} -w json"
    parts = [PATH_PREFIX]
    for name, cmd in sections.items():
        # etcdctl logs warnings as JSON lines on stderr; keep stderr apart so stdout stays parseable.
        parts.append(f"echo '@@section {name}'; {cmd} 2>/tmp/.harness-etcd.err; rc=$?; "
                     f"[ $rc = 0 ] || tail -n 3 /tmp/.harness-etcd.err; echo \"@@rc $rc\"")
    parts.append("rm -f /tmp/.harness-etcd.err")
    return "\n".join(parts)


class EtcdctlError(ValueError):
    """etcdctl printed no output to parse; the message is what it said went wrong."""


_NO_OUTPUT = object()
_WS = re.compile(r"\s*")
_DESC = re.compile(r'.*desc = "?(.*?)"?$')


def _is_zap_log(value: Any) -> bool:
    # etcdctl's client logs through zap as JSON lines on stderr: {"level":..., "msg":..., "error":...}
    return isinstance(value, dict) and "level" in value and "msg" in value


def etcdctl_output(text: str) -> tuple[Any, list[str]]:
    """Split an etcdctl section (stdout, then on failure the tail of stderr) into its JSON output and
    the errors it reported: zap JSON log lines and `Error: ...` lines. A log line is never output,
    even when stdout is empty and it is the only JSON there. The output is `_NO_OUTPUT` when absent."""
    decoder = json.JSONDecoder()
    value: Any = _NO_OUTPUT
    errors: list[str] = []
    i = 0
    while True:
        i = _WS.match(text, i).end()  # type: ignore[union-attr]  # `\s*` always matches
        if i >= len(text):
            return value, errors
        if text[i] in "{[":
            try:
                v, end = decoder.raw_decode(text, i)
            except ValueError:
                pass
            else:
                if _is_zap_log(v):
                    errors.append(f"{v['msg']}: {v['error']}" if v.get("error") else str(v["msg"]))
                elif value is _NO_OUTPUT:
                    value = v
                i = end
                continue
        nl = text.find("\n", i)
        end = len(text) if nl < 0 else nl
        errors.append(text[i:end].strip())
        i = end


def _etcdctl_json(text: str, kind: type, what: str) -> Any:
    """The JSON output of one etcdctl command, of the JSON type `kind`, or an EtcdctlError naming
    what etcdctl said (not a parser's complaint about its log lines)."""
    value, errors = etcdctl_output(text)
    if value is _NO_OUTPUT:
        # `Error: ...` lines first: they are etcdctl's verdict; log lines say why.
        said = sorted(errors, key=lambda e: not e.startswith("Error:"))
        raise EtcdctlError(f"{what}: " + ("; ".join(said) if said else "no output"))
    if not isinstance(value, kind):
        raise EtcdctlError(f"{what}: expected a JSON {'array' if kind is list else 'object'}, got {str(value)[:200]}")
    return value


def innermost_cause(error: str) -> str:
    """gRPC nests causes as `... desc = "transport: ... connect: connection refused"`; keep the last
    (its quotes unescaped). An error without one is returned whole."""
    m = _DESC.search(error)
    return m.group(1).replace('\\"', '"') if m else error


def parse_etcd_health(text: str) -> list[EtcdEndpointHealth]:
    """`endpoint health -w json`: `[{"endpoint":..., "health":true, "took":...}, {..., "error":"..."}]`.

    etcdctl's own error for an unreachable endpoint is "context deadline exceeded"; the cause
    (connection refused, TLS, ...) is only in its log lines, so an unhealthy endpoint gets it appended."""
    _, errors = etcdctl_output(text)
    data = _etcdctl_json(text, list, "endpoint health")
    causes = [e for e in errors if not e.startswith("Error:")]
    out = []
    for d in data:
        if not isinstance(d, dict) or "endpoint" not in d:
            raise EtcdctlError(f"endpoint health: not an endpoint entry: {str(d)[:200]}")
        endpoint, healthy, error = str(d["endpoint"]), bool(d.get("health")), d.get("error")
        if not healthy:
            host = urlsplit(endpoint).netloc
            why = [innermost_cause(c) for c in causes if host and host in c]
            if why:
                error = f"{error or 'unhealthy'} ({why[0]})"
        out.append(EtcdEndpointHealth(endpoint, healthy, error))
    return out


def parse_etcd_members(text: str) -> list[EtcdMember]:
    """`member list -w json`: IDs are decimal uint64 there (above 2^53: Python's json keeps them
    exact, a float64 parser would not); etcdctl's tables print them in hex."""
    data = _etcdctl_json(text, dict, "member list")
    return [
        EtcdMember(
            format(int(m["ID"]), "x"),
            str(m.get("name", "")),  # empty for a member added but not yet started
            tuple(m.get("peerURLs", ())),
            tuple(m.get("clientURLs", ())),
        )
        for m in data.get("members", [])
    ]


def parse_etcd_status(text: str) -> dict[str, str]:
    """`endpoint status -w json` -> endpoint -> server version (capitalised keys here, unlike health's)."""
    return {str(d["Endpoint"]): str(d["Status"]["version"]) for d in _etcdctl_json(text, list, "endpoint status")}


def parse_etcd_version_endpoint(text: str) -> tuple[str, str]:
    """`/version`: `{"etcdserver":"3.5.16","etcdcluster":"3.5.0"}` -> (server, cluster)."""
    data = _etcdctl_json(text, dict, "/version")
    return str(data["etcdserver"]), str(data["etcdcluster"])


def parse_etcd_get(text: str) -> str | None:
    """`etcdctl get KEY -w json`: the value (base64 in JSON) or None when the key is missing."""
    kvs = _etcdctl_json(text, dict, "get").get("kvs") or []
    return base64.b64decode(kvs[0]["value"]).decode() if kvs else None


def parse_etcd_facts(node: str, text: str, keys: Sequence[str] = ()) -> tuple[EtcdFacts, dict[str, str | None]]:
    sections = split_sections(text)
    errors: dict[str, str] = {}

    def section(name: str, parse: Callable[[str], Any]) -> Any:
        rc, body = sections.get(name, ("missing", ""))
        try:
            return parse(body)
        except EtcdctlError as e:  # already etcdctl's own words
            errors[name] = f"rc={rc}: {e}"
        except (ValueError, KeyError, TypeError) as e:
            errors[name] = f"rc={rc}: {type(e).__name__}: {e}: {body.strip()[-300:]}"
        return None

    # `endpoint health` exits 1 when any member is unhealthy yet still prints every endpoint.
    health = section("health", parse_etcd_health) or []
    members = section("members", parse_etcd_members) or []
    status = section("status", parse_etcd_status) or {}
    version = section("version", parse_etcd_version_endpoint)
    values: dict[str, str | None] = {}
    for i, key in enumerate(keys):
        rc, body = sections.get(f"key{i}", ("missing", ""))
        try:
            values[key] = parse_etcd_get(body)
        except (ValueError, KeyError, TypeError) as e:
            errors[f"key {key}"] = f"rc={rc}: {e}"
            values[key] = None
    facts = EtcdFacts(
        queried_from=node,
        health=tuple(health),
        members=tuple(members),
        member_versions=status,
        cluster_version=version[1] if version else None,
        errors=errors,
    )
    return facts, values


# -- collection over testinfra ------------------------------------------------------------


class _TestinfraHost(Protocol):
    def run(self, command: str, *args: Any, **kwargs: Any) -> Any: ...


# ssh's own words for a node that is (re)starting: sshd not listening yet, or dropping connections
# while it comes up (`kex_exchange_identification: Connection closed by remote host` right after a
# reboot). Worth another try; anything else (auth, sudo, a missing host) will not heal by waiting.
TRANSIENT_SSH = re.compile(r"kex_exchange_identification|Connection refused|Connection reset|timed out", re.IGNORECASE)
# Seconds to wait before each retry of a transient failure: three retries, 14 s in all.
RETRY_DELAYS: tuple[float, ...] = (2.0, 4.0, 8.0)
SSH_FAILED = 255  # ssh's exit status when ssh itself failed (not the remote command)


class ProbeError(ClusterError):
    """A node's probe script did not run. The message is one line naming the node and what ssh (or
    the shell) said last, never the script; `transient` when a retry may succeed."""

    def __init__(self, node: str, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.node = node
        self.transient = transient


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def _result_failure(node: str, rc: int, stderr: str) -> ProbeError:
    said = _last_line(stderr)
    if rc == SSH_FAILED:
        return ProbeError(node, f"{node} unreachable: {said or 'ssh exited 255'}", transient=bool(TRANSIENT_SSH.search(said)))
    return ProbeError(node, f"{node} probe failed (rc={rc}): {said or 'no output'}")


def probe_failure(node: str, error: Exception) -> ProbeError:
    """What running a probe raised, as one line. testinfra's ssh backend raises
    `RuntimeError(CommandResult)` on exit 255, whose text is the whole command (the probe script);
    only ssh's own last stderr line is kept."""
    if isinstance(error, ProbeError):
        return error
    result: Any = error.args[0] if error.args else None
    if result is not None and hasattr(result, "rc") and hasattr(result, "stderr"):
        return _result_failure(node, int(result.rc), str(result.stderr or ""))
    text = _last_line(str(error).split("@@section", 1)[0])  # never the script, should one be quoted
    said = f"{type(error).__name__}: {text}" if text else type(error).__name__
    if isinstance(error, (ConnectionError, TimeoutError)):
        return ProbeError(node, f"{node} unreachable: {said}", transient=True)
    return ProbeError(node, f"{node} probe failed: {said}")


def units_for(roles: Iterable[str], installer: str = "kubespray") -> tuple[str, ...]:
    """The systemd units a node of these roles runs when `installer` deployed it (harness.components)."""
    return tuple(dict.fromkeys(u for c in components.on_roles(roles, installer) for u in c.units))


class HostProbe:
    """Collects host facts for one cluster, holding one testinfra host per node (connections reused).

    Nodes are probed in parallel and each on its own: a node whose probe fails (after retries of a
    transient ssh failure) yields facts saying so (`HostFacts.error`); the other nodes' facts stand."""

    def __init__(
        self,
        cluster: Cluster,
        *,
        tls: EtcdTLS | None = None,
        cert_globs: Sequence[str] = CERT_GLOBS,
        installer: str = "kubespray",
        canary_dir: str = CANARY_DIR,
        versions: VersionCache | None = None,
        host_factory: Callable[[str], _TestinfraHost] | None = None,
        retry_delays: Sequence[float] = RETRY_DELAYS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.cluster = cluster
        self.tls = tls or EtcdTLS()
        self.cert_globs = tuple(cert_globs)
        self.installer = installer
        self.canary_dir = canary_dir
        self.version_cache = versions
        self.retry_delays = tuple(retry_delays)
        self._sleep = sleep
        self._factory = host_factory or cluster.testinfra_host
        self._hosts: dict[str, _TestinfraHost] = {}
        self._hosts_lock = threading.Lock()  # nodes are probed from a thread pool

    def host(self, node: str) -> _TestinfraHost:
        with self._hosts_lock:
            if node not in self._hosts:
                self._hosts[node] = self._factory(node)
            return self._hosts[node]

    def _attempt(self, node: str, command: str) -> str:
        try:
            res = self.host(node).run(command)
        except Exception as e:  # noqa: BLE001  any way a run fails is this node's finding, in one line
            raise probe_failure(node, e) from None  # `from None`: the chained error would quote the script
        stdout = str(res.stdout)
        rc = int(getattr(res, "rc", 0) or 0)
        # Every probe script prints sections; none and a failure status means it never ran (ssh, sudo).
        if rc != 0 and "@@section" not in stdout:
            raise _result_failure(node, rc, str(getattr(res, "stderr", "") or ""))
        return stdout

    def _script(self, node: str, script: str, *, retry: bool = True) -> str:
        """Run one probe script on `node`; a transient ssh failure is retried after each of
        `retry_delays`, then reported as a ProbeError (one line)."""
        command = "sh -c " + shlex.quote(script)
        for delay in self.retry_delays if retry else ():
            try:
                return self._attempt(node, command)
            except ProbeError as e:
                if not e.transient:
                    raise
            self._sleep(delay)
        return self._attempt(node, command)

    def versions(self, node: str) -> tuple[dict[str, str | None], dict[str, str]]:
        # Not retried: version sampling asks again next round, and must not stall on a rebooting node.
        return parse_versions(self._resolve(node, self._script(node, self._versions_script(node), retry=False)))

    def _versions_script(self, node: str) -> str:
        return versions_script(known=self.version_cache.known(node) if self.version_cache else None)

    def _resolve(self, node: str, text: str) -> str:
        return self.version_cache.resolve(node, text) if self.version_cache else text

    def certs(self, node: str) -> dict[str, CertExpiry]:
        return parse_certs(self._script(node, certs_script(self.cert_globs)))

    def host_facts(self, node: Node) -> HostFacts:
        """Versions, units, certificates, the boot id and the container canary in one round trip: a
        command costs ~1 s on an emulated guest. A node the probe cannot reach gives facts with only
        `error` set."""
        try:
            text = self._script(node.name, self._facts_script(node, canary=True))
        except ProbeError as e:
            return HostFacts(node=node.name, roles=tuple(node.roles), error=str(e))
        return self._facts(node, text, canary=True)

    def facts_and_plant(self, node: Node, plant: Plant) -> tuple[HostFacts, Planted]:
        """The before step's round trip: the host facts (without the canary: none is planted yet),
        then the node's part of `plant` (harness.probes.plant) in the same script."""
        from harness.probes import plant as planting

        script = "\n".join((self._facts_script(node, canary=False),
                            planting.plant_script(plant, node.name, node.address, self.tls, self.canary_dir)))
        try:
            text = self._script(node.name, script)
        except ProbeError as e:
            return (HostFacts(node=node.name, roles=tuple(node.roles), error=str(e)),
                    planting.Planted(node.name, {"state": "error", "reason": f"unreachable at plant: {e}"},
                                     False if node.name == plant.etcd_node else None, str(e)))
        return self._facts(node, text, canary=False), planting.parse_planted(node.name, text, etcd_node=node.name == plant.etcd_node)

    def _facts_script(self, node: Node, *, canary: bool) -> str:
        return "\n".join((
            self._versions_script(node.name), units_script(units_for(node.roles, self.installer)),
            certs_script(self.cert_globs), BOOT_ID_SCRIPT, *((canary_script(self.canary_dir),) if canary else ()),
        ))

    def _facts(self, node: Node, text: str, *, canary: bool) -> HostFacts:
        text = self._resolve(node.name, text)
        versions, errors = parse_versions(text)
        boot_id, why = parse_boot_id(text)
        if why:
            errors["boot_id"] = why
        return HostFacts(
            node=node.name,
            roles=tuple(node.roles),
            versions=versions,
            units=parse_units(text),
            certs=parse_certs(text),
            errors=errors,
            boot_id=boot_id,
            canary=parse_canary(text) if canary else None,
            files=parse_binary_files(text),
        )

    def all_host_facts(self) -> list[HostFacts]:
        """Every node at once (one testinfra host, one ssh connection each), in the cluster's order."""
        return self._each_node(self.host_facts)

    def all_facts_and_plant(self, plant: Plant) -> list[tuple[HostFacts, Planted]]:
        """facts_and_plant on every node at once, in the cluster's order."""
        return self._each_node(lambda n: self.facts_and_plant(n, plant))

    def _each_node(self, fn: Callable[[Node], T]) -> list[T]:
        nodes = list(self.cluster.nodes)
        with ThreadPoolExecutor(max_workers=max(1, min(8, len(nodes)))) as pool:
            return list(pool.map(fn, nodes))

    def etcd(self, node: Node | None = None, keys: Sequence[str] = ()) -> tuple[EtcdFacts, dict[str, str | None]]:
        """etcd health, members, versions, read from one etcd node with its own certs: `node`, or the
        first etcd node that answers (one unreachable member does not hide the cluster's view)."""
        candidates = [node] if node is not None else self.cluster.with_role("etcd")
        if not candidates:
            return EtcdFacts(queried_from="", errors={"etcd": "no node has the etcd role"}), {}
        failures: list[str] = []
        for n in candidates:
            try:
                text = self._script(n.name, etcd_script(n.name, n.address, self.tls, keys))
            except ProbeError as e:
                failures.append(str(e))
                continue
            return parse_etcd_facts(n.name, text, keys)
        raise ProbeError(candidates[-1].name, "; ".join(failures))

    def version_samples(self, components: Iterable[str] | None = None) -> list[tuple[str, str, str | None]]:
        """(node, component, version) for every node now; the caller stamps the time."""
        wanted = set(components) if components is not None else None
        out: list[tuple[str, str, str | None]] = []
        for n, (versions, _errors) in zip(self.cluster.nodes, self._each_node(lambda n: self.versions(n.name))):
            out += [(n.name, c, v) for c, v in versions.items() if wanted is None or c in wanted]
        return out


# -- version samples while an upgrade runs (the order and skew checks replay them) ----------------

Sample = tuple[str, str, str | None]  # (node, component, version)
NodeState = tuple[str, bool, bool]  # (node, ready, unschedulable), as the API shows it


@dataclass
class SampleRound:
    """What one source answered in one round: versions, the nodes' state (API only), what failed."""

    versions: list[Sample] = field(default_factory=list)
    nodes: list[NodeState] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)  # what -> why it gave no sample


SampleSource = Callable[[], SampleRound]


def kube_samples(
    cfg: Any, control_plane: Sequence[Node], *, server_for: Callable[[Node], str] | None = None, timeout: float = 5.0,
) -> SampleRound:
    """What the host probes cannot see, as the skew policy states it: each control-plane node's own
    apiserver (its `/version`, not the load-balanced endpoint's) and every node's kubelet (nodeInfo),
    with each node's Ready and cordoned state from the same listing.

    An apiserver that does not answer (restarting mid-upgrade) gives no sample, not a None: unknown
    is not absent, and a None would read as a version change. Its error is returned instead."""
    from harness.probes import kube

    versions, errors = kube.apiserver_versions(cfg, control_plane, timeout=timeout, server_for=server_for)
    out = SampleRound([(node, "kube-apiserver", v) for node, v in versions.items() if v], errors=dict(errors))
    with kube.api_client(cfg) as api:
        nodes = kube.collect_nodes(api)
    out.versions += [(n.name, "kubelet", n.kubelet_version) for n in nodes if n.kubelet_version]
    out.nodes = [(n.name, n.ready, n.unschedulable) for n in nodes]
    return out


def sample_sources(probe: HostProbe, api: SampleSource | None = None) -> dict[str, SampleSource]:
    """What a sampling round asks: every node's tools over ssh and, with an API, its apiservers and
    kubelets. With an API the running kubelet is the API's to report: the kubelet binary is replaced
    before the kubelet restarts, and two answers under one name would show a kubelet as upgraded
    (and the skew policy as broken) while the old one still runs."""
    if api is None:
        return {"hosts": lambda: SampleRound(probe.version_samples())}
    from_api = components.api_reported()
    tools = [b.name for b in components.host_binaries() if components.observed_as(b.name) not in from_api]
    return {"hosts": lambda: SampleRound(probe.version_samples(tools)), "api": api}


def take_samples(
    at: datetime, sources: Mapping[str, SampleSource],
) -> tuple[list[VersionSample], list[NodeStateSample], dict[str, str]]:
    """One sampling round stamped `at`, each source on its own: one that fails (a node or an apiserver
    mid-restart) costs only its own samples this round, and says why in the errors (source -> why)."""
    samples: list[VersionSample] = []
    states: list[NodeStateSample] = []
    errors: dict[str, str] = {}
    for name, source in sources.items():
        try:
            got = source()
        except Exception as e:  # noqa: BLE001  the next round asks again; the error is kept for the report
            errors[name] = _short_error(e)
            continue
        samples += [VersionSample(at, node, comp, version) for node, comp, version in got.versions]
        states += [NodeStateSample(at, node, ready, cordoned) for node, ready, cordoned in got.nodes]
        errors.update({f"{name}: {what}": why for what, why in got.errors.items()})
    return samples, states, errors


def _short_error(e: Exception) -> str:
    """One line; an API error as its status only (a response body may echo what was sent)."""
    status = getattr(e, "status", None)
    if status is not None:
        return f"HTTP {status} {getattr(e, 'reason', '') or ''}".strip()
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200] if text else ''}"


def observed_versions(facts: Iterable[HostFacts]) -> dict[str, dict[str, str | None]]:
    """node -> component -> version. A node whose probe failed is left out: nothing was observed
    there (an empty entry would read as every tool absent); `HostFacts.error` says why."""
    return {h.node: dict(h.versions) for h in facts if h.error is None}


def pre_upgrade_record(facts: Iterable[HostFacts], taken_at: datetime) -> PreUpgradeRecord:
    """The host side of the record taken before an upgrade: versions, boot ids (a different one
    afterwards means the node rebooted) and the nodes that could not be probed, with why."""
    hosts = list(facts)
    return PreUpgradeRecord(
        taken_at=taken_at,
        versions=observed_versions(hosts),
        boot_ids={h.node: h.boot_id for h in hosts if h.boot_id},
        unprobed={h.node: h.error for h in hosts if h.error},
    )


def merge_observed(*maps: Mapping[str, Mapping[str, str | None]]) -> dict[str, dict[str, str | None]]:
    """Host and API observations of the same node side by side (API facts fill in kube-apiserver etc.)."""
    out: dict[str, dict[str, str | None]] = {}
    for m in maps:
        for node, comps in m.items():
            out.setdefault(node, {}).update(comps)
    return out
