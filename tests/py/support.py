"""Helpers shared by the tests in tests/py: starting the real openmi server, talking raw OAuth to it,
verifying its tokens with PyJWT, running the openmi CLI, and making test certificates.

Nothing here imitates a client: the tests drive azure-identity, msal, PyJWT and requests themselves.
"""

from __future__ import annotations

import atexit
import base64
import datetime
import hashlib
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
OPENMI_BIN = os.environ.get("OPENMI_BIN") or str(REPO_ROOT / "target" / "debug" / "openmi")
PG_URL = os.environ.get("OPENMI_TEST_PG_URL") or "postgres://postgres@127.0.0.1:5432/test"

ARM = "https://management.azure.com"
ARM_SCOPE = ARM + "/.default"
AZ_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46"

GUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$", re.I)
HTTP_TIMEOUT = 30
START_TIMEOUT = 60
STOP_TIMEOUT = 10

# The keys of bootstrap.json that each field of `Server` is read from.
BOOTSTRAP_KEYS = {
    "url": "url",
    "tenant_id": "tenantId",
    "subscription_id": "subscriptionId",
    "admin_username": "adminUsername",
    "admin_password": "adminPassword",
    "client_id": "clientId",
    "client_secret": "clientSecret",
    "ca_cert_path": "caCertPath",
}


# --------------------------------------------------------------------------------------------------
# processes and ports


def free_port() -> int:
    """A TCP port that was free a moment ago on 127.0.0.1 (the server binds it itself)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tail(path: Path | str, n_lines: int = 80) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError as err:
        return f"<no log: {err}>"
    return "\n".join(text.splitlines()[-n_lines:])


# --------------------------------------------------------------------------------------------------
# PostgreSQL schemas


def psql(sql: str) -> None:
    res = subprocess.run(
        ["psql", PG_URL, "-v", "ON_ERROR_STOP=1", "-q", "-X", "-c", sql],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if res.returncode != 0:
        raise RuntimeError(f"psql failed ({res.returncode}) on {sql!r}: {res.stderr.strip()}")


def pg_url_for_schema(schema: str) -> str:
    sep = "&" if "?" in PG_URL else "?"
    return f"{PG_URL}{sep}options=-csearch_path%3D{schema}"


class PgSchema:
    """A fresh schema `openmi_py_<hex>` in the test database; `url` points the server at it."""

    def __init__(self) -> None:
        self.name = "openmi_py_" + secrets.token_hex(6)
        psql(f'CREATE SCHEMA "{self.name}"')
        self.url = pg_url_for_schema(self.name)

    def drop(self) -> None:
        psql(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE')


# --------------------------------------------------------------------------------------------------
# the server


class ServerStartError(RuntimeError):
    pass


@dataclass
class Server:
    url: str
    tenant_id: str
    subscription_id: str
    admin_username: str
    admin_password: str
    client_id: str
    client_secret: str
    ca_cert_path: str
    data_dir: Path
    port: int
    proc: subprocess.Popen
    log_path: Path
    database_url: str | None = None
    bootstrap: dict = field(default_factory=dict)
    extra_args: tuple = ()

    def log_tail(self, n_lines: int = 80) -> str:
        return tail(self.log_path, n_lines)

    def ssl_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_cert_path)

    def db_args(self) -> list[str]:
        return ["--database-url", self.database_url] if self.database_url else []

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("verify", self.ca_cert_path)
        return requests.get(self.url + path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("verify", self.ca_cert_path)
        return requests.post(self.url + path, **kwargs)

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = STOP_TIMEOUT) -> int:
        """SIGTERM, then wait for a graceful exit. Raises AssertionError if it does not exit in time."""
        _LIVE.discard(self)
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            raise AssertionError(
                f"openmi server (pid {self.proc.pid}) did not exit within {timeout}s of SIGTERM;"
                f" log tail:\n{self.log_tail()}"
            )

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


# Servers and agents started and not yet stopped, so that a crashed session never leaves one behind.
_LIVE: set = set()


def kill_leftovers() -> None:
    for started in list(_LIVE):
        _LIVE.discard(started)
        if started.proc.poll() is None:
            started.proc.kill()
            started.proc.wait(timeout=10)


atexit.register(kill_leftovers)


def server_command(data_dir: Path, port: int, database_url: str | None, extra_args: tuple | list, host: str = "127.0.0.1") -> list[str]:
    cmd = [OPENMI_BIN, "server", "--data-dir", str(data_dir), "--listen", f"{host}:{port}"]
    if database_url:
        cmd += ["--database-url", database_url]
    return cmd + list(extra_args)


def read_bootstrap(data_dir: Path) -> dict:
    return json.loads((Path(data_dir) / "bootstrap.json").read_text())


def bootstrap_value(bootstrap: dict, name: str) -> str:
    key = BOOTSTRAP_KEYS[name]
    if key not in bootstrap:
        raise KeyError(f"bootstrap.json has no {key!r} (keys: {sorted(bootstrap)})")
    return bootstrap[key]


def start_server(
    data_dir: Path,
    database_url: str | None = None,
    extra_args: tuple | list = (),
    port: int | None = None,
    timeout: float = START_TIMEOUT,
    host: str = "127.0.0.1",
    log_dir: Path | None = None,
) -> Server:
    """Start `openmi server` (on `host`, a loopback address) and wait until /healthz answers 200
    over TLS verified with its CA. Its log goes to `log_dir` (default: the data dir)."""
    if not os.access(OPENMI_BIN, os.X_OK):
        raise ServerStartError(f"OPENMI_BIN {OPENMI_BIN} is not an executable: run `cargo build --bins` first")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    attempts = 1 if port is not None else 3
    last_error: Exception | None = None
    for attempt in range(attempts):
        chosen_port = port if port is not None else free_port()
        log_path = Path(log_dir or data_dir) / f"server-{chosen_port}.log"
        try:
            return _start_once(data_dir, chosen_port, database_url, extra_args, log_path, timeout, host)
        except ServerStartError as err:
            last_error = err
            # Someone else may have taken the port between free_port() and the bind: try another one.
            if "in use" not in str(err).lower():
                raise
    raise last_error  # type: ignore[misc]


def _start_once(data_dir, port, database_url, extra_args, log_path, timeout, host="127.0.0.1") -> Server:
    log_file = open(log_path, "ab")
    try:
        proc = subprocess.Popen(
            server_command(data_dir, port, database_url, extra_args, host),
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        log_file.close()
    url = f"https://{host}:{port}"
    deadline = time.monotonic() + timeout
    last = "no bootstrap.json yet"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartError(
                f"openmi server exited with {proc.returncode} before becoming healthy;"
                f" log tail:\n{tail(log_path)}"
            )
        try:
            boot = read_bootstrap(data_dir)
            ca = bootstrap_value(boot, "ca_cert_path")
            if not os.path.isabs(ca):
                ca = str(data_dir / ca)
            res = requests.get(url + "/healthz", verify=ca, timeout=5)
            if res.status_code == 200:
                server = Server(
                    url=url,
                    tenant_id=bootstrap_value(boot, "tenant_id"),
                    subscription_id=bootstrap_value(boot, "subscription_id"),
                    admin_username=bootstrap_value(boot, "admin_username"),
                    admin_password=bootstrap_value(boot, "admin_password"),
                    client_id=bootstrap_value(boot, "client_id"),
                    client_secret=bootstrap_value(boot, "client_secret"),
                    ca_cert_path=ca,
                    data_dir=data_dir,
                    port=port,
                    proc=proc,
                    log_path=log_path,
                    database_url=database_url,
                    bootstrap=boot,
                    extra_args=tuple(extra_args),
                )
                _LIVE.add(server)
                return server
            last = f"/healthz answered {res.status_code}: {res.text[:200]}"
        except (OSError, ValueError, KeyError, requests.RequestException) as err:
            last = f"{type(err).__name__}: {err}"
        time.sleep(0.2)
    proc.kill()
    proc.wait(timeout=10)
    raise ServerStartError(
        f"openmi server not healthy within {timeout}s ({last}); log tail:\n{tail(log_path)}"
    )


def use_ca(monkeypatch, ca_path: str) -> None:
    """Point requests (azure-core, msal) and OpenSSL defaults at the server's CA for this test."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_path)
    monkeypatch.setenv("SSL_CERT_FILE", ca_path)


# --------------------------------------------------------------------------------------------------
# OAuth helpers


def token_url(server: Server, version: int = 2, tenant: str | None = None) -> str:
    tenant = tenant or server.tenant_id
    return f"{server.url}/{tenant}/oauth2/v2.0/token" if version == 2 else f"{server.url}/{tenant}/oauth2/token"


def post_token(server: Server, data: dict, version: int = 2, tenant: str | None = None, **kwargs) -> requests.Response:
    kwargs.setdefault("timeout", HTTP_TIMEOUT)
    kwargs.setdefault("verify", server.ca_cert_path)
    return requests.post(token_url(server, version, tenant), data=data, **kwargs)


def client_credentials(server: Server, scope: str = ARM_SCOPE, **extra) -> dict:
    data = {
        "grant_type": "client_credentials",
        "client_id": server.client_id,
        "client_secret": server.client_secret,
        "scope": scope,
    }
    data.update(extra)
    return {k: v for k, v in data.items() if v is not None}


def assert_aad_error(res: requests.Response, status: int, error: str, code: int) -> dict:
    """An Entra-shaped OAuth error: status, `error`, AADSTS-prefixed description, codes, ids, time."""
    detail = f"HTTP {res.status_code} {res.headers.get('content-type')}: {res.text[:600]}"
    assert res.status_code == status, detail
    assert res.headers.get("content-type", "").startswith("application/json"), detail
    body = res.json()
    assert body.get("error") == error, detail
    desc = body.get("error_description")
    assert isinstance(desc, str) and desc.startswith(f"AADSTS{code}:"), detail
    assert body.get("error_codes") == [code], detail
    assert isinstance(body.get("timestamp"), str) and body["timestamp"], detail
    assert GUID_RE.match(str(body.get("trace_id", ""))), detail
    assert GUID_RE.match(str(body.get("correlation_id", ""))), detail
    return body


# --------------------------------------------------------------------------------------------------
# verifying tokens


def discovery(server: Server, tenant: str | None = None, version: int = 2) -> dict:
    tenant = tenant or server.tenant_id
    path = f"/{tenant}/v2.0/.well-known/openid-configuration" if version == 2 else f"/{tenant}/.well-known/openid-configuration"
    res = server.get(path)
    assert res.status_code == 200, f"{path}: HTTP {res.status_code}: {res.text[:300]}"
    return res.json()


def jwks_client(server: Server) -> jwt.PyJWKClient:
    """A PyJWKClient on the jwks_uri that the v2 discovery document names (fetched fresh)."""
    jwks_uri = discovery(server)["jwks_uri"]
    return jwt.PyJWKClient(jwks_uri, cache_jwk_set=False, ssl_context=server.ssl_context())


def verify_token(server: Server, token: str, audience: str, issuer: str | None = None, jwks_from: Server | None = None) -> dict:
    """Verify signature (JWKS from discovery), audience, issuer and times; return the claims."""
    signing_key = jwks_client(jwks_from or server).get_signing_key_from_jwt(token)
    return jwt.decode(
        token,
        signing_key.key,
        algorithms=["RS256"],
        audience=audience,
        issuer=issuer if issuer is not None else f"{server.url}/{server.tenant_id}/",
        options={"require": ["exp", "iat", "nbf", "aud", "iss"]},
        leeway=5,
    )


def header(token: str) -> dict:
    return jwt.get_unverified_header(token)


def unverified_claims(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def b64url_decode(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


# --------------------------------------------------------------------------------------------------
# the CLI


@dataclass
class CliResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)

    def describe(self) -> str:
        return f"`openmi {' '.join(self.args)}` -> {self.returncode}\nstdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"


def run_cli(args: list[str], config_dir: Path | str, check: bool = True, timeout: float = 60, env: dict | None = None) -> CliResult:
    full_env = dict(os.environ)
    full_env["OPENMI_CONFIG_DIR"] = str(config_dir)
    full_env.update(env or {})
    res = subprocess.run(
        [OPENMI_BIN, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=full_env,
        stdin=subprocess.DEVNULL,
    )
    out = CliResult([*args], res.returncode, res.stdout, res.stderr)
    if check:
        assert res.returncode == 0, out.describe()
    return out


class Cli:
    """The `openmi` CLI with one config directory (one login), as a shell runs it."""

    def __init__(self, config_dir: Path | str):
        self.config_dir = config_dir

    def __call__(self, *args: str, check: bool = True) -> CliResult:
        return run_cli([*args], self.config_dir, check=check)

    def json(self, *args: str):
        out = self(*args)
        try:
            return out.json()
        except ValueError as err:
            raise AssertionError(f"not JSON ({err}): {out.describe()}") from None

    def fails(self, *args: str, code: str | None = None) -> CliResult:
        out = self(*args, check=False)
        assert out.returncode != 0, out.describe()
        if code:
            assert code in out.stderr, out.describe()
        return out


def cli_login_sp(server: Server, config_dir: Path) -> CliResult:
    return run_cli(
        [
            "login",
            "--server", server.url,
            "--service-principal",
            "--username", server.client_id,
            "--password", server.client_secret,
            "--tenant", server.tenant_id,
            "--ca-cert", server.ca_cert_path,
        ],
        config_dir,
    )


# --------------------------------------------------------------------------------------------------
# certificates


@dataclass
class CertFiles:
    key: Any
    cert: Any
    key_path: Path
    cert_path: Path
    combined_path: Path  # private key PEM followed by the certificate PEM

    @property
    def der(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def x5t(self) -> str:
        return b64url(hashlib.sha1(self.der).digest())

    @property
    def cert_pem(self) -> str:
        return self.cert_path.read_text()

    @property
    def key_pem(self) -> str:
        return self.key_path.read_text()


def make_cert(directory: Path, common_name: str = "openmi-test") -> CertFiles:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key_path = directory / f"{common_name}.key.pem"
    cert_path = directory / f"{common_name}.cert.pem"
    combined_path = directory / f"{common_name}.pem"
    key_path.write_bytes(key_pem)
    cert_path.write_bytes(cert_pem)
    combined_path.write_bytes(key_pem + cert_pem)
    return CertFiles(key, cert, key_path, cert_path, combined_path)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------------
# ARM (issue 4): the real management clients pointed at the server, and raw ARM requests

ARM_RG_API = "2025-04-01"  # azure-mgmt-resource 26 (ResourceManagementClient)
ARM_MSI_API = "2024-11-30"  # azure-mgmt-msi 7.1 default
ARM_COMPUTE_API = "2026-04-01"  # azure-mgmt-compute 39
ARM_SUBSCRIPTIONS_API = "2022-12-01"  # azure-mgmt-resource-subscriptions 1.0
# What a slow server would make an SDK poller wait (ARMPolling's default interval is 30 s); every
# write and delete must finish well inside this.
LRO_MAX_SECONDS = 5.0


def arm_credential(server: Server):
    """The bootstrap service principal (Owner of the subscription) through azure-identity."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        server.tenant_id,
        server.client_id,
        server.client_secret,
        authority=server.url,
        disable_instance_discovery=True,
    )


def mgmt_client_kwargs(server: Server) -> dict:
    return {"base_url": server.url, "credential_scopes": [ARM_SCOPE]}


@dataclass
class ArmClients:
    """The real mgmt clients (resource, msi, compute, subscriptions) on one server, plus raw access."""

    server: Server
    credential: Any
    resource: Any
    msi: Any
    compute: Any
    subscriptions: Any

    @property
    def sub(self) -> str:
        return self.server.subscription_id

    def token(self, scope: str = ARM_SCOPE) -> str:
        return self.credential.get_token(scope).token

    def raw(self, method: str, path: str, token: str | None = "default", **kwargs: Any) -> requests.Response:
        """A raw request to `server.url + path` with the bootstrap SP's ARM token (token=None: none)."""
        headers = dict(kwargs.pop("headers", None) or {})
        if token == "default":
            token = self.token()
        if token is not None:
            headers.setdefault("Authorization", f"Bearer {token}")
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        kwargs.setdefault("verify", self.server.ca_cert_path)
        return requests.request(method, self.server.url + path, headers=headers, **kwargs)

    def rg_id(self, rg: str) -> str:
        return f"/subscriptions/{self.sub}/resourceGroups/{rg}"

    def identity_id(self, rg: str, name: str) -> str:
        return f"{self.rg_id(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/{name}"

    def vm_id(self, rg: str, name: str) -> str:
        return f"{self.rg_id(rg)}/providers/Microsoft.Compute/virtualMachines/{name}"

    def create_group(self, rg: str | None = None, location: str = "westus", tags: dict | None = None):
        rg = rg or unique_name("pyrg")
        body: dict = {"location": location}
        if tags is not None:
            body["tags"] = tags
        return self.resource.resource_groups.create_or_update(rg, body)

    def create_identity(self, rg: str, name: str | None = None, location: str = "westus"):
        return self.msi.user_assigned_identities.create_or_update(rg, name or unique_name("pyid"), {"location": location})

    def vm_body(self, location: str = "westus", identity: dict | None = None, computer_name: str = "vm") -> dict:
        """A minimal VM as the SDK sends it (plain JSON in ARM's wire shape)."""
        body: dict = {
            "location": location,
            "properties": {
                "hardwareProfile": {"vmSize": "Standard_DS1_v2"},
                "storageProfile": {
                    "imageReference": {
                        "publisher": "MicrosoftWindowsServer",
                        "offer": "WindowsServer",
                        "sku": "2016-Datacenter",
                        "version": "latest",
                    }
                },
                "osProfile": {
                    "computerName": computer_name[:15],
                    "adminUsername": "azureuser",
                    "adminPassword": "myPassword12",
                },
                "networkProfile": {
                    "networkInterfaces": [
                        {
                            "id": f"/subscriptions/{self.sub}/resourceGroups/net/providers/"
                            "Microsoft.Network/networkInterfaces/nic-" + computer_name
                        }
                    ]
                },
            },
        }
        if identity is not None:
            body["identity"] = identity
        return body

    def create_vm(self, rg: str, name: str, identity: dict | None = None, location: str = "westus"):
        """begin_create_or_update(...).result(), asserting the server needed no polling."""
        return timed_result(
            self.compute.virtual_machines.begin_create_or_update(
                rg, name, self.vm_body(location, identity, computer_name=name)
            )
        )

    def delete_group(self, rg: str) -> None:
        timed_result(self.resource.resource_groups.begin_delete(rg))


def timed_result(poller: Any, limit: float = LRO_MAX_SECONDS) -> Any:
    """poller.result(), failing if it takes `limit` seconds or more (i.e. if the SDK had to poll)."""
    started = time.monotonic()
    result = poller.result(timeout=limit + 30)
    took = time.monotonic() - started
    assert took < limit, f"LRO took {took:.1f}s: the server made the SDK poll (status {poller.status()})"
    return result


def arm_clients(server: Server) -> ArmClients:
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    credential = arm_credential(server)
    kwargs = mgmt_client_kwargs(server)
    sub = server.subscription_id
    return ArmClients(
        server=server,
        credential=credential,
        resource=ResourceManagementClient(credential, sub, **kwargs),
        msi=ManagedServiceIdentityClient(credential, sub, **kwargs),
        compute=ComputeManagementClient(credential, sub, **kwargs),
        subscriptions=SubscriptionClient(credential, **kwargs),
    )


def arm_error_code(err: Exception) -> str | None:
    """The ARM error code of an azure-core HttpResponseError (from the `{"error":{"code"}}` envelope)."""
    error = getattr(err, "error", None)
    code = getattr(error, "code", None)
    if code:
        return code
    response = getattr(err, "response", None)
    try:
        return response.json()["error"]["code"]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001 - the body may be anything when the server is wrong
        return None


def describe_http_error(err: Exception) -> str:
    response = getattr(err, "response", None)
    if response is None:
        return repr(err)
    try:
        text = response.text()
    except Exception:  # noqa: BLE001
        text = "<no body>"
    return f"{type(err).__name__}: HTTP {response.status_code} {response.request.method} {response.request.url}: {text[:600]}"


def assert_arm_error(res: requests.Response, status: int, code: str | tuple | set) -> dict:
    """ARM's error envelope `{"error":{"code","message"}}` with this status and code (or one of codes)."""
    detail = f"HTTP {res.status_code} {res.request.method} {res.url}: {res.text[:600]}"
    assert res.status_code == status, detail
    assert res.headers.get("content-type", "").startswith("application/json"), detail
    body = res.json()
    error = body.get("error")
    assert isinstance(error, dict), detail
    codes = {code} if isinstance(code, str) else set(code)
    assert error.get("code") in codes, detail
    assert isinstance(error.get("message"), str) and error["message"], detail
    return error


def graph_service_principals_by_app_id(clients: ArmClients, app_id: str) -> list:
    """The service principals Graph returns for `appId eq '<app_id>'` (empty when there is none)."""
    res = clients.raw(
        "GET",
        "/v1.0/servicePrincipals",
        token=clients.token("https://graph.microsoft.com/.default"),
        params={"$filter": f"appId eq '{app_id}'"},
    )
    assert res.status_code == 200, f"Graph servicePrincipals: HTTP {res.status_code}: {res.text[:300]}"
    return res.json()["value"]


# --------------------------------------------------------------------------------------------------
# RBAC (issue 5): service principals of their own, clients acting as them, built-in roles

ARM_AUTHORIZATION_API = "2022-04-01"  # azure-mgmt-authorization 4.0 default for roleAssignments and roleDefinitions
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

# Azure's built-in role definitions: the same GUIDs in every tenant.
ROLE_OWNER = "8e3af657-a8ff-443c-a75c-2fe8c4bcb635"
ROLE_CONTRIBUTOR = "b24988ac-6180-42a0-ab88-20f7382dd24c"
ROLE_READER = "acdd72a7-3385-48ef-bd42-f606fba81ae7"
ROLE_USER_ACCESS_ADMINISTRATOR = "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9"
ROLE_RBAC_ADMINISTRATOR = "f58310d9-a9f6-439a-9e8d-f62e7b41a168"
ROLE_VM_CONTRIBUTOR = "9980e02c-c2be-4d73-94e8-173b1dc7cf3c"
ROLE_MI_CONTRIBUTOR = "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59"
ROLE_MI_OPERATOR = "f1a07417-d97a-45cb-824c-7a7467783830"
BUILTIN_ROLES = {
    "Owner": ROLE_OWNER,
    "Contributor": ROLE_CONTRIBUTOR,
    "Reader": ROLE_READER,
    "User Access Administrator": ROLE_USER_ACCESS_ADMINISTRATOR,
    "Role Based Access Control Administrator": ROLE_RBAC_ADMINISTRATOR,
    "Virtual Machine Contributor": ROLE_VM_CONTRIBUTOR,
    "Managed Identity Contributor": ROLE_MI_CONTRIBUTOR,
    "Managed Identity Operator": ROLE_MI_OPERATOR,
}


def role_definition_id(subscription_id: str, role_guid: str) -> str:
    """The subscription-scoped id of a role definition, as role assignments reference it."""
    return f"/subscriptions/{subscription_id}/providers/Microsoft.Authorization/roleDefinitions/{role_guid}"


def role_assignment_id(scope: str, name: str) -> str:
    return f"{scope.rstrip('/')}/providers/Microsoft.Authorization/roleAssignments/{name}"


def secret_credential(server: Server, app_id: str, secret: str, authority_server: Server | None = None):
    """azure-identity's ClientSecretCredential for an application of the server's tenant."""
    from azure.identity import ClientSecretCredential

    return ClientSecretCredential(
        server.tenant_id,
        app_id,
        secret,
        authority=(authority_server or server).url,
        disable_instance_discovery=True,
    )


@dataclass
class ServicePrincipal:
    """A service principal of its own: app id, secret, object id (its tokens' `oid`) and a credential."""

    app_id: str
    secret: str
    object_id: str
    display_name: str
    credential: Any

    def __iter__(self):
        # (appId, secret, objectId), as the tests unpack it
        return iter((self.app_id, self.secret, self.object_id))


def graph_request(server: Server, credential: Any, method: str, path: str, **kwargs: Any) -> requests.Response:
    token = credential.get_token(GRAPH_SCOPE).token
    headers = dict(kwargs.pop("headers", None) or {})
    headers.setdefault("Authorization", f"Bearer {token}")
    kwargs.setdefault("timeout", HTTP_TIMEOUT)
    kwargs.setdefault("verify", server.ca_cert_path)
    return requests.request(method, server.url + path, headers=headers, **kwargs)


def create_service_principal(server: Server, name: str | None = None, admin_credential: Any = None) -> ServicePrincipal:
    """A new application + service principal + client secret, made by the bootstrap SP through the
    Graph-shaped API (`POST /v1.0/applications`, `POST /v1.0/servicePrincipals`, `addPassword`)."""
    admin_credential = admin_credential or arm_credential(server)
    name = name or unique_name("py-rbac-sp")
    res = graph_request(server, admin_credential, "POST", "/v1.0/applications", json={"displayName": name})
    assert res.status_code in (200, 201), f"POST /v1.0/applications: HTTP {res.status_code}: {res.text[:400]}"
    app = res.json()
    res = graph_request(server, admin_credential, "POST", "/v1.0/servicePrincipals", json={"appId": app["appId"]})
    assert res.status_code in (200, 201), f"POST /v1.0/servicePrincipals: HTTP {res.status_code}: {res.text[:400]}"
    sp = res.json()
    res = graph_request(
        server, admin_credential, "POST", f"/v1.0/applications/{app['id']}/addPassword",
        json={"passwordCredential": {"displayName": "pytest"}},
    )
    assert res.status_code in (200, 201), f"addPassword: HTTP {res.status_code}: {res.text[:400]}"
    secret = res.json()["secretText"]
    assert GUID_RE.match(sp["id"]) and sp["id"] != app["id"], (app, sp)
    return ServicePrincipal(app["appId"], secret, sp["id"], name, secret_credential(server, app["appId"], secret))


@dataclass
class RbacClients(ArmClients):
    """ArmClients acting as one principal, plus azure-mgmt-authorization's client."""

    authorization: Any = None
    object_id: str | None = None


def authorization_client(server: Server, credential: Any):
    from azure.mgmt.authorization import AuthorizationManagementClient

    return AuthorizationManagementClient(credential, server.subscription_id, **mgmt_client_kwargs(server))


def clients_as(server: Server, credential: Any, object_id: str | None = None) -> RbacClients:
    """The real mgmt clients (resource, msi, compute, subscriptions, authorization) as `credential`."""
    from azure.mgmt.compute import ComputeManagementClient
    from azure.mgmt.msi import ManagedServiceIdentityClient
    from azure.mgmt.resource.resources import ResourceManagementClient
    from azure.mgmt.resource.subscriptions import SubscriptionClient

    kwargs = mgmt_client_kwargs(server)
    sub = server.subscription_id
    clients = RbacClients(
        server=server,
        credential=credential,
        resource=ResourceManagementClient(credential, sub, **kwargs),
        msi=ManagedServiceIdentityClient(credential, sub, **kwargs),
        compute=ComputeManagementClient(credential, sub, **kwargs),
        subscriptions=SubscriptionClient(credential, **kwargs),
        authorization=authorization_client(server, credential),
        object_id=object_id,
    )
    if clients.object_id is None:
        clients.object_id = unverified_claims(clients.token())["oid"]
    return clients


def arm_error_body(err: Exception) -> dict:
    """The `error` object of an azure-core HttpResponseError's ARM envelope ({} when there is none)."""
    response = getattr(err, "response", None)
    try:
        # azure-mgmt-authorization 4.0 raises with azure-core's legacy transport response (text()
        # but no json()); the newer mgmt clients with azure.core.rest responses.
        error = json.loads(response.text())["error"]  # type: ignore[union-attr]
    except Exception:  # noqa: BLE001
        return {}
    return error if isinstance(error, dict) else {}


_AUTHZ_FAILED_RE = re.compile(
    r"^The client '(?P<client>[^']*)' with object id '(?P<oid>[^']*)' does not have authorization to perform"
    r" action '(?P<action>[^']*)' over scope '(?P<scope>[^']*)' or the scope is invalid\."
)


def assert_authorization_failed(err_or_res: Any, object_id: str, action: str, scope: str) -> dict:
    """403 `AuthorizationFailed` with Azure's message naming the caller, the action and the scope
    (action and scope compared case-insensitively, as ARM treats them)."""
    if isinstance(err_or_res, requests.Response):
        error = assert_arm_error(err_or_res, 403, "AuthorizationFailed")
        detail = f"HTTP {err_or_res.status_code} {err_or_res.request.method} {err_or_res.url}: {err_or_res.text[:600]}"
    else:
        detail = describe_http_error(err_or_res)
        assert getattr(err_or_res, "status_code", None) == 403, detail
        error = arm_error_body(err_or_res)
        assert error.get("code") == "AuthorizationFailed", detail
    match = _AUTHZ_FAILED_RE.match(error.get("message", ""))
    assert match, f"AuthorizationFailed message not in Azure's form: {detail}"
    assert match["oid"] == object_id, detail
    assert match["client"] == object_id, detail
    assert match["action"].lower() == action.lower(), f"expected action {action!r}: {detail}"
    assert match["scope"].rstrip("/").lower() == scope.rstrip("/").lower(), f"expected scope {scope!r}: {detail}"
    return error


def poll_until(predicate, timeout: float, interval: float = 0.02):
    """Call predicate() until it returns a truthy value or `timeout` seconds pass; (value, seconds)."""
    started = time.monotonic()
    while True:
        value = predicate()
        took = time.monotonic() - started
        if value or took >= timeout:
            return value, took
        time.sleep(interval)


class RbacKit:
    """Service principals of their own and role assignments made by the bootstrap SP (Owner of the
    subscription) through azure-mgmt-authorization; what it granted is revoked by cleanup()."""

    def __init__(self, server: Server, admin: ArmClients | None = None) -> None:
        self.server = server
        self.admin = admin or arm_clients(server)
        self.authz = authorization_client(server, self.admin.credential)
        self.granted: list[str] = []

    @property
    def sub(self) -> str:
        return self.server.subscription_id

    def role_id(self, role_guid: str) -> str:
        return role_definition_id(self.sub, role_guid)

    def principal(self, name: str | None = None) -> RbacClients:
        """A new service principal and the real clients acting as it (`.sp` holds its secret)."""
        sp = create_service_principal(self.server, name, admin_credential=self.admin.credential)
        clients = clients_as(self.server, sp.credential, object_id=sp.object_id)
        clients.sp = sp  # type: ignore[attr-defined]
        return clients

    def grant(
        self,
        principal_id: str,
        role_guid: str,
        scope: str,
        principal_type: str = "ServicePrincipal",
        by: Any = None,
        name: str | None = None,
    ):
        """PUT a role assignment (as the bootstrap SP, or as `by`'s authorization client); the SDK model."""
        authz = by.authorization if by is not None else self.authz
        created = authz.role_assignments.create(
            scope,
            name or str(uuid.uuid4()),
            {
                "properties": {
                    "roleDefinitionId": self.role_id(role_guid),
                    "principalId": principal_id,
                    "principalType": principal_type,
                }
            },
        )
        self.granted.append(created.id)
        return created

    def revoke(self, assignment_id: str):
        return self.authz.role_assignments.delete_by_id(assignment_id)

    def cleanup(self) -> None:
        for assignment_id in self.granted:
            try:
                self.authz.role_assignments.delete_by_id(assignment_id)
            except Exception:  # noqa: BLE001 - cleanup must not mask the test's own result
                pass
        self.granted.clear()


# --------------------------------------------------------------------------------------------------
# The agent (issue 6): `openmi agent` processes, `openmi vm join-token` and `openmi vm run`, and raw
# IMDS requests to an agent (plain HTTP, as Azure serves IMDS).

IMDS_TOKEN_PATH = "/metadata/identity/oauth2/token"
IMDS_API = "2018-02-01"  # what every Python SDK path sends for the identity endpoint
IMDS_INSTANCE_API = "2021-02-01"
APP_SERVICE_API = "2019-08-01"
AGENT_START_TIMEOUT = 30
# Variables through which a workload could pick some other credential; cleared for child processes.
CREDENTIAL_ENV_VARS = (
    "AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PATH",
    "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
    "AZURE_AUTHORITY_HOST", "AZURE_POD_IDENTITY_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS",
    "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "IDENTITY_SERVER_THUMBPRINT", "IMDS_ENDPOINT",
    "MSI_ENDPOINT", "MSI_SECRET", "AZUREPS_HOST_ENVIRONMENT",
)


class AgentStartError(RuntimeError):
    pass


@dataclass
class Agent:
    """A running `openmi agent`; `url` is what it wrote to its ready file (http://host:port)."""

    url: str
    proc: subprocess.Popen
    state_dir: Path
    log_path: Path
    ready_file: Path
    args: list = field(default_factory=list)

    def log_tail(self, n_lines: int = 80) -> str:
        return tail(self.log_path, n_lines)

    def is_running(self) -> bool:
        return self.proc.poll() is None

    def request(
        self, method: str, path: str, params: Any = None, metadata: bool = True, headers: dict | None = None,
        session: requests.Session | None = None, **kwargs: Any,
    ) -> requests.Response:
        """A request to the agent; `Metadata: true` unless metadata=False (headers may override it)."""
        all_headers = {"Metadata": "true"} if metadata else {}
        all_headers.update(headers or {})
        kwargs.setdefault("timeout", HTTP_TIMEOUT)
        return (session or requests).request(method, self.url + path, params=params, headers=all_headers, **kwargs)

    def get(self, path: str, params: Any = None, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, params=params, **kwargs)

    def token(self, resource: str | None = ARM, api_version: str | None = IMDS_API, **kwargs: Any) -> requests.Response:
        """GET /metadata/identity/oauth2/token; identity selectors go in as keyword arguments
        (client_id=, object_id=, msi_res_id=); other keyword arguments go to request()."""
        params: dict = {}
        if api_version is not None:
            params["api-version"] = api_version
        if resource is not None:
            params["resource"] = resource
        for name in ("client_id", "object_id", "msi_res_id", "mi_res_id", "bypass_cache"):
            if name in kwargs:
                params[name] = kwargs.pop(name)
        return self.get(IMDS_TOKEN_PATH, params=params, **kwargs)

    def stop(self, timeout: float = STOP_TIMEOUT) -> int | None:
        """SIGTERM, then SIGKILL if it does not exit in time; the exit status (None if it had to be killed)."""
        _LIVE.discard(self)
        if self.proc.poll() is not None:
            return self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
            return None

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other


def agent_command(
    server_url: str, ca_cert: str | None, state_dir: Path, ready_file: Path | None = None,
    join_token: str | None = None, listen: tuple | list = ("127.0.0.1:0",), extra_args: tuple | list = (),
    netns: str | None = None,
) -> list[str]:
    cmd = ["ip", "netns", "exec", netns] if netns else []
    cmd += [OPENMI_BIN, "agent", "--server", server_url, "--state-dir", str(state_dir)]
    if join_token is not None:
        cmd += ["--join-token", join_token]
    for address in listen:
        cmd += ["--listen", address]
    if ca_cert:
        cmd += ["--ca-cert", str(ca_cert)]
    if ready_file is not None:
        cmd += ["--ready-file", str(ready_file)]
    return cmd + list(extra_args)


def start_agent(
    server_url: str, ca_cert: str | None, state_dir: Path, log_path: Path, join_token: str | None = None,
    listen: tuple | list = ("127.0.0.1:0",), extra_args: tuple | list = (), netns: str | None = None,
    timeout: float = AGENT_START_TIMEOUT,
) -> Agent:
    """Start `openmi agent` and wait for the URL in its --ready-file (AgentStartError if it exits first)."""
    if not os.access(OPENMI_BIN, os.X_OK):
        raise AgentStartError(f"OPENMI_BIN {OPENMI_BIN} is not an executable: run `cargo build --bins` first")
    state_dir = Path(state_dir)
    ready_file = Path(str(log_path) + ".ready")
    ready_file.unlink(missing_ok=True)
    cmd = agent_command(server_url, ca_cert, state_dir, ready_file, join_token, listen, extra_args, netns)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    agent = Agent("", proc, state_dir, Path(log_path), ready_file, cmd)
    _LIVE.add(agent)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            text = ready_file.read_text().strip()
        except OSError:
            text = ""
        if text.startswith("http"):
            agent.url = text.splitlines()[0].strip().rstrip("/")
            return agent
        if proc.poll() is not None:
            _LIVE.discard(agent)
            raise AgentStartError(
                f"openmi agent exited with {proc.returncode} before writing its ready file;"
                f" command: {' '.join(cmd)}\nlog tail:\n{tail(log_path)}"
            )
        time.sleep(0.05)
    agent.stop()
    raise AgentStartError(f"openmi agent wrote no ready file within {timeout}s; log tail:\n{tail(log_path)}")


def run_agent_expecting_exit(
    server_url: str, ca_cert: str | None, state_dir: Path, log_path: Path, join_token: str | None,
    timeout: float = AGENT_START_TIMEOUT,
) -> tuple[int, str]:
    """Run an agent that must not get going (e.g. a refused join token): (exit status, its output).
    If it is still running after `timeout` (or wrote its ready file) it is stopped and AssertionError raised."""
    ready_file = Path(str(log_path) + ".ready")
    ready_file.unlink(missing_ok=True)
    cmd = agent_command(server_url, ca_cert, state_dir, ready_file, join_token)
    with open(log_path, "ab") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        code = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
        raise AssertionError(
            f"openmi agent kept running for {timeout}s (ready file: {ready_file.exists()});"
            f" log tail:\n{tail(log_path)}"
        )
    return code, Path(log_path).read_text(errors="replace")


def join_token_cli(config_dir: Path | str, rg: str, vm: str, expires_in: int | None = None, check: bool = True) -> CliResult:
    args = ["vm", "join-token", "-g", rg, "-n", vm]
    if expires_in is not None:
        args += ["--expires-in", str(expires_in)]
    return run_cli(args, config_dir, check=check)


def child_env(extra: dict | None = None, base: dict | None = None) -> dict:
    """The environment for a workload: this process's, without any credential-selecting variable."""
    env = dict(os.environ if base is None else base)
    for name in CREDENTIAL_ENV_VARS:
        env.pop(name, None)
    env.update(extra or {})
    return env


@dataclass
class SessionRun(CliResult):
    """A CliResult of a command run in a session of its own; `leftovers` = processes of that
    session still alive after it exited (killed before returning)."""

    leftovers: list = field(default_factory=list)


def _session_pids(sid: int) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.getsid(int(entry)) == sid:
                pids.append(int(entry))
        except OSError:
            continue
    return pids


def run_in_session(cmd: list[str], env: dict, timeout: float = 90, linger: float = 3.0) -> SessionRun:
    """Run `cmd` in a new session; afterwards wait up to `linger` s for every process of that
    session (e.g. an agent `openmi vm run` started) to exit, then kill what is left. Output goes
    through files, so that a leftover process holding them open cannot stall the test."""
    import tempfile

    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(
            cmd, stdout=out_file, stderr=err_file, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )
        sid = proc.pid
        try:
            proc.wait(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(sid, signal.SIGKILL)
            proc.wait(timeout=10)
            timed_out = True
        out_file.seek(0)
        err_file.seek(0)
        stdout = out_file.read().decode(errors="replace")
        stderr = err_file.read().decode(errors="replace")
    if timed_out:
        raise AssertionError(f"{' '.join(cmd)} did not finish within {timeout}s\nstdout: {stdout[-2000:]}\nstderr: {stderr[-3000:]}")
    deadline = time.monotonic() + linger
    left = _session_pids(sid)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = _session_pids(sid)
    described = []
    for pid in left:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            described.append(f"{pid}: {cmdline}")
        except OSError:
            described.append(str(pid))
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    return SessionRun(cmd[1:], proc.returncode, stdout, stderr, described)


def vm_run(
    config_dir: Path | str, rg: str, vm: str, command: list[str], protocol: str | None = None,
    env: dict | None = None, timeout: float = 90,
) -> SessionRun:
    """`openmi vm run -g RG -n VM [--protocol P] -- CMD...` with the workload environment of child_env()."""
    args = ["vm", "run", "-g", rg, "-n", vm]
    if protocol:
        args += ["--protocol", protocol]
    full_env = child_env(env)
    full_env["OPENMI_CONFIG_DIR"] = str(config_dir)
    return run_in_session([OPENMI_BIN, *args, "--", *command], full_env, timeout=timeout)


def imds_error(res: requests.Response, status: int, error: str, description: str | None = None) -> dict:
    """An IMDS error `{"error","error_description"}` with this status (and exact description if given)."""
    detail = f"HTTP {res.status_code} {res.request.method} {res.url} {res.headers.get('content-type')}: {res.text[:600]}"
    assert res.status_code == status, detail
    try:
        body = res.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {detail}") from None
    assert body.get("error") == error, detail
    if description is not None:
        assert body.get("error_description") == description, detail
    else:
        assert isinstance(body.get("error_description"), str) and body["error_description"], detail
    return body


def assert_identity_not_found(res: requests.Response) -> dict:
    return imds_error(res, 400, "invalid_request", "Identity not found")


IMDS_TOKEN_KEYS = ("access_token", "expires_in", "expires_on", "not_before", "resource", "token_type", "client_id")


def imds_token_body(res: requests.Response, keys: tuple = IMDS_TOKEN_KEYS) -> dict:
    """A 200 IMDS token answer: JSON, every value a string, expires_in/expires_on present and consistent."""
    detail = f"HTTP {res.status_code} {res.request.method} {res.url}: {res.text[:600]}"
    assert res.status_code == 200, detail
    assert res.headers.get("content-type", "").startswith("application/json"), detail
    body = res.json()
    for key in keys:
        assert key in body, f"no {key!r}: {detail}"
    not_strings = {k: v for k, v in body.items() if not isinstance(v, str)}
    assert not not_strings, f"IMDS answers every value as a JSON string; not strings: {not_strings}"
    assert body["token_type"] == "Bearer", detail
    assert body["access_token"].count(".") == 2, detail
    now = time.time()
    expires_in, expires_on = int(body["expires_in"]), int(body["expires_on"])
    assert 0 < expires_in <= 86400 + 600, detail
    assert abs((now + expires_in) - expires_on) <= 10, f"expires_in and expires_on disagree: {detail}"
    return body


def ec_key_and_spki():
    """A new EC P-256 key and its base64 DER SubjectPublicKeyInfo (as an agent enrols it)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, base64.b64encode(der).decode()


def agent_assertion(key: Any, agent_id: str, lifetime: int = 300, iat: int | None = None, **overrides: Any) -> str:
    """`Authorization: Agent <JWS>` value per docs/design/agent-protocol.md §3 (ES256, kid = agent id)."""
    iat = int(time.time()) if iat is None else iat
    claims = {
        "iss": agent_id, "sub": agent_id, "aud": "openmi-agent", "iat": iat, "exp": iat + lifetime,
        "jti": str(uuid.uuid4()),
    }
    claims.update(overrides)
    token = jwt.encode(claims, key, algorithm="ES256", headers={"kid": agent_id, "typ": "JWT"})
    return f"Agent {token}"


# --------------------------------------------------------------------------------------------------
# workloads run "on the VM" (tests/py/workloads)

WORKLOADS = Path(__file__).resolve().parent / "workloads"


def run_workload(agents, server, rg: str, vm: str, workload, spec: dict, protocol: str | None = None, env=None) -> dict:
    """`openmi vm run -g RG -n VM [--protocol P] -- <venv python> workload.py SPEC`; its JSON output."""
    res = vm_run(agents.cli_dir(server), rg, vm, [sys.executable, str(workload), json.dumps(spec)], protocol, env)
    assert res.returncode == 0, res.describe()
    assert not res.leftovers, f"`openmi vm run` left processes behind: {res.leftovers}\n{res.describe()}"
    lines = [line for line in res.stdout.splitlines() if line.startswith("{")]
    try:
        return json.loads(lines[-1])
    except (ValueError, IndexError):
        raise AssertionError(f"the workload printed no JSON: {res.describe()}") from None


# --------------------------------------------------------------------------------------------------
# Cosmos DB (issue 17): azure-mgmt-cosmosdb for the control plane, azure-cosmos for the data plane
# at the account's documentEndpoint (https://{server}/cosmos/{account}/). azure-cosmos itself skips
# TLS verification for 127.0.0.1 endpoints (its emulator convenience), so it needs no CA.

ARM_COSMOS_API = "2026-03-15"  # azure-mgmt-cosmosdb 10.0 default
COSMOS_DATA_READER = "00000000-0000-0000-0000-000000000001"
COSMOS_DATA_CONTRIBUTOR = "00000000-0000-0000-0000-000000000002"
COSMOS_BUILTIN_ROLES = {
    COSMOS_DATA_READER: "Cosmos DB Built-in Data Reader",
    COSMOS_DATA_CONTRIBUTOR: "Cosmos DB Built-in Data Contributor",
}
COSMOS_DATA_ACTION = "Microsoft.DocumentDB/databaseAccounts/"


def cosmos_mgmt_client(server: Server, credential: Any = None):
    """azure-mgmt-cosmosdb's CosmosDBManagementClient on `server` (as the bootstrap SP by default)."""
    from azure.mgmt.cosmosdb import CosmosDBManagementClient

    return CosmosDBManagementClient(credential or arm_credential(server), server.subscription_id, **mgmt_client_kwargs(server))


def cosmos_account_id(subscription_id: str, rg: str, account: str) -> str:
    return f"/subscriptions/{subscription_id}/resourceGroups/{rg}/providers/Microsoft.DocumentDB/databaseAccounts/{account}"


def cosmos_account_body(location: str = "westus", disable_local_auth: bool = False) -> dict:
    """An account as `az cosmosdb create` / the portal send it."""
    return {
        "location": location,
        "kind": "GlobalDocumentDB",
        "properties": {
            "databaseAccountOfferType": "Standard",
            "locations": [{"locationName": location, "failoverPriority": 0, "isZoneRedundant": False}],
            "disableLocalAuth": disable_local_auth,
        },
    }


def create_cosmos_account(mgmt: Any, rg: str, name: str | None = None, location: str = "westus", disable_local_auth: bool = False):
    """begin_create_or_update(...).result() of a database account, asserting no polling was needed."""
    name = name or unique_name("pycos")
    return timed_result(mgmt.database_accounts.begin_create_or_update(rg, name, cosmos_account_body(location, disable_local_auth)))


def create_cosmos_database(mgmt: Any, rg: str, account: str, db: str):
    body = {"properties": {"resource": {"id": db}, "options": {}}}
    return timed_result(mgmt.sql_resources.begin_create_update_sql_database(rg, account, db, body))


def create_cosmos_container(mgmt: Any, rg: str, account: str, db: str, name: str, paths=("/pk",), default_ttl: int | None = None):
    """A SQL container through ARM; more than one path makes a hierarchical (MultiHash) key."""
    resource: dict = {
        "id": name,
        "partitionKey": {"paths": list(paths), "kind": "MultiHash" if len(paths) > 1 else "Hash", "version": 2},
    }
    if default_ttl is not None:
        resource["defaultTtl"] = default_ttl
    body = {"properties": {"resource": resource, "options": {}}}
    return timed_result(mgmt.sql_resources.begin_create_update_sql_container(rg, account, db, name, body))


def grant_cosmos_role(mgmt: Any, rg: str, account: str, principal_id: str, role_guid: str, scope: str, name: str | None = None):
    """A data-plane role assignment (sqlRoleAssignments); `scope` full or relative (`/`, `/dbs/db`...)."""
    account_id = cosmos_account_id(mgmt._config.subscription_id, rg, account)
    body = {
        "properties": {
            "roleDefinitionId": f"{account_id}/sqlRoleDefinitions/{role_guid}",
            "scope": scope,
            "principalId": principal_id,
        }
    }
    return timed_result(mgmt.sql_resources.begin_create_update_sql_role_assignment(name or str(uuid.uuid4()), rg, account, body))


def cosmos_client(endpoint: str, credential: Any, **kwargs: Any):
    """azure-cosmos's CosmosClient on an account endpoint, with a key (str) or a TokenCredential."""
    from azure.cosmos import CosmosClient

    return CosmosClient(endpoint, credential=credential, **kwargs)


def cosmos_plain(document: Any) -> Any:
    """A document without Cosmos's system properties (`_rid`, `_self`, `_etag`, `_ts`, ...)."""
    if isinstance(document, dict):
        return {k: v for k, v in document.items() if not k.startswith("_")}
    return document


def assert_cosmos_error(err: Exception, status: int, substatus: int | None = None, contains: str | None = None) -> Exception:
    """A CosmosHttpResponseError with this status (and x-ms-substatus, and text, if given)."""
    detail = f"{type(err).__name__}: status={getattr(err, 'status_code', None)} substatus={getattr(err, 'sub_status', None)}: {str(err)[:800]}"
    assert getattr(err, "status_code", None) == status, detail
    if substatus is not None:
        assert getattr(err, "sub_status", None) == substatus, detail
    if contains is not None:
        assert contains in str(err), detail
    return err
