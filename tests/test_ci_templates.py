"""The CI templates in ci/, rendered with real `harness matrix` output and validated.

GitHub: the workflow and each per-scenario job it expands to are validated against the GitHub
workflow JSON schema (SchemaStore's, as check-jsonschema vendors it); the matrix step's own shell runs
and its output is the matrix; each job's pytest selection is collected for real and must hold that
scenario's items only. GitLab: the parent pipeline and the child pipeline its `matrix` job's own
script writes are validated against GitLab's CI schema, and their structure checked.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from tests.conftest import REPO

CI = REPO / "ci"
HARNESS = REPO / ".venv" / "bin" / "harness"


@cache
def schema(name: str) -> dict[str, Any]:
    import check_jsonschema

    path = Path(check_jsonschema.__file__).parent / "builtin_schemas" / "vendor" / name
    return json.loads(path.read_text())


def validate(doc: Any, name: str) -> None:
    errors = sorted(jsonschema.Draft7Validator(schema(name)).iter_errors(doc), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:10])


def matrix_rows(k: str = "") -> list[dict[str, Any]]:
    out = subprocess.run([str(HARNESS), "matrix", "--format", "json", "-k", k], check=True, capture_output=True,
                         text=True, cwd=REPO).stdout
    rows: list[dict[str, Any]] = json.loads(out)
    return rows


def test_the_schemas_catch_a_broken_template() -> None:
    """The validation below can fail: a misspelt key is an error in both schemas."""
    gh = yaml.safe_load((CI / "github-actions.yml").read_text())
    gh["jobs"]["upgrade"]["runs_on"] = gh["jobs"]["upgrade"].pop("runs-on")
    with pytest.raises(AssertionError, match="runs_on"):
        validate(gh, "github-workflows.json")
    gl = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    gl["gate"]["scripts"] = gl["gate"].pop("script")
    with pytest.raises(AssertionError):
        validate(gl, "gitlab-ci.json")


# -- GitHub Actions ------------------------------------------------------------------------------


def github() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CI / "github-actions.yml").read_text())
    return doc


def run_matrix_step(doc: dict[str, Any], tmp_path: Path, k: str) -> dict[str, Any]:
    """The matrix job's `harness matrix` step, run by bash as the runner would, from the repository."""
    (step,) = [s for s in doc["jobs"]["matrix"]["steps"] if s.get("id") == "m"]
    out = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(out), "HARNESS_K": k}
    subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], check=True, cwd=REPO, env=env)
    (line,) = out.read_text().splitlines()
    key, _, value = line.partition("=")
    assert key == doc["jobs"]["matrix"]["outputs"]["rows"].split(".")[-1].rstrip(" }")
    parsed: dict[str, Any] = json.loads(value)
    return parsed


EXPR = re.compile(r"\$\{\{\s*matrix\.(\w+)\s*\}\}")
COMPARISON = re.compile(r"^\$\{\{\s*matrix\.(\w+)\s*==\s*'([^']*)'\s*\}\}$")


def expand(job: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """One matrix row's job: `${{ matrix.X }}` replaced by the row's X, and a whole value
    `${{ matrix.X == 'v' }}` by its boolean (a key the row lacks is an error)."""

    def sub(value: Any) -> Any:
        if isinstance(value, str):
            if m := COMPARISON.match(value):
                return row[m.group(1)] == m.group(2)
            return EXPR.sub(lambda m: str(row[m.group(1)]), value)
        if isinstance(value, list):
            return [sub(v) for v in value]
        if isinstance(value, dict):
            return {k: sub(v) for k, v in value.items()}
        return value

    out: dict[str, Any] = sub({k: v for k, v in job.items() if k != "strategy"})
    out["strategy"] = {"fail-fast": False, "matrix": {"include": [row]}}
    return out


def test_github_workflow_renders_one_valid_job_per_matrix_row(tmp_path: Path) -> None:
    doc = github()
    validate(doc, "github-workflows.json")
    rendered = run_matrix_step(doc, tmp_path, k="")
    rows = matrix_rows()
    assert rendered == {"include": rows}  # the step's output is `harness matrix`'s, whole
    assert doc["jobs"]["upgrade"]["strategy"]["matrix"] == "${{ fromJSON(needs.matrix.outputs.rows) }}"
    jobs = {f"upgrade-{r['id']}": expand(doc["jobs"]["upgrade"], r) for r in rows}
    expanded = {**doc, "jobs": {"matrix": doc["jobs"]["matrix"], **jobs, "gate": doc["jobs"]["gate"]}}
    validate(expanded, "github-workflows.json")
    for r in rows:  # (expand refuses a `matrix.X` the rows lack)
        job = jobs[f"upgrade-{r['id']}"]
        assert job["name"] == f"{r['id']} ({r['path']}, {r['gate']})"
        assert "matrix." not in json.dumps(job)
        assert job["continue-on-error"] is (r["gate"] == "advisory")  # an advisory scenario never fails the run
    assert {r["gate"] for r in rows} == {"required", "advisory"}


def _pytest_k(job: dict[str, Any]) -> str:
    (run,) = [s["run"] for s in job["steps"] if "pytest scenarios/" in s.get("run", "")]
    words = shlex.split(run.replace("\\\n", " "))
    return words[words.index("-k") + 1]


def test_github_job_selects_its_scenario_only(tmp_path: Path) -> None:
    """Each job's `pytest -k`, collected for real: that scenario's items, and no other's."""
    doc = github()
    rendered = run_matrix_step(doc, tmp_path, k="lab")
    assert {r["id"] for r in rendered["include"]} == {r["id"] for r in matrix_rows("lab")}
    assert {"lab-etcd", "ks-lab-etcd"} <= {r["id"] for r in rendered["include"]}
    def collect(row: dict[str, Any]) -> tuple[dict[str, Any], str, subprocess.CompletedProcess[str]]:
        k = _pytest_k(expand(doc["jobs"]["upgrade"], row))
        return row, k, subprocess.run([str(REPO / ".venv/bin/pytest"), "scenarios/", "--collect-only", "-q",
                                       "-p", "no:cacheprovider", "-k", k],
                                      check=False, capture_output=True, text=True, cwd=REPO)

    with ThreadPoolExecutor(max_workers=4) as pool:  # one collection per job, side by side
        for row, k, r in pool.map(collect, rendered["include"]):
            items = [line for line in r.stdout.splitlines() if "::" in line]
            assert items, (k, r.stdout, r.stderr)
            assert all(line.endswith(f"[{row['k']}]") for line in items), (row["id"], items)


def harness_cache_dirs(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """The folders the harness itself caches the box, the files repo and Kubespray's worktrees and
    venvs in, relative to HARNESS_CACHE."""
    from harness.cluster.lab.paths import lab_cache
    from harness.installer.files_repo import default_root
    from harness.installer.kubespray import Kubespray

    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path))
    dirs = [lab_cache(), default_root(), Kubespray(Path("/nonexistent")).cache]
    return sorted(str(d.relative_to(tmp_path)) for d in dirs)


def test_github_caches_are_the_harness_own_folders(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = github()
    root = doc["env"]["HARNESS_CACHE"]
    expected = harness_cache_dirs(monkeypatch, tmp_path)
    for name in ("upgrade", "gate"):
        cached = [s["with"]["path"] for s in doc["jobs"][name]["steps"] if s.get("uses", "").startswith("actions/cache@")]
        assert sorted(cached) == [f"{root}/{d}" for d in expected], name
        steps = doc["jobs"][name]["steps"]
        uploads = [s for s in steps if s.get("uses", "").startswith("actions/upload-artifact@")]
        junit = [s for s in steps if s.get("uses", "").startswith("mikepenz/action-junit-report@")]
        assert uploads and junit and all(s.get("if") == "always()" for s in uploads + junit)
        assert doc["jobs"][name]["runs-on"] == ["self-hosted", "linux", "kvm"]


def test_github_nightly_gate_runs_harness_gate() -> None:
    doc = github()
    assert doc["on"]["schedule"][0]["cron"]
    gate = doc["jobs"]["gate"]
    assert "github.event_name == 'schedule'" in gate["if"]
    (run,) = [s["run"] for s in gate["steps"] if "harness gate" in s.get("run", "")]
    assert "--from" in run and "--to" in run and "--keep on-failure" in run
    (junit,) = [s for s in gate["steps"] if s.get("uses", "").startswith("mikepenz/")]
    assert junit["with"]["report_paths"] == "artifacts/gate.xml"


# -- GitLab CI -----------------------------------------------------------------------------------


def gitlab() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CI / "gitlab-ci.yml").read_text())
    return doc


def render_child(tmp_path: Path, k: str) -> tuple[str, dict[str, Any]]:
    """The `matrix` job's script (less `ci/setup`, done here already) run by bash in a copy of the
    project's layout; returns the child pipeline it wrote."""
    work = tmp_path / "project"
    work.mkdir()
    (work / "ci").symlink_to(CI)
    (work / ".venv").symlink_to(REPO / ".venv")
    script = [line for line in gitlab()["matrix"]["script"] if not line.startswith("ci/setup")]
    subprocess.run(["bash", "-euo", "pipefail", "-c", "\n".join(script)], check=True, cwd=work,
                   env={**os.environ, "HARNESS_K": k}, capture_output=True)
    text = (work / "upgrade-jobs.yml").read_text()
    doc: dict[str, Any] = yaml.safe_load(text)
    return text, doc


@pytest.mark.parametrize("k", ["", "lab"])
def test_gitlab_child_pipeline_has_one_job_per_matrix_row(tmp_path: Path, k: str) -> None:
    parent = gitlab()
    validate(parent, "gitlab-ci.json")
    _, child = render_child(tmp_path, k)
    validate(child, "gitlab-ci.json")
    rows = matrix_rows(k)
    entries = child["upgrade"]["parallel"]["matrix"]
    assert [e["SCENARIO"] for e in entries] == [[r["id"]] for r in rows]
    assert [e["K"] for e in entries] == [[r["k"]] for r in rows]
    assert [e["GATE"] for e in entries] == [[r["gate"]] for r in rows]
    assert len(entries) <= 200  # GitLab's limit of jobs per parallel:matrix
    script = " ".join(child["upgrade"]["script"])
    assert '-k "[$K]"' in script and "--junitxml artifacts/junit.xml" in script
    # Advisory: pytest's exit 1 becomes 42, the one code allow_failure accepts.
    assert child["upgrade"]["allow_failure"] == {"exit_codes": [42]}
    assert '[ "$GATE" = advisory ] && [ "$rc" = 1 ]; then exit 42' in script
    assert child["upgrade"]["artifacts"]["when"] == "always"
    assert child["upgrade"]["artifacts"]["reports"]["junit"] == "artifacts/junit.xml"
    # The trigger job includes exactly the file the matrix job keeps as its artifact.
    assert parent["upgrade"]["trigger"]["include"] == [{"artifact": "upgrade-jobs.yml", "job": "matrix"}]
    assert parent["matrix"]["artifacts"]["paths"] == ["upgrade-jobs.yml"]


def test_gitlab_advisory_exit_code_mapping_runs_as_written(tmp_path: Path) -> None:
    """The script's mapping, run by sh with pytest replaced by a command exiting 1 or 3."""
    _, child = render_child(tmp_path, "lab-etcd")
    (line,) = [s for s in child["upgrade"]["script"] if "pytest scenarios/" in s]
    for gate, rc, expected in (("advisory", 1, 42), ("required", 1, 1), ("advisory", 3, 3)):
        cmd = line.replace(".venv/bin/pytest", f"sh -c 'exit {rc}' --")
        r = subprocess.run(["sh", "-c", cmd], check=False, env={**os.environ, "GATE": gate, "K": "x"})
        assert r.returncode == expected, (gate, rc)


def test_gitlab_caches_and_gate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    doc = gitlab()
    caches = doc[".harness-caches"]["cache"]
    expected = harness_cache_dirs(monkeypatch, tmp_path)
    assert sorted(c["paths"][0] for c in caches) == [f".harness-cache/{d}/" for d in expected]
    assert doc["variables"]["HARNESS_CACHE"] == "$CI_PROJECT_DIR/.harness-cache"
    gate = doc["gate"]
    assert gate["extends"] == ".harness-caches"
    assert {"if": '$CI_PIPELINE_SOURCE == "schedule"'} in gate["rules"]
    assert any("harness gate" in s for s in gate["script"])
    assert gate["artifacts"]["reports"]["junit"] == ["artifacts/gate.xml", "artifacts/junit.xml"]
    child = yaml.safe_load((CI / "gitlab-upgrade.yml").read_text())
    assert child["upgrade"]["cache"] == caches  # the same three caches in both pipelines
    assert list(child)[-1] == "upgrade"  # the matrix is appended under the last job


def test_bracketed_k_keeps_a_scenario_whose_id_ends_another(tmp_path: Path) -> None:
    """Why the templates write `-k "[k]"`: -k matches substrings, so a bare `demo-etcd:component:etcd`
    also selects `ks-demo-etcd:component:etcd`'s items; the brackets hold only its own."""
    from tests.conftest import GOOD_SCENARIO

    catalogue = tmp_path / "catalogue.yaml"
    catalogue.write_text("scenarios:\n" + "".join(
        "  - " + GOOD_SCENARIO.replace("demo-etcd", sid).replace("\n", "\n    ").rstrip() + "\n"
        for sid in ("demo-etcd", "ks-demo-etcd")))

    def selected(k: str) -> set[str]:
        r = subprocess.run([str(REPO / ".venv/bin/pytest"), "scenarios/", "--collect-only", "-q", "-p",
                            "no:cacheprovider", "--scenarios", str(catalogue), "-k", k],
                           check=False, capture_output=True, text=True, cwd=REPO)
        return {line.rsplit("[", 1)[1].split(":")[0] for line in r.stdout.splitlines() if "::" in line}

    assert selected("demo-etcd:component:etcd") == {"demo-etcd", "ks-demo-etcd"}
    assert selected("[demo-etcd:component:etcd]") == {"demo-etcd"}
