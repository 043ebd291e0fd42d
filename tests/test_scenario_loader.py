"""The loader on good and bad files: every refusal names the file, the scenario and the field."""

from __future__ import annotations

import pytest

from harness.errors import ScenarioError
from harness.scenario import load_catalogue, load_file
from tests.conftest import GOOD_SCENARIO, REPO


def test_good_file_loads_into_typed_objects(write):
    [sc] = load_file(write("s.yaml", GOOD_SCENARIO))
    assert sc.id == "demo-etcd"
    assert sc.tags == ("etcd",)
    assert sc.topology.nodes[0].groups == ("etcd", "kube_node")
    assert sc.expected_versions() == {"etcd": "3.5.16"}
    assert sc.test_id == "demo-etcd:component:etcd"


def test_shipped_catalogue_is_valid_and_covers_every_path():
    cat = load_catalogue([REPO / "scenarios"])
    ks = [s for s in cat if s.installer == "kubespray"]
    assert {s.path for s in ks} == {"full", "graceful", "component"}
    tags = {t for s in ks for t in s.tags}
    assert {"etcd", "container-engine", "node", "control-plane", "network", "apps", "helm"} <= tags
    lab = [s for s in cat if s.installer == "lab"]
    assert {(s.path, t) for s in lab for t in (s.tags or ("-",))} >= {
        ("component", "etcd"), ("component", "container-engine"), ("graceful", "-")
    }
    documented = [s for s in ks if s.expect_failure]
    assert documented and documented[0].tags == ("etcd",)


BAD = [
    # (replace this line of GOOD_SCENARIO, with this, expected field, words in the message)
    ("path: component", "path: sideways", "path", "sideways"),
    ("target: {versions: {etcd_version: 3.5.16}}", "", "target", "required"),
    ("    - {name: node1, roles: [etcd, worker]}", "    - {name: node1, roles: [etcd, boss]}", "topology.nodes[0].roles[1]", "boss"),
    ("target: {versions: {etcd_version: 3.5.16}}", "target: {versions: {etcd_version: three}}", "target.versions.etcd_version", "bad version string"),
    ("tags: [etcd]", "tags: [vault]", "tags", "removed"),
    ("tags: [etcd]", "tags: []", "", "needs 'tags'"),
    ("installer: lab", "installer: kubespray\nfoo: 1", "foo", "unknown field"),
    ("baseline: {versions: {etcd_version: 3.4.23}}", "baseline: {ref: 'bad ref!'}", "baseline.ref", "invalid Kubespray ref"),
    ("baseline: {versions: {etcd_version: 3.4.23}}", "baseline: {versions: {kube_version: 1.35.0}}", "", "lab installer cannot install kube_version"),
]


@pytest.mark.parametrize("old,new,field,words", BAD, ids=[b[1].split(":")[0].strip() or "missing-target" for b in BAD])
def test_bad_file_names_file_scenario_and_field(write, old, new, field, words):
    assert old in GOOD_SCENARIO
    path = write("bad.yaml", GOOD_SCENARIO.replace(old, new))
    with pytest.raises(ScenarioError) as exc:
        load_file(path)
    msg = str(exc.value)
    assert str(path) in msg
    assert "demo-etcd" in msg
    if field:
        assert f"field {field!r}" in msg
    assert words in msg
    assert exc.value.exit_code == 2


def test_duplicate_id_across_files(write):
    a = write("a.yaml", GOOD_SCENARIO)
    b = write("b.yaml", GOOD_SCENARIO)
    with pytest.raises(ScenarioError, match=r"b\.yaml: scenario 'demo-etcd': field 'id': duplicate id \(also defined in .*a\.yaml\)"):
        load_catalogue([a, b])


def test_not_yaml_and_not_a_mapping(write):
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_file(write("x.yaml", "id: [unclosed"))
    with pytest.raises(ScenarioError, match="expected a scenario mapping"):
        load_file(write("y.yaml", "- 1\n- 2\n"))


def test_multi_scenario_file_with_anchors(write):
    text = "x-t: &t\n  nodes: [{name: n1, roles: [etcd]}]\nscenarios:\n" + "".join(
        f"  - id: s{i}\n    description: d\n    installer: lab\n    topology: *t\n"
        f"    baseline: {{versions: {{etcd_version: 3.4.23}}}}\n    target: {{versions: {{etcd_version: 3.5.16}}}}\n"
        "    path: graceful\n"
        for i in (1, 2)
    )
    assert [s.id for s in load_file(write("m.yaml", text))] == ["s1", "s2"]
    with pytest.raises(ScenarioError, match=r"scenario 'scenarios\[0\]'|field 'id'"):
        load_file(write("n.yaml", "scenarios:\n  - {description: no id}\n"))


def test_component_scenario_leaves_untouched_components_at_baseline(write):
    text = GOOD_SCENARIO.replace(
        "baseline: {versions: {etcd_version: 3.4.23}}",
        "baseline: {versions: {etcd_version: 3.4.23, containerd_version: 1.6.20}}",
    ).replace(
        "target: {versions: {etcd_version: 3.5.16}}",
        # A target that also names containerd: the etcd tag must not move it.
        "target: {versions: {etcd_version: 3.5.16, containerd_version: 1.7.24}}",
    )
    [sc] = load_file(write("s.yaml", text))
    assert sc.upgraded_components() == {"etcd"}
    assert sc.expected_versions() == {"etcd": "3.5.16", "containerd": "1.6.20"}
    assert "containerd" not in sc.test_id
