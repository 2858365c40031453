"""Issue 20, protection: request-size and JSON-depth limits answered in each protocol's error shape,
and the header and idle timeouts that close slow and idle connections.

Limits (crates/server/src/limits.rs): ARM 4 MB (`413 RequestContentTooLarge`, "The request content
size exceeds the maximum size of 4 MB.", what ARM answers a deployment over it), Microsoft Graph
4 MB (413), Cosmos DB 2 MB (`413 RequestEntityTooLarge`, `{"Errors":["Request size is too
large"]}`, the per-item limit), Entra's endpoints and the agent API 1 MB (OAuth's
`invalid_request`). A JSON body that opens its 128th nested array or object is refused with the
protocol's 400, at the position serde_json names. The real clients: azure-mgmt-resource's
deployments client with a template over the limit, azure-cosmos with an item over 2 MB.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import time

import pytest
from azure.core.exceptions import HttpResponseError
from azure.cosmos import CosmosClient, PartitionKey
from azure.cosmos.exceptions import CosmosHttpResponseError
from azure.mgmt.cosmosdb import CosmosDBManagementClient
from azure.mgmt.cosmosdb import models as cdb
from azure.mgmt.resource.deployments import DeploymentsMgmtClient

import support

MB = 1024 * 1024
ARM_LIMIT = 4 * MB
COSMOS_LIMIT = 2 * MB
ENTRA_LIMIT = MB
DEEP = b"[" * 10_000
API = "api-version=" + support.ARM_RG_API
# The timeouts of the servers that test them (seconds): short, so the tests are.
HEADER_TIMEOUT = 1
IDLE_TIMEOUT = 4
# How much later than its timeout a connection may be seen closed (the test's own pace included).
SLACK = 3.0


def group_path(arm, name: str = "limits") -> str:
    return f"/subscriptions/{arm.sub}/resourcegroups/{name}?{API}"


def assert_oauth_error(res, status: int, error: str) -> dict:
    detail = f"HTTP {res.status_code} {res.request.method} {res.url}: {res.text[:600]}"
    assert res.status_code == status, detail
    body = res.json()
    assert body["error"] == error, detail
    assert body["error_description"].startswith(f"AADSTS{body['error_codes'][0]}: "), detail
    assert body["trace_id"] and body["correlation_id"] and body["timestamp"], detail
    return body


def assert_cosmos_error(res, status: int, code: str) -> dict:
    detail = f"HTTP {res.status_code} {res.request.method} {res.url}: {res.text[:600]}"
    assert res.status_code == status, detail
    body = res.json()
    assert body["code"] == code, detail
    assert res.headers.get("x-ms-substatus") == "0", detail
    return body


def chunks(total: int, size: int = MB):
    """A body sent with Transfer-Encoding: chunked (no length declared)."""
    sent = 0
    while sent < total:
        part = min(size, total - sent)
        sent += part
        yield b"a" * part


# --------------------------------------------------------------------------------------------------
# sizes, per protocol


def test_arm_body_over_4_mb_is_request_content_too_large(server, arm):
    over = b" " * (ARM_LIMIT + 1)
    res = arm.raw("PUT", group_path(arm), data=over, headers={"Content-Type": "application/json"})
    error = support.assert_arm_error(res, 413, "RequestContentTooLarge")
    assert error["message"] == "The request content size exceeds the maximum size of 4 MB."
    # Without a declared length (chunked), refused as the limit is passed.
    res = arm.raw("PUT", group_path(arm), data=chunks(ARM_LIMIT + MB), headers={"Content-Type": "application/json"})
    support.assert_arm_error(res, 413, "RequestContentTooLarge")
    # Just under the limit (and over axum's own 2 MB default) the body reaches ARM's parser.
    res = arm.raw("PUT", group_path(arm), data=b"x" * (ARM_LIMIT - 1), headers={"Content-Type": "application/json"})
    support.assert_arm_error(res, 400, "InvalidRequestContent")


def test_fifty_megabytes_are_answered_not_reset(server, arm):
    """The issue's case: a 50 MB body got the connection closed with no answer."""
    fifty = b"a" * (50 * MB)
    res = arm.raw("PUT", group_path(arm), data=fifty, headers={"Content-Type": "application/json"})
    support.assert_arm_error(res, 413, "RequestContentTooLarge")
    res = arm.raw("PUT", group_path(arm), data=chunks(50 * MB), headers={"Content-Type": "application/json"})
    support.assert_arm_error(res, 413, "RequestContentTooLarge")
    # A client that asks first (Expect: 100-continue) gets the answer without sending the body.
    with raw_connection(server) as conn:
        conn.sendall(
            f"PUT {group_path(arm)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {50 * MB}\r\nExpect: 100-continue\r\n\r\n".encode()
        )
        status, body = read_response(conn)
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "RequestContentTooLarge"
    assert server.get("/healthz").status_code == 200


def test_deployment_over_4_mb_with_azure_mgmt_resource(server, arm, rg):
    client = DeploymentsMgmtClient(arm.credential, arm.sub, **support.mgmt_client_kwargs(server))
    template = {
        "$schema": "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
        "contentVersion": "1.0.0.0",
        "variables": {"padding": "x" * (ARM_LIMIT + 1000)},
        "resources": [],
    }
    with pytest.raises(HttpResponseError) as err:
        client.deployments.begin_create_or_update(
            rg, "toolarge", {"properties": {"mode": "Incremental", "template": template}}
        ).result()
    assert err.value.status_code == 413, support.describe_http_error(err.value)
    assert support.arm_error_code(err.value) == "RequestContentTooLarge"
    assert "maximum size of 4 MB" in str(err.value)
    # The same template under the limit deploys.
    template["variables"]["padding"] = "x" * 1000
    result = client.deployments.begin_create_or_update(
        rg, "fits", {"properties": {"mode": "Incremental", "template": template}}
    ).result()
    assert result.properties.provisioning_state == "Succeeded"


def test_graph_body_over_4_mb(server, arm):
    res = support.graph_request(
        server, arm.credential, "POST", "/v1.0/applications", data=b" " * (4 * MB + 1),
        headers={"Content-Type": "application/json"},
    )
    error = support.assert_arm_error(res, 413, "Request_BadRequest")
    assert error["message"] == "The request size exceeds the maximum limit."


@pytest.mark.parametrize("path", ["oauth2/v2.0/token", "oauth2/token", "oauth2/v2.0/devicecode", "oauth2/v2.0/authorize"])
def test_entra_body_over_1_mb_is_invalid_request(server, path):
    form = "client_id=x&padding=" + "a" * ENTRA_LIMIT
    res = server.post(f"/{server.tenant_id}/{path}", data=form, headers={"Content-Type": "application/x-www-form-urlencoded"})
    body = assert_oauth_error(res, 413, "invalid_request")
    assert "exceeds the maximum size of 1 MB" in body["error_description"]


def test_agent_body_over_1_mb(server):
    res = server.post("/openmi/agent/tokens", data=b" " * (MB + 1), headers={"Content-Type": "application/json"})
    assert res.status_code == 413, res.text
    assert res.json()["error"] == "invalid_request"


@pytest.fixture
def cosmos_items(server, arm, rg):
    """An account's container through azure-cosmos with the account key."""
    cosmos = CosmosDBManagementClient(arm.credential, arm.sub, **support.mgmt_client_kwargs(server))
    name = support.unique_name("lim").replace("-", "")[:40]
    account = cosmos.database_accounts.begin_create_or_update(rg, name, cdb.DatabaseAccountCreateUpdateParameters(
        location="westus", locations=[cdb.Location(location_name="westus", failover_priority=0)],
        database_account_offer_type="Standard",
    )).result()
    keys = cosmos.database_accounts.list_keys(rg, account.name)
    client = CosmosClient(account.document_endpoint, credential=keys.primary_master_key)
    container = client.create_database("db").create_container("items", partition_key=PartitionKey(path="/pk"))
    return account, container


def test_cosmos_item_over_2_mb_with_azure_cosmos(cosmos_items):
    account, container = cosmos_items
    with pytest.raises(CosmosHttpResponseError) as err:
        container.create_item({"id": "big", "pk": "a", "blob": "x" * COSMOS_LIMIT})
    assert err.value.status_code == 413, err.value
    assert err.value.sub_status in (0, None), err.value
    assert "Request size is too large" in str(err.value), err.value
    # An item just under 2 MB is stored; a patch that grows it past 2 MB is refused the same way.
    container.create_item({"id": "fits", "pk": "a", "blob": "x" * (COSMOS_LIMIT - 1000)})
    assert len(container.read_item("fits", "a")["blob"]) == COSMOS_LIMIT - 1000
    with pytest.raises(CosmosHttpResponseError) as err:
        container.patch_item("fits", "a", [{"op": "add", "path": "/more", "value": "y" * 10_000}])
    assert err.value.status_code == 413, err.value
    assert len(container.read_item("fits", "a")["blob"]) == COSMOS_LIMIT - 1000


def test_cosmos_raw_answers(server, cosmos_items):
    account, _ = cosmos_items
    path = "/" + account.document_endpoint.split("/", 3)[3] + "dbs/db/colls/items/docs"
    res = server.post(path, data=b" " * (COSMOS_LIMIT + 1), headers={"Content-Type": "application/json"})
    body = assert_cosmos_error(res, 413, "RequestEntityTooLarge")
    assert body["message"].startswith('Message: {"Errors":["Request size is too large"]}'), body
    res = server.post(path, data=DEEP, headers={"Content-Type": "application/json"}, timeout=5)
    body = assert_cosmos_error(res, 400, "BadRequest")
    assert "recursion limit exceeded at line 1 column 128" in body["message"], body


# --------------------------------------------------------------------------------------------------
# nesting


def test_nested_json_is_refused_quickly_in_each_shape(server, arm, rg):
    """10 000 `[` (and 3 MB of them) neither overflow a stack nor take long: the layer stops at the
    128th, as serde_json's recursion limit does (the request's own 5 s timeout is the bound)."""
    json_headers = {"Content-Type": "application/json"}
    for body in (DEEP, b"[" * (3 * MB)):
        res = arm.raw("PUT", group_path(arm), data=body, headers=json_headers, timeout=5)
        error = support.assert_arm_error(res, 400, "InvalidRequestContent")
        assert error["message"] == (
            "The request content was invalid and could not be deserialized: "
            "'recursion limit exceeded at line 1 column 128'."
        )
    # A deployment (ARM's relaxed JSON, whose template the template reader parses again).
    nested_template = b'{"properties": {"mode": "Incremental", "template": ' + b'{"a": ' * 5000 + b"}"
    res = arm.raw(
        "PUT", f"/subscriptions/{arm.sub}/resourcegroups/limits/providers/Microsoft.Resources/deployments/deep?api-version=2024-03-01",
        data=nested_template, headers=json_headers, timeout=5,
    )
    support.assert_arm_error(res, 400, "InvalidRequestContent")
    # 127 levels are stored and read back; the 128th is refused.
    resource = f"/subscriptions/{arm.sub}/resourceGroups/{rg}/providers/Microsoft.Example/things/deep?api-version=2020-01-01"
    for levels, status in ((125, 201), (126, 400)):
        body = b'{"location": "westus", "properties": {"v": ' + b"[" * levels + b"]" * levels + b"}}"
        res = arm.raw("PUT", resource, data=body, headers=json_headers)
        assert res.status_code == status, res.text[:300]
    assert json.dumps(arm.raw("GET", resource).json()["properties"]["v"]) == "[" * 125 + "]" * 125
    res = support.graph_request(server, arm.credential, "POST", "/v1.0/applications", data=DEEP, headers=json_headers, timeout=5)
    error = support.assert_arm_error(res, 400, "Request_BadRequest")
    assert "recursion limit exceeded" in error["message"]
    res = server.post("/openmi/agent/token", data=DEEP, headers=json_headers, timeout=5)
    assert res.status_code == 400 and res.json()["error"] == "invalid_request", res.text
    assert server.get("/healthz").status_code == 200


# --------------------------------------------------------------------------------------------------
# header and idle timeouts (a server of their own, with short timeouts)


@contextlib.contextmanager
def raw_connection(server):
    """A TLS connection to `server` as a socket (HTTP/1.1), for what clients do not do."""
    port = int(server.url.rsplit(":", 1)[1])
    context = ssl.create_default_context(cafile=server.ca_cert_path)
    context.set_alpn_protocols(["http/1.1"])
    conn = context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=30), server_hostname="127.0.0.1")
    try:
        yield conn
    finally:
        conn.close()


def read_response(conn: ssl.SSLSocket) -> tuple[int, str]:
    """One HTTP/1.1 response with a Content-Length: status and body."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = conn.recv(65536)
        assert chunk, f"closed before a response: {data!r}"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
    while len(rest) < length:
        chunk = conn.recv(65536)
        assert chunk, "closed within a response"
        rest += chunk
    return int(lines[0].split()[1]), rest[:length].decode()


def closed_after(conn: ssl.SSLSocket, started: float, limit: float) -> float:
    """Waits until the server closes `conn` (at most `limit` seconds after `started`); the delay."""
    conn.settimeout(limit)
    try:
        assert conn.recv(1) == b"", "the server sent data instead of closing"
    except (ConnectionResetError, ssl.SSLError):
        pass
    except socket.timeout:
        pytest.fail(f"the connection was still open {limit} s later")
    return time.monotonic() - started


@pytest.fixture
def timed_server(server_factory):
    return server_factory.start(extra_args=["--header-timeout", str(HEADER_TIMEOUT), "--idle-timeout", str(IDLE_TIMEOUT)])


def test_slowloris_is_closed_within_the_header_timeout(timed_server):
    """Headers sent a byte at a time, one every 0.3 s: the connection is closed once the header
    timeout has passed since the head's first byte."""
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 200 + b"\r\n\r\n"
    with raw_connection(timed_server) as conn:
        started = time.monotonic()
        closed = False
        for byte in head:
            try:
                conn.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                closed = True
                break
            time.sleep(0.3)
            if time.monotonic() - started > HEADER_TIMEOUT + SLACK:
                break
        took = time.monotonic() - started if closed else closed_after(conn, started, HEADER_TIMEOUT + SLACK)
    assert took < HEADER_TIMEOUT + SLACK, took
    # A connection that sends nothing at all is held to the same timeout.
    with raw_connection(timed_server) as conn:
        took = closed_after(conn, time.monotonic(), HEADER_TIMEOUT + SLACK)
    assert took < HEADER_TIMEOUT + SLACK, took
    assert timed_server.get("/healthz").status_code == 200


def test_idle_keep_alive_connection_is_closed(timed_server):
    with raw_connection(timed_server) as conn:
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(conn)[0] == 200
        # Past the header timeout but within the idle one, the connection still serves.
        time.sleep(HEADER_TIMEOUT + 0.5)
        conn.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(conn)[0] == 200
        started = time.monotonic()
        took = closed_after(conn, started, IDLE_TIMEOUT + SLACK)
    assert took < IDLE_TIMEOUT + SLACK, took


def test_a_slow_body_within_the_pause_is_served_and_a_stalled_one_answered(timed_server):
    """A request open longer than both timeouts is not cut (its body comes in pauses shorter than
    the header timeout); a body that stops is answered 408 in ARM's shape."""
    path = f"/subscriptions/{timed_server.subscription_id}/resourcegroups/slow?{API}"
    n_parts = 12
    with raw_connection(timed_server) as conn:
        conn.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {n_parts}\r\n\r\n".encode())
        for _ in range(n_parts):
            time.sleep(HEADER_TIMEOUT / 2)
            conn.sendall(b" ")
        status, body = read_response(conn)
    # The body arrived whole: no token, so ARM's 401 (not a timeout).
    assert status == 401, body
    with raw_connection(timed_server) as conn:
        conn.sendall(f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 10\r\n\r\nab".encode())
        status, body = read_response(conn)
    assert status == 408, body
    assert json.loads(body)["error"]["code"] == "RequestTimeout"
