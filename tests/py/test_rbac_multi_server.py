"""Two openmi servers on one PostgreSQL database (issue 5): a role assignment made or removed through
one server is enforced by the other within a second."""

from __future__ import annotations

import secrets
import uuid

import pytest
import requests

import support
from support import ARM_AUTHORIZATION_API, ARM_RG_API, ROLE_READER

PROPAGATION_SECONDS = 1.0
GROUP_READ = "Microsoft.Resources/subscriptions/resourceGroups/read"


def _write_kek(path):
    path.write_text(secrets.token_hex(32) + "\n")
    path.chmod(0o600)
    return path


def poll_status(request, status: int):
    """Repeat request() for up to PROPAGATION_SECONDS until it answers `status`: (response or None, seconds)."""
    found, took = support.poll_until(lambda: [r for r in [request()] if r.status_code == status], PROPAGATION_SECONDS)
    return (found[0] if found else None), took


def token_from(srv: support.Server, client_id: str, secret: str) -> str:
    """An ARM token from `srv` itself (client credentials over raw HTTP, verified with its own CA)."""
    res = support.post_token(srv, support.client_credentials(srv, client_id=client_id, client_secret=secret))
    assert res.status_code == 200, res.text
    return res.json()["access_token"]


def arm_request(srv: support.Server, token: str, method: str, path: str, api_version: str, **kwargs) -> requests.Response:
    return requests.request(
        method,
        srv.url + path,
        params={"api-version": api_version},
        headers={"Authorization": f"Bearer {token}"},
        verify=srv.ca_cert_path,
        timeout=support.HTTP_TIMEOUT,
        **kwargs,
    )


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_assignment_changes_reach_the_other_server_within_a_second(server_factory, tmp_path, monkeypatch):
    kek = _write_kek(tmp_path / "kek.hex")
    db_url = server_factory.new_database_url()
    one = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    two = server_factory.start(database_url=db_url, extra_args=["--key-encryption-key-file", str(kek)])
    # The SDK clients talk to server one only; server two is reached with raw requests and its own CA.
    support.use_ca(monkeypatch, one.ca_cert_path)

    kit = support.RbacKit(one)
    rg = support.unique_name("pyrg")
    kit.admin.create_group(rg)
    sp = support.create_service_principal(one, admin_credential=kit.admin.credential)
    rg_id = f"/subscriptions/{one.subscription_id}/resourceGroups/{rg}"
    sp_token_two = token_from(two, sp.app_id, sp.secret)  # the directory is shared

    def read_group_on_two() -> requests.Response:
        return arm_request(two, sp_token_two, "GET", rg_id, ARM_RG_API)

    support.assert_authorization_failed(read_group_on_two(), sp.object_id, GROUP_READ, rg_id)

    # Granted through server one: server two allows it within a second.
    assignment = kit.grant(sp.object_id, ROLE_READER, rg_id)
    res, took = poll_status(read_group_on_two, 200)
    assert res is not None, f"server two still denies {took:.2f}s after the grant on server one: {read_group_on_two().text[:400]}"
    assert res.json()["name"] == rg

    # Removed through server one: server two denies within a second.
    kit.revoke(assignment.id)
    res, took = poll_status(read_group_on_two, 403)
    assert res is not None, f"server two still allows {took:.2f}s after the revocation on server one: {read_group_on_two().text[:400]}"
    support.assert_authorization_failed(res, sp.object_id, GROUP_READ, rg_id)

    # The other way round: granted through server two (as the bootstrap SP), enforced by server one.
    admin_token_two = token_from(two, one.client_id, one.client_secret)  # one bootstrap SP for both
    name = str(uuid.uuid4())
    put = arm_request(
        two, admin_token_two, "PUT", support.role_assignment_id(rg_id, name), ARM_AUTHORIZATION_API,
        json={"properties": {"roleDefinitionId": kit.role_id(ROLE_READER), "principalId": sp.object_id, "principalType": "ServicePrincipal"}},
    )
    assert put.status_code == 201, put.text
    sp_token_one = token_from(one, sp.app_id, sp.secret)

    def read_group_on_one() -> requests.Response:
        return arm_request(one, sp_token_one, "GET", rg_id, ARM_RG_API)

    res, took = poll_status(read_group_on_one, 200)
    assert res is not None, f"server one still denies {took:.2f}s after the grant on server two: {read_group_on_one().text[:400]}"
    # Both servers list it.
    listed = [a.name for a in kit.authz.role_assignments.list_for_scope(rg_id, filter=f"principalId eq '{sp.object_id}'")]
    assert listed == [name]
    on_two = arm_request(
        two, admin_token_two, "GET", f"{rg_id}/providers/Microsoft.Authorization/roleAssignments", ARM_AUTHORIZATION_API
    )
    assert on_two.status_code == 200, on_two.text
    assert name in [a["name"] for a in on_two.json()["value"]]
    # Deleted through server two: server one denies within a second.
    deleted = arm_request(two, admin_token_two, "DELETE", support.role_assignment_id(rg_id, name), ARM_AUTHORIZATION_API)
    assert deleted.status_code == 200, deleted.text
    res, took = poll_status(read_group_on_one, 403)
    assert res is not None, f"server one still allows {took:.2f}s after the revocation on server two"
