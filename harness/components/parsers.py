"""How each host tool reports its version: pure parsers of the output the probe's commands print.

Which command the probe runs for which tool lives in the component table (harness.components);
these functions read what comes back. Each is tested on real output (tests/test_probes_hosts.py).
"""

from __future__ import annotations

import json
import re

_SEMVER = r"v?\d+\.\d+(?:\.\d+)?(?:-[0-9A-Za-z.-]+)?"


def _clean(version: str) -> str:
    """Drop Debian packaging suffixes: `1.6.20~ds1` and `1.1.5+ds1` are upstream 1.6.20 and 1.1.5."""
    return re.split(r"[~+]", version, maxsplit=1)[0]


def _first(pattern: str, text: str) -> str | None:
    m = re.search(pattern, text, re.MULTILINE)
    return _clean(m.group(1)) if m else None


def parse_etcd_version(text: str) -> str | None:
    """`etcd --version`: `etcd Version: 3.5.16`."""
    return _first(rf"^etcd Version:\s*({_SEMVER})", text)


def parse_etcdctl_version(text: str) -> str | None:
    """`etcdctl version`: `etcdctl version: 3.5.16`."""
    return _first(rf"^etcdctl version:\s*({_SEMVER})", text)


def parse_etcdutl_version(text: str) -> str | None:
    """`etcdutl version`: `etcdutl version: 3.5.16`."""
    return _first(rf"^etcdutl version:\s*({_SEMVER})", text)


def parse_containerd_version(text: str) -> str | None:
    """Upstream `containerd github.com/containerd/containerd v1.7.24 <sha>` (2.x: `.../containerd/v2 v2.0.0`);
    Debian `containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3`."""
    return _first(rf"^containerd\s+\S+\s+({_SEMVER}(?:[~+]\S*)?)", text)


def parse_runc_version(text: str) -> str | None:
    """`runc --version` first line: `runc version 1.1.15` (Debian: `runc version 1.1.5+ds1`)."""
    return _first(rf"^runc version\s+({_SEMVER}(?:[~+]\S*)?)", text)


def parse_kubelet_version(text: str) -> str | None:
    """`kubelet --version`: `Kubernetes v1.31.4`."""
    return _first(rf"^Kubernetes\s+({_SEMVER})", text)


def parse_kubeadm_version(text: str) -> str | None:
    """`kubeadm version -o short`: `v1.31.4` (a build's metadata, `v1.32.0+lab.cd13ec4a`, is no part of it)."""
    return _first(rf"^({_SEMVER})(?:\+[0-9A-Za-z.-]+)?\s*$", text)


def parse_kubectl_version(text: str) -> str | None:
    """`kubectl version --client -o json`: clientVersion.gitVersion."""
    try:
        data = json.loads(text[text.index("{") :])
        return _clean(str(data["clientVersion"]["gitVersion"]))
    except (ValueError, KeyError, TypeError):
        return _first(rf"^Client Version:\s*({_SEMVER})", text)


def parse_crictl_version(text: str) -> str | None:
    """`crictl --version`: `crictl version v1.31.1`."""
    return _first(rf"^crictl version\s+({_SEMVER})", text)


def parse_calicoctl_version(text: str) -> str | None:
    """`calicoctl version`: `Client Version:    v3.28.1` (the cluster part may fail; the client line is enough)."""
    return _first(rf"^Client Version:\s*({_SEMVER})", text)


def parse_cni_version(text: str) -> str | None:
    """A CNI plugin run bare prints `CNI loopback plugin v1.4.0`; Debian's build says `version unknown`,
    so the script adds `dpkg <package version>` for containernetworking-plugins."""
    v = _first(rf"^CNI \S+ plugin\s+({_SEMVER})", text)
    return v or _first(rf"^dpkg\s+(?:\d+:)?({_SEMVER}(?:[~+]\S*)?)", text)
