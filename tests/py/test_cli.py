"""The openmi CLI (az-style) against a running server, with its output used by the real clients."""

from __future__ import annotations

import msal
from azure.identity import ClientSecretCredential

import support
from support import ARM, ARM_SCOPE


def test_create_for_rbac_secret_works_with_azure_identity(server, tmp_path):
    config_dir = tmp_path / "cli"
    support.cli_login_sp(server, config_dir)
    name = support.unique_name("py-sp")
    out = support.run_cli(["ad", "sp", "create-for-rbac", "--name", name], config_dir)
    sp = out.json()
    assert support.GUID_RE.match(sp["appId"]), out.describe()
    assert sp["password"], out.describe()
    assert sp["tenant"] == server.tenant_id, out.describe()
    assert sp["displayName"] == name, out.describe()

    credential = ClientSecretCredential(
        sp["tenant"], sp["appId"], sp["password"], authority=server.url, disable_instance_discovery=True
    )
    claims = support.verify_token(server, credential.get_token(ARM_SCOPE).token, audience=ARM)
    assert claims["appid"] == sp["appId"]
    assert claims["oid"] != support.unverified_claims(
        support.post_token(server, support.client_credentials(server)).json()["access_token"]
    )["oid"]


def test_account_show_after_service_principal_login(server, tmp_path):
    config_dir = tmp_path / "cli"
    support.cli_login_sp(server, config_dir)
    out = support.run_cli(["account", "show"], config_dir)
    account = out.json()
    assert account["tenantId"] == server.tenant_id, out.describe()
    assert account["id"] == server.subscription_id, out.describe()


def test_login_as_admin_user(server, tmp_path):
    config_dir = tmp_path / "cli"
    support.run_cli(
        [
            "login",
            "--server", server.url,
            "--username", server.admin_username,
            "--password", server.admin_password,
            "--ca-cert", server.ca_cert_path,
        ],
        config_dir,
    )
    out = support.run_cli(["account", "show"], config_dir)
    account = out.json()
    assert account["tenantId"] == server.tenant_id, out.describe()
    assert account["id"] == server.subscription_id, out.describe()


def test_login_with_wrong_password_fails(server, tmp_path):
    out = support.run_cli(
        [
            "login",
            "--server", server.url,
            "--username", server.admin_username,
            "--password", server.admin_password + "-wrong",
            "--ca-cert", server.ca_cert_path,
        ],
        tmp_path / "cli",
        check=False,
    )
    assert out.returncode != 0, out.describe()
    assert "AADSTS50126" in out.stderr, out.describe()


def test_account_show_without_login_fails(tmp_path):
    out = support.run_cli(["account", "show"], tmp_path / "empty-cli", check=False)
    assert out.returncode != 0, out.describe()
    assert out.stderr.strip(), out.describe()


def test_created_sp_works_with_msal(server, tmp_path):
    config_dir = tmp_path / "cli"
    support.cli_login_sp(server, config_dir)
    sp = support.run_cli(["ad", "sp", "create-for-rbac", "--name", support.unique_name("py-sp")], config_dir).json()
    app = msal.ConfidentialClientApplication(
        sp["appId"],
        client_credential=sp["password"],
        authority=f"{server.url}/{sp['tenant']}",
        instance_discovery=False,
    )
    result = app.acquire_token_for_client(scopes=[ARM_SCOPE])
    assert "access_token" in result, result
