"""The background prober: availability samples of every backend while an upgrade runs.

It runs as its own process, `python -m harness.probes.disruption --config C.json --out S.jsonl`,
started by the pipeline around the upgrade stage (`Prober`), inside the cluster's network namespace
when it has one (`ip netns exec NS ...`: lab addresses are never reached from the root namespace).
One thread per backend samples it every `interval` seconds (default 1 s, down to 0.25 s). Each
request of a probe times out after `timeout` (default 5 s): slow is not down. On the lab (guests
under software emulation, a loaded host) etcd writes took 0.6 s at the median and up to 3.9 s while
the upgrade ran, so a 1 s timeout counted ~17 % of samples as failures of a cluster that was serving.
A hung backend thus yields a sample per timeout, not per interval. It stops when its stdin closes (the pipeline, or the pipeline's death) or on SIGTERM.

Samples file (JSON lines, one object per sample, appended and flushed as taken):

    {"t": 1764321234.52, "backend": "etcd:node1", "ok": false, "latency_ms": 1000.4,
     "error": "ReadTimeout: timed out"}

`t` is the wall-clock time (epoch seconds, the controller's clock) the probe began; `latency_ms`
how long it took (for a failure: until it failed); `error` null when ok, else one line naming the
exception (never a certificate, key or token: none is ever read into a message). Backend names and
how outages and budgets are read from these samples: harness.checks.disruption.

Backends:
- `etcd:<node>`: a write then a linearizable read of the key `/harness-probe/<backend>` through
  etcd's gRPC gateway JSON API (`POST /v3/kv/put`, `/v3/kv/range`; etcd 3.4 and 3.5), on that
  member's own client URL, with a client certificate. `etcd:all` does the same as a client given
  every member would: it keeps to the member that last answered and fails over to the next one
  within the same sample, so only a moment no member serves is a failed sample.
- `containerd:<node>`: a loop on the node (python3 over one ssh session) connects to the
  containerd socket every interval and prints the result; the controller stamps it on receipt.
  The session dropping is a gap (no samples), not an outage: the node may be fine.
- `apiserver:*` / `canary:*`: an HTTP GET (`/readyz`; plain http to the canary Service's NodePort on
  each node, where agnhost's netexec answers `/hostname`); each with a new connection per sample and,
  as `<backend>:reused`, over one kept connection.
- `dns`: a DNS query over TCP (dnspython) for the A record of `kubernetes.default.svc.<domain>` to the
  cluster DNS through a NodePort; ok only on NOERROR with an A record. `dns:reused` sends it over one
  kept TCP connection. A kept connection the server closed while idle is replaced before the sample,
  as an HTTP client's pool does (RFC 7766 lets a DNS server close idle TCP connections); one that
  breaks or hangs mid-query is a failed sample, and the next sample connects afresh.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ctypes
import json
import os
import select
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

DEFAULT_INTERVAL = 1.0
DEFAULT_TIMEOUT = 5.0
MIN_INTERVAL = 0.25
KEY_PREFIX = "/harness-probe/"


def _why(e: BaseException) -> str:
    text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
    return f"{type(e).__name__}: {text}".rstrip(": ")


# -- configuration (what the pipeline writes, what the child reads) ---------------------------


@dataclass(frozen=True)
class TLSFiles:
    """Client credentials for one etcd endpoint: paths on the controller (0600, the state dir)."""

    ca: str
    cert: str
    key: str


@dataclass(frozen=True)
class EtcdBackend:
    backend: str  # etcd:<node> or etcd:all
    endpoints: tuple[str, ...]  # https://ADDRESS:2379 (http:// for a plain member)
    tls: TLSFiles | None = None


@dataclass(frozen=True)
class SocketBackend:
    backend: str  # containerd:<node>
    shell: tuple[str, ...]  # argv taking one shell command: ("ssh", "-F", CFG, NODE) or ("sh", "-c")
    path: str = "/run/containerd/containerd.sock"
    sudo: bool = True


@dataclass(frozen=True)
class HttpBackend:
    backend: str  # apiserver:<node>, apiserver:endpoint, canary:<node>
    url: str
    ca: str | None = None  # None: the server's certificate is not verified (a readiness probe only)
    reuse: bool = False


@dataclass(frozen=True)
class DnsBackend:
    backend: str  # dns or dns:reused
    server: str  # an address (a node's, for the NodePort)
    port: int
    name: str  # the name whose A record is asked for: kubernetes.default.svc.<cluster domain>
    reuse: bool = False


@dataclass(frozen=True)
class ProbeConfig:
    interval: float = DEFAULT_INTERVAL
    timeout: float | None = None  # per request of a probe; None: DEFAULT_TIMEOUT
    etcd: tuple[EtcdBackend, ...] = ()
    sockets: tuple[SocketBackend, ...] = ()
    http: tuple[HttpBackend, ...] = ()
    dns: tuple[DnsBackend, ...] = ()

    def __post_init__(self) -> None:
        if self.interval < MIN_INTERVAL:
            raise ValueError(f"probe interval {self.interval}s is below the minimum {MIN_INTERVAL}s")

    @property
    def backends(self) -> list[str]:
        return ([e.backend for e in self.etcd] + [s.backend for s in self.sockets] + [h.backend for h in self.http]
                + [d.backend for d in self.dns])

    def to_json(self) -> dict[str, Any]:
        import dataclasses

        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ProbeConfig:
        return cls(
            interval=float(doc.get("interval", DEFAULT_INTERVAL)),
            timeout=None if doc.get("timeout") is None else float(doc["timeout"]),
            etcd=tuple(EtcdBackend(e["backend"], tuple(e["endpoints"]), TLSFiles(**e["tls"]) if e.get("tls") else None)
                       for e in doc.get("etcd", ())),
            sockets=tuple(SocketBackend(s["backend"], tuple(s["shell"]), s["path"], bool(s["sudo"]))
                          for s in doc.get("sockets", ())),
            http=tuple(HttpBackend(h["backend"], h["url"], h.get("ca"), bool(h.get("reuse")))
                       for h in doc.get("http", ())),
            dns=tuple(DnsBackend(d["backend"], d["server"], int(d["port"]), d["name"], bool(d.get("reuse")))
                      for d in doc.get("dns", ())),
        )


# -- the probes (child side) ----------------------------------------------------------------


class Writer:
    """Appends samples, one JSON line each, flushed as written (a killed prober loses nothing)."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh, self._lock = fh, threading.Lock()

    def sample(self, t: float, backend: str, ok: bool, latency_ms: float, error: str | None) -> None:
        line = json.dumps({"t": round(t, 3), "backend": backend, "ok": ok, "latency_ms": round(latency_ms, 1),
                           "error": error})
        with self._lock:
            self._fh.write(line + "\n")
            self._fh.flush()


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


class EtcdProbe:
    """Write then read one key on an endpoint; with several, stick to the one that answered last."""

    def __init__(self, spec: EtcdBackend, timeout: float) -> None:
        import httpx

        self.spec, self.timeout = spec, timeout
        verify: ssl.SSLContext | bool = False
        if spec.tls is not None:
            ctx = ssl.create_default_context(cafile=spec.tls.ca)
            ctx.load_cert_chain(spec.tls.cert, spec.tls.key)
            verify = ctx
        # One kept connection per endpoint, like a real client; a restarted member costs a reconnect.
        self.client = httpx.Client(verify=verify, timeout=timeout)
        self.key = _b64(KEY_PREFIX + spec.backend)
        self.current = 0

    def _once(self, endpoint: str, value: str) -> None:
        r = self.client.post(f"{endpoint}/v3/kv/put", json={"key": self.key, "value": _b64(value)})
        _raise_for(r)
        r = self.client.post(f"{endpoint}/v3/kv/range", json={"key": self.key})
        _raise_for(r)
        kvs = r.json().get("kvs") or []
        got = base64.b64decode(kvs[0].get("value", "")).decode() if kvs else None
        if got != value:
            raise ValueError(f"read back {got!r}, wrote {value!r}")

    def sample(self) -> str | None:
        value = f"{time.time():.3f}"
        errors = []
        n = len(self.spec.endpoints)
        for i in range(n):
            idx = (self.current + i) % n
            try:
                self._once(self.spec.endpoints[idx], value)
            except Exception as e:  # noqa: BLE001  any failure is the sample's result
                errors.append(_why(e))
                continue
            self.current = idx
            return None
        return errors[0] if n == 1 else "; ".join(f"{ep}: {err}" for ep, err in zip(self.spec.endpoints, errors, strict=True))

    def close(self) -> None:
        self.client.close()


def _raise_for(r: Any) -> None:
    if r.status_code != 200:
        try:
            msg = r.json().get("error") or r.json().get("message") or r.text
        except ValueError:
            msg = r.text
        raise RuntimeError(f"HTTP {r.status_code}: {str(msg).strip()[:160]}")


class HttpProbe:
    """GET a URL: 2xx is ok. A new connection per sample, or one kept (`reuse`)."""

    def __init__(self, spec: HttpBackend, timeout: float) -> None:
        import httpx

        verify: ssl.SSLContext | bool = ssl.create_default_context(cafile=spec.ca) if spec.ca else False
        limits = httpx.Limits() if spec.reuse else httpx.Limits(max_keepalive_connections=0)
        self.spec = spec
        self.client = httpx.Client(verify=verify, timeout=timeout, limits=limits)

    def sample(self) -> str | None:
        try:
            r = self.client.get(self.spec.url)
        except Exception as e:  # noqa: BLE001
            return _why(e)
        return None if 200 <= r.status_code < 300 else f"HTTP {r.status_code}: {r.text.strip()[:120]}"

    def close(self) -> None:
        self.client.close()


class DnsProbe:
    """The A record of one name over TCP: NOERROR with an A record is ok, anything else a failure."""

    def __init__(self, spec: DnsBackend, timeout: float) -> None:
        import dns.query  # noqa: F401  imported here: the first sample's latency is not the import's

        self.spec, self.timeout = spec, timeout
        self.sock: socket.socket | None = None  # the kept connection (reuse)

    def _connection(self) -> socket.socket:
        s = self.sock
        if s is not None:
            # Readable while idle means the server closed it (or sent junk): replace it, as a pool would.
            readable, _, _ = select.select([s], [], [], 0)
            if readable:
                self._drop()
        if self.sock is None:
            s = socket.create_connection((self.spec.server, self.spec.port), timeout=self.timeout)
            s.setblocking(False)  # dnspython wants a non-blocking connected socket
            self.sock = s
        return self.sock

    def _drop(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.close()
            self.sock = None

    def sample(self) -> str | None:
        import dns.message
        import dns.query
        import dns.rcode
        import dns.rdatatype

        q = dns.message.make_query(self.spec.name, dns.rdatatype.A)
        try:
            if self.spec.reuse:
                start = time.monotonic()
                sock = self._connection()
                left = max(0.001, self.timeout - (time.monotonic() - start))
                r = dns.query.tcp(q, self.spec.server, timeout=left, port=self.spec.port, sock=sock)
            else:
                r = dns.query.tcp(q, self.spec.server, timeout=self.timeout, port=self.spec.port)
        except Exception as e:  # noqa: BLE001  any failure is the sample's result
            self._drop()  # a connection that failed mid-query is never reused
            return _why(e)
        if r.rcode() != dns.rcode.NOERROR:
            return f"{dns.rcode.to_text(r.rcode())} for {self.spec.name}"
        if not any(rrset.rdtype == dns.rdatatype.A and len(rrset) for rrset in r.answer):
            return f"no A record for {self.spec.name} in the answer"
        return None

    def close(self) -> None:
        self._drop()


def _loop(backend: str, probe: Any, interval: float, stop: threading.Event, out: Writer) -> None:
    """Sample on a fixed grid; a slow sample skips the slots it overran rather than bunching up."""
    try:
        nxt = time.monotonic()
        while not stop.is_set():
            t, m = time.time(), time.monotonic()
            error = probe.sample()
            out.sample(t, backend, error is None, (time.monotonic() - m) * 1000, error)
            nxt += interval
            now = time.monotonic()
            if nxt < now:
                nxt = now + interval - (now - nxt) % interval
            stop.wait(nxt - now)
    finally:
        probe.close()


# Runs on the node (python3 is there: Ansible needs it). Prints [latency_ms, error] per interval.
SOCKET_LOOP = """
import json, socket, sys, time
path, iv = sys.argv[1], float(sys.argv[2])
nxt = time.monotonic()
while True:
    m = time.monotonic(); err = None
    try:
        s = socket.socket(socket.AF_UNIX); s.settimeout(iv); s.connect(path); s.close()
    except OSError as e:
        err = type(e).__name__ + ": " + (e.strerror or str(e))
    print(json.dumps([round((time.monotonic() - m) * 1000, 1), err]), flush=True)
    nxt += iv; d = nxt - time.monotonic()
    if d > 0: time.sleep(d)
    else: nxt = time.monotonic()
"""


def socket_argv(spec: SocketBackend, interval: float) -> list[str]:
    remote = ["python3", "-u", "-c", SOCKET_LOOP, spec.path, f"{interval:g}"]
    if spec.sudo:
        remote = ["sudo", "-n", *remote]
    return [*spec.shell, shlex.join(remote)]


def _socket_loop(spec: SocketBackend, interval: float, stop: threading.Event, out: Writer) -> None:
    """Read the node's loop; restart the session when it ends (a gap, no samples) until stopped."""
    while not stop.is_set():
        started = time.time()
        child = subprocess.Popen(socket_argv(spec, interval), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        lines = 0
        try:
            threading.Thread(target=_kill_when, args=(stop, child), daemon=True).start()
            assert child.stdout is not None and child.stderr is not None
            for line in child.stdout:
                try:
                    latency, error = json.loads(line)
                except ValueError:
                    continue
                lines += 1
                out.sample(time.time() - float(latency) / 1000, spec.backend, error is None, float(latency), error)
        finally:
            _kill(child)
            child.wait()
            stderr = child.stderr.read() if child.stderr is not None else ""
        if not lines and not stop.is_set():
            # A session that never sampled (ssh refused, no python3, no sudo) must show, not be a silent gap.
            tail = stderr.strip().splitlines()[-1][:160] if stderr.strip() else f"exit {child.returncode}"
            out.sample(started, spec.backend, False, (time.time() - started) * 1000,
                       f"probe session ended before its first sample: {tail}")
        stop.wait(interval)


def _kill_when(stop: threading.Event, child: subprocess.Popen[str]) -> None:
    stop.wait()
    _kill(child)


def _kill(child: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGTERM)


def run(config: ProbeConfig, out: Writer, stop: threading.Event) -> list[threading.Thread]:
    """Start one sampling thread per backend; they end when `stop` is set."""
    timeout = config.timeout or DEFAULT_TIMEOUT
    threads = []
    probes: list[tuple[str, Any]] = []
    for e in config.etcd:
        try:
            probes.append((e.backend, EtcdProbe(e, timeout)))
        except Exception as err:  # noqa: BLE001  an unreadable certificate: one failed sample says so
            out.sample(time.time(), e.backend, False, 0.0, f"cannot set up the probe: {_why(err)}")
    for h in config.http:
        probes.append((h.backend, HttpProbe(h, timeout)))
    for d in config.dns:
        probes.append((d.backend, DnsProbe(d, timeout)))
    for backend, probe in probes:
        threads.append(threading.Thread(target=_loop, args=(backend, probe, config.interval, stop, out),
                                        name=backend, daemon=True))
    for s in config.sockets:
        threads.append(threading.Thread(target=_socket_loop, args=(s, config.interval, stop, out),
                                        name=s.backend, daemon=True))
    for t in threads:
        t.start()
    return threads


def _stop_on_eof(stop: threading.Event) -> None:
    sys.stdin.buffer.read()
    stop.set()


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m harness.probes.disruption", description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(argv)
    with contextlib.suppress(Exception):  # the kernel ends us with the harness (PR_SET_PDEATHSIG)
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)
    config = ProbeConfig.from_json(json.loads(args.config.read_text()))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    # The parent closes our stdin to stop us (and its death closes it too).
    threading.Thread(target=_stop_on_eof, args=(stop,), daemon=True).start()
    with args.out.open("a") as fh:
        threads = run(config, Writer(fh), stop)
        stop.wait()
        for t in threads:
            t.join(timeout=config.interval + (config.timeout or DEFAULT_TIMEOUT) * 4 + 5)
    return 0


# -- the parent side --------------------------------------------------------------------------------


@dataclass
class Prober:
    """The prober process as the pipeline holds it: started, then stopped with its CPU time."""

    config: ProbeConfig
    out: Path
    netns: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    cpu_seconds: float | None = None  # user + system of the prober, known once stopped
    wall_seconds: float | None = None
    stderr: str = ""
    _config_file: Path | None = field(default=None, repr=False)

    def start(self) -> None:
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self._config_file = self.out.with_suffix(".config.json")
        self._config_file.write_text(json.dumps(self.config.to_json(), indent=2) + "\n")
        argv = [sys.executable, "-m", "harness.probes.disruption", "--config", str(self._config_file),
                "--out", str(self.out)]
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns, *argv]  # execs in place: the pid stays the prober's
        self.started = time.monotonic()
        # A long-running child (proc.run waits for exit), so this one process is started directly.
        self.popen = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, start_new_session=True)

    def stop(self, timeout: float = 30.0) -> None:
        """Close its stdin (it finishes the samples in flight), reap it with its rusage."""
        p = self.popen
        if p is None or self.cpu_seconds is not None:
            return
        assert p.stdin is not None and p.stderr is not None
        with contextlib.suppress(OSError):
            p.stdin.close()
        deadline = time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                pid, status, usage = os.wait4(p.pid, 0)
                break
            time.sleep(0.05)
        p.returncode = os.waitstatus_to_exitcode(status)
        self.wall_seconds = time.monotonic() - self.started
        self.cpu_seconds = usage.ru_utime + usage.ru_stime
        self.stderr = p.stderr.read().decode(errors="replace")[-2000:]
        p.stderr.close()

    @property
    def cpu_share(self) -> float | None:
        """The prober's CPU time over its wall time (0.01 = 1 % of one core)."""
        if self.cpu_seconds is None or not self.wall_seconds:
            return None
        return self.cpu_seconds / self.wall_seconds


@dataclass
class ProbeRun:
    """What a pipeline keeps of one probing: the samples file, what was and was not probed, its cost."""

    samples: Path
    interval: float
    backends: tuple[str, ...] = ()  # probed
    missing: dict[str, str] = field(default_factory=dict)  # backend -> why it was not probed
    started_at: float | None = None  # epoch seconds
    cpu_seconds: float | None = None
    wall_seconds: float | None = None
    error: str | None = None  # why the prober failed (its stderr's tail), if it did

    def to_json(self) -> dict[str, Any]:
        return {"samples": str(self.samples), "interval": self.interval, "backends": list(self.backends),
                "missing": self.missing, "started_at": self.started_at, "cpu_seconds": self.cpu_seconds,
                "wall_seconds": self.wall_seconds, "error": self.error}


@contextlib.contextmanager
def probing(config: ProbeConfig, out: Path, netns: str | None = None) -> Iterator[Prober]:
    prober = Prober(config, out, netns)
    prober.start()
    try:
        yield prober
    finally:
        prober.stop()


if __name__ == "__main__":
    sys.exit(main())
