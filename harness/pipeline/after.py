"""The after step: the one collection after the upgrade (harness.checks.suite.collect): hosts, etcd,
the API and pod tokens, with the run's samples, timeline and playbook runs. What cannot be collected
is recorded in the facts, for the checks that need it to fail saying why."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from harness.checks import suite
from harness.errors import HarnessError
from harness.pipeline.kube import CANARIES, api_config, kubeconfig, server_for
from harness.record import ScenarioRun

if TYPE_CHECKING:
    from harness.pipeline import Session


def after(session: Session, run: ScenarioRun) -> None:
    assert run.cluster is not None
    api, errors = None, {}
    if "kubernetes" in run.scenario.requirements():
        minted = sorted((run.dir / "secrets").glob("token-*"))
        try:
            api = suite.ApiAccess(kubeconfig(run), CANARIES,
                                  pods_budget=max(run.scenario.budgets.values(), default=300.0),
                                  minted_token=minted[0] if minted else None,
                                  load_config=functools.partial(api_config, run),
                                  server_for=server_for(run))
        except HarnessError as e:
            errors["api"] = str(e)
    if run.sample_errors:
        errors["samples"] = "; ".join(f"{k}: {v}" for k, v in sorted(run.sample_errors.items()))
    run.facts = suite.collect(
        run.cluster, installer=suite.scenario_installer(run.scenario), etcd_keys=sorted(run.planted_keys),
        api=api, no_api="the scenario has no Kubernetes control plane", samples=run.samples,
        node_states=run.node_states,
        timeline=suite.run_timeline(run.results), runs=suite.run_records(run.results), errors=errors,
        probe=session.host_probe(run),
    )
