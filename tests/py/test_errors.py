"""Entra-shaped OAuth errors: status, `error`, `AADSTS<code>:` description, codes, ids and time."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential

import support
from support import ARM_SCOPE


def test_wrong_secret_is_invalid_client(server):
    res = support.post_token(server, support.client_credentials(server, client_secret="not-the-secret"))
    support.assert_aad_error(res, 401, "invalid_client", 7000215)


def test_unknown_client_is_unauthorized_client(server):
    res = support.post_token(server, support.client_credentials(server, client_id=str(uuid.uuid4())))
    support.assert_aad_error(res, 400, "unauthorized_client", 700016)


def test_unknown_tenant_is_invalid_request(server):
    res = support.post_token(server, support.client_credentials(server), tenant=str(uuid.uuid4()))
    support.assert_aad_error(res, 400, "invalid_request", 90002)


def test_unsupported_grant_type(server):
    res = support.post_token(server, support.client_credentials(server, grant_type="urn:example:not-a-grant"))
    support.assert_aad_error(res, 400, "unsupported_grant_type", 70003)


def test_missing_client_id(server):
    data = support.client_credentials(server)
    del data["client_id"]
    res = support.post_token(server, data)
    support.assert_aad_error(res, 400, "invalid_request", 900144)


def test_client_credentials_scope_without_default(server):
    res = support.post_token(
        server, support.client_credentials(server, scope="https://management.azure.com/user_impersonation")
    )
    support.assert_aad_error(res, 400, "invalid_scope", 1002012)


def test_v1_wrong_secret_has_same_shape(server):
    res = support.post_token(
        server,
        {
            "grant_type": "client_credentials",
            "client_id": server.client_id,
            "client_secret": "not-the-secret",
            "resource": support.ARM,
        },
        version=1,
    )
    support.assert_aad_error(res, 401, "invalid_client", 7000215)


def test_correlation_id_follows_client_request_id(server):
    request_id = str(uuid.uuid4())
    res = support.post_token(
        server,
        support.client_credentials(server, client_secret="not-the-secret"),
        headers={"client-request-id": request_id},
    )
    body = support.assert_aad_error(res, 401, "invalid_client", 7000215)
    assert body["correlation_id"] == request_id
    assert res.headers.get("client-request-id") == request_id


def test_azure_identity_surfaces_wrong_secret(server):
    credential = ClientSecretCredential(
        server.tenant_id,
        server.client_id,
        "not-the-secret",
        authority=server.url,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token(ARM_SCOPE)
    assert "AADSTS7000215" in str(info.value)
