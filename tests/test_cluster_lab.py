"""The lab provider's pure parts: names, the Vagrantfile document, mirror and box inputs, the KVM
verdict, stale-lab rules and cleanup on interruption. No VM here (tests/integration/test_lab.py boots them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from harness.cluster.lab import accel, box, provider, setup
from harness.cluster.lab.cli import lab as lab_cli
from harness.cluster.lab.paths import lab_prefix
from harness.cluster.lab.provider import LabPaths, LabProvider, default_lab_name, default_spec
from harness.cluster.vagrant import VagrantEnv
from harness.errors import ClusterError
from harness.proc import CommandError


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / "state"))
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    monkeypatch.delenv("HARNESS_LAB_ACCEL", raising=False)


FAKE_BOX = box.Box(
    name="harness-bookworm-000000000000",
    kernel=Path("/boxes/vmlinuz"),
    initrd=Path("/boxes/initrd.img"),
    cmd_line=box.CMD_LINE,
    private_key=Path("/keys/id_ed25519"),
)


def test_prefixes_are_clean_and_distinct_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    assert lab_prefix("lab-gw0") == "ksh-lab-gw0"
    assert lab_prefix("My Lab_1") == "ksh-my-lab-1"
    assert lab_prefix("lab-gw0") != lab_prefix("lab-gw1")
    with pytest.raises(ValueError):
        lab_prefix("///")
    assert default_lab_name() == "lab"
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    assert default_lab_name() == "lab-gw3"
    assert LabProvider().lab_name == "lab-gw3"


def test_default_roles() -> None:
    spec = default_spec("x", 3, memory=512, cpus=2)
    assert [(n.name, n.roles) for n in spec.nodes] == [
        ("node1", ("control-plane", "etcd", "worker")),
        ("node2", ("etcd", "worker")),
        ("node3", ("etcd", "worker")),
    ]
    assert {(n.cpus, n.memory) for n in spec.nodes} == {(2, 512)}
    with pytest.raises(ClusterError):
        default_spec("x", 0)


def test_lab_id_qualifies_other_spec_names() -> None:
    p = LabProvider("gw0")
    assert p.lab_id(default_spec("gw0", 1)) == "gw0"
    assert p.lab_id(default_spec("three", 1)) == "gw0-three"


def test_document_points_vagrant_at_the_private_libvirtd_with_tcg() -> None:
    p = LabProvider("gw1")
    paths = LabPaths(lab_prefix("gw1"))
    doc = p.document(default_spec("gw1", 2), paths, FAKE_BOX, "tcg")
    opts = doc["provider_options"]
    socket = str(paths.root / "libvirt" / "run" / "libvirt-sock")
    assert opts["uri"] == opts["system_uri"] == f"qemu:///system?socket={socket}"
    assert (opts["driver"], opts["cpu_mode"], opts["cpu_model"]) == ("qemu", "custom", "qemu64")
    assert opts["default_prefix"] == "ksh-gw1-" and opts["management_network_name"] == "ksh-gw1-mgmt"
    assert opts["management_network_address"] == provider.lab_subnet("ksh-gw1")
    assert (opts["kernel"], opts["initrd"]) == ("/boxes/vmlinuz", "/boxes/initrd.img")
    assert "root=/dev/vda" in opts["cmd_line"] and "net.ifnames=0" in opts["cmd_line"]
    assert doc["box"] == FAKE_BOX.name and doc["ssh"]["private_key_path"] == "/keys/id_ed25519"
    assert doc["ssh"]["insert_key"] is False
    kvm = p.document(default_spec("gw1", 2), paths, FAKE_BOX, "kvm")["provider_options"]
    assert (kvm["driver"], kvm["cpu_mode"]) == ("kvm", "host-passthrough") and "cpu_model" not in kvm


@pytest.mark.skipif(shutil.which("vagrant") is None, reason="needs vagrant (and vagrant-libvirt) to load the options")
def test_vagrant_libvirt_accepts_every_lab_option(tmp_path: Path) -> None:
    """The Vagrantfile aborts on an option the provider lacks, so this proves each name is real."""
    paths = LabPaths(lab_prefix("opt"))
    doc = LabProvider("opt").document(default_spec("opt", 2), paths, FAKE_BOX, "tcg")
    env = VagrantEnv(tmp_path / "v", vagrant_home=tmp_path / "home")
    env.write(doc)
    try:
        statuses = env.status()
    except CommandError as e:
        if "vagrant-libvirt" in str(e) and "provider" in str(e) and "has no option" not in str(e):
            pytest.skip("vagrant-libvirt is not installed")
        raise
    assert [(s.name, s.provider) for s in statuses] == [("node1", "libvirt"), ("node2", "libvirt")]


def test_each_lab_gets_its_own_stable_subnet() -> None:
    a, b = provider.lab_subnet("ksh-lab-gw0"), provider.lab_subnet("ksh-lab-gw1")
    assert a != b and a == provider.lab_subnet("ksh-lab-gw0")
    assert a.startswith("10.") and a.endswith(".0/24")
    assert provider.lab_subnet("ksh-lab-gw0", {a}) not in (a,)  # taken by another lab: the next one


def testsubnets_in_use_are_read_from_other_labs_state() -> None:
    p = LabProvider("one")
    one = LabPaths("ksh-one")
    doc = p.document(default_spec("one", 1), one, FAKE_BOX, "tcg")
    _state(one, doc, None)
    taken = doc["provider_options"]["management_network_address"]
    assert provider.subnets_in_use(exclude="ksh-two") == {taken}
    assert provider.subnets_in_use(exclude="ksh-one") == set()


def test_control_socket_paths_fit(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HARNESS_STATE", str(tmp_path / ("deep" * 30)))
    paths = LabPaths("ksh-" + "x" * 24)
    assert len(str(paths.control_dir)) + 1 + 40 < 104  # %C is 40 hex characters; sun_path holds 108


DEB822 = """\
Types: deb-src
URIs: http://src.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://off.example/debian
Suites: bookworm
Components: main
Enabled: no

Types: deb
URIs: http://deb.example/debian/
Suites: bookworm bookworm-updates
Components: main contrib
"""


def test_mirror_from_sources() -> None:
    assert box.mirror_from_sources(DEB822, deb822=True) == "http://deb.example/debian"
    one_line = "# deb http://old/debian bookworm main\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main\n"
    assert box.mirror_from_sources(one_line, deb822=False) == "http://m.example/debian"
    assert box.mirror_from_sources("deb http://m/debian trixie main\n", deb822=False) is None


def test_mirror_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HARNESS_DEBIAN_MIRROR", "http://mine/debian")
    assert box.debian_mirror() == "http://mine/debian"


def test_box_hash_follows_every_input() -> None:
    base = box.box_inputs("http://m/debian", "ssh-ed25519 AAA key")
    h = box.box_hash(base)
    assert h == box.box_hash(box.box_inputs("http://m/debian", "ssh-ed25519 AAA key\n"))
    assert h != box.box_hash(box.box_inputs("http://other/debian", "ssh-ed25519 AAA key"))
    assert h != box.box_hash(box.box_inputs("http://m/debian", "ssh-ed25519 BBB key"))
    assert h != box.box_hash(box.box_inputs("http://m/debian", "ssh-ed25519 AAA key", ("jq",)))
    assert "dbus" in base["packages"] and "openssh-server" in base["packages"]  # type: ignore[operator]


def test_accel_override_and_no_kvm_device(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")

    def never(*_a: object, **_k: object) -> bool:
        raise AssertionError("no probe expected")

    monkeypatch.setattr(accel, "boots", never)
    monkeypatch.setenv("HARNESS_LAB_ACCEL", "kvm")
    assert accel.detect(kernel) == "kvm"
    monkeypatch.delenv("HARNESS_LAB_ACCEL")
    monkeypatch.setattr(accel.os, "access", lambda *_a: False)
    assert accel.detect(kernel) == "tcg"


def test_accel_probe_is_cached(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    calls: list[str] = []

    def boots(acc: str, _kernel: Path, timeout: float = 0) -> bool:
        calls.append(acc)
        return False  # the LAB.md hang

    monkeypatch.setattr(accel, "boots", boots)
    monkeypatch.setattr(accel.os, "access", lambda *_a: True)
    monkeypatch.setattr(accel, "_cache_key", lambda _k: "key")
    assert accel.detect(kernel) == "tcg"
    assert accel.detect(kernel) == "tcg"
    assert calls == ["kvm"]
    assert json.loads((tmp_path / "cache" / "lab" / "accel.json").read_text()) == {"key": "tcg"}


def test_kvm_probe_argv_boots_without_disk_and_exits() -> None:
    argv = accel.probe_argv("kvm", Path("/k"))
    assert argv[argv.index("-accel") + 1] == "kvm" and "-no-reboot" in argv and "-nic" in argv
    assert "panic=-1" in argv[-1]


def test_sigterm_during_up_raises_so_cleanup_runs() -> None:
    from harness import interrupt

    before = signal.getsignal(signal.SIGTERM)
    try:
        # Not a ClusterError: a HarnessError would be recorded as a failed step and the run would go on.
        with pytest.raises(interrupt.Terminated, match="SIGTERM"), provider.terminate_as_exception():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next statement
    finally:
        interrupt.reset()
    assert signal.getsignal(signal.SIGTERM) is before


@pytest.fixture
def fake_up(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """LabProvider.up with host, box and VMs replaced; returns the teardown calls."""
    torn: list[str] = []
    monkeypatch.setattr(provider, "check_prerequisites", lambda: None)
    monkeypatch.setattr(provider, "ensure_box", lambda: FAKE_BOX)
    monkeypatch.setattr(provider.accel, "detect", lambda _k: "tcg")
    monkeypatch.setattr(provider, "teardown", lambda paths: torn.append(paths.prefix))
    return torn


@pytest.mark.parametrize("exc", [KeyboardInterrupt, ClusterError])
def test_an_interrupted_up_is_torn_down(fake_up: list[str], monkeypatch: pytest.MonkeyPatch, exc: type) -> None:
    def create(*_a: object) -> None:
        raise exc("stop")

    monkeypatch.setattr(LabProvider, "_create", create)
    with pytest.raises(exc):
        LabProvider("x").up(default_spec("x", 1))
    # once for a stale lab of the same name before creating, once for the half-made one
    assert fake_up == ["ksh-x", "ksh-x"]


def _state(paths: LabPaths, doc: dict, owner: dict | None, ready: bool = True) -> None:
    paths.root.mkdir(parents=True)
    paths.state.write_text(json.dumps({"document": doc, "owner": owner, "ready": ready, "nodes": []}))


def test_stale_and_busy_labs(tmp_path: Path) -> None:
    p = LabProvider("x")
    paths = LabPaths("ksh-x")
    doc = p.document(default_spec("x", 1), paths, FAKE_BOX, "tcg")
    dead = {"pid": 2**22 + 7, "start": "1"}  # beyond pid_max's default: no such process
    _state(paths, doc, dead)
    assert p._reusable(paths, doc) is None  # its owner died: stale, the caller tears it down
    paths.state.write_text(json.dumps({"document": doc, "owner": provider.owner_record(), "ready": False}))
    assert p._reusable(paths, doc) is None  # `up` never finished
    other = {"pid": 1, "start": provider.process_start(1)}
    paths.state.write_text(json.dumps({"document": doc, "owner": other, "ready": True}))
    with pytest.raises(ClusterError, match="in use by process 1"):
        p._reusable(paths, doc)
    paths.state.write_text(json.dumps({"document": {**doc, "box": "other"}, "owner": None, "ready": True}))
    assert p._reusable(paths, doc) is None  # another shape: replaced


def test_nothing_is_left_of_a_lab_that_never_was() -> None:
    assert provider.leftovers(LabPaths("ksh-never-created")) == []


@pytest.mark.parametrize(("backend", "package"), [("qemu", "vagrant-libvirt"), ("lxc", "lxc")])
def test_cli_reports_missing_prerequisites_with_exit_code_3(
    monkeypatch: pytest.MonkeyPatch, backend: str, package: str
) -> None:
    monkeypatch.setattr(setup, "missing_packages", lambda: [package])
    res = CliRunner().invoke(lab_cli, ["up", "--nodes", "1", "--name", "cli", "--backend", backend])
    assert res.exit_code == 3
    assert f"not installed: {package}." in res.output or "needs root" in res.output


def test_cli_commands_on_a_lab_that_is_not_up() -> None:
    res = CliRunner().invoke(lab_cli, ["snapshot", "s", "--name", "absent"])
    assert res.exit_code == 1 and "no lab named 'absent' is up" in res.output
    assert CliRunner().invoke(lab_cli, ["status"]).output.strip() == "no labs"


def test_a_kept_lab_serves_other_roles_on_the_same_machines(tmp_path: Path) -> None:
    """Roles are inventory, not hardware: a lab kept by a scenario with a control-plane node is the lab of
    a scenario with other roles on the same machines (the main job's fault run re-deployed without this)."""
    p = LabProvider("x")
    paths = LabPaths("ksh-x")
    doc = p.document(default_spec("x", 2), paths, FAKE_BOX, "tcg")
    kept = {**doc, "nodes": [{**n, "roles": ["control-plane", "etcd"]} for n in doc["nodes"]]}
    other = {"pid": 1, "start": provider.process_start(1)}
    _state(paths, kept, other)
    with pytest.raises(ClusterError, match="in use by process 1"):  # past the document: the same lab
        p._reusable(paths, doc)
    bigger = {**doc, "nodes": [{**n, "memory": n["memory"] * 2} for n in doc["nodes"]]}
    paths.state.write_text(json.dumps({"document": bigger, "owner": other, "ready": True}))
    assert p._reusable(paths, doc) is None  # other machines: replaced
