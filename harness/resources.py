"""Where the harness's data lives: the repository's top-level playbooks/, scenarios/ and Vagrantfile.

They stay at the top of the repository, where people edit them. A wheel carries a copy inside the
package, in `harness/_data/` (setup.py's build step puts it there); a source checkout, or an editable
install of one, has none and reads them where they are. Ansible, pytest and Vagrant read them by path,
so they are real files either way (the harness is not zip-safe).

Low in the import order: imports nothing of the harness.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent
# The folder the wheel's build step fills (setup.py names the same one).
DATA_DIR_NAME = "_data"


def checkout() -> Path | None:
    """The source checkout the harness runs from (its pyproject.toml beside the package), or None for an
    installed wheel."""
    root = _PACKAGE.parent
    return root if (root / "pyproject.toml").is_file() and (root / "playbooks").is_dir() else None


def data_root() -> Path:
    """The folder holding playbooks/, scenarios/ and Vagrantfile: the package's `_data` in a wheel, else
    the checkout. With neither (a wheel built without its build step) it is the `_data` that should be
    there, so whatever reads a file from it names that place; nothing fails at import."""
    installed = _PACKAGE / DATA_DIR_NAME
    if installed.is_dir():
        return installed
    return checkout() or installed


def playbooks_dir() -> Path:
    """The harness's own playbooks and the lab installer (`playbooks/`)."""
    return data_root() / "playbooks"


def scenarios_dir() -> Path:
    """The scenario catalogue and the pytest file that runs it (`scenarios/`)."""
    return data_root() / "scenarios"


def vagrantfile() -> Path:
    """The Vagrantfile the vagrant provider copies into each cluster's folder."""
    return data_root() / "Vagrantfile"
