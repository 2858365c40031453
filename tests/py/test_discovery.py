"""OIDC discovery documents, JWKS, instance discovery, and the request-id headers on every response."""

from __future__ import annotations

import base64
import hashlib
import uuid

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

import support


def _check_endpoints(server, doc, version):
    tenant = server.tenant_id
    for key in ("token_endpoint", "authorization_endpoint", "jwks_uri"):
        assert doc[key].startswith(server.url + "/"), (key, doc[key])
    if version == 2:
        assert doc["token_endpoint"] == f"{server.url}/{tenant}/oauth2/v2.0/token"
        assert doc["authorization_endpoint"] == f"{server.url}/{tenant}/oauth2/v2.0/authorize"
    else:
        assert doc["token_endpoint"] == f"{server.url}/{tenant}/oauth2/token"
        assert doc["authorization_endpoint"] == f"{server.url}/{tenant}/oauth2/authorize"
    assert "RS256" in doc["id_token_signing_alg_values_supported"]
    methods = doc["token_endpoint_auth_methods_supported"]
    for method in ("client_secret_post", "private_key_jwt", "client_secret_basic"):
        assert method in methods, methods


def test_v2_discovery(server):
    doc = support.discovery(server, version=2)
    assert doc["issuer"] == f"{server.url}/{server.tenant_id}/v2.0"
    _check_endpoints(server, doc, 2)


def test_v1_discovery(server):
    doc = support.discovery(server, version=1)
    assert doc["issuer"] == f"{server.url}/{server.tenant_id}/"
    _check_endpoints(server, doc, 1)


def test_discovery_for_unknown_tenant_is_4xx(server):
    res = server.get(f"/{uuid.uuid4()}/v2.0/.well-known/openid-configuration")
    assert 400 <= res.status_code < 500, res.text  # MSAL turns a 4xx into "Unable to get authority configuration"
    assert "AADSTS90002" in res.text
    # A tenant segment that is not UTF-8 once decoded is the same JSON, not a plain-text 400.
    for path in ("/%FF/.well-known/openid-configuration", "/%FF/v2.0/.well-known/openid-configuration", "/%FF/discovery/keys", "/%FF/discovery/v2.0/keys"):
        res = server.get(path)
        assert res.status_code == 400 and res.json()["error_codes"] == [90002], (path, res.text)


def test_organizations_discovery(server):
    doc = support.discovery(server, tenant="organizations", version=2)
    assert doc["token_endpoint"] == f"{server.url}/organizations/oauth2/v2.0/token"


@pytest.mark.parametrize("path", ["/common/discovery/keys", "/TENANT/discovery/v2.0/keys", "/TENANT/discovery/keys"])
def test_jwks(server, path):
    res = server.get(path.replace("TENANT", server.tenant_id))
    assert res.status_code == 200, res.text
    keys = res.json()["keys"]
    assert keys
    for key in keys:
        assert key["kty"] == "RSA"
        assert key["use"] == "sig"
        assert key["kid"] and key["x5t"] and key["n"] and key["e"]
        assert key["x5c"] and isinstance(key["x5c"], list)
        # x5c[0] is the DER certificate (standard base64) of this very key, and x5t its SHA-1 thumbprint.
        der = base64.b64decode(key["x5c"][0])
        cert = x509.load_der_x509_certificate(der)
        public = cert.public_key()
        assert isinstance(public, rsa.RSAPublicKey)
        numbers = public.public_numbers()
        assert numbers.n == int.from_bytes(support.b64url_decode(key["n"]), "big")
        assert numbers.e == int.from_bytes(support.b64url_decode(key["e"]), "big")
        assert key["x5t"] == support.b64url(hashlib.sha1(der).digest())


def test_jwks_uris_serve_the_same_keys(server):
    v1 = server.get(support.discovery(server, version=1)["jwks_uri"].removeprefix(server.url)).json()
    v2 = server.get(support.discovery(server, version=2)["jwks_uri"].removeprefix(server.url)).json()
    assert {k["kid"] for k in v1["keys"]} == {k["kid"] for k in v2["keys"]}


def test_token_kid_is_published(server):
    token = support.post_token(server, support.client_credentials(server)).json()["access_token"]
    hdr = support.header(token)
    keys = server.get("/common/discovery/keys").json()["keys"]
    published = {k["kid"]: k for k in keys}
    assert hdr["kid"] in published
    assert published[hdr["kid"]]["x5t"] == hdr["x5t"]


def test_instance_discovery(server):
    authorize = f"{server.url}/{server.tenant_id}/oauth2/v2.0/authorize"
    res = server.get("/common/discovery/instance", params={"api-version": "1.1", "authorization_endpoint": authorize})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["tenant_discovery_endpoint"] == f"{server.url}/{server.tenant_id}/v2.0/.well-known/openid-configuration"
    doc = server.get(body["tenant_discovery_endpoint"].removeprefix(server.url))
    assert doc.status_code == 200


@pytest.mark.parametrize(
    "method,path,expect",
    [
        ("GET", "/healthz", 200),
        ("GET", "/TENANT/v2.0/.well-known/openid-configuration", 200),
        ("GET", "/common/discovery/keys", 200),
        ("POST", "/TENANT/oauth2/v2.0/token", 200),
        ("POST", "/TENANT/oauth2/v2.0/token#bad", 401),
        ("GET", "/no/such/path", 404),
    ],
)
def test_request_id_headers(server, method, path, expect):
    sent = str(uuid.uuid4())
    path = path.replace("TENANT", server.tenant_id)
    headers = {"client-request-id": sent}
    if method == "POST":
        data = support.client_credentials(server)
        if path.endswith("#bad"):
            path = path.removesuffix("#bad")
            data["client_secret"] = "not-the-secret"
        res = server.post(path, data=data, headers=headers)
    else:
        res = server.get(path, headers=headers)
    assert res.status_code == expect, res.text
    assert support.GUID_RE.match(res.headers.get("x-ms-request-id", "")), dict(res.headers)
    assert res.headers.get("client-request-id") == sent, dict(res.headers)


def test_request_ids_differ(server):
    first = server.get("/healthz").headers.get("x-ms-request-id")
    second = server.get("/healthz").headers.get("x-ms-request-id")
    assert first and second and first != second
