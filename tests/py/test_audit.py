"""The audit log (issue 20), read by the real clients:

- azure-mgmt-monitor 7.0.0's `activity_logs.list` (the Activity Log, api-version 2015-04-01) sees
  every ARM write, delete and refused request with Azure's fields: operation, status and
  sub-status, caller, correlation id, client address, resource; newest first, paged by nextLink,
  narrowed by `$filter` and `$select`, and only what the caller may read;
- Graph's `/v1.0/auditLogs/signIns` lists tokens issued (client credentials, managed identities
  through an agent, passwords) and failed sign-ins with Entra's codes, and `directoryAudits` the
  directory changes; neither shows a secret or a token;
- a write's record is committed in the write's own transaction: after kill -9 during 8 writers,
  every acknowledged write has its record, and no record says Succeeded for a write that is not
  there.

The az CLI's `az monitor activity-log list` is in test_az.py (its session server).
"""

from __future__ import annotations

import datetime
import sqlite3
import threading
import time
import uuid
from pathlib import Path

import msal
import pytest
import requests
from azure.core.exceptions import HttpResponseError

import support
from support import ROLE_READER

MONITOR_API = "2015-04-01"


def monitor_client(server, credential):
    from azure.mgmt.monitor import MonitorManagementClient

    return MonitorManagementClient(credential, server.subscription_id, **support.mgmt_client_kwargs(server))


def since(minutes: int = 10) -> str:
    moment = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=minutes)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def events(client, extra: str = "", select: str | None = None) -> list:
    text = f"eventTimestamp ge '{since()}'" + (f" and {extra}" if extra else "")
    return list(client.activity_logs.list(filter=text, select=select))


def wait_for(check, timeout: float = 10.0):
    """Sign-ins and refused requests are appended in batches: within a commit, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def test_activity_log_records_writes_and_refusals(server, arm, rg):
    monitor = monitor_client(server, arm.credential)
    identity = arm.create_identity(rg, "audited")
    arm.resource.resource_groups.update(rg, {"tags": {"audit": "1"}})
    with pytest.raises(HttpResponseError) as refused:
        arm.msi.user_assigned_identities.create_or_update(rg, "bad!name", {"location": "westus"})
    assert support.arm_error_code(refused.value) == "InvalidResourceName"
    arm.msi.user_assigned_identities.delete(rg, "audited")

    found = wait_for(lambda: [e for e in events(monitor, f"resourceGroupName eq '{rg}'") if e.status.value == "Failed"] and events(monitor, f"resourceGroupName eq '{rg}'"))
    by_operation: dict[str, list] = {}
    for event in found:
        by_operation.setdefault(event.operation_name.value, []).append(event)
    writes = [e for e in by_operation["Microsoft.ManagedIdentity/userAssignedIdentities/write"] if e.status.value == "Succeeded"]
    assert [e.resource_id.lower() for e in writes] == [identity.id.lower()], writes
    write = writes[0]
    assert write.category.value == "Administrative" and write.level == "Informational"
    assert write.resource_provider_name.value == "Microsoft.ManagedIdentity"
    assert write.resource_type.value == "Microsoft.ManagedIdentity/userAssignedIdentities"
    assert write.resource_group_name.lower() == rg.lower() and write.subscription_id == server.subscription_id
    assert write.claims["appid"] == server.client_id
    assert write.caller == write.claims["http://schemas.microsoft.com/identity/claims/objectidentifier"]
    assert write.http_request.client_ip_address == "127.0.0.1" and write.http_request.method == "PUT"
    assert write.correlation_id and write.event_data_id and write.event_timestamp
    assert write.id.lower().startswith(identity.id.lower() + "/events/")
    assert any(e.status.value == "Succeeded" for e in by_operation["Microsoft.ManagedIdentity/userAssignedIdentities/delete"])
    assert any(e.http_request.method == "PATCH" for e in by_operation["Microsoft.Resources/subscriptions/resourceGroups/write"])
    failed = [e for e in found if e.status.value == "Failed"]
    assert len(failed) == 1 and failed[0].sub_status.value == "InvalidResourceName" and failed[0].level == "Error", failed
    assert failed[0].resource_id.endswith("/bad!name")
    # Newest first.
    stamps = [e.event_timestamp for e in found]
    assert stamps == sorted(stamps, reverse=True)

    # One request's events by its correlation id; a caller's; a status; a provider; a resource.
    only = events(monitor, f"correlationId eq '{write.correlation_id}'")
    assert [e.event_data_id for e in only] == [write.event_data_id]
    assert {e.event_data_id for e in events(monitor, f"resourceGroupName eq '{rg}' and status eq 'Failed'")} == {failed[0].event_data_id}
    assert all(e.caller == write.caller for e in events(monitor, f"caller eq '{write.caller}'"))
    assert {e.operation_name.value.split('/')[0] for e in events(monitor, "resourceProvider eq 'Microsoft.ManagedIdentity'")} == {"Microsoft.ManagedIdentity"}
    assert {e.event_data_id for e in events(monitor, f"resourceUri eq '{identity.id}'")} >= {write.event_data_id}
    # $select narrows what comes back.
    selected = events(monitor, f"correlationId eq '{write.correlation_id}'", select="eventName,operationName,status")
    assert selected[0].operation_name.value == write.operation_name.value and selected[0].caller is None

    # Azure's refusals: no start time, an unknown property.
    for bad in (f"resourceGroupName eq '{rg}'", f"eventTimestamp ge '{since()}' and colour eq 'red'", "eventTimestamp ge 'yesterday'"):
        with pytest.raises(HttpResponseError) as error:
            list(monitor.activity_logs.list(filter=bad))
        assert error.value.status_code == 400 and support.arm_error_code(error.value) == "BadRequest", bad


def test_activity_log_pages_and_follows_read_rights(server, arm, rg, rbac):
    # 205 writes of one group: more than the Activity Log's page of 200, read through nextLink.
    token = arm.token()
    with requests.Session() as session:
        for n in range(205):
            res = session.patch(
                f"{server.url}{arm.rg_id(rg)}", params={"api-version": "2021-04-01"}, json={"tags": {"n": str(n)}},
                headers={"Authorization": f"Bearer {token}"}, verify=server.ca_cert_path, timeout=10,
            )
            assert res.status_code == 200, res.text
    monitor = monitor_client(server, arm.credential)
    listed = events(monitor, f"resourceGroupName eq '{rg}'")
    patches = [e for e in listed if e.http_request and e.http_request.method == "PATCH"]
    assert len(patches) == 205 and len({e.event_data_id for e in listed}) == len(listed)

    # A Reader of this group sees its events and nothing else; a principal without a role, none.
    reader = rbac.principal()
    rbac.grant(reader.object_id, ROLE_READER, arm.rg_id(rg))
    seen = events(monitor_client(server, reader.credential))
    assert seen and all(e.resource_group_name.lower() == rg.lower() for e in seen), {e.resource_id for e in seen}
    stranger = rbac.principal()
    assert events(monitor_client(server, stranger.credential)) == []
    # Graph's audit logs need a directory administrator (an Owner here).
    res = support.graph_request(server, stranger.credential, "GET", "/v1.0/auditLogs/signIns")
    assert res.status_code == 403 and res.json()["error"]["code"] == "Authorization_RequestDenied", res.text


def sign_ins(server, credential, query: str = "") -> list:
    res = support.graph_request(server, credential, "GET", f"/v1.0/auditLogs/signIns{query}")
    assert res.status_code == 200, res.text
    return res.json()["value"]


def test_sign_in_logs_show_tokens_and_failures_without_secrets(server, arm, rg, agents, rbac):
    from azure.identity import ClientSecretCredential

    sp = rbac.principal()
    sp.credential.get_token(support.ARM_SCOPE)
    wrong = ClientSecretCredential(server.tenant_id, sp.sp.app_id, "not-the-secret", authority=server.url,
                                   disable_instance_discovery=True, connection_verify=server.ca_cert_path)
    with pytest.raises(Exception):
        wrong.get_token(support.ARM_SCOPE)
    # A managed identity's token, through an agent on a VM.
    identity = arm.create_identity(rg, "mi-signin")
    arm.create_vm(rg, "vm1", identity={"type": "UserAssigned", "userAssignedIdentities": {identity.id: {}}})
    agent = agents.start(server, rg, "vm1")
    support.imds_token_body(agent.token(client_id=identity.client_id))
    admin = arm.credential

    def ours():
        values = sign_ins(server, admin)
        return [v for v in values if v["appId"] == sp.sp.app_id] if len([v for v in values if v["appId"] == sp.sp.app_id]) >= 2 else []

    mine = wait_for(ours)
    ok = [v for v in mine if v["status"]["errorCode"] == 0]
    bad = [v for v in mine if v["status"]["errorCode"] != 0]
    assert ok and bad, mine
    assert ok[0]["signInEventTypes"] == ["servicePrincipal"] and ok[0]["servicePrincipalId"] == sp.object_id
    assert ok[0]["resourceDisplayName"] == "Windows Azure Service Management API" and ok[0]["ipAddress"] == "127.0.0.1"
    assert ok[0]["isInteractive"] is False and ok[0]["correlationId"]
    assert bad[0]["status"]["errorCode"] == 7000215 and "secret" in bad[0]["status"]["failureReason"].lower()

    def managed():
        return [v for v in sign_ins(server, admin, "?$filter=signInEventTypes/any(t: t eq 'managedIdentity')") if v["appId"] == identity.client_id]

    mi = wait_for(managed)
    assert mi and all(v["signInEventTypes"] == ["managedIdentity"] for v in mi), mi
    assert mi[0]["managedServiceIdentity"] == {"msiType": "userAssigned", "associatedResourceId": identity.id}
    assert mi[0]["servicePrincipalId"] == identity.principal_id and mi[0]["status"]["errorCode"] == 0
    # Filters: by event type only that type; by status/errorCode; $top pages with a next link.
    only_sp = sign_ins(server, admin, "?$filter=signInEventTypes/any(t: t eq 'servicePrincipal')")
    assert only_sp and all(v["signInEventTypes"] == ["servicePrincipal"] for v in only_sp)
    failures = sign_ins(server, admin, "?$filter=status/errorCode eq 7000215")
    assert failures and all(v["status"]["errorCode"] == 7000215 for v in failures)
    res = support.graph_request(server, admin, "GET", "/v1.0/auditLogs/signIns?$top=1")
    page = res.json()
    assert len(page["value"]) == 1 and "$skiptoken=" in page["@odata.nextLink"], page
    second = requests.get(page["@odata.nextLink"], headers={"Authorization": f"Bearer {admin.get_token(support.GRAPH_SCOPE).token}"},
                          verify=server.ca_cert_path, timeout=10).json()
    assert second["value"][0]["id"] != page["value"][0]["id"]
    res = support.graph_request(server, admin, "GET", "/v1.0/auditLogs/signIns?$filter=colour eq 'red'")
    assert res.status_code == 400 and res.json()["error"]["code"] == "Request_UnsupportedQuery", res.text

    # The directory changes of rbac.principal(): application, service principal, secret.
    res = support.graph_request(server, admin, "GET", "/v1.0/auditLogs/directoryAudits")
    assert res.status_code == 200, res.text
    activities = {v["activityDisplayName"] for v in res.json()["value"]}
    assert {"Add application", "Add service principal", "Update application \u2013 Certificates and secrets management"} <= activities

    # No secret and no token anywhere in the audit trail.
    dumps = [
        support.graph_request(server, admin, "GET", "/v1.0/auditLogs/signIns").text,
        res.text,
        requests.get(f"{server.url}/subscriptions/{server.subscription_id}/providers/Microsoft.Insights/eventtypes/management/values",
                     params={"api-version": MONITOR_API, "$filter": f"eventTimestamp ge {since(60)}"},
                     headers={"Authorization": f"Bearer {arm.token()}"}, verify=server.ca_cert_path, timeout=10).text,
    ]
    token = sp.credential.get_token(support.ARM_SCOPE).token
    for text in dumps:
        assert sp.sp.secret not in text and token not in text and server.client_secret not in text


def test_failed_password_sign_ins_are_logged_with_entra_codes(server, arm):
    admin = arm.credential
    name = support.unique_name("audituser")
    upn = f"{name}@{server.admin_username.split('@', 1)[1]}"
    res = support.graph_request(server, admin, "POST", "/v1.0/users", json={
        "displayName": name, "userPrincipalName": upn, "accountEnabled": True,
        "passwordProfile": {"password": "Correct-horse-1"}, "mailNickname": name,
    })
    assert res.status_code == 201, res.text
    user_id = res.json()["id"]
    # A new application object per attempt: MSAL replays a failure from its throttling cache.
    app = msal.PublicClientApplication(support.AZ_CLI_CLIENT_ID, authority=f"{server.url}/{server.tenant_id}",
                                       instance_discovery=False)
    failed = app.acquire_token_by_username_password(upn, "wrong-password", scopes=[support.ARM_SCOPE])
    assert "error" in failed
    app = msal.PublicClientApplication(support.AZ_CLI_CLIENT_ID, authority=f"{server.url}/{server.tenant_id}",
                                       instance_discovery=False)
    assert "access_token" in app.acquire_token_by_username_password(upn, "Correct-horse-1", scopes=[support.ARM_SCOPE])

    def theirs():
        values = [v for v in sign_ins(server, admin) if v["userPrincipalName"].lower() == upn.lower()]
        return values if len(values) >= 2 else []

    values = wait_for(theirs)
    codes = sorted(v["status"]["errorCode"] for v in values)
    assert codes == [0, 50126], values
    assert all(v["signInEventTypes"] == ["nonInteractiveUser"] for v in values)
    assert [v for v in values if v["status"]["errorCode"] == 0][0]["userId"] == user_id
    assert "Correct-horse-1" not in str(values) and "wrong-password" not in str(values)
    # The user's creation is a directory change.
    audits = support.graph_request(server, admin, "GET", "/v1.0/auditLogs/directoryAudits?$filter=activityDisplayName eq 'Add user'").json()["value"]
    assert audits and all(a["activityDisplayName"] == "Add user" for a in audits)
    assert audits[0]["initiatedBy"]["app"]["appId"] == server.client_id and audits[0]["result"] == "success"


def test_kill_9_keeps_each_acknowledged_write_with_its_record(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    rg = support.unique_name("pyrg-audit9")
    arm.create_group(rg)
    token = arm.token()
    acknowledged: set[str] = set()
    lock = threading.Lock()
    stop = threading.Event()

    def writer(number: int) -> None:
        with requests.Session() as session:
            for n in range(100_000):
                if stop.is_set():
                    return
                path = arm.identity_id(rg, f"w{number}-{n}")
                try:
                    res = session.put(f"{srv.url}{path}", params={"api-version": "2023-01-31"}, json={"location": "westus"},
                                      headers={"Authorization": f"Bearer {token}"}, verify=srv.ca_cert_path, timeout=10)
                except requests.RequestException:
                    return
                if res.status_code in (200, 201):
                    with lock:
                        acknowledged.add(path.lower())

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    srv.proc.kill()
    srv.proc.wait(timeout=10)
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    assert len(acknowledged) > 10, "the writers did not get going"

    restarted = server_factory.start(data_dir=srv.data_dir, database_url=srv.database_url)
    arm = support.arm_clients(restarted)
    monitor = monitor_client(restarted, arm.credential)
    recorded = {
        e.resource_id.lower() for e in events(monitor, f"resourceGroupName eq '{rg}'")
        if e.operation_name.value == "Microsoft.ManagedIdentity/userAssignedIdentities/write" and e.status.value == "Succeeded"
    }
    present = {i.id.lower() for i in arm.msi.user_assigned_identities.list_by_resource_group(rg)}
    lost_records = acknowledged - recorded
    records_without_write = recorded - present
    print(f"\nkill -9 audit: acknowledged={len(acknowledged)} recorded={len(recorded)} present={len(present)} "
          f"acknowledged-without-record={len(lost_records)} records-without-write={len(records_without_write)}")
    assert not lost_records and not records_without_write
    assert present == recorded  # a write and its record exist together or not at all


def test_retention_prunes_old_records_and_off_records_nothing(server_factory, monkeypatch, backend):
    if backend != "sqlite":
        pytest.skip("the records are planted with SQLite's own client; the pruning SQL is shared")
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    arm.create_group(support.unique_name("pyrg-ret"))
    srv.stop()
    database = Path(srv.data_dir) / "openmi.db"
    with sqlite3.connect(database) as db:
        # A record two days old beside the fresh ones.
        old = int((time.time() - 2 * 86400) * 1_000_000)
        db.execute("INSERT INTO audit_events (id, at, kind, operation, status, details) VALUES (?, ?, 'administrative', 'Microsoft.Test/old/write', 'Succeeded', '{}')",
                   (str(uuid.uuid4()), old))
        before = db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    srv = server_factory.start(data_dir=srv.data_dir, extra_args=("--audit-retention-days", "1"))
    time.sleep(1.0)
    with sqlite3.connect(database) as db:
        operations = [row[0] for row in db.execute("SELECT operation FROM audit_events")]
    assert "Microsoft.Test/old/write" not in operations and len(operations) >= before - 1, operations
    srv.stop()
    # With --audit off nothing is recorded.
    srv = server_factory.start(data_dir=srv.data_dir, extra_args=("--audit", "off"))
    support.use_ca(monkeypatch, srv.ca_cert_path)
    with sqlite3.connect(database) as db:
        count = db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0]
    support.arm_clients(srv).create_group(support.unique_name("pyrg-off"))
    time.sleep(0.5)
    with sqlite3.connect(database) as db:
        assert db.execute("SELECT COUNT(*) FROM audit_events").fetchone()[0] == count
