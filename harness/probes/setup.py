"""The disruption prober's set-up for one cluster: its backends (etcd members with their client
certificates, container runtime sockets, the apiservers, the canary Service and the cluster DNS) and
why any it should have cannot be probed. Credentials are copied into the harness's state directory
(0600, never the artifacts) and dropped when the probing ends."""

from __future__ import annotations

import json
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.cluster.base import Cluster
from harness.errors import HarnessError
from harness.text import plural

# The disruption probes' sampling interval and per-request timeout (harness.probes.disruption; defaults
# 1 s and 5 s): HARNESS_PROBE_INTERVAL and HARNESS_PROBE_TIMEOUT override.
PROBE_INTERVAL_ENV = "HARNESS_PROBE_INTERVAL"
PROBE_TIMEOUT_ENV = "HARNESS_PROBE_TIMEOUT"


@dataclass(frozen=True)
class ProbeTarget:
    """What the prober is set up from: the cluster, whether it runs Kubernetes, the admin.conf to read
    the API's address and CA from, and the folder where the plant stage recorded the NodePorts."""

    cluster: Cluster
    kubernetes: bool
    admin_conf: Path | None = None
    plant_out: Path | None = None


def probe_interval() -> float:
    from harness.probes.disruption import DEFAULT_INTERVAL, MIN_INTERVAL

    return _env_seconds(PROBE_INTERVAL_ENV, DEFAULT_INTERVAL, MIN_INTERVAL, "between probe samples")


def probe_timeout() -> float:
    from harness.probes.disruption import DEFAULT_TIMEOUT, MIN_INTERVAL

    return _env_seconds(PROBE_TIMEOUT_ENV, DEFAULT_TIMEOUT, MIN_INTERVAL, "before a probe's request fails")


def _env_seconds(name: str, default: float, minimum: float, what: str) -> float:
    import os

    raw = os.environ.get(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if value < minimum:
        raise HarnessError(f"{name}={raw!r}: expected seconds {what}, at least {minimum:g}")
    return value


def probe_config(target: ProbeTarget, interval: float) -> tuple[Any, dict[str, str]]:
    """The prober's backends for a scenario's cluster, and why any it should have cannot be probed.

    etcd: each member's own endpoint with its admin certificate (Kubespray's layout, as the host
    probes read it), fetched into the state dir (0600, never the artifacts: they are secrets), and
    all endpoints together. The runtime socket of each Kubernetes node. With Kubernetes, /readyz of
    each control-plane node and of the kubeconfig's server, verified with the kubeconfig's CA, and the
    canary Service and the cluster DNS through the NodePorts the plant stage recorded."""
    from harness.probes import disruption as dp
    from harness.probes.hosts import EtcdTLS
    from harness.scenario.budgets import REUSED

    cluster = target.cluster
    missing: dict[str, str] = {}
    tls_layout = EtcdTLS()
    members: list[tuple[str, str, dp.TLSFiles]] = []

    def fetch(node: Any) -> Any:
        try:
            return fetch_etcd_creds(cluster, node.name, tls_layout)
        except HarnessError as e:
            return e

    # Every member's at once: each is an ssh round trip of seconds under emulation, all before the upgrade.
    etcd_nodes = cluster.with_role("etcd")
    with ThreadPoolExecutor(max_workers=max(1, min(8, len(etcd_nodes)))) as pool:
        fetched = list(pool.map(fetch, etcd_nodes))
    for node, creds in zip(etcd_nodes, fetched):
        if isinstance(creds, HarnessError):
            missing[f"etcd:{node.name}"] = str(creds)
            continue
        members.append((node.name, tls_layout.endpoint.format(address=node.address), creds))
    etcd = [dp.EtcdBackend(f"etcd:{name}", (url,), creds) for name, url, creds in members]
    if members:
        etcd.append(dp.EtcdBackend("etcd:all", tuple(url for _, url, _ in members), members[0][2]))
    elif cluster.with_role("etcd"):
        missing["etcd:all"] = "no member's credentials could be fetched"
    sockets = [dp.SocketBackend(f"containerd:{n.name}", tuple(cluster.ssh_argv(n.name)))
               for n in cluster.nodes if {"worker", "control-plane"} & set(n.roles)]
    http: list[dp.HttpBackend] = []
    dns: list[dp.DnsBackend] = []
    if target.kubernetes:
        http, why = _api_backends(target)
        if why:
            api = [f"apiserver:{n.name}" for n in cluster.with_role("control-plane")] + ["apiserver:endpoint"]
            missing.update({b + s: why for b in api for s in ("", REUSED)})
        canary, dns, unreached = _kube_probe_backends(target)
        http += canary
        missing.update(unreached)
    config = dp.ProbeConfig(interval=interval, timeout=probe_timeout(), etcd=tuple(etcd), sockets=tuple(sockets),
                            http=tuple(http), dns=tuple(dns))
    return config, missing


def secret_dir(cluster: Cluster, *parts: str) -> Path:
    from harness.settings import state_dir

    d = state_dir() / "disruption" / f"{cluster.provider}-{cluster.name or 'main'}"
    for p in parts:
        d = d / p
    d.mkdir(mode=0o700, parents=True, exist_ok=True)
    return d


def drop_credentials(cluster: Cluster) -> None:
    import shutil

    shutil.rmtree(secret_dir(cluster), ignore_errors=True)


def fetch_etcd_creds(cluster: Cluster, node: str, layout: Any) -> Any:
    """A member's CA, admin certificate and key, copied off the node (one ssh) into the state dir."""
    import base64
    import io
    import os
    import tarfile

    from harness.probes.disruption import TLSFiles

    files = {"ca.pem": layout.cacert, "cert.pem": layout.cert.format(node=node), "key.pem": layout.key.format(node=node)}
    # One tar under one sudo (three processes: each start costs ~0.1 s under emulation), through base64
    # (text output); on failure only the exit code and stderr are reported, never stdout.
    script = "sudo tar -cPf - " + " ".join(shlex.quote(src) for src in files.values()) + " | base64 -w0"
    res = cluster.run(node, script, check=False, timeout=120)

    def failed(why: str) -> HarnessError:
        return HarnessError(f"etcd client credentials of {node} could not be read ({', '.join(files.values())}):"
                            f" {why} {res.stderr.strip()[-200:]}".rstrip())

    if not res.ok:
        raise failed(f"rc={res.rc}")
    d = secret_dir(cluster, node)
    try:
        raw = base64.b64decode(res.stdout.strip(), validate=True)
    except ValueError:
        raise failed("the copy was not base64;") from None
    try:
        tar = tarfile.open(fileobj=io.BytesIO(raw))  # noqa: SIM115  closed below; its open error is the copy's
    except tarfile.TarError as e:
        raise failed(f"the copy was not a tar ({e});") from None
    with tar:
        # In the order tar was given them. A missing file is skipped (its status is lost in the pipe):
        # tar's stderr, in the message, says which.
        members = [m for m in tar.getmembers() if m.isfile()]
        if len(members) != len(files):
            raise failed(f"{len(members)} of {plural(len(files), 'file')} in the copy;")
        for name, info in zip(files, members):
            member = tar.extractfile(info)
            if member is None:
                raise failed(f"{info.name} unreadable in the copy;")
            target = d / name
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(member.read())
            target.chmod(0o600)
    return TLSFiles(str(d / "ca.pem"), str(d / "cert.pem"), str(d / "key.pem"))


def _api_backends(target: ProbeTarget) -> tuple[list[Any], str | None]:
    """/readyz of each control-plane node's apiserver and of the kubeconfig's server, each with a new
    connection per sample and over a kept one; the CA is the kubeconfig's (written 0600 to the state dir)."""
    import base64

    import yaml

    from harness.probes.disruption import HttpBackend

    found = target.admin_conf
    if found is None:
        return [], "no admin.conf to read the API's address and CA from"
    try:
        doc = yaml.safe_load(found.read_text())
        cluster_doc = doc["clusters"][0]["cluster"]
        server = str(cluster_doc["server"]).rstrip("/")
        ca_data = base64.b64decode(cluster_doc["certificate-authority-data"])
    except (OSError, ValueError, KeyError, IndexError, TypeError, yaml.YAMLError) as e:
        return [], f"the admin.conf could not be read for the API's address and CA ({type(e).__name__})"
    ca = secret_dir(target.cluster) / "kube-ca.pem"
    ca.touch(mode=0o600)
    ca.write_bytes(ca_data)
    urls = {f"apiserver:{n.name}": f"https://{n.address}:6443/readyz" for n in target.cluster.with_role("control-plane")}
    urls["apiserver:endpoint"] = f"{server}/readyz"
    out = []
    for backend, url in urls.items():
        out += [HttpBackend(backend, url, str(ca)), HttpBackend(backend + ":reused", url, str(ca), reuse=True)]
    return out, None


KUBE_PROBES = "kube-probes.json"  # written by plant.yml's Kubernetes play (templates/kube-probes.json.j2)


def _kube_probe_backends(target: ProbeTarget) -> tuple[list[Any], list[Any], dict[str, str]]:
    """The canary Service through its NodePort on each Kubernetes node (plain HTTP, /hostname of
    agnhost's netexec) and the cluster DNS through the `harness-dns` NodePort on the first Kubernetes
    node, each new and reused, from the nodePorts the plant stage recorded; what cannot be probed,
    with why (backend -> reason)."""
    from harness.probes.disruption import DnsBackend, HttpBackend
    from harness.probes.kube import url_host
    from harness.scenario.budgets import REUSED

    nodes = [n for n in target.cluster.nodes if {"worker", "control-plane"} & set(n.roles)]
    canary_names = [f"canary:{n.name}{s}" for n in nodes for s in ("", REUSED)]
    dns_names = ["dns", "dns" + REUSED]
    doc, why = _read_kube_probes(target)
    if doc is None:
        return [], [], dict.fromkeys(canary_names + dns_names, why)
    where = doc["file"]
    missing: dict[str, str] = {}
    http: list[Any] = []
    canary = next((c for c in doc["canary"] if c["node_port"] is not None), None)
    if canary is None:
        errors = "; ".join(f"{c['namespace']}: {c['error'] or 'no nodePort'}" for c in doc["canary"]) or "none listed"
        missing.update(dict.fromkeys(canary_names, f"no canary Service has a nodePort in {where} ({errors})"))
    else:
        for n in nodes:
            url = f"http://{url_host(n.address)}:{canary['node_port']}{doc['canary_path']}"
            http += [HttpBackend(f"canary:{n.name}", url), HttpBackend(f"canary:{n.name}{REUSED}", url, reuse=True)]
    dns: list[Any] = []
    port = doc["dns"]["node_port"]
    if port is None:
        missing.update(dict.fromkeys(dns_names, f"the {doc['dns']['namespace']}/{doc['dns']['service']} Service has"
                                                f" no nodePort in {where} ({doc['dns']['error'] or 'none recorded'})"))
    elif not nodes:
        missing.update(dict.fromkeys(dns_names, "no Kubernetes node to reach the DNS NodePort on"))
    else:
        dns = [DnsBackend("dns", nodes[0].address, port, doc["dns_name"]),
               DnsBackend("dns" + REUSED, nodes[0].address, port, doc["dns_name"], reuse=True)]
    return http, dns, missing


def _read_kube_probes(target: ProbeTarget) -> tuple[dict[str, Any] | None, str]:
    """The plant stage's kube-probes.json, its shape checked (the file and the field named on error)."""
    out = target.plant_out
    if out is None:
        return None, "no plant stage in the run: nothing recorded the canary and DNS nodePorts"
    path = out / KUBE_PROBES
    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        return None, f"{path} could not be read ({type(e).__name__}): the plant stage recorded no nodePorts"
    except ValueError as e:
        return None, f"{path} is not JSON: {e}"
    problem = _kube_probes_problem(doc)
    if problem:
        return None, f"{path}: {problem}"
    return {**doc, "file": str(path)}, ""


def _kube_probes_problem(doc: Any) -> str | None:
    """What is wrong with a kube-probes.json's shape (the field named), or None."""

    def entry_problem(entry: Any, where: str) -> str | None:
        if not isinstance(entry, dict) or not isinstance(entry.get("error", ""), str):
            return f"{where}: expected an object with node_port and error"
        if not all(isinstance(entry.get(k), str) and entry[k] for k in ("namespace", "service")):
            return f"{where}: expected its namespace and service"
        p = entry.get("node_port")
        if p is not None and (isinstance(p, bool) or not isinstance(p, int) or not 0 < p < 65536):
            return f"{where}.node_port: expected a port number or null, got {p!r}"
        return None

    if not isinstance(doc, dict):
        return "expected an object"
    canary = doc.get("canary")
    if not isinstance(canary, list):
        return "canary: expected a list of the canary Services"
    for problem in [entry_problem(c, f"canary[{i}]") for i, c in enumerate(canary)] + [entry_problem(doc.get("dns"), "dns")]:
        if problem:
            return problem
    for key in ("canary_path", "dns_name"):
        if not isinstance(doc.get(key), str) or not doc[key]:
            return f"{key}: expected a non-empty string"
    if not doc["canary_path"].startswith("/"):
        return f"canary_path: expected a path starting with /, got {doc['canary_path']!r}"
    return None
