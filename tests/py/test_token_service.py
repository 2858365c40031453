"""Client-credential tokens from the real clients: azure-identity, msal, and raw OAuth on v1 and v2."""

from __future__ import annotations

import time
from urllib.parse import quote

import msal
import pytest
from azure.identity import ClientSecretCredential

import support
from support import ARM, ARM_SCOPE


def test_client_secret_credential_token_verifies_with_published_keys(server):
    credential = ClientSecretCredential(
        server.tenant_id,
        server.client_id,
        server.client_secret,
        authority=server.url,
        disable_instance_discovery=True,
    )
    access = credential.get_token(ARM_SCOPE)
    assert access.token and access.expires_on > time.time()

    # azure-identity strips "/.default"; v1 tokens carry the resource exactly as requested.
    claims = support.verify_token(server, access.token, audience=ARM)
    assert claims["aud"] == ARM
    assert claims["iss"] == f"{server.url}/{server.tenant_id}/"
    assert claims["tid"] == server.tenant_id
    assert claims["appid"] == server.client_id
    assert support.GUID_RE.match(claims["oid"])
    assert claims["sub"] == claims["oid"]
    assert claims["idtyp"] == "app"
    assert claims["ver"] == "1.0"
    assert claims["appidacr"] == "1"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["nbf"] <= claims["iat"] + 1
    hdr = support.header(access.token)
    assert hdr["alg"] == "RS256"
    assert hdr.get("kid")
    assert hdr.get("x5t")


def test_msal_confidential_client_acquires_token_for_client(server):
    app = msal.ConfidentialClientApplication(
        server.client_id,
        client_credential=server.client_secret,
        authority=f"{server.url}/{server.tenant_id}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert result["token_type"].lower() == "bearer"
    assert 3000 < int(result["expires_in"]) <= 3600
    claims = support.verify_token(server, result["access_token"], audience=ARM)
    assert claims["appid"] == server.client_id

    # A second call is served from MSAL's cache: the response was cacheable as it came.
    again = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert again["access_token"] == result["access_token"]
    assert again.get("token_source") == "cache"


def test_msal_instance_discovery_endpoint_on_our_server(server):
    """MSAL accepts an instance-discovery URL: it sends the authorize URL without the port and follows
    whatever tenant_discovery_endpoint comes back, so the server must answer with its own URL."""
    app = msal.ConfidentialClientApplication(
        server.client_id,
        client_credential=server.client_secret,
        authority=f"{server.url}/{server.tenant_id}",
        instance_discovery=f"{server.url}/common/discovery/instance",
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    support.verify_token(server, result["access_token"], audience=ARM)


def test_v1_endpoint_returns_v1_response_shape(server):
    res = support.post_token(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": server.client_secret,
            "resource": ARM,
        },
        version=1,
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["token_type"] == "Bearer"
    for key in ("expires_in", "ext_expires_in", "expires_on", "not_before"):
        assert isinstance(body[key], str) and body[key].isdigit(), (key, body)
    assert 3000 < int(body["expires_in"]) <= 3600
    assert abs(int(body["expires_on"]) - (time.time() + int(body["expires_in"]))) < 60
    assert int(body["not_before"]) <= int(body["expires_on"])
    assert body["resource"] == ARM
    claims = support.verify_token(server, body["access_token"], audience=ARM)
    assert claims["ver"] == "1.0"
    assert claims["exp"] == int(body["expires_on"])


def test_v2_endpoint_returns_v2_response_shape(server):
    res = support.post_token(server, support.client_credentials(server))
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["token_type"] == "Bearer"
    assert isinstance(body["expires_in"], int) and 3000 < body["expires_in"] <= 3600
    assert isinstance(body["ext_expires_in"], int)
    assert isinstance(body["access_token"], str)
    assert "refresh_token" not in body  # client credentials never get one
    support.verify_token(server, body["access_token"], audience=ARM)


def test_client_secret_basic(server):
    res = support.post_token(
        server,
        {"grant_type": "client_credentials", "scope": ARM_SCOPE},
        auth=(quote(server.client_id, safe=""), quote(server.client_secret, safe="")),
    )
    assert res.status_code == 200, res.text
    claims = support.verify_token(server, res.json()["access_token"], audience=ARM)
    assert claims["appid"] == server.client_id


@pytest.mark.parametrize(
    "resource",
    [
        "https://management.core.windows.net/",
        "https://management.azure.com/",
        "https://management.azure.com",
        "SERVER/",  # the az CLI form for a custom cloud: ARM endpoint + "/", scope "<url>//.default"
    ],
)
def test_arm_audiences_are_echoed(server, resource):
    resource = resource.replace("SERVER", server.url)
    app = msal.ConfidentialClientApplication(
        server.client_id,
        client_credential=server.client_secret,
        authority=f"{server.url}/{server.tenant_id}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[resource + "/.default"])
    assert "access_token" in result, result
    claims = support.verify_token(server, result["access_token"], audience=resource)
    assert claims["aud"] == resource


def test_unknown_resource_is_invalid_resource(server):
    res = support.post_token(server, support.client_credentials(server, scope="https://unknown.example.com/.default"))
    support.assert_aad_error(res, 400, "invalid_resource", 500011)


def test_tokens_are_unique(server):
    """Two mints give two tokens with distinct unique-token ids."""
    first = support.post_token(server, support.client_credentials(server)).json()["access_token"]
    second = support.post_token(server, support.client_credentials(server)).json()["access_token"]
    assert first != second
    c1, c2 = support.unverified_claims(first), support.unverified_claims(second)
    if "uti" in c1:
        assert c1["uti"] != c2["uti"]
