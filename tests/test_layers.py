"""The imports of harness/ point one way: the layer order the README's Layout section states, read
from the README itself so the two cannot drift. Every import counts: module-level, function-local and
under TYPE_CHECKING (a type-only import is still a dependency a reader has to climb to)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "harness"


def _layers() -> list[set[str]]:
    """The README's block, lowest layer first: each a set of dotted names under `harness`."""
    text = (REPO / "README.md").read_text()
    marker = text.index("tests/test_layers.py reads this block")
    block = re.search(r"```text\n(.*?)```", text[marker:], re.DOTALL)
    assert block, "README: no layer block after the marker"
    layers = []
    for line in block.group(1).splitlines():
        names = re.split(r"\s{2,}", line.strip())[0]
        layers.append({"harness." + n.strip() for n in names.split(",") if n.strip()})
    return list(reversed(layers))


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, source: str | None = None) -> list[tuple[int, str, str]]:
    """(line, module imported from, name) for every harness import in a file, at any depth."""
    mod = _module(path)
    package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            out += [(node.lineno, target, a.name) for a in node.names if target.startswith("harness")]
        elif isinstance(node, ast.Import):
            out += [(node.lineno, a.name, "") for a in node.names if a.name.startswith("harness")]
    return out


def _layer_of(module: str, layers: list[set[str]]) -> int | None:
    """The layer of the longest name that is the module or a package above it."""
    best: tuple[int, int] | None = None
    for i, names in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and (best is None or len(name) > best[1]):
                best = (i, len(name))
    return best[0] if best else None


def test_the_readme_states_every_package_and_top_level_module() -> None:
    layers = _layers()
    assert len(layers) >= 10
    top = {f"harness.{p.stem}" for p in HARNESS.glob("*.py") if p.stem != "__init__"}
    top |= {f"harness.{p.name}" for p in HARNESS.iterdir() if (p / "__init__.py").exists()}
    stated = set().union(*layers)
    assert top - stated == set(), "modules the README's layer block does not place"
    assert stated - top == set(), "names in the README's layer block that are no module"


def _climbing(files: list[tuple[Path, str | None]]) -> list[str]:
    layers = _layers()
    out = []
    for path, source in files:
        src = _module(path)
        if src == "harness":
            continue  # the package's __init__ imports nothing of the harness
        mine = _layer_of(src, layers)
        assert mine is not None, f"{src}: no layer"
        for line, target, name in _imports(path, source):
            full = f"{target}.{name}" if name and name != "*" else target
            theirs = _layer_of(full, layers)
            if theirs is not None and theirs > mine:
                out.append(f"{path.relative_to(REPO)}:{line}: {src} imports {full}")
    return out


def test_no_module_imports_a_layer_above_its_own() -> None:
    climbing = _climbing([(p, None) for p in sorted(HARNESS.rglob("*.py"))])
    assert not climbing, "imports that climb:\n" + "\n".join(climbing)


def test_no_module_imports_another_modules_private_names() -> None:
    private = []
    for path in sorted(HARNESS.rglob("*.py")):
        for line, target, name in _imports(path):
            if name.startswith("_") and not name.startswith("__"):
                private.append(f"{path.relative_to(REPO)}:{line}: {target}.{name}")
            if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
                private.append(f"{path.relative_to(REPO)}:{line}: {target}")
    assert not private, "private names imported:\n" + "\n".join(private)


@pytest.mark.parametrize(("source", "climbs"), [
    ("from harness.pipeline import Session\n", True),
    ("def f():\n    from harness.report.run_report import build\n", True),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from harness.checks.suite import Facts\n", True),
    ("from ..checks import suite\n", True),
    ("from harness.probes.facts import HostFacts\n", False),
    ("from harness import components\n", False),
    ("from . import facts\n", False),
])
def test_the_walk_sees_every_kind_of_import(source: str, climbs: bool) -> None:
    """A module of probes/ importing upward is found wherever the import sits."""
    found = _climbing([(HARNESS / "probes" / "example.py", source)])
    assert bool(found) == climbs, found
