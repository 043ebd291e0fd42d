"""One scenario through the pipeline, as an ordered list of named steps (Molecule-style):

    plan -> cluster -> baseline -> before -> stages (plant, upgrade, ...) -> after

Each step's outcome is recorded and saved to `<artifacts>/<scenario>/run.json` as it happens. A
failing step does not stop measurement: once a cluster exists, the probes still run so the checks
report what the cluster really is (a half-upgraded cluster is a result, not a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from harness import progress
from harness.cluster.base import Cluster, ClusterSpec, Node, Provider
from harness.errors import HarnessError
from harness.installer.base import Installer, Stage
from harness.options import Options
from harness.probes import setup as probe_setup
from harness.probes.disruption import ProbeRun
from harness.probes.facts import PreUpgradeRecord, to_jsonable
from harness.probes.setup import ProbeTarget
from harness.record import ScenarioRun, StepOutcome
from harness.scenario.model import Scenario
from harness.text import plural

if TYPE_CHECKING:
    from harness.probes.hosts import SampleSource

# Stages whose tasks are listed (`--list-tasks`): ansible-runner's events carry no tags, and the order
# checks sort these stages' tasks into phases by them.
LISTED = ("upgrade", "idempotence")
# The stage that fetches journals and cluster dumps: evidence for a failed scenario only (~90 s a run
# on the lab), taken after its items have judged it.
EVIDENCE = "collect"
# Steps after which the cluster is at baseline and measuring it makes sense.
MEASURABLE = ("baseline",)
# The canary Deployments plant.yml creates (namespace/name).
CANARIES = ("harness-canary-a/canary", "harness-canary-b/canary")
# How often each source is sampled while the upgrade runs (order, skew and drain-order checks): every
# node's tools over ssh, and the API (apiservers' /version, the nodes' listing).
HOST_SAMPLE_SECONDS = 20.0
SAMPLE_SECONDS: dict[str, float] = {"hosts": HOST_SAMPLE_SECONDS, "api": 2.0}


class Session:
    """What every scenario of one pytest session (one xdist worker) shares: the provider, clusters
    by topology, the Kubespray sources, the lab's files repo server."""

    def __init__(self, options: Options, console: Console | None = None) -> None:
        self.options = options
        self.console = console or progress.console()
        self._provider: Provider | None = None
        self._clusters: dict[tuple[str, ...], Cluster] = {}
        self._kubespray: Any = None
        self._servers: dict[str, Any] = {}  # netns -> FilesServer
        self._installers: dict[str, Installer] = {}
        self._keep: list[Cluster] = []
        self._versions: dict[str, Any] = {}  # cluster name -> VersionCache: its scenarios' probes share it
        self._lister = ThreadPoolExecutor(max_workers=2, thread_name_prefix="list-tasks")

    # -- shared resources ---------------------------------------------------------

    def provider(self) -> Provider:
        if self._provider is None:
            from harness.cluster.providers import provider_for

            self._provider = provider_for(self.options)
        return self._provider

    def kubespray(self) -> Any:
        if self._kubespray is None:
            from harness.installer.kubespray import Kubespray

            self._kubespray = Kubespray.open(str(self.options.kubespray))
        return self._kubespray

    def installer(self, kind: str) -> Installer:
        """One installer of each kind per session (harness.installer.registry)."""
        if kind not in self._installers:
            from harness.installer.registry import installer_for

            self._installers[kind] = installer_for(kind, self)
        return self._installers[kind]

    @property
    def offline(self) -> bool:
        """The nodes download from the lab's files repo: the provider hosts one."""
        return self.provider().serves_files_repo

    def cluster_for(self, scenario: Scenario) -> Cluster:
        """One cluster per machine shape (names, cpus, memory) per session; scenarios sharing it restore
        baselines from snapshots. Roles are inventory, not hardware: each scenario's roles are put on
        the nodes before it runs, so a Kubespray scenario with a control-plane node shares the VMs of
        the lab scenarios."""
        key = tuple(f"{n.name}:{n.cpus}:{n.memory}" for n in scenario.topology.nodes)
        if key not in self._clusters:
            name = "c" + str(len(self._clusters) + 1) if self._clusters else ""
            spec = ClusterSpec(name=name, nodes=scenario.topology.nodes, box=self.options.box)
            self._clusters[key] = self.provider().up(spec)
        cluster = self._clusters[key]
        roles = {n.name: tuple(n.roles) for n in scenario.topology.nodes}
        cluster.nodes = [dataclasses.replace(n, roles=roles.get(n.name, n.roles)) for n in cluster.nodes]
        return cluster

    def host_probe(self, run: ScenarioRun) -> Any:
        """The scenario's host probe. Every probe of one cluster in this session shares one version
        cache: a binary unchanged since the last probe (same file) is not run again."""
        from harness.checks import suite
        from harness.probes.hosts import HostProbe, VersionCache

        assert run.cluster is not None
        cache = self._versions.get(run.cluster.name)
        if cache is None:
            cache = self._versions[run.cluster.name] = VersionCache.load(_versions_file(run.cluster))
        return HostProbe(run.cluster, installer=suite.scenario_installer(run.scenario), versions=cache)

    def files_url(self, cluster: Cluster) -> str:
        """The lab's offline files repo, built from the Debian archive and served inside the lab's netns."""
        from harness.installer import files_repo
        from harness.installer.lab import guest_facing_address

        netns = cluster.netns
        if netns is None:
            raise HarnessError(
                "the lab installer needs its files repo reachable from the nodes; with this provider, set"
                " files_repo in the scenario's extra_vars to a server the nodes reach"
            )
        if netns not in self._servers:
            repo = files_repo.build()
            self._servers[netns] = files_repo.serve(repo.root, netns, "0.0.0.0", 8080)
        url: str = self._servers[netns].url(guest_facing_address(netns, cluster.nodes[0].address))
        return url

    # -- one scenario -------------------------------------------------------------

    def run(self, scenario: Scenario) -> ScenarioRun:
        run = ScenarioRun(scenario, self.options.artifacts / scenario.id, worker=self.options.worker)
        if run.dir.exists():
            _clear(run.dir)
        self.console.print()
        self.console.rule(f"[bold]{scenario.test_id}")
        steps: list[tuple[str, Callable[[ScenarioRun], None]]] = [
            ("plan", self._plan),
            ("cluster", self._cluster),
            ("baseline", self._baseline),
            ("before", self._before),
        ]
        for name, fn in steps:
            if not self._step(run, name, fn):
                break
        else:
            for stage in run.stages:
                if stage.purpose == EVIDENCE:
                    continue  # taken by finish() when the scenario failed: a green run does not pay for it
                self._step(run, stage.purpose, functools.partial(self._stage, stage=stage))
        if run.cluster is not None and any(run.ok(s) for s in MEASURABLE):
            self._step(run, "after", self._after)
        run.save()
        if run.cluster is not None and run.cluster.name in self._versions:
            with contextlib.suppress(OSError):  # a cache not saved costs the next session a few seconds
                self._versions[run.cluster.name].save(_versions_file(run.cluster))
        return run

    def _step(self, run: ScenarioRun, name: str, fn: Callable[[ScenarioRun], None]) -> bool:
        start = time.monotonic()
        try:
            fn(run)
        except (HarnessError, AssertionError, OSError) as e:
            run.outcomes[name] = StepOutcome(name, False, time.monotonic() - start, str(e))
            self.console.print(f"[red]{run.scenario.id}: {name} failed[/]: {e}", highlight=False)
            return False
        except Exception as e:  # noqa: BLE001  # a bug here must still be reported against the scenario, with its trace
            detail = "".join(traceback.format_exception(e)[-6:])
            run.outcomes[name] = StepOutcome(name, False, time.monotonic() - start, f"{type(e).__name__}: {e}\n{detail}")
            self.console.print(f"[red]{run.scenario.id}: {name} crashed[/]: {type(e).__name__}: {e}", highlight=False)
            return False
        run.outcomes[name] = StepOutcome(name, True, time.monotonic() - start)
        run.save()
        return True

    def _plan(self, run: ScenarioRun) -> None:
        """Everything that can be refused is refused here, before any VM exists."""
        from harness.plan.rules import check_component_step, check_kube_version_step
        from harness.upgrade.paths import pipeline

        sc = run.scenario
        for var, (old, new) in sc.changed_versions().items():
            if old is None:
                continue
            if var == "kube_version":
                check_kube_version_step(old, new)
            else:
                check_component_step(var, old, new)
        if sc.baseline_installer != sc.installer:
            self.installer(sc.baseline_installer).prepare(sc)
        prepared = self.installer(sc.installer).prepare(sc)
        if sc.installer == "kubespray":
            run.resolved = _components_from_vars(dict(prepared.defaults))
        run.stages = pipeline(sc, run.dir, available_tags=prepared.tags)
        # `--list-tasks` depends on the stage alone and costs 1.4 s (the lab's playbooks) to 3.8 s
        # (Kubespray's) of local CPU: it runs while the cluster is restored, not inside the upgrade step.
        for stage in run.stages:
            if stage.purpose in LISTED:
                run.listing[stage.ident] = self._lister.submit(self._stage_installer(run, stage).listed_tasks, stage)

    def _cluster(self, run: ScenarioRun) -> None:
        run.cluster = self.cluster_for(run.scenario)

    def _baseline(self, run: ScenarioRun) -> None:
        from harness.cluster.baseline import ensure_baseline
        from harness.installer.registry import baseline_key

        sc, cluster = run.scenario, run.cluster
        assert cluster is not None
        key = baseline_key(self.options.provider, sc, cluster.name)
        run.baseline_outcome = ensure_baseline(cluster, key, lambda: self._deploy_baseline(run))
        run.kubeconfig = _baseline_kubeconfig(run, cluster, key.snapshot_name)
        if self.offline:
            self.files_url(cluster)  # a restored baseline still needs the server for the upgrade
        self.console.print(f"{sc.id}: baseline {run.baseline_outcome} ({key.snapshot_name})", highlight=False)

    def _deploy_baseline(self, run: ScenarioRun) -> None:
        stage = self.installer(run.scenario.baseline_installer).baseline_stage(run.scenario)
        result = self._run_stage(run, stage)
        if not result.ok:
            from harness.errors import UpgradeRunError

            raise UpgradeRunError(f"baseline deploy failed:\n{result.summary}")

    def _before(self, run: ScenarioRun) -> None:
        """The record before the upgrade and the plant (etcd sentinels, container canaries) in one round
        trip per node: harness.probes.plant. Kubernetes canaries follow in the plant stage."""
        from harness.probes import plant as planting
        from harness.probes.hosts import pre_upgrade_record

        assert run.cluster is not None
        etcd = run.cluster.with_role("etcd")
        plant = planting.Plant(etcd_node=etcd[0].name if etcd else None)
        with progress.step(f"{run.scenario.id}: facts and plant on {len(run.cluster.nodes)} node(s)"):
            pairs = self.host_probe(run).all_facts_and_plant(plant)
        hosts = [h for h, _ in pairs]
        run.before = pre_upgrade_record(hosts, datetime.now(UTC))  # boot ids too: the reboot check reads them
        run.dir.mkdir(parents=True, exist_ok=True)
        (run.dir / "before.json").write_text(json.dumps(to_jsonable(hosts), indent=2, default=str) + "\n")
        sentinels = planting.sentinel_record(plant, [p for _, p in pairs])
        record = {"etcd_sentinels": sentinels, "container_canaries": {p.node: p.canary for _, p in pairs}}
        (run.dir / PLANT_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        if sentinels["failed"]:
            # An etcd that does not take writes now was broken before the upgrade began.
            raise HarnessError(f"could not plant the etcd sentinels on {plant.etcd_node}: {sentinels['error']}")
        run.planted_keys = planting.planted_keys(sentinels)

    def _stage(self, run: ScenarioRun, stage: Stage) -> None:
        """A harness or upgrade stage. The upgrade's own failure is a result (checks measure it);
        it is recorded, and the next stages still run."""
        if stage.purpose == "upgrade":
            with self._probing(run), self._sampling(run):
                result = self._run_stage(run, stage)
        elif stage.purpose == "idempotence":
            with self._sampling(run):
                result = self._run_stage(run, stage)
        else:
            result = self._run_stage(run, stage)
        run.results[stage.purpose] = result
        if stage.purpose == "plant" and "kubernetes" in run.scenario.requirements() and result.ok:
            self._kube_before(run)
        if not result.ok and not stage.may_fail and stage.purpose not in ("upgrade", "idempotence"):
            raise HarnessError(f"stage {stage.ident} ({stage.playbook}) failed:\n{result.summary}")

    def _stage_installer(self, run: ScenarioRun, stage: Stage) -> Installer:
        """The installer whose stage it is; the harness's playbooks (plant, collect) get the scenario's
        installer's variables."""
        return self.installer(stage.installer or run.scenario.installer)

    def _run_stage(self, run: ScenarioRun, stage: Stage) -> Any:
        from harness.installer.inventory import write_inventory
        from harness.upgrade.runner import run_stage

        assert run.cluster is not None
        installer = self._stage_installer(run, stage)
        pdd = run.dir / "runner" / stage.ident
        inputs = installer.inputs(run.scenario, stage, run.cluster)
        for note in inputs.notes:
            if note not in run.notes:
                run.notes.append(note)
                shown = note if len(note) <= 240 else note[:240] + "... (whole note in run.json)"
                self.console.print(f"{run.scenario.id}: {shown}", highlight=False)
        inventory = write_inventory(pdd, run.cluster.inventory(), inputs.group_vars)
        if inputs.extravars:
            stage = dataclasses.replace(stage, extravars={**inputs.extravars, **stage.extravars})
        task_tags = self._task_tags(run, installer, stage) if stage.purpose in LISTED else None
        result = run_stage(stage, pdd, inventory, project=installer.project(stage), show_progress=True,
                           envvars=inputs.envvars, task_tags=task_tags)
        run.notes += [n for n in result.notes if n not in run.notes]  # retries and unreachables: said, not hidden
        return result

    def _task_tags(self, run: ScenarioRun, installer: Installer, stage: Stage) -> dict[tuple[str, str], tuple[str, ...]]:
        """Each task's tags, from the listing the plan step started (or listed now, without one); a
        listing that failed fails here, in the stage that needs it."""
        started = run.listing.pop(stage.ident, None)
        listed = started.result() if started is not None else installer.listed_tasks(stage)
        return {(t.play, t.name): tuple(sorted(t.tags)) for t in listed}

    @contextmanager
    def _sampling(self, run: ScenarioRun) -> Iterator[None]:
        """Sample versions in the background while the upgrade runs: every node's tools over ssh and,
        with a Kubernetes API, each control-plane node's own apiserver and every kubelet (the order
        and skew checks replay them)."""
        from harness.probes.hosts import sample_sources, take_samples

        stop = threading.Event()
        lock = threading.Lock()
        sources = sample_sources(self.host_probe(run), self._api_sampler(run))

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

    @contextmanager
    def _probing(self, run: ScenarioRun) -> Iterator[None]:
        """The disruption prober (harness.probes.disruption) for the whole upgrade, inside the cluster's
        network namespace when it has one; its samples go to `<artifacts>/<scenario>/disruption.jsonl`.
        What cannot be probed is recorded per backend: the budget items fail saying why."""
        from harness.checks.disruption import expected_backends
        from harness.probes import disruption as dp

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
            from harness.cluster.vagrant import current_netns

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
            self.console.print(
                f"{run.scenario.id}: disruption probes: {plural(len(config.backends), 'backend')} every {interval:g}s"
                + (f", prober CPU {share * 100:.1f} % of a core" if share is not None else ""), highlight=False)

    def _api_sampler(self, run: ScenarioRun) -> SampleSource | None:
        """The API's sampling source, for scenarios with Kubernetes; none (and why) without a kubeconfig."""
        if "kubernetes" not in run.scenario.requirements():
            return None
        from harness.probes.hosts import kube_samples

        assert run.cluster is not None
        cluster = run.cluster
        try:
            cfg = self._api_config(run, self._kubeconfig(run))
        except Exception as e:  # noqa: BLE001  no API samples: the skew check fails saying why
            run.sample_errors["api"] = f"no kubeconfig to sample the API with: {e}"
            return None
        control_plane = cluster.with_role("control-plane")
        server_for = self._server_for(run)
        return lambda: kube_samples(cfg, control_plane, server_for=server_for)

    def _after(self, run: ScenarioRun) -> None:
        """The one collection after the upgrade (harness.checks.suite.collect): hosts, etcd, the API and
        pod tokens, with the run's samples, timeline and playbook runs. What cannot be collected is
        recorded in the facts, for the checks that need it to fail saying why."""
        from harness.checks import suite

        assert run.cluster is not None
        api, errors = None, {}
        if "kubernetes" in run.scenario.requirements():
            minted = sorted((run.dir / "secrets").glob("token-*"))
            try:
                api = suite.ApiAccess(self._kubeconfig(run), CANARIES,
                                      pods_budget=max(run.scenario.budgets.values(), default=300.0),
                                      minted_token=minted[0] if minted else None,
                                      load_config=functools.partial(self._api_config, run),
                                      server_for=self._server_for(run))
            except HarnessError as e:
                errors["api"] = str(e)
        if run.sample_errors:
            errors["samples"] = "; ".join(f"{k}: {v}" for k, v in sorted(run.sample_errors.items()))
        run.facts = suite.collect(
            run.cluster, installer=suite.scenario_installer(run.scenario), etcd_keys=sorted(run.planted_keys),
            api=api, no_api="the scenario has no Kubernetes control plane", samples=run.samples,
            node_states=run.node_states,
            timeline=suite.run_timeline(run.results), runs=suite.run_records(run.results), errors=errors,
            probe=self.host_probe(run),
        )

    # -- Kubernetes API ---------------------------------------------------------------

    def _kubeconfig(self, run: ScenarioRun) -> Path:
        """Kubespray writes admin.conf into the inventory's artifacts/ (kubeconfig_localhost: true);
        the newest one this scenario's runs left wins."""
        found = _newest_admin_conf(run.dir)
        if found is not None:
            return found
        if run.kubeconfig is not None:
            return run.kubeconfig
        raise HarnessError(
            f"no admin.conf for {run.scenario.id}: Kubespray writes it with kubeconfig_localhost: true into"
            " the inventory's artifacts/ folder"
        )

    def _api_config(self, run: ScenarioRun, kubeconfig: Path) -> Any:
        """The kubeconfig's client configuration, its server reached the way the cluster says this
        process reaches that node's API server (a lab's: a forward into its namespace)."""
        from urllib.parse import urlsplit

        from harness.probes.kube import load_config

        assert run.cluster is not None
        cfg = load_config(kubeconfig)
        if run.cluster.netns is None:
            return cfg  # reached as the kubeconfig says
        host = urlsplit(cfg.host).hostname
        port = urlsplit(cfg.host).port or 6443
        node = next((n for n in run.cluster.nodes if n.address == host or n.name == host), None)
        if node is not None:
            cfg.host = run.cluster.api_server(node, port)
        return cfg

    @staticmethod
    def _server_for(run: ScenarioRun) -> Callable[[Node], str] | None:
        """How this process reaches a node's own API server: through the cluster when it lives in a
        namespace this process is not in, else at the node's address."""
        assert run.cluster is not None
        return run.cluster.api_server if run.cluster.netns is not None else None

    def _kube_before(self, run: ScenarioRun) -> None:
        from harness.probes.kube import collect_kube_facts, pre_upgrade_snapshot

        assert run.cluster is not None
        cfg = self._api_config(run, self._kubeconfig(run))
        facts = collect_kube_facts(cfg, run.cluster.with_role("control-plane"), CANARIES, pods_budget=300,
                                   server_for=self._server_for(run))
        restarts, names, uids = pre_upgrade_snapshot(facts)
        run.kube_before = PreUpgradeRecord(
            taken_at=datetime.now(UTC), pod_restarts=restarts, pod_names=names, canary_uids=uids
        )

    # -- end of scenario / session ------------------------------------------------------

    def finish(self, run: ScenarioRun, *, failed: bool) -> None:
        if failed and run.cluster is not None and any(run.ok(s) for s in MEASURABLE):
            # The cluster is still where this scenario left it: its items have run, the next
            # scenario has not restored anything yet.
            for stage in run.stages:
                if stage.purpose == EVIDENCE and stage.purpose not in run.outcomes:
                    self.console.print(f"{run.scenario.id} failed: collecting journals and cluster state", highlight=False)
                    self._step(run, stage.purpose, functools.partial(self._stage, stage=stage))
            run.save()
        from harness.report.run_report import finish_scenario  # report.md/.html, timeline, archive (--archive)

        finish_scenario(run, failed=failed, archive=self.options.archive, console=self.console)
        keep = self.options.keep == "always" or (self.options.keep == "on-failure" and failed)
        if keep and run.cluster is not None:
            if run.cluster not in self._keep:
                self._keep.append(run.cluster)
            if failed:
                self.console.print(f"[yellow]{run.scenario.id} failed[/]: its cluster will be kept", highlight=False)

    def close(self, *, failed: bool) -> None:
        self._lister.shutdown(wait=True, cancel_futures=True)  # a listing still running ends in seconds
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        kept = set(map(id, self._keep))
        for cluster in self._clusters.values():
            if id(cluster) in kept:
                cluster.release()
                # A shared cluster is where the session's last scenario on it left it.
                self.console.print(f"[yellow]kept[/] {cluster.describe_access()}", highlight=False)
            else:
                cluster.destroy()
        if self._provider is not None and not self._keep:
            self._provider.cleanup()


PLANT_RECORD = "plant.json"  # the before step's: etcd sentinels and container canaries, as planted


def probe_target(run: ScenarioRun) -> ProbeTarget:
    """What the disruption prober of this run is set up from."""
    assert run.cluster is not None
    plant = next((Path(s.extravars["harness_out"]) for s in run.stages if s.purpose == "plant"), None)
    return ProbeTarget(run.cluster, "kubernetes" in run.scenario.requirements(),
                       admin_conf=_newest_admin_conf(run.dir) or run.kubeconfig, plant_out=plant)


def _versions_file(cluster: Cluster) -> Path:
    """The cluster's VersionCache between sessions, beside its ssh config (removed with the cluster)."""
    return cluster.ssh_config.parent / "versions.json"


def _newest_admin_conf(run_dir: Path) -> Path | None:
    """The admin.conf the newest of a scenario's Kubespray runs wrote (kubeconfig_localhost: true)."""
    found = sorted(run_dir.glob("runner/*/inventory/artifacts/admin.conf"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def _baseline_kubeconfig(run: ScenarioRun, cluster: Cluster, snapshot: str) -> Path | None:
    """The admin.conf of the cluster a baseline left. Kubespray writes it into the deploying run's
    inventory artifacts; a scenario that restores the baseline has none of its own until it runs
    Kubespray, so the deploying run's copy is kept (0600, in the harness's state dir) per snapshot."""
    from harness.settings import state_dir

    kept = state_dir() / "kubeconfigs" / f"{cluster.provider}-{cluster.name or 'main'}-{snapshot}.conf"
    if run.baseline_outcome and run.baseline_outcome.startswith("deployed"):
        found = _newest_admin_conf(run.dir)
        if found is not None:
            kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            kept.touch(mode=0o600)
            kept.write_bytes(found.read_bytes())
    return kept if kept.exists() else None


def _clear(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def _components_from_vars(defaults: dict[str, str]) -> dict[str, str]:
    from harness.components import COMPONENTS

    return {c.name: defaults[c.var] for c in COMPONENTS if c.var in defaults}
