"""private_key_jwt: a service principal registered with a certificate through the openmi CLI, then
authenticated by azure-identity (RS256 + x5t), by msal (PS256 + x5t#S256 + x5c) and by hand."""

from __future__ import annotations

import base64
import hashlib
import time
import uuid

import jwt
import msal
import pytest
from azure.identity import CertificateCredential

import support
from support import ARM, ARM_SCOPE

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture
def cert_sp(server, tmp_path):
    """A service principal created by `openmi ad sp create-for-rbac --cert @file`, and its key."""
    cert = support.make_cert(tmp_path / "certs", support.unique_name("sp-cert"))
    config_dir = tmp_path / "cli"
    support.cli_login_sp(server, config_dir)
    name = support.unique_name("py-cert-sp")
    out = support.run_cli(["ad", "sp", "create-for-rbac", "--name", name, "--cert", f"@{cert.cert_path}"], config_dir)
    sp = out.json()
    assert support.GUID_RE.match(sp["appId"]), out.describe()
    assert sp["tenant"] == server.tenant_id, out.describe()
    assert sp["displayName"] == name, out.describe()
    assert "password" not in sp or not sp["password"], out.describe()
    return sp, cert


def _assertion(server, client_id, cert, *, lifetime=600, now=None, algorithm="RS256", headers=None):
    now = int(time.time() if now is None else now)
    claims = {
        "aud": support.token_url(server),
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "nbf": now,
        "iat": now,
        "exp": now + lifetime,
    }
    return jwt.encode(claims, cert.key, algorithm=algorithm, headers=headers or {"x5t": cert.x5t})


def _assertion_grant(client_id, assertion):
    return {
        "grant_type": "client_credentials",
        "client_id": client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        "scope": ARM_SCOPE,
    }


def test_certificate_credential(server, cert_sp):
    sp, cert = cert_sp
    credential = CertificateCredential(
        server.tenant_id,
        sp["appId"],
        certificate_path=str(cert.combined_path),
        authority=server.url,
        disable_instance_discovery=True,
    )
    access = credential.get_token(ARM_SCOPE)
    claims = support.verify_token(server, access.token, audience=ARM)
    assert claims["appid"] == sp["appId"]
    assert claims["appidacr"] == "2"  # certificate credential
    assert claims["idtyp"] == "app"


def test_certificate_credential_with_chain(server, cert_sp):
    """send_certificate_chain adds an x5c header to the RS256/x5t assertion."""
    sp, cert = cert_sp
    credential = CertificateCredential(
        server.tenant_id,
        sp["appId"],
        certificate_path=str(cert.combined_path),
        send_certificate_chain=True,
        authority=server.url,
        disable_instance_discovery=True,
    )
    claims = support.verify_token(server, credential.get_token(ARM_SCOPE).token, audience=ARM)
    assert claims["appid"] == sp["appId"]


def test_msal_certificate_ps256(server, cert_sp):
    """msal 1.39 given the public certificate signs with PS256 and sends x5t#S256 (and x5c)."""
    sp, cert = cert_sp
    app = msal.ConfidentialClientApplication(
        sp["appId"],
        client_credential={"private_key": cert.key_pem, "public_certificate": cert.cert_pem},
        authority=f"{server.url}/{server.tenant_id}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    claims = support.verify_token(server, result["access_token"], audience=ARM)
    assert claims["appid"] == sp["appId"]


def test_msal_certificate_thumbprint_rs256(server, cert_sp):
    """msal given only a SHA-1 thumbprint signs with RS256 and sends x5t (what azure-identity does)."""
    sp, cert = cert_sp
    app = msal.ConfidentialClientApplication(
        sp["appId"],
        client_credential={"private_key": cert.key_pem, "thumbprint": support.b64url_decode(cert.x5t).hex()},
        authority=f"{server.url}/{server.tenant_id}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result


@pytest.mark.parametrize(
    "algorithm,thumbprint_header,padded",
    [
        ("RS256", "x5t", False),
        ("RS256", "x5t", True),  # msal's _encode_thumbprint keeps base64url padding ("=")
        ("PS256", "x5t#S256", False),
        ("PS256", "x5t#S256", True),  # what msal sends when it has the certificate
    ],
)
def test_hand_made_assertion_accepted(server, cert_sp, algorithm, thumbprint_header, padded):
    sp, cert = cert_sp
    digest = hashlib.sha1(cert.der).digest() if thumbprint_header == "x5t" else hashlib.sha256(cert.der).digest()
    thumbprint = base64.urlsafe_b64encode(digest).decode()
    if not padded:
        thumbprint = thumbprint.rstrip("=")
    assertion = _assertion(server, sp["appId"], cert, algorithm=algorithm, headers={thumbprint_header: thumbprint})
    res = support.post_token(server, _assertion_grant(sp["appId"], assertion))
    assert res.status_code == 200, res.text
    claims = support.verify_token(server, res.json()["access_token"], audience=ARM)
    assert claims["appid"] == sp["appId"]


def test_expired_assertion_rejected(server, cert_sp):
    sp, cert = cert_sp
    stale = _assertion(server, sp["appId"], cert, now=time.time() - 3600, lifetime=600)
    res = support.post_token(server, _assertion_grant(sp["appId"], stale))
    support.assert_aad_error(res, 401, "invalid_client", 700024)


def test_assertion_signed_by_other_key_rejected(server, cert_sp, tmp_path):
    sp, cert = cert_sp
    other = support.make_cert(tmp_path / "other", "other-cert")
    # Signed by a key the service principal does not have, announcing the registered cert's thumbprint.
    forged = jwt.encode(
        {
            "aud": support.token_url(server),
            "iss": sp["appId"],
            "sub": sp["appId"],
            "jti": str(uuid.uuid4()),
            "nbf": int(time.time()),
            "exp": int(time.time()) + 600,
        },
        other.key,
        algorithm="RS256",
        headers={"x5t": cert.x5t},
    )
    res = support.post_token(server, _assertion_grant(sp["appId"], forged))
    assert res.status_code == 401, res.text
    assert res.json()["error"] == "invalid_client", res.text


def test_secret_sp_cannot_use_unregistered_cert(server, tmp_path):
    """The bootstrap client has a secret and no certificate: an assertion for it is refused."""
    cert = support.make_cert(tmp_path / "c", "unregistered")
    res = support.post_token(server, _assertion_grant(server.client_id, _assertion(server, server.client_id, cert)))
    assert res.status_code in (400, 401), res.text
    assert res.json()["error"] == "invalid_client", res.text
