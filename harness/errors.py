"""One small exception hierarchy; every message says what, where and how to fix it."""

from __future__ import annotations


class HarnessError(Exception):
    """Base of every error the harness raises on purpose. Exit code 1 unless overridden."""

    exit_code = 1


class ScenarioError(HarnessError):
    """A scenario file or catalogue is invalid (bad input: exit code 2)."""

    exit_code = 2

    def __init__(self, file: str, scenario: str | None, field: str | None, message: str) -> None:
        self.file = file
        self.scenario = scenario
        self.field = field
        self.message = message
        where = file
        if scenario:
            where += f": scenario {scenario!r}"
        if field:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


class PlanError(HarnessError):
    """An upgrade the rules refuse: downgrade, skipped minor, bad ref or tag (exit code 2)."""

    exit_code = 2


class OptionError(HarnessError):
    """A command-line option or its environment variable with a value the harness refuses (exit code 2)."""

    exit_code = 2


class PrerequisiteError(HarnessError):
    """Something the host must provide is missing; the message says how to install it."""

    exit_code = 3


class ClusterError(HarnessError):
    """A cluster provider failed to bring up, reach, snapshot or destroy nodes."""


class InstallerError(HarnessError):
    """An installer (Kubespray checkout or the lab installer) cannot do what was asked."""


class UpgradeRunError(HarnessError):
    """A playbook run failed; the message carries the per-host summary."""
