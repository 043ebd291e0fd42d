from __future__ import annotations

import pytest

from harness.errors import PlanError
from harness.plan.tags import check_tags_exist, normalise_tag, normalise_tags


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
