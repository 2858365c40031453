"""Issue 6: enrolling an agent. `openmi vm join-token` (needs write on the VM), one-time join tokens,
the agent's state dir (later starts need no token), and the server's agent API of
docs/design/agent-protocol.md driven raw: enrolment, `Authorization: Agent <ES256 JWS>`, tokens,
the instance document and the change watch.

An expired token is not waited for (the shortest lifetime is 60 s); the lifetime bounds are checked.
Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import concurrent.futures
import datetime
import stat
import threading
import time

from azure.mgmt.compute import models as cm

import support
from support import ARM

COMPUTE_AGENT_API = "2024-11-01"
JOIN_REFUSED = "The join token is invalid, expired or already used."


def generate_join_token(arm, rg: str, vm: str, body: dict | None = None, token: str = "default"):
    path = f"{arm.vm_id(rg, vm)}/generateJoinToken"
    return arm.raw("POST", path, token=token, params={"api-version": COMPUTE_AGENT_API}, json=body or {})


def enroll(server, join_token: str, public_key: str):
    return server.post("/openmi/agent/enroll", json={"joinToken": join_token, "publicKey": public_key})


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def seconds_from_now(value: str) -> float:
    return (parse_time(value) - datetime.datetime.now(datetime.timezone.utc)).total_seconds()


def assert_refused_output(code: int, output: str) -> None:
    assert code != 0, f"the agent exited 0 with a refused join token:\n{output}"
    assert "join token" in output.lower(), f"the agent's message does not say what is wrong:\n{output}"


# --------------------------------------------------------------------------------------------------
# join tokens


def test_join_token_from_the_cli_and_its_lifetime_bounds(server, arm, rg, agents):
    vm = arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})
    cli_dir = agents.cli_dir(server)
    out = support.join_token_cli(cli_dir, rg, "vm1").json()
    assert set(out) >= {"joinToken", "expiresOn", "vmResourceId"}, out
    assert isinstance(out["joinToken"], str) and len(out["joinToken"]) >= 43, out
    assert out["vmResourceId"].lower() == vm.id.lower(), out
    assert abs(seconds_from_now(out["expiresOn"]) - 3600) < 120, out

    short = support.join_token_cli(cli_dir, rg, "vm1", expires_in=120).json()
    assert abs(seconds_from_now(short["expiresOn"]) - 120) < 60, short
    assert short["joinToken"] != out["joinToken"]
    longest = support.join_token_cli(cli_dir, rg, "vm1", expires_in=86400).json()
    assert abs(seconds_from_now(longest["expiresOn"]) - 86400) < 120, longest

    for seconds in (59, 0, 86401):
        refused = support.join_token_cli(cli_dir, rg, "vm1", expires_in=seconds, check=False)
        assert refused.returncode != 0, refused.describe()
        assert "joinToken" not in refused.stdout, refused.describe()
        assert refused.stderr.strip(), refused.describe()
    missing = support.join_token_cli(cli_dir, rg, "no-such-vm", check=False)
    assert missing.returncode != 0, missing.describe()

    # The ARM action itself.
    res = generate_join_token(arm, rg, "vm1", {"expiresIn": 600})
    assert res.status_code == 200, res.text
    assert abs(seconds_from_now(res.json()["expiresOn"]) - 600) < 60, res.text
    for seconds in (30, 86401):
        res = generate_join_token(arm, rg, "vm1", {"expiresIn": seconds})
        assert res.status_code == 400, f"expiresIn {seconds}: HTTP {res.status_code}: {res.text[:300]}"
        assert "joinToken" not in res.text
    res = generate_join_token(arm, rg, "no-such-vm")
    assert res.status_code == 404, res.text
    res = generate_join_token(arm, rg, "vm1", token=None)
    assert res.status_code == 401, res.text


def test_join_token_needs_write_on_the_vm(rbac, arm, rg):
    arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})
    reader = rbac.principal()
    rbac.grant(reader.object_id, support.ROLE_READER, arm.rg_id(rg))
    res = generate_join_token(arm, rg, "vm1", token=reader.token())
    support.assert_arm_error(res, 403, "AuthorizationFailed")
    assert "joinToken" not in res.text

    operator = rbac.principal()
    rbac.grant(operator.object_id, support.ROLE_VM_CONTRIBUTOR, arm.vm_id(rg, "vm1"))
    res = generate_join_token(arm, rg, "vm1", token=operator.token())
    assert res.status_code == 200, res.text
    assert len(res.json()["joinToken"]) >= 43


# --------------------------------------------------------------------------------------------------
# the agent's enrolment


def test_used_and_garbage_join_tokens_are_refused_and_the_state_dir_is_enough(server, arm, rg, agents):
    vm = arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})
    join_token = agents.join_token(server, rg, "vm1")
    first = agents.start(server, join_token=join_token)
    support.imds_token_body(first.token())

    # The same token again, for another agent: refused, and the agent says why.
    code, output = agents.expect_exit(server, join_token)
    assert_refused_output(code, output)
    # Garbage.
    code, output = agents.expect_exit(server, "not-a-join-token-" + "x" * 40)
    assert_refused_output(code, output)
    # No token and no state: nothing to start with.
    code, output = agents.expect_exit(server, None)
    assert code != 0, output

    # The server's own answer to a used token.
    _, public_key = support.ec_key_and_spki()
    support.imds_error(enroll(server, join_token, public_key), 401, "invalid_grant", JOIN_REFUSED)

    # The state dir: the key and the server URL, readable by the owner only.
    files = [p for p in first.state_dir.rglob("*") if p.is_file()]
    assert files, f"nothing in the state dir {first.state_dir}"
    for path in files:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, f"{path} has mode {oct(mode)}; the agent's state must be 0600"

    # A restart needs no join token.
    first.stop()
    again = agents.start(server, state_dir=first.state_dir)
    body = support.imds_token_body(again.token())
    assert support.unverified_claims(body["access_token"])["oid"] == vm.identity.principal_id


# --------------------------------------------------------------------------------------------------
# the server's agent API, raw (docs/design/agent-protocol.md §2-6)


def agent_post(server, key, agent_id: str, body: dict, **claims):
    return server.post("/openmi/agent/token", json=body,
                       headers={"Authorization": support.agent_assertion(key, agent_id, **claims)})


def raw_join_token(arm, rg: str, vm: str) -> str:
    res = generate_join_token(arm, rg, vm)
    assert res.status_code == 200, f"generateJoinToken: HTTP {res.status_code}: {res.text[:400]}"
    return res.json()["joinToken"]


def test_enrolment_api(server, arm, rg):
    """The server side alone: no agent process, the test plays the agent with its own key."""
    vm = arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})

    # A malformed key.
    res = enroll(server, raw_join_token(arm, rg, "vm1"), "bm90IGEga2V5")
    support.imds_error(res, 400, "invalid_request")
    res = server.post("/openmi/agent/enroll", json={})
    assert res.status_code in (400, 401), res.text

    # Two agents racing with one token: exactly one wins.
    join_token = raw_join_token(arm, rg, "vm1")
    keys = [support.ec_key_and_spki() for _ in range(4)]
    barrier = threading.Barrier(len(keys))

    def race(pair):
        barrier.wait()
        return enroll(server, join_token, pair[1])

    with concurrent.futures.ThreadPoolExecutor(len(keys)) as pool:
        answers = list(pool.map(race, keys))
    statuses = sorted(r.status_code for r in answers)
    assert statuses == [200, 401, 401, 401], [(r.status_code, r.text[:200]) for r in answers]
    winner = next(i for i, r in enumerate(answers) if r.status_code == 200)
    for res in answers:
        if res.status_code == 401:
            support.imds_error(res, 401, "invalid_grant", JOIN_REFUSED)
    enrolled = answers[winner].json()
    key = keys[winner][0]
    assert support.GUID_RE.match(enrolled["agentId"]), enrolled
    assert enrolled["vmResourceId"].lower() == vm.id.lower(), enrolled
    assert enrolled["tenantId"] == server.tenant_id, enrolled
    assert enrolled["subscriptionId"] == arm.sub, enrolled
    agent_id = enrolled["agentId"]

    # Tokens with the enrolled key.
    res = agent_post(server, key, agent_id, {"resource": ARM})
    assert res.status_code == 200, res.text
    body = res.json()
    for name in ("expires_in", "expires_on", "not_before"):
        assert isinstance(body[name], int), body
    assert body["token_type"] == "Bearer" and body["resource"] == ARM, body
    assert body["object_id"] == vm.identity.principal_id, body
    assert body["msi_res_id"].lower() == vm.id.lower(), body
    claims = support.verify_token(server, body["access_token"], audience=ARM)
    assert claims["oid"] == vm.identity.principal_id and claims["xms_mirid"].lower() == vm.id.lower(), claims
    assert claims["ver"] == "1.0" and claims["idtyp"] == "app" and claims["appid"] == body["client_id"], claims

    other = arm.create_identity(rg, "elsewhere")
    support.assert_identity_not_found(agent_post(server, key, agent_id, {"resource": ARM, "clientId": other.client_id}))
    res = agent_post(server, key, agent_id, {"resource": ARM, "clientId": body["client_id"], "objectId": body["object_id"]})
    support.imds_error(res, 400, "invalid_request")
    res = agent_post(server, key, agent_id, {"resource": "https://vault.azure.net"})
    body_err = support.imds_error(res, 400, "invalid_resource")
    assert body_err["error_description"].startswith("AADSTS500011"), body_err

    # Proofs that are not good enough.
    stranger, _ = support.ec_key_and_spki()
    now = int(time.time())
    for label, value in (
        ("another key", support.agent_assertion(stranger, agent_id)),
        ("expired", support.agent_assertion(key, agent_id, iat=now - 1200, lifetime=600)),
        ("too long-lived", support.agent_assertion(key, agent_id, lifetime=3600)),
        ("wrong audience", support.agent_assertion(key, agent_id, aud="someone-else")),
        ("unknown agent", support.agent_assertion(key, "00000000-0000-0000-0000-000000000000")),
    ):
        res = server.post("/openmi/agent/token", json={"resource": ARM}, headers={"Authorization": value})
        assert res.status_code == 401, f"{label}: HTTP {res.status_code}: {res.text[:300]}"
        assert res.json().get("error") == "invalid_client", f"{label}: {res.text[:300]}"

    # The instance document, and the watch answering a change at once.
    auth = {"Authorization": support.agent_assertion(key, agent_id)}
    res = server.get("/openmi/agent/instance", headers=auth)
    assert res.status_code == 200, res.text
    instance = res.json()
    assert isinstance(instance["version"], int), instance
    assert instance["vm"]["id"].lower() == vm.id.lower(), instance
    assert instance["tenantId"] == server.tenant_id and instance["resourceGroupName"].lower() == rg.lower(), instance
    assert instance["extensions"] == [], instance

    watched = {}

    def watch():
        started = time.monotonic()
        watched["res"] = server.get("/openmi/agent/watch", params={"version": instance["version"]}, headers=auth, timeout=40)
        watched["took"] = time.monotonic() - started

    thread = threading.Thread(target=watch)
    thread.start()
    time.sleep(0.5)
    changed_at = time.monotonic()
    arm.create_identity(rg, "ID1")
    arm.compute.virtual_machines.begin_update(
        rg, "vm1", cm.VirtualMachineUpdate(identity=cm.VirtualMachineIdentity(
            type="SystemAssigned, UserAssigned",
            user_assigned_identities={arm.identity_id(rg, "ID1"): cm.UserAssignedIdentitiesValue()},
        ))
    ).result()
    thread.join(timeout=40)
    assert "res" in watched, "the watch did not answer"
    latency = time.monotonic() - changed_at
    res = watched["res"]
    assert res.status_code == 200, res.text
    assert res.json()["version"] != instance["version"], res.text
    assert latency < 1.5, f"the watch answered {latency:.2f}s after the change"

    # The VM deleted: the registration goes with it.
    support.timed_result(arm.compute.virtual_machines.begin_delete(rg, "vm1"))
    res = agent_post(server, key, agent_id, {"resource": ARM})
    support.imds_error(res, 401, "invalid_client")
