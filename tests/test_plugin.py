"""The pytest plugin, driven through pytester: collection, ids, -k selection, skip reasons."""

from __future__ import annotations

import pytest

from tests.conftest import GOOD_SCENARIO, REPO

CHECKS = """
import pytest

@pytest.mark.check("versions")
def test_versions(scenario):
    assert scenario.id

@pytest.mark.check("api", needs="kubernetes")
def test_api(scenario):
    assert "kubernetes" in scenario.requirements()
"""


@pytest.fixture
def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    # -k also matches folder names, and pytester's folder is named after the test: work in a
    # neutrally named rootdir so only the items' own names can match.
    # The catalogue is copied inside the rootdir too: a path argument outside it would move the
    # rootdir up and bring every ancestor folder's name into -k matching.
    root = pytester.mkdir("suite")
    (root / "pytest.ini").write_text("[pytest]\n")
    (root / "test_checks.py").write_text(CHECKS)
    (root / "catalogue").mkdir()
    for f in (REPO / "scenarios").glob("*.yaml"):
        (root / "catalogue" / f.name).write_text(f.read_text())
    monkeypatch.chdir(root)
    monkeypatch.delenv("HARNESS_KUBESPRAY", raising=False)  # CI sets it; these tests choose their own
    return pytester


def _ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.outlines if "::" in line]


def test_ids_carry_scenario_path_and_components(project):
    r = project.runpytest("--collect-only", "-q", "--scenarios", "catalogue")
    ids = _ids(r)
    assert "test_checks.py::test_versions[lab-etcd:component:etcd]" in ids
    assert "test_checks.py::test_versions[lab-graceful:graceful:containerd+etcd+runc]" in ids
    # The API is judged only where Kubernetes runs: the lab installer's Kubernetes scenarios.
    assert {i.split("[")[1].split(":")[0] for i in ids if "test_api[lab-" in i} == {
        "lab-kube-full", "lab-kube-graceful", "lab-kube-control-plane", "lab-kube-sa-key"}
    assert any("test_api[ks-full:full:" in i for i in ids)


@pytest.mark.parametrize("expr,must,must_not", [
    ("etcd", "etcd", None),
    ("graceful", "graceful", "component"),
    ("etcd and component", "etcd", "graceful"),
    ("container-engine", "container-engine", "lab-etcd:"),
])
def test_k_selects_by_component_and_path(project, expr, must, must_not):
    r = project.runpytest("--collect-only", "-q", "-k", expr, "--scenarios", "catalogue")
    ids = _ids(r)
    assert ids, r.outlines
    for i in ids:
        assert must in i
        if must_not:
            assert must_not not in i


def test_k_etcd_excludes_scenarios_that_do_not_touch_etcd(project):
    ids = _ids(project.runpytest("--collect-only", "-q", "-k", "etcd", "--scenarios", "catalogue"))
    assert not any("lab-container-engine" in i or "ks-node" in i for i in ids)


def test_lab_default_skips_kubespray_scenarios_saying_what_to_pass(project):
    r = project.runpytest("-rs", "-k", "ks-etcd", "--check", "versions", "--scenarios", "catalogue")
    r.assert_outcomes(skipped=2)  # ks-etcd, ks-etcd-documented
    r.stdout.fnmatch_lines(["*needs a Kubespray checkout: pass --kubespray PATH*"])
    r = project.runpytest("-rs", "-k", "ks-lab", "--check", "versions", "--scenarios", "catalogue")
    r.assert_outcomes(skipped=4)  # Kubespray on the lab still needs Kubespray (etcd x2, container-engine, kube-node)
    r.stdout.fnmatch_lines(["*ks-lab-etcd needs a Kubespray checkout: pass --kubespray PATH*"])
    r.stdout.fnmatch_lines(["*ks-lab-kube-node needs a Kubespray checkout: pass --kubespray PATH*"])


def test_kubespray_from_the_environment_runs_its_lab_scenarios(project, tmp_path, monkeypatch):
    """HARNESS_KUBESPRAY stands for --kubespray: Kubespray's etcd scenarios on the lab run there, the
    ones needing a control plane still say what to pass."""
    checkout = tmp_path / "kubespray"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "cluster.yml").write_text("[]\n")
    monkeypatch.setenv("HARNESS_KUBESPRAY", str(checkout))
    r = project.runpytest("-rs", "-k", "ks- and etcd", "--check", "versions", "--scenarios", "catalogue")
    r.assert_outcomes(passed=2, skipped=4)  # ks-lab-etcd{,-documented} run; ks-etcd{,-documented}, ks-full, ks-graceful skip
    r.stdout.fnmatch_lines(["*ks-etcd*needs Kubespray to install Kubernetes, which the lab cannot give it*"])


def test_kubespray_scenario_on_the_lab_needs_another_provider(project, tmp_path):
    checkout = tmp_path / "kubespray"
    (checkout / ".git").mkdir(parents=True)
    (checkout / "cluster.yml").write_text("[]\n")
    r = project.runpytest("-rs", "-k", "ks-node", "--check", "versions", "--kubespray", str(checkout),
                          "--scenarios", "catalogue")
    r.assert_outcomes(skipped=1)
    r.stdout.fnmatch_lines(["*needs Kubespray to install Kubernetes, which the lab cannot give it*--provider vagrant*"])


def test_bad_scenario_file_is_a_usage_error_naming_file_and_field(project):
    bad = project.path / "bad.yaml"
    bad.write_text(GOOD_SCENARIO.replace("path: component", "path: sideways"))
    r = project.runpytest("--collect-only", "--scenarios", str(bad))
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines(["*bad.yaml: scenario 'demo-etcd': field 'path'*sideways*"])


@pytest.mark.parametrize("args,words", [
    (["--provider", "cloud"], "--provider 'cloud'"),
    (["--provider", "static"], "--provider static needs --inventory"),
    (["--keep", "sometimes"], "--keep 'sometimes'"),
    (["--from", "bad ref!"], "--from: invalid Kubespray ref"),
    (["--kubespray", "/nonexistent"], "--kubespray /nonexistent: no such file or folder"),
    (["--provider", "vagrant"], "--provider vagrant needs --box NAME"),
    (["--vagrant-provider", "Virtual Box"], "--vagrant-provider 'Virtual Box': not a Vagrant provider name"),
    (["--vagrant-option", "driver"], "--vagrant-option 'driver': expected KEY=VALUE"),
    (["--vagrant-option", "cpus=[1, 2]"], "VALUE must be a single value, not a YAML list"),
    (["--vagrant-option", "since=2024-01-01"], "VALUE reads as a YAML date; quote it"),
])
def test_bad_options_are_usage_errors(project, args, words):
    r = project.runpytest("--collect-only", *args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    assert words in r.stderr.str()


def test_from_to_override_kubespray_refs(project, tmp_path):
    (project.path / "suite" / "test_refs.py").write_text("""
import pytest
@pytest.mark.check("refs")
def test_refs(scenario):
    print("REFS", scenario.id, scenario.baseline.ref, scenario.target.ref)
""")
    r = project.runpytest("-s", "-p", "no:cacheprovider", "--provider", "static", "--inventory", str(_inv(tmp_path)),
                          "--kubespray", str(_checkout(tmp_path)), "--from", "v2.29.1", "--to", "v2.30.0",
                          "-k", "ks-full or ks-node", "--check", "refs", "--scenarios", "catalogue")
    out = r.stdout.str()
    assert "REFS ks-full v2.29.1 v2.30.0" in out
    assert "REFS ks-node v2.29.1 v2.30.0" in out


def _inv(tmp_path):
    p = tmp_path / "hosts.yaml"
    p.write_text("all: {hosts: {n1: {}}}\n")
    return p


def _checkout(tmp_path):
    c = tmp_path / "ks"
    (c / ".git").mkdir(parents=True, exist_ok=True)
    (c / "cluster.yml").write_text("[]\n")
    return c


def test_progress_reaches_the_terminal_through_output_capture(project):
    """A long step's progress shows while pytest captures the test's own output (as live logs do)."""
    (project.path / "suite" / "test_progress.py").write_text(
        "from harness import progress\n\n"
        "def test_long_step():\n"
        "    print('captured, not shown')\n"
        "    with progress.step('vagrant up: 3 node(s)') as line:\n"
        "        line('Bringing machine node1 up')\n"
    )
    r = project.runpytest_subprocess("-q", "test_progress.py", "--scenarios", "catalogue")
    r.assert_outcomes(passed=1)
    err = r.stderr.str()
    assert "… vagrant up: 3 node(s)" in err and "✓ vagrant up: 3 node(s)" in err
    assert "captured, not shown" not in r.stdout.str() + err


def test_vagrant_provider_defaults_to_vagrants_own_setting_then_libvirt(monkeypatch):
    from harness.options import Options

    def resolve(**kw):
        return Options.resolve(**{
            "kubespray": None, "from_ref": None, "to_ref": None, "provider": "vagrant", "inventory": None,
            "keep": "never", "artifacts": "artifacts", "scenario_files": None, "box": "generic/debian12", **kw,
        })

    monkeypatch.delenv("VAGRANT_DEFAULT_PROVIDER", raising=False)
    assert resolve().vagrant_provider == "libvirt"
    monkeypatch.setenv("VAGRANT_DEFAULT_PROVIDER", "virtualbox")
    assert resolve().vagrant_provider == "virtualbox"
    assert resolve(vagrant_provider="libvirt").vagrant_provider == "libvirt"
    opts = resolve(vagrant_options=["driver=qemu", "memory=2048", "nested=true", "uri=qemu:///system?socket=/x/s",
                                    "cmd_line=root=/dev/vda rw", "ssh.username=debian", "memory=4096"])
    assert dict(opts.vagrant_options) == {
        "driver": "qemu", "memory": 4096, "nested": True, "uri": "qemu:///system?socket=/x/s",
        "cmd_line": "root=/dev/vda rw", "ssh.username": "debian",
    }


def test_vagrant_options_reach_the_provider_the_session_builds(project):
    """`--provider vagrant --vagrant-provider X --vagrant-option K=V` as the pipeline's provider sees them."""
    (project.path / "suite" / "test_provider.py").write_text("""
def test_provider(harness_options):
    from harness.cluster.providers import provider_for
    p = provider_for(harness_options)
    print("PROVIDER", type(p).__name__, p.vagrant_provider, p.box, sorted(p.options.items()), sorted(p.ssh.items()))
""")
    r = project.runpytest("-s", "-p", "no:cacheprovider", "test_provider.py", "--provider", "vagrant",
                          "--box", "generic/debian12", "--vagrant-provider", "libvirt",
                          "--vagrant-option", "driver=qemu", "--vagrant-option", "ssh.insert_key=false",
                          "--scenarios", "catalogue")
    r.assert_outcomes(passed=1)
    assert ("PROVIDER VagrantProvider libvirt generic/debian12 [('driver', 'qemu')] [('insert_key', False)]"
            in r.stdout.str())
