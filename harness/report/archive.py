"""One archive per scenario: `<artifacts>/<scenario>.tar.gz` of its artifact dir (ansible-runner's
artifacts, journals and API dumps of the evidence stage, facts and samples, the report), for a CI
job to upload. `--archive on-failure` (the default) makes it for a failed scenario only.

Every text member goes through the harness's masking (JSON structurally, as the runner masks its
artifacts), then is scanned for anything still shaped like a secret; a member that still shows one
is left out, and MANIFEST.txt in the archive says what was left out and why. Binary files other than
the report's pictures are left out too: a scan cannot read them. The minted tokens of `secrets/` are
never archived. The artifact dir itself is not changed.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from harness.text import plural
from harness.upgrade.masking import SECRET_SHAPES, mask_data, mask_env, mask_text

ARCHIVE_MODES = ("on-failure", "always", "never")
# Never archived: the tokens plant.yml minted before the upgrade (read back by the token check).
EXCLUDED_DIRS = ("secrets",)
# Binary files that are safe to keep as they are: the report's pictures.
BINARY_KEEP = (".png",)


def wanted(mode: str, *, failed: bool) -> bool:
    if mode not in ARCHIVE_MODES:
        raise ValueError(f"--archive {mode!r}: choose one of {', '.join(ARCHIVE_MODES)}")
    return mode == "always" or (mode == "on-failure" and failed)


def _mask_json(name: str, data: Any) -> Any:
    if name == "command" and isinstance(data, dict) and "env" in data:
        # ansible-runner's saved command line holds the whole process environment.
        return {**mask_data({k: v for k, v in data.items() if k != "env"}), "env": mask_env(data["env"])}
    return mask_data(data)


def masked_text(name: str, text: str) -> str:
    """A member's text with secrets masked as the runner masks its artifacts: JSON (and runner's
    `command`) structurally, every string in it through mask_text; anything else as text. (A second
    text pass over the JSON doubled the archive's time; what it would catch, the scan after it finds.)"""
    if name.endswith(".json") or name == "command":
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if data is not None:
            masked = _mask_json(name, data)
            return text if masked == data else json.dumps(masked)
    return mask_text(text)


def still_secret(text: str) -> list[str]:
    """The kinds of secret shapes `text` still holds (the same shapes find_secrets scans for)."""
    return [kind for kind, shape in SECRET_SHAPES if shape.search(text)]


def archive_run(run_dir: Path, dest: Path | None = None) -> Path:
    """Write `<run_dir's parent>/<scenario>.tar.gz` (or `dest`); members under `<scenario>/`."""
    dest = dest or run_dir.parent / f"{run_dir.name}.tar.gz"
    left_out: list[str] = []
    kept = 0
    tmp = dest.with_name(dest.name + ".part")
    with tarfile.open(tmp, "w:gz", compresslevel=6) as tar:
        for path in sorted(run_dir.rglob("*")):
            rel = path.relative_to(run_dir)
            if not path.is_file() or path.is_symlink():
                continue
            if rel.parts[0] in EXCLUDED_DIRS:
                left_out.append(f"{rel}: minted secret, never archived")
                continue
            try:
                raw = path.read_bytes()
            except OSError as e:
                left_out.append(f"{rel}: unreadable ({e.strerror})")
                continue
            if path.suffix in BINARY_KEEP:
                data = raw
            else:
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError:
                    left_out.append(f"{rel}: binary, cannot be scanned for secrets")
                    continue
                masked = masked_text(path.name, text)
                kinds = still_secret(masked)
                if kinds:
                    left_out.append(f"{rel}: still looked secret after masking ({', '.join(kinds)})")
                    continue
                data = masked.encode()
            _add(tar, f"{run_dir.name}/{rel}", data, path.stat().st_mtime)
            kept += 1
        manifest = [f"{run_dir.name}: {plural(kept, 'file')}, secrets masked (harness.upgrade.masking)"]
        manifest += ["left out:"] + [f"  {line}" for line in left_out] if left_out else ["nothing left out"]
        _add(tar, f"{run_dir.name}/MANIFEST.txt", ("\n".join(manifest) + "\n").encode(), time.time())
    tmp.replace(dest)
    return dest


def _add(tar: tarfile.TarFile, name: str, data: bytes, mtime: float) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
