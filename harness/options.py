"""Run settings, resolved once from the command line and checked before anything is created."""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from harness import userinput
from harness.cluster.providers import (
    DEFAULT_LAB_BACKEND,
    DEFAULT_VAGRANT_PROVIDER,
    PROVIDERS,
    VAGRANT_PROVIDER_NAME,
    resolve_lab_backend,
)
from harness.errors import HarnessError, OptionError
from harness.plan.versions import Ref

KEEP = ("never", "on-failure", "always")
ARCHIVE = ("on-failure", "always", "never")  # harness.report.archive: one tar.gz per scenario
_VAGRANT_OPTION_KEY = re.compile(r"^(ssh\.)?[a-z_][a-z0-9_]*$")


@dataclass(frozen=True)
class Options:
    kubespray: Path | None = None
    from_ref: str | None = None
    to_ref: str | None = None
    provider: str = "lab"
    inventory: Path | None = None
    keep: str = "never"
    artifacts: Path = Path("artifacts")
    scenario_files: tuple[Path, ...] = ()
    box: str | None = None
    worker: str = "main"
    vagrant_provider: str = DEFAULT_VAGRANT_PROVIDER
    # Provider config setters (`driver: qemu`) and `ssh.NAME` keys for config.ssh, values as YAML read them.
    vagrant_options: Mapping[str, Any] = field(default_factory=dict)
    archive: str = "on-failure"
    lab_backend: str = DEFAULT_LAB_BACKEND

    @classmethod
    def resolve(
        cls,
        *,
        kubespray: str | None,
        from_ref: str | None,
        to_ref: str | None,
        provider: str,
        inventory: str | None,
        keep: str,
        artifacts: str,
        scenario_files: list[str] | None,
        box: str | None = None,
        vagrant_provider: str | None = None,
        vagrant_options: Sequence[str] | None = None,
        archive: str = "on-failure",
        lab_backend: str | None = None,
    ) -> Options:
        """Check every value and say which option was wrong; create nothing."""
        if provider not in PROVIDERS:
            raise OptionError(f"--provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
        if keep not in KEEP:
            raise OptionError(f"--keep {keep!r}: choose one of {', '.join(KEEP)}")
        if archive not in ARCHIVE:
            raise OptionError(f"--archive {archive!r}: choose one of {', '.join(ARCHIVE)}")
        backend = resolve_lab_backend(lab_backend)
        ks = check_kubespray_path(kubespray) if kubespray else None
        for flag, value in (("--from", from_ref), ("--to", to_ref)):
            if value:
                try:
                    Ref.parse(value)
                except HarnessError as e:
                    raise OptionError(f"{flag}: {e}") from None
        inv = Path(inventory).expanduser().resolve() if inventory else None
        if provider == "static" and inv is None:
            raise OptionError("--provider static needs --inventory FILE (an Ansible inventory of existing hosts)")
        if inventory is not None:
            from harness.installer.inventory import check_inventory_file

            try:
                check_inventory_file(inventory)
            except HarnessError as e:
                raise OptionError(f"--inventory {e}") from None
        for f in scenario_files or ():
            try:
                userinput.stat_path(f)  # the loader's own words: a loop of links is not "no such file"
            except HarnessError as e:
                raise OptionError(f"--scenarios {e}") from None
        files = tuple(Path(f) for f in scenario_files or ())
        if provider == "vagrant" and not box:
            raise OptionError("--provider vagrant needs --box NAME (a box your Vagrant provider can boot)")
        if vagrant_provider:
            vp, where = vagrant_provider, "--vagrant-provider"
        else:
            vp, where = os.environ.get("VAGRANT_DEFAULT_PROVIDER") or DEFAULT_VAGRANT_PROVIDER, "VAGRANT_DEFAULT_PROVIDER"
        if not VAGRANT_PROVIDER_NAME.match(vp):
            raise OptionError(f"{where} {vp!r}: not a Vagrant provider name (libvirt, virtualbox, ...)")
        return cls(
            kubespray=ks,
            from_ref=from_ref,
            to_ref=to_ref,
            provider=provider,
            inventory=inv,
            keep=keep,
            artifacts=Path(artifacts).resolve(),
            scenario_files=files,
            box=box,
            worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
            vagrant_provider=vp,
            vagrant_options=parse_vagrant_options(vagrant_options or ()),
            archive=archive,
            lab_backend=backend,
        )


def check_kubespray_path(kubespray: str) -> Path:
    """`--kubespray PATH` is a Kubespray repository's own top level (a work tree with `.git`, or a bare
    repository), and a work tree holds Kubespray's playbooks. A folder inside another repository would
    otherwise be taken for it: git finds the enclosing repository and its tags are read instead."""
    from harness.installer.kubespray import KUBESPRAY_PLAYBOOKS

    try:
        st = userinput.stat_path(os.path.expanduser(kubespray))
    except HarnessError as e:
        raise OptionError(f"--kubespray {e}") from None
    ks = Path(kubespray).expanduser().resolve()
    if not stat.S_ISDIR(st.st_mode):
        raise OptionError(f"--kubespray {kubespray}: not a folder; give a Kubespray checkout or bare repository")
    bare = (ks / "HEAD").is_file() and (ks / "objects").is_dir()
    if not bare and not (ks / ".git").exists():
        raise OptionError(f"--kubespray {kubespray}: not the top of a git checkout (no .git here); give the"
                          " Kubespray checkout's own folder")
    if not bare and not any((ks / p).is_file() for p in KUBESPRAY_PLAYBOOKS):
        raise OptionError(f"--kubespray {kubespray}: not a Kubespray checkout (no {' or '.join(KUBESPRAY_PLAYBOOKS)})")
    return ks


def parse_vagrant_options(items: Sequence[str]) -> dict[str, Any]:
    """`--vagrant-option KEY=VALUE` (repeatable): VALUE read as a YAML scalar (`2`, `true`, `qemu`);
    a later KEY wins. `ssh.NAME=VALUE` keys set config.ssh instead of the provider's config."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _VAGRANT_OPTION_KEY.match(key):
            raise OptionError(
                f"--vagrant-option {item!r}: expected KEY=VALUE, KEY a provider option such as driver"
                " (driver=qemu) or ssh.NAME (ssh.username=vagrant)"
            )
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as e:
            raise OptionError(f"--vagrant-option {item!r}: VALUE is not a YAML scalar: {e}") from None
        if isinstance(value, (dict, list)):
            raise OptionError(f"--vagrant-option {item!r}: VALUE must be a single value, not a YAML {type(value).__name__}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            # A YAML date or timestamp: the Vagrantfile reads JSON, which has none; quote it to mean the text.
            raise OptionError(f"--vagrant-option {item!r}: VALUE reads as a YAML {type(value).__name__}; quote it")
        out[key] = value
    return out
