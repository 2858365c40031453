"""Issue 6: the agent's IMDS wire protocol, checked with raw `requests` against a running agent
(`openmi agent ... --ready-file`), as research/protocols.md §1 describes Azure's: the Metadata
header, X-Forwarded-For, api-version, verbs, bodies where every value is a string, the instance
metadata endpoints, and throttling with 429 + Retry-After.

One VM and one agent per test; runs on SQLite and PostgreSQL (the agent does not care, the server
behind it does).
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
import time
import uuid

import jwt
import pytest
import requests

import support
from support import ARM, IMDS_API, IMDS_INSTANCE_API, IMDS_TOKEN_PATH

METADATA_REQUIRED = "Required metadata header not specified"


@pytest.fixture
def vm_agent(server, arm, rg, agents):
    """A VM with a system-assigned identity, tags, and an agent for it: (vm, agent)."""
    vm = support.timed_result(
        arm.compute.virtual_machines.begin_create_or_update(
            rg, "vm1", {**arm.vm_body(computer_name="vm1", identity={"type": "SystemAssigned"}), "tags": {"env": "test"}}
        )
    )
    return vm, agents.start(server, rg, "vm1")


def assert_strings_only(value, path="") -> None:
    """IMDS instance documents have only strings as primitives (missing values are "")."""
    if isinstance(value, dict):
        for key, item in value.items():
            assert_strings_only(item, f"{path}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            assert_strings_only(item, f"{path}[{index}]")
    else:
        assert isinstance(value, str), f"{path} is {value!r}, not a string"


def assert_bad_api_version(res: requests.Response) -> dict:
    detail = f"HTTP {res.status_code} {res.url}: {res.text[:600]}"
    assert res.status_code == 400, detail
    body = res.json()
    assert "api-version" in body.get("error", ""), detail
    newest = body.get("newest-versions")
    assert isinstance(newest, list) and newest and all(isinstance(v, str) for v in newest), detail
    return body


def test_token_success_body(vm_agent, server):
    vm, agent = vm_agent
    res = agent.token()
    body = support.imds_token_body(res)
    assert body["resource"] == ARM, body
    assert int(body["expires_in"]) > 86400 - 120, body
    assert abs(int(body["not_before"]) - time.time()) < 120, body
    claims = support.verify_token(server, body["access_token"], audience=ARM)
    assert claims["exp"] == int(body["expires_on"]), (claims, body)
    assert claims["oid"] == vm.identity.principal_id

    # Cached: the same token again, with expires_in counting down (never up).
    again = support.imds_token_body(agent.token())
    assert again["access_token"] == body["access_token"]
    assert int(again["expires_in"]) <= int(body["expires_in"])
    assert again["expires_on"] == body["expires_on"]

    # Every api-version from 2018-02-01 on works; azure-identity sends 2018-02-01.
    for version in ("2019-08-01", "2021-02-01", "2025-04-07"):
        support.imds_token_body(agent.token(api_version=version))


def test_metadata_header_is_required(vm_agent):
    _, agent = vm_agent
    # No header: azure-identity's probe sends exactly this and expects a quick 400.
    started = time.monotonic()
    res = agent.token(metadata=False)
    assert time.monotonic() - started < 1.0
    support.imds_error(res, 400, "invalid_request", METADATA_REQUIRED)
    for value in ("false", "yes", ""):
        support.imds_error(agent.token(headers={"Metadata": value}), 400, "invalid_request", METADATA_REQUIRED)
    # Instance metadata wants it too.
    res = agent.get("/metadata/instance", params={"api-version": IMDS_INSTANCE_API}, metadata=False)
    assert res.status_code == 400, res.text


def test_forwarded_requests_are_refused(vm_agent):
    _, agent = vm_agent
    res = agent.token(headers={"X-Forwarded-For": "10.0.0.7"})
    assert res.status_code == 400, res.text
    assert "access_token" not in res.text
    assert res.json().get("error"), res.text
    res = agent.get("/metadata/instance", params={"api-version": IMDS_INSTANCE_API}, headers={"X-Forwarded-For": "10.0.0.7"})
    assert res.status_code == 400, res.text


def test_api_version_resource_and_verb_errors(vm_agent):
    _, agent = vm_agent
    assert_bad_api_version(agent.token(api_version=None))
    assert_bad_api_version(agent.token(api_version="1999-01-01"))
    assert_bad_api_version(agent.get("/metadata/instance"))
    support.imds_error(agent.token(resource=None), 400, "invalid_request")
    res = agent.token(resource="https://vault.azure.net")  # a resource this tenant does not know
    body = support.imds_error(res, 400, "invalid_resource")
    assert body["error_description"].startswith("AADSTS500011"), body
    # Duplicate query parameters are refused.
    res = agent.get(IMDS_TOKEN_PATH, params=[("api-version", IMDS_API), ("resource", ARM), ("resource", ARM)])
    assert res.status_code == 400, res.text
    # Only GET.
    for method in ("POST", "PUT", "DELETE"):
        res = agent.request(method, IMDS_TOKEN_PATH, params={"api-version": IMDS_API, "resource": ARM})
        assert res.status_code == 405, f"{method}: HTTP {res.status_code}: {res.text[:300]}"


def test_identity_info_versions_and_instance(vm_agent, server, arm, rg):
    vm, agent = vm_agent
    res = agent.get("/metadata/identity/info", params={"api-version": IMDS_API})
    assert res.status_code == 200, res.text
    assert res.json() == {"tenantId": server.tenant_id}, res.text

    res = agent.get("/metadata/versions", metadata=True)
    assert res.status_code == 200, res.text
    versions = res.json()["apiVersions"]
    assert {"2018-02-01", "2021-02-01"} <= set(versions), versions

    res = agent.get("/metadata/instance", params={"api-version": IMDS_INSTANCE_API})
    assert res.status_code == 200, res.text
    assert res.headers.get("content-type", "").startswith("application/json"), res.headers
    doc = res.json()
    compute = doc["compute"]
    assert compute["location"] == "westus", compute
    assert compute["name"] == "vm1", compute
    assert compute["resourceGroupName"] == rg, compute
    assert compute["subscriptionId"] == arm.sub, compute
    assert compute["vmId"] == vm.vm_id, compute
    assert compute["resourceId"].lower() == vm.id.lower(), compute
    assert compute["vmSize"] == "Standard_DS1_v2", compute
    assert compute["tagsList"] == [{"name": "env", "value": "test"}], compute
    assert compute["tags"] == "env:test", compute
    assert_strings_only(doc)

    # MSAL's region detection reads /metadata/instance/compute.
    res = agent.get("/metadata/instance/compute", params={"api-version": IMDS_INSTANCE_API})
    assert res.status_code == 200, res.text
    assert res.json()["location"] == "westus"
    # A leaf as text.
    res = agent.get("/metadata/instance/compute/location", params={"api-version": IMDS_INSTANCE_API, "format": "text"})
    assert res.status_code == 200, res.text
    assert res.headers.get("content-type", "").startswith("text/plain"), res.headers
    assert res.text == "westus"
    res = agent.get("/metadata/instance/compute/name", params={"api-version": IMDS_INSTANCE_API, "format": "text"})
    assert (res.status_code, res.text) == (200, "vm1")


@pytest.mark.parametrize("limits", [("5", "5"), None], ids=["rate-5", "default-20"])
def test_burst_over_the_limit_is_throttled(server, arm, rg, agents, limits):
    arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})
    extra = ("--rate-limit", limits[0], "--max-concurrent", limits[1]) if limits else ()
    agent = agents.start(server, rg, "vm1", extra_args=extra)
    n_requests = 30 if limits else 60
    support.imds_token_body(agent.token())  # cached from here on: the burst measures throttling only

    def one(_):
        return agent.token(timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=n_requests) as pool:
        answers = list(pool.map(one, range(n_requests)))
    statuses = [r.status_code for r in answers]
    assert set(statuses) <= {200, 429}, statuses
    throttled = [r for r in answers if r.status_code == 429]
    assert statuses.count(200) >= 1, statuses
    assert len(throttled) >= n_requests // 3, f"{len(throttled)} of {n_requests} throttled: {statuses}"
    for res in throttled:
        retry_after = res.headers.get("Retry-After")
        assert retry_after is not None and retry_after.isdigit(), dict(res.headers)
        assert "access_token" not in res.text
    # After the pause it asks for (a second or two at these limits), requests are served again.
    time.sleep(min(max(int(throttled[0].headers["Retry-After"]), 1), 2) + 0.1)
    res, _ = support.poll_until(lambda: (r := agent.token()).status_code == 200 and r, timeout=3, interval=0.25)
    assert res, "still throttled 3 s after the Retry-After pause"
    support.imds_token_body(res)


def server_token_requests(server) -> int:
    """How many `POST /openmi/agent/token` the server has logged so far."""
    return server.log_path.read_text(errors="replace").count("method=POST path=/openmi/agent/token ")


def test_concurrent_misses_make_one_server_request(vm_agent, server):
    """Issue 6: "concurrent misses coalesce into one request to the server" (counted in the server's
    request log; only this test's agent is running against the shared server at this point)."""
    vm, agent = vm_agent
    for resource in (ARM, "https://graph.microsoft.com"):
        before = server_token_requests(server)
        barrier = threading.Barrier(10)

        def one(_):
            barrier.wait()
            return agent.token(resource=resource)

        with concurrent.futures.ThreadPoolExecutor(max_workers=10) as pool:
            answers = list(pool.map(one, range(10)))
        bodies = [support.imds_token_body(res) for res in answers]
        assert len({b["access_token"] for b in bodies}) == 1, "concurrent requests got different tokens"
        time.sleep(0.3)  # the server logs a request after answering it
        made = server_token_requests(server) - before
        assert made == 1, f"10 concurrent requests for {resource} made {made} token requests to the server"


def test_concurrent_misses_of_different_keys_each_get_their_own_answer(vm_agent, server):
    """Misses of different keys at once (which the agent may send together in one
    `POST /openmi/agent/tokens`, agent protocol §4.3): each caller gets exactly its own answer: its
    audience and the VM's identity, or its own error."""
    vm, agent = vm_agent
    resources = [
        "https://management.azure.com",
        "https://management.azure.com/",
        "https://management.core.windows.net",
        "https://management.core.windows.net/",
        "797f4846-ba00-4fd7-ba43-dac1f8f63013",
        "https://graph.microsoft.com",
        "https://graph.microsoft.com/",
        "00000003-0000-0000-c000-000000000000",
        server.url,
        server.url + "/",
    ]
    unknown = "https://unknown.example.com"
    asked = resources + [unknown]
    barrier = threading.Barrier(len(asked))

    def one(resource):
        barrier.wait()
        return agent.token(resource=resource, timeout=30)

    with concurrent.futures.ThreadPoolExecutor(max_workers=len(asked)) as pool:
        answers = dict(zip(asked, pool.map(one, asked)))
    for resource in resources:
        body = support.imds_token_body(answers[resource])
        assert body["resource"] == resource, body
        claims = support.verify_token(server, body["access_token"], audience=resource)
        assert claims["oid"] == vm.identity.principal_id, claims
    refused = answers[unknown]
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"] == "invalid_resource", refused.text


def agent_authorization(agent) -> str:
    """An `Authorization: Agent <ES256 assertion>` made with the agent's own enrolled key (agent
    protocol §3), read from its state directory."""
    state = json.loads((agent.state_dir / "agent.json").read_text())
    key = (agent.state_dir / "agent.key").read_bytes()
    now = int(time.time())
    agent_id = state["agentId"]
    claims = {"iss": agent_id, "sub": agent_id, "aud": "openmi-agent", "iat": now, "exp": now + 300,
              "jti": str(uuid.uuid4())}
    return "Agent " + jwt.encode(claims, key, algorithm="ES256", headers={"kid": agent_id})


def test_batch_token_endpoint_answers_each_request_as_alone(vm_agent, server):
    """`POST /openmi/agent/tokens` (agent protocol §4.3) with the agent's key: one JSON line per
    request, naming its index, each what `/openmi/agent/token` gives for it alone; bad batches and
    callers without the key are refused as a whole."""
    vm, agent = vm_agent
    url = f"{server.url}/openmi/agent/tokens"
    headers = {"Authorization": agent_authorization(agent)}
    requests_ = [
        {"resource": ARM},
        {"resource": "https://graph.microsoft.com", "objectId": vm.identity.principal_id},
        {"resource": ARM, "clientId": "00000000-0000-0000-0000-00000000beef"},
        {"resource": "https://unknown.example.com"},
    ]
    res = requests.post(url, json={"requests": requests_}, headers=headers, verify=server.ca_cert_path, timeout=30)
    assert res.status_code == 200, res.text
    assert res.headers.get("Cache-Control") == "no-store"
    assert res.headers.get("Content-Type") == "application/x-ndjson"
    assert res.text.endswith("\n"), res.text
    lines = [json.loads(line) for line in res.text.splitlines()]
    assert sorted(line["index"] for line in lines) == [0, 1, 2, 3], lines
    answers = sorted(lines, key=lambda line: line["index"])
    assert [a["status"] for a in answers] == [200, 200, 400, 400], answers
    for answer, request in zip(answers[:2], requests_[:2]):
        body = answer["body"]
        assert body["resource"] == request["resource"], body
        assert body["object_id"] == vm.identity.principal_id, body
        claims = support.verify_token(server, body["access_token"], audience=request["resource"])
        assert claims["xms_mirid"].lower() == vm.id.lower(), claims
    assert answers[2]["body"] == {"error": "invalid_request", "error_description": "Identity not found"}
    assert answers[3]["body"]["error"] == "invalid_resource", answers[3]
    # The same request alone answers the same.
    alone = requests.post(f"{server.url}/openmi/agent/token", json=requests_[2], headers=headers,
                          verify=server.ca_cert_path, timeout=30)
    assert (alone.status_code, alone.json()) == (400, answers[2]["body"])

    for bad in ({"requests": []}, {"requests": [{"resource": ARM}] * 65}, {"nothing": 1}):
        res = requests.post(url, json=bad, headers=headers, verify=server.ca_cert_path, timeout=30)
        assert res.status_code == 400 and res.json()["error"] == "invalid_request", res.text
    res = requests.post(url, json={"requests": requests_[:1]}, verify=server.ca_cert_path, timeout=30)
    assert res.status_code == 401 and res.json()["error"] == "invalid_client", res.text
    # An admin's bearer token is not an agent's key.
    admin_token = support.post_token(server, support.client_credentials(server)).json()["access_token"]
    admin = {"Authorization": "Bearer " + admin_token}
    res = requests.post(url, json={"requests": requests_[:1]}, headers=admin, verify=server.ca_cert_path, timeout=30)
    assert res.status_code == 401, res.text
