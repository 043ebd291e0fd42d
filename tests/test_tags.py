from __future__ import annotations

import re

import pytest

from harness.errors import PlanError
from harness.plan.tags import check_tags_exist, check_tags_move, normalise_tag, normalise_tags


@pytest.mark.parametrize(
    "tag,today",
    [("master", "control-plane"), ("docker", "container-engine"), ("etcd", "etcd"), ("network", "network")],
)
def test_aliases(tag, today):
    assert normalise_tag(tag) == today


@pytest.mark.parametrize(
    "tag,replacement",
    [("vault", "etcd-secrets"), ("k8s-gen-certs", "control-plane"), ("k8s-gen-tokens", "control-plane")],
)
def test_removed_tags_say_what_replaced_them(tag, replacement):
    with pytest.raises(PlanError, match=f"{tag}.*removed.*{replacement}"):
        normalise_tag(tag)


def test_normalise_dedupes_in_order():
    assert normalise_tags(["docker", "etcd", "container-engine"]) == ["container-engine", "etcd"]


def test_tag_missing_from_ref_names_tag_and_existing_tags():
    with pytest.raises(PlanError) as exc:
        check_tags_exist(["control-plane", "helm"], {"etcd", "control-plane", "network"}, "Kubespray v2.31.0 cluster.yml")
    msg = str(exc.value)
    assert "'helm'" in msg and "control-plane, etcd, network" in msg and "v2.31.0" in msg
    check_tags_exist(["etcd"], {"etcd"}, "x")


@pytest.mark.parametrize(
    "tags,changed,words",
    [
        (["control-plane"], {"etcd"}, "tag 'control-plane' moves none of what this scenario changes (etcd)"),
        (["download"], {"etcd"}, "use tags: [download, etcd]"),
        (["etcd-secrets", "node"], {"containerd", "runc"}, "use tags: [etcd-secrets, container-engine]"),
        (["download", "etcd"], {"etcd"}, None),
        (["etcd", "node"], {"etcd"}, None),  # an extra tag beside one that moves something
        (["container-engine"], {"docker"}, None),  # a component no tag is known to move: not judged
        (["etcd"], set(), None),
    ],
)
def test_tags_must_move_something_the_target_changes(tags, changed, words):
    if words:
        with pytest.raises(PlanError, match=re.escape(words)):
            check_tags_move(tags, changed)
    else:
        check_tags_move(tags, changed)
