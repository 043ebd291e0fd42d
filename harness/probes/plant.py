"""What the before step plants on the nodes, in the same round trip per node as its host facts, so
the checks after the upgrade can tell "survived" from "was never there":

- etcd sentinel keys, written with etcdctl on the first etcd node (the node's own client certs,
  plain HTTP on an etcd without them). An etcd that does not serve writes within a minute fails the
  step: the scenario would measure a cluster that was broken before it began.
- a container canary on every node with ctr: a long-running `sleep` started in its own `harness`
  namespace, from an empty rootfs with the node's own /usr bound read-only (no image can be pulled).
  The canary check wants it RUNNING with the same PID afterwards (containerd restarts with
  KillMode=process, so the task's shim outlives it). Nothing about it fails the step: a node without
  ctr gets none (n/a) and any other failure is recorded on the node for the check to report.

Kubernetes canaries stay in playbooks/plant.yml: they go through kubectl on one control-plane node.
Under emulation an Ansible play costs 4-8 s over the script it runs; this rides the facts' ssh
session instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from harness.probes import hosts

SENTINEL_PREFIX = "/harness/sentinel"
SENTINELS: tuple[tuple[str, str], ...] = (
    (f"{SENTINEL_PREFIX}/one", "harness-sentinel-one"),
    (f"{SENTINEL_PREFIX}/two", "harness-sentinel-two"),
)
CTR = "/usr/local/bin/ctr"  # Kubespray's and the lab's containerd_bin_dir; `command -v ctr` otherwise
CANARY_SLEEP = 2_000_000_000  # seconds: longer than any cluster lives


@dataclass(frozen=True)
class Plant:
    """What to plant: sentinels on `etcd_node` (None: no etcd in the cluster), a canary everywhere."""

    etcd_node: str | None
    sentinels: tuple[tuple[str, str], ...] = SENTINELS
    etcd_tries: int = 60  # 1 s apart (a minute): a cluster just reverted to a snapshot may elect a leader first
    ctr: str = CTR
    socket: str = hosts.CONTAINERD_SOCKET


@dataclass(frozen=True)
class Planted:
    """One node's plant as its script reported it."""

    node: str
    canary: dict[str, str] = field(default_factory=dict)  # the on-node record: state, pid, shim_pid, ctr, socket, reason
    etcd: bool | None = None  # sentinels written; False: etcd failed them; None: not written here (no etcdctl)
    etcd_error: str | None = None  # why they were not written


def etcd_section(plant: Plant, node: str, address: str, tls: hosts.EtcdTLS) -> str:
    """Wait for etcd to serve, then put each sentinel; `etcd_planted=true` once all are written."""
    cert = shlex.quote(tls.cert.format(node=node)) if tls.cert else "''"
    puts = "\n".join(
        # etcdctl stores stdin verbatim: no newline may become part of the value
        f"    err=$(printf '%s' {shlex.quote(v)} | etcdctl \"$@\" put {shlex.quote(k)} 2>&1 >/dev/null)"
        f" || {{ rc=1; echo \"could not write {k}: $err\"; }}"
        for k, v in plant.sentinels
    )
    return f"""echo '@@section plant-etcd'
(
rc=0
if ! command -v etcdctl >/dev/null 2>&1; then echo 'etcd_reason=no etcdctl on the node'; exit 0; fi
# Kubespray's etcd (and the lab's) speaks TLS with per-host admin certs; one without them plain HTTP.
if [ -f {cert} ]; then set -- {tls.etcdctl_args(node, address)}; else set -- {tls.etcdctl_args(node, address, plain=True)}; fi
tries=0
until out=$(etcdctl "$@" endpoint health 2>&1); do
  tries=$((tries + 1))
  if [ "$tries" -ge {int(plant.etcd_tries)} ]; then echo "etcd does not serve: $(printf '%s' "$out" | tail -n 2)"; exit 1; fi
  sleep 1
done
{puts}
[ "$rc" -eq 0 ] && echo 'etcd_planted=true'
exit "$rc"
)
echo "@@rc $?"
"""


def canary_section(plant: Plant, canary_dir: str) -> str:
    """Start the canary afresh (a kept cluster may run a previous plant's) and record it in
    `canary_dir` on the node, where the host probe's canary sections read it."""
    d, cid = shlex.quote(canary_dir), shlex.quote(hosts.CANARY_ID)
    sock, ns = shlex.quote(plant.socket), shlex.quote(hosts.CANARY_NAMESPACE)
    return f"""echo '@@section plant-canary'
(
dir={d}; id={cid}
rm -f "$dir/planted"
found={shlex.quote(plant.ctr)}
[ -x "$found" ] || found=$(command -v ctr || true)
if [ -z "$found" ]; then printf 'state=absent\\nreason=no ctr on the node\\n'; exit 0; fi
ctr="$found --address {sock} -n {ns}"
record() {{  # state, pid, shim pid, reason: on the node for the host probe after the upgrade, on stdout now
  printf 'state=%s\\npid=%s\\nshim_pid=%s\\nctr=%s\\nsocket=%s\\nreason=%s\\n' "$1" "$2" "$3" "$found" {sock} \\
    "$(printf '%s' "$4" | tr '\\n' ' ' | cut -c1-400)" > "$dir/planted.new"
  mv "$dir/planted.new" "$dir/planted"; cat "$dir/planted"; exit 0
}}
# Every top-level directory of the node's own, bound read-only (a usr-merged /bin binds where it
# points). One mkdir for all: under emulation each process start costs ~0.1 s.
dirs=""; mounts=""
for d in usr bin sbin lib lib32 lib64; do
  if [ -d "/$d" ]; then dirs="$dirs $dir/rootfs/$d"; mounts="$mounts --mount type=bind,src=/$d,dst=/$d,options=rbind:ro"; fi
done
# A previous plant's rootfs may hold symlinks where these directories go now.
mkdir -p "$dir" $dirs 2>/dev/null || {{ rm -rf "$dir/rootfs"; mkdir -p "$dir" $dirs; }} || record error "" "" "cannot make the canary's rootfs in $dir"
[ -S {sock} ] || record error "" "" "ctr is at $found but containerd's socket "{sock}" is missing"
sleep_bin=$(command -v sleep) || record error "" "" "no sleep binary on the node"
start() {{ $ctr run -d --null-io $mounts --rootfs "$dir/rootfs" "$id" "$sleep_bin" {CANARY_SLEEP} 2>&1; }}
if ! out=$(start); then
  case "$out" in
    *"already exists"*)
      # A kept cluster may still run a previous plant's canary: start afresh, so the PID is this plant's.
      $ctr task kill -s SIGKILL "$id" >/dev/null 2>&1
      for i in 1 2 3 4 5 6 7 8 9 10; do $ctr task rm -f "$id" >/dev/null 2>&1 && break; $ctr task ls -q | grep -qx "$id" || break; sleep 1; done
      out=$($ctr container rm "$id" 2>&1) || record error "" "" "could not remove the previous canary: $out"
      out=$(start) || record error "" "" "ctr run failed: $out" ;;
    *) record error "" "" "ctr run failed: $out" ;;
  esac
fi
for i in 1 2 3 4 5 6 7 8 9 10; do
  line=$($ctr task ls 2>&1 | awk -v id="$id" '$1 == id {{print $2, $3}}')
  case "$line" in *RUNNING) break;; esac; sleep 1
done
pid=${{line%% *}}; status=${{line#* }}
[ "$status" = RUNNING ] || record error "$pid" "" "the canary is not running after its start (${{line:-no task}})"
record running "$pid" "$(awk '{{print $4}}' /proc/"$pid"/stat 2>/dev/null)" ""
)
echo '@@rc 0'"""


def plant_script(plant: Plant, node: str, address: str, tls: hosts.EtcdTLS, canary_dir: str = hosts.CANARY_DIR) -> str:
    """The node's part of the plant, in sections plant-etcd (its etcd node only) and plant-canary."""
    parts = [hosts.PATH_PREFIX]
    if node == plant.etcd_node:
        parts.append(etcd_section(plant, node, address, tls))
    parts.append(canary_section(plant, canary_dir))
    return "\n".join(parts)


def parse_planted(node: str, text: str, *, etcd_node: bool) -> Planted:
    """The plant sections of a node's output. A missing canary section (the script cut short) is an
    error record, as the canary check reads it; a missing etcd section on the etcd node is a failure."""
    sections = hosts.split_sections(text)
    canary: dict[str, str]
    if "plant-canary" in sections:
        lines = sections["plant-canary"][1].splitlines()
        canary = dict(line.split("=", 1) for line in lines if "=" in line)
        if "state" not in canary:
            canary = {"state": "error", "reason": "the start script printed no record: " + " ".join(lines)[-300:]}
    else:
        canary = {"state": "error", "reason": "the plant's canary part did not run (script cut short)"}
    if not etcd_node:
        return Planted(node, canary)
    if "plant-etcd" not in sections:
        return Planted(node, canary, False, "the plant's etcd part did not run (script cut short)")
    rc, body = sections["plant-etcd"]
    lines = body.splitlines()
    if rc == "0" and "etcd_planted=true" in lines:
        return Planted(node, canary, True)
    reason = next((ln.removeprefix("etcd_reason=") for ln in lines if ln.startswith("etcd_reason=")), None)
    if rc == "0" and reason:
        return Planted(node, canary, None, reason)  # no etcdctl: recorded; the planted-state check judges it
    return Planted(node, canary, False, " ".join(lines)[-400:] or f"etcd part rc={rc}")


def sentinel_record(plant: Plant, planted: Sequence[Planted]) -> dict[str, Any]:
    """Where the sentinels went, which, whether they were written and, when etcd failed them
    (`failed`), why: the before step stops there."""
    on = next((p for p in planted if p.node == plant.etcd_node), None)
    return {"host": plant.etcd_node, "keys": [{"key": k, "value": v} for k, v in plant.sentinels],
            "planted": bool(on and on.etcd), "failed": bool(on and on.etcd is False),
            "error": on.etcd_error if on else None}


def planted_keys(record: Mapping[str, Any]) -> dict[str, str]:
    """The sentinels the checks look for afterwards: none unless they were written."""
    if not record.get("planted"):
        return {}
    return {k["key"]: k["value"] for k in record.get("keys", [])}
