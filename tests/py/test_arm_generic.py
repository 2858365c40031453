"""Generic ARM: resources by id, providers, subscriptions and locations, cloud metadata, group-delete
cascades, and ARM's errors (status, `{"error":{"code","message"}}`, WWW-Authenticate) seen raw."""

from __future__ import annotations

import uuid

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

import support
from support import ARM_COMPUTE_API, ARM_MSI_API, ARM_RG_API

MSI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities"
VM_TYPE = "Microsoft.Compute/virtualMachines"


# --------------------------------------------------------------------------------------------------
# resources by id (ResourceManagementClient.resources)


def test_resources_by_id(arm, rg):
    identity = arm.create_identity(rg)
    generic = arm.resource.resources.get_by_id(identity.id, api_version="2023-01-31")
    assert generic.id.lower() == identity.id.lower()
    assert generic.name == identity.name
    assert generic.type == MSI_TYPE
    assert generic.location == "westus"
    assert generic.properties["principalId"] == identity.principal_id
    assert generic.properties["clientId"] == identity.client_id
    assert arm.resource.resources.check_existence_by_id(identity.id, api_version="2023-01-31") is True

    support.timed_result(arm.resource.resources.begin_delete_by_id(identity.id, api_version="2023-01-31"))
    with pytest.raises(ResourceNotFoundError):
        arm.msi.user_assigned_identities.get(rg, identity.name)
    with pytest.raises(ResourceNotFoundError):
        arm.resource.resources.get_by_id(identity.id, api_version="2023-01-31")
    assert arm.resource.resources.check_existence_by_id(identity.id, api_version="2023-01-31") is False
    # Its service principal went with it.
    assert support.graph_service_principals_by_app_id(arm, identity.client_id) == []


def test_resources_list_by_resource_group(arm, rg):
    identity = arm.create_identity(rg)
    vm = arm.create_vm(rg, support.unique_name("vm"), identity={"type": "SystemAssigned"})
    listed = {r.id.lower(): r for r in arm.resource.resources.list_by_resource_group(rg)}
    assert identity.id.lower() in listed, sorted(listed)
    assert vm.id.lower() in listed, sorted(listed)
    assert listed[identity.id.lower()].type == MSI_TYPE
    assert listed[vm.id.lower()].type == VM_TYPE
    assert listed[vm.id.lower()].identity.principal_id == vm.identity.principal_id
    # The subscription-wide listing has them too.
    everything = {r.id.lower() for r in arm.resource.resources.list()}
    assert {identity.id.lower(), vm.id.lower()} <= everything


def test_resource_type_without_behaviour_is_stored_as_given(arm, rg):
    """A type openmi has no behaviour for (a key vault) is stored, read, listed and deleted generically."""
    vault_id = f"{arm.rg_id(rg)}/providers/Microsoft.KeyVault/vaults/vault1"
    body = {
        "location": "westus",
        "tags": {"role": "vault"},
        "properties": {"tenantId": arm.server.tenant_id, "sku": {"family": "A", "name": "standard"}, "accessPolicies": []},
    }
    created = support.timed_result(arm.resource.resources.begin_create_or_update_by_id(vault_id, body, api_version="2023-07-01"))
    assert created.id.lower() == vault_id.lower()
    assert created.type == "Microsoft.KeyVault/vaults"
    got = arm.resource.resources.get_by_id(vault_id, api_version="2023-07-01")
    assert got.tags == {"role": "vault"}
    assert got.properties["sku"] == {"family": "A", "name": "standard"}
    assert vault_id.lower() in [r.id.lower() for r in arm.resource.resources.list_by_resource_group(rg)]
    support.timed_result(arm.resource.resources.begin_delete_by_id(vault_id, api_version="2023-07-01"))
    with pytest.raises(ResourceNotFoundError):
        arm.resource.resources.get_by_id(vault_id, api_version="2023-07-01")


def test_network_interfaces_have_behaviour(arm, rg):
    """A NIC is a type with behaviour (issue 15): its subnet must exist, and it gets an address and a MAC."""
    nic_id = f"{arm.rg_id(rg)}/providers/Microsoft.Network/networkInterfaces/nic1"
    body = {"location": "westus", "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": {"privateIPAllocationMethod": "Dynamic"}}]}}
    with pytest.raises(HttpResponseError) as info:
        arm.resource.resources.begin_create_or_update_by_id(nic_id, body, api_version="2024-05-01").result()
    assert info.value.status_code == 400, support.describe_http_error(info.value)
    vnet_id = f"{arm.rg_id(rg)}/providers/Microsoft.Network/virtualNetworks/vnet1"
    support.timed_result(arm.resource.resources.begin_create_or_update_by_id(vnet_id, {
        "location": "westus", "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}, "subnets": [{"name": "s1", "properties": {"addressPrefix": "10.1.2.0/24"}}]},
    }, api_version="2024-05-01"))
    body["properties"]["ipConfigurations"][0]["properties"]["subnet"] = {"id": f"{vnet_id}/subnets/s1"}
    created = support.timed_result(arm.resource.resources.begin_create_or_update_by_id(nic_id, body, api_version="2024-05-01"))
    assert created.properties["ipConfigurations"][0]["properties"]["privateIPAddress"] == "10.1.2.4"
    assert created.properties["ipConfigurations"][0]["id"].lower() == f"{nic_id}/ipConfigurations/ipconfig1".lower()
    again = support.timed_result(arm.resource.resources.begin_create_or_update_by_id(nic_id, body, api_version="2024-05-01"))
    assert again.properties["macAddress"] == created.properties["macAddress"], "the MAC address stays"
    assert again.properties["ipConfigurations"][0]["properties"]["privateIPAddress"] == "10.1.2.4", "so does the address"


def test_get_missing_resource_by_id(arm, rg):
    missing = arm.identity_id(rg, support.unique_name("missing"))
    with pytest.raises(ResourceNotFoundError) as info:
        arm.resource.resources.get_by_id(missing, api_version="2023-01-31")
    assert support.arm_error_code(info.value) == "ResourceNotFound", support.describe_http_error(info.value)


# --------------------------------------------------------------------------------------------------
# providers, subscriptions, locations


def test_providers(arm):
    msi = arm.resource.providers.get("Microsoft.ManagedIdentity")
    assert msi.namespace == "Microsoft.ManagedIdentity"
    assert msi.registration_state == "Registered"
    types = {t.resource_type: t for t in msi.resource_types}
    assert "userAssignedIdentities" in types, sorted(types)
    versions = types["userAssignedIdentities"].api_versions
    assert versions, types["userAssignedIdentities"].as_dict()
    assert ARM_MSI_API in versions or "2023-01-31" in versions, versions

    compute = arm.resource.providers.get("Microsoft.Compute")
    compute_types = {t.resource_type: t for t in compute.resource_types}
    assert "virtualMachines" in compute_types, sorted(compute_types)
    assert compute_types["virtualMachines"].api_versions
    assert compute_types["virtualMachines"].locations

    namespaces = {p.namespace for p in arm.resource.providers.list()}
    assert {"Microsoft.ManagedIdentity", "Microsoft.Compute", "Microsoft.Resources"} <= namespaces, sorted(namespaces)

    # Case-insensitive namespace.
    assert arm.resource.providers.get("microsoft.managedidentity").namespace == "Microsoft.ManagedIdentity"


def test_subscriptions_and_locations(arm):
    subs = list(arm.subscriptions.subscriptions.list())
    assert arm.sub in [s.subscription_id for s in subs]
    sub = arm.subscriptions.subscriptions.get(arm.sub)
    assert sub.subscription_id == arm.sub
    assert sub.id == f"/subscriptions/{arm.sub}"
    assert sub.state == "Enabled"
    assert sub.tenant_id == arm.server.tenant_id

    locations = list(arm.subscriptions.subscriptions.list_locations(arm.sub))
    assert locations
    assert all(loc.name for loc in locations)
    assert "westus" in [loc.name for loc in locations]

    res = arm.raw("GET", f"/subscriptions/{arm.sub}/locations?api-version=2022-12-01")
    assert res.status_code == 200, res.text
    value = res.json()["value"]
    assert any(isinstance(loc.get("name"), str) and loc["name"] for loc in value), value


def test_cloud_metadata_endpoints(arm):
    # No token: az cloud register fetches this with a plain requests session.
    res = arm.raw("GET", "/metadata/endpoints?api-version=2022-09-01", token=None)
    assert res.status_code == 200, res.text
    assert res.headers.get("content-type", "").startswith("application/json"), res.headers
    meta = res.json()
    assert meta["resourceManager"].rstrip("/") == arm.server.url, meta
    assert meta["authentication"]["loginEndpoint"].rstrip("/") == arm.server.url, meta
    audiences = meta["authentication"]["audiences"]
    assert isinstance(audiences, list) and audiences, meta
    assert isinstance(meta["suffixes"], dict), meta
    assert isinstance(meta.get("name"), str) and meta["name"], meta

    # az uses audiences[0] as the management resource: a token for it must be accepted by ARM.
    token = arm.credential.get_token(audiences[0].rstrip("/") + "/.default").token
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token=token)
    assert res.status_code == 200, res.text


# --------------------------------------------------------------------------------------------------
# deleting a group deletes everything in it


def test_group_delete_cascades(arm):
    doomed = arm.create_group().name
    kept = arm.create_group().name
    try:
        id1 = arm.create_identity(doomed)
        id2 = arm.create_identity(doomed)
        vm = arm.create_vm(doomed, "vm1", identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {id1.id: {}}})
        support.timed_result(arm.compute.virtual_machine_extensions.begin_create_or_update(
            doomed, "vm1", "ManagedIdentityExtensionForLinux",
            {"location": "westus", "properties": {"publisher": "Microsoft.ManagedIdentity", "type": "ManagedIdentityExtensionForLinux",
                                                  "typeHandlerVersion": "1.0", "settings": {"port": 50342}}},
        ))
        vm_system = arm.msi.system_assigned_identities.get_by_scope(scope=vm.id)
        nic_id = f"{arm.rg_id(doomed)}/providers/Microsoft.KeyVault/vaults/vault1"
        support.timed_result(arm.resource.resources.begin_create_or_update_by_id(nic_id, {"location": "westus"}, api_version="2023-07-01"))

        other_id = arm.create_identity(kept, "same-name")
        arm.create_identity(doomed, "same-name")
        other_vm = arm.create_vm(kept, "vm1", identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {other_id.id: {}}})

        support.timed_result(arm.resource.resource_groups.begin_delete(doomed))

        assert arm.resource.resource_groups.check_existence(doomed) is False
        for name in (id1.name, id2.name, "same-name"):
            with pytest.raises(ResourceNotFoundError) as info:
                arm.msi.user_assigned_identities.get(doomed, name)
            assert support.arm_error_code(info.value) in ("ResourceGroupNotFound", "ResourceNotFound")
        with pytest.raises(ResourceNotFoundError):
            arm.compute.virtual_machines.get(doomed, "vm1")
        with pytest.raises(ResourceNotFoundError):
            arm.compute.virtual_machine_extensions.get(doomed, "vm1", "ManagedIdentityExtensionForLinux")
        with pytest.raises(ResourceNotFoundError):
            arm.msi.system_assigned_identities.get_by_scope(scope=vm.id)
        with pytest.raises(ResourceNotFoundError):
            arm.resource.resources.get_by_id(nic_id, api_version="2023-07-01")
        # The service principals of the group's identities and of its VM are gone from the directory.
        for app_id in (id1.client_id, id2.client_id, vm_system.client_id):
            assert support.graph_service_principals_by_app_id(arm, app_id) == [], app_id
        sub_ids = {i.id.lower() for i in arm.msi.user_assigned_identities.list_by_subscription()}
        assert id1.id.lower() not in sub_ids and id2.id.lower() not in sub_ids
        assert vm.id.lower() not in {v.id.lower() for v in arm.compute.virtual_machines.list_all()}

        # The other group is untouched.
        assert arm.msi.user_assigned_identities.get(kept, "same-name").principal_id == other_id.principal_id
        still = arm.compute.virtual_machines.get(kept, "vm1")
        assert still.identity.principal_id == other_vm.identity.principal_id
        assert {k.lower() for k in still.identity.user_assigned_identities} == {other_id.id.lower()}
        assert arm.msi.system_assigned_identities.get_by_scope(scope=other_vm.id).principal_id == other_vm.identity.principal_id
    finally:
        for name in (doomed, kept):
            if arm.resource.resource_groups.check_existence(name):
                arm.resource.resource_groups.begin_delete(name).result()


def test_recreated_group_is_empty(arm):
    name = support.unique_name("pyrg")
    arm.create_group(name)
    arm.create_identity(name, "id1")
    arm.delete_group(name)
    arm.create_group(name)
    try:
        assert list(arm.msi.user_assigned_identities.list_by_resource_group(name)) == []
        assert list(arm.resource.resources.list_by_resource_group(name)) == []
    finally:
        arm.delete_group(name)


# --------------------------------------------------------------------------------------------------
# errors, raw


def test_missing_authorization_header(arm):
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token=None)
    support.assert_arm_error(res, 401, "AuthenticationFailed")
    assert res.headers.get("WWW-Authenticate", "").startswith("Bearer authorization_uri="), res.headers


def test_garbage_token(arm):
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token="not-a-jwt")
    support.assert_arm_error(res, 401, "InvalidAuthenticationToken")
    assert res.headers.get("WWW-Authenticate", "").startswith("Bearer authorization_uri="), res.headers


def test_tampered_token(arm):
    token = arm.token()
    head, payload, sig = token.split(".")
    tampered = ".".join([head, payload, sig[:-4] + ("AAAA" if sig[-4:] != "AAAA" else "BBBB")])
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token=tampered)
    support.assert_arm_error(res, 401, "InvalidAuthenticationToken")


def test_token_for_another_audience_is_refused(arm):
    graph_token = arm.token("https://graph.microsoft.com/.default")
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token=graph_token)
    support.assert_arm_error(res, 401, {"InvalidAuthenticationTokenAudience", "InvalidAuthenticationToken"})


def test_token_for_the_servers_own_url_is_accepted(arm):
    token = arm.token(arm.server.url + "/.default")
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups?api-version={ARM_RG_API}", token=token)
    assert res.status_code == 200, res.text


def test_sdk_surfaces_401_as_client_authentication_error(server):
    from azure.core.credentials import AccessToken
    from azure.core.exceptions import ClientAuthenticationError
    from azure.mgmt.resource.resources import ResourceManagementClient

    class BadCredential:
        def get_token(self, *scopes, **kwargs):
            return AccessToken("garbage", 4102444800)

    client = ResourceManagementClient(BadCredential(), server.subscription_id, **support.mgmt_client_kwargs(server))
    with pytest.raises(ClientAuthenticationError) as info:
        client.resource_groups.get("anything")
    assert info.value.status_code == 401
    assert support.arm_error_code(info.value) == "InvalidAuthenticationToken", support.describe_http_error(info.value)


@pytest.mark.parametrize(
    "path",
    [
        "/subscriptions/{sub}/resourcegroups/{rg}",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/x1",
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.Compute/virtualMachines/vm1",
        "/subscriptions/{sub}/resourcegroups",
    ],
    ids=["group", "identity", "vm", "group-list"],
)
def test_missing_api_version(arm, rg, path):
    res = arm.raw("GET", path.format(sub=arm.sub, rg=rg))
    support.assert_arm_error(res, 400, "MissingApiVersionParameter")


def test_invalid_json_body(arm, rg):
    headers = {"Content-Type": "application/json"}
    res = arm.raw("PUT", f"/subscriptions/{arm.sub}/resourcegroups/{support.unique_name('pyrg')}?api-version={ARM_RG_API}",
                  data=b'{"location": "westus",', headers=headers)
    support.assert_arm_error(res, 400, "InvalidRequestContent")
    res = arm.raw("PUT", f"{arm.identity_id(rg, 'id-bad-json')}?api-version={ARM_MSI_API}", data=b"{not json", headers=headers)
    support.assert_arm_error(res, 400, "InvalidRequestContent")
    res = arm.raw("PUT", f"{arm.vm_id(rg, 'vm-bad-json')}?api-version={ARM_COMPUTE_API}", data=b"[1, 2", headers=headers)
    support.assert_arm_error(res, 400, "InvalidRequestContent")
    # Nothing was created by the failed writes.
    assert list(arm.resource.resources.list_by_resource_group(rg)) == []


def test_path_segments_are_case_insensitive(arm, rg):
    res = arm.raw("GET", f"/SUBSCRIPTIONS/{arm.sub.upper()}/RESOURCEGROUPS/{rg}?api-version={ARM_RG_API}")
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["id"] == f"/subscriptions/{arm.sub}/resourceGroups/{rg}", body
    assert body["name"] == rg

    identity = arm.create_identity(rg, "CaseId")
    res = arm.raw(
        "GET",
        f"/Subscriptions/{arm.sub}/ResourceGroups/{rg.upper()}/PROVIDERS/microsoft.managedidentity/USERASSIGNEDIDENTITIES/caseid"
        f"?api-version={ARM_MSI_API}",
    )
    assert res.status_code == 200, res.text
    assert res.json()["properties"]["principalId"] == identity.principal_id


def test_unknown_subscription(arm):
    other = str(uuid.uuid4())
    res = arm.raw("GET", f"/subscriptions/{other}/resourcegroups?api-version={ARM_RG_API}")
    assert res.status_code in (403, 404), res.text
    support.assert_arm_error(res, res.status_code, {"SubscriptionNotFound", "AuthorizationFailed", "InvalidSubscriptionId"})


def test_responses_carry_request_ids(arm, rg):
    correlation = str(uuid.uuid4())
    res = arm.raw("GET", f"/subscriptions/{arm.sub}/resourcegroups/{rg}?api-version={ARM_RG_API}",
                  headers={"x-ms-correlation-request-id": correlation})
    assert res.status_code == 200
    assert support.GUID_RE.match(res.headers.get("x-ms-request-id", "")), res.headers
    assert res.headers.get("x-ms-correlation-request-id") == correlation, res.headers



def test_resources_survive_a_restart(server_factory, monkeypatch):
    """Ids are stable GUIDs held in the store: a restarted server (same data dir / database) serves the
    same principals, vmId and identity assignments."""
    data_dir = server_factory.new_data_dir()
    database_url = server_factory.new_database_url()
    first = server_factory.start(data_dir=data_dir, database_url=database_url)
    support.use_ca(monkeypatch, first.ca_cert_path)
    arm = support.arm_clients(first)
    rg = arm.create_group("restart").name
    identity = arm.create_identity(rg, "id1")
    vm = arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned, UserAssigned", "userAssignedIdentities": {identity.id: {}}})
    server_factory.stop(first)

    second = server_factory.start(data_dir=data_dir, database_url=database_url)
    support.use_ca(monkeypatch, second.ca_cert_path)
    arm2 = support.arm_clients(second)
    assert arm2.sub == arm.sub
    again = arm2.msi.user_assigned_identities.get(rg, "id1")
    assert (again.principal_id, again.client_id) == (identity.principal_id, identity.client_id)
    vm_again = arm2.compute.virtual_machines.get(rg, "vm1")
    assert vm_again.vm_id == vm.vm_id
    assert vm_again.identity.principal_id == vm.identity.principal_id
    assert {k.lower() for k in vm_again.identity.user_assigned_identities} == {identity.id.lower()}


def test_patch_replaces_tags(arm, rg):
    """A PATCH carrying `tags` replaces the whole tag set (merging is what the separate
    Microsoft.Resources/tags/default API with operation=Merge is for); properties it does not name stay."""
    groups = arm.resource.resource_groups
    groups.update(rg, {"tags": {"a": "1"}})
    assert groups.update(rg, {"tags": {"b": "2"}}).tags == {"b": "2"}
    assert groups.get(rg).tags == {"b": "2"}

    uai = arm.msi.user_assigned_identities
    created = uai.create_or_update(rg, "tagged", {"location": "westus", "tags": {"a": "1"}})
    patched = uai.update(rg, "tagged", {"tags": {"b": "2"}})
    assert patched.tags == {"b": "2"}, patched.as_dict()
    assert uai.get(rg, "tagged").tags == {"b": "2"}
    assert patched.principal_id == created.principal_id

    vm = support.timed_result(arm.compute.virtual_machines.begin_create_or_update(
        rg, "tagged", {**arm.vm_body(identity={"type": "SystemAssigned"}), "tags": {"a": "1"}}
    ))
    updated = support.timed_result(arm.compute.virtual_machines.begin_update(rg, "tagged", {"tags": {"b": "2"}}))
    assert updated.tags == {"b": "2"}, updated.as_dict()
    assert updated.identity.principal_id == vm.identity.principal_id
    assert updated.hardware_profile.vm_size == "Standard_DS1_v2"
