"""Several servers sharing one PostgreSQL database: one tenant, one key ring, one key-encryption key."""

from __future__ import annotations

import secrets
import subprocess

import pytest

import support
from support import ARM


def _write_kek(path):
    path.write_text(secrets.token_hex(32) + "\n")  # 64 hex chars, as `openssl rand -hex 32 > file` writes it
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_replicas_share_tenant_and_keys(server_factory, tmp_path, monkeypatch):
    kek = _write_kek(tmp_path / "kek.hex")
    db_url = server_factory.new_database_url()
    one = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    two = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    assert one.data_dir != two.data_dir and one.port != two.port

    boot_two = support.read_bootstrap(two.data_dir)
    assert boot_two["tenantId"] == one.tenant_id
    assert boot_two["subscriptionId"] == one.subscription_id

    # A token minted by server 1 verifies with the keys published by server 2.
    support.use_ca(monkeypatch, one.ca_cert_path)
    token = support.post_token(one, support.client_credentials(one)).json()["access_token"]
    kids_two = {k["kid"] for k in two.get("/common/discovery/keys").json()["keys"]}
    assert support.header(token)["kid"] in kids_two
    claims = support.verify_token(one, token, audience=ARM, jwks_from=two)
    assert claims["tid"] == one.tenant_id

    # The bootstrap client's secret is the same on both: server 2 accepts it.
    res = support.post_token(two, support.client_credentials(two, client_id=one.client_id, client_secret=one.client_secret))
    assert res.status_code == 200, res.text

    # A third replica with another key-encryption key cannot read the key ring and refuses to start.
    other_kek = _write_kek(tmp_path / "other-kek.hex")
    data_dir = server_factory.new_data_dir()
    proc = subprocess.Popen(
        support.server_command(data_dir, support.free_port(), db_url, ["--key-encryption-key-file", str(other_kek)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        pytest.fail(f"server with a foreign key-encryption key still running after 30 s\nstderr: {stderr[-2000:]}")
    assert proc.returncode != 0, stderr
    assert "key-encryption key" in stderr.lower(), f"stdout: {stdout[-2000:]}\nstderr: {stderr[-2000:]}"
