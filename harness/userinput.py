"""The edge where a user's files and values enter the harness: one reader, one set of typed readers.

Every file a user names (a scenario file, an `--expect` file, an inventory) is read here and only
here: a regular file no larger than a cap (never a device, a FIFO or a folder; `''` refused by name:
it would otherwise be the current folder), UTF-8 text without NUL bytes, and YAML whose aliases may
not expand past a bound (an alias bomb is a few hundred bytes that expand to billions of values in
whatever walks the data next). Every check runs before anything else looks at the content, and each
failure is one `ScenarioError` line naming the file.

The typed readers turn a value from such a file into what the harness uses (a strict boolean, a
count of seconds) and say in plain words what was wrong, as do `plain_validation_message` for
pydantic's own errors.
"""

from __future__ import annotations

import difflib
import math
import os
import stat
from collections.abc import Iterable
from typing import Any

import yaml

from harness.errors import ScenarioError

# A scenario catalogue of 5,000 scenarios written out without anchors is 2.7 MB (bench/catalogue.py).
SCENARIO_FILE_BYTES = 32 * 1024 * 1024
# An expectation file is a screenful; an inventory of a large cluster a few hundred kB.
SMALL_FILE_BYTES = 4 * 1024 * 1024

# Aliases may repeat what the file writes, not multiply it: a catalogue sharing a topology through
# `*topology` expands to about twice what it writes; an alias bomb to millions of times.
ALIAS_EXPANSION_FACTOR = 10
ALIAS_EXPANSION_FLOOR = 100_000
# Deeper nesting than any scenario needs; PyYAML's constructor and pydantic recurse per level.
MAX_DEPTH = 64

_KIND = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)

# libyaml's parser when PyYAML was built with it (a fraction of the pure-Python loader's CPU on a
# large catalogue: bench/catalogue.py); the pure-Python one otherwise, with the same results.
Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def shown(path: str | os.PathLike[str]) -> str:
    """How a path is named in a message: as the user wrote it, `''` for the empty string."""
    text = os.fspath(path)
    return text if text else "''"


def stat_path(path: str | os.PathLike[str]) -> os.stat_result:
    """`os.stat` of a path the user gave, every failure one line naming it. An empty path is refused by
    name: `Path('')` is the current folder, which would then be read as if the user had named it."""
    file = shown(path)
    if not os.fspath(path):
        raise ScenarioError(file, None, None, "an empty path names no file (an unset shell variable?)")
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ScenarioError(file, None, None, "no such file or folder") from None
    except OSError as e:  # a folder on the way that may not be searched, a loop of links (ELOOP)...
        raise ScenarioError(file, None, None, f"cannot read: {e.strerror or e}") from None


def read_text(path: str | os.PathLike[str], *, what: str, max_bytes: int = SMALL_FILE_BYTES) -> str:
    """A user's file as text. The file's type is checked before it is opened: opening a FIFO blocks
    until a writer comes, and reading /dev/zero never ends."""
    file = shown(path)
    st = stat_path(path)
    if stat.S_ISDIR(st.st_mode):
        raise ScenarioError(file, None, None, f"is a folder, not {what}")
    for test, kind in _KIND:
        if test(st.st_mode):
            raise ScenarioError(file, None, None, f"is {kind}, not a regular file: {what} is read from a file")
    if not stat.S_ISREG(st.st_mode):
        raise ScenarioError(file, None, None, f"not a regular file: {what} is read from a file")
    if st.st_size > max_bytes:
        raise ScenarioError(file, None, None, f"is {st.st_size:,} bytes; {what} is at most {max_bytes:,}")
    try:
        # O_NONBLOCK: should the path have become a FIFO since the stat, opening it does not wait.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise ScenarioError(file, None, None, f"cannot read: {e.strerror or e}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ScenarioError(file, None, None, f"not a regular file: {what} is read from a file")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)  # the file may have grown since the stat
    except OSError as e:
        raise ScenarioError(file, None, None, f"cannot read: {e.strerror or e}") from None
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise ScenarioError(file, None, None, f"is over {max_bytes:,} bytes; {what} is at most that")
    nul = data.find(b"\0")
    if nul >= 0:
        raise ScenarioError(file, None, None, f"a binary file (NUL byte at offset {nul}), not YAML")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ScenarioError(
            file, None, None, f"not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); is it a binary file?"
        ) from None


def read_yaml(
    path: str | os.PathLike[str], *, what: str, max_bytes: int = SMALL_FILE_BYTES, loader: type[yaml.SafeLoader] | None = None
) -> Any:
    """A user's YAML file as data (None when it holds no document: the caller says what was missing)."""
    return load_yaml(read_text(path, what=what, max_bytes=max_bytes), shown(path), loader=loader)


def load_yaml(text: str, file: str, *, loader: type[yaml.SafeLoader] | None = None) -> Any:
    """YAML text as data with a safe loader (`loader`: a SafeLoader or CSafeLoader, default `Loader`),
    refusing aliases that expand past a bound, nesting deeper than any input needs and aliases inside
    what they name, all before a value is built."""
    parser = (loader or Loader)(text)
    try:
        node = parser.get_single_node()
        if node is None:
            return None
        _check_shape(node, file)
        return parser.construct_document(node)
    except yaml.YAMLError as e:
        raise ScenarioError(file, None, None, f"not valid YAML: {one_line_yaml_error(e, text)}") from None
    except RecursionError:  # only past MAX_DEPTH's checks, through merge keys
        raise ScenarioError(file, None, None, "not valid YAML here: nested too deeply") from None
    finally:
        parser.dispose()


def _check_shape(root: yaml.Node, file: str) -> None:
    """Count the values the document holds once every alias is expanded, without expanding any:
    each distinct collection is visited once and its expanded size kept (a number, however large).
    Recursive: the depth is checked on the way down, so it stays within MAX_DEPTH frames."""
    size: dict[int, int] = {}
    entered: set[int] = set()
    scalars = [0]  # scalars as written: each distinct collection's own, counted once
    scalar = yaml.ScalarNode
    mapping = yaml.MappingNode

    def walk(node: yaml.Node, depth: int) -> int:
        key = id(node)
        if key in entered:
            raise ScenarioError(file, None, None,
                                f"a YAML alias inside the part it names (line {node.start_mark.line + 1}): refused")
        if depth > MAX_DEPTH:
            raise ScenarioError(file, None, None,
                                f"nested deeper than {MAX_DEPTH} levels (line {node.start_mark.line + 1}): refused")
        entered.add(key)
        total = 1
        own = 0
        children = [n for pair in node.value for n in pair] if node.__class__ is mapping else node.value
        for c in children:
            if c.__class__ is scalar:
                own += 1
            else:
                known = size.get(id(c))
                total += known if known is not None else walk(c, depth + 1)
        scalars[0] += own
        total += own
        entered.discard(key)
        size[key] = total
        return total

    if root.__class__ is scalar:
        return
    expanded = walk(root, 1)
    written = len(size) + scalars[0]
    limit = ALIAS_EXPANSION_FLOOR + ALIAS_EXPANSION_FACTOR * written
    if expanded > limit:
        shown_n = f"{expanded:,}" if expanded < 10**15 else f"about 10^{len(str(expanded)) - 1}"
        raise ScenarioError(
            file, None, None,
            f"YAML aliases expand it to {shown_n} values from {written:,} written (at most {limit:,}):"
            " refused as an alias bomb; an alias may repeat a part, not multiply the document",
        )


def one_line_yaml_error(e: yaml.YAMLError, text: str | None = None) -> str:
    """PyYAML's messages span lines and quote the source; one line with the position is enough.
    With the text, two common slips are named: a tab (YAML indents with spaces only) and a bracket or
    quote never closed (reported where it opened, not where the parser gave up)."""
    if not isinstance(e, yaml.MarkedYAMLError):
        return " ".join(str(e).split())
    problem, context = e.problem_mark, e.context_mark
    if text is not None and problem is not None and 0 <= problem.index < len(text) and text[problem.index] == "\t":
        return (f"line {problem.line + 1}, column {problem.column + 1}: a tab character; YAML indents with"
                " spaces, never tabs")
    opened = _opened_at(text, e) if text is not None else None
    if opened is not None and problem is not None:
        char, at = opened
        close = {"[": "]", "{": "}", '"': '"', "'": "'"}[char]
        return (f"line {at.line + 1}, column {at.column + 1}: this {char!r} is never closed"
                f" (no {close!r} before line {problem.line + 1}, column {problem.column + 1})")
    mark = problem or context
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    what = " ".join(p for p in (e.context, e.problem) if p)
    return f"{where}{what}"


def _opened_at(text: str, e: yaml.MarkedYAMLError) -> tuple[str, yaml.Mark] | None:
    """The quote or bracket an error is about, when it was never closed: libyaml reports where it gave
    up, often the end of the file. A quote's own mark comes with the error; a bracket's is found by
    scanning the tokens (the scanner does not match brackets, the parser does)."""
    context = e.context_mark
    if context is not None and 0 <= context.index < len(text) and text[context.index] in "\"'" \
            and "quoted scalar" in (e.context or ""):
        return text[context.index], context
    if not (e.context or "").startswith("while parsing a flow") or "expected" not in (e.problem or ""):
        return None  # not an unclosed bracket (libyaml's own depth limit says "while increasing flow level")
    opened: list[yaml.Token] = []
    try:
        for token in yaml.scan(text, Loader=Loader):
            if isinstance(token, (yaml.FlowSequenceStartToken, yaml.FlowMappingStartToken)):
                opened.append(token)
            elif isinstance(token, (yaml.FlowSequenceEndToken, yaml.FlowMappingEndToken)) and opened:
                if isinstance(token, yaml.FlowSequenceEndToken) != isinstance(opened[-1], yaml.FlowSequenceStartToken):
                    break  # `[a}`: the innermost bracket is the one left open
                opened.pop()
    except yaml.YAMLError:
        pass  # what was open when the scanner stopped is what counts
    if not opened:
        return None
    mark = opened[-1].start_mark
    return text[mark.index], mark


# -- typed values -------------------------------------------------------------------------------

_YAML_NAMES = {"dict": "mapping", "list": "list", "str": "string", "int": "number", "float": "number",
               "bool": "boolean", "NoneType": "null", "date": "date", "datetime": "timestamp", "bytes": "binary"}


def yaml_kind(value: object) -> str:
    """What a YAML value is, in YAML's words (`a YAML mapping`, `a YAML string`), for messages."""
    return f"a YAML {_YAML_NAMES.get(type(value).__name__, type(value).__name__)}"


class BadValue(ValueError):
    """A value of the wrong kind or out of range; the message says what was expected."""


def strict_bool(value: object) -> bool:
    """true or false as YAML writes them; a quoted "false" is a string, which Python would read as true."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "yes", "no", "on", "off"):
        raise BadValue(f"{value!r} is a string, not true or false: write it without quotes")
    raise BadValue(f"{value!r} is {yaml_kind(value)}; expected true or false")


def seconds(value: object) -> float:
    """A count of seconds: a number, 0 or more, finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"{value!r} is {yaml_kind(value)}; expected a number of seconds")
    if math.isnan(value) or math.isinf(value):
        raise BadValue(f"{value!r} is not a number of seconds")
    if value < 0:
        raise BadValue(f"{value!r} is negative; expected 0 or more seconds")
    return float(value)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


# pydantic's error types in plain words; the rest keep pydantic's own message.
_EXPECTED = {
    "tuple_type": "a list", "list_type": "a list", "set_type": "a list", "frozen_set_type": "a list",
    "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
    "dataclass_type": "a mapping", "string_type": "a string", "int_type": "a whole number",
    "int_parsing": "a whole number", "int_from_float": "a whole number", "float_type": "a number",
    "float_parsing": "a number", "bool_type": "true or false", "bool_parsing": "true or false",
}
_BOUNDS = {"greater_than_equal": ("ge", "at least"), "greater_than": ("gt", "more than"),
           "less_than_equal": ("le", "at most"), "less_than": ("lt", "less than")}


def plain_validation_message(err: Any) -> str:
    """One pydantic error (an `ErrorDetails`) in the harness's words: "expected a list, got a string"
    rather than "Input should be a valid tuple", "a mapping" rather than "instance of Topology"."""
    kind = err["type"]
    ctx = err.get("ctx") or {}
    value = err.get("input")
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}, got {yaml_kind(value)} ({_short(value)})"
    if kind in _BOUNDS:
        key, words = _BOUNDS[kind]
        return f"must be {words} {ctx.get(key)}, got {_short(value)}"
    if kind == "too_short":
        n = ctx.get("min_length", 1)
        return f"needs at least {n} {'entry' if n == 1 else 'entries'}"
    if kind == "too_long":
        return f"has more than {ctx.get('max_length')} entries"
    if kind == "literal_error":
        return f"got {value!r}; expected {ctx.get('expected', '')}".rstrip()
    if kind == "missing":
        return "is required"
    if kind == "recursion_loop":
        return "refers to itself"
    return str(err["msg"]).removeprefix("Value error, ")


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
