"""The inventory and group_vars the harness hands to Kubespray (or the lab installer).

The hosts and groups come from the `Cluster`; the variables from the scenario. Both are written
into an ansible-runner private data dir (`inventory/hosts.yml`, `inventory/group_vars/all/harness.yml`)
so Ansible loads the group_vars next to the inventory without extra flags.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from harness import userinput
from harness.errors import ScenarioError
from harness.plan.versions import Ref, Version, kubespray_uses_v_prefix

_NEVER_V = frozenset({"containerd_version", "docker_version", "docker_containerd_version"})

# Kubespray's docs/operations/offline-environment.md (v2.28 form): where each binary comes from
# when everything is served by one `files_repo`. `{v}` is the literal "v" refs >= 2.28 need
# because their versions are written without it.
_OFFLINE_URLS: dict[str, str] = {
    "kubeadm_download_url": "{{{{ files_repo }}}}/kubernetes/{v}{{{{ kube_version }}}}/kubeadm",
    "kubectl_download_url": "{{{{ files_repo }}}}/kubernetes/{v}{{{{ kube_version }}}}/kubectl",
    "kubelet_download_url": "{{{{ files_repo }}}}/kubernetes/{v}{{{{ kube_version }}}}/kubelet",
    "etcd_download_url": "{{{{ files_repo }}}}/kubernetes/etcd/etcd-{v}{{{{ etcd_version }}}}-linux-{{{{ image_arch }}}}.tar.gz",
    "cni_download_url": "{{{{ files_repo }}}}/kubernetes/cni/cni-plugins-linux-{{{{ image_arch }}}}-{v}{{{{ cni_version }}}}.tgz",
    "crictl_download_url": "{{{{ files_repo }}}}/kubernetes/cri-tools/crictl-{v}{{{{ crictl_version }}}}"
    "-{{{{ ansible_system | lower }}}}-{{{{ image_arch }}}}.tar.gz",
    "calicoctl_download_url": "{{{{ files_repo }}}}/kubernetes/calico/{v}{{{{ calico_ctl_version }}}}"
    "/calicoctl-linux-{{{{ image_arch }}}}",
    "calico_crds_download_url": "{{{{ files_repo }}}}/kubernetes/calico/{v}{{{{ calico_version }}}}.tar.gz",
    "containerd_download_url": "{{{{ files_repo }}}}/containerd-{{{{ containerd_version }}}}-linux-{{{{ image_arch }}}}.tar.gz",
    "runc_download_url": "{{{{ files_repo }}}}/runc.{{{{ image_arch }}}}",
    "nerdctl_download_url": "{{{{ files_repo }}}}/nerdctl-{{{{ nerdctl_version }}}}"
    "-{{{{ ansible_system | lower }}}}-{{{{ image_arch }}}}.tar.gz",
    "get_helm_url": "{{{{ files_repo }}}}/get.helm.sh",
}
# The v2.31 doc's mirror-the-domains variables, which newer download defaults build on.
_OFFLINE_HOSTS: dict[str, str] = {
    "github_url": "{{ files_repo }}/github.com",
    "dl_k8s_io_url": "{{ files_repo }}/dl.k8s.io",
    "storage_googleapis_url": "{{ files_repo }}/storage.googleapis.com",
}


def render_versions(versions: Mapping[str, str], ref: Ref | None) -> dict[str, str]:
    """Versions in the style the ref expects: `v1.28.6` before Kubespray 2.28, `1.35.4` since.

    containerd and docker never carried the `v` in Kubespray; they stay bare at every ref.
    """
    with_v = kubespray_uses_v_prefix(ref)
    return {var: Version.parse(value).render(with_v and var not in _NEVER_V) for var, value in versions.items()}


def offline_vars(files_repo: str, ref: Ref | None) -> dict[str, str]:
    """`files_repo` and the `*_download_url` variables derived from it."""
    v = "" if kubespray_uses_v_prefix(ref) else "v"
    out: dict[str, str] = {"files_repo": files_repo.rstrip("/")}
    out.update({k: t.format(v=v) for k, t in _OFFLINE_URLS.items()})
    out.update(_OFFLINE_HOSTS)
    return out


def mirror_host_vars(files_repo: str) -> dict[str, str]:
    """`files_repo` and the mirror-the-domains variables only: Kubespray's own `*_download_url`
    defaults then fetch from `files_repo/github.com/...`, the layout the lab's files repo serves."""
    return {"files_repo": files_repo.rstrip("/"), **_OFFLINE_HOSTS}


def harness_vars(
    versions: Mapping[str, str],
    ref: Ref | None,
    *,
    files_repo: str | None = None,
    extra_vars: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything the harness sets for a run; the scenario's extra_vars win over the harness's choices."""
    out: dict[str, Any] = {"kubeconfig_localhost": True}
    out.update(render_versions(versions, ref))
    if files_repo:
        out.update(offline_vars(files_repo, ref))
    out.update(dict(extra_vars or {}))
    return out


def write_inventory(
    private_data_dir: Path,
    inventory: Mapping[str, Any],
    group_vars: Mapping[str, Any],
) -> Path:
    """Write `inventory/hosts.yml` and `inventory/group_vars/all/harness.yml`; returns the inventory dir."""
    inv_dir = private_data_dir / "inventory"
    gv = inv_dir / "group_vars" / "all"
    gv.mkdir(parents=True, exist_ok=True)
    (inv_dir / "hosts.yml").write_text(yaml.safe_dump(dict(inventory), sort_keys=False, default_flow_style=False))
    header = "# Written by kubespray-upgrade-harness for this run; edits are overwritten.\n"
    (gv / "harness.yml").write_text(header + yaml.safe_dump(dict(group_vars), sort_keys=True, default_flow_style=False))
    return inv_dir


# The extensions Ansible's yaml inventory plugin reads (its `yaml_extensions` default); other files are INI.
_YAML_INVENTORY = (".yaml", ".yml", ".json")


def check_inventory_file(path: str | Path) -> None:
    """An inventory the user names, checked before Ansible reads it: a regular file of bounded size
    (Ansible would wait on a FIFO), and, when it is YAML by its name, a mapping of groups. Ansible
    tries a YAML list with every inventory plugin in turn and prints a screenful of warnings before
    "no hosts"; this says what is wrong in one line."""
    text = userinput.read_text(path, what="an Ansible inventory")
    file = userinput.shown(path)
    if not text.strip():
        raise ScenarioError(file, None, None, "empty: no hosts in it")
    if Path(path).suffix.lower() not in _YAML_INVENTORY:
        return  # INI (or a format another plugin reads): Ansible's own parser judges it
    data = userinput.load_yaml(text, file)
    if data is None:
        raise ScenarioError(file, None, None, "empty: no hosts in it (only comments)")
    if not isinstance(data, Mapping):
        raise ScenarioError(
            file, None, None,
            f"a YAML inventory is a mapping of groups (all: {{hosts: {{node1: ...}}}}), not {userinput.yaml_kind(data)}",
        )
