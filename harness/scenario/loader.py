"""Read scenario files into `Scenario` objects; any problem becomes a ScenarioError that names
the file, the scenario id and the field, so a bad catalogue fails before anything is created."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from harness.errors import ScenarioError
from harness.scenario.model import Scenario


def default_catalogue_dir() -> Path:
    """The repository's `scenarios/` folder (the catalogue ships beside the package)."""
    return Path(__file__).resolve().parents[2] / "scenarios"


def _field_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _documents(path: Path) -> list[tuple[str, Any]]:
    """A file holds one scenario (a mapping) or several under `scenarios:`. Returns (where, data)."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as e:
        raise ScenarioError(str(path), None, None, f"cannot read: {e.strerror}") from None
    except yaml.YAMLError as e:
        raise ScenarioError(str(path), None, None, f"not valid YAML: {e}") from None
    if isinstance(data, dict) and "scenarios" in data:
        # `x-*` keys hold YAML anchors shared by the scenarios (as in Compose files).
        extra = sorted(k for k in data if k != "scenarios" and not str(k).startswith("x-"))
        if extra:
            raise ScenarioError(
                str(path), None, extra[0], "unknown top-level key (only 'scenarios' and 'x-*' anchors are allowed)"
            )
        items = data["scenarios"]
        if not isinstance(items, list):
            raise ScenarioError(str(path), None, "scenarios", "must be a list of scenarios")
        return [(f"scenarios[{i}]", item) for i, item in enumerate(items)]
    if isinstance(data, dict):
        return [("", data)]
    raise ScenarioError(str(path), None, None, "expected a scenario mapping or a 'scenarios:' list")


def load_file(path: str | Path) -> list[Scenario]:
    p = Path(path)
    out: list[Scenario] = []
    for where, raw in _documents(p):
        sid = raw.get("id") if isinstance(raw, dict) else None
        label = str(sid) if sid else (where or None)
        if not isinstance(raw, dict):
            raise ScenarioError(str(p), label, None, "a scenario must be a mapping")
        try:
            out.append(Scenario.model_validate(raw))
        except ValidationError as e:
            err = e.errors()[0]
            field = _field_path(err["loc"]) or None
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error":
                msg = f"got {err['input']!r}; {msg.lower()}"
            elif err["type"] == "missing":
                msg = "is required"
            elif err["type"] == "extra_forbidden":
                msg = "unknown field"
            more = len(e.errors()) - 1
            if more:
                msg += f" (and {more} more error{'s' if more > 1 else ''})"
            raise ScenarioError(str(p), label, field, msg) from None
    return out


def load_catalogue(paths: Iterable[str | Path] | None = None) -> list[Scenario]:
    """Load files (or every `*.yaml` under a folder); refuse duplicate ids across the catalogue."""
    files: list[Path] = []
    for entry in paths if paths is not None else [default_catalogue_dir()]:
        p = Path(entry)
        if p.is_dir():
            files.extend(sorted([*p.glob("*.yaml"), *p.glob("*.yml")]))
        elif p.exists():
            files.append(p)
        else:
            raise ScenarioError(str(p), None, None, "no such file or folder")
    seen: dict[str, Path] = {}
    out: list[Scenario] = []
    for f in files:
        for sc in load_file(f):
            if sc.id in seen:
                raise ScenarioError(str(f), sc.id, "id", f"duplicate id (also defined in {seen[sc.id]})")
            seen[sc.id] = f
            out.append(sc)
    return out
