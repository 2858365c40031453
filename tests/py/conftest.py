"""Fixtures for the real-client tests: an openmi server per storage backend (SQLite and PostgreSQL),
a factory for tests that need servers of their own, and the server log printed with every failure.

Environment: OPENMI_BIN (default target/debug/openmi), OPENMI_TEST_PG_URL (default
postgres://postgres@127.0.0.1:5432/test). ./scripts/test sets both.
"""

from __future__ import annotations

from pathlib import Path

import msal.authority
import pytest

import support

# MSAL runs user-realm discovery before a username/password (ROPC) request, at
# https://{hostname}/common/userrealm/{user}, built from the authority's host name WITHOUT its port
# (msal/authority.py: Authority.user_realm_discovery uses self.instance = hostname). For a server on
# https://127.0.0.1:<port> that request goes to port 443, where nothing of ours listens, and MSAL
# raises ConnectionError. MSAL itself records hosts that answered 404 in this class-level set and then
# skips the lookup; we seed it, which is exactly the state after a 404. test_users.py checks the
# server's own answer on /common/userrealm separately.
msal.authority.Authority._domains_without_user_realm_discovery.add("127.0.0.1")

BACKENDS = ["sqlite", "postgres"]


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request) -> str:
    """The storage backend a test runs against; every server-using test runs once per backend."""
    return request.param


@pytest.fixture(scope="session")
def server(backend, tmp_path_factory):
    """One openmi server per backend, shared by the session's read-mostly tests."""
    schema = support.PgSchema() if backend == "postgres" else None
    try:
        data_dir = tmp_path_factory.mktemp(f"openmi-{backend}")
        srv = support.start_server(data_dir, database_url=schema.url if schema else None)
        try:
            yield srv
        finally:
            code = srv.stop()
        assert code == 0, f"openmi server exited with {code} after SIGTERM; log tail:\n{srv.log_tail()}"
    finally:
        if schema:
            schema.drop()


class ServerFactory:
    """Starts servers for one test (own data dirs, ports and PostgreSQL schemas) and stops them after."""

    def __init__(self, backend: str, base_dir: Path) -> None:
        self.backend = backend
        self.base_dir = base_dir
        self.servers: list[support.Server] = []
        self.schemas: list[support.PgSchema] = []
        self._n_dirs = 0

    def new_database_url(self) -> str | None:
        """A fresh schema's URL on PostgreSQL; None on SQLite (the data dir holds the database)."""
        if self.backend != "postgres":
            return None
        schema = support.PgSchema()
        self.schemas.append(schema)
        return schema.url

    def new_data_dir(self) -> Path:
        self._n_dirs += 1
        path = self.base_dir / f"data{self._n_dirs}"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def start(
        self, data_dir: Path | None = None, database_url: str | None = "new", extra_args=(), port: int | None = None,
        log_dir: Path | None = None,
    ) -> support.Server:
        """A server on a new data dir (or `data_dir`), a new schema (or `database_url`), a free port (or `port`),
        logging into its data dir (or `log_dir`)."""
        if database_url == "new":
            database_url = self.new_database_url()
        srv = support.start_server(
            data_dir or self.new_data_dir(), database_url=database_url, extra_args=extra_args, port=port, log_dir=log_dir
        )
        self.servers.append(srv)
        return srv

    def stop(self, srv: support.Server) -> int:
        code = srv.stop()
        assert code == 0, f"openmi server exited with {code} after SIGTERM; log tail:\n{srv.log_tail()}"
        return code

    def cleanup(self) -> None:
        errors = []
        for srv in self.servers:
            if srv.is_running():
                try:
                    self.stop(srv)
                except AssertionError as err:
                    errors.append(str(err))
        for schema in self.schemas:
            try:
                schema.drop()
            except RuntimeError as err:
                errors.append(str(err))
        assert not errors, "\n".join(errors)


@pytest.fixture
def server_factory(backend, tmp_path):
    factory = ServerFactory(backend, tmp_path)
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture(autouse=True)
def _server_ca_env(request, monkeypatch):
    """Clients (azure-identity, msal via requests) trust the shared server's CA for this test."""
    if "server" in request.fixturenames:
        srv = request.getfixturevalue("server")
        support.use_ca(monkeypatch, srv.ca_cert_path)


def _servers_of(item) -> list[support.Server]:
    found: list[support.Server] = []
    for value in getattr(item, "funcargs", {}).values():
        if isinstance(value, support.Server):
            found.append(value)
        elif isinstance(value, ServerFactory):
            found.extend(value.servers)
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On any failure, attach the tail of the log of each server the test used."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        seen = set()
        for srv in _servers_of(item):
            if srv.log_path in seen:
                continue
            seen.add(srv.log_path)
            report.sections.append((f"openmi server log tail ({srv.log_path})", srv.log_tail()))


def pytest_sessionfinish(session, exitstatus):
    support.kill_leftovers()


@pytest.fixture
def arm(server):
    """The real azure-mgmt-* clients (resource, msi, compute, subscriptions) on the backend's server."""
    return support.arm_clients(server)


@pytest.fixture
def rg(arm):
    """A fresh resource group on the shared server, deleted after the test (if the test left it)."""
    name = support.unique_name("pyrg")
    arm.create_group(name)
    yield name
    try:
        if arm.resource.resource_groups.check_existence(name):
            arm.resource.resource_groups.begin_delete(name).result()
    except Exception:  # noqa: BLE001 - cleanup must not mask the test's own result
        pass


@pytest.fixture
def rbac(server, arm):
    """Issue 5: new service principals with clients acting as them, and grants by the bootstrap SP."""
    kit = support.RbacKit(server, arm)
    try:
        yield kit
    finally:
        kit.cleanup()


# --------------------------------------------------------------------------------------------------
# The agent (issue 6)

# Throttling raised far above what a test sends, for agents whose test is not about throttling
# (the default is Azure's 20 requests/s and 5 concurrent, which a polling loop can come close to).
RELAXED_LIMITS = ("--rate-limit", "1000", "--max-concurrent", "64")


class AgentFactory:
    """Agents for one test: join tokens made through the CLI (logged in as the bootstrap SP of the
    server at hand), one state dir and log per agent; every agent is stopped after the test."""

    def __init__(self, base_dir: Path) -> None:
        self.base_dir = Path(base_dir)
        self.agents: list[support.Agent] = []
        self.extra_logs: list[tuple[str, Path]] = []
        self._cli_dirs: dict[str, Path] = {}
        self._n = 0

    def _next(self, stem: str) -> Path:
        self._n += 1
        return self.base_dir / f"{stem}{self._n}"

    def cli_dir(self, server: support.Server) -> Path:
        """A CLI config dir logged in to `server` as its bootstrap service principal."""
        if server.url not in self._cli_dirs:
            path = self._next("cli")
            support.cli_login_sp(server, path)
            self._cli_dirs[server.url] = path
        return self._cli_dirs[server.url]

    def join_token(self, server: support.Server, rg: str, vm: str, expires_in: int | None = None) -> str:
        out = support.join_token_cli(self.cli_dir(server), rg, vm, expires_in)
        try:
            return out.json()["joinToken"]
        except (ValueError, KeyError, TypeError):
            raise AssertionError(f"`vm join-token` did not print {{joinToken, ...}}: {out.describe()}") from None

    def new_state_dir(self) -> Path:
        return self._next("agent-state")

    def start(
        self, server: support.Server, rg: str | None = None, vm: str | None = None, join_token: str | None = None,
        state_dir: Path | None = None, listen=("127.0.0.1:0",), extra_args=RELAXED_LIMITS, netns: str | None = None,
    ) -> support.Agent:
        """An agent for VM `rg`/`vm` (a new join token) or with `join_token`, or restarted on `state_dir`
        (in network namespace `netns` if given; then `join_token` must be given)."""
        if join_token is None and rg is not None:
            join_token = self.join_token(server, rg, vm)
        state_dir = state_dir or self.new_state_dir()
        log_path = self._next("agent-log").with_suffix(".log")
        try:
            agent = support.start_agent(
                server.url, server.ca_cert_path, state_dir, log_path, join_token=join_token, listen=listen,
                extra_args=extra_args, netns=netns,
            )
        except support.AgentStartError:
            self.extra_logs.append(("agent that did not start", log_path))
            raise
        self.agents.append(agent)
        return agent

    def expect_exit(self, server: support.Server, join_token: str | None, state_dir: Path | None = None) -> tuple[int, str]:
        log_path = self._next("agent-log").with_suffix(".log")
        self.extra_logs.append(("refused agent", log_path))
        return support.run_agent_expecting_exit(
            server.url, server.ca_cert_path, state_dir or self.new_state_dir(), log_path, join_token
        )

    def stop(self, agent: support.Agent) -> int | None:
        return agent.stop()

    def cleanup(self) -> None:
        for agent in self.agents:
            agent.stop()


@pytest.fixture
def agents(tmp_path):
    factory = AgentFactory(tmp_path / "agents")
    factory.base_dir.mkdir(parents=True, exist_ok=True)
    try:
        yield factory
    finally:
        factory.cleanup()


class _AgentLogsPlugin:
    """On any failure, attach the log tail of each agent (and extra process) the test started."""

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item, call):
        outcome = yield
        report = outcome.get_result()
        if not report.failed:
            return
        factory = getattr(item, "funcargs", {}).get("agents")
        if not isinstance(factory, AgentFactory):
            return
        for agent in factory.agents:
            report.sections.append((f"openmi agent log tail ({agent.log_path})", agent.log_tail()))
        for name, path in factory.extra_logs:
            report.sections.append((f"{name} log tail ({path})", support.tail(path)))


def pytest_configure(config):
    config.pluginmanager.register(_AgentLogsPlugin(), "openmi-agent-logs")


@pytest.fixture
def workload():
    """The identity workload run inside `openmi vm run` (tests/py/workloads/identity.py)."""
    return support.WORKLOADS / "identity.py"


@pytest.fixture
def cli(server, tmp_path):
    """The `openmi` CLI logged in as the bootstrap service principal."""
    support.cli_login_sp(server, tmp_path / "cli")
    return support.Cli(tmp_path / "cli")
