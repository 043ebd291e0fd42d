"""Kubespray sources, read per ref: worktrees, per-ref virtualenvs, real tags and default versions.

Everything is read from the ref the user names, never from a table in the harness: each release
moves its files, renames tags and pins its own Ansible. Worktrees, venvs and tag lists are cached
under `settings.cache_dir() / "kubespray"` and reused across runs (and xdist workers, via locks).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from harness import components, proc, resources, settings
from harness.errors import HarnessError, InstallerError, PlanError
from harness.plan.tags import check_tags_exist
from harness.plan.versions import Ref, Version
from harness.settings import file_lock

Progress = Callable[[str], None]
VenvBuilder = Callable[[Path, Path, Progress], None]

# Where defaults live, oldest layout first; later files override earlier ones, vars override defaults.
#  <= v2.24: roles/download/defaults/main.yml (versions and checksums) + roles/kubespray-defaults/defaults/main.yaml
#  v2.25-27: roles/kubespray-defaults/defaults/main/{main,download,checksums}.yml
#  >= v2.28: roles/kubespray_defaults/defaults/main/*.yml + vars/main/{main,checksums}.yml (templated defaults)
_DEFAULT_DIRS = (
    "roles/download/defaults",
    "roles/kubespray-defaults/defaults",
    "roles/kubespray_defaults/defaults",
    "roles/kubespray-defaults/vars",
    "roles/kubespray_defaults/vars",
)

# A Kubespray inventory with its groups and no hosts: enough for --list-tags/--list-tasks.
_EMPTY_INVENTORY = (
    "[etcd]\n[kube_control_plane]\n[kube_node]\n[calico_rr]\n"
    "[k8s_cluster:children]\nkube_control_plane\nkube_node\n"
)

# The harness's own playbook that templates a ref's variables (run in the ref's venv).
RESOLVE_PLAYBOOK = resources.playbooks_dir() / "kubespray" / "resolve-vars.yml"
# Host facts some defaults are built from; the lab's and every supported node's (amd64 Linux).
_RESOLVE_FACTS: dict[str, str] = {"ansible_architecture": "x86_64", "ansible_system": "Linux"}

_TASK_TAGS = re.compile(r"^\s*TASK TAGS:\s*\[(?P<tags>.*)\]\s*$")
_PLAY = re.compile(r"^\s*play #\d+ \((?P<hosts>.*?)\):\s*(?P<name>.*?)\tTAGS:")
_TASK = re.compile(r"^\s{6,}(?P<name>\S.*?)\tTAGS:\s*\[(?P<tags>.*)\]\s*$")


@dataclass(frozen=True)
class ListedTask:
    """One task `--list-tasks` says a run would execute (static imports only, as Ansible lists them)."""

    play: str
    name: str
    tags: frozenset[str]


def _split_tags(text: str) -> set[str]:
    return {t.strip() for t in text.split(",") if t.strip()}


def parse_list_tags(stdout: str) -> frozenset[str]:
    """Every tag in `ansible-playbook --list-tags` output (the `TASK TAGS: [...]` lines)."""
    tags: set[str] = set()
    for line in stdout.splitlines():
        m = _TASK_TAGS.match(line)
        if m:
            tags |= _split_tags(m["tags"])
    return frozenset(tags)


def parse_list_tasks(stdout: str) -> list[ListedTask]:
    """Tasks from `ansible-playbook --list-tasks` output, in order, with the play they belong to."""
    out: list[ListedTask] = []
    play = ""
    for line in stdout.splitlines():
        pm = _PLAY.match(line)
        if pm:
            play = pm["name"]
            continue
        tm = _TASK.match(line)
        if tm:
            out.append(ListedTask(play, tm["name"], frozenset(_split_tags(tm["tags"]))))
    return out


def _run_listing(binary: Path, project_dir: Path, playbook: str, args: Iterable[str], timeout: float) -> proc.Result:
    """`ansible-playbook --list-*` against the groups without hosts (no "could not match" warnings), in
    an inventory of its own: listings run side by side (the plan step starts them on threads)."""
    with tempfile.TemporaryDirectory(prefix="harness-list-") as tmp:
        inv = Path(tmp) / "groups.ini"
        inv.write_text(_EMPTY_INVENTORY)
        return proc.run([str(binary), "-i", str(inv), playbook, *args], cwd=str(project_dir), check=False,
                        timeout=timeout)


def _list_playbook(project_dir: Path, playbook: str, args: list[str], ansible_playbook: Path | None) -> str:
    binary = ansible_playbook or Path(sys.executable).parent / "ansible-playbook"
    r = _run_listing(binary, project_dir, playbook, args, timeout=300)
    if not r.ok:
        raise InstallerError(
            f"`ansible-playbook {playbook} {' '.join(args)}` failed in {project_dir} (rc={r.rc}): {r.stderr.strip()[-500:]}"
        )
    return r.stdout


def list_playbook_tags(project_dir: Path, playbook: str, ansible_playbook: Path | None = None) -> frozenset[str]:
    """`--list-tags` of any playbook (the lab installer's) with the harness's own Ansible by default."""
    return parse_list_tags(_list_playbook(project_dir, playbook, ["--list-tags"], ansible_playbook))


def list_playbook_tasks(
    project_dir: Path, playbook: str, tags: Iterable[str] = (), ansible_playbook: Path | None = None
) -> list[ListedTask]:
    """`--list-tasks` of any playbook: what a (tagged) run would execute, without running it."""
    tag_list = list(tags)
    args = ["--list-tasks"] + (["--tags", ",".join(tag_list)] if tag_list else [])
    return parse_list_tasks(_list_playbook(project_dir, playbook, args, ansible_playbook))


def build_venv(dest: Path, requirements: Path, progress: Progress) -> None:
    """`python -m venv` + `pip install -r`: the ref's own Ansible, isolated from the harness's."""
    progress(f"creating virtualenv {dest}")
    proc.run([sys.executable, "-m", "venv", str(dest)], timeout=300)
    pins = [ln.strip() for ln in requirements.read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    progress(f"installing {len(pins)} requirement(s): {', '.join(pins) or '(none)'}")
    proc.run(
        [str(dest / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", "-r", str(requirements)],
        timeout=1800,
    )


def _looks_like_url(source: str) -> bool:
    return "://" in source or source.startswith("git@")


def _last_lines(r: proc.Result, n: int = 15) -> str:
    """The end of what a failed Ansible run said: where its error is."""
    return "\n".join((r.stderr or r.stdout).strip().splitlines()[-n:])


def _bare_without_refs(path: Path) -> bool:
    """A bare repository whose refs are all in packed-refs and whose empty `refs/` is missing: git
    does not recognise it, though nothing of it is lost."""
    return (path / "HEAD").is_file() and (path / "objects").is_dir() and not (path / "refs").exists()


class NotKubespray(InstallerError):
    """The path given for Kubespray is not a Kubespray repository's top level: bad input (exit 2)."""

    exit_code = 2


# What every Kubespray release has at its top level (upgrade-cluster.yml since 2016, cluster.yml always).
KUBESPRAY_PLAYBOOKS = ("cluster.yml", "upgrade-cluster.yml")


def _own_git_dir(path: Path, rev_parse: str) -> Path:
    """The repository at `path` itself, from `git rev-parse --is-bare-repository --absolute-git-dir
    --show-cdup` run there. git searches upwards: a folder inside another work tree (or a bare
    repository's `objects/`) would give the enclosing repository, whose tags are not Kubespray's."""
    lines = rev_parse.splitlines()
    bare, git_dir = lines[0].strip() == "true", Path(lines[1].strip())
    cdup = lines[2].strip() if len(lines) > 2 else ""
    if bare and git_dir.resolve() != path:
        raise NotKubespray(f"{path} is inside the git repository {git_dir}, not a repository's top level:"
                             " give the Kubespray checkout or bare repository itself")
    if not bare and cdup:
        top = (path / cdup).resolve()
        raise NotKubespray(f"{path} is a folder inside the git work tree {top}, not a Kubespray checkout's"
                             " top level: give the Kubespray checkout itself")
    return git_dir


def _check_is_kubespray(path: Path, git_dir: Path) -> None:
    """A repository with none of Kubespray's playbooks is some other project: say so now, rather than
    "ref not found" after its worktrees and venvs were made. A work tree shows its files; a bare
    repository its HEAD's (left unjudged when HEAD names no commit: its refs are what count)."""
    if (path / ".git").exists() or git_dir != path:
        if not any((path / p).is_file() for p in KUBESPRAY_PLAYBOOKS):
            raise NotKubespray(f"{path} is a git checkout but not Kubespray's (no {' or '.join(KUBESPRAY_PLAYBOOKS)})")
        return
    head = proc.run(["git", "--git-dir", str(git_dir), "rev-parse", "--verify", "--quiet", "HEAD^{tree}"], check=False)
    if not head.ok:
        return
    listed = proc.run(["git", "--git-dir", str(git_dir), "ls-tree", "--name-only", "HEAD", "--", *KUBESPRAY_PLAYBOOKS],
                      check=False)
    if listed.ok and not listed.stdout.strip():
        raise NotKubespray(f"{path} is a git repository but not Kubespray's (its HEAD has no"
                             f" {' or '.join(KUBESPRAY_PLAYBOOKS)})")


class Kubespray:
    """A Kubespray git repository (bare or not) and the per-ref things the harness derives from it."""

    def __init__(
        self,
        git_dir: Path,
        *,
        cache: Path | None = None,
        progress: Progress | None = None,
        venv_builder: VenvBuilder = build_venv,
    ) -> None:
        self.git_dir = git_dir
        self.cache = (cache or settings.cache_dir()) / "kubespray"
        self.progress: Progress = progress or (lambda _msg: None)
        self.venv_builder = venv_builder
        self._vars: dict[str, dict[str, Any]] = {}

    @classmethod
    def open(cls, source: str | Path, **kwargs: Any) -> Kubespray:
        """A local checkout path, or a git URL cloned (bare) into the cache once and reused."""
        src = str(source)
        if not _looks_like_url(src):
            path = Path(src).expanduser().resolve()
            if not path.exists():
                raise NotKubespray(f"Kubespray checkout {path} does not exist (give a path or a git URL)")
            if not path.is_dir():
                raise NotKubespray(f"Kubespray checkout {path} is not a folder (give a checkout, a bare repository or a git URL)")
            r = proc.run(["git", "-C", str(path), "rev-parse", "--is-bare-repository", "--absolute-git-dir", "--show-cdup"],
                         check=False)
            if r.ok:
                git_dir = _own_git_dir(path, r.stdout)
                _check_is_kubespray(path, git_dir)  # before the constructor makes the cache
                return cls(git_dir, **kwargs)
            if _bare_without_refs(path):
                return cls._copied(path, **kwargs)
            raise NotKubespray(f"{path} is not a git repository: {r.stderr.strip()}")
        ks = cls(Path("/nonexistent"), **kwargs)
        dest = ks.cache / "src" / (hashlib.sha256(src.encode()).hexdigest()[:16] + ".git")
        with file_lock(dest.with_suffix(".lock")):
            if not (dest / "HEAD").exists():
                ks.progress(f"cloning {src} into {dest}")
                try:
                    proc.run(["git", "clone", "--bare", "--quiet", src, str(dest)], timeout=1800)
                except HarnessError as e:
                    raise InstallerError(f"cannot clone Kubespray from {src}: {e}") from None
        ks.git_dir = dest
        return ks

    @classmethod
    def _copied(cls, path: Path, **kwargs: Any) -> Kubespray:
        """A bare repository git will not open in place (read-only, its empty `refs/` dropped by a
        copy: all refs packed): copied into the cache with `refs/` restored. Re-copied when its refs
        change, so a tag added to the source is seen."""
        ks = cls(Path("/nonexistent"), **kwargs)
        refs = b"".join((path / f).read_bytes() for f in ("HEAD", "packed-refs") if (path / f).exists())
        key = hashlib.sha256(str(path).encode() + b"\0" + refs).hexdigest()[:16]
        dest = ks.cache / "src" / f"{key}.git"
        with file_lock(dest.with_suffix(".lock")):
            if not (dest / ".harness-complete").exists():
                shutil.rmtree(dest, ignore_errors=True)
                ks.progress(f"copying Kubespray repository {path} into {dest}")
                shutil.copytree(path, dest, symlinks=True)
                for d in [dest, *dest.rglob("*")]:
                    if not d.is_symlink():
                        d.chmod(d.stat().st_mode | 0o200)  # the source may be read-only
                for sub in ("refs/heads", "refs/tags"):
                    (dest / sub).mkdir(parents=True, exist_ok=True)
                r = proc.run(["git", "--git-dir", str(dest), "rev-parse", "--verify", "HEAD"], check=False)
                if not r.ok:
                    shutil.rmtree(dest, ignore_errors=True)
                    raise InstallerError(f"{path} is not a git repository: {r.stderr.strip()}")
                (dest / ".harness-complete").write_text(str(path) + "\n")
        ks.git_dir = dest
        return ks

    # -- git ------------------------------------------------------------------

    def _git(self, *args: str, check: bool = True, timeout: float | None = 300) -> proc.Result:
        return proc.run(["git", "--git-dir", str(self.git_dir), *args], check=check, timeout=timeout)

    def commit(self, ref: str) -> str:
        """The commit a ref names; refuses a ref the repository does not have."""
        r = self._git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if not r.ok:
            near = ", ".join(self.release_tags()[-5:])
            raise PlanError(f"Kubespray ref {ref!r} not found in {self.git_dir} (newest release tags: {near})")
        return r.stdout.strip()

    def release_tags(self) -> list[str]:
        return [t for t in self._git("tag", "--list", "v*").stdout.split() if t]

    def placed(self, ref: Ref, commit: str, released: list[str]) -> Ref:
        """A branch or commit placed among the releases from the checkout: a release tag at its commit,
        else the version its galaxy.yml declares (harness.plan.rules.place)."""
        from harness.plan.rules import place, release_refs

        if ref.version is not None:
            return ref
        tags = proc.run(["git", "--git-dir", str(self.git_dir), "tag", "--points-at", commit]).stdout.split()
        declared = None
        galaxy = self.show(commit, "galaxy.yml")
        if galaxy is not None:
            try:
                data = yaml.safe_load(galaxy)
            except yaml.YAMLError:
                data = None
            if isinstance(data, dict) and isinstance(data.get("version"), str):
                declared = data["version"]
        return place(ref, tags_at_commit=tags, declared=declared, released=release_refs(released))

    def show(self, ref: str, path: str) -> str | None:
        """A file's text at a ref, or None if the ref has no such file."""
        r = self._git("show", f"{self.commit(ref)}:{path}", check=False)
        return r.stdout if r.ok else None

    def worktree(self, ref: str) -> Path:
        """A checked-out tree of `ref`, one per commit, created once and reused."""
        commit = self.commit(ref)
        dest = self.cache / "worktrees" / commit
        with file_lock(dest.with_suffix(".lock")):
            if (dest / ".harness-complete").exists():
                return dest
            if dest.exists():
                shutil.rmtree(dest)
            self._git("worktree", "prune", check=False)
            self.progress(f"checking out Kubespray {ref} ({commit[:10]}) into {dest}")
            r = self._git("worktree", "add", "--detach", "--force", str(dest), commit, check=False)
            if not r.ok:
                # A read-only repository cannot record a worktree: export the tree instead.
                shutil.rmtree(dest, ignore_errors=True)
                dest.mkdir(parents=True)
                tar = dest.with_suffix(".tar")
                self._git("archive", "--format=tar", "-o", str(tar), commit)
                proc.run(["tar", "-xf", str(tar), "-C", str(dest)])
                tar.unlink()
            (dest / ".harness-complete").write_text(commit + "\n")
        return dest

    # -- the ref's own Ansible -------------------------------------------------

    def requirements_sha(self, ref: str) -> str:
        text = self.show(ref, "requirements.txt")
        if text is None:
            raise InstallerError(f"Kubespray {ref} has no requirements.txt; cannot tell which Ansible it needs")
        return hashlib.sha256(text.encode()).hexdigest()

    def venv(self, ref: str) -> Path:
        """The virtualenv built from the ref's requirements.txt, shared by every ref pinning the same file."""
        sha = self.requirements_sha(ref)
        dest = self.cache / "venvs" / sha[:16]
        with file_lock(dest.with_suffix(".lock")):
            if (dest / ".harness-complete").exists():
                return dest
            if dest.exists():
                shutil.rmtree(dest)  # a build that died half way
            # Old releases point requirements.txt at another file (`-r requirements-2.12.txt`): use the worktree.
            req = self.worktree(ref) / "requirements.txt"
            started = time.monotonic()
            try:
                self.venv_builder(dest, req, self.progress)
            except HarnessError as e:
                shutil.rmtree(dest, ignore_errors=True)
                raise InstallerError(f"cannot build the virtualenv for Kubespray {ref} from requirements.txt: {e}") from None
            (dest / ".harness-complete").write_text(sha + "\n")
            self.progress(f"virtualenv for {ref} ready in {time.monotonic() - started:.0f}s: {dest}")
        return dest

    def ansible_playbook(self, ref: str) -> Path:
        return self.venv(ref) / "bin" / "ansible-playbook"

    def _list(self, ref: str, playbook: str, *args: str) -> str:
        tree = self.worktree(ref)
        if not (tree / playbook).exists():
            raise InstallerError(f"Kubespray {ref} has no playbook {playbook}")
        r = _run_listing(self.ansible_playbook(ref), tree, playbook, args, timeout=600)
        if not r.ok:
            raise InstallerError(
                f"`ansible-playbook {playbook} {' '.join(args)}` failed at Kubespray {ref} (rc={r.rc}):\n"
                + _last_lines(r)
            )
        return r.stdout

    def list_tags(self, ref: str, playbook: str = "cluster.yml") -> frozenset[str]:
        """The tags the ref's playbook really carries, read with the ref's own Ansible; cached by commit."""
        commit = self.commit(ref)
        cached = self.cache / "tags" / f"{commit}-{playbook.replace('/', '_')}.json"
        if cached.exists():
            return frozenset(json.loads(cached.read_text()))
        tags = parse_list_tags(self._list(ref, playbook, "--list-tags"))
        cached.parent.mkdir(parents=True, exist_ok=True)
        cached.write_text(json.dumps(sorted(tags)))
        return tags

    def list_tasks(self, ref: str, playbook: str = "cluster.yml", tags: Iterable[str] = ()) -> list[ListedTask]:
        """What a tagged run would execute, without running it (a cheap preview)."""
        tag_list = list(tags)
        args = ["--list-tasks"] + (["--tags", ",".join(tag_list)] if tag_list else [])
        return parse_list_tasks(self._list(ref, playbook, *args))

    def check_tags(self, ref: str, tags: Iterable[str], playbook: str = "cluster.yml") -> None:
        """Refuse tags no task carries at this ref (such a run would exit 0 having done nothing)."""
        check_tags_exist(tags, self.list_tags(ref, playbook), f"Kubespray {ref} {playbook}")

    # -- default versions ------------------------------------------------------

    def _default_files(self, commit: str) -> list[str]:
        """The ref's defaults and vars files, lowest precedence first (Ansible's order)."""
        listing = self._git("ls-tree", "-r", "--name-only", commit, "--", *_DEFAULT_DIRS).stdout.split("\n")
        files = [f for f in listing if f.endswith((".yml", ".yaml"))]
        files.sort(key=lambda f: (next(i for i, d in enumerate(_DEFAULT_DIRS) if f.startswith(d + "/")), f))
        return files

    def variables(self, ref: str, *, typed: bool = False) -> dict[str, Any]:
        """The raw (untemplated) defaults and vars of the ref's defaults roles, merged in Ansible's order.

        By default every scalar stays a string (`1.30` stays "1.30", not the float 1.3: right for
        versions and checksum keys); `typed` reads YAML's types as Ansible does (booleans stay booleans).
        """
        commit = self.commit(ref)
        key = f"{commit}:{typed}"
        if key in self._vars:
            return self._vars[key]
        merged: dict[str, Any] = {}
        for f in self._default_files(commit):
            text = self.show(commit, f) or ""
            try:
                data = yaml.safe_load(text) if typed else yaml.load(text, Loader=yaml.BaseLoader)
            except yaml.YAMLError as e:
                raise InstallerError(f"Kubespray {ref}: {f} is not valid YAML: {e}") from None
            if isinstance(data, dict):
                merged.update(data)
        self._vars[key] = merged
        return merged

    def resolve(
        self, ref: str, names: Iterable[str], extra_vars: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Variables of the ref, templated by the ref's own Ansible (its venv, its defaults and vars
        files in Ansible's order), with `extra_vars` on top as `-e` would put them. A name Ansible
        cannot template maps to an `Unresolvable` carrying Ansible's reason. Cached per commit and input."""
        wanted = list(dict.fromkeys(names))
        extra = {**_RESOLVE_FACTS, **dict(extra_vars or {})}
        commit = self.commit(ref)
        playbooks = [RESOLVE_PLAYBOOK.read_text(), RESOLVE_PLAYBOOK.with_name("resolve-one.yml").read_text()]
        digest = hashlib.sha256(json.dumps([wanted, extra, playbooks], sort_keys=True, default=str).encode()).hexdigest()[:16]
        cached = self.cache / "resolved" / f"{commit}-{digest}.json"
        if not cached.exists():
            tree = self.worktree(ref)
            files = self._default_files(commit)
            with tempfile.TemporaryDirectory(prefix="harness-resolve-") as tmp:
                out = Path(tmp) / "resolved.json"
                ev = Path(tmp) / "vars.json"
                ev.write_text(json.dumps(
                    {**extra, "harness_var_files": [str(tree / f) for f in files], "harness_names": wanted,
                     "harness_out": str(out)}, default=str))
                r = proc.run(
                    [str(self.ansible_playbook(ref)), "-i", "localhost,", str(RESOLVE_PLAYBOOK), "-e", f"@{ev}"],
                    cwd=str(tree), check=False, timeout=300,
                )
                if not out.exists():
                    raise InstallerError(
                        f"cannot template Kubespray {ref}'s variables with its own Ansible (rc={r.rc}):\n"
                        + _last_lines(r)
                    )
                cached.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, cached)
        answers = json.loads(cached.read_text())
        result: dict[str, Any] = {}
        for name in wanted:
            a = answers.get(name, {"error": "not answered"})
            result[name] = a["value"] if "value" in a else Unresolvable(f"Kubespray {ref}: {name}: {a['error']}")
        return result

    def default_versions(self, ref: str) -> dict[str, str]:
        """Component version defaults of the ref, as its own Ansible templates them."""
        resolved = self.resolve(ref, components.version_vars())
        return {k: str(v) for k, v in resolved.items() if isinstance(v, (str, int, float)) and str(v)}

    def known_versions(self, ref: str, component: str, arch: str = "amd64") -> list[str]:
        """Versions the ref's checksums file lists for a component, newest first as Kubespray writes them."""
        var = version_var(component)
        variables = self.variables(ref)
        known: list[str] | None = None
        for checksum in components.checksums_of_var(var):
            dict_name = checksum.table
            per_arch = variables.get(dict_name, {}).get(arch, {}) if isinstance(variables.get(dict_name), dict) else {}
            keys = [str(k) for k in per_arch] if isinstance(per_arch, dict) else []
            # kube_version needs kubelet, kubeadm and kubectl: only versions all three know.
            known = keys if known is None else [k for k in known if k in keys]
        return known or []

    def checksum_known(
        self,
        ref: str,
        component: str,
        version: str,
        *,
        extra_vars: Mapping[str, Any] | None = None,
        arch: str = "amd64",
    ) -> None:
        """Refuse, before any run, a version the ref cannot download: no checksum for it and none supplied."""
        var = version_var(component)
        checksums = components.checksums_of_var(var)
        if not checksums:
            return  # images (coredns, cilium, flannel) are pulled by tag: no checksum to miss
        extra = dict(extra_vars or {})
        wanted = Version.parse(version)
        missing: list[str] = []
        variables = self.variables(ref)
        for dict_name, single in ((c.table, c.single) for c in checksums):
            if single in extra:
                continue
            supplied = extra.get(dict_name, {}).get(arch, {}) if isinstance(extra.get(dict_name), dict) else {}
            table = variables.get(dict_name, {})
            keys = list(table.get(arch, {})) if isinstance(table, dict) and isinstance(table.get(arch), dict) else []
            if not any(_same(k, wanted) for k in [*keys, *supplied]):
                missing.append(f"{dict_name}[{arch}] (or set {single})")
        if missing:
            known = self.known_versions(ref, var, arch)
            shown = ", ".join(known[:12]) + (f", ... ({len(known)} in all)" if len(known) > 12 else "")
            raise PlanError(
                f"{var}={version} cannot be installed by Kubespray {ref}: no checksum for it in "
                f"{'; '.join(missing)}. Versions {ref} knows: {shown or 'none'}. "
                "Pick one of those or supply the checksum in extra_vars."
            )


def _same(key: str, wanted: Version) -> bool:
    try:
        return Version.parse(key) == wanted
    except HarnessError:
        return False


def version_var(component: str) -> str:
    """`etcd`, `etcd_version`, `kubelet` -> the Kubespray variable that sets its version."""
    if component.endswith("_version"):
        return component
    if (c := components.find(component)) is not None:
        return c.var
    return "kube_version" if component == "kube" else f"{component}_version"


class Unresolvable(InstallerError):
    """A variable the ref's own Ansible could not template (undefined, or built from host facts)."""
