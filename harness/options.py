"""Run settings, resolved once from the command line and checked before anything is created."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError
from harness.plan.versions import Ref

PROVIDERS = ("lab", "vagrant", "static")
KEEP = ("never", "on-failure", "always")


class OptionError(HarnessError):
    exit_code = 2


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
    ) -> Options:
        """Check every value and say which option was wrong; create nothing."""
        if provider not in PROVIDERS:
            raise OptionError(f"--provider {provider!r}: choose one of {', '.join(PROVIDERS)}")
        if keep not in KEEP:
            raise OptionError(f"--keep {keep!r}: choose one of {', '.join(KEEP)}")
        ks = None
        if kubespray:
            ks = Path(kubespray).expanduser().resolve()
            if not (ks / ".git").exists() and not (ks / "HEAD").exists():
                raise OptionError(f"--kubespray {kubespray}: not a git checkout of Kubespray (no .git)")
            if not (ks / "cluster.yml").exists() and not (ks / "HEAD").exists():
                raise OptionError(f"--kubespray {kubespray}: no cluster.yml; is this a Kubespray checkout?")
        for flag, value in (("--from", from_ref), ("--to", to_ref)):
            if value:
                try:
                    Ref.parse(value)
                except HarnessError as e:
                    raise OptionError(f"{flag}: {e}") from None
        inv = Path(inventory).expanduser().resolve() if inventory else None
        if provider == "static" and inv is None:
            raise OptionError("--provider static needs --inventory FILE (an Ansible inventory of existing hosts)")
        if inv is not None and not inv.is_file():
            raise OptionError(f"--inventory {inventory}: no such file")
        files = tuple(Path(f) for f in scenario_files or ())
        for f in files:
            if not f.exists():
                raise OptionError(f"--scenarios {f}: no such file or folder")
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
        )
