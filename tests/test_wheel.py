"""An ordinary (non-editable) install carries the playbooks, scenarios and Vagrantfile and runs elsewhere.

The wheel is built from a copy of the sources (nothing is written into the checkout) without build
isolation (setuptools from the test extras: offline), installed into a fresh venv with no pip of its own,
and given this venv's site-packages for its dependencies only after the install, so pip sees nothing
installed there and the editable install of this checkout never shadows the wheel. About 5-10 s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

import pytest

from harness.scenario import load_catalogue

REPO = Path(__file__).resolve().parents[1]
# What a wheel is built from: the package, its build files and the top-level data setup.py copies in.
SOURCES = ("harness", "playbooks", "scenarios", "Vagrantfile", "pyproject.toml", "setup.py", "MANIFEST.in", "README.md")
_SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")


def _run(cmd: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    done = subprocess.run([str(c) for c in cmd], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{' '.join(map(str, cmd))}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the fresh venv's bin/, the environment to run it in) with the wheel installed."""
    setuptools = tuple(int(x) for x in metadata.version("setuptools").split(".")[:2])
    if setuptools < (77, 0):
        pytest.fail(f"setuptools {metadata.version('setuptools')} in this venv builds no wheel of this project offline:"
                    " `pip install -e '.[test]'` (ci/setup) brings setuptools>=77")
    tmp = tmp_path_factory.mktemp("wheel")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    env["COLUMNS"] = "250"  # rich's table: every id on one line
    src = tmp / "src"
    for name in SOURCES:
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, src / name, ignore=_SKIP)
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
          "-w", tmp / "dist", src], tmp, env)
    (wheel,) = (tmp / "dist").glob("kubespray_upgrade_harness-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp, env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel], tmp, env)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp, env).strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "zz_outer_site.pth").write_text("".join(f"{p}\n" for p in ours))  # the dependencies, after the wheel
    return venv / "bin", env


def test_installed_harness_lists_scenarios_and_plans_from_elsewhere(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    expected = [sc.id for sc in load_catalogue()]
    rows = json.loads(_run([bin_dir / "harness", "matrix", "--format", "json"], tmp_path, env))
    assert [r["id"] for r in rows] == expected
    listed = _run([bin_dir / "harness", "scenarios"], tmp_path, env)
    assert f"{len(expected)} scenario(s)" in listed
    assert all(sid in listed for sid in expected), listed
    # The hop plan of one catalogue scenario, ks-full (a whole release: one hop).
    ks_full = next(r for r in rows if r["id"] == "ks-full")
    plan = _run([bin_dir / "harness", "plan", ks_full["from"], ks_full["to"]], tmp_path, env)
    assert f"{ks_full['from']} -> {ks_full['to']}: 1 hop(s)" in plan, plan


def test_installed_harness_reads_its_own_copy_of_every_data_file(
    installed: tuple[Path, dict[str, str]], tmp_path: Path
) -> None:
    bin_dir, env = installed
    where = json.loads(_run([bin_dir / "python", "-c", (
        "import json, harness, harness.resources as r, harness.installer.base as p, harness.installer.lab as lab,"
        " harness.cluster.vagrant as v, harness.gate as g;"
        "print(json.dumps({'package': harness.__file__, 'root': str(r.data_root()), 'checkout': r.checkout() and str(r.checkout()),"
        " 'playbooks': str(p.PLAYBOOKS_DIR), 'lab': str(lab.LAB_DIR), 'vagrantfile': str(v.vagrantfile_path()),"
        " 'tests': str(g.DEFAULT_TESTS)}))"
    )], tmp_path, env))
    root = Path(where["root"])
    assert where["checkout"] is None
    assert root == Path(where["package"]).parent / "_data" and not root.is_relative_to(REPO)
    assert where["playbooks"] == str(root / "playbooks") and where["lab"] == str(root / "playbooks" / "lab")
    assert (where["vagrantfile"], where["tests"]) == (str(root / "Vagrantfile"), str(root / "scenarios"))
    for name in ("playbooks", "scenarios"):
        ours = {p.relative_to(REPO) for p in (REPO / name).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        theirs = {p.relative_to(root) for p in (root / name).rglob("*") if p.is_file() and "__pycache__" not in p.parts}
        assert theirs == ours
        assert all((root / f).read_bytes() == (REPO / f).read_bytes() for f in ours)
    assert (root / "Vagrantfile").read_bytes() == (REPO / "Vagrantfile").read_bytes()
