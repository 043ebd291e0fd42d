"""Bad input at the command line: one clear error naming the file (or ref), exit 2, never a traceback.

The commands run as a user runs them (`.venv/bin/harness`, `python -m pytest scenarios/`), in
subprocesses, so exit codes and stderr are the real ones.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import GOOD_SCENARIO, REPO

HARNESS = str(Path(sys.executable).parent / "harness")


def harness(*args: str, user: int | None = None) -> subprocess.CompletedProcess[str]:
    argv = [HARNESS, *args]
    if user is not None:
        argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
    return subprocess.run(argv, capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, check=False)


def assert_one_line_error(r: subprocess.CompletedProcess[str], *words: str) -> str:
    __tracebackhide__ = True
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


# -- unreadable files -------------------------------------------------------------------------

def _random_bytes(p: Path) -> None:
    # The case (a UnicodeDecodeError traceback); NULs left out, "binary" has its own case.
    p.write_bytes(bytes(b or 1 for b in random.Random(10).randbytes(512)))


def _latin1(p: Path) -> None:
    p.write_bytes(GOOD_SCENARIO.replace("a demo", "caf\xe9").encode("latin-1"))  # no NUL: decodes badly


def _folder(p: Path) -> None:
    p.mkdir()  # a folder named like a scenario file, inside a catalogue folder


UNREADABLE: dict[str, tuple[Callable[[Path], object], str]] = {
    "random-bytes": (_random_bytes, "not UTF-8 text"),
    "binary": (lambda p: p.write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(64)), "binary file"),
    "latin-1": (_latin1, "not UTF-8 text (byte 0xe9"),
    "not-yaml": (lambda p: p.write_text("id: [unclosed\n"), "not valid YAML: line 1, column 5: this '[' is never closed"),
    "empty": (lambda p: p.write_text(""), "empty"),
    "only-comments": (lambda p: p.write_text("# nothing here\n"), "empty"),
    "a-list": (lambda p: p.write_text("- 1\n- 2\n"), "got a YAML list"),
    "empty-scenarios": (lambda p: p.write_text("scenarios: []\n"), "is empty"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_unreadable_scenario_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    make, words = UNREADABLE[case]
    f = tmp_path / "s.yaml"
    make(f)
    assert_one_line_error(harness("scenarios", "--file", str(f)), str(f), words)
    assert_one_line_error(harness("matrix", "--file", str(f)), str(f), words)


def test_folder_where_a_file_was_expected(tmp_path: Path) -> None:
    _folder(tmp_path / "odd.yaml")
    assert_one_line_error(harness("scenarios", "--file", str(tmp_path)), str(tmp_path / "odd.yaml"), "is a folder")
    empty = tmp_path / "empty-dir"
    empty.mkdir()
    assert_one_line_error(harness("scenarios", "--file", str(empty)), str(empty), "no scenario file")


@pytest.fixture
def as_user() -> int | None:
    """Who runs the command in the permission tests: root reads anything, so as root the command runs
    as nobody (setpriv), whom a mode-0 file or folder refuses for real."""
    if os.geteuid() != 0:
        return None
    if shutil.which("setpriv") is None:
        pytest.skip("running as root and no setpriv to drop to another user")
    return 65534


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A folder anyone may enter (pytest's tmp_path sits below a root-only folder)."""
    d = Path(tempfile.mkdtemp(prefix="harness-cli-input-"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        for p in [d, *d.rglob("*")]:
            p.chmod(0o755)
        shutil.rmtree(d)


def test_unreadable_permission_denied(open_dir: Path, as_user: int | None) -> None:
    f = open_dir / "secret.yaml"
    f.write_text(GOOD_SCENARIO)
    f.chmod(0)
    assert_one_line_error(harness("scenarios", "--file", str(f), user=as_user), str(f), "cannot read: Permission denied")
    # A folder on the way that may not be searched: the file cannot even be looked at.
    hidden = open_dir / "private"
    hidden.mkdir()
    (hidden / "s.yaml").write_text(GOOD_SCENARIO)
    hidden.chmod(0o700)
    target = hidden / "s.yaml"
    assert_one_line_error(harness("scenarios", "--file", str(target), user=as_user), str(target), "Permission denied")


@pytest.mark.parametrize("case", ["random-bytes", "empty"])
def test_unreadable_file_through_pytest_is_a_usage_error(tmp_path: Path, case: str) -> None:
    make, words = UNREADABLE[case]
    f = tmp_path / "s.yaml"
    make(f)
    r = subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "--scenarios", str(f), "--collect-only", "-q", "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, check=False,
    )
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    assert f"ERROR: {f}: " in r.stderr and words in r.stderr


# -- scenarios that parse but are wrong --------------------------------------------------------

def _scenario(tmp_path: Path, **replace: str) -> Path:
    text = GOOD_SCENARIO
    for old, new in replace.items():
        old = old.replace("__", " ")
        assert old in text, old
        text = text.replace(old, new)
    f = tmp_path / "s.yaml"
    f.write_text(text)
    return f


def test_typoed_key_is_shown_first_with_a_suggestion_and_every_other_error(tmp_path: Path) -> None:
    f = _scenario(tmp_path, **{"target:": "tragets:", "roles:": "rols:"})
    r = harness("scenarios", "--file", str(f))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0].startswith(f"error: {f}: scenario 'demo-etcd': field ")
    unknown = [i for i, line in enumerate(lines) if "unknown field" in line]
    required = [i for i, line in enumerate(lines) if "is required" in line]
    assert len(unknown) == 2 and len(required) == 2 and max(unknown) < min(required), lines
    text = "\n".join(lines)
    assert "'tragets': unknown field; did you mean 'target'?" in text
    assert "'topology.nodes[0].rols': unknown field; did you mean 'roles'?" in text
    assert "(and 1 more error)" not in text


def test_version_number_and_major_minor_refused_through_the_cli(tmp_path: Path) -> None:
    f = _scenario(tmp_path, **{"etcd_version: 3.5.16": "etcd_version: 3.10"})
    line = assert_one_line_error(harness("scenarios", "--file", str(f)), "field 'target.versions.etcd_version'")
    assert "3.1 is a YAML number" in line and "quote the full version" in line
    f = _scenario(tmp_path, **{"etcd_version: 3.5.16": "etcd_version: '3.5'"})
    line = assert_one_line_error(harness("scenarios", "--file", str(f)), "field 'target.versions.etcd_version'")
    assert "no patch number" in line and "per patch" in line


@pytest.mark.parametrize(
    "replace,field,words",
    [
        ({"etcd_version: 3.5.16": "etcd_version: 3.4.0"}, "target.versions.etcd_version", "3.4.23 -> 3.4.0 is a downgrade"),
        ({"tags: [etcd]": "tags: [master]"}, "tags", "'control-plane' (written 'master') moves none of what this scenario changes (etcd): the run could only be a green no-op upgrade; use tags: [etcd]"),
    ],
    ids=["downgrade", "tag-moves-nothing"],
)
def test_plan_rules_refuse_at_load_time_in_scenarios_and_matrix(tmp_path: Path, replace, field, words) -> None:
    f = _scenario(tmp_path, **replace)
    for command in ("scenarios", "matrix"):
        r = harness(command, "--file", str(f))
        line = assert_one_line_error(r, str(f), f"field {field!r}", words)
        assert r.stdout == "", line  # no matrix row for a refused scenario


def test_good_file_still_lists_and_makes_a_matrix_row(tmp_path: Path) -> None:
    f = _scenario(tmp_path)
    r = harness("matrix", "--format", "json", "--file", str(f))
    assert r.returncode == 0, r.stderr
    [row] = json.loads(r.stdout)
    assert row["to"] == "etcd=3.5.16" and row["k"] == "demo-etcd:component:etcd"


# -- harness plan ----------------------------------------------------------------------------

def test_plan_same_ref_is_nothing_to_do() -> None:
    r = harness("plan", "v2.31.0", "v2.31.0")
    assert r.returncode == 0, r.stderr
    assert "nothing to do" in r.stdout and "0 hops" in r.stdout and "  1. " not in r.stdout


@pytest.mark.parametrize("ref", ["vX.Y", "46dbdd3994b32640bcd806b0097f50e8fdf1d514", "master"])
def test_plan_unordered_ref_without_checkout_is_refused(ref: str) -> None:
    line = assert_one_line_error(harness("plan", ref, "v2.31.0"), repr(ref), "cannot be checked without", "--kubespray")
    if ref == "vX.Y":
        assert "vMAJOR.MINOR.PATCH" in line


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@e"}
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, env=env).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A small git repository shaped like Kubespray's history where it matters to the plan: release
    tags, galaxy.yml's version, and master bumped to the next release right after one."""
    repo = tmp_path / "kubespray"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "master")
    (repo / "cluster.yml").write_text("[]\n")  # what makes it Kubespray's to Kubespray.open
    _git(repo, "add", "cluster.yml")
    for version, tag in [("2.29.0", "v2.29.0"), ("2.30.0", "v2.30.0"), ("2.31.0", "v2.31.0"), ("2.32.0", None)]:
        (repo / "galaxy.yml").write_text(f"namespace: kubernetes_sigs\nname: kubespray\nversion: {version}\n")
        _git(repo, "add", "galaxy.yml")
        _git(repo, "commit", "-q", "-m", version)
        if tag:
            _git(repo, "tag", tag)
    return repo


def test_plan_places_branches_and_commits_with_a_checkout(checkout: Path) -> None:
    head = _git(checkout, "rev-parse", "HEAD")
    r = harness("plan", "v2.30.0", "master", "--kubespray", str(checkout))
    assert r.returncode == 0, r.stderr
    assert "1. v2.30.0 -> v2.31.0" in r.stdout and "2. v2.31.0 -> master" in r.stdout
    assert "2.32.0 in development" in r.stdout
    r = harness("plan", "master", head, "--kubespray", str(checkout))
    assert r.returncode == 0 and "nothing to do" in r.stdout
    tagged = _git(checkout, "rev-parse", "v2.31.0^{commit}")
    r = harness("plan", tagged, "master", "--kubespray", str(checkout))
    assert r.returncode == 0 and "1 hop(s)" in r.stdout, r.stdout + r.stderr
    assert_one_line_error(harness("plan", "master", "v2.30.0", "--kubespray", str(checkout)), "is a downgrade")
    assert_one_line_error(harness("plan", "nope", "v2.31.0", "--kubespray", str(checkout)), "'nope' not found")


# -- --from/--to: the load-time rules again on the refs they put in place ------------------------

KUBESPRAY_SCENARIOS = """\
scenarios:
  - id: ks-demo-full
    description: a full upgrade
    installer: kubespray
    topology: {nodes: [{name: node1, roles: [control-plane, etcd, worker]}]}
    baseline: {ref: v2.30.0}
    target: {ref: v2.31.0}
    path: full
  - id: ks-demo-etcd
    description: the etcd tag over a ref bump only
    installer: kubespray
    topology: {nodes: [{name: node1, roles: [control-plane, etcd, worker]}]}
    baseline: {ref: v2.30.0}
    target: {ref: v2.31.0}
    path: component
    tags: [etcd]
"""


def _collect(f: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "scenarios/", "--scenarios", str(f), *args, "--collect-only", "-q",
         "-p", "no:cacheprovider"],
        capture_output=True, text=True, cwd=REPO, stdin=subprocess.DEVNULL, check=False,
    )


@pytest.mark.parametrize(
    "args,sid,words",
    [
        (("--from", "v2.31.0", "--to", "v2.30.0"), "ks-demo-full", "v2.31.0 -> v2.30.0 is a downgrade"),
        (("--from", "v2.28.0", "--to", "v2.31.0"), "ks-demo-full", "v2.28.0 -> v2.31.0 skips a Kubespray minor"),
        (("--to", "v2.33.0"), "ks-demo-full", "v2.30.0 -> v2.33.0 skips Kubespray 2.32"),
        # The same ref at both ends: the tagged path over it changes nothing (a green no-op upgrade).
        (("--from", "v2.31.0", "--to", "v2.31.0"), "ks-demo-etcd", "changes no component version"),
    ],
    ids=["downgrade", "minor-skip", "to-only-skips", "same-ref-no-op"],
)
def test_from_to_overrides_are_validated_like_the_file(tmp_path: Path, args: tuple[str, ...], sid: str,
                                                       words: str) -> None:
    f = tmp_path / "ks.yaml"
    f.write_text(KUBESPRAY_SCENARIOS)
    assert _collect(f).returncode == 0  # the file itself is fine: only the override makes it wrong
    r = _collect(f, *args)
    assert r.returncode == pytest.ExitCode.USAGE_ERROR, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr + r.stdout
    [line] = [ln for ln in r.stderr.splitlines() if ln.startswith("ERROR:")]
    assert line.startswith(f"ERROR: {' '.join(args)}: scenario {sid!r}: field "), line
    assert words in line, line


def test_from_to_override_that_keeps_the_rules_still_collects(tmp_path: Path) -> None:
    f = tmp_path / "ks.yaml"
    f.write_text(KUBESPRAY_SCENARIOS)
    r = _collect(f, "--from", "v2.29.1", "--to", "v2.30.0")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "test_target_versions[ks-demo-full:full" in r.stdout


# -- harness verify --expect FILE ---------------------------------------------------------------
# Every case fails while the file is read, before any host is reached, so the inventory is a stub.

EXPECT_CASES: dict[str, tuple[Callable[[Path], object], str]] = {
    "yaml-float": (lambda p: p.write_text("installer: lab\nversions: {etcd: 3.10}\n"),
                   "field 'versions.etcd': 3.1 is a YAML number"),
    "major-minor": (lambda p: p.write_text("versions: {containerd: '1.7'}\n"),
                    "field 'versions.containerd': '1.7' has no patch number"),
    "node-float": (lambda p: p.write_text("versions: {etcd: 3.5.16}\nnodes: {node3: {runc: 1.1}}\n"),
                   "field 'nodes.node3.runc': 1.1 is a YAML number"),
    "random-bytes": (_random_bytes, "not UTF-8 text"),
    "binary": (UNREADABLE["binary"][0], "a binary file (NUL byte at offset"),
    "latin-1": (lambda p: p.write_bytes(b"versions: {etcd: caf\xe9}\n"), "not UTF-8 text (byte 0xe9"),
    "folder": (_folder, "is a folder, not an expectation file"),
    "missing": (lambda p: None, "no such file or folder"),
    "not-yaml": (lambda p: p.write_text("versions: {etcd: [\n"), "not valid YAML: line 1, column 18: this '[' is never closed"),
    "nodes-a-list": (lambda p: p.write_text("nodes: [node1]\n"), "field 'nodes': expected a mapping"),
}


@pytest.mark.parametrize("case", sorted(EXPECT_CASES))
def test_verify_bad_expect_file_is_one_line_naming_it(tmp_path: Path, case: str) -> None:
    make, words = EXPECT_CASES[case]
    inv = tmp_path / "hosts.yaml"
    inv.write_text("all: {hosts: {node1: {ansible_host: 192.0.2.1}}}\n")
    f = tmp_path / "expect.yaml"
    make(f)
    line = assert_one_line_error(harness("verify", "--inventory", str(inv), "--expect", str(f)), str(f), words)
    assert line.startswith(f"error: {f}: "), line


def test_verify_expect_file_permission_denied(open_dir: Path, as_user: int | None) -> None:
    inv = open_dir / "hosts.yaml"
    inv.write_text("all: {hosts: {node1: {ansible_host: 192.0.2.1}}}\n")
    f = open_dir / "expect.yaml"
    f.write_text("versions: {etcd: 3.5.16}\n")
    f.chmod(0)
    assert_one_line_error(harness("verify", "--inventory", str(inv), "--expect", str(f), user=as_user), str(f),
                          "Permission denied")
