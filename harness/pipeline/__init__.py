"""One scenario through the pipeline, as an ordered list of named steps (Molecule-style), one module
each:

    plan -> cluster -> baseline -> before -> stages (plant, upgrade, ...) -> after

`Session` holds what every scenario of one pytest session (one xdist worker) shares and runs the
steps; each step reads and fills the scenario's run record (harness.record.ScenarioRun), whose
outcome is saved to `<artifacts>/<scenario>/run.json` as it happens. A failing step does not stop
measurement: once a cluster exists, the probes still run so the checks report what the cluster
really is (a half-upgraded cluster is a result, not a crash).
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from rich.console import Console

from harness import progress
from harness.cluster.base import Cluster, ClusterSpec, Provider
from harness.errors import HarnessError
from harness.installer.base import Installer, Stage
from harness.options import Options
from harness.pipeline import after, baseline, before, finish, plan, stages
from harness.pipeline import cluster as cluster_step
from harness.pipeline.finish import MEASURABLE
from harness.pipeline.plan import LISTED
from harness.pipeline.stages import probe_target, versions_file
from harness.record import ScenarioRun, StepOutcome
from harness.scenario.model import Scenario

if TYPE_CHECKING:
    from harness.installer.files_repo import FilesServer
    from harness.installer.kubespray import Kubespray
    from harness.probes.hosts import HostProbe, VersionCache

__all__ = ["LISTED", "Session", "probe_target"]

Step = Callable[["Session", ScenarioRun], None]

# The steps before the stages, in order; each needs the one before it.
STEPS: tuple[tuple[str, Step], ...] = (
    ("plan", plan.plan),
    ("cluster", cluster_step.cluster),
    ("baseline", baseline.baseline),
    ("before", before.before),
)


class Session:
    """What every scenario of one pytest session (one xdist worker) shares: the provider, clusters
    by machine shape, the Kubespray sources, the installers, the lab's files repo server."""

    def __init__(self, options: Options, console: Console | None = None) -> None:
        self.options = options
        self.console = console or progress.console()
        self._provider: Provider | None = None
        self._clusters: dict[tuple[str, ...], Cluster] = {}
        self._kubespray: Kubespray | None = None
        self._servers: dict[str, FilesServer] = {}  # netns -> the files repo served in it
        self._installers: dict[str, Installer] = {}
        self.kept: list[Cluster] = []
        self._versions: dict[str, VersionCache] = {}  # cluster name -> its scenarios' probes share it
        # `--list-tasks` of the listed stages, started by the plan step, taken by the stage that needs it
        self.lister = ThreadPoolExecutor(max_workers=2, thread_name_prefix="list-tasks")

    # -- shared resources ---------------------------------------------------------

    def provider(self) -> Provider:
        if self._provider is None:
            from harness.cluster.providers import provider_for

            self._provider = provider_for(self.options)
        return self._provider

    def kubespray(self) -> Kubespray:
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

    def stage_installer(self, run: ScenarioRun, stage: Stage) -> Installer:
        """The installer whose stage it is; the harness's playbooks (plant, collect) get the scenario's
        installer's variables."""
        return self.installer(stage.installer or run.scenario.installer)

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

    def host_probe(self, run: ScenarioRun) -> HostProbe:
        """The scenario's host probe. Every probe of one cluster in this session shares one version
        cache: a binary unchanged since the last probe (same file) is not run again."""
        from harness.checks import suite
        from harness.probes.hosts import HostProbe, VersionCache

        assert run.cluster is not None
        cache = self._versions.get(run.cluster.name)
        if cache is None:
            cache = self._versions[run.cluster.name] = VersionCache.load(versions_file(run.cluster))
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
        return self._servers[netns].url(guest_facing_address(netns, cluster.nodes[0].address))

    # -- one scenario -------------------------------------------------------------

    def run(self, scenario: Scenario) -> ScenarioRun:
        run = ScenarioRun(scenario, self.options.artifacts / scenario.id, worker=self.options.worker)
        if run.dir.exists():
            shutil.rmtree(run.dir, ignore_errors=True)
        self.console.print()
        self.console.rule(f"[bold]{scenario.test_id}")
        for name, step in STEPS:
            if not self.step(run, name, step):
                break
        else:
            for stage in run.stages:
                if stage.purpose == finish.EVIDENCE:
                    continue  # taken by finish() when the scenario failed: a green run does not pay for it
                self.step(run, stage.purpose, stages.stage_step(stage))
        if run.cluster is not None and any(run.ok(s) for s in MEASURABLE):
            self.step(run, "after", after.after)
        run.save()
        if run.cluster is not None and run.cluster.name in self._versions:
            with contextlib.suppress(OSError):  # a cache not saved costs the next session a few seconds
                self._versions[run.cluster.name].save(versions_file(run.cluster))
        return run

    def step(self, run: ScenarioRun, name: str, fn: Step) -> bool:
        """Run one step, record its outcome (a crash included, with its trace) and save the record."""
        start = time.monotonic()
        try:
            fn(self, run)
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

    # -- end of scenario / session ------------------------------------------------------

    def finish(self, run: ScenarioRun, *, failed: bool) -> None:
        """Evidence for a failed scenario, its report, and whether its cluster is kept."""
        finish.finish(self, run, failed=failed)

    def close(self, *, failed: bool) -> None:
        self.lister.shutdown(wait=True, cancel_futures=True)  # a listing still running ends in seconds
        for server in self._servers.values():
            server.stop()
        self._servers.clear()
        kept = set(map(id, self.kept))
        for cluster in self._clusters.values():
            if id(cluster) in kept:
                cluster.release()
                # A shared cluster is where the session's last scenario on it left it.
                self.console.print(f"[yellow]kept[/] {cluster.describe_access()}", highlight=False)
            else:
                cluster.destroy()
        if self._provider is not None and not self.kept:
            self._provider.cleanup()
