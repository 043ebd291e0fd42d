"""What the harness knows of each component Kubespray installs, in one table.

One `Component` per component: the Kubespray variable that sets its version, the tags that move it
and the phase of the upgrade order its change belongs to, the binaries it puts on a node and how
the probe asks each for its version, its systemd units, the roles whose nodes carry it, whether the
lab installer deploys it, where the lab's files repo takes it from (Debian packages, or the Kubernetes
binaries built from source), and Kubespray's checksum variables for its files. The plan, the probes, the checks, the scenario model, the files
repo and the Kubespray driver read it through the small functions below; none keeps a list of its own.

A name the probes report is a component's (`etcd`, `kube-apiserver`) or one of its binaries'
(`etcdctl`, `calicoctl`): `observed_as` maps the second kind to the first.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from harness.components import parsers as pv

EVERY_NODE = "*"  # in `Component.roles`: every node, whatever its roles


@dataclass(frozen=True)
class Binary:
    """A file a component installs on a node."""

    name: str  # the file, and the name the probe reports its version under
    argv: str | None = None  # the command the probe runs for its version; None: not probed
    parse: Callable[[str], str | None] | None = None  # reads what `argv` prints
    always: bool = True  # every release ships it (etcdutl arrived with etcd 3.5): checked only where present if not
    ordered: bool = True  # its version change counts in the component's phase of the upgrade order
    dirs: tuple[str, ...] = ()  # looked for (argv's first word) in these directories instead of PATH
    dpkg: str | None = None  # the Debian package whose version the probe prints too (Debian's build prints none)
    # The systemd unit whose main process is this binary: the probe asks the file that process runs,
    # not the first copy on PATH (a distribution's older copy may sit beside Kubespray's).
    unit: str | None = None

    @property
    def probed(self) -> bool:
        return self.argv is not None and self.parse is not None


@dataclass(frozen=True)
class Checksum:
    """Kubespray's checksum dict for one file (`[arch][version]: sha256`) and the single variable a
    user sets instead to bring a version the dict lacks."""

    table: str
    single: str


@dataclass(frozen=True)
class DebianSource:
    """Where the lab's files repo takes a component from and how it repacks it as the upstream file."""

    packages: tuple[str, ...]  # Debian binary packages holding its binaries
    versions: tuple[tuple[str, str], ...]  # (suite, upstream version) the repo builds by default
    url_path: str  # the release file under `files_repo`, as Kubespray's download URL builds it ({v}, {arch})
    archive_top: str | None  # the tarball's top directory ({v}, {arch}); None: the file is the binary itself
    url_var: str  # Kubespray's download URL variable

    def version_in(self, suite: str) -> str:
        return dict(self.versions)[suite]


@dataclass(frozen=True)
class KubernetesBuild:
    """The lab's files repo holds a Kubernetes binary from the sets built from source outside the harness
    (no Kubernetes release can be downloaded offline; files_repo.kubernetes_source()): one folder per
    labelled set, the file named as the component, put where Kubespray's `dl_k8s_io_url` downloads it."""

    sets: tuple[str, ...]  # the labelled sets (kube_version) the repo holds by default, oldest first
    url_path: str  # the file under `files_repo`, as Kubespray's download URL builds it ({v}, {arch})
    url_var: str | None  # Kubespray's download URL variable; None: Kubespray downloads no such file (kubeadm runs it as an image)


@dataclass(frozen=True)
class Component:
    name: str
    var: str  # the Kubespray variable that sets its version
    tags: tuple[str, ...] = ()  # `cluster.yml --tags` that move it
    # The phase of the upgrade order (harness.checks.order.PHASES) its version change belongs to;
    # None: not ordered (kubeadm and kubectl are copied at several points; crictl's and helm's
    # changes have never been ordered).
    phase: str | None = None
    binaries: tuple[Binary, ...] = ()
    units: tuple[str, ...] = ()  # systemd units it runs as, on the nodes of `roles`
    roles: tuple[str, ...] = ()  # roles whose nodes must carry it (EVERY_NODE: all nodes)
    elsewhere: bool = False  # also found on other nodes: checked there where present
    from_api: bool = False  # the Kubernetes API reports its version (apiserver /version, nodeInfo, pod images)
    static_pod: bool = False  # runs as a kubeadm static pod, `<name>-<node>` in kube-system
    # Kubespray deploys it unless the inventory turns it off: a ref bump re-deploys it at the new ref's default.
    default_on: bool = False
    lab: bool = False  # the lab installer (playbooks/lab/) deploys it
    lab_kube: bool = False  # the lab installer deploys it when the scenario pins kube_version
    debian: DebianSource | None = None  # the lab's files repo holds it, built from these Debian packages
    built: KubernetesBuild | None = None  # the lab's files repo holds it, from the Kubernetes binaries built from source
    checksums: tuple[Checksum, ...] = ()  # Kubespray's checksums for its files; none: images, pulled by tag

    @property
    def reported(self) -> tuple[str, ...]:
        """The names its versions are reported under: its probed binaries, else its own name (the API's)."""
        return tuple(b.name for b in self.binaries if b.probed) or (self.name,)

    @property
    def required(self) -> tuple[str, ...]:
        """What a node of its roles must show: the probed binaries every release ships, else its name."""
        return tuple(b.name for b in self.binaries if b.probed and b.always) or (self.name,)


_CP_WORKER = ("control-plane", "worker")
_K8S = "kube_version"
# The Kubernetes sets the lab has (../shared/kubernetes/README.md): both are the same 1.32-beta code,
# labelled v1.31.9 and v1.32.0, so an upgrade can be exercised offline, not a change between minors.
_K8S_SETS = ("1.31.9", "1.32.0")


def _k8s(name: str, url_var: str | None = None) -> KubernetesBuild:
    """Kubespray's kubelet/kubectl/kubeadm URL (`{{ dl_k8s_io_url }}/release/v{{ kube_version }}/bin/linux/
    {{ image_arch }}/NAME`); the server binaries Kubespray never downloads go into the same folder."""
    return KubernetesBuild(_K8S_SETS, f"dl.k8s.io/release/v{{v}}/bin/linux/{{arch}}/{name}", url_var)


COMPONENTS: tuple[Component, ...] = (
    Component(
        "etcd", "etcd_version", ("etcd",), "etcd",
        binaries=(
            Binary("etcd", "etcd --version", pv.parse_etcd_version, unit="etcd"),
            # Kubespray installs etcdctl and etcdutl from its etcd role and again from the control
            # plane's kubeadm-etcd.yml: their change is no mark of the etcd phase.
            Binary("etcdctl", "etcdctl version", pv.parse_etcdctl_version, ordered=False),
            Binary("etcdutl", "etcdutl version", pv.parse_etcdutl_version, always=False, ordered=False),
        ),
        units=("etcd",), roles=("etcd",), default_on=True, lab=True,
        debian=DebianSource(
            ("etcd-server", "etcd-client"), (("bookworm", "3.4.23"), ("trixie", "3.5.16"), ("sid", "3.5.30")),
            "github.com/etcd-io/etcd/releases/download/v{v}/etcd-v{v}-linux-{arch}.tar.gz",
            "etcd-v{v}-linux-{arch}", "etcd_download_url",
        ),
        checksums=(Checksum("etcd_binary_checksums", "etcd_binary_checksum"),),
    ),
    Component(
        "containerd", "containerd_version", ("container-engine",), "container-engine",
        binaries=(
            Binary("containerd", "containerd --version", pv.parse_containerd_version, unit="containerd"),
            Binary("containerd-shim-runc-v2"),
            Binary("ctr"),
            Binary("containerd-shim", always=False),
            Binary("containerd-shim-runc-v1", always=False),
            Binary("containerd-stress", always=False),
        ),
        units=("containerd",), roles=(EVERY_NODE,), default_on=True, lab=True,
        debian=DebianSource(
            ("containerd",), (("bookworm", "1.6.20"), ("trixie", "1.7.24"), ("sid", "2.1.9")),
            # containerd_static_binary is false by default: the dynamic tarball's name.
            "github.com/containerd/containerd/releases/download/v{v}/containerd-{v}-linux-{arch}.tar.gz",
            "bin", "containerd_download_url",  # Kubespray unpacks it with --strip-components=1
        ),
        checksums=(Checksum("containerd_archive_checksums", "containerd_archive_checksum"),),
    ),
    Component(
        "runc", "runc_version", ("container-engine",), "container-engine",
        binaries=(Binary("runc", "runc --version", pv.parse_runc_version),),
        roles=(EVERY_NODE,), default_on=True, lab=True,
        debian=DebianSource(
            ("runc",), (("bookworm", "1.1.5"), ("trixie", "1.1.15"), ("sid", "1.3.6")),
            "github.com/opencontainers/runc/releases/download/v{v}/runc.{arch}", None, "runc_download_url",
        ),
        checksums=(Checksum("runc_checksums", "runc_binary_checksum"),),
    ),
    Component(
        "crictl", "crictl_version", ("container-engine",),
        binaries=(Binary("crictl", "crictl --version", pv.parse_crictl_version),),
        roles=_CP_WORKER, elsewhere=True, default_on=True,  # elsewhere: etcd-only hosts may have it
        checksums=(Checksum("crictl_checksums", "crictl_binary_checksum"),),
    ),
    Component(
        "kubelet", _K8S, ("node",), "node",
        binaries=(Binary("kubelet", "kubelet --version", pv.parse_kubelet_version, unit="kubelet"),),
        units=("kubelet",), roles=_CP_WORKER, from_api=True, default_on=True, lab_kube=True,
        built=_k8s("kubelet", "kubelet_download_url"),
        checksums=(Checksum("kubelet_checksums", "kubelet_binary_checksum"),),
    ),
    # The DaemonSet `kubeadm upgrade apply` rolls, so the control-plane tag moves it; its node-side
    # tasks (tag kube-proxy) run with the kubelet's. On every Kubernetes node unless the inventory
    # sets kube_proxy_remove (the expectation then drops it).
    Component("kube-proxy", _K8S, ("control-plane",), "node", roles=_CP_WORKER, from_api=True, default_on=True, lab_kube=True,
              built=_k8s("kube-proxy")),
    Component("kube-apiserver", _K8S, ("control-plane",), "control-plane", roles=("control-plane",),
              from_api=True, static_pod=True, default_on=True, lab_kube=True, built=_k8s("kube-apiserver")),
    Component("kube-controller-manager", _K8S, ("control-plane",), "control-plane", roles=("control-plane",),
              from_api=True, static_pod=True, default_on=True, lab_kube=True, built=_k8s("kube-controller-manager")),
    Component("kube-scheduler", _K8S, ("control-plane",), "control-plane", roles=("control-plane",),
              from_api=True, static_pod=True, default_on=True, lab_kube=True, built=_k8s("kube-scheduler")),
    Component(
        "kubeadm", _K8S, ("control-plane", "kubeadm"),
        binaries=(Binary("kubeadm", "kubeadm version -o short", pv.parse_kubeadm_version),),
        roles=_CP_WORKER, default_on=True, built=_k8s("kubeadm", "kubeadm_download_url"),
        checksums=(Checksum("kubeadm_checksums", "kubeadm_binary_checksum"),),
    ),
    Component(
        "kubectl", _K8S, ("control-plane",),
        binaries=(Binary("kubectl", "kubectl version --client -o json", pv.parse_kubectl_version),),
        roles=("control-plane",), elsewhere=True, default_on=True, lab_kube=True,
        built=_k8s("kubectl", "kubectl_download_url"),
        checksums=(Checksum("kubectl_checksums", "kubectl_binary_checksum"),),
    ),
    Component(
        "cni", "cni_version", ("network",), "network",
        # Kubespray puts the CNI plugins in /opt/cni/bin, Debian in /usr/lib/cni; any plugin run bare
        # prints its version, except Debian's build, whose package version stands in.
        binaries=(Binary("cni", "loopback", pv.parse_cni_version, dirs=("/opt/cni/bin", "/usr/lib/cni"),
                         dpkg="containernetworking-plugins"),),
        roles=_CP_WORKER, elsewhere=True, default_on=True,
        checksums=(Checksum("cni_binary_checksums", "cni_binary_checksum"),),
    ),
    Component(
        "calico", "calico_version", ("network",), "network",
        binaries=(Binary("calicoctl", "calicoctl version", pv.parse_calicoctl_version),),
        elsewhere=True, default_on=True,  # calicoctl only where Calico is the network plugin
        checksums=(Checksum("calicoctl_binary_checksums", "calicoctl_binary_checksum"),),
    ),
    Component("flannel", "flannel_version", ("network",), "network"),
    Component("cilium", "cilium_version", ("network",), "network"),
    Component("coredns", "coredns_version", ("apps",), "apps", default_on=True),
    Component("helm", "helm_version", ("helm",),
              checksums=(Checksum("helm_archive_checksums", "helm_archive_checksum"),)),
)

_BY_NAME: dict[str, Component] = {c.name: c for c in COMPONENTS}
_OWNER: dict[str, Component] = {**{b.name: c for c in COMPONENTS for b in c.binaries}, **_BY_NAME}


# -- lookups -----------------------------------------------------------------------------------


def find(name: str) -> Component | None:
    """The component of this name (a component's name, not a binary's)."""
    return _BY_NAME.get(name)


def observed_as(name: str) -> str:
    """The component a reported name belongs to (`etcdctl` -> `etcd`); an unknown name stands for itself."""
    c = _OWNER.get(name)
    return c.name if c else name


def version_var(name: str) -> str | None:
    """The Kubespray variable that sets the version of a component or of one of its binaries."""
    c = _OWNER.get(name)
    return c.var if c else None


def version_vars() -> tuple[str, ...]:
    """Every version variable the table knows, once each."""
    return tuple(dict.fromkeys(c.var for c in COMPONENTS))


def components_of_var(var: str) -> list[str]:
    """The components a version variable sets (`kube_version`: kubelet, kube-apiserver, ...); a variable
    the table does not know names one component after itself (an older release's `docker_version`)."""
    return [c.name for c in COMPONENTS if c.var == var] or [var.removesuffix("_version")]


def moved_by(tag: str) -> tuple[str, ...]:
    """The components `cluster.yml --tags=TAG` moves."""
    return tuple(c.name for c in COMPONENTS if tag in c.tags)


def tags() -> tuple[str, ...]:
    """Every tag that moves a component, once each."""
    return tuple(dict.fromkeys(t for c in COMPONENTS for t in c.tags))


def tagged() -> frozenset[str]:
    """The components some tag moves."""
    return frozenset(c.name for c in COMPONENTS if c.tags)


def ref_bump_components() -> frozenset[str]:
    """What a Kubespray ref bump re-deploys at the new ref's defaults, whatever the inventory enables."""
    return frozenset(c.name for c in COMPONENTS if c.default_on)


def checksums_of_var(var: str) -> tuple[Checksum, ...]:
    """The checksums a version of `var` needs (kube_version: kubelet's, kubeadm's and kubectl's)."""
    return tuple(s for c in COMPONENTS if c.var == var for s in c.checksums)


# -- roles, probes and order -------------------------------------------------------------------


def _deployed_by(installer: str, kube: bool = False) -> tuple[Component, ...]:
    if installer == "lab":
        return tuple(c for c in COMPONENTS if c.lab or (kube and c.lab_kube))
    if installer == "kubespray":
        return COMPONENTS
    raise ValueError(f"unknown installer {installer!r}: kubespray or lab")


def on_roles(roles: Iterable[str], installer: str = "kubespray", kube: bool = False) -> list[Component]:
    """Components a node of these roles carries when `installer` deployed it (the lab's Kubernetes
    with `kube`: a scenario that pins kube_version): those on every node first, then each role's in
    the order the roles are given."""
    deployed = _deployed_by(installer, kube)
    out = [c for c in deployed if EVERY_NODE in c.roles]
    for role in roles:
        out += [c for c in deployed if role in c.roles and c not in out]
    return out


def optional_names() -> tuple[str, ...]:
    """Reported names checked only where present: binaries some releases lack (etcdutl) and
    components found beyond the roles that must carry them (crictl, kubectl, CNI, calicoctl)."""
    out: list[str] = []
    for c in COMPONENTS:
        out += [b.name for b in c.binaries if b.probed and not b.always]
        if c.elsewhere:
            out += [n for n in c.reported if n not in out]
    return tuple(out)


def host_binaries() -> tuple[Binary, ...]:
    """Every binary the host probe asks for its version, in table order."""
    return tuple(b for c in COMPONENTS for b in c.binaries if b.probed)


def api_reported() -> frozenset[str]:
    """Components whose running version the Kubernetes API reports (the kubelet's, whatever its binary says)."""
    return frozenset(c.name for c in COMPONENTS if c.from_api)


def api_only() -> tuple[str, ...]:
    """Components only the Kubernetes API can show: no binary on the node says their version."""
    return tuple(c.name for c in COMPONENTS if c.from_api and not any(b.probed for b in c.binaries))


def static_pods() -> tuple[str, ...]:
    """The control plane's static pods (kubeadm's), in table order."""
    return tuple(c.name for c in COMPONENTS if c.static_pod)


def sample_phases() -> dict[str, str]:
    """Reported name -> the phase of the upgrade order its version change belongs to."""
    out: dict[str, str] = {}
    for c in COMPONENTS:
        if c.phase is None:
            continue
        out[c.name] = c.phase
        out.update({b.name: c.phase for b in c.binaries if b.probed and b.ordered})
    return out


# -- the lab ---------------------------------------------------------------------------------


def lab_version_vars() -> tuple[str, ...]:
    """The version variables the lab installer reads: its components' and `kube_version` (Kubernetes,
    from the binaries built from source: components with a `built` source)."""
    return (*(c.var for c in lab_components()), *sorted({c.var for c in kubernetes_components()}))


def lab_components() -> tuple[Component, ...]:
    """What the lab installer deploys."""
    return tuple(c for c in COMPONENTS if c.lab)


def repo_components() -> dict[str, Component]:
    """What the lab's files repo can hold, by name, each with its source (Debian or a Kubernetes build)."""
    return {c.name: c for c in COMPONENTS if c.debian is not None or c.built is not None}


def pins_kubernetes(versions: Mapping[str, str]) -> bool:
    """Whether component -> version pins any Kubernetes component (the lab then deploys Kubernetes)."""
    return any(c.name in versions for c in kubernetes_components())


def kubernetes_components() -> tuple[Component, ...]:
    """The Kubernetes binaries the lab's files repo can hold (kubelet, kube-apiserver, ...), in table order."""
    return tuple(c for c in COMPONENTS if c.built is not None)


def by_component(version_vars: Mapping[str, str]) -> dict[str, str]:
    """component -> version, from version variable -> version (`etcd_version: 3.5.16` -> etcd)."""
    return {c.name: version_vars[c.var] for c in COMPONENTS if c.var in version_vars}
