"""Issue 20, metrics: the server's and the agent's `/metrics` read with the Prometheus project's own
text-format parser (prometheus_client.parser) after real traffic, asserting each counter moved by
what the traffic did; `/livez` and `/readyz`, which answers 503 while PostgreSQL is unreachable
(the server reaches it through a small TCP proxy of the test, stopped and started again).

Each test starts its own server, so its counters start at zero and no other test moves them.
"""

from __future__ import annotations

import socket
import threading
import time
import urllib.parse

import pytest
import requests
from azure.core.exceptions import ClientAuthenticationError
from azure.identity import ClientSecretCredential, UsernamePasswordCredential
from azure.mgmt.resource.resources import ResourceManagementClient
from prometheus_client.parser import text_string_to_metric_families

import support
from conftest import ServerFactory
from support import ARM, ARM_SCOPE, AZ_CLI_CLIENT_ID

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
PROMETHEUS_TEXT = "text/plain; version=0.0.4"


# --------------------------------------------------------------------------------------------------
# reading /metrics


class Scrape:
    """One /metrics answer, parsed by prometheus_client: samples by (name, labels)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.families = {family.name: family for family in text_string_to_metric_families(text)}
        self.samples: dict[tuple[str, frozenset], float] = {}
        for family in self.families.values():
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float:
        """The sum of the samples named `name` whose labels include `labels` (0 if none)."""
        wanted = set(labels.items())
        return sum(value for (sample, have), value in self.samples.items() if sample == name and wanted <= have)

    def delta(self, before: "Scrape", name: str, **labels: str) -> float:
        return self.value(name, **labels) - before.value(name, **labels)

    def kind(self, family: str) -> str:
        return self.families[family].type


def scrape_server(srv: support.Server) -> Scrape:
    res = srv.get("/metrics")
    assert res.status_code == 200, f"HTTP {res.status_code}: {res.text[:300]}"
    assert res.headers["content-type"].startswith(PROMETHEUS_TEXT), res.headers
    return Scrape(res.text)


def scrape_agent(agent: support.Agent) -> Scrape:
    # No Metadata header: /metrics is for the machine's operator and Prometheus, not IMDS clients.
    res = requests.get(agent.url + "/metrics", timeout=support.HTTP_TIMEOUT)
    assert res.status_code == 200, f"HTTP {res.status_code}: {res.text[:300]}"
    assert res.headers["content-type"].startswith(PROMETHEUS_TEXT), res.headers
    return Scrape(res.text)


def wait_for(fetch, done, timeout: float, interval: float = 0.1):
    """fetch() every `interval` s until done(result) or `timeout`; the last result."""
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if done(result) or time.monotonic() >= deadline:
            return result
        time.sleep(interval)


def deltas(after: Scrape, before: Scrape, expected: dict) -> dict:
    """{(name, labels): (expected, actual delta)} for every expectation that does not hold."""
    wrong = {}
    for (name, labels), want in expected.items():
        got = after.delta(before, name, **dict(labels))
        if got != want:
            wrong[(name, labels)] = (want, got)
    return wrong


def family(name: str) -> tuple:
    return (("family", name),)


# --------------------------------------------------------------------------------------------------
# the server


def test_server_metrics_count_tokens_requests_failures_and_writes(server_factory, monkeypatch):
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    assert srv.get("/livez").status_code == 200
    assert srv.get("/readyz").status_code == 200

    before = scrape_server(srv)
    for name, kind in [
        ("openmi_http_requests", "counter"), ("openmi_http_request_duration_seconds", "histogram"),
        ("openmi_tokens_minted", "counter"), ("openmi_sign_in_failures", "counter"),
        ("openmi_store_write_batch_size", "histogram"), ("openmi_store_commit_seconds", "histogram"),
        ("openmi_rbac_assignments", "gauge"), ("openmi_cache_entries", "gauge"),
        ("openmi_agents_connected", "gauge"),
    ]:
        assert before.kind(name) == kind, f"{name}: {sorted(before.families)}"
    # Bootstrap's Owner assignments (the admin user and the bootstrap service principal).
    assert before.value("openmi_rbac_assignments") >= 2, before.text

    # A service principal's token through azure-identity, then ARM through azure-mgmt-resource
    # with it: a group created (one group commit) and read.
    credential = support.arm_credential(srv)
    credential.get_token(ARM_SCOPE)
    resource = ResourceManagementClient(credential, srv.subscription_id, **support.mgmt_client_kwargs(srv))
    rg = support.unique_name("metrics")
    resource.resource_groups.create_or_update(rg, {"location": "westus"})
    assert resource.resource_groups.get(rg).name == rg
    # A failed sign-in: a wrong client secret.
    wrong_secret = ClientSecretCredential(
        srv.tenant_id, srv.client_id, srv.client_secret + "x", authority=srv.url, disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError):
        wrong_secret.get_token(ARM_SCOPE)
    # A user: ROPC, then a token for another resource from the refresh token (MSAL's silent
    # flow), then a wrong password.
    user = UsernamePasswordCredential(
        client_id=AZ_CLI_CLIENT_ID, username=srv.admin_username, password=srv.admin_password,
        tenant_id=srv.tenant_id, authority=srv.url, disable_instance_discovery=True,
    )
    user.get_token(ARM_SCOPE)
    user.get_token(GRAPH_SCOPE)
    wrong_password = UsernamePasswordCredential(
        client_id=AZ_CLI_CLIENT_ID, username=srv.admin_username, password=srv.admin_password + "x",
        tenant_id=srv.tenant_id, authority=srv.url, disable_instance_discovery=True,
    )
    with pytest.raises(ClientAuthenticationError):
        wrong_password.get_token(ARM_SCOPE)

    after = scrape_server(srv)
    expected = {
        ("openmi_tokens_minted_total", (("kind", "client_credentials"),)): 1,
        ("openmi_tokens_minted_total", (("kind", "password"),)): 1,
        ("openmi_tokens_minted_total", (("kind", "refresh_token"),)): 1,
        ("openmi_tokens_minted_total", (("kind", "managed_identity"),)): 0,
        ("openmi_tokens_minted_total", ()): 3,
        ("openmi_sign_in_failures_total", (("kind", "client_credentials"), ("reason", "invalid_client"))): 1,
        ("openmi_sign_in_failures_total", (("kind", "password"), ("reason", "invalid_user_credentials"))): 1,
        ("openmi_sign_in_failures_total", ()): 2,
        # Three tokens, the wrong secret (401) and the wrong password (400), all timed.
        ("openmi_http_requests_total", family("token") + (("status", "200"),)): 3,
        ("openmi_http_requests_total", family("token") + (("status", "401"),)): 1,
        ("openmi_http_requests_total", family("token") + (("status", "400"),)): 1,
        ("openmi_http_request_duration_seconds_count", family("token")): 5,
        ("openmi_http_request_duration_seconds_bucket", family("token") + (("le", "+Inf"),)): 5,
        # The group's PUT (new: 201) and GET.
        ("openmi_http_requests_total", family("arm") + (("status", "201"),)): 1,
        ("openmi_http_requests_total", family("arm") + (("status", "200"),)): 1,
        # The scrape before this one (a scrape is counted once answered).
        ("openmi_http_requests_total", family("metrics") + (("status", "200"),)): 1,
    }
    assert not deltas(after, before, expected), f"{deltas(after, before, expected)}\n{after.text}"
    assert after.delta(before, "openmi_http_request_duration_seconds_sum", family="token") > 0
    # The group commit(s): at least the group's, each timed; a batch holds at least one change.
    batches = after.delta(before, "openmi_store_write_batch_size_count")
    assert batches >= 1, after.text
    assert after.delta(before, "openmi_store_write_batch_size_sum") >= batches
    assert after.delta(before, "openmi_store_commit_seconds_count") == batches
    assert after.value("openmi_store_failed_batches_total") == 0
    # Labels are route families, never paths or ids.
    paths = {labels for (_, labels) in after.samples if any(value.startswith("/") for _, value in labels)}
    assert not paths, paths
    assert not any(rg in key for (_, labels) in after.samples for key in dict(labels).values())
    # The GET went through the read cache.
    assert after.value("openmi_cache_entries", cache="resources") >= 0
    assert after.value("openmi_cache_entries", cache="bearer_tokens") >= 1, after.text
    # The sign-ins above reach the audit log through the batch appender (within its 50 ms).
    appended = wait_for(lambda: scrape_server(srv), lambda s: s.delta(before, "openmi_audit_records_total", outcome="appended") >= 5, 10)
    assert appended.delta(before, "openmi_audit_records_total", outcome="appended") >= 5, appended.text
    assert appended.value("openmi_audit_records_total", outcome="dropped") == 0

    # The RBAC snapshot grows by the assignment a new service principal is granted.
    kit = support.RbacKit(srv, support.arm_clients(srv))
    try:
        principal = kit.principal()
        kit.grant(principal.object_id, support.ROLE_READER, f"/subscriptions/{srv.subscription_id}/resourceGroups/{rg}")
        granted = scrape_server(srv)
        assert granted.delta(after, "openmi_rbac_assignments") == 1, granted.text
        assert granted.value("openmi_rbac_snapshot_bytes") > 0
    finally:
        kit.cleanup()


def test_managed_identity_tokens_and_the_agents_metrics(server_factory, agents, monkeypatch):
    """The agent's /metrics after real traffic: `openmi vm run` with azure-identity inside (a
    miss, hits, a burst over the rate limit), then a long-running agent: the server counts its
    watch as a connected agent, and the agent says when the server stops answering."""
    srv = server_factory.start()
    support.use_ca(monkeypatch, srv.ca_cert_path)
    arm = support.arm_clients(srv)
    rg = support.unique_name("metrics")
    arm.create_group(rg)
    arm.create_vm(rg, "vm1", identity={"type": "SystemAssigned"})

    before = scrape_server(srv)
    out = support.run_workload(agents, srv, rg, "vm1", support.WORKLOADS / "metrics.py", {"burst": 40})
    assert "token" in out, out
    assert out["again"] == [200, 200], out
    assert out["metrics_status"] == 200, out
    assert out["metrics_content_type"].startswith(PROMETHEUS_TEXT), out
    burst_ok, burst_throttled = out["burst"].count(200), out["burst"].count(429)
    assert burst_ok + burst_throttled == 40 and burst_throttled >= 1, out["burst"]

    on_vm = Scrape(out["metrics"])
    served = 1 + 2 + burst_ok
    hits = sum(on_vm.value("openmi_agent_token_cache_hits_total", source=source) for source in ("memo", "cache", "coalesced"))
    assert on_vm.value("openmi_agent_token_cache_misses_total") == 1, on_vm.text
    assert hits == served - 1, on_vm.text
    assert on_vm.value("openmi_agent_token_refreshes_total") == 0, on_vm.text
    assert on_vm.value("openmi_agent_throttled_requests_total") == burst_throttled, on_vm.text
    assert on_vm.value("openmi_agent_requests_total", route="imds_token", status="200") == served, on_vm.text
    assert on_vm.value("openmi_agent_requests_total", route="imds_token", status="429") == burst_throttled, on_vm.text
    assert on_vm.value("openmi_agent_cached_tokens") == 1, on_vm.text
    assert on_vm.value("openmi_agent_server_reachable") == 1, on_vm.text
    # At least the instance document at start and the one token.
    assert on_vm.value("openmi_agent_server_calls_total", outcome="ok") >= 2, on_vm.text
    assert on_vm.value("openmi_agent_server_calls_total", outcome="unreachable") == 0, on_vm.text

    after = scrape_server(srv)
    assert after.delta(before, "openmi_tokens_minted_total", kind="managed_identity") == 1, after.text
    assert after.delta(before, "openmi_http_requests_total", family="agent", status="200") >= 2, after.text

    # A long-running agent: its watch is a connected agent at the server.
    agent = agents.start(srv, rg, "vm1")
    connected = wait_for(lambda: scrape_server(srv), lambda s: s.value("openmi_agents_connected") >= 1, 10)
    assert connected.value("openmi_agents_connected") >= 1, connected.text
    start = scrape_agent(agent)
    for _ in range(2):
        support.imds_token_body(agent.token(ARM))
    # A request the agent refuses itself (no Metadata header), counted with its status.
    assert agent.token(ARM, metadata=False).status_code == 400
    now = scrape_agent(agent)
    assert now.delta(start, "openmi_agent_token_cache_misses_total") == 1, now.text
    assert now.delta(start, "openmi_agent_token_cache_hits_total") == 1, now.text
    assert now.delta(start, "openmi_agent_requests_total", route="imds_token", status="200") == 2, now.text
    assert now.delta(start, "openmi_agent_requests_total", route="imds_token", status="400") == 1, now.text
    assert now.delta(start, "openmi_agent_requests_total", route="metrics", status="200") == 1, now.text
    assert now.value("openmi_agent_server_reachable") == 1, now.text

    # The server goes away: the agent's next call (the watch's) gets no answer.
    server_factory.stop(srv)
    gone = wait_for(lambda: scrape_agent(agent), lambda s: s.value("openmi_agent_server_reachable") == 0, 10)
    assert gone.value("openmi_agent_server_reachable") == 0, gone.text
    assert gone.value("openmi_agent_server_calls_total", outcome="unreachable") >= 1, gone.text
    # The cached token is still served.
    support.imds_token_body(agent.token(ARM))


# --------------------------------------------------------------------------------------------------
# readiness


class TcpProxy:
    """A TCP proxy on 127.0.0.1 to `target`, stopped (listener and every connection closed, so the
    target looks unreachable) and started again on the same port."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = support.free_port()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self.start()

    def start(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            self._close(listener)
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            self._close(sock)

    @staticmethod
    def _close(sock: socket.socket) -> None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def pg_servers(tmp_path):
    """Servers on PostgreSQL whatever the backend parameter (readiness is about a database that
    can become unreachable, which a SQLite file beside the server cannot)."""
    factory = ServerFactory("postgres", tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


def test_readyz_fails_while_postgresql_is_unreachable(pg_servers):
    parsed = urllib.parse.urlsplit(support.PG_URL)
    proxy = TcpProxy((parsed.hostname or "127.0.0.1", parsed.port or 5432))
    try:
        direct = urllib.parse.urlsplit(pg_servers.new_database_url())
        netloc = direct.netloc.rsplit("@", 1)
        credentials = netloc[0] + "@" if len(netloc) == 2 else ""
        through_proxy = direct._replace(netloc=f"{credentials}127.0.0.1:{proxy.port}").geturl()
        srv = pg_servers.start(database_url=through_proxy)
        assert srv.get("/readyz").status_code == 200

        proxy.stop()
        down = wait_for(lambda: srv.get("/readyz"), lambda res: res.status_code == 503, 15, 0.2)
        assert down.status_code == 503, f"HTTP {down.status_code}: {down.text}"
        assert down.headers.get("retry-after") == "1", down.headers
        assert "database" in down.text, down.text
        # Alive all the same: the process serves, it only cannot reach its database.
        assert srv.get("/livez").status_code == 200
        assert srv.get("/healthz").status_code == 200

        proxy.start()
        up = wait_for(lambda: srv.get("/readyz"), lambda res: res.status_code == 200, 20, 0.2)
        assert up.status_code == 200, f"HTTP {up.status_code}: {up.text}"
        assert up.text == "ok"
        # And it serves again: a token (the store is read for the client).
        res = support.post_token(srv, support.client_credentials(srv))
        assert res.status_code == 200, res.text
        health = scrape_server(srv)
        assert health.value("openmi_http_requests_total", family="health", status="503") >= 1, health.text
    finally:
        # The server first, then the proxy: it stops cleanly either way.
        for started in pg_servers.servers:
            if started.is_running():
                pg_servers.stop(started)
        proxy.stop()
