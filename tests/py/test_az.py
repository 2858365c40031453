"""The real Azure CLI (azure-cli 2.91.0, in its own venv made by ./scripts/test) runs the seeds'
"Azure CLI" commands verbatim against openmi (issue 16), each result checked through the API.

One server per backend for the whole session, on a random 127.x.y.z address with `--also-listen
that-address:443`, so MSAL's user-realm lookup (which drops the port) reaches it and
`az login -u` works. `openmi az-config --apply` registers the cloud; one signed-in config dir is
shared by the session's tests, and each other principal gets a copy of the unsigned one.
Commands a seed runs in sequence run in one test, to keep the suite's time in check.
"""

from __future__ import annotations

import json
import os
import random
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceNotFoundError

import support
from support import ROLE_VM_CONTRIBUTOR

AZ = os.environ.get("OPENMI_AZ") or str(support.REPO_ROOT / "target" / "az-venv" / "bin" / "az")
AZ_TIMEOUT = 180


@dataclass
class AzResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def json(self):
        try:
            return json.loads(self.stdout)
        except ValueError:
            raise AssertionError(f"not JSON: {self.describe()}") from None

    def describe(self) -> str:
        return f"`az {' '.join(self.args)}` -> {self.returncode}\nstdout: {self.stdout[-3000:]}\nstderr: {self.stderr[-3000:]}"


class Az:
    """`az` with its own AZURE_CONFIG_DIR and HOME, trusting the server's CA, offline."""

    def __init__(self, config_dir: Path, server: support.Server, home: Path):
        self.config_dir = Path(config_dir)
        self.server = server
        self.home = Path(home)
        self.home.mkdir(parents=True, exist_ok=True)

    def env(self, extra: dict | None = None) -> dict:
        env = support.child_env()
        env.update({
            "AZURE_CONFIG_DIR": str(self.config_dir),
            "HOME": str(self.home),
            "REQUESTS_CA_BUNDLE": self.server.ca_cert_path,
            "AZURE_CORE_INSTANCE_DISCOVERY": "false",
            "AZURE_CORE_COLLECT_TELEMETRY": "false",
            "AZURE_CORE_NO_COLOR": "true",
            "AZURE_CORE_ONLY_SHOW_ERRORS": "true",
            # No network beyond loopback (and the IMDS address `openmi vm run` serves): anything
            # else az tries goes to a closed port and fails.
            "HTTPS_PROXY": "http://127.0.0.1:9",
            "HTTP_PROXY": "http://127.0.0.1:9",
            "NO_PROXY": "127.0.0.0/8,localhost,169.254.169.254",
        })
        env.update(extra or {})
        return env

    def __call__(self, *args: str, check: bool = True) -> AzResult:
        res = subprocess.run([AZ, *args], capture_output=True, text=True, timeout=AZ_TIMEOUT, env=self.env(), stdin=subprocess.DEVNULL)
        out = AzResult(list(args), res.returncode, res.stdout, res.stderr)
        if check:
            assert res.returncode == 0, out.describe()
        return out

    def json(self, *args: str):
        return self(*args, "--output", "json").json()

    def fails(self, *args: str, text: str | None = None) -> AzResult:
        out = self(*args, check=False)
        assert out.returncode != 0, out.describe()
        if text:
            assert text in out.stderr, out.describe()
        return out


@pytest.fixture(scope="session")
def az_server(backend, tmp_path_factory):
    """A server of its own on a random loopback address, also on that address's port 443."""
    if not os.access(AZ, os.X_OK):
        pytest.fail(f"azure-cli is not installed at {AZ}: ./scripts/test installs it into target/az-venv")
    host = f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(2, 254)}"
    schema = support.PgSchema() if backend == "postgres" else None
    try:
        srv = support.start_server(
            tmp_path_factory.mktemp(f"az-{backend}"), database_url=schema.url if schema else None,
            extra_args=("--also-listen", f"{host}:443"), host=host,
        )
        try:
            yield srv
        finally:
            srv.stop()
    finally:
        if schema:
            schema.drop()


@pytest.fixture(scope="session")
def az_unsigned(az_server, tmp_path_factory) -> Path:
    """An AZURE_CONFIG_DIR with the openmi cloud registered by `openmi az-config --apply`, signed in to nothing."""
    base = tmp_path_factory.mktemp("az-config")
    cli_dir = base / "openmi-cli"
    support.cli_login_sp(az_server, cli_dir)
    config = base / "unsigned"
    out = support.run_cli(["az-config", "--apply", str(config), "--az", AZ], cli_dir, timeout=120)
    assert f"export AZURE_CONFIG_DIR={config}" in out.stdout, out.describe()
    return config


def az_copy(az_unsigned: Path, az_server, where: Path) -> Az:
    """An az of its own (a copy of the unsigned config dir)."""
    config = where / f"az-{uuid.uuid4().hex[:8]}"
    shutil.copytree(az_unsigned, config)
    return Az(config, az_server, where / "home")


@pytest.fixture(scope="session")
def az(az_server, az_unsigned, tmp_path_factory) -> Az:
    """az signed in as the bootstrap service principal (Owner of the subscription)."""
    cli = az_copy(az_unsigned, az_server, tmp_path_factory.mktemp("az-sp"))
    cli("login", "--service-principal", "-u", az_server.client_id, "-p", az_server.client_secret,
        "--tenant", az_server.tenant_id, "--output", "none")
    return cli


@pytest.fixture
def api(az_server, monkeypatch):
    """The real Python SDKs on the az server, to check what the commands did."""
    support.use_ca(monkeypatch, az_server.ca_cert_path)
    return support.arm_clients(az_server)


def uai_keys(vm) -> set:
    return {k.lower() for k in (vm.identity.user_assigned_identities or {})} if vm.identity else set()


def assignments_of(authz, rg: str, principal_id: str, role_guid: str) -> list:
    """The role assignments azure-mgmt-authorization lists at group `rg` itself for this principal and role."""
    return [
        a for a in authz.role_assignments.list_for_resource_group(rg)
        if a.principal_id == principal_id and a.role_definition_id.lower().rsplit("/", 1)[-1] == role_guid
        and a.scope.lower().endswith(f"/resourcegroups/{rg.lower()}")
    ]


def graph_object(az_server, api, object_id: str) -> dict:
    """The directory object Graph's `directoryObjects/getByIds` returns for this id (what az resolves with)."""
    res = support.graph_request(az_server, api.credential, "POST", "/v1.0/directoryObjects/getByIds",
                                json={"ids": [object_id], "types": ["user", "group", "servicePrincipal"]})
    assert res.status_code == 200, f"getByIds: HTTP {res.status_code}: {res.text[:400]}"
    found = [o for o in res.json()["value"] if o.get("id") == object_id]
    assert len(found) == 1, res.text[:600]
    return found[0]


# --------------------------------------------------------------------------------------------------


def test_cloud_registration_and_sign_ins(az, az_server, az_unsigned, tmp_path):
    # `az cloud register` found every endpoint through /metadata/endpoints (openmi az-config gave only ARM).
    cloud = az.json("cloud", "show")
    assert cloud["name"] == "openmi" and cloud["isActive"]
    assert cloud["endpoints"]["activeDirectory"].rstrip("/") == az_server.url
    assert cloud["endpoints"]["vmImageAliasDoc"].endswith("/openmi/vm-image-aliases.json")

    account = az.json("account", "show")
    assert account["id"] == az_server.subscription_id and account["tenantId"] == az_server.tenant_id
    assert account["user"] == {"name": az_server.client_id, "type": "servicePrincipal"}
    assert [a["id"] for a in az.json("account", "list")] == [az_server.subscription_id]
    az("account", "set", "--subscription", az_server.subscription_id)
    # ARM, Graph, and a Cosmos account's resource (Azure's account host name, and openmi's own
    # endpoint for an account, as @azure/cosmos asks for it).
    cosmos_resources = (["--resource", "https://myaccount.documents.azure.com"], ["--resource", f"{az_server.url}/cosmos/myaccount"])
    for extra in ([], ["--resource-type", "ms-graph"], ["--resource", "https://management.core.windows.net/"], *cosmos_resources):
        token = az.json("account", "get-access-token", *extra)
        claims = support.unverified_claims(token["accessToken"])
        assert claims["appid"] == az_server.client_id, (extra, claims)
    # This cloud's Graph is the server itself (microsoftGraphResourceId of /metadata/endpoints).
    graph = support.unverified_claims(az.json("account", "get-access-token", "--resource-type", "ms-graph")["accessToken"])
    assert graph["aud"] == f"{az_server.url}/", graph

    # A user with a password: MSAL's user-realm lookup goes to port 443, which --also-listen serves.
    user = az_copy(az_unsigned, az_server, tmp_path)
    user("login", "-u", az_server.admin_username, "-p", az_server.admin_password, "--output", "none")
    me = user.json("account", "show")
    assert me["user"] == {"name": az_server.admin_username, "type": "user"}
    assert support.unverified_claims(user.json("account", "get-access-token")["accessToken"])["upn"] == az_server.admin_username
    user.fails("login", "-u", az_server.admin_username, "-p", "wrong-password", text="AADSTS50126")


def test_seeds_000_001_003_azure_cli_tabs(az, api, az_server):
    sub = az_server.subscription_id
    rg = support.unique_name("myResourceGroup")
    rg_id = f"/subscriptions/{sub}/resourceGroups/{rg}"
    group = az.json("group", "create", "--name", rg, "--location", "westus")
    assert group["properties"]["provisioningState"] == "Succeeded"

    # Seed 000/001: a Windows VM with a system-assigned identity.
    created = az.json("vm", "create", "--resource-group", rg, "--name", "myVM", "--image", "win2016datacenter",
                      "--generate-ssh-keys", "--assign-identity", "--admin-username", "azureuser", "--admin-password", "myPassword12")
    vm = api.compute.virtual_machines.get(rg, "myVM")
    assert created["identity"]["systemAssignedIdentity"] == vm.identity.principal_id
    assert created["powerState"] == "VM running" and created["privateIpAddress"] == "10.0.0.4"
    assert support.GUID_RE.match(vm.identity.principal_id)
    assert vm.storage_profile.image_reference.sku.lower() == "2016-datacenter-gensecond"
    # The system-assigned principal is a service principal in the directory (Graph, as az looks it up).
    system = api.msi.system_assigned_identities.get_by_scope(scope=vm.id)
    sp = graph_object(az_server, api, vm.identity.principal_id)
    assert sp["@odata.type"] == "#microsoft.graph.servicePrincipal" and sp["appId"] == system.client_id, sp
    assert (sp["servicePrincipalType"], sp["displayName"]) == ("ManagedIdentity", "myVM"), sp

    # The same with --role contributor --scope <subscription>: the assignment is in the template.
    az.json("vm", "create", "--resource-group", rg, "--name", "myVM2", "--image", "win2016datacenter", "--generate-ssh-keys",
            "--assign-identity", "--role", "contributor", "--scope", f"/subscriptions/{sub}",
            "--admin-username", "azureuser", "--admin-password", "myPassword12")
    vm2 = api.compute.virtual_machines.get(rg, "myVM2")
    authz = support.authorization_client(az_server, api.credential)
    granted = [a for a in authz.role_assignments.list_for_subscription() if a.principal_id == vm2.identity.principal_id]
    assert [(a.scope.lower(), a.role_definition_id.lower().rsplit("/", 1)[-1]) for a in granted] == [
        (f"/subscriptions/{sub}", support.ROLE_CONTRIBUTOR)
    ], [a.as_dict() for a in granted]

    # Seed 003: a user-assigned identity, then VMs holding it (UbuntuLTS from the alias document, Ubuntu2204).
    identity = az.json("identity", "create", "-g", rg, "-n", "myUserAssignedIdentity")
    assert identity["principalId"] == api.msi.user_assigned_identities.get(rg, "myUserAssignedIdentity").principal_id
    assert az.json("identity", "show", "-g", rg, "-n", "myUserAssignedIdentity")["clientId"] == identity["clientId"]
    assert [i["name"] for i in az.json("identity", "list", "-g", rg)] == ["myUserAssignedIdentity"]
    # Seed 001's Linux form verbatim (a password, no SSH key).
    out = az.json("vm", "create", "--resource-group", rg, "--name", "myVM3", "--image", "UbuntuLTS", "--admin-username", "azureuser",
                  "--admin-password", "myPassword12", "--assign-identity", "myUserAssignedIdentity")
    assert out["identity"]["userAssignedIdentities"][identity["id"]]["principalId"] == identity["principalId"], out
    vm3 = api.compute.virtual_machines.get(rg, "myVM3")
    assert vm3.identity.type == "UserAssigned" and uai_keys(vm3) == {identity["id"].lower()}, vm3.identity
    held = next(iter(vm3.identity.user_assigned_identities.values()))
    assert (held.principal_id, held.client_id) == (identity["principalId"], identity["clientId"])
    ref = vm3.storage_profile.image_reference
    assert (ref.publisher, ref.offer, ref.sku) == ("Canonical", "UbuntuServer", "18.04-LTS"), ref
    assert vm3.os_profile.admin_username == "azureuser" and vm3.os_profile.admin_password is None
    linux = vm3.os_profile.linux_configuration
    assert not (linux and linux.ssh and linux.ssh.public_keys), "no SSH key for a password VM"
    # Ubuntu2204 with --generate-ssh-keys and no password.
    out = az.json("vm", "create", "--resource-group", rg, "--name", "myVM4", "--image", "Ubuntu2204", "--generate-ssh-keys",
                  "--assign-identity", "myUserAssignedIdentity", "--admin-username", "azureuser")
    assert out["identity"]["userAssignedIdentities"][identity["id"]]["principalId"] == identity["principalId"], out
    vm4 = api.compute.virtual_machines.get(rg, "myVM4")
    assert uai_keys(vm4) == {identity["id"].lower()}
    assert (az.home / ".ssh" / "id_rsa.pub").exists(), "--generate-ssh-keys wrote the key pair for the Linux VM"
    assert [k.key_data.strip() for k in vm4.os_profile.linux_configuration.ssh.public_keys] == [(az.home / ".ssh" / "id_rsa.pub").read_text().strip()]
    # Seed 003's Ubuntu2204 form verbatim: `--role` without `--scope`, for a user-assigned identity.
    # az 2.91 refuses it before any request (cm/vm/_validators.py::_validate_vm_vmss_msi), as it
    # does with a `--scope` added (a role is granted only to a system-assigned identity).
    seed003 = ["vm", "create", "--resource-group", rg, "--name", "myVM6", "--image", "Ubuntu2204", "--admin-username", "azureuser",
               "--admin-password", "myPassword12", "--assign-identity", "myUserAssignedIdentity", "--role", "Reader"]
    az.fails(*seed003, text="please specify both --role and --scope when assigning a role to the managed identity")
    az.fails(*seed003, "--scope", rg_id, text="'--scope'/'--role' is only applicable when assign system identity")
    with pytest.raises(ResourceNotFoundError):
        api.compute.virtual_machines.get(rg, "myVM6")
    # The form az accepts: the system-assigned identity too, which gets the role at the scope.
    az.json("vm", "create", "--resource-group", rg, "--name", "myVM6", "--image", "Ubuntu2204", "--admin-username", "azureuser",
            "--admin-password", "myPassword12", "--assign-identity", "[system]", "myUserAssignedIdentity", "--role", "Reader", "--scope", rg_id)
    vm6 = api.compute.virtual_machines.get(rg, "myVM6")
    assert vm6.identity.type == "SystemAssigned, UserAssigned" and uai_keys(vm6) == {identity["id"].lower()}, vm6.identity
    assert len(assignments_of(authz, rg, vm6.identity.principal_id, support.ROLE_READER)) == 1
    assert not [a for a in authz.role_assignments.list_for_resource_group(rg) if a.principal_id == identity["principalId"]], \
        "the user-assigned identity got no role"

    # `az vm identity assign` (system, then the user-assigned one), show, remove.
    az("vm", "identity", "assign", "-g", rg, "-n", "myVM3")
    assert api.compute.virtual_machines.get(rg, "myVM3").identity.type == "SystemAssigned, UserAssigned"
    shown = az.json("vm", "identity", "assign", "-g", rg, "-n", "myVM", "--identities", "myUserAssignedIdentity")
    assert identity["id"] in shown["userAssignedIdentities"], shown
    vm = api.compute.virtual_machines.get(rg, "myVM")
    assert uai_keys(vm) == {identity["id"].lower()} and vm.identity.principal_id == created["identity"]["systemAssignedIdentity"]
    shown = az.json("vm", "identity", "show", "-g", rg, "-n", "myVM")
    assert shown["type"] == "SystemAssigned, UserAssigned" and shown["principalId"] == vm.identity.principal_id
    az("vm", "identity", "remove", "-g", rg, "-n", "myVM", "--identities", "myUserAssignedIdentity")
    assert uai_keys(api.compute.virtual_machines.get(rg, "myVM")) == set()
    az("vm", "identity", "remove", "-g", rg, "-n", "myVM")
    assert (api.compute.virtual_machines.get(rg, "myVM").identity or None) is None or api.compute.virtual_machines.get(rg, "myVM").identity.type == "None"

    # Role assignments by object id, app id and user name (az resolves them through Graph).
    by_oid = az.json("role", "assignment", "create", "--assignee", identity["principalId"], "--role", "Reader", "--scope", rg_id)
    [reader] = assignments_of(authz, rg, identity["principalId"], support.ROLE_READER)
    assert (reader.id, reader.principal_type) == (by_oid["id"], "ServicePrincipal"), reader.as_dict()
    # The same command again: the PUT answers 409 RoleAssignmentExists, and az (idempotent,
    # cm/role/custom.py::create_role_assignment) lists the assignments and prints the existing one.
    again = az.json("role", "assignment", "create", "--assignee", identity["principalId"], "--role", "Reader", "--scope", rg_id)
    assert again["id"] == by_oid["id"] and again["principalId"] == identity["principalId"], again
    assert [a.id for a in assignments_of(authz, rg, identity["principalId"], support.ROLE_READER)] == [by_oid["id"]]
    az("role", "assignment", "create", "--assignee", identity["clientId"], "--role", "Contributor", "--scope", rg_id)
    by_upn = az.json("role", "assignment", "create", "--assignee", az_server.admin_username, "--role", "Reader", "--scope", rg_id)
    users = support.graph_request(az_server, api.credential, "GET", "/v1.0/users",
                                  params={"$filter": f"userPrincipalName eq '{az_server.admin_username}'"}).json()["value"]
    [user_reader] = assignments_of(authz, rg, users[0]["id"], support.ROLE_READER)
    assert (user_reader.id, user_reader.principal_type) == (by_upn["id"], "User"), user_reader.as_dict()
    listed = az.json("role", "assignment", "list", "--scope", rg_id)
    pairs = {(a["principalId"], a["roleDefinitionName"], a["principalType"]) for a in listed}
    assert (identity["principalId"], "Reader", "ServicePrincipal") in pairs, listed
    assert (identity["principalId"], "Contributor", "ServicePrincipal") in pairs, listed
    assert any(a["roleDefinitionName"] == "Reader" and a["principalType"] == "User" and a.get("principalName") == az_server.admin_username for a in listed), listed
    assert "Reader" in az("role", "assignment", "list", "--scope", rg_id, "--output", "table").stdout
    az("role", "assignment", "delete", "--assignee", identity["clientId"], "--role", "Contributor", "--scope", rg_id)
    assert not [a for a in authz.role_assignments.list_for_resource_group(rg) if a.principal_id == identity["principalId"] and a.role_definition_id.lower().endswith(support.ROLE_CONTRIBUTOR)]
    names = {r["roleName"] for r in az.json("role", "definition", "list")}
    assert {"Owner", "Contributor", "Reader", "Managed Identity Operator"} <= names

    # `az resource delete` with --resource-type (the inner `//` path); a template deployment.
    az("resource", "delete", "--resource-group", rg, "--name", "myVM4", "--resource-type", "Microsoft.Compute/virtualMachines")
    assert "myVM4" not in [v.name for v in api.compute.virtual_machines.list(rg)]
    template = az.home / "seed001.json"
    template.write_text(json.dumps({
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "parameters": {"adminPassword": {"type": "securestring"}},
        "variables": {"vmName": "myVM5"},
        "resources": [{"apiVersion": "2018-06-01", "type": "Microsoft.Compute/virtualMachines", "name": "[variables('vmName')]",
                       "location": "[resourceGroup().location]", "identity": {"type": "SystemAssigned"},
                       "properties": {"osProfile": {"computerName": "myVM5", "adminUsername": "azureuser", "adminPassword": "[parameters('adminPassword')]"}}}],
    }, indent=2))
    deployment = az.json("deployment", "group", "create", "-g", rg, "--template-file", str(template), "--parameters", "adminPassword=myPassword12")
    assert deployment["properties"]["provisioningState"] == "Succeeded"
    assert support.GUID_RE.match(api.compute.virtual_machines.get(rg, "myVM5").identity.principal_id)

    # az's error output reads as on Azure.
    missing = support.unique_name("nogroup")
    az.fails("group", "show", "-n", missing, text="(ResourceGroupNotFound)")

    az("identity", "delete", "-g", rg, "-n", "myUserAssignedIdentity")
    assert [i["name"] for i in az.json("identity", "list", "-g", rg)] == []
    with pytest.raises(ResourceNotFoundError):
        api.msi.user_assigned_identities.get(rg, "myUserAssignedIdentity")
    az("group", "delete", "--name", rg, "--yes")
    assert not api.resource.resource_groups.check_existence(rg)


def test_seed_002_with_az_alone(az, api, az_server, az_unsigned, tmp_path, agents):
    sub = az_server.subscription_id
    rg = support.unique_name("myResourceGroupVM")
    rg_id = f"/subscriptions/{sub}/resourcegroups/{rg}"
    az("group", "create", "--name", rg, "--location", "westus", "--output", "none")
    az("vm", "create", "--resource-group", rg, "--name", "myVM", "--image", "win2016datacenter", "--admin-username", "azureuser",
       "--admin-password", "myPassword12", "--output", "none")
    identity = az.json("identity", "create", "-g", rg, "-n", "ID1")
    az("vm", "identity", "assign", "-g", rg, "-n", "myVM", "--identities", "ID1", "--output", "none")
    vm = api.compute.virtual_machines.get(rg, "myVM")
    assert vm.identity.type == "UserAssigned" and uai_keys(vm) == {identity["id"].lower()}, vm.identity
    held = next(iter(vm.identity.user_assigned_identities.values()))
    assert (held.principal_id, held.client_id) == (identity["principalId"], identity["clientId"])
    az("role", "assignment", "create", "--assignee", identity["principalId"], "--role", "Reader", "--scope", rg_id, "--output", "none")
    authz = support.authorization_client(az_server, api.credential)
    assert len(assignments_of(authz, rg, identity["principalId"], support.ROLE_READER)) == 1
    # The system-assigned identity as well (seed 003's `vm identity assign`), Reader on the group.
    az("vm", "identity", "assign", "-g", rg, "-n", "myVM", "--role", "Reader", "--scope", rg_id, "--output", "none")
    vm = api.compute.virtual_machines.get(rg, "myVM")
    assert vm.identity.type == "SystemAssigned, UserAssigned" and uai_keys(vm) == {identity["id"].lower()}, vm.identity
    system = api.msi.system_assigned_identities.get_by_scope(scope=vm.id)
    assert system.principal_id == vm.identity.principal_id
    assert len(assignments_of(authz, rg, system.principal_id, support.ROLE_READER)) == 1

    # Inside the VM: az with the cloud registered and nothing else, through `openmi vm run`; each
    # `az login --identity` form in a config dir of its own, then a read of the group and a token.
    uami = (identity["principalId"], identity["clientId"])
    forms = {
        "client": (["--client-id", identity["clientId"]], uami, "userAssignedIdentity", f"MSIClient-{identity['clientId']}"),
        "object": (["--object-id", identity["principalId"]], uami, "userAssignedIdentity", f"MSIObject-{identity['principalId']}"),
        "resource": (["--resource-id", identity["id"]], uami, "userAssignedIdentity", f"MSIResource-{identity['id']}"),
        "system": ([], (system.principal_id, system.client_id), "systemAssignedIdentity", "MSI"),
    }
    out = tmp_path / "on-vm"
    out.mkdir()
    lines = ["set -e"]
    for key, (selector, _, _, _) in forms.items():
        config = az_copy(az_unsigned, az_server, tmp_path).config_dir
        run = f"AZURE_CONFIG_DIR={shlex.quote(str(config))} {AZ}"
        lines += [
            f"{run} login --identity {' '.join(map(shlex.quote, selector))} --output none",
            f"{run} account show --query user --output json > {out}/{key}.user",
            f"{run} group show -n {rg} --query name --output tsv > {out}/{key}.group",
            f"{run} account get-access-token --query accessToken --output tsv > {out}/{key}.token",
        ]
    lines.append(f"{AZ} login --identity --client-id {identity['clientId']} --output none && "
                 f"{AZ} rest --method get --url /subscriptions/{sub}/resourceGroups/{rg}?api-version=2016-06-01 "
                 f"--query properties.provisioningState --output tsv > {out}/rest")
    on_vm = az_copy(az_unsigned, az_server, tmp_path)
    res = support.vm_run(agents.cli_dir(az_server), rg, "myVM", ["bash", "-c", "\n".join(lines)], env=on_vm.env())
    assert res.returncode == 0, res.describe()
    for key, (_, (principal_id, client_id), name, info) in forms.items():
        user = json.loads((out / f"{key}.user").read_text())
        assert user == {"assignedIdentityInfo": info, "name": name, "type": "servicePrincipal"}, (key, user)
        assert (out / f"{key}.group").read_text().split() == [rg], key
        claims = support.unverified_claims((out / f"{key}.token").read_text().strip())
        assert (claims["oid"], claims["appid"]) == (principal_id, client_id), (key, claims)
    assert (out / "rest").read_text().split() == ["Succeeded"]

    # After `az vm identity remove` the next `az login --identity` fails with IMDS's answer; once the
    # system identity is removed too, so does the one with no selector.
    az("vm", "identity", "remove", "-g", rg, "-n", "myVM", "--identities", "ID1", "--output", "none")
    vm = api.compute.virtual_machines.get(rg, "myVM")
    assert vm.identity.type == "SystemAssigned" and uai_keys(vm) == set() and vm.identity.principal_id == system.principal_id, vm.identity
    az("vm", "identity", "remove", "-g", rg, "-n", "myVM", "--output", "none")
    identity_after = api.compute.virtual_machines.get(rg, "myVM").identity
    assert identity_after is None or identity_after.type == "None", identity_after
    script = (
        f"{AZ} login --identity --client-id {identity['clientId']} --output none 2> {out}/client.err; echo $? > {out}/client.rc; "
        f"{AZ} login --identity --output none 2> {out}/system.err; echo $? > {out}/system.rc"
    )
    res = support.vm_run(agents.cli_dir(az_server), rg, "myVM", ["bash", "-c", script], env=az_copy(az_unsigned, az_server, tmp_path).env())
    assert res.returncode == 0, res.describe()
    for key in ("client", "system"):
        err = (out / f"{key}.err").read_text()
        assert (out / f"{key}.rc").read_text().strip() != "0", (key, err)
        assert "ERROR: Identity not found" in err, (key, err)
    az("group", "delete", "--name", rg, "--yes")


def test_linked_authorization_failed_as_az_prints_it(az, api, az_server, az_unsigned, tmp_path):
    rg = support.unique_name("vmcrg")
    az("group", "create", "--name", rg, "--location", "westus", "--output", "none")
    identity = az.json("identity", "create", "-g", rg, "-n", "ID1")
    az("vm", "create", "--resource-group", rg, "--name", "myVM", "--image", "win2016datacenter", "--admin-username", "azureuser",
       "--admin-password", "myPassword12", "--output", "none")
    sp = support.create_service_principal(az_server, admin_credential=api.credential)
    authz = support.authorization_client(az_server, api.credential)
    authz.role_assignments.create(f"/subscriptions/{az_server.subscription_id}/resourceGroups/{rg}", str(uuid.uuid4()), {"properties": {
        "roleDefinitionId": support.role_definition_id(az_server.subscription_id, ROLE_VM_CONTRIBUTOR),
        "principalId": sp.object_id, "principalType": "ServicePrincipal"}})
    vmc = az_copy(az_unsigned, az_server, tmp_path)
    vmc("login", "--service-principal", "-u", sp.app_id, "-p", sp.secret, "--tenant", az_server.tenant_id, "--output", "none")
    failed = vmc.fails("vm", "identity", "assign", "-g", rg, "-n", "myVM", "--identities", identity["id"], text="(LinkedAuthorizationFailed)")
    assert "userAssignedIdentities/assign/action" in failed.stderr, failed.describe()
    assert uai_keys(api.compute.virtual_machines.get(rg, "myVM")) == set()
    vmc.fails("group", "delete", "--name", rg, "--yes", text="(AuthorizationFailed)")
    authz.role_assignments.create(identity["id"], str(uuid.uuid4()), {"properties": {
        "roleDefinitionId": support.role_definition_id(az_server.subscription_id, support.ROLE_MI_OPERATOR),
        "principalId": sp.object_id, "principalType": "ServicePrincipal"}})
    vmc("vm", "identity", "assign", "-g", rg, "-n", "myVM", "--identities", identity["id"], "--output", "none")
    assert uai_keys(api.compute.virtual_machines.get(rg, "myVM")) == {identity["id"].lower()}
    az("group", "delete", "--name", rg, "--yes")


def test_az_follows_next_link(az, api, az_server):
    """Issue 19: `az identity list` pages through ARM's nextLink (1 100 identities, two pages)."""
    from concurrent.futures import ThreadPoolExecutor

    rg = support.unique_name("azpage")
    az("group", "create", "--name", rg, "--location", "westus", "--output", "none")
    token = api.token()

    def put(index: int) -> str:
        res = api.raw("PUT", f"{api.identity_id(rg, f'id{index:04d}')}?api-version=2023-01-31", token=token, json={"location": "westus"})
        assert res.status_code in (200, 201), res.text
        return res.json()["id"].lower()

    with ThreadPoolExecutor(8) as pool:
        created = set(pool.map(put, range(1100)))
    first = api.raw("GET", f"{api.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities?api-version=2023-01-31").json()
    assert len(first["value"]) == 1000 and first.get("nextLink"), "two pages"
    listed = az.json("identity", "list", "-g", rg, "--query", "[].id")
    assert len(listed) == 1100 and {item.lower() for item in listed} == created
    az("group", "delete", "--name", rg, "--yes", "--output", "none")


def test_az_monitor_activity_log_reads_the_audit_trail(az, api, az_server):
    """Issue 20: `az monitor activity-log list` (its own request classes, api-version 2015-04-01,
    unquoted timestamps in `$filter`) reads the Activity Log of what az itself just did."""
    rg = support.unique_name("azaudit")
    az("group", "create", "--name", rg, "--location", "westus", "--output", "none")
    identity = az.json("identity", "create", "-g", rg, "-n", "audited", "--location", "westus")
    az.fails("identity", "create", "-g", rg, "-n", "bad!name", "--location", "westus")

    events = az.json("monitor", "activity-log", "list", "--resource-group", rg, "--offset", "1h")
    assert isinstance(events, list) and events, events
    operations = {(e["operationName"]["value"], e["status"]["value"]) for e in events}
    assert ("Microsoft.ManagedIdentity/userAssignedIdentities/write", "Succeeded") in operations, operations
    assert ("Microsoft.Resources/subscriptions/resourceGroups/write", "Succeeded") in operations, operations
    write = next(e for e in events if e["operationName"]["value"].endswith("userAssignedIdentities/write") and e["status"]["value"] == "Succeeded")
    assert write["resourceId"].lower() == identity["id"].lower()
    assert write["caller"] and write["httpRequest"]["clientIpAddress"].startswith("127.")
    assert write["claims"]["appid"] == az_server.client_id
    failed = [e for e in events if e["status"]["value"] == "Failed"]
    assert [e["subStatus"]["value"] for e in failed] == ["InvalidResourceName"], failed

    # Filters az builds: correlation id, caller and status, a resource, --select, --max-events.
    by_correlation = az.json("monitor", "activity-log", "list", "--correlation-id", write["correlationId"], "--offset", "1h")
    assert [e["eventDataId"] for e in by_correlation] == [write["eventDataId"]]
    refused = az.json("monitor", "activity-log", "list", "--resource-group", rg, "--caller", write["caller"], "--status", "Failed", "--offset", "1h")
    assert [e["eventDataId"] for e in refused] == [failed[0]["eventDataId"]]
    on_identity = az.json("monitor", "activity-log", "list", "--resource-id", identity["id"], "--offset", "1h")
    assert write["eventDataId"] in {e["eventDataId"] for e in on_identity}
    selected = az.json("monitor", "activity-log", "list", "--resource-group", rg, "--offset", "1h", "--select", "operationName", "status")
    assert selected and all(set(e) <= {"operationName", "status"} for e in selected), selected[:2]
    assert len(az.json("monitor", "activity-log", "list", "--resource-group", rg, "--offset", "1h", "--max-events", "2")) == 2
    az("group", "delete", "--name", rg, "--yes", "--output", "none")
