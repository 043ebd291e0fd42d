"""The wheel carries the repository's top-level data: playbooks/, scenarios/ and the Vagrantfile.

They stay where people edit them; the build copies them into the package as `harness/_data/`, which
harness/resources.py reads in an installed harness. An editable install reads them in the checkout and
gets no copy. Everything else about the package is in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA = ("playbooks", "scenarios", "Vagrantfile")
DATA_DIR = ("harness", "_data")  # harness/resources.py: DATA_DIR_NAME
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache", "*.retry")


class BuildWithData(build_py):
    def run(self) -> None:
        super().run()
        if self.editable_mode:
            return
        dest = Path(self.build_lib, *DATA_DIR)
        shutil.rmtree(dest, ignore_errors=True)
        for name in DATA:
            src = HERE / name
            if src.is_dir():
                shutil.copytree(src, dest / name, ignore=_SKIP)
            else:
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / name)


setup(cmdclass={"build_py": BuildWithData})
