"""`openmi audit list` (issue 20, "`openmi audit list` with filters"), run as a shell would run it,
logged in as the bootstrap service principal: the CLI's own writes, refusals, sign-ins and directory
changes read back through ARM's Activity Log and Graph's audit logs, with az's filters, window,
`--max-events`, `--output table` and the refusal of options a kind has no field for.

The same APIs read by azure-mgmt-monitor and Graph directly are in test_audit.py."""

from __future__ import annotations

import datetime
import time

import pytest

import support
from support import ROLE_READER

ADMIN_HEADERS = ["Time", "Operation", "Status", "Caller", "Resource"]
DIRECTORY_HEADERS = ["Time", "Operation", "Status", "Caller", "Target"]


def wait_for(check, timeout: float = 10.0):
    """Sign-ins and refused requests are appended in batches: within a commit, not at once."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def iso_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()


def headers(table: str) -> list[str]:
    lines = table.splitlines()
    assert len(lines) >= 2 and set(lines[1].replace(" ", "")) == {"-"}, table
    return lines[0].split()


def login_as(server, app_id: str, secret: str, config_dir, check: bool = True) -> support.CliResult:
    return support.run_cli(
        ["login", "--server", server.url, "--service-principal", "--username", app_id, "--password", secret,
         "--tenant", server.tenant_id, "--ca-cert", server.ca_cert_path],
        config_dir,
        check=check,
    )


@pytest.fixture
def cli_group(cli, arm):
    name = support.unique_name("cliaudit")
    cli("group", "create", "-n", name, "-l", "westus")
    yield name
    try:
        if arm.resource.resource_groups.check_existence(name):
            arm.resource.resource_groups.begin_delete(name).result()
    except Exception:  # noqa: BLE001 - cleanup must not mask the test's own result
        pass


def test_activity_log_shows_the_cli_writes_and_refusals(cli, arm, cli_group):
    rg = cli_group
    before = iso_now()
    identity = cli.json("identity", "create", "-g", rg, "-n", "audited")
    refused = cli.fails("identity", "create", "-g", rg, "-n", "bad!name", code="InvalidResourceName")
    assert "(InvalidResourceName)" in refused.stderr, refused.describe()

    def all_three():
        found = cli.json("audit", "list", "--resource-group", rg)
        return found if any(e["status"]["value"] == "Failed" for e in found) else []

    events = wait_for(all_three)
    assert isinstance(events, list) and len(events) == 3, events
    assert all(e["resourceGroupName"].lower() == rg.lower() for e in events), events
    assert all(e["category"]["value"] == "Administrative" for e in events)
    # Newest first, as the Activity Log returns them.
    assert [e["eventTimestamp"] for e in events] == sorted((e["eventTimestamp"] for e in events), reverse=True)
    seen = {(e["operationName"]["value"], e["status"]["value"], e["resourceId"].lower()) for e in events}
    assert seen == {
        ("Microsoft.Resources/subscriptions/resourceGroups/write", "Succeeded", arm.rg_id(rg).lower()),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/write", "Succeeded", identity["id"].lower()),
        ("Microsoft.ManagedIdentity/userAssignedIdentities/write", "Failed", f"{arm.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/bad!name".lower()),
    }, seen
    caller = events[0]["caller"]
    assert support.GUID_RE.match(caller) and {e["caller"] for e in events} == {caller}, events

    # --status Failed: only the refused write, with its code.
    failed = cli.json("audit", "list", "-g", rg, "--status", "Failed")
    assert len(failed) == 1, failed
    assert failed[0]["status"]["value"] == "Failed" and failed[0]["subStatus"]["value"] == "InvalidResourceName", failed
    assert failed[0]["level"] == "Error" and failed[0]["resourceId"].endswith("/bad!name"), failed
    assert {e["status"]["value"] for e in cli.json("audit", "list", "-g", rg, "--status", "succeeded")} == {"Succeeded"}

    # The other filters, each sent to the server.
    by_namespace = cli.json("audit", "list", "-g", rg, "--namespace", "Microsoft.ManagedIdentity")
    assert len(by_namespace) == 2 and all(e["resourceProviderName"]["value"] == "Microsoft.ManagedIdentity" for e in by_namespace), by_namespace
    by_id = cli.json("audit", "list", "--resource-id", identity["id"])
    assert [e["resourceId"].lower() for e in by_id] == [identity["id"].lower()], by_id
    by_correlation = cli.json("audit", "list", "--correlation-id", failed[0]["correlationId"])
    assert [e["eventDataId"] for e in by_correlation] == [failed[0]["eventDataId"]], by_correlation
    assert len(cli.json("audit", "list", "-g", rg, "--caller", caller)) == 3
    assert cli.json("audit", "list", "-g", rg, "--caller", "00000000-0000-0000-0000-000000000000") == []
    # --max-events keeps the newest; a window before the writes is empty; --since takes units.
    newest = cli.json("audit", "list", "-g", rg, "--max-events", "1")
    assert [e["eventDataId"] for e in newest] == [events[0]["eventDataId"]], newest
    assert cli.json("audit", "list", "-g", rg, "--start-time", "2020-01-01", "--end-time", "2020-01-02T00:00:00Z") == []
    in_window = cli.json("audit", "list", "-g", rg, "--start-time", before, "--end-time", iso_now())
    assert {e["eventDataId"] for e in in_window} == {e["eventDataId"] for e in events[:2]}, in_window
    assert len(cli.json("audit", "list", "-g", rg, "--since", "30m")) == 3

    # az's output layer: a table with the audit columns, and --query.
    table = cli("audit", "list", "-g", rg, "--output", "table").stdout
    assert headers(table) == ADMIN_HEADERS, table
    rows = table.splitlines()[2:]
    assert len(rows) == 3 and "Failed" in rows[0] and rows[0].rstrip().endswith("/bad!name"), table
    assert "Microsoft.ManagedIdentity/userAssignedIdentities/write" in rows[0] and caller in rows[0], table
    tsv = cli("audit", "list", "-g", rg, "--query", "[].status.value", "-o", "tsv").stdout.split()
    assert tsv == [e["status"]["value"] for e in events], tsv


def test_sign_in_log_shows_the_cli_sign_in(cli, server, tmp_path):
    before = iso_now()
    login_as(server, server.client_id, server.client_secret, tmp_path / "again")
    wrong = login_as(server, server.client_id, "not-the-secret", tmp_path / "wrong", check=False)
    assert wrong.returncode != 0, wrong.describe()
    after = iso_now()

    def ours():
        found = cli.json("audit", "list", "--kind", "signin", "--start-time", before, "--end-time", after)
        return found if len(found) >= 2 else []

    found = wait_for(ours)
    assert len(found) == 2, found
    ok, bad = sorted(found, key=lambda e: e["status"]["errorCode"])
    # The CLI's login: client credentials of the signed-in service principal.
    assert ok["appId"] == server.client_id and ok["signInEventTypes"] == ["servicePrincipal"], ok
    assert ok["status"]["errorCode"] == 0 and ok["isInteractive"] is False and ok["ipAddress"] == "127.0.0.1", ok
    assert support.GUID_RE.match(ok["servicePrincipalId"]), ok
    assert bad["appId"] == server.client_id and bad["status"]["errorCode"] == 7000215, bad
    assert server.client_secret not in str(found)

    # --status Failed (picked out by the CLI: Graph's `ne` form is not served) and Succeeded.
    failed = cli.json("audit", "list", "--kind", "signin", "--start-time", before, "--status", "Failed")
    assert [e["id"] for e in failed] == [bad["id"]], failed
    succeeded = cli.json("audit", "list", "--kind", "signin", "--start-time", before, "--end-time", after, "--status", "Succeeded")
    assert [e["id"] for e in succeeded] == [ok["id"]], succeeded
    # --caller: the principal's object id; --correlation-id; --max-events.
    mine = cli.json("audit", "list", "--kind", "signin", "--since", "10m", "--caller", ok["servicePrincipalId"], "--max-events", "500")
    assert ok["id"] in [e["id"] for e in mine] and all(e["servicePrincipalId"] == ok["servicePrincipalId"] for e in mine), mine
    assert [e["id"] for e in cli.json("audit", "list", "--kind", "signin", "--correlation-id", ok["correlationId"])] == [ok["id"]]
    assert len(cli.json("audit", "list", "--kind", "signin", "--since", "1h", "--max-events", "1")) == 1

    table = cli("audit", "list", "--kind", "signin", "--start-time", before, "--end-time", after, "-o", "table").stdout
    assert headers(table) == ADMIN_HEADERS, table
    rows = table.splitlines()[2:]
    assert len(rows) == 2 and all("servicePrincipal" in row for row in rows), table
    assert any("Failed (7000215)" in row for row in rows) and any("Succeeded" in row for row in rows), table


def test_directory_audits_show_create_for_rbac(cli, server):
    before = iso_now()
    created = cli.json("ad", "sp", "create-for-rbac", "-n", support.unique_name("cliaudit-sp"))
    assert support.GUID_RE.match(created["appId"]), created

    def ours():
        found = cli.json("audit", "list", "--kind", "directory", "--start-time", before)
        return found if len(found) >= 3 else []

    found = wait_for(ours)
    activities = [e["activityDisplayName"] for e in found]
    assert sorted(activities) == sorted(
        ["Add application", "Add service principal", "Update application \u2013 Certificates and secrets management"]
    ), found
    assert all(e["result"] == "success" and e["initiatedBy"]["app"]["appId"] == server.client_id for e in found), found
    added = next(e for e in found if e["activityDisplayName"] == "Add application")
    assert added["category"] == "ApplicationManagement" and added["operationType"] == "Add", added
    assert created.get("password") and created["password"] not in str(found)

    sp_id = added["initiatedBy"]["app"]["servicePrincipalId"]
    by_caller = cli.json("audit", "list", "--kind", "directory", "--start-time", before, "--caller", sp_id)
    assert {e["id"] for e in by_caller} == {e["id"] for e in found}, by_caller
    assert cli.json("audit", "list", "--kind", "directory", "--start-time", before, "--caller", "00000000-0000-0000-0000-000000000000") == []
    by_correlation = cli.json("audit", "list", "--kind", "directory", "--since", "1h", "--correlation-id", added["correlationId"])
    assert added["id"] in [e["id"] for e in by_correlation], by_correlation
    # --status on directory audits is Graph's `result`, picked out by the CLI.
    assert cli.json("audit", "list", "--kind", "directory", "--start-time", before, "--status", "Failed") == []
    assert len(cli.json("audit", "list", "--kind", "directory", "--start-time", before, "--status", "Succeeded")) == 3
    assert len(cli.json("audit", "list", "--kind", "directory", "--start-time", before, "--max-events", "2")) == 2

    table = cli("audit", "list", "--kind", "directory", "--start-time", before, "--output", "table").stdout
    assert headers(table) == DIRECTORY_HEADERS, table
    rows = table.splitlines()[2:]
    assert len(rows) == 3 and any(row.startswith(added["activityDateTime"]) and "Add application" in row for row in rows), table
    assert all("success" in row and server.client_id in row for row in rows), table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--kind", "signin", "--resource-group", "g"], "--resource-group does not apply to --kind signin"),
        (["--kind", "signin", "--resource-id", "/subscriptions/x"], "--resource-id does not apply to --kind signin"),
        (["--kind", "directory", "--namespace", "Microsoft.Compute"], "--namespace does not apply to --kind directory"),
        (["--kind", "directory", "--subscription", "00000000-0000-0000-0000-000000000000"], "--subscription does not apply to --kind directory"),
        (["--since", "1x"], "'1x' is not a duration"),
        (["--since", "0h"], "'0h' is not a duration"),
        (["--since", "1h", "--start-time", "2026-01-01"], "cannot be used with"),
        (["--end-time", "2026-01-01"], "--start-time"),
        (["--start-time", "yesterday"], "'yesterday' is not an ISO 8601 time"),
        (["--start-time", "2026-01-02", "--end-time", "2026-01-01"], "--end-time must not be before --start-time"),
        (["--kind", "robots"], "invalid value 'robots'"),
        (["--status", "Maybe"], "invalid value 'Maybe'"),
        (["--max-events", "0"], "invalid value '0'"),
    ],
)
def test_bad_options_are_refused_with_a_message(cli, args, message):
    out = cli.fails("audit", "list", *args)
    assert message in out.stderr, out.describe()
    assert out.stdout == "", out.describe()


def test_server_errors_are_printed_as_arm_errors(cli, server, rbac, arm, cli_group, tmp_path):
    missing = cli.fails("audit", "list", "--subscription", "00000000-0000-0000-0000-000000000000")
    assert "(SubscriptionNotFound)" in missing.stderr, missing.describe()
    # A Reader of one group: its events only, and no directory logs (Graph's 403, as az prints it).
    reader = rbac.principal()
    rbac.grant(reader.object_id, ROLE_READER, arm.rg_id(cli_group))
    login_as(server, reader.sp.app_id, reader.sp.secret, tmp_path / "reader")
    as_reader = support.Cli(tmp_path / "reader")
    seen = as_reader.json("audit", "list", "--since", "10m")
    assert seen and all(e["resourceGroupName"].lower() == cli_group.lower() for e in seen), seen
    denied = as_reader.fails("audit", "list", "--kind", "signin")
    assert "(Authorization_RequestDenied) Insufficient privileges" in denied.stderr, denied.describe()
