"""The stage steps: the plant, the upgrade (with the disruption prober and the samplers around it),
the idempotence run, and the evidence collection. The upgrade's own failure is a result (the checks
measure it): it is recorded, and the next stages still run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from harness.checks.disruption import expected_backends
from harness.cluster.base import Cluster
from harness.errors import HarnessError
from harness.installer.base import Stage
from harness.pipeline.kube import api_sampler, kube_before, newest_admin_conf
from harness.pipeline.playbook import run_playbook
from harness.probes import disruption as dp
from harness.probes import setup as probe_setup
from harness.probes.disruption import ProbeRun
from harness.probes.hosts import sample_sources, take_samples
from harness.probes.setup import ProbeTarget
from harness.record import ScenarioRun
from harness.text import plural

if TYPE_CHECKING:
    from harness.pipeline import Session, Step

# How often each source is sampled while the upgrade runs (order, skew and drain-order checks): every
# node's tools over ssh, and the API (apiservers' /version, the nodes' listing).
HOST_SAMPLE_SECONDS = 20.0
SAMPLE_SECONDS: dict[str, float] = {"hosts": HOST_SAMPLE_SECONDS, "api": 2.0}
# Stages whose failure is the scenario's result, measured by the checks, not a reason to stop.
MEASURED = ("upgrade", "idempotence")


def stage_step(stage: Stage) -> Step:
    """The step that runs one stage."""

    def step(session: Session, run: ScenarioRun) -> None:
        run_stage(session, run, stage)

    return step


def run_stage(session: Session, run: ScenarioRun, stage: Stage) -> None:
    if stage.purpose == "upgrade":
        with probing(session, run), sampling(session, run):
            result = run_playbook(session, run, stage)
    elif stage.purpose == "idempotence":
        with sampling(session, run):
            result = run_playbook(session, run, stage)
    else:
        result = run_playbook(session, run, stage)
    run.results[stage.purpose] = result
    if stage.purpose == "plant" and "kubernetes" in run.scenario.requirements() and result.ok:
        kube_before(run)
    if not result.ok and not stage.may_fail and stage.purpose not in MEASURED:
        raise HarnessError(f"stage {stage.ident} ({stage.playbook}) failed:\n{result.summary}")


@contextmanager
def sampling(session: Session, run: ScenarioRun) -> Iterator[None]:
    """Sample versions in the background while the upgrade runs: every node's tools over ssh and,
    with a Kubernetes API, each control-plane node's own apiserver and every kubelet (the order
    and skew checks replay them)."""
    stop = threading.Event()
    lock = threading.Lock()
    sources = sample_sources(session.host_probe(run), api_sampler(run))

    def loop(name: str, every: float) -> None:
        while not stop.is_set():
            # Each source on its own: a node or an apiserver mid-restart costs only its own samples.
            samples, states, errors = take_samples(datetime.now(UTC), {name: sources[name]})
            with lock:
                run.samples += samples
                run.node_states += states
                run.sample_errors.update(errors)
            stop.wait(every)

    # Each source at its own pace: the API's answers are cheap and what they show can last seconds
    # (the full path's kubelets ahead of the apiserver, a worker's cordon), the hosts' cost ssh rounds.
    threads = [threading.Thread(target=loop, args=(name, SAMPLE_SECONDS.get(name, HOST_SAMPLE_SECONDS)),
                                name=f"sampler-{name}-{run.scenario.id}", daemon=True) for name in sources]
    for t in threads:
        t.start()
    try:
        yield
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)


def probe_target(run: ScenarioRun) -> ProbeTarget:
    """What the disruption prober of this run is set up from."""
    assert run.cluster is not None
    plant = next((Path(s.extravars["harness_out"]) for s in run.stages if s.purpose == "plant"), None)
    return ProbeTarget(run.cluster, "kubernetes" in run.scenario.requirements(),
                       admin_conf=newest_admin_conf(run.dir) or run.kubeconfig, plant_out=plant)


def versions_file(cluster: Cluster) -> Path:
    """The cluster's VersionCache between sessions, beside its ssh config (removed with the cluster)."""
    return cluster.ssh_config.parent / "versions.json"


@contextmanager
def probing(session: Session, run: ScenarioRun) -> Iterator[None]:
    """The disruption prober (harness.probes.disruption) for the whole upgrade, inside the cluster's
    network namespace when it has one; its samples go to `<artifacts>/<scenario>/disruption.jsonl`.
    What cannot be probed is recorded per backend: the budget items fail saying why."""
    assert run.cluster is not None
    cluster = run.cluster
    interval = probe_setup.probe_interval()
    kubernetes = "kubernetes" in run.scenario.requirements()
    wanted = expected_backends({n.name: n.roles for n in cluster.nodes}, kubernetes)
    out = run.dir / "disruption.jsonl"
    out.unlink(missing_ok=True)
    try:
        config, missing = probe_setup.probe_config(probe_target(run), interval)
    except Exception as e:  # noqa: BLE001  a probe that cannot be set up must never stop the upgrade
        why = f"the probes could not be set up: {type(e).__name__}: {str(e).strip()[:300]}"
        run.disruption = ProbeRun(out, interval, (), {b: why for b in wanted}, error=why)
        yield
        return
    missing.update({b: "not probed" for b in wanted if b not in config.backends and b not in missing})
    record = run.disruption = ProbeRun(out, interval, tuple(config.backends), missing)
    if not config.backends:
        yield
        return
    netns = cluster.netns
    if netns is not None:
        from harness.cluster.vagrant import current_netns  # lazily: it brings python-vagrant

        netns = None if current_netns() == netns else netns  # already inside it
    prober = dp.Prober(config, out, netns)
    record.started_at = time.time()
    try:
        prober.start()
    except OSError as e:
        probe_setup.drop_credentials(cluster)
        record.error = f"the prober could not start: {e}"
        record.missing.update({b: record.error for b in config.backends})
        yield
        return
    # A few samples before the upgrade starts, so a backend down from the outset shows as such.
    deadline = time.monotonic() + max(5.0, 5 * interval)
    while time.monotonic() < deadline and prober.popen is not None and prober.popen.poll() is None:
        if out.exists() and len(out.read_text().splitlines()) >= len(config.backends):
            break
        time.sleep(interval / 2)
    try:
        yield
    finally:
        prober.stop()
        probe_setup.drop_credentials(cluster)  # they do not outlive the probing
        record.cpu_seconds, record.wall_seconds = prober.cpu_seconds, prober.wall_seconds
        if prober.popen is not None and prober.popen.returncode:
            record.error = f"the prober exited rc={prober.popen.returncode}: {prober.stderr.strip()[-500:]}"
        share = prober.cpu_share
        session.console.print(
            f"{run.scenario.id}: disruption probes: {plural(len(config.backends), 'backend')} every {interval:g}s"
            + (f", prober CPU {share * 100:.1f} % of a core" if share is not None else ""), highlight=False)
