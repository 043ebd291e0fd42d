"""Mask secrets in everything the harness writes or keeps: timelines, summaries, ansible-runner artifacts.

Ansible's `no_log` already censors results; this is the second line for what slips through
(a kubeconfig printed by `cat`, a token in a task's stdout). Masking only ever removes text.
`find_secrets` is the other side: it walks what a run wrote and names what still looks secret.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

MASK = "********"

# A PEM block of any kind (private keys, certificates, CSRs): the whole block goes.
_PEM = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?(?:-----END \1-----|\Z)", re.DOTALL)
# Base64 of "-----BEGIN": a kubeconfig's *-data values (a PEM, base64-encoded) in whatever form they
# appear (a `\\n`-escaped kubeconfig inside a JSON string has no line start for the key patterns).
_B64_PEM = re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/]*={0,2}")
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
# A key's or certificate's body seen without its BEGIN line (one item of `stdout_lines`, a sliced
# list): base64 DER, which starts `MI` (an ASN.1 SEQUENCE with a long length).
_B64_DER = re.compile(r"(?<![A-Za-z0-9+/])MI[A-Za-z0-9+/]{40,}={0,2}")
# JWTs: three base64url parts, the first one a JSON header (`{"` encodes to `eyJ`).
_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]+")
# `Authorization: Bearer xxx` and `--token xxx` style.
_BEARER = re.compile(r"(?i)(\bbearer\s+)[A-Za-z0-9._~+/=-]{8,}")
_TOKEN_FLAG = re.compile(r"(?i)(--(?:token|password|discovery-token-ca-cert-hash|certificate-key)[= ])(\S+)")
# kubeconfig / YAML / JSON keys whose values are secrets. Quoted or bare values, to the end of the value.
_SECRET_KEYS = (
    r"token|id-token|refresh-token|access[_-]token|bearer[_-]token|client-key-data|client-certificate-data"
    r"|certificate-authority-data|password|passwd|secret|private[_-]key|etcd[_-]key|ca[_-]key|kubeadm_token"
    r"|certificate[_-]key|encryption[_-]key|aws_secret_access_key|api[_-]?key|access[_-]key|auth[_-]token"
)
# `key: value` (YAML) — the key may be quoted; the value runs to the end of the line.
_YAML_KV = re.compile(r"(?im)^(\s*-?\s*[\"']?(?:[\w-]*[_-])?(?:" + _SECRET_KEYS + r")[\"']?\s*:[ \t]*)(?![|>]\s*$)(\S.*?)\s*$")
# `key: value` on a line that starts after a `\\n` escape or a quote: a YAML document printed inside a
# JSON string (`"stdout": "...\\n    token: xxx\\n..."`) or one line of `stdout_lines` (`"    token: xxx",`).
_ESCAPED_YAML_KV = re.compile(r"(?i)((?:\\[nr]|\")[ \t]*-?[ \t]*(?:[\w-]*[_-])?(?:" + _SECRET_KEYS
                              + r")[ \t]*:[ \t]*)([^\s\"\\](?:[^\"\\]|\\[^nr\"])*)")
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
    text = _B64_PEM.sub(MASK, text)
    text = _B64_DER.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _BEARER.sub(lambda m: m.group(1) + MASK, text)
    text = _TOKEN_FLAG.sub(lambda m: m.group(1) + MASK, text)
    text = _JSON_KV.sub(_kv, text)
    text = _YAML_KV.sub(_kv, text)
    text = _ESCAPED_YAML_KV.sub(_kv, text)
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
        return _mask_pem_lines([mask_data(v) for v in data], data)
    if isinstance(data, str):
        return mask_text(data)
    return data


def _mask_pem_lines(masked: list[Any], original: list[Any]) -> list[Any]:
    """A PEM block split over list items (`stdout_lines` of `cat key.pem`): the items after a BEGIN
    line up to its END line are its body, which no single item shows to be secret."""
    out = list(masked)
    end: str | None = None
    for i, item in enumerate(original):
        if not isinstance(item, str):
            continue
        if end is not None:
            if end in item:
                end = None
            else:
                out[i] = MASK
            continue
        m = _PEM_BEGIN.search(item)
        if m and f"-----END {m.group(1)}-----" not in item[m.end():]:
            end = f"-----END {m.group(1)}-----"
    return out


# ansible-runner saves the whole process environment in `artifacts/<ident>/command`: values are
# kept only for names known to hold no secret (any other variable may be a credential of the caller).
_ENV_KEEP = re.compile(
    r"^(?:PATH|HOME|PWD|OLDPWD|LANG|LANGUAGE|LC_\w+|TERM|SHELL|USER|LOGNAME|TZ|TMPDIR|VIRTUAL_ENV|PYTHONUNBUFFERED"
    r"|PYTHONPATH|HARNESS_RUN_ID|ANSIBLE_\w+|RUNNER_\w+|JOB_ID|AWX_\w+)$"
)


def mask_env(env: Any) -> Any:
    """An environment mapping with every value masked but those of known-harmless names (and even
    those when their name or value looks secret)."""
    if not isinstance(env, dict):
        return mask_data(env)
    return {k: mask_data({k: v})[k] if isinstance(k, str) and _ENV_KEEP.match(k) else MASK for k, v in env.items()}


def _mask_command(data: Any) -> Any:
    if isinstance(data, dict) and "env" in data:
        return mask_data({**data, "env": {}}) | {"env": mask_env(data["env"])}
    return mask_data(data)


def mask_file(path: Path) -> bool:
    """Mask a file in place (JSON files structurally, others as text); True if anything changed."""
    try:
        original = path.read_text(errors="surrogateescape")
    except OSError:
        return False
    masked: str | None = None
    if path.suffix == ".json" or path.name == "command":
        try:
            data = json.loads(original)
        except ValueError:
            data = None
        if data is not None:
            new = _mask_command(data) if path.name == "command" else mask_data(data)
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


# -- finding what is left ------------------------------------------------------------------

# Shapes of secrets, written apart from the masking patterns above so a scan does not merely replay
# them: PEM bodies however they are split or escaped, base64 DER, a kubeconfig's data fields, tokens.
_SEP = r"(?:\s|\\[nr]|[\",])*"  # between a PEM header and its body: newlines, escaped or as list items
SECRET_SHAPES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----" + _SEP + r"[A-Za-z0-9+/]{16,}")),
    ("certificate", re.compile(r"-----BEGIN CERTIFICATE-----" + _SEP + r"[A-Za-z0-9+/]{16,}")),
    ("base64 DER (a key or certificate body)", re.compile(r"(?<![A-Za-z0-9+/])MI[A-Za-z0-9+/]{40,}")),
    ("base64 PEM (kubeconfig data)", re.compile(r"LS0tLS1CRUdJT[A-Za-z0-9+/]{8,}")),
    ("kubeconfig credential", re.compile(
        r"(?i)(?:client-key-data|client-certificate-data|certificate-authority-data)[\"'\\]*[ \t]*[:=][ \t]*[\"'\\]*"
        r"[A-Za-z0-9+/]{16,}")),
    ("bearer token", re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{16,}")),
    ("JWT", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("token", re.compile(
        r"(?i)(?:^|[\s\"'{,]|\\[nr])(?:token|id-token|refresh-token|access-token)[\"'\\]*[ \t]*[:=][ \t]*[\"'\\]*"
        r"[A-Za-z0-9._~+/-]{16,}", re.MULTILINE)),
    ("token flag", re.compile(r"--(?:token|certificate-key)[= ][A-Za-z0-9.]{16,}")),
)


def find_secrets(root: Path) -> list[tuple[Path, str]]:
    """(file, kind) for every file under `root` (or `root` itself) still holding something shaped like
    a secret: a private key, a certificate, base64 DER or PEM, a kubeconfig credential, a bearer
    token, a JWT, a token value. Masked values (`********`) never match. Sorted, one entry per kind."""
    files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    found: list[tuple[Path, str]] = []
    for path in files:
        try:
            text = path.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            continue
        found += [(path, kind) for kind, shape in SECRET_SHAPES if shape.search(text)]
    return found
