"""Read scenario files into `Scenario` objects; any problem becomes a ScenarioError that names
the file, the scenario id and the field, so a bad catalogue fails before anything is created.

A file that cannot be read as YAML text (binary, not UTF-8, a folder, a device or FIFO, too large,
an alias bomb, unreadable, empty) is one line naming the file: `harness.userinput` reads it. A scenario that does not validate lists every error, unknown keys first
(a typo'd key is usually the mistake; the "required" error after it is only its consequence).
"""

from __future__ import annotations

import contextlib
import gc
import stat
import types
import typing
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from harness import resources, userinput
from harness.errors import ScenarioError
from harness.plan.tags import ALIASES
from harness.scenario.model import FieldProblems, Scenario
from harness.userinput import did_you_mean as _did_you_mean
from harness.userinput import one_line_yaml_error

__all__ = ["Notice", "default_catalogue_dir", "load_catalogue", "load_file", "one_line_yaml_error", "revalidated"]

# The YAML loader (libyaml's when PyYAML has it); bench/catalogue.py swaps it to compare.
_Loader: type[yaml.SafeLoader] = userinput.Loader

# Told about what was read differently from how it was written (a legacy tag name), one line each.
Notice = Callable[[str], None]

# Parts a catalogue shares through YAML anchors (`topology: *topology`, `baseline: *baseline`) arrive
# as one Python object in every scenario that names them: validated once, then reused as the model.
_SHAREABLE = ("topology", "baseline", "target")


def default_catalogue_dir() -> Path:
    """The repository's `scenarios/` folder (an installed harness carries a copy: harness.resources)."""
    return resources.scenarios_dir()


def _field_path(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _documents(path: str | Path) -> list[tuple[str, Any]]:
    """A file holds one scenario (a mapping) or several under `scenarios:`. Returns (where, data)."""
    data = userinput.read_yaml(path, what="a scenario file", max_bytes=userinput.SCENARIO_FILE_BYTES, loader=_Loader)
    path = userinput.shown(path)
    if data is None:
        raise ScenarioError(str(path), None, None, "empty: no scenario in it (expected a scenario or a 'scenarios:' list)")
    if isinstance(data, dict) and "scenarios" in data:
        # `x-*` keys hold YAML anchors shared by the scenarios (as in Compose files).
        extra = sorted(str(k) for k in data if k != "scenarios" and not str(k).startswith("x-"))
        if extra:
            raise ScenarioError(
                str(path), None, extra[0],
                "unknown top-level key (only 'scenarios' and 'x-*' anchors are allowed)" + _did_you_mean(extra[0], ["scenarios"]),
            )
        items = data["scenarios"]
        if not isinstance(items, list):
            raise ScenarioError(str(path), None, "scenarios", "must be a list of scenarios")
        if not items:
            raise ScenarioError(str(path), None, "scenarios", "is empty: no scenario in the file")
        return [(f"scenarios[{i}]", item) for i, item in enumerate(items)]
    if isinstance(data, dict):
        # `scenarioss:` holding a list is a misspelt catalogue, not a scenario missing every field.
        lists = [str(k) for k, v in data.items() if isinstance(v, list) and k not in Scenario.model_fields]
        for key in lists:
            hint = _did_you_mean(key, ["scenarios"])
            if hint:
                raise ScenarioError(str(path), None, key, "unknown top-level key" + hint)
        return [("", data)]
    raise ScenarioError(
        str(path), None, None, f"expected a scenario mapping or a 'scenarios:' list, got {userinput.yaml_kind(data)}"
    )


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The model whose fields apply at `loc` (topology.nodes[0] -> NodeSpec), for "did you mean"."""
    model: type[BaseModel] = Scenario
    for part in loc:
        if isinstance(part, int):
            continue  # a list index: the element type was taken with its field
        field = model.model_fields.get(str(part))
        if field is None:
            return None
        inner = _model_in(field.annotation)
        if inner is None:
            return None
        model = inner
    return model


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The BaseModel inside `X`, `X | None`, `tuple[X, ...]` or `list[X]`, if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) in (typing.Union, tuple, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _errors(e: ValidationError) -> list[tuple[str | None, str]]:
    """Every error as (field, message), unknown keys first."""
    unknown: list[tuple[str | None, str]] = []
    rest: list[tuple[str | None, str]] = []
    errors = e.errors()
    locs = [tuple(err["loc"]) for err in errors]
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(other[: len(loc)] == loc and len(other) > len(loc) for other in locs):
            continue  # `nodes` is "too short" only because its one node failed: that error says why
        field = _field_path(loc) or None
        kind = err["type"]
        problems = err.get("ctx", {}).get("error")
        if isinstance(problems, FieldProblems):
            # Raised by our validators: each problem carries its own field below `loc`.
            for sub, msg in problems.problems:
                rest.append((_field_path([*loc, sub]) if sub else field, msg))
            continue
        if kind == "extra_forbidden":
            model = _model_at(loc[:-1])
            choices = model.model_fields if model is not None else {}
            unknown.append((field, "unknown field" + _did_you_mean(str(loc[-1]), choices)))
            continue
        rest.append((field, userinput.plain_validation_message(err)))
    return unknown + rest


def _scenario_error(where: str, label: str | None, e: ValidationError, renamed: dict[str, str] | None = None) -> ScenarioError:
    errors = _errors(e)
    if renamed:
        # A refusal about a tag names the word the file wrote, not only the name it was read as.
        for i, (f, m) in enumerate(errors):
            if f == "tags":
                for new, old in renamed.items():
                    m = m.replace(repr(new), f"{new!r} (written {old!r})", 1)
                errors[i] = (f, m)
    field, msg = errors[0]
    for f, m in errors[1:]:
        msg += f"\n  and {f'field {f!r}: ' if f else ''}{m}"
    return ScenarioError(where, label, field, msg)


def revalidated(scenario: Scenario, origin: str) -> Scenario:
    """The load-time rules again, over a scenario changed after loading (`model_copy` validates
    nothing: `--from/--to` could otherwise plant a downgrade or a skipped minor). `origin` names what
    changed it (the options) and takes the file's place in the error."""
    try:
        return Scenario.model_validate(scenario.model_dump())
    except ValidationError as e:
        raise _scenario_error(origin, scenario.id, e) from None


def _legacy_tags(raw: dict[Any, Any]) -> dict[str, str]:
    """Tags written under an older name (`master`): today's name -> the word in the file."""
    tags = raw.get("tags")
    if isinstance(tags, str):
        tags = tags.split(",")
    if not isinstance(tags, list):
        return {}
    return {ALIASES[t.strip()]: t.strip() for t in tags if isinstance(t, str) and t.strip() in ALIASES}


def load_file(path: str | Path, notice: Notice | None = None) -> list[Scenario]:
    """The scenarios of one file. `notice` hears of each value read differently from how the file
    wrote it (a tag under its old name), so the user learns what the harness will run."""
    p = userinput.shown(path)
    out: list[Scenario] = []
    # id() of an anchored mapping -> its validated model; the parsed document keeps every mapping
    # alive while this runs, so an id cannot be reused by another object meanwhile.
    validated: dict[int, BaseModel] = {}
    for where, raw in _documents(path):
        sid = raw.get("id") if isinstance(raw, dict) else None
        label = str(sid) if isinstance(sid, (str, int)) and sid else (where or None)
        if not isinstance(raw, dict):
            raise ScenarioError(p, label, None, f"a scenario must be a mapping, not {userinput.yaml_kind(raw)}")
        renamed = _legacy_tags(raw)
        data = raw
        shared = [k for k in _SHAREABLE if id(raw.get(k)) in validated]
        if shared:
            # pydantic takes a model instance for a model field as it is (revalidate_instances='never').
            data = {**raw, **{k: validated[id(raw[k])] for k in shared}}
        try:
            sc = Scenario.model_validate(data)
            out.append(sc)
        except ValidationError as e:
            raise _scenario_error(p, label, e, renamed) from None
        if notice is not None:
            for new, old in renamed.items():
                notice(f"{p}: scenario {sc.id!r}: field 'tags': {old!r} is read as {new!r}, Kubespray's name for it today")
        for k in _SHAREABLE:
            if isinstance(raw.get(k), dict):
                validated[id(raw[k])] = getattr(sc, k)
    return out


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """PyYAML makes several tracked objects per scalar (nodes, marks), and the cyclic GC rescans the
    growing document again and again: half the CPU of loading 5,000 scenarios (bench/catalogue.py).
    Nothing made here needs collecting mid-load; collection resumes as soon as it is done."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def load_catalogue(paths: Iterable[str | Path] | None = None, notice: Notice | None = None) -> list[Scenario]:
    """Load files (or every `*.yaml` under a folder); refuse duplicate ids across the catalogue."""
    with _gc_paused():
        return _load_catalogue(paths, notice)


def _load_catalogue(paths: Iterable[str | Path] | None, notice: Notice | None) -> list[Scenario]:
    files: list[Path | str] = []
    for entry in paths if paths is not None else [default_catalogue_dir()]:
        st = userinput.stat_path(entry)  # '' refused by name, not read as the current folder
        p = Path(entry)
        if stat.S_ISDIR(st.st_mode):
            try:
                found = sorted([*p.glob("*.yaml"), *p.glob("*.yml")])
            except OSError as e:
                raise ScenarioError(str(p), None, None, f"cannot list the folder: {e.strerror or e}") from None
            if not found:
                raise ScenarioError(str(p), None, None, "a folder with no scenario file (*.yaml, *.yml) in it")
            files.extend(found)
        else:
            files.append(entry)
    seen: dict[str, Path | str] = {}
    out: list[Scenario] = []
    for f in files:
        for sc in load_file(f, notice):
            if sc.id in seen:
                raise ScenarioError(str(f), sc.id, "id", f"duplicate id (also defined in {seen[sc.id]})")
            seen[sc.id] = f
            out.append(sc)
    return out
