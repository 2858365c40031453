"""Issue 6: code with no configuration at all. In a network namespace made by the test, with
169.254.169.254 on its loopback interface, the agent listens on 169.254.169.254:80 and unmodified
azure-identity - `ManagedIdentityCredential()` and `DefaultAzureCredential()` with no environment
variables (only PATH, HOME and the CA bundle for the https ARM calls) - gets the token, and
azure-mgmt-resource reads the group (seed 002 again, "inside the VM").

The server runs inside the namespace as well, on its 127.0.0.1, so the agent can reach it without
routing between namespaces. That makes this test SQLite-only: the PostgreSQL server of the test
setup listens in the host's namespace and is unreachable from inside. The admin's calls go through
the `openmi` CLI run in the namespace for the same reason.

Needs root (CAP_SYS_ADMIN) for `ip netns add`; skipped with the reason where that is refused.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import support
from support import ARM

NS_PORT = 8443  # the namespace is empty: any port is free in it

WORKLOAD = r'''
import json, os, sys

spec = json.loads(sys.argv[1])
from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

scope = "https://management.azure.com/.default"
out = {"env": sorted(os.environ)}


def attempt(name, make):
    try:
        cred = make()
        out[name] = {"token": cred.get_token(scope).token}
        return cred
    except Exception as err:
        out[name] = {"error": f"{type(err).__name__}: {err}"}
        return None


attempt("no_args", ManagedIdentityCredential)
attempt("default", DefaultAzureCredential)
cred = attempt("by_client_id", lambda: ManagedIdentityCredential(client_id=spec["client_id"]))
if cred is not None:
    from azure.mgmt.resource.resources import ResourceManagementClient

    client = ResourceManagementClient(cred, spec["subscription"], base_url=spec["base_url"], credential_scopes=[scope])
    try:
        group = client.resource_groups.get(spec["group"])
        out["group"] = {"id": group.id, "name": group.name, "location": group.location,
                        "provisioning_state": group.properties.provisioning_state}
    except Exception as err:
        out["group_error"] = f"{type(err).__name__}: {err}"
print(json.dumps(out))
'''


@pytest.fixture
def netns():
    """A fresh network namespace with lo up and 169.254.169.254/32 on it; deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2): cannot create a network namespace")
    name = f"openmi-{secrets.token_hex(4)}"
    res = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(
            f"cannot create a network namespace here (`ip netns add` exited {res.returncode}:"
            f" {res.stderr.strip()}); this test needs root / CAP_SYS_ADMIN"
        )
    try:
        for cmd in (["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]):
            res = subprocess.run(["ip", "netns", "exec", name, *cmd], capture_output=True, text=True)
            assert res.returncode == 0, f"{' '.join(cmd)} in {name}: {res.stderr}"
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def in_ns(ns: str, cmd: list[str], env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, env=env,
                          timeout=timeout, stdin=subprocess.DEVNULL)


class NsServer:
    """`openmi server` inside the namespace (`ip netns exec` execs it: proc is the server itself)."""

    def __init__(self, ns: str, data_dir: Path) -> None:
        self.ns = ns
        self.data_dir = data_dir
        self.url = f"https://127.0.0.1:{NS_PORT}"
        self.log_path = data_dir / "server.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                ["ip", "netns", "exec", ns, support.OPENMI_BIN, "server", "--data-dir", str(data_dir),
                 "--listen", f"127.0.0.1:{NS_PORT}"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        self.boot: dict = {}

    def wait_healthy(self, timeout: float = support.START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        last = "no bootstrap.json yet"
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited with {self.proc.returncode}:\n{support.tail(self.log_path)}"
            try:
                self.boot = support.read_bootstrap(self.data_dir)
                ca = self.ca_cert_path
                res = in_ns(self.ns, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", ca,
                                      f"{self.url}/healthz"], timeout=10)
                if res.stdout.strip() == "200":
                    return
                last = f"healthz: {res.stdout} {res.stderr}"
            except (OSError, ValueError, KeyError) as err:
                last = f"{type(err).__name__}: {err}"
            time.sleep(0.2)
        raise AssertionError(f"server in {self.ns} not healthy within {timeout}s ({last}):\n{support.tail(self.log_path)}")

    @property
    def ca_cert_path(self) -> str:
        ca = support.bootstrap_value(self.boot, "ca_cert_path")
        return ca if os.path.isabs(ca) else str(self.data_dir / ca)

    def value(self, name: str) -> str:
        return support.bootstrap_value(self.boot, name)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=support.STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def test_no_configuration_at_all_on_the_link_local_address(netns, agents, tmp_path):
    if shutil.which("curl") is None:
        pytest.skip("no curl to check the namespaced server's health")
    server = NsServer(netns, tmp_path / "ns-server")
    agents.extra_logs.append((f"openmi server in {netns}", server.log_path))
    try:
        server.wait_healthy()
        sub = server.value("subscription_id")
        config = tmp_path / "ns-cli"
        cli_env = dict(os.environ, OPENMI_CONFIG_DIR=str(config))

        def cli(*args: str) -> dict | None:
            res = in_ns(netns, [support.OPENMI_BIN, *args], env=cli_env)
            assert res.returncode == 0, f"openmi {' '.join(args)} -> {res.returncode}\n{res.stdout}\n{res.stderr}"
            return json.loads(res.stdout) if res.stdout.strip() else None

        # The admin, with the CLI inside the namespace: seed 002's steps.
        cli("login", "--server", server.url, "--service-principal", "--username", server.value("client_id"),
            "--password", server.value("client_secret"), "--tenant", server.value("tenant_id"),
            "--ca-cert", server.ca_cert_path)
        rg = support.unique_name("nsrg")
        cli("group", "create", "-n", rg, "-l", "westus")
        identity = cli("identity", "create", "-g", rg, "-n", "ID1")
        cli("vm", "create", "-g", rg, "-n", "myVM", "--assign-identity", "ID1")
        rg_id = f"/subscriptions/{sub}/resourceGroups/{rg}"
        cli("role", "assignment", "create", "--assignee-object-id", identity["principalId"],
            "--assignee-principal-type", "ServicePrincipal", "--role", "Reader", "--scope", rg_id)
        join_token = cli("vm", "join-token", "-g", rg, "-n", "myVM")["joinToken"]

        # The agent on the address every SDK knows.
        ns_server = support.Server(
            url=server.url, tenant_id=server.value("tenant_id"), subscription_id=sub,
            admin_username="", admin_password="", client_id=server.value("client_id"),
            client_secret=server.value("client_secret"), ca_cert_path=server.ca_cert_path,
            data_dir=server.data_dir, port=NS_PORT, proc=server.proc, log_path=server.log_path,
        )
        agent = agents.start(ns_server, join_token=join_token, listen=("169.254.169.254:80",), netns=netns)
        assert "169.254.169.254" in agent.url, agent.url

        # The workload: no AZURE_* or IDENTITY_* variables at all.
        script = tmp_path / "workload.py"
        script.write_text(WORKLOAD)
        home = tmp_path / "home"
        home.mkdir()
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "REQUESTS_CA_BUNDLE": server.ca_cert_path}
        spec = {"client_id": identity["clientId"], "group": rg, "subscription": sub, "base_url": server.url}
        res = in_ns(netns, [sys.executable, str(script), json.dumps(spec)], env=env, timeout=120)
        assert res.returncode == 0, f"workload -> {res.returncode}\n{res.stdout}\n{res.stderr}"
        out = json.loads(res.stdout.strip().splitlines()[-1])
        assert not [k for k in out["env"] if k.startswith(("AZURE_", "IDENTITY_", "MSI_", "IMDS_"))], out["env"]

        for name in ("no_args", "default", "by_client_id"):
            assert "token" in out[name], f"{name}: {out[name]}"
            claims = support.unverified_claims(out[name]["token"])
            assert claims["oid"] == identity["principalId"], (name, claims)
            assert claims["appid"] == identity["clientId"], (name, claims)
            assert claims["xms_mirid"].lower() == identity["id"].lower(), (name, claims)
            assert claims["aud"] == ARM and claims["idtyp"] == "app", (name, claims)
            assert claims["iss"] == f"{server.url}/{server.value('tenant_id')}/", (name, claims)
        assert out.get("group") == {
            "id": rg_id, "name": rg, "location": "westus", "provisioning_state": "Succeeded",
        }, out
    finally:
        for agent in agents.agents:
            agent.stop()
        server.stop()
