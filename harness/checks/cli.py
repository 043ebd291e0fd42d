"""`harness verify`: the check suite against an existing cluster, no upgrade. The only place here that prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from harness.checks.certs import DEFAULT_MIN_DAYS
from harness.errors import HarnessError
from harness.text import plural

if TYPE_CHECKING:
    from harness.checks.verify import VerifyReport
    from harness.cluster.base import Cluster


def _static_cluster(inventory: Path) -> Cluster:
    """The cluster an inventory describes, as it is."""
    from harness.cluster.static import StaticProvider

    return StaticProvider(inventory).cluster()


def _render(report: VerifyReport) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)  # a CI log: no cut columns
    colour = {"pass": "green", "FAIL": "bold red", "n/a": "dim"}
    for r in report.remedies:
        console.print(f"[bold]remedy[/] {escape(r.name)}: [{colour[r.status]}]{r.status}[/] {escape(r.summary)}",
                      highlight=False)
        if r.details:
            console.print(r.details, markup=False, highlight=False)
    if report.remedies:
        console.print("collected and checked again after the remedy:\n")
    versions = Table(title="versions per node")
    for h in ("node", "component", "expected", "observed", "status"):
        versions.add_column(h)
    for node, comp, want, got, status in report.rows:
        versions.add_row(node, comp, want, got, f"[{colour[status]}]{status}[/]")
    console.print(versions)
    checks = Table(title="checks")
    for h in ("check", "status", "summary"):
        checks.add_column(h)
    for r in report.results:
        checks.add_row(escape(r.name), f"[{colour[r.status]}]{r.status}[/]", escape(r.summary))
        if len(r.parts) > 1:  # a family of checks: each one on its own line
            for part in r.parts:
                checks.add_row(f"  {escape(part.name)}", f"[{colour[part.status]}]{part.status}[/]", escape(part.summary))
    console.print(checks)
    for r in report.results:
        if r.applicable and not r.passed and r.details:
            console.print(f"\n[bold red]{escape(r.name)}[/]: {escape(r.summary)}", highlight=False)
            console.print(r.details, markup=False, highlight=False)
    applicable = [r for r in report.results if r.applicable]
    passed = sum(r.passed for r in applicable)
    na = len(report.results) - len(applicable)
    console.print(f"\n{passed} of {plural(len(applicable), 'applicable check')} passed; {na} n/a (not counted)")


@click.command("verify")
@click.option("--inventory", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Ansible inventory of the cluster (Kubespray groups).")
# No `exists=True`: click's own refusal is a usage block; the loader's is one line naming the file.
# A str, not a Path: `Path('')` is the current folder, and an empty --expect must be named as such.
@click.option("--expect", "expect_file", required=True, type=click.Path(readable=False),
              help="Expected versions (YAML; see docs/verify.md).")
@click.option("--kubeconfig", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Defaults to <inventory dir>/artifacts/admin.conf when that exists.")
@click.option("--cert-days", type=click.IntRange(min=0), default=DEFAULT_MIN_DAYS, show_default=True,
              help="Fail certificates expiring within this many days.")
@click.option("--fix-stale-tokens", is_flag=True, help="Delete pods whose service-account token no longer"
              " authenticates (their controllers recreate them), then collect and check everything again.")
def verify(inventory: Path, expect_file: str, kubeconfig: Path | None, cert_days: int, fix_stale_tokens: bool) -> None:
    """Check an existing cluster against expected versions without upgrading it.

    Exits 0 only when every applicable check passes; checks that cannot apply (no Kubernetes API)
    are shown as n/a and not counted."""
    from dataclasses import replace

    from harness.checks.verify import api_access, load_expectation, run_verify
    from harness.installer.inventory import check_inventory_file

    try:
        expect = replace(load_expectation(expect_file), cert_days=cert_days)
        check_inventory_file(inventory)  # before Ansible reads it (a FIFO would block it, a list flood warnings)
        if kubeconfig is None:
            default = inventory.parent / "artifacts" / "admin.conf"
            kubeconfig = default if default.exists() else None
        report = run_verify(_static_cluster(inventory), expect, api_access(expect, kubeconfig), fix_stale_tokens)
    except HarnessError as e:
        click.echo(f"error: {e}", err=True)
        # 1 means a check failed (docs/verify.md): a cluster that could not be verified is never that.
        sys.exit(2 if e.exit_code == 1 else e.exit_code)
    _render(report)
    sys.exit(0 if report.ok else 1)
