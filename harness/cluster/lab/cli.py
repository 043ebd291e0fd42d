"""`harness lab ...`: prepare the host, build the box and drive labs by hand.

The only module of the lab that prints or exits. Labs brought up here are kept (`keep=True`) until
`lab down`; pytest sessions own theirs.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from harness.errors import HarnessError

F = TypeVar("F", bound=Callable[..., Any])


def _errors(fn: F) -> F:
    """HarnessError -> its message on stderr and its exit code."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from harness.interrupt import Terminated

        try:
            return fn(*args, **kwargs)
        except HarnessError as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(e.exit_code)
        except Terminated as e:  # cleanup already ran on the way up
            click.echo(f"error: {e}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _provider(name: str | None, backend: str | None = None) -> Any:
    """The lab provider of `backend` (`--backend`, else $HARNESS_LAB_BACKEND, else lxc)."""
    from harness.cluster.providers import resolve_lab_backend  # lazily: `--help` stays fast

    if resolve_lab_backend(backend) == "lxc":
        from harness.cluster.lab.lxc import LxcProvider

        return LxcProvider(name, keep=True)
    from harness.cluster.lab.provider import LabProvider

    return LabProvider(name, keep=True)


def _running(name: str | None) -> Any:
    """The running lab of that name, whichever backend made it."""
    lab = _provider(name, "lxc").find() or _provider(name, "qemu").find()
    if lab is None:
        raise HarnessError(f"no lab named {name or _provider(None).lab_name!r} is up; run `harness lab up` first")
    return lab


name_option = click.option("--name", default=None, help="Lab name (default: lab, or lab-gwN under xdist).")


@click.group("lab")
def lab() -> None:
    """The embedded lab, in a private network namespace: nodes as LXC system containers (lxc, the
    default) or QEMU VMs (qemu) from an offline Debian box."""


@lab.command()
@click.option("--check", is_flag=True, help="Only check; install nothing.")
@_errors
def setup(check: bool) -> None:
    """Install the lab's Debian packages and prepare libvirt's directories (idempotent)."""
    from harness.cluster.lab import setup as lab_setup

    installed = lab_setup.setup(install=not check)
    click.echo(f"installed: {' '.join(installed)}" if installed else "lab prerequisites present")


@lab.command()
@_errors
def box() -> None:
    """Build (or find cached) the offline Debian bookworm box and the accelerator verdict."""
    from harness.cluster.lab import accel
    from harness.cluster.lab.box import ensure_box
    from harness.cluster.lab.setup import check_prerequisites

    check_prerequisites()
    start = time.monotonic()
    b = ensure_box()
    click.echo(f"box {b.name} ready in {time.monotonic() - start:.1f} s (kernel {b.kernel})")
    click.echo(f"accelerator: {accel.detect(b.kernel)}")


@lab.command()
@click.option("--nodes", type=click.IntRange(1, 9), default=1, show_default=True)
@name_option
@click.option("--memory", type=click.IntRange(256), default=1024, show_default=True, help="MiB per node.")
@click.option("--cpus", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--backend", type=click.Choice(["lxc", "qemu"]), default=None,
              help="Nodes as system containers (lxc) or VMs (qemu); default $HARNESS_LAB_BACKEND, else lxc.")
@_errors
def up(nodes: int, name: str | None, memory: int, cpus: int, backend: str | None) -> None:
    """Bring a lab up (node1: control-plane+etcd+worker, others etcd+worker)."""
    from harness.cluster.lab.provider import default_spec

    provider = _provider(name, backend)
    start = time.monotonic()
    cluster = provider.up(default_spec(provider.lab_name, nodes, memory=memory, cpus=cpus))
    click.echo(f"lab {cluster.prefix} up in {time.monotonic() - start:.1f} s")
    for n in cluster.nodes:
        click.echo(f"  {n.name:8} {n.address:16} {','.join(n.roles)}")
    click.echo(f"reach it: {cluster.describe_access()}")


@lab.command()
@click.option("--json", "as_json", is_flag=True)
@_errors
def status(as_json: bool) -> None:
    """List labs on this machine and whether their daemons and domains run."""
    from harness.cluster.lab.provider import list_labs
    from harness.interrupt import orphaned_runs

    labs = list_labs()
    orphans = orphaned_runs()
    if as_json:
        click.echo(json.dumps(labs, indent=2))
        return
    if not labs:
        click.echo("no labs")
    for lab_ in labs:
        state = "running" if lab_["running"] else "stopped"
        if lab_["stale"]:
            ready = f" (stale, {lab_['stale']}: `harness lab down --stale` removes it, as does the next run's `up`)"
        else:
            ready = "" if lab_["ready"] else " (being made)"
        if lab_["backend"] == "lxc":
            click.echo(f"{lab_['prefix']}: {'running' if lab_['ready'] else 'stopped'}{ready}; lxc containers")
        else:
            click.echo(f"{lab_['prefix']}: {state}{ready}; qemu domains: {' '.join(lab_['domains']) or '-'}")
        for n in lab_["nodes"]:
            click.echo(f"  {n['name']:8} {n['address']:16} {','.join(n['roles'])}")
    if orphans:
        click.echo(f"{len(orphans)} playbook run(s) of a killed harness still running"
                   f" ({sum(len(p) for p in orphans.values())} process(es)): `harness lab down --stale` stops them")


@lab.command(context_settings={"ignore_unknown_options": True})
@click.argument("node")
@click.argument("command", nargs=-1, type=click.UNPROCESSED)
@name_option
@_errors
def ssh(node: str, command: tuple[str, ...], name: str | None) -> None:
    """Run COMMAND on NODE (`lab ssh node1 -- sudo systemctl status`), or open a shell."""
    import os

    cluster = _running(name)
    cluster.node(node)
    argv = cluster.ssh_argv(node, " ".join(command) if command else None)  # joined as ssh itself does
    os.execvp(argv[0], argv)  # hand the terminal to ssh; its exit code is ours


@lab.command()
@name_option
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write the inventory here instead of stdout.")
@_errors
def inventory(name: str | None, output: str | None) -> None:
    """An Ansible inventory of a running lab in Kubespray's groups (for `harness verify`, ansible-playbook)."""
    import yaml

    text = yaml.safe_dump(_running(name).inventory(), sort_keys=False)
    if output is None:
        click.echo(text, nl=False)
    else:
        with open(output, "w") as f:
            f.write(text)
        click.echo(f"wrote {output}", err=True)


@lab.command()
@click.argument("snapshot_name")
@name_option
@_errors
def snapshot(snapshot_name: str, name: str | None) -> None:
    """Save a snapshot of every node."""
    start = time.monotonic()
    _running(name).snapshot(snapshot_name)
    click.echo(f"snapshot {snapshot_name} saved in {time.monotonic() - start:.1f} s")


@lab.command()
@click.argument("snapshot_name")
@name_option
@_errors
def restore(snapshot_name: str, name: str | None) -> None:
    """Restore every node to a snapshot."""
    start = time.monotonic()
    _running(name).restore(snapshot_name)
    click.echo(f"restored {snapshot_name} in {time.monotonic() - start:.1f} s")


@lab.command()
@name_option
@click.option("--stale", is_flag=True, help="Instead: every lab a killed run left (its process is gone, or its"
              " `up` never finished), and the playbooks such runs left running.")
@click.option("--all", "everything", is_flag=True, help="Instead: every lab on this machine, in use or not.")
@_errors
def down(name: str | None, stale: bool, everything: bool) -> None:
    """Remove the lab: domains, volumes, network, daemons, namespace and files."""
    start = time.monotonic()
    if stale or everything:
        if name is not None or (stale and everything):
            raise click.UsageError("--stale and --all name their own labs: pass one of them, without --name")
        from harness.cluster.lab.provider import sweep

        removed = sweep(stale_only=stale)
        for what, why in removed:
            click.echo(f"removed {what}: {why}")
        click.echo(f"swept in {time.monotonic() - start:.1f} s" if removed else "nothing to remove")
        return
    provider = _provider(name)
    existed = provider.down(name)
    click.echo(
        f"lab {provider.lab_name} removed in {time.monotonic() - start:.1f} s" if existed else "nothing to remove"
    )


if __name__ == "__main__":
    lab()
