"""The az-style `openmi role ...` commands (issue 5), run as a shell would run them, logged in as the
bootstrap service principal (or as a principal of its own); results cross-checked with the real
azure-mgmt-authorization client."""

from __future__ import annotations

import json

import pytest
from azure.core.exceptions import HttpResponseError

import support
from support import ROLE_MI_OPERATOR, ROLE_READER


def login_as(server, sp: support.ServicePrincipal, config_dir) -> support.Cli:
    support.run_cli(
        [
            "login",
            "--server", server.url,
            "--service-principal",
            "--username", sp.app_id,
            "--password", sp.secret,
            "--tenant", server.tenant_id,
            "--ca-cert", server.ca_cert_path,
        ],
        config_dir,
    )
    return support.Cli(config_dir)


def by_principal(rbac, principal_id: str, scope: str | None = None) -> list:
    ra = rbac.authz.role_assignments
    flt = f"principalId eq '{principal_id}'"
    return list(ra.list_for_scope(scope, filter=flt) if scope else ra.list_for_subscription(filter=flt))


def test_seed_002_with_the_cli(cli, rbac, arm, rg):
    """`az role assignment create --assignee <identity principalId> --role Reader --scope <group>`."""
    identity = arm.create_identity(rg, "ID1")
    scope = arm.rg_id(rg)
    created = cli.json("role", "assignment", "create", "--assignee", identity.principal_id, "--role", "Reader", "--scope", scope)
    rbac.granted.append(created["id"])
    assert created["principalId"] == identity.principal_id, created
    assert created["principalType"] == "ServicePrincipal", created
    assert created["roleDefinitionId"].lower() == rbac.role_id(ROLE_READER).lower(), created
    assert created["scope"].lower() == scope.lower(), created
    assert created["type"] == "Microsoft.Authorization/roleAssignments", created
    assert support.GUID_RE.match(created["name"]), created
    assert [a.name for a in by_principal(rbac, identity.principal_id, scope)] == [created["name"]]

    # The same again: az returns the existing assignment (after the server's 409 RoleAssignmentExists).
    again = cli.json("role", "assignment", "create", "--assignee", identity.principal_id, "--role", "Reader", "--scope", scope)
    assert again["id"] == created["id"], again
    assert len(by_principal(rbac, identity.principal_id)) == 1

    listed = cli.json("role", "assignment", "list", "--assignee", identity.principal_id, "--scope", scope)
    assert [a["name"] for a in listed] == [created["name"]], listed
    assert listed[0]["roleDefinitionName"] == "Reader", listed
    assert listed[0]["principalId"] == identity.principal_id

    cli("role", "assignment", "delete", "--assignee", identity.principal_id, "--role", "Reader", "--scope", scope)
    assert by_principal(rbac, identity.principal_id) == []
    assert cli.json("role", "assignment", "list", "--assignee", identity.principal_id, "--scope", scope) == []


@pytest.mark.parametrize("role_form", ["name", "lower-name", "guid", "full-id"])
def test_assignee_by_app_id_and_role_in_every_form(cli, rbac, arm, rg, role_form):
    sp = rbac.principal()
    role = {
        "name": "Managed Identity Operator",
        "lower-name": "managed identity operator",
        "guid": ROLE_MI_OPERATOR,
        "full-id": rbac.role_id(ROLE_MI_OPERATOR),
    }[role_form]
    created = cli.json("role", "assignment", "create", "--assignee", sp.sp.app_id, "--role", role, "--scope", arm.rg_id(rg))
    rbac.granted.append(created["id"])
    # The application id resolves to the service principal's object id.
    assert created["principalId"] == sp.object_id, created
    assert created["principalType"] == "ServicePrincipal", created
    assert created["roleDefinitionId"].lower() == rbac.role_id(ROLE_MI_OPERATOR).lower(), created
    # By application id in list and delete, too.
    listed = cli.json("role", "assignment", "list", "--assignee", sp.sp.app_id, "--scope", arm.rg_id(rg))
    assert [a["id"] for a in listed] == [created["id"]], listed
    cli("role", "assignment", "delete", "--ids", created["id"])
    assert by_principal(rbac, sp.object_id) == []


def test_assignee_by_user_name(cli, rbac, arm, rg, server):
    created = cli.json("role", "assignment", "create", "--assignee", server.admin_username, "--role", "Reader", "--scope", arm.rg_id(rg))
    rbac.granted.append(created["id"])
    assert created["principalType"] == "User", created
    from azure.identity import UsernamePasswordCredential

    user = UsernamePasswordCredential(
        support.AZ_CLI_CLIENT_ID, server.admin_username, server.admin_password,
        tenant_id=server.tenant_id, authority=server.url, disable_instance_discovery=True,
    )
    assert created["principalId"] == support.unverified_claims(user.get_token(support.ARM_SCOPE).token)["oid"], created
    assert created["name"] in [a.name for a in by_principal(rbac, created["principalId"], arm.rg_id(rg))]


def test_assignee_object_id_without_graph(cli, rbac, arm, rg):
    sp = rbac.principal()
    created = cli.json(
        "role", "assignment", "create", "--assignee-object-id", sp.object_id,
        "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope", arm.rg_id(rg),
    )
    rbac.granted.append(created["id"])
    assert created["principalId"] == sp.object_id
    assert created["principalType"] == "ServicePrincipal"


def test_cli_errors(cli, rbac, arm, rg):
    scope = arm.rg_id(rg)
    cli.fails("role", "assignment", "create", "--assignee-object-id", "6f1f4a5e-0000-4000-8000-000000000001",
              "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope", scope, code="PrincipalNotFound")
    sp = rbac.principal()
    out = cli.fails("role", "assignment", "create", "--assignee", sp.object_id, "--role", "No Such Role", "--scope", scope)
    assert "No Such Role" in out.stderr, out.describe()
    assert by_principal(rbac, sp.object_id) == []


def test_role_definition_list_and_create(cli, rbac, arm, rg):
    readers = cli.json("role", "definition", "list", "--name", "Reader")
    assert [d["name"] for d in readers] == [ROLE_READER], readers
    assert readers[0]["roleName"] == "Reader"
    assert readers[0]["roleType"] == "BuiltInRole"
    assert readers[0]["permissions"][0]["actions"] == ["*/read"]
    assert cli.json("role", "definition", "list", "--name", ROLE_READER)[0]["roleName"] == "Reader"
    everything = {d["name"] for d in cli.json("role", "definition", "list")}
    assert set(support.BUILTIN_ROLES.values()) <= everything

    # az's custom-role JSON format.
    role_name = support.unique_name("py-cli-keeper")
    definition = {
        "Name": role_name,
        "Description": "create and read identities, never delete them",
        "Actions": ["Microsoft.ManagedIdentity/userAssignedIdentities/*", "Microsoft.Resources/subscriptions/resourceGroups/read"],
        "NotActions": ["Microsoft.ManagedIdentity/userAssignedIdentities/delete"],
        "AssignableScopes": [arm.rg_id(rg)],
    }
    created = cli.json("role", "definition", "create", "--role-definition", json.dumps(definition))
    role_guid = created["name"]
    try:
        assert created["roleName"] == role_name, created
        assert created["roleType"] == "CustomRole", created
        assert created["permissions"][0]["notActions"] == ["Microsoft.ManagedIdentity/userAssignedIdentities/delete"]
        got = rbac.authz.role_definitions.get(f"/subscriptions/{arm.sub}", role_guid)
        assert (got.role_name, got.role_type) == (role_name, "CustomRole")
        custom = cli.json("role", "definition", "list", "--custom-role-only", "true")
        assert role_name in [d["roleName"] for d in custom] and all(d["roleType"] == "CustomRole" for d in custom)

        # Assigned by name with the CLI, enforced for the SDK.
        keeper = rbac.principal()
        assignment = cli.json("role", "assignment", "create", "--assignee", keeper.object_id, "--role", role_name, "--scope", arm.rg_id(rg))
        rbac.granted.append(assignment["id"])
        made = keeper.create_identity(rg)
        with pytest.raises(HttpResponseError) as info:
            keeper.msi.user_assigned_identities.delete(rg, made.name)
        support.assert_authorization_failed(
            info.value, keeper.object_id, "Microsoft.ManagedIdentity/userAssignedIdentities/delete", made.id
        )
    finally:
        rbac.cleanup()
        try:
            rbac.authz.role_definitions.delete(f"/subscriptions/{arm.sub}", role_guid)
        except HttpResponseError:
            pass


def test_vm_create_assign_identity_with_role(cli, rbac, arm, rg):
    """`az vm create ... --assign-identity --role Reader --scope <group>`: the new system identity gets the role."""
    name = support.unique_name("vm")
    scope = arm.rg_id(rg)
    vm = cli.json("vm", "create", "-g", rg, "-n", name, "--assign-identity", "--role", "Reader", "--scope", scope,
                  "--admin-password", "myPassword12!")
    principal_id = vm["identity"]["systemAssignedIdentity"]
    assert support.GUID_RE.match(principal_id or ""), vm
    assert arm.compute.virtual_machines.get(rg, name).identity.principal_id == principal_id
    assigned = by_principal(rbac, principal_id, scope)
    assert len(assigned) == 1, [a.as_dict() for a in assigned]
    assert assigned[0].role_definition_id.lower() == rbac.role_id(ROLE_READER).lower()
    assert assigned[0].scope.lower() == scope.lower()
    assert assigned[0].principal_type == "ServicePrincipal"


def test_cli_as_a_reader(server, rbac, arm, rg, tmp_path):
    sp = rbac.principal()
    rbac.grant(sp.object_id, ROLE_READER, arm.rg_id(rg))
    other = arm.create_group().name
    try:
        reader = login_as(server, sp.sp, tmp_path / "reader-cli")
        assert reader.json("group", "show", "-n", rg)["name"] == rg
        assert [g["name"] for g in reader.json("group", "list")] == [rg]
        out = reader.fails("group", "show", "-n", other, code="AuthorizationFailed")
        assert "Microsoft.Resources/subscriptions/resourceGroups/read".lower() in out.stderr.lower(), out.describe()
        reader.fails("identity", "create", "-g", rg, "-n", support.unique_name("pyid"), code="AuthorizationFailed")
        # A Reader cannot grant itself more.
        reader.fails("role", "assignment", "create", "--assignee-object-id", sp.object_id, "--assignee-principal-type",
                     "ServicePrincipal", "--role", "Owner", "--scope", arm.rg_id(rg), code="AuthorizationFailed")
    finally:
        arm.delete_group(other)
