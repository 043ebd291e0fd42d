"""The component table (harness/components/) against what it describes: Kubespray's real tags and
variables (the `real_kubespray` checkout, v2.31.0), the upgrade order's phases, the lab's playbooks
and files repo, and the names the probes report."""

from __future__ import annotations

import re
from typing import get_args

import pytest

from harness import components
from harness.checks import order
from harness.components import COMPONENTS, EVERY_NODE
from harness.errors import HarnessError
from harness.installer import files_repo, lab
from harness.installer.inventory import mirror_host_vars
from harness.installer.kubespray import Kubespray, Unresolvable
from harness.plan.tags import COMPANION_TAGS, COMPONENT_TAGS, KNOWN_TAGS
from harness.plan.versions import Version
from harness.scenario.model import Role
from harness.upgrade.timeline import TaskRecord

REF = "v2.31.0"


# -- against a real Kubespray ------------------------------------------------------------------


def test_every_tag_is_one_kubespray_carries(real_kubespray: Kubespray) -> None:
    """A tag no task carries gives a green run that moved nothing: the table must name real ones."""
    real = real_kubespray.list_tags(REF)
    named = {t for c in COMPONENTS for t in c.tags} | set(COMPONENT_TAGS) | COMPANION_TAGS
    assert named - real == set()


def test_every_version_variable_is_one_kubespray_resolves(real_kubespray: Kubespray) -> None:
    resolved = real_kubespray.resolve(REF, components.version_vars())
    bad = {var: value for var, value in resolved.items()
           if isinstance(value, Unresolvable) or not isinstance(value, str) or not value}
    assert bad == {}
    for value in resolved.values():
        Version.parse(str(value))  # a version, not a template or a dict


def test_every_checksum_table_holds_its_default_version(real_kubespray: Kubespray) -> None:
    """Each checksum dict exists and lists the ref's default version of its component's variable (so
    the table pairs each dict with the right variable), and the single-checksum variable exists."""
    variables = real_kubespray.variables(REF)
    defaults = real_kubespray.default_versions(REF)
    checked = 0
    for c in COMPONENTS:
        for s in c.checksums:
            assert s.single in variables, (c.name, s.single)
            table = variables.get(s.table)
            assert isinstance(table, dict) and isinstance(table.get("amd64"), dict), (c.name, s.table)
            wanted = Version.parse(defaults[c.var])
            assert any(_parses_as(k, wanted) for k in table["amd64"]), (c.name, s.table, defaults[c.var])
            checked += 1
    assert checked >= 8  # kubelet, kubeadm, kubectl, etcd, containerd, runc, crictl, cni, calicoctl, helm


def test_files_repo_paths_are_kubesprays_download_urls(real_kubespray: Kubespray) -> None:
    """Each repo component's `url_var`, templated by the ref's Ansible with the offline variables the
    harness sets (`files_repo`, `github_url`, `dl_k8s_io_url`), is `files_repo` + the table's path:
    Kubespray downloads exactly what the repo holds."""
    repo = "http://10.0.0.1:8080"
    checked = set()
    for name, c in components.repo_components().items():
        src = c.debian or c.built
        assert src is not None
        if src.url_var is None:
            continue  # a Kubernetes server binary: see the next test
        version = c.debian.versions[-1][1] if c.debian else c.built.sets[-1] if c.built else ""
        got = real_kubespray.resolve(REF, [src.url_var], {**mirror_host_vars(repo), c.var: version})
        assert got[src.url_var] == f"{repo}/{files_repo.url_path(name, version)}"
        checked.add(name)
    assert checked == {"etcd", "containerd", "runc", "kubelet", "kubectl", "kubeadm"}


def test_kubernetes_server_binaries_are_none_kubespray_downloads(real_kubespray: Kubespray) -> None:
    """kube-apiserver, kube-controller-manager, kube-scheduler and kube-proxy have no download URL or
    checksum in Kubespray (kubeadm runs them as images): the repo puts them beside the kubelet, in
    SHA256SUMS only."""
    variables = real_kubespray.variables(REF)
    for c in components.kubernetes_components():
        assert c.built is not None
        if c.built.url_var is not None:
            continue
        stem = c.name.replace("-", "_")
        assert not [v for v in variables if v.startswith(stem) and v.endswith(("_download_url", "_checksums"))], c.name
        assert not c.checksums, c.name
        assert files_repo.url_path(c.name, "1.32.0").rsplit("/", 1)[0] == files_repo.url_path("kubelet", "1.32.0").rsplit("/", 1)[0]


def _parses_as(key: str, wanted: Version) -> bool:
    try:
        return Version.parse(key) == wanted
    except HarnessError:
        return False


# -- tags and phases -----------------------------------------------------------------------------


def test_every_component_tag_moves_something_and_every_known_tag_is_named() -> None:
    assert [t for t in COMPONENT_TAGS if not components.moved_by(t)] == []
    assert KNOWN_TAGS == {t for c in COMPONENTS for t in c.tags} | COMPANION_TAGS
    assert components.moved_by("kubeadm") == ("kubeadm",)
    assert set(components.moved_by("etcd")) == {"etcd"}


def test_each_phase_is_a_phase_of_the_order_and_of_the_components_tags() -> None:
    """A component's phase is one the order knows, and one a Kubespray task tagged with one of its
    tags (or its own name) is sorted into: a change counted in another phase would judge the order
    against the wrong plays."""
    for c in COMPONENTS:
        if c.phase is None:
            continue
        assert c.phase in order.PHASES, c.name
        by_tags = {order.phase_of(TaskRecord("n", "p", "t", (t,), None, None, "changed", True))
                   for t in (*c.tags, c.name)}
        assert c.phase in by_tags, (c.name, c.phase, by_tags)


@pytest.mark.parametrize(("path", "roles"), [
    ("full", ("control-plane", "etcd")), ("component", ("worker",)),
    ("graceful", ("control-plane", "etcd")), ("graceful", ("worker",)), ("graceful", ("etcd",)),
])
def test_phases_follow_the_upgrade_order(path: str, roles: tuple[str, ...]) -> None:
    """etcd before the control plane (the skew policy's rule), the container engine before the kubelet."""
    rank = {p: i for i, p in enumerate(order.phase_order(path, roles))}
    phase = {c.name: c.phase for c in COMPONENTS}
    for early, late in (("etcd", "kube-apiserver"), ("containerd", "kubelet"), ("runc", "kubelet")):
        if phase[early] in rank and phase[late] in rank:
            assert rank[str(phase[early])] < rank[str(phase[late])], (path, roles, early, late)


def test_sample_phases_cover_what_the_probes_report() -> None:
    phases = components.sample_phases()
    assert phases["etcd"] == "etcd" and phases["calicoctl"] == "network" and phases["kube-apiserver"] == "control-plane"
    # etcdctl and etcdutl are copied by the control plane's play too; kubeadm and kubectl at several points.
    assert not {"etcdctl", "etcdutl", "kubeadm", "kubectl"} & set(phases)


# -- names, roles, probes --------------------------------------------------------------------


def test_names_are_unique_and_binaries_belong_to_one_component() -> None:
    names = [c.name for c in COMPONENTS]
    assert len(names) == len(set(names))
    owners: dict[str, str] = {}
    for c in COMPONENTS:
        for b in c.binaries:
            assert owners.setdefault(b.name, c.name) == c.name, f"{b.name} in {owners[b.name]} and {c.name}"
            # A binary named like another component would make `observed_as` ambiguous.
            assert b.name == c.name or b.name not in names, b.name
    assert components.observed_as("etcdctl") == "etcd" and components.observed_as("calicoctl") == "calico"
    assert components.observed_as("nosuch") == "nosuch"


def test_version_variables_are_kubespray_shaped() -> None:
    for var in components.version_vars():
        assert re.fullmatch(r"[a-z][a-z0-9_]*_version", var), var
    assert set(components.components_of_var("kube_version")) >= {"kubelet", "kubeadm", "kubectl", "kube-apiserver"}
    assert components.components_of_var("docker_version") == ["docker"]  # unknown: named after itself
    assert components.version_var("etcdutl") == "etcd_version"
    assert components.version_var("nosuch") is None


def test_roles_are_the_scenario_roles() -> None:
    allowed = set(get_args(Role)) | {EVERY_NODE}
    for c in COMPONENTS:
        assert set(c.roles) <= allowed, c.name
        if c.units:
            assert c.roles, f"{c.name} runs units but no role carries it"


def test_probed_binaries_run_their_own_file() -> None:
    """`command -v NAME` decides present or absent; the command must run that same file."""
    for b in components.host_binaries():
        assert b.argv is not None and b.parse is not None
        if b.dirs:
            assert len(b.argv.split()) == 1, b.name  # the file run bare from its directory (CNI plugins)
        else:
            assert b.argv.split()[0] == b.name, b.name
    assert [b.name for b in components.host_binaries()].count("cni") == 1


def test_what_each_role_must_carry() -> None:
    from harness.checks.versions import components_for_roles
    from harness.probes.hosts import units_for

    assert components_for_roles(("etcd",), "lab") == ("containerd", "runc", "etcd", "etcdctl")
    # kube-proxy: every Kubernetes node runs its DaemonSet's pod (its version is that pod's image tag).
    assert set(components_for_roles(("worker",))) == {"containerd", "runc", "crictl", "kubelet", "kubeadm", "cni",
                                                      "kube-proxy"}
    assert "etcdutl" not in components_for_roles(("etcd",))  # only some releases ship it
    assert units_for(("control-plane", "etcd")) == ("containerd", "kubelet", "etcd")
    assert units_for(("control-plane", "etcd"), "lab") == ("containerd", "etcd")
    with pytest.raises(ValueError, match="unknown installer"):
        components.on_roles(("etcd",), "kubeadm")


def test_api_only_and_static_pods() -> None:
    assert components.static_pods() == ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert set(components.api_only()) == {*components.static_pods(), "kube-proxy"}
    # The kubelet's binary is on the node, but the API reports the one running.
    assert "kubelet" in components.api_reported() and "kubelet" not in components.api_only()


# -- the lab -------------------------------------------------------------------------------------


def test_every_lab_component_has_a_files_repo_source() -> None:
    lab_names = {c.name for c in components.lab_components()}
    assert lab_names == {"etcd", "containerd", "runc"}
    assert lab_names <= set(components.repo_components())
    for c in components.repo_components().values():
        assert (c.debian is None) != (c.built is None), c.name  # one source each
        if c.debian is None:
            continue
        assert c.debian.packages and c.checksums
        assert {s for s, _v in c.debian.versions} <= set(files_repo.SUITES), c.name
        assert lab.BASELINE_SUITE in dict(c.debian.versions), c.name
        # Versions in suite order: the lab upgrades from bookworm's build to newer suites'.
        vs = [Version.parse(v) for _s, v in c.debian.versions]
        assert vs == sorted(vs), c.name
        assert any(b.always for b in c.binaries), c.name


def test_kubernetes_builds_are_the_sets_the_lab_has() -> None:
    """Every Kubernetes component's sets are the labelled sets of the builds (../shared/kubernetes), each
    set's SHA256SUMS lists it, and the seven are exactly what those builds hold."""
    built = components.kubernetes_components()
    assert {c.name for c in built} == {"kubelet", "kubectl", "kubeadm", "kube-apiserver", "kube-controller-manager",
                                       "kube-scheduler", "kube-proxy"}
    assert {c.var for c in built} == {"kube_version"}
    for c in built:
        assert c.built is not None
        assert [Version.parse(v) for v in c.built.sets] == sorted(Version.parse(v) for v in c.built.sets), c.name
        assert c.built.url_path.endswith(f"/{c.name}"), c.name
    try:
        sets = files_repo.kubernetes_sets()
    except HarnessError as e:
        pytest.skip(str(e))
    for c in built:
        assert c.built is not None
        assert all(c.name in sets.get(v, ()) for v in c.built.sets), (c.name, sets)
    assert set().union(*sets.values()) == {c.name for c in built}


def test_the_lab_playbooks_read_the_tables_variables() -> None:
    """The lab installer takes Kubespray's variable names: each lab component's version, checksum
    dict and download URL variable is defined by its defaults."""
    text = (lab.LAB_DIR / "roles/lab_defaults/defaults/main.yml").read_text()
    for c in components.lab_components():
        assert c.debian is not None
        for var in (c.var, c.checksums[0].table, c.debian.url_var):
            assert re.search(rf"^{var}:", text, re.MULTILINE), var


def test_ref_bump_moves_what_kubespray_deploys_by_default() -> None:
    bump = components.ref_bump_components()
    assert {"etcd", "containerd", "kubelet", "kube-apiserver", "coredns", "calico"} <= bump
    assert not {"flannel", "cilium", "helm"} & bump  # off unless the inventory enables them
    assert components.tagged() >= bump
