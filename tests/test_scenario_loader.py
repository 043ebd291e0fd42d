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
    ("baseline: {versions: {etcd_version: 3.4.23}}", "baseline: {versions: {calico_version: 3.30.6}}", "", "lab installer cannot install calico_version"),
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


# -- versions are pinned: MAJOR.MINOR.PATCH, written as strings ----------------------------------

@pytest.mark.parametrize(
    "written,words",
    [
        ("3.5", "3.5 is a YAML number"),  # a float: YAML's reading, never turned into '3.5'
        ("3.10", "3.1 is a YAML number"),  # ...which would even have become 3.1
        ("3", "3 is a YAML number"),
        ("'3.5'", "'3.5' has no patch number"),
        ("v3.5", "'v3.5' has no patch number"),
    ],
)
def test_versions_must_be_full_and_quoted_when_yaml_would_read_a_number(write, written, words):
    path = write("v.yaml", GOOD_SCENARIO.replace("etcd_version: 3.5.16", f"etcd_version: {written}"))
    with pytest.raises(ScenarioError) as exc:
        load_file(path)
    msg = str(exc.value)
    assert "field 'target.versions.etcd_version'" in msg and words in msg
    assert "MAJOR.MINOR.PATCH" in msg


def test_quoted_and_v_prefixed_full_versions_load(write):
    [sc] = load_file(write("v.yaml", GOOD_SCENARIO.replace("etcd_version: 3.5.16", "etcd_version: 'v3.5.16'")))
    assert sc.target.versions == {"etcd_version": "v3.5.16"}


def test_ref_written_as_a_number_is_refused(write):
    text = KUBESPRAY.replace("target: {ref: v2.31.0}", "target: {ref: 2.31}")
    with pytest.raises(ScenarioError, match=r"field 'target.ref'.*2.31 is a YAML float"):
        load_file(write("r.yaml", text))


# -- the plan rules that need no cluster apply at load time ----------------------------------------

KUBESPRAY = """\
id: ks-demo
description: a Kubespray scenario
installer: kubespray
topology:
  nodes:
    - {name: node1, roles: [control-plane, etcd, worker]}
baseline: {ref: v2.30.0}
target: {ref: v2.31.0}
path: full
"""


@pytest.mark.parametrize(
    "text,field,words",
    [
        (GOOD_SCENARIO.replace("etcd_version: 3.4.23", "etcd_version: 3.5.20"),
         "target.versions.etcd_version", "etcd_version 3.5.20 -> 3.5.16 is a downgrade"),
        (KUBESPRAY.replace("baseline: {ref: v2.30.0}", "baseline: {ref: v2.31.0, versions: {kube_version: 1.33.5}}")
         .replace("target: {ref: v2.31.0}", "target: {ref: v2.31.0, versions: {kube_version: 1.35.4}}"),
         "target.versions.kube_version", "kube_version 1.33.5 -> 1.35.4 jumps more than one minor"),
        (KUBESPRAY.replace("v2.30.0", "v2.29.0"), "target.ref", "v2.29.0 -> v2.31.0 skips a Kubespray minor"),
        (KUBESPRAY.replace("{ref: v2.31.0}", "{ref: v2.29.0}"), "target.ref", "v2.30.0 -> v2.29.0 is a downgrade"),
    ],
    ids=["etcd-downgrade", "kube-minor-skip", "ref-minor-skip", "ref-downgrade"],
)
def test_plan_rules_refuse_at_load_time(write, text, field, words):
    with pytest.raises(ScenarioError) as exc:
        load_file(write("p.yaml", text))
    assert f"field {field!r}" in str(exc.value) and words in str(exc.value)


def test_every_rule_broken_is_reported_not_only_the_first(write):
    text = GOOD_SCENARIO.replace("etcd_version: 3.5.16", "etcd_version: 3.4.0").replace(
        "baseline: {versions: {etcd_version: 3.4.23}}",
        "baseline: {versions: {etcd_version: 3.4.23, containerd_version: 1.7.24}}",
    ).replace("target: {versions: {etcd_version: 3.4.0}}", "target: {versions: {etcd_version: 3.4.0, containerd_version: 1.6.20}}")
    with pytest.raises(ScenarioError) as exc:
        load_file(write("p.yaml", text))
    msg = str(exc.value)
    assert "etcd_version 3.4.23 -> 3.4.0 is a downgrade" in msg
    assert "containerd_version 1.7.24 -> 1.6.20 is a downgrade" in msg


# -- tags must be able to move what the target changes ---------------------------------------------

@pytest.mark.parametrize(
    "tags,words",
    [
        # The legacy name is read as today's, and the refusal names the word the file wrote.
        ("[master]", "tag 'control-plane' (written 'master') moves none of what this scenario changes (etcd)"),
        ("[download]", "tag 'download' moves none"),
        ("[etcd-secrets]", "tag 'etcd-secrets' moves none"),
        ("[node, network]", "tags 'node', 'network' move none"),
    ],
)
def test_tags_that_cannot_move_the_changed_component_are_refused(write, tags, words):
    with pytest.raises(ScenarioError) as exc:
        load_file(write("t.yaml", GOOD_SCENARIO.replace("tags: [etcd]", f"tags: {tags}")))
    msg = str(exc.value)
    assert "field 'tags'" in msg and words in msg and "green no-op" in msg and "etcd]" in msg


KUBE_TAGGED = """\
id: demo-kube
description: a demo
installer: lab
topology:
  nodes:
    - {name: node1, roles: [control-plane, etcd, worker]}
baseline: {versions: {etcd_version: 3.5.16, kube_version: KUBE_FROM}}
target: {versions: {kube_version: KUBE_TO}}
path: component
tags: TAGS
"""


@pytest.mark.parametrize(
    "tags,kube_from,kube_to,refused",
    [
        ("[node]", "1.31.9", "1.32.0", True),  # the upgrade doc's order: kubelets a minor ahead
        ("[download, node]", "1.31.9", "1.32.0", True),
        ("[control-plane]", "1.31.9", "1.32.0", False),
        ("[control-plane, node]", "1.31.9", "1.32.0", False),
        ("[node]", "1.31.8", "1.31.9", False),  # a patch: kubelet and apiserver share the minor
    ],
)
def test_tags_that_put_kubelets_a_minor_ahead_of_the_control_plane_are_refused(write, tags, kube_from, kube_to, refused):
    text = KUBE_TAGGED.replace("TAGS", tags).replace("KUBE_FROM", kube_from).replace("KUBE_TO", kube_to)
    if not refused:
        [sc] = load_file(write("t.yaml", text))
        assert sc.path == "component"
        return
    with pytest.raises(ScenarioError) as exc:
        load_file(write("t.yaml", text))
    msg = str(exc.value)
    assert "field 'tags'" in msg and "kubelet newer than its apiserver" in msg and "--tags=control-plane" in msg


def test_tags_node_on_a_minor_loads_when_the_scenario_documents_the_skew(write):
    """The doc's `--tags=node` on a minor runs when the scenario says the skew check must find the
    kubelets ahead (expect_failure.check: version skew); documenting any other failure does not do."""
    text = KUBE_TAGGED.replace("TAGS", "[download, node]").replace("KUBE_FROM", "1.31.9").replace("KUBE_TO", "1.32.0")
    documented = text + "expect_failure: {check: version skew, reason: kubelets ahead, remedy: control plane first}\n"
    [sc] = load_file(write("t.yaml", documented))
    assert sc.expect_failure is not None and sc.expect_failure.check == "version skew"
    other = text + "expect_failure: {check: node versions, reason: r, remedy: m}\n"
    with pytest.raises(ScenarioError, match="kubelet newer than its apiserver"):
        load_file(write("u.yaml", other))


def test_the_skew_check_the_loader_names_is_the_suites():
    from harness.checks.suite import CHECKS
    from harness.scenario.model import SKEW_CHECK

    assert SKEW_CHECK in CHECKS


@pytest.mark.parametrize("tags", ["[download, etcd]", "[etcd, etcd-secrets]", "[etcd, node]", "[docker, etcd]"])
def test_companion_and_extra_tags_beside_a_moving_one_load(write, tags):
    [sc] = load_file(write("t.yaml", GOOD_SCENARIO.replace("tags: [etcd]", f"tags: {tags}")))
    assert "etcd" in sc.tags


def test_component_tag_on_a_ref_only_change_loads(write):
    text = KUBESPRAY.replace("path: full", "path: component\ntags: [control-plane]")
    [sc] = load_file(write("t.yaml", text))
    assert sc.tags == ("control-plane",)


def test_a_target_that_changes_nothing_is_refused_for_a_tagged_path(write):
    text = GOOD_SCENARIO.replace("etcd_version: 3.5.16", "etcd_version: v3.4.23")
    with pytest.raises(ScenarioError, match=r"field 'target': changes no component version"):
        load_file(write("t.yaml", text))


def test_unknown_tag_suggests_the_close_one(write):
    with pytest.raises(ScenarioError, match=r"unknown tag\(s\) 'etdc' \(did you mean 'etcd'\?\)"):
        load_file(write("t.yaml", GOOD_SCENARIO.replace("tags: [etcd]", "tags: [etdc]")))


# -- every error, unknown keys first -----------------------------------------------------------------

def test_typoed_key_comes_first_with_every_other_error(write):
    text = GOOD_SCENARIO.replace("target:", "tragets:").replace("roles:", "rols:")
    with pytest.raises(ScenarioError) as exc:
        load_file(write("k.yaml", text))
    e = exc.value
    assert e.field in ("tragets", "topology.nodes[0].rols")  # the exception's field is the first error's
    lines = str(e).splitlines()
    assert "unknown field; did you mean" in lines[0]
    assert "and field 'tragets': unknown field; did you mean 'target'?" in str(e) or "did you mean 'target'?" in lines[0]
    assert lines[-1].endswith("field 'target': is required")
    assert "too_short" not in str(e) and "at least 1 item" not in str(e)  # a consequence, not a mistake


def test_unknown_top_level_key_suggests_scenarios(write):
    with pytest.raises(ScenarioError, match=r"field 'scenarioss': unknown top-level key .*did you mean 'scenarios'\?"):
        load_file(write("m.yaml", "scenarios: []\nscenarioss: []\n"))


def test_loading_leaves_the_garbage_collector_as_it_found_it(write):
    """The loader pauses the cyclic GC while it parses (a large catalogue's CPU halves); a bad file
    must not leave it off, and a caller that had it off keeps it off."""
    import gc

    assert gc.isenabled()
    with pytest.raises(ScenarioError):
        load_catalogue([write("bad.yaml", "id: [unclosed")])
    assert gc.isenabled()
    load_catalogue([write("good.yaml", GOOD_SCENARIO)])
    assert gc.isenabled()
    gc.disable()
    try:
        load_catalogue([write("good.yaml", GOOD_SCENARIO)])
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_target_extra_vars_reach_only_the_upgrade_run(write):
    from harness.upgrade.paths import upgrade_stage

    text = GOOD_SCENARIO.replace("target: {versions: {etcd_version: 3.5.16}}",
                                 "target: {versions: {etcd_version: 3.5.16}, extra_vars: {etcd_heartbeat_interval: 250}}")
    [sc] = load_file(write("t.yaml", text))
    assert upgrade_stage(sc).extravars == {"etcd_version": "3.5.16", "etcd_heartbeat_interval": 250}


@pytest.mark.parametrize("edit,field,words", [
    ({"target: {versions: {etcd_version: 3.5.16}}": "target: {versions: {etcd_version: 3.5.16}, extra_vars: {containerd_version: 1.7.24}}"},
     "target.extra_vars", "containerd_version: versions go in target.versions"),
    ({"baseline: {versions: {etcd_version: 3.4.23}}": "baseline: {versions: {etcd_version: 3.4.23}, extra_vars: {a: 1}}"},
     "baseline.extra_vars", "settings for the upgrade's run only go in target.extra_vars"),
])
def test_misplaced_extra_vars_are_refused_naming_the_field(write, edit, field, words):
    text = GOOD_SCENARIO
    for old, new in edit.items():
        assert old in text
        text = text.replace(old, new)
    with pytest.raises(ScenarioError) as exc:
        load_file(write("t.yaml", text))
    assert f"field '{field}'" in str(exc.value) and words in str(exc.value)
