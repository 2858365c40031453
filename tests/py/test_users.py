"""Users: username/password (ROPC) through azure-identity and msal, id tokens, refresh tokens."""

from __future__ import annotations

import json

import msal
import pytest
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import UsernamePasswordCredential

import support
from support import ARM, ARM_SCOPE, AZ_CLI_CLIENT_ID


def _public_app(server, tenant=None):
    return msal.PublicClientApplication(
        AZ_CLI_CLIENT_ID,
        authority=f"{server.url}/{tenant or server.tenant_id}",
        instance_discovery=False,
    )


def test_username_password_credential(server):
    credential = UsernamePasswordCredential(
        client_id=AZ_CLI_CLIENT_ID,
        username=server.admin_username,
        password=server.admin_password,
        tenant_id=server.tenant_id,
        authority=server.url,
        disable_instance_discovery=True,
    )
    access = credential.get_token(ARM_SCOPE)
    claims = support.verify_token(server, access.token, audience=ARM)
    assert claims["idtyp"] == "user"
    assert claims["upn"] == server.admin_username
    assert claims.get("name")
    assert support.GUID_RE.match(claims["oid"])
    assert claims["sub"]
    assert claims["tid"] == server.tenant_id
    assert claims["appid"] == AZ_CLI_CLIENT_ID
    assert claims["ver"] == "1.0"
    # azure-identity builds an AuthenticationRecord from the id token's claims.
    record = credential.authenticate(scopes=[ARM_SCOPE])
    assert record.username == server.admin_username
    assert record.tenant_id == server.tenant_id
    assert record.client_id == AZ_CLI_CLIENT_ID
    assert record.authority == f"127.0.0.1:{server.port}"


def test_username_password_wrong_password(server):
    credential = UsernamePasswordCredential(
        client_id=AZ_CLI_CLIENT_ID,
        username=server.admin_username,
        password=server.admin_password + "-wrong",
        tenant_id=server.tenant_id,
        authority=server.url,
        disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token(ARM_SCOPE)
    assert "AADSTS50126" in str(info.value)


def test_msal_ropc_then_refresh_token(server):
    app = _public_app(server)
    # MSAL adds openid, profile and offline_access itself (and refuses them as user input).
    result = app.acquire_token_by_username_password(server.admin_username, server.admin_password, scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    assert result.get("refresh_token")
    assert result["id_token_claims"]["preferred_username"] == server.admin_username
    assert result["id_token_claims"]["tid"] == server.tenant_id
    assert result["id_token_claims"]["aud"] == AZ_CLI_CLIENT_ID
    if "client_info" in result:
        info = json.loads(support.b64url_decode(result["client_info"]))
        assert info["utid"] == server.tenant_id and info["uid"]
    first = support.verify_token(server, result["access_token"], audience=ARM)

    # The account landed in MSAL's cache under the user's name.
    accounts = app.get_accounts()
    assert [a["username"] for a in accounts] == [server.admin_username]

    refreshed = app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[ARM_SCOPE])
    assert "access_token" in refreshed, refreshed
    second = support.verify_token(server, refreshed["access_token"], audience=ARM)
    assert second["oid"] == first["oid"]
    assert second["upn"] == server.admin_username


def test_refresh_token_grant_raw(server):
    app = _public_app(server)
    result = app.acquire_token_by_username_password(server.admin_username, server.admin_password, scopes=[ARM_SCOPE])
    assert "refresh_token" in result, result
    res = support.post_token(
        server,
        {
            "grant_type": "refresh_token",
            "client_id": AZ_CLI_CLIENT_ID,
            "refresh_token": result["refresh_token"],
            "scope": f"{ARM_SCOPE} openid profile offline_access",
        },
    )
    assert res.status_code == 200, res.text
    body = res.json()
    assert isinstance(body["expires_in"], int)
    assert body.get("refresh_token")
    claims = support.verify_token(server, body["access_token"], audience=ARM)
    assert claims["upn"] == server.admin_username


def test_garbage_refresh_token_is_invalid_grant(server):
    res = support.post_token(
        server,
        {
            "grant_type": "refresh_token",
            "client_id": AZ_CLI_CLIENT_ID,
            "refresh_token": "garbage.not-a-refresh-token",
            "scope": ARM_SCOPE,
        },
    )
    assert res.status_code == 400, res.text
    body = res.json()
    assert body["error"] == "invalid_grant", body
    assert body["error_description"].startswith("AADSTS"), body
    assert body["error_codes"] and all(isinstance(c, int) for c in body["error_codes"])


def test_ropc_on_organizations_authority(server):
    """`az login -u` without --tenant authenticates against /organizations; the token is the user's tenant's."""
    app = _public_app(server, tenant="organizations")
    result = app.acquire_token_by_username_password(server.admin_username, server.admin_password, scopes=[ARM_SCOPE])
    assert "access_token" in result, result
    claims = support.verify_token(server, result["access_token"], audience=ARM)
    assert claims["tid"] == server.tenant_id

    # az then redeems the same refresh token at the tenant's own authority.
    tenant_app = _public_app(server)
    refreshed = tenant_app.acquire_token_by_refresh_token(result["refresh_token"], scopes=[ARM_SCOPE])
    assert "access_token" in refreshed, refreshed
    assert support.verify_token(server, refreshed["access_token"], audience=ARM)["oid"] == claims["oid"]


def test_user_realm_answer(server):
    """MSAL asks /common/userrealm/{user} before ROPC: a 404 or a `Managed` account both mean plain ROPC."""
    res = server.get(f"/common/userrealm/{server.admin_username}?api-version=1.0")
    assert res.status_code in (200, 404), res.text
    if res.status_code == 200:
        assert res.json().get("account_type") == "Managed", res.text


def test_smart_lockout_locks_after_repeated_wrong_passwords(server_factory, monkeypatch):
    """Entra's smart lockout (`--lockout-threshold 3 --lockout-duration 2` here): three distinct
    wrong passwords lock the account, the same wrong password again is not counted, and while
    locked even the right password is refused with AADSTS50053, through msal and azure-identity;
    the lock ends after its duration."""
    import time

    srv = server_factory.start(extra_args=("--lockout-threshold", "3", "--lockout-duration", "2"))
    support.use_ca(monkeypatch, srv.ca_cert_path)
    def ropc(password):
        # A new app each time: msal replays an identical request's invalid_grant from its own
        # throttling cache instead of sending it again.
        app = _public_app(srv)
        return app.acquire_token_by_username_password(srv.admin_username, password, scopes=[ARM_SCOPE])

    for password in ["wrong-1", "wrong-1", "wrong-1", "wrong-2"]:
        result = ropc(password)
        assert 50126 in result.get("error_codes", []), result
    assert "access_token" in ropc(srv.admin_password), "two distinct wrong passwords do not lock"
    for password in ["wrong-3", "wrong-4", "wrong-5"]:
        assert 50126 in ropc(password).get("error_codes", [])
    locked = ropc(srv.admin_password)
    assert locked.get("error") == "invalid_grant" and locked.get("error_codes") == [50053], locked
    assert "AADSTS50053" in locked["error_description"] and "locked" in locked["error_description"]

    credential = UsernamePasswordCredential(
        client_id=AZ_CLI_CLIENT_ID, username=srv.admin_username, password=srv.admin_password,
        tenant_id=srv.tenant_id, authority=srv.url, disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError) as info:
        credential.get_token(ARM_SCOPE)
    assert "AADSTS50053" in str(info.value)

    waited = []
    for _ in range(12):
        time.sleep(0.5)
        result = ropc(srv.admin_password)
        waited.append(result.get("error_codes"))
        if "access_token" in result:
            break
    assert "access_token" in result, ("the lock ends after its duration", waited)
