"""Hostile and careless input, as a user gives it: one clear line, exit 2 (pytest's usage error, 4,
through pytest), no traceback, no hang and nothing created, in both the `harness ...` and the
`pytest scenarios/ ...` forms.

Every command is a real subprocess with a timeout, so a hang (a FIFO opened, /dev/zero read, an alias
bomb expanded) fails its case instead of blocking the suite. The caches and the state folder point at
the test's own folders, which must stay absent. No case asserts how fast it was.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness import userinput
from harness.errors import ScenarioError
from harness.scenario import load_file
from tests.conftest import GOOD_SCENARIO, REPO

HARNESS = str(Path(sys.executable).parent / "harness")
PYTEST = [sys.executable, "-m", "pytest", "scenarios/", "--collect-only", "-q", "-p", "no:cacheprovider"]
# Long enough for a loaded 2-core machine to start Python; a hang is minutes, not seconds.
HANG = 60

# The classic "billion laughs": nine levels of nine aliases, under 800 bytes, 9^9 strings expanded.
BOMB = "".join(
    f"x-{a}: &{a} [{', '.join([f'*{p}'] * 9) if p else ', '.join(['lol'] * 9)}]\n"
    for p, a in zip(["", *"abcdefgh"], "abcdefghi")
) + """\
scenarios:
  - id: bomb
    description: a scenario carrying an alias bomb in its extra_vars
    installer: kubespray
    topology: {nodes: [{name: node1, roles: [control-plane, etcd, worker]}]}
    baseline: {ref: v2.30.0}
    target: {ref: v2.31.0}
    path: full
    extra_vars: {lol: *i}
"""

EXPECT_OK = "versions: {etcd: 3.5.16}\n"
INVENTORY_OK = "all: {hosts: {node1: {ansible_host: 192.0.2.1}}}\n"


@dataclass
class Case:
    """Files to make in the case's folder, then every form of the command that must refuse them."""

    files: Callable[[Path], None]
    harness: list[list[str]]  # argv after `harness`, `{d}` the case's folder
    pytest: list[list[str]]  # argv after `pytest scenarios/ --collect-only`
    words: list[str]  # in the one line, every form


def _write(**files: str | bytes) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        for name, text in files.items():
            p = d / name.replace("__", ".")
            if isinstance(text, bytes):
                p.write_bytes(text)
            else:
                p.write_text(text)

    return make


def _scenario(old: str, new: str) -> str:
    assert old in GOOD_SCENARIO, old
    return GOOD_SCENARIO.replace(old, new)


def _fifo(d: Path) -> None:
    os.mkfifo(d / "pipe")
    (d / "expect.yaml").write_text(EXPECT_OK)
    (d / "hosts.yaml").write_text(INVENTORY_OK)


def _git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    subprocess.run(["git", "-C", str(repo), *args], capture_output=True, check=True, env=env)


def _work_tree(with_playbooks: bool) -> Callable[[Path], None]:
    """A git work tree with a sub-folder (not Kubespray's top level); Kubespray's playbooks or not."""

    def make(d: Path) -> None:
        repo = d / "repo"
        (repo / "sub").mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "master")
        (repo / "sub" / "README").write_text("x\n")
        if with_playbooks:
            (repo / "cluster.yml").write_text("[]\n")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", "x")

    return make


def _verify(expect: str = "{d}/expect.yaml", inventory: str = "{d}/hosts.yaml") -> list[str]:
    return ["verify", "--inventory", inventory, "--expect", expect]


def _with_inventory(text: str, name: str = "hosts.yaml") -> Callable[[Path], None]:
    return _write(**{name.replace(".", "__"): text, "expect__yaml": EXPECT_OK})


def _with_expect(text: str) -> Callable[[Path], None]:
    return _write(expect__yaml=text, hosts__yaml=INVENTORY_OK)


def _loop(d: Path) -> None:
    (d / "loop").symlink_to("loop")


def _huge(d: Path) -> None:
    with open(d / "huge.yaml", "wb") as f:
        f.truncate(userinput.SCENARIO_FILE_BYTES + 1)  # sparse: nothing written to the disk


FILE = ["scenarios", "--file", "{d}/s.yaml"]
MATRIX = ["matrix", "--file", "{d}/s.yaml"]
SCENARIOS = ["--scenarios", "{d}/s.yaml"]

CASES: dict[str, Case] = {
    "alias-bomb": Case(_write(s__yaml=BOMB), [FILE, MATRIX], [[*SCENARIOS, "--from", "v2.30.0", "--to", "v2.31.0"]],
                       ["s.yaml: YAML aliases expand it to", "refused as an alias bomb"]),
    "alias-in-itself": Case(_write(s__yaml="x-a: &a [1, *a]\nscenarios: [*a]\n"), [FILE], [SCENARIOS],
                            ["a YAML alias inside the part it names"]),
    "dev-zero": Case(_with_expect(EXPECT_OK), [["scenarios", "--file", "/dev/zero"], _verify(expect="/dev/zero")],
                     [["--scenarios", "/dev/zero"]], ["/dev/zero: is a character device, not a regular file"]),
    "fifo": Case(_fifo, [["scenarios", "--file", "{d}/pipe"], _verify(expect="{d}/pipe"), _verify(inventory="{d}/pipe")],
                 [["--scenarios", "{d}/pipe"], ["--provider", "static", "--inventory", "{d}/pipe"]],
                 ["pipe: is a FIFO (named pipe), not a regular file"]),
    "too-large": Case(_huge, [["scenarios", "--file", "{d}/huge.yaml"]], [["--scenarios", "{d}/huge.yaml"]],
                      ["huge.yaml: is 33,554,433 bytes; a scenario file is at most 33,554,432"]),
    "empty-path": Case(_with_expect(EXPECT_OK), [["scenarios", "--file", ""], ["matrix", "--file", ""], _verify(expect="")],
                       [["--scenarios", ""]], ["'': an empty path names no file"]),
    "empty-expect": Case(_with_expect(""), [_verify()], [], ["expect.yaml: empty: nothing to expect"]),
    "comments-only-expect": Case(_with_expect("# pinned later\n"), [_verify()], [], ["empty: nothing to expect"]),
    "string-boolean": Case(_with_expect(EXPECT_OK + 'kube_proxy_remove: "false"\n'), [_verify()], [],
                           ["field 'kube_proxy_remove': 'false' is a string, not true or false"]),
    "negative-budget": Case(_with_expect(EXPECT_OK + "pods_budget: -5\n"), [_verify()], [],
                            ["field 'pods_budget': -5 is negative"]),
    "bad-canary": Case(_with_expect(EXPECT_OK + "canaries: [canary]\n"), [_verify()], [],
                       ["field 'canaries': expected a list of namespace/name"]),
    "kubespray-inside-work-tree": Case(_work_tree(with_playbooks=True),
                                       [["plan", "v2.30.0", "v2.31.0", "--kubespray", "{d}/repo/sub"]],
                                       [["--kubespray", "{d}/repo/sub"]], ["repo/sub", "top"]),
    "not-kubespray": Case(_work_tree(with_playbooks=False), [["plan", "v2.30.0", "v2.31.0", "--kubespray", "{d}/repo"]],
                          [["--kubespray", "{d}/repo"]], ["no cluster.yml or upgrade-cluster.yml"]),
    "inventory-a-list": Case(_with_inventory("- node1\n- node2\n"), [_verify()],
                             [["--provider", "static", "--inventory", "{d}/hosts.yaml"]],
                             ["hosts.yaml: a YAML inventory is a mapping of groups", "not a YAML list"]),
    "inventory-without-hosts": Case(_with_inventory("[etcd]\n", name="hosts.ini"), [_verify(inventory="{d}/hosts.ini")], [],
                                    ["no hosts in inventory"]),  # Ansible's to read (INI): exit 2 all the same
    "expect-key-typo": Case(_with_expect(EXPECT_OK + "kube_proxy_remov: true\n"), [_verify()], [],
                            ["field 'kube_proxy_remov': unknown key; did you mean 'kube_proxy_remove'?"]),
    "tab": Case(_write(s__yaml=GOOD_SCENARIO.replace("  nodes:", "\tnodes:")), [FILE], [SCENARIOS],
                ["line 5, column 1: a tab character; YAML indents with spaces"]),
    "unclosed-bracket": Case(_write(s__yaml=_scenario("roles: [etcd, worker]}", "roles: [etcd, worker}")), [FILE],
                             [SCENARIOS], ["line 6, column 28: this '[' is never closed"]),
    "legacy-tag-refused": Case(_write(s__yaml=_scenario("tags: [etcd]", "tags: [master]")), [FILE], [SCENARIOS],
                               ["field 'tags'", "'control-plane' (written 'master') moves none"]),
    "symlink-loop": Case(_loop, [["scenarios", "--file", "{d}/loop"]], [["--scenarios", "{d}/loop"]],
                         ["loop: cannot read: Too many levels of symbolic links"]),
    "no-such-release": Case(lambda d: None, [["plan", "v2.30.0", "v2.30.99"]], [],
                            ["v2.30.99 is not a Kubespray release the harness knows"]),
    "roles-a-string": Case(_write(s__yaml=_scenario("roles: [etcd, worker]", "roles: etcd")), [FILE], [SCENARIOS],
                           ["field 'topology.nodes[0].roles': expected a list, got a YAML string ('etcd')"]),
    "topology-a-list": Case(_write(s__yaml=_scenario("topology:\n  nodes:\n    - {name: node1, roles: [etcd, worker]}",
                                                     "topology: [node1]")), [FILE], [SCENARIOS],
                            ["field 'topology': expected a mapping, got a YAML list"]),
    "top-level-typo": Case(_write(s__yaml="scenarioss:\n  - id: x\n"), [FILE], [SCENARIOS],
                           ["field 'scenarioss': unknown top-level key; did you mean 'scenarios'?"]),
}


def _env(tmp_path: Path) -> dict[str, str]:
    env = {**os.environ, "HARNESS_CACHE": str(tmp_path / "cache"), "HARNESS_STATE": str(tmp_path / "state")}
    env.pop("HARNESS_KUBESPRAY", None)
    return env


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    try:
        return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                              timeout=HANG, check=False)
    except subprocess.TimeoutExpired:
        pytest.fail(f"hung: {' '.join(argv)} still running after {HANG} s")


def _one_line(r: subprocess.CompletedProcess[str], code: int, words: list[str]) -> str:
    __tracebackhide__ = True
    assert r.returncode == code, (r.returncode, r.stdout[-2000:], r.stderr[-2000:])
    assert "Traceback" not in r.stderr + r.stdout
    for leak in ("Input should be", "instance of", "pydantic"):
        assert leak not in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("name", sorted(CASES))
def test_hostile_input_is_one_line_and_creates_nothing(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    d = tmp_path / "in"
    d.mkdir()
    case.files(d)
    env = _env(tmp_path)
    for args in case.harness:
        line = _one_line(_run([HARNESS, *(a.format(d=d) for a in args)], env), 2, case.words)
        assert line.startswith("error: "), line
    for args in case.pytest:
        argv = [*PYTEST, "--artifacts", str(tmp_path / "artifacts"), *(a.format(d=d) for a in args)]
        line = _one_line(_run(argv, env), pytest.ExitCode.USAGE_ERROR, case.words)
        assert line.startswith("ERROR: "), line
    assert not (tmp_path / "cache").exists() and not (tmp_path / "state").exists()
    assert not (tmp_path / "artifacts").exists()


def test_pytest_and_harness_name_a_symlink_loop_alike(tmp_path: Path) -> None:
    _loop(tmp_path)
    env = _env(tmp_path)
    cli = _one_line(_run([HARNESS, "scenarios", "--file", str(tmp_path / "loop")], env), 2, [])
    via_pytest = _one_line(_run([*PYTEST, "--scenarios", str(tmp_path / "loop")], env), 4, [])
    assert cli.removeprefix("error: ") in via_pytest, (cli, via_pytest)


def test_legacy_tag_is_read_with_a_notice(tmp_path: Path) -> None:
    """`master` for an upgrade of the control plane: accepted as `control-plane`, and the user is told."""
    f = tmp_path / "s.yaml"
    f.write_text(_scenario("tags: [etcd]", "tags: [etcd, master]"))
    env = _env(tmp_path)
    r = _run([HARNESS, "scenarios", "--file", str(f)], env)
    assert r.returncode == 0, r.stderr
    assert r.stderr.strip() == (f"notice: {f}: scenario 'demo-etcd': field 'tags': 'master' is read as"
                                " 'control-plane', Kubespray's name for it today")
    r = _run([*PYTEST, "--scenarios", str(f)], env)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "notice: " in r.stdout and "'master' is read as 'control-plane'" in r.stdout


def test_sigterm_during_validation_ends_the_process(tmp_path: Path) -> None:
    """A large (valid) catalogue being validated: SIGTERM ends the process, it does not sit it out."""
    sys.path.insert(0, str(REPO / "bench"))
    try:
        from catalogue import generate
    finally:
        sys.path.remove(str(REPO / "bench"))
    f = tmp_path / "big.yaml"
    f.write_text(generate(5000, inline=True))
    p = subprocess.Popen([HARNESS, "scenarios", "--file", str(f)], cwd=REPO, env=_env(tmp_path),
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    time.sleep(0.5)
    p.send_signal(signal.SIGTERM)
    try:
        p.wait(timeout=HANG)
    except subprocess.TimeoutExpired:
        p.kill()
        pytest.fail("SIGTERM did not end `harness scenarios` during validation")
    finally:
        if p.stderr:
            p.stderr.close()


# -- the reader and the typed values, in process ------------------------------------------------

def test_shared_anchors_within_the_bound_still_load(tmp_path: Path) -> None:
    """The catalogue's own style: one topology and one baseline shared by many scenarios through aliases."""
    head = ("x-topology: &topology\n  nodes:\n    - {name: node1, roles: [etcd, worker]}\n"
            "x-base: &base {versions: {etcd_version: 3.4.23}}\nscenarios:\n")
    body = "".join(f"  - id: s-{i}\n    description: d\n    installer: lab\n    topology: *topology\n"
                   "    baseline: *base\n    target: {versions: {etcd_version: 3.5.16}}\n    path: component\n"
                   "    tags: [etcd]\n" for i in range(300))
    f = tmp_path / "s.yaml"
    f.write_text(head + body)
    assert len(load_file(f)) == 300


@pytest.mark.parametrize("depth,words", [(100, "nested deeper than 64 levels"), (5000, "exceeded maximum nesting depth")])
def test_deep_nesting_is_refused_before_it_is_built(tmp_path: Path, depth: int, words: str) -> None:
    f = tmp_path / "s.yaml"
    f.write_text("extra: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(ScenarioError, match=words):
        load_file(f)


@pytest.mark.parametrize(
    "value,read",
    [(True, True), (False, False), ("false", "'false' is a string, not true or false"), (0, "expected true or false"),
     (None, "expected true or false")],
)
def test_strict_bool(value: object, read: object) -> None:
    if isinstance(read, bool):
        assert userinput.strict_bool(value) is read
    else:
        with pytest.raises(userinput.BadValue, match=str(read)):
            userinput.strict_bool(value)


@pytest.mark.parametrize(
    "value,read",
    [(0, 0.0), (120, 120.0), (1.5, 1.5), (-1, "negative"), (True, "a YAML boolean"), ("60", "a YAML string"),
     (float("nan"), "not a number of seconds"), (float("inf"), "not a number of seconds")],
)
def test_seconds(value: object, read: object) -> None:
    if isinstance(read, float):
        assert userinput.seconds(value) == read
    else:
        with pytest.raises(userinput.BadValue, match=str(read)):
            userinput.seconds(value)
