"""Mask secrets in everything the harness writes or keeps: timelines, summaries, ansible-runner artifacts.

Ansible's `no_log` already censors results; this is the second line for what slips through
(a kubeconfig printed by `cat`, a token in a task's stdout). Masking only ever removes text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MASK = "********"

# A PEM block of any kind (private keys, certificates, CSRs): the whole block goes.
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)
# JWTs: three base64url parts, the first one a JSON header (`{"` encodes to `eyJ`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
# `Authorization: Bearer xxx` and `--token xxx` style.
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_TOKEN_FLAG = re.compile(r"(?i)(--(?:token|password|discovery-token-ca-cert-hash|certificate-key)[= ])(\S+)")
# kubeconfig / YAML / JSON keys whose values are secrets. Quoted or bare values, to the end of the value.
_SECRET_KEYS = (
    r"token|id-token|refresh-token|access[_-]token|bearer[_-]token|client-key-data|client-certificate-data"
    r"|certificate-authority-data|password|passwd|secret|private[_-]key|etcd[_-]key|ca[_-]key|kubeadm_token"
    r"|certificate[_-]key|encryption[_-]key|aws_secret_access_key"
)
# `key: value` (YAML) — the key may be quoted; the value runs to the end of the line.
_YAML_KV = re.compile(r"(?im)^(\s*-?\s*[\"']?(?:[\w-]*[_-])?(?:" + _SECRET_KEYS + r")[\"']?\s*:[ \t]*)(?![|>]\s*$)(\S.*?)\s*$")
# `"key": "value"` (JSON, possibly escaped inside another JSON string).
_JSON_KV = re.compile(r"(?i)(\\?\"(?:[\w-]*[_-])?(?:" + _SECRET_KEYS + r")\\?\"\s*:\s*\\?\")((?:[^\"\\]|\\[^\"])*)(\\?\")")
# `key=value` (ansible k=v args, env lines).
_EQ_KV = re.compile(r"(?i)(\b(?:[\w-]*[_-])?(?:" + _SECRET_KEYS + r")=)([^\s,;\"']+)")

# Values that are not secrets even under a secret key: keep them so output stays readable.
_HARMLESS = re.compile(r"^(?:\*+|null|none|true|false|\{\{.*\}\}|VALUE_SPECIFIED_IN_NO_LOG_PARAMETER|)$", re.IGNORECASE)


def _harmless(value: str) -> bool:
    return bool(_HARMLESS.match(value.strip().strip("\"'")))


def _kv(m: re.Match[str]) -> str:
    value = m.group(2)
    if _harmless(value):
        return m.group(0)
    return m.group(1) + MASK + (m.group(3) if m.lastindex and m.lastindex >= 3 else "")


def mask_text(text: str) -> str:
    """Every secret shape the harness knows, masked."""
    if not text:
        return text
    text = _PEM.sub(lambda m: f"-----BEGIN {m.group(1)}-----{MASK}-----END {m.group(1)}-----", text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _TOKEN_FLAG.sub(lambda m: m.group(1) + MASK, text)
    text = _JSON_KV.sub(_kv, text)
    text = _YAML_KV.sub(_kv, text)
    text = _EQ_KV.sub(_kv, text)
    return text


_SECRET_KEY = re.compile(r"(?i)^(?:[\w-]*[_-])?(?:" + _SECRET_KEYS + r")$")


def mask_data(data: Any) -> Any:
    """A JSON-like structure with secret-named keys' values and secret-shaped strings masked."""
    if isinstance(data, dict):
        out: dict[Any, Any] = {}
        for k, v in data.items():
            if isinstance(k, str) and _SECRET_KEY.match(k) and isinstance(v, (str, int, float)) and v not in ("", None):
                out[k] = v if isinstance(v, str) and _harmless(v) else MASK
            else:
                out[k] = mask_data(v)
        return out
    if isinstance(data, list):
        return [mask_data(v) for v in data]
    if isinstance(data, str):
        return mask_text(data)
    return data


def mask_file(path: Path) -> bool:
    """Mask a file in place (JSON files structurally, others as text); True if anything changed."""
    try:
        original = path.read_text(errors="surrogateescape")
    except OSError:
        return False
    masked: str | None = None
    if path.suffix == ".json":
        try:
            data = json.loads(original)
        except ValueError:
            data = None
        if data is not None:
            new = mask_data(data)
            masked = original if new == data else json.dumps(new)
    if masked is None:
        masked = mask_text(original)
    if masked == original:
        return False
    path.write_text(masked, errors="surrogateescape")
    return True


def mask_artifacts(artifact_dir: Path) -> int:
    """ansible-runner's own outputs (`stdout`, `job_events/*.json`, `command`...) masked in place."""
    changed = 0
    if not artifact_dir.is_dir():
        return 0
    for p in sorted(artifact_dir.rglob("*")):
        if p.is_file() and p.suffix in ("", ".json", ".txt", ".log", ".yml", ".yaml", ".jsonl") and p.name not in ("rc", "status"):
            changed += mask_file(p)
    return changed
