"""Signing-key rotation while the server runs: new tokens get the new key, old tokens still verify."""

from __future__ import annotations

import subprocess
import time

import support
from support import ARM


def _mint(srv) -> str:
    res = support.post_token(srv, support.client_credentials(srv))
    assert res.status_code == 200, res.text
    return res.json()["access_token"]


def _rotate(srv) -> None:
    """`openmi server keys rotate` as a separate process beside the running server."""
    cmd = [support.OPENMI_BIN, "server", "keys", "rotate", "--data-dir", str(srv.data_dir), *srv.db_args(), "--publish-delay", "0"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert res.returncode == 0, f"{cmd} -> {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"


def _wait_for_new_kid(srv, old_kid: str, within: float = 10) -> str:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        token = _mint(srv)
        if support.header(token)["kid"] != old_kid:
            return token
        time.sleep(0.25)
    raise AssertionError(f"tokens were still signed with kid {old_kid} {within} s after `server keys rotate`")


def test_rotation_with_running_server(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)

    token_a = _mint(srv)
    kid_a = support.header(token_a)["kid"]
    _rotate(srv)
    assert srv.is_running()
    token_b = _wait_for_new_kid(srv, kid_a)
    kid_b = support.header(token_b)["kid"]

    # The JWKS, fetched fresh after the rotation, publishes both keys and both tokens verify.
    kids = {k["kid"] for k in srv.get("/common/discovery/keys").json()["keys"]}
    assert {kid_a, kid_b} <= kids
    claims_a = support.verify_token(srv, token_a, audience=ARM)
    claims_b = support.verify_token(srv, token_b, audience=ARM)
    assert claims_a["appid"] == claims_b["appid"] == srv.client_id


def test_rotated_key_survives_restart(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    token_a = _mint(srv)
    _rotate(srv)
    kid_b = support.header(_wait_for_new_kid(srv, support.header(token_a)["kid"]))["kid"]
    server_factory.stop(srv)

    # Same port, so that the issuer (the server's URL) of the old token is still this server's.
    again = server_factory.start(data_dir=srv.data_dir, database_url=srv.database_url, port=srv.port)
    support.use_ca(monkeypatch, again.ca_cert_path)
    token_c = _mint(again)
    assert support.header(token_c)["kid"] == kid_b
    support.verify_token(again, token_c, audience=ARM)
    support.verify_token(again, token_a, audience=ARM)  # the old key is still published
