"""The `harness` command. Thin: parse, call the library, print, map errors to exit codes."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.plan.versions import Ref

# Piped into a CI log, rich would squeeze tables into 80 columns and cut scenario ids: give them room.
console = Console(stderr=False, width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)


def _fail(e: HarnessError) -> None:
    # Escaped: a message quoting YAML (`tags: [master]`) must not be read as rich markup.
    err_console.print(f"[bold red]error:[/] {escape(str(e))}", highlight=False, markup=True, soft_wrap=True)
    sys.exit(e.exit_code)


def handles_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every command: a HarnessError becomes its message and its exit code, never a traceback."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except HarnessError as e:
            _fail(e)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


def _notice(text: str) -> None:
    err_console.print(f"[bold]notice:[/] {escape(text)}", highlight=False, markup=True, soft_wrap=True)


def _load(files: tuple[str, ...], expr: str | None) -> list[Any]:
    from harness.scenario import load_catalogue
    from harness.scenario.select import select

    return select(load_catalogue(files or None, _notice), expr)


def _lab() -> click.Command:
    from harness.cluster.lab.cli import lab

    return lab


def _verify() -> click.Command:
    from harness.checks.cli import verify

    return verify


# Subcommands that live with their stage (lab with the cluster, verify with the checks), imported when
# named: `harness scenarios` and `harness matrix` need neither (the checks alone cost 20 ms to import).
_LAZY: dict[str, Callable[[], click.Command]] = {"lab": _lab, "verify": _verify}


class _LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *_LAZY])

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in _LAZY:
            return _LAZY[cmd_name]()
        return super().get_command(ctx, cmd_name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kubespray-upgrade-harness")
def main() -> None:
    """Upgrade validation and conformance harness for Kubespray.

    It runs Kubespray's upgrade paths on real clusters and measures the result;
    a playbook's exit code is never taken as proof.
    """


@main.command()
@click.option("-k", "expr", metavar="EXPR", help="Select scenarios like `pytest -k` (e.g. 'etcd and not graceful').")
@click.option("--file", "files", multiple=True, type=click.Path(readable=False), help="Scenario file or folder (repeatable); default: scenarios/.")
@handles_errors
def scenarios(expr: str | None, files: tuple[str, ...]) -> None:
    """List and validate the scenario catalogue (exit 2 on an invalid file)."""
    chosen = _load(files, expr)
    from harness.report.matrix import row

    columns = ("id", "installer", "path", "components", "from", "to", "gate")
    rows: list[tuple[str, ...]] = []
    for sc in chosen:
        r = row(sc)
        rows.append((r["id"], r["installer"], r["path"], " ".join(r["components"]), r["from"], r["to"], r["gate"]))
    title = f"{len(chosen)} scenario(s)"
    if len(rows) > _RICH_ROWS:
        _plain_table(title, columns, rows)
        return
    table = Table(title=title, title_justify="left")
    for col in columns:
        table.add_column(col, no_wrap=col in ("id", "installer", "path", "gate"))
    for cells in rows:
        table.add_row(*cells)
    console.print(table)


# rich lays a table out in about 0.7 ms a row: 5,000 scenarios took 4 s to print. Past this many rows
# the table is plain aligned columns (a CI log's, or a screen that scrolls past it anyway).
_RICH_ROWS = 200


def _plain_table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]]) -> None:
    widths = [max([len(c), *(len(r[i]) for r in rows)]) for i, c in enumerate(columns)]
    out = [title, "  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip(),
           "  ".join("-" * w for w in widths)]
    out += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    sys.stdout.write("\n".join(out) + "\n")


@main.command()
@click.argument("source", metavar="FROM")
@click.argument("target", metavar="TO")
@click.option("--kubespray", "checkout", type=click.Path(exists=True, file_okay=False), help="Read release tags from this checkout.")
@click.option("--allow-downgrade", is_flag=True, help="Plan a downgrade instead of refusing it.")
@handles_errors
def plan(source: str, target: str, checkout: str | None, allow_downgrade: bool) -> None:
    """Print the validated hop plan from one Kubespray ref to another.

    Branches and commits are ordered only with --kubespray, which places them among the releases;
    without it they are refused, since neither a downgrade nor a skipped minor could be seen."""
    from harness.plan.rules import plan_hops
    from harness.plan.versions import Ref

    src, dst = Ref.parse(source), Ref.parse(target)
    known = None
    if not checkout:
        from harness.plan.rules import check_known_release, known_releases

        releases = known_releases()
        for ref in (src, dst):
            check_known_release(ref, releases)
    else:
        from harness.installer.kubespray import Kubespray

        ks = Kubespray.open(checkout)
        known = ks.release_tags()
        a, b = ks.commit(src.text), ks.commit(dst.text)  # refuses a ref the checkout does not have
        if a == b:
            console.print(f"[bold]{src} -> {dst}[/]: nothing to do: both are commit {a[:12]} (0 hops)", highlight=False)
            return
        src, dst = ks.placed(src, a, known), ks.placed(dst, b, known)
    p = plan_hops(src, dst, known=known, allow_downgrade=allow_downgrade)
    if not p.steps:
        console.print(f"[bold]{p.source} -> {p.target}[/]: nothing to do: the same ref (0 hops)", highlight=False)
        return
    console.print(f"[bold]{p.source} -> {p.target}[/]: {len(p.steps)} hop(s)", highlight=False)
    for i, (x, y) in enumerate(p.steps, 1):
        console.print(f"  {i}. {x} -> {y}" + _where(x, y), highlight=False)
    if len(p.steps) > 1:
        console.print("Kubespray supports one minor release per upgrade; each hop is a separate run.")


def _where(*refs: Ref) -> str:
    from harness.plan.rules import placed_as

    placed = [f"{r}: {placed_as(r)}" for r in refs if r.version is None and r.at is not None]
    return f"   ({', '.join(placed)})" if placed else ""


@main.command()
@click.option("--format", "fmt", type=click.Choice(["github", "gitlab", "json"]), default="github", show_default=True)
@click.option("-k", "expr", metavar="EXPR", help="Select scenarios like `pytest -k`.")
@click.option("--file", "files", multiple=True, type=click.Path(readable=False), help="Scenario file or folder (repeatable).")
@handles_errors
def matrix(fmt: str, expr: str | None, files: tuple[str, ...]) -> None:
    """CI matrix rows from the catalogue (one job per scenario)."""
    from harness.report.matrix import render

    click.echo(render(_load(files, expr), fmt))


@main.command()
@click.option("--from", "from_ref", required=True, metavar="REF", help="The Kubespray ref clusters run today.")
@click.option("--to", "to_ref", required=True, metavar="REF", help="The Kubespray ref to upgrade to.")
@click.option("--kubespray", metavar="PATH", help="Kubespray checkout (default: $HARNESS_KUBESPRAY).")
@click.option("-k", "expr", metavar="EXPR", help="Select scenarios like `harness scenarios -k`.")
@click.option("-n", "workers", type=int, default=1, show_default=True, help="xdist workers (each owns its clusters).")
@click.option("--last-failed", is_flag=True, help="Rerun the scenarios the previous gate report shows failed.")
@click.option("--keep", type=click.Choice(["never", "on-failure", "always"]), default="never", show_default=True,
              help="Keep clusters after the run (on-failure: those of failed scenarios).")
@click.option("--provider", default="lab", show_default=True, metavar="lab|vagrant|static")
@click.option("--inventory", metavar="FILE", help="Ansible inventory of existing hosts (--provider static).")
@click.option("--scenarios", "files", multiple=True, metavar="FILE", help="Scenario file or folder (repeatable).")
@click.option("--artifacts", default="artifacts", show_default=True, metavar="DIR", help="Where the runs go.")
@click.option("--report", "report_dir", metavar="DIR", help="Where gate.md, gate.json, gate.xml go (default: --artifacts).")
@click.option("--tests", metavar="PATH", help="The check items pytest runs (default: the harness's scenarios/).")
@click.argument("pytest_args", nargs=-1, metavar="[-- PYTEST ARGS]")
@handles_errors
def gate(from_ref: str, to_ref: str, kubespray: str | None, expr: str | None, workers: int, last_failed: bool,
         keep: str, provider: str, inventory: str | None, files: tuple[str, ...], artifacts: str,
         report_dir: str | None, tests: str | None, pytest_args: tuple[str, ...]) -> None:
    """Release gate: plan the hops FROM -> TO, run the selected scenarios (with -n, on xdist workers),
    write one gate report (gate.md, gate.json, gate.xml) and exit by it.

    Exit codes: 0 every required scenario passed (advisory ones never fail the gate); 1 a required
    scenario failed, was skipped or did not run; 2 bad input; 5 no scenario ran (an empty selection,
    or every scenario skipped)."""
    import os
    from pathlib import Path

    from harness.gate import DEFAULT_TESTS, GateRequest, run_gate
    from harness.options import Options

    # The same checks and messages as pytest's options, before anything runs.
    opts = Options.resolve(kubespray=kubespray or os.environ.get("HARNESS_KUBESPRAY"), from_ref=from_ref,
                           to_ref=to_ref, provider=provider, inventory=inventory, keep=keep, artifacts=artifacts,
                           scenario_files=list(files) or None)
    req = GateRequest(
        from_ref=from_ref, to_ref=to_ref, kubespray=opts.kubespray, expr=expr, workers=workers,
        last_failed=last_failed, keep=keep, provider=provider, inventory=opts.inventory,
        scenario_files=opts.scenario_files, artifacts=opts.artifacts,
        report_dir=Path(report_dir).resolve() if report_dir else None,
        tests=Path(tests).resolve() if tests else DEFAULT_TESTS, pytest_args=pytest_args,
    )
    result = run_gate(req, err_console)
    table = Table(title=f"gate {from_ref} -> {to_ref}", title_justify="left")
    for col in ("scenario", "path", "gate", "verdict", "duration", "disruption", "report"):
        table.add_column(col, no_wrap=col != "disruption")
    for r in result.rows:
        style = "red" if r.blocking else ("yellow" if r.verdict != "passed" else "green")
        table.add_row(r.scenario, r.path, r.gate, f"[{style}]{r.verdict}[/]" + (" (previous)" if r.carried else ""),
                      f"{r.seconds:.0f} s", escape(r.disruption), escape(r.report))
    console.print(table)
    colour = "green" if result.exit_code == 0 else "red"
    console.print(f"[bold {colour}]gate: {escape(result.message)}[/] (exit {result.exit_code}; report:"
                  f" {escape(str(result.report_dir / 'gate.md'))})", highlight=False, soft_wrap=True)
    sys.exit(result.exit_code)


if __name__ == "__main__":
    main()
