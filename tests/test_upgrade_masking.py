"""Secrets never reach what the harness writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.upgrade.masking import MASK, find_secrets, mask_artifacts, mask_data, mask_env, mask_text

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6IjEyMyJ9.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.c2lnbmF0dXJlLXBhcnQ"
PEM_KEY = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAzZ\nabcdef\n-----END RSA PRIVATE KEY-----"
PEM_CERT = "-----BEGIN CERTIFICATE-----\nMIIC5zCCAc+gAwIBAgIBADANBgkqhkiG9w0BAQsFADAVMRMwEQYDVQQDEwprdWJl\n-----END CERTIFICATE-----"

KUBECONFIG = f"""\
apiVersion: v1
clusters:
- cluster:
    certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=
    server: https://10.0.0.11:6443
  name: cluster.local
users:
- name: kubernetes-admin
  user:
    client-certificate-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSURJ
    client-key-data: LS0tLS1CRUdJTiBSU0EgUFJJVkFURSBLRVktLS0tLQpNSUlF
    token: {JWT}
"""


def test_pem_blocks() -> None:
    out = mask_text(f"before\n{PEM_KEY}\nmiddle\n{PEM_CERT}\nafter")
    assert "MIIEowIBAAKCAQEAzZ" not in out and "MIIC5zCC" not in out
    assert "-----BEGIN RSA PRIVATE KEY-----" + MASK in out
    assert out.startswith("before\n") and "middle" in out and out.endswith("after")


def test_truncated_pem_is_masked_to_the_end() -> None:
    assert "MIIE" not in mask_text("-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBg")


def test_jwt_and_bearer() -> None:
    assert JWT not in mask_text(f"token is {JWT} ok")
    out = mask_text("curl -H 'Authorization: Bearer abcdef0123456789xyz' https://api")
    assert "abcdef0123456789xyz" not in out and "Bearer " + MASK in out
    out = mask_text("kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef --discovery-token-ca-cert-hash sha256:1234")
    assert "abcdef.0123456789abcdef" not in out and "sha256:1234" not in out and "kubeadm join 10.0.0.1:6443" in out


def test_kubeconfig_secrets_masked_server_kept() -> None:
    out = mask_text(KUBECONFIG)
    for secret in ("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=", "CK1JSURJ", "UFJJVkFURSBLRVktLS0tLQpNSUlF", JWT):
        assert secret not in out
    assert "server: https://10.0.0.11:6443" in out and "client-key-data: " + MASK in out


def test_yaml_json_and_kv_forms() -> None:
    assert "hunter2" not in mask_text("password: hunter2")
    assert "hunter2" not in mask_text('  "password": "hunter2",')
    assert "hunter2" not in mask_text('{\\"password\\": \\"hunter2\\"}')  # JSON inside a JSON string
    assert "hunter2" not in mask_text("mysql -u root db_password=hunter2 next")
    assert "abc123" not in mask_text("etcd_key: abc123")
    # Not secrets: keep them readable.
    assert mask_text("kube_token_dir: /etc/kubernetes/tokens") == "kube_token_dir: /etc/kubernetes/tokens"
    assert mask_text("password: ********") == "password: ********"
    assert mask_text('password: "{{ vault_pw }}"') == 'password: "{{ vault_pw }}"'
    assert mask_text("secretName: canary") == "secretName: canary"


def test_mask_data_structure() -> None:
    data = {
        "res": {"stdout": f"token: {JWT}", "password": "x1", "GITHUB_TOKEN": "ghp_abc", "changed": True},
        "list": [PEM_CERT, 3],
        "censored": "the output has been hidden due to the fact that 'no_log: true' was specified for this result",
    }
    out = mask_data(data)
    assert out["res"]["password"] == MASK and out["res"]["GITHUB_TOKEN"] == MASK
    assert JWT not in out["res"]["stdout"] and out["res"]["changed"] is True
    assert "MIIC5zCC" not in out["list"][0] and out["list"][1] == 3
    assert out["censored"] == data["censored"]  # ansible's censoring stays as it is


def test_mask_artifacts_in_place(tmp_path: Path) -> None:
    art = tmp_path / "artifacts" / "s1"
    (art / "job_events").mkdir(parents=True)
    (art / "stdout").write_text(f"ok: [node1] => {{\"stdout\": \"{JWT}\"}}\n")
    ev = {"event": "runner_on_ok", "event_data": {"res": {"stdout": KUBECONFIG}}, "stdout": f"{JWT}"}
    (art / "job_events" / "3-abc.json").write_text(json.dumps(ev))
    clean = {"event": "runner_on_ok", "event_data": {"res": {"stdout": "hi"}}}
    (art / "job_events" / "4-def.json").write_text(json.dumps(clean))
    (art / "rc").write_text("0")
    assert mask_artifacts(art) == 2
    assert JWT not in (art / "stdout").read_text()
    masked = json.loads((art / "job_events" / "3-abc.json").read_text())
    assert "client-key-data: " + MASK in masked["event_data"]["res"]["stdout"] and JWT not in masked["stdout"]
    assert json.loads((art / "job_events" / "4-def.json").read_text()) == clean
    assert mask_artifacts(tmp_path / "missing") == 0


def test_kubeconfig_inside_a_json_string_is_masked() -> None:
    """How Ansible's callback prints a registered `cat admin.conf`: the kubeconfig is one JSON string
    with `\\n` escapes, so no key starts a line (measured: ansible-core's default callback)."""
    printed = json.dumps({"kc": {"stdout": KUBECONFIG}}, indent=4)
    out = mask_text(printed)
    for secret in ("LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=", "UFJJVkFURSBLRVktLS0tLQpNSUlF", JWT):
        assert secret not in out
    assert "client-key-data: " + MASK in out and "server: https://10.0.0.11:6443" in out
    plain = mask_text(printed.replace(JWT, "abcdef.0123456789abcdef"))  # a bootstrap token: not a JWT
    assert "0123456789abcdef" not in plain and "token: " + MASK in plain
    lines = mask_text('"stdout_lines": [\n    "    token: abcdef.0123456789abcdef",\n    "    x: y"]')
    assert "0123456789abcdef" not in lines and '"    x: y"' in lines


def test_a_pem_split_over_list_items_is_masked() -> None:
    """`stdout_lines` of `cat key.pem`: no single item shows the body is a key."""
    lines = ["before", "-----BEGIN EC PRIVATE KEY-----", "MHcCAQEEIIm9lE2uS0JqTXrQwfCxP7JxY", "c0ZqJkY3Nn==",
             "-----END EC PRIVATE KEY-----", "after"]
    out = mask_data({"stdout_lines": lines})["stdout_lines"]
    assert out[2:4] == [MASK, MASK] and out[0] == "before" and out[-1] == "after"
    assert out[4] == "-----END EC PRIVATE KEY-----"
    # An unterminated block masks to the end of the list; a block within one item is mask_text's.
    assert mask_data(["-----BEGIN CERTIFICATE-----", "MIIC5zCC", "MIIC5zCD"])[1:] == [MASK, MASK]
    assert mask_data([PEM_CERT, "next"]) == [mask_text(PEM_CERT), "next"]


def test_environment_values_masked_but_known_harmless_names() -> None:
    env = {"PATH": "/usr/bin", "ANSIBLE_NOCOLOR": "true", "HARNESS_RUN_ID": "abc", "MY_REGISTRY_CREDENTIAL": "hunter2",
           "ANSIBLE_VAULT_PASSWORD": "hunter3", "LANG": "C.UTF-8", "SOME_API_KEY": "hunter4"}
    out = mask_env(env)
    assert out["PATH"] == "/usr/bin" and out["ANSIBLE_NOCOLOR"] == "true" and out["LANG"] == "C.UTF-8"
    assert out["MY_REGISTRY_CREDENTIAL"] == MASK and out["ANSIBLE_VAULT_PASSWORD"] == MASK and out["SOME_API_KEY"] == MASK


def test_runner_command_artifact_env_masked(tmp_path: Path) -> None:
    """ansible-runner writes the whole environment into artifacts/<ident>/command (JSON, no suffix)."""
    art = tmp_path / "artifacts" / "s1"
    art.mkdir(parents=True)
    cmd = {"command": ["ansible-playbook", "-i", "hosts.yml", "x.yml"], "cwd": "/p",
           "env": {"PATH": "/usr/bin", "DEPLOY_CREDENTIAL": "hunter2"}}
    (art / "command").write_text(json.dumps(cmd))
    assert mask_artifacts(art) == 1
    saved = json.loads((art / "command").read_text())
    assert saved["env"] == {"PATH": "/usr/bin", "DEPLOY_CREDENTIAL": MASK} and saved["command"] == cmd["command"]


@pytest.mark.parametrize(("text", "kind"), [
    (PEM_KEY, "private key"),
    (json.dumps(PEM_KEY), "private key"),  # escaped inside a JSON string
    (PEM_CERT, "certificate"),
    ('"MIIEowIBAAKCAQEAzZabcdefabcdefabcdefabcdefabcdefabcdef",', "base64 DER (a key or certificate body)"),
    ("certificate-authority-data: LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCk1JSUM=", "base64 PEM (kubeconfig data)"),
    ("client-key-data: c2VjcmV0LWtleS1kYXRhLWhlcmU=", "kubeconfig credential"),
    ("curl -H 'Authorization: Bearer abcdef0123456789xyz' https://api", "bearer token"),
    (f"auth {JWT}", "JWT"),
    ('{"token": "abcdef.0123456789abcdef"}', "token"),
    ("kubeadm join 10.0.0.1:6443 --token abcdef.0123456789abcdef", "token flag"),
])
def test_find_secrets_names_each_kind(tmp_path: Path, text: str, kind: str) -> None:
    f = tmp_path / "sub" / "out.txt"
    f.parent.mkdir()
    f.write_text(f"before\n{text}\nafter\n")
    assert (f, kind) in find_secrets(tmp_path)
    f.write_text(mask_text(f.read_text()))  # and masking leaves none of them
    assert find_secrets(tmp_path) == []


def test_find_secrets_passes_the_harmless() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        f = Path(d) / "x.log"
        f.write_text("kube_token_dir: /etc/kubernetes/tokens\ntoken: ********\nclient-key-data: ********\n"
                     "-----BEGIN CERTIFICATE-----********-----END CERTIFICATE-----\nBearer ********\n"
                     "task_uuid: 0242ac11-0002-3c3a-1b2d-000000000010\n")
        assert find_secrets(f) == []
