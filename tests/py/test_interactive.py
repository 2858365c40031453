"""Interactive sign-in (issue 18): the authorization-code grant with PKCE through a real browser,
the device-code grant, sign-out, and the error pages, with the real unmodified clients.

"The browser" is Debian's Chromium, headless, driven like a person by tests/js/lib/browser-signin.mjs
(playwright-core): it fills in Username and Password by their labels and clicks Sign in, or enters
the device code. The clients open it the way they open any browser: Python's `webbrowser` runs
`$BROWSER` (here a small script in the session's tmp dir that starts the driver in the background
and returns at once, as a browser launcher does), and the device-code clients hand their message to
a callback that starts the driver on the code (az prints it on stderr, where the test reads it). The error cases talk plain HTTP with `requests`,
submitting the forms the pages hold as a browser would.
"""

from __future__ import annotations

import hashlib
import html.parser
import json
import os
import re
import secrets
import shlex
import signal
import subprocess
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import msal
import pytest
import requests
from azure.identity import DeviceCodeCredential, InteractiveBrowserCredential

import support
from support import ARM, ARM_SCOPE, AZ_CLI_CLIENT_ID, GRAPH_SCOPE

DRIVER = support.REPO_ROOT / "tests" / "js" / "lib" / "browser-signin.mjs"
NODE = os.environ.get("OPENMI_NODE") or "node"
DRIVER_TIMEOUT = 25  # seconds a driver run may take (it gives up after 20 s itself)
OIDC = "openid profile offline_access"


# --------------------------------------------------------------------------------------------------
# the person at the browser


@pytest.fixture(scope="session", autouse=True)
def _chromium():
    if not os.access("/usr/bin/chromium", os.X_OK):
        pytest.fail("Debian's chromium is not installed at /usr/bin/chromium (./scripts/test installs it)")
    if not (support.REPO_ROOT / "tests" / "js" / "node_modules" / "playwright-core").is_dir():
        pytest.fail("playwright-core is not installed in tests/js/node_modules (./scripts/test runs npm ci)")


BROWSER_SCRIPT = """#!/bin/sh
# A browser launcher for the clients: opens the URL (the driver signs in as
# $OPENMI_SIGNIN_USERNAME) in the background and returns at once, as a real launcher does;
# each run leaves its URL, output, pid and exit code in $OPENMI_BROWSER_RUNS.
run="$OPENMI_BROWSER_RUNS/run-$$"
printf "%s\\n" "$1" > "$run.url"
(
  OPENMI_SIGNIN_SCREENSHOT="$run.png" {node} {driver} "$1" > "$run.out" 2> "$run.err" &
  echo $! > "$run.pid"
  wait $!
  echo $? > "$run.rc.tmp" && mv "$run.rc.tmp" "$run.rc"
) < /dev/null > /dev/null 2>&1 &
"""


@pytest.fixture(scope="session")
def browser_command(tmp_path_factory) -> str:
    """One launcher for the whole session: Python's `webbrowser` reads `$BROWSER` once per process
    (at its first use) and keeps that command, so the path must not change from test to test;
    where a run's files go and whom it signs in as come from the environment of each call."""
    path = tmp_path_factory.mktemp("browser") / "browser"
    path.write_text(BROWSER_SCRIPT.format(node=shlex.quote(NODE), driver=shlex.quote(str(DRIVER))))
    path.chmod(0o755)
    return str(path)


class Browser:
    """`$BROWSER` for the clients, signing in as one user; records each run under `dir`."""

    def __init__(self, command: str, where: Path, username: str, password: str):
        self.command = command
        self.dir = Path(where) / f"browser-{uuid.uuid4().hex[:6]}"
        self.dir.mkdir(parents=True)
        self.username = username
        self.password = password

    def env(self) -> dict:
        return {
            "BROWSER": self.command, "OPENMI_BROWSER_RUNS": str(self.dir),
            "OPENMI_SIGNIN_USERNAME": self.username, "OPENMI_SIGNIN_PASSWORD": self.password,
        }

    def apply(self, monkeypatch) -> "Browser":
        """For clients in this process (their `webbrowser` runs the launcher with our environment)."""
        for key, value in self.env().items():
            monkeypatch.setenv(key, value)
        return self

    def urls(self) -> list[str]:
        return [p.read_text().strip() for p in sorted(self.dir.glob("run-*.url"), key=lambda p: p.stat().st_mtime)]

    def finished(self, count: int = 1, timeout: float = DRIVER_TIMEOUT) -> list[dict]:
        """Waits for `count` driver runs to end; returns each run's url, rc, stdout, stderr."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            done = sorted(self.dir.glob("run-*.rc"))
            if len(done) >= count:
                break
            time.sleep(0.1)
        runs = []
        for url_file in sorted(self.dir.glob("run-*.url")):
            stem = str(url_file)[: -len(".url")]
            rc_file = Path(stem + ".rc")
            runs.append({
                "url": url_file.read_text().strip(),
                "rc": int(rc_file.read_text().strip()) if rc_file.exists() else None,
                "stdout": _read(stem + ".out"),
                "stderr": _read(stem + ".err"),
            })
        assert len([r for r in runs if r["rc"] is not None]) >= count, f"the browser did not finish within {timeout}s: {runs}"
        return runs

    def signed_in(self, count: int = 1) -> list[dict]:
        runs = self.finished(count)
        for run in runs:
            assert run["rc"] == 0, f"the browser run failed: {run}"
        return runs

    def stop(self) -> None:
        """Ends any driver still running (by the pid its launcher recorded)."""
        for pid_file in self.dir.glob("run-*.pid"):
            if not Path(str(pid_file)[: -len(".pid")] + ".rc").exists():
                try:
                    os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
                except (OSError, ValueError):
                    pass


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


@pytest.fixture
def browser(server, browser_command, tmp_path, monkeypatch):
    """BROWSER set to the launcher of the driver, signing in as the admin user."""
    b = Browser(browser_command, tmp_path, server.admin_username, server.admin_password).apply(monkeypatch)
    yield b
    b.stop()


class Driver:
    """The driver started by hand (device codes, web apps), one process per call."""

    def __init__(self, username: str, password: str, where: Path):
        self.env = dict(os.environ, OPENMI_SIGNIN_USERNAME=username, OPENMI_SIGNIN_PASSWORD=password)
        self.where = Path(where)
        self.procs: list[subprocess.Popen] = []

    def start(self, *args: str) -> subprocess.Popen:
        env = dict(self.env, OPENMI_SIGNIN_SCREENSHOT=str(self.where / f"driver-{len(self.procs)}.png"))
        proc = subprocess.Popen(
            [NODE, str(DRIVER), *args], env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.procs.append(proc)
        return proc

    def device(self, user_code: str, verification_uri: str) -> subprocess.Popen:
        return self.start("--device", user_code, verification_uri)

    def result(self, proc: subprocess.Popen | None = None, expect: int = 0) -> tuple[str, str]:
        proc = proc or self.procs[-1]
        out, err = proc.communicate(timeout=DRIVER_TIMEOUT)
        assert proc.returncode == expect, f"browser-signin exited {proc.returncode} (wanted {expect})\nstdout: {out}\nstderr: {err}"
        return out, err

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.fixture
def driver(server, tmp_path):
    d = Driver(server.admin_username, server.admin_password, tmp_path)
    yield d
    d.stop()


class Listener:
    """A web app's redirect target on 127.0.0.1: records each request's query (or form body)."""

    def __init__(self) -> None:
        received = self.received = []

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, params: dict) -> None:
                received.append({"path": urlparse(self.path).path, "method": self.command, "params": params})
                body = b"<html><title>web app</title><body>Signed in to the web app.</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):  # noqa: N802 - http.server's naming
                if urlparse(self.path).path == "/favicon.ico":
                    self.send_response(404)
                    self.end_headers()
                    return
                self._answer({k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()})

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                self._answer({k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()})

            def log_message(self, *args):
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def listener():
    lst = Listener()
    yield lst
    lst.stop()


# --------------------------------------------------------------------------------------------------
# raw HTTP: the pages' forms, PKCE, Graph


class _Forms(html.parser.HTMLParser):
    """The forms of a page: action, method, inputs (name → value), labels, the submit buttons' text."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []
        self._button = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append({"action": a.get("action", ""), "method": a.get("method", "get"), "inputs": {}, "buttons": []})
        elif tag == "input" and self.forms and a.get("name"):
            self.forms[-1]["inputs"][a["name"]] = a.get("value") or ""
        elif tag == "button" and self.forms:
            self._button = ""

    def handle_data(self, data):
        if self._button is not None:
            self._button += data

    def handle_endtag(self, tag):
        if tag == "button" and self._button is not None and self.forms:
            self.forms[-1]["buttons"].append(self._button.strip())
            self._button = None


def forms_of(page: str) -> list[dict]:
    parser = _Forms()
    parser.feed(page)
    return parser.forms


def form_with_button(page: str, button: str) -> dict:
    for form in forms_of(page):
        if any(b == button or b.startswith(button) for b in form["buttons"]):
            return form
    raise AssertionError(f"no form with a {button!r} button on the page: {page[:1500]}")


def is_sign_in_page(page: str) -> bool:
    return bool(re.search(r'<label for="username">Username</label>', page)) and "Sign in</button>" in page


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, support.b64url(hashlib.sha256(verifier.encode()).digest())


def authorize_url(server, params: dict, version: int = 2, tenant: str | None = None) -> str:
    tenant = tenant or server.tenant_id
    path = f"/{tenant}/oauth2/v2.0/authorize" if version == 2 else f"/{tenant}/oauth2/authorize"
    return f"{server.url}{path}?{urlencode(params)}"


def code_params(redirect_uri: str, challenge: str, client_id: str = AZ_CLI_CLIENT_ID, **extra) -> dict:
    params = {
        "client_id": client_id, "response_type": "code", "redirect_uri": redirect_uri,
        "scope": f"{ARM_SCOPE} {OIDC}", "state": secrets.token_urlsafe(8), "nonce": secrets.token_urlsafe(8),
        "code_challenge": challenge, "code_challenge_method": "S256",
    }
    params.update(extra)
    return {k: v for k, v in params.items() if v is not None}


def redirect_params(res: requests.Response, redirect_uri: str, mode: str = "query") -> dict:
    """The answer in a 302's Location to the redirect URI (query or fragment)."""
    detail = f"HTTP {res.status_code} Location={res.headers.get('location')!r}: {res.text[:800]}"
    assert res.status_code == 302, detail
    location = res.headers["location"]
    assert location.startswith(redirect_uri), detail
    parsed = urlparse(location)
    part = parsed.fragment if mode == "fragment" else parsed.query
    return {k: v[0] for k, v in parse_qs(part).items()}


def sign_in_with_form(server, session: requests.Session, url: str, username: str, password: str) -> requests.Response:
    """GET the authorize URL (the sign-in page), then submit its Sign in form, as a browser does."""
    page = session.get(url, verify=server.ca_cert_path, allow_redirects=False, timeout=support.HTTP_TIMEOUT)
    assert page.status_code == 200 and is_sign_in_page(page.text), f"HTTP {page.status_code}: {page.text[:800]}"
    form = form_with_button(page.text, "Sign in")
    fields = dict(form["inputs"], username=username, password=password)
    return session.post(server.url + form["action"], data=fields, verify=server.ca_cert_path, allow_redirects=False, timeout=support.HTTP_TIMEOUT)


def redeem(server, code: str, redirect_uri: str, verifier: str | None, client_id: str = AZ_CLI_CLIENT_ID, **extra) -> requests.Response:
    data = {
        "grant_type": "authorization_code", "client_id": client_id, "code": code,
        "redirect_uri": redirect_uri, "code_verifier": verifier, "scope": f"{ARM_SCOPE} {OIDC}",
    }
    data.update(extra)
    return support.post_token(server, {k: v for k, v in data.items() if v is not None})


def graph(server, method: str, path: str, **kwargs) -> requests.Response:
    return support.graph_request(server, support.arm_credential(server), method, path, **kwargs)


def register_app(server, **platforms) -> dict:
    """`POST /v1.0/applications` with `web` / `spa` / `publicClient` redirect URIs."""
    body: dict = {"displayName": support.unique_name("py-interactive")}
    for platform, uris in platforms.items():
        body["publicClient" if platform == "public_client" else platform] = {"redirectUris": uris}
    res = graph(server, "POST", "/v1.0/applications", json=body)
    assert res.status_code == 201, f"POST /v1.0/applications: HTTP {res.status_code}: {res.text[:400]}"
    return res.json()


def add_password(server, app: dict) -> str:
    res = graph(server, "POST", f"/v1.0/applications/{app['id']}/addPassword", json={"passwordCredential": {"displayName": "pytest"}})
    assert res.status_code in (200, 201), f"addPassword: HTTP {res.status_code}: {res.text[:400]}"
    return res.json()["secretText"]


def create_user(server, password: str = "Interactive-1") -> tuple[str, str]:
    upn = f"{support.unique_name('pyuser')}@openmi.local"
    res = graph(server, "POST", "/v1.0/users", json={
        "displayName": upn.split("@")[0], "userPrincipalName": upn, "passwordProfile": {"password": password},
    })
    assert res.status_code == 201, f"POST /v1.0/users: HTTP {res.status_code}: {res.text[:400]}"
    assert res.json()["userPrincipalName"] == upn, res.text
    return upn, password


def assert_user_token(server, token: str, upn: str, appid: str = AZ_CLI_CLIENT_ID, audience: str = ARM) -> dict:
    claims = support.verify_token(server, token, audience=audience)
    assert claims["idtyp"] == "user", claims
    assert claims["upn"] == upn, claims
    assert claims["appid"] == appid, claims
    assert claims["tid"] == server.tenant_id, claims
    assert support.GUID_RE.match(claims["oid"]), claims
    return claims


def public_app(server, client_id: str = AZ_CLI_CLIENT_ID) -> msal.PublicClientApplication:
    return msal.PublicClientApplication(client_id, authority=f"{server.url}/{server.tenant_id}", instance_discovery=False)


# --------------------------------------------------------------------------------------------------
# the authorization-code grant through the browser


def test_interactive_browser_credential(server, browser):
    """azure-identity's InteractiveBrowserCredential: its own loopback listener, `form_post`, PKCE."""
    credential = InteractiveBrowserCredential(
        tenant_id=server.tenant_id, authority=server.url, disable_instance_discovery=True, timeout=DRIVER_TIMEOUT,
    )
    access = credential.get_token(ARM_SCOPE)
    assert_user_token(server, access.token, server.admin_username)
    [run] = browser.signed_in()
    sent = {k: v[0] for k, v in parse_qs(urlparse(run["url"]).query).items()}
    assert urlparse(run["url"]).path == f"/{server.tenant_id}/oauth2/v2.0/authorize", run
    assert sent["client_id"] == AZ_CLI_CLIENT_ID and sent["response_mode"] == "form_post", sent
    assert sent["prompt"] == "select_account" and sent["code_challenge_method"] == "S256", sent
    assert re.match(r"^http://localhost:\d+$", sent["redirect_uri"]), sent
    # The browser reached the credential's listener, which answered the form post (the driver's
    # `arrived`: the listener may close before the browser shows its answer).
    assert (json.loads(run["stdout"])["arrived"] or "").startswith(sent["redirect_uri"]), run

    # The account is cached: the next token (another resource) comes without a browser.
    graph_token = credential.get_token(GRAPH_SCOPE)
    assert support.unverified_claims(graph_token.token)["upn"] == server.admin_username
    assert len(browser.urls()) == 1, browser.urls()


def test_msal_acquire_token_interactive_then_silent(server, browser):
    """msal's acquire_token_interactive (query response mode, nonce checked by msal), then the cache."""
    app = public_app(server)
    result = app.acquire_token_interactive([ARM_SCOPE], timeout=DRIVER_TIMEOUT, login_hint=server.admin_username, prompt="login")
    assert "access_token" in result, result
    assert_user_token(server, result["access_token"], server.admin_username)
    assert result["id_token_claims"]["preferred_username"] == server.admin_username, result["id_token_claims"]
    assert result["id_token_claims"]["aud"] == AZ_CLI_CLIENT_ID
    assert result.get("refresh_token")
    [run] = browser.signed_in()
    sent = {k: v[0] for k, v in parse_qs(urlparse(run["url"]).query).items()}
    assert sent["login_hint"] == server.admin_username and sent["prompt"] == "login", sent
    assert sent.get("nonce") and sent.get("state") and sent.get("code_challenge"), sent

    [account] = app.get_accounts()
    assert account["username"] == server.admin_username
    silent = app.acquire_token_silent([GRAPH_SCOPE], account=account)
    assert silent and "access_token" in silent, silent
    assert support.unverified_claims(silent["access_token"])["upn"] == server.admin_username


def test_graph_user_signs_in_in_the_browser(server, browser_command, tmp_path, monkeypatch):
    """A user made by `POST /v1.0/users` (listed by the paged `GET /v1.0/users`) signs in with
    msal's acquire_token_interactive."""
    upn, password = create_user(server)
    listed, url = [], "/v1.0/users?$top=1"
    while url:
        page = graph(server, "GET", url.replace(server.url, ""))
        assert page.status_code == 200, page.text
        assert len(page.json()["value"]) <= 1, page.text
        listed += [u["userPrincipalName"] for u in page.json()["value"]]
        url = page.json().get("@odata.nextLink")
    assert upn in listed and server.admin_username in listed, listed

    b = Browser(browser_command, tmp_path, upn, password).apply(monkeypatch)
    try:
        result = public_app(server).acquire_token_interactive([ARM_SCOPE], timeout=DRIVER_TIMEOUT)
        assert "access_token" in result, result
        assert_user_token(server, result["access_token"], upn)
        assert result["id_token_claims"]["preferred_username"] == upn
        b.signed_in()
    finally:
        b.stop()


def test_public_client_app_redeems_its_code_without_a_secret(server, browser):
    """An app registered through Graph with the publicClient redirect URI `http://localhost` (what
    msal documents for desktop apps): msal's acquire_token_interactive listens on a port of its
    choosing and redeems the code without a secret."""
    app_reg = register_app(server, public_client=["http://localhost"])
    result = public_app(server, app_reg["appId"]).acquire_token_interactive([ARM_SCOPE], timeout=DRIVER_TIMEOUT)
    browser.signed_in()
    assert "access_token" in result, result
    claims = assert_user_token(server, result["access_token"], server.admin_username, appid=app_reg["appId"])
    assert claims["appidacr"] == "0", "a public client: no client authentication"


def test_confidential_web_app_auth_code_flow(server, driver, listener):
    """A web app registered through Graph (web redirect URI + a secret): msal's
    initiate_auth_code_flow (`form_post`) / acquire_token_by_auth_code_flow, the browser posting
    the answer to the app."""
    redirect_uri = f"http://localhost:{listener.port}/auth/callback"
    app_reg = register_app(server, web=[redirect_uri])
    secret = add_password(server, app_reg)
    app = msal.ConfidentialClientApplication(
        app_reg["appId"], client_credential=secret, authority=f"{server.url}/{server.tenant_id}", instance_discovery=False,
    )
    flow = app.initiate_auth_code_flow([ARM_SCOPE], redirect_uri=redirect_uri, response_mode="form_post")
    assert "auth_uri" in flow, flow
    driver.start(flow["auth_uri"])
    out, _ = driver.result()
    assert json.loads(out)["url"].startswith(redirect_uri), out
    [arrived] = listener.received
    assert arrived["path"] == "/auth/callback" and arrived["method"] == "POST", arrived
    assert arrived["params"]["state"] == flow["state"], arrived
    result = app.acquire_token_by_auth_code_flow(flow, arrived["params"])
    assert "access_token" in result, result
    claims = assert_user_token(server, result["access_token"], server.admin_username, appid=app_reg["appId"])
    assert claims["appidacr"] == "1", "the web app authenticated with its secret"
    # msal sends the SHA-256 of its nonce and checks the id token carries it back.
    assert result["id_token_claims"]["nonce"] == hashlib.sha256(flow["nonce"].encode()).hexdigest()


def test_web_app_code_needs_the_secret_and_registered_uris(server, listener):
    """A web-platform redirect URI's code is redeemed only with the app's secret; PATCH adds a URI;
    `http://localhost` URIs match on any port, other URIs exactly."""
    registered = f"http://localhost:{listener.port}/cb"
    app_reg = register_app(server, web=[registered])
    secret = add_password(server, app_reg)
    client = app_reg["appId"]

    # A path the app did not register, and an https URI, are refused: an error page, no redirect.
    for uri in (f"http://localhost:{listener.port}/other", "https://app.example.com/cb"):
        res = requests.get(authorize_url(server, code_params(uri, pkce()[1], client)), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert res.status_code == 400 and "location" not in res.headers, f"{uri}: HTTP {res.status_code} {res.headers}"
        assert "AADSTS50011" in res.text, res.text[:800]
    # PATCH adds the https URI; the port of a localhost URI does not matter.
    res = graph(server, "PATCH", f"/v1.0/applications/{app_reg['id']}", json={"web": {"redirectUris": [registered, "https://app.example.com/cb"]}})
    assert res.status_code == 204, res.text
    for uri in ("https://app.example.com/cb", f"http://localhost:{listener.port + 1}/cb"):
        res = requests.get(authorize_url(server, code_params(uri, pkce()[1], client)), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert res.status_code == 200 and is_sign_in_page(res.text), f"{uri}: HTTP {res.status_code}: {res.text[:600]}"

    verifier, challenge = pkce()
    with requests.Session() as browser_session:
        res = sign_in_with_form(server, browser_session, authorize_url(server, code_params(registered, challenge, client)), server.admin_username, server.admin_password)
    code = redirect_params(res, registered)["code"]
    without = redeem(server, code, registered, verifier, client)
    support.assert_aad_error(without, 401, "invalid_client", 7000218)
    with_secret = redeem(server, code, registered, verifier, client, client_secret=secret)
    assert with_secret.status_code == 200, with_secret.text
    assert_user_token(server, with_secret.json()["access_token"], server.admin_username, appid=client)


# --------------------------------------------------------------------------------------------------
# the device-code grant


def test_device_code_credential(server, driver):
    """azure-identity's DeviceCodeCredential: the prompt callback hands the code to the browser."""
    prompts = []

    def prompt(verification_uri, user_code, expires_on):
        prompts.append((verification_uri, user_code, expires_on))
        driver.device(user_code, verification_uri)

    credential = DeviceCodeCredential(
        tenant_id=server.tenant_id, authority=server.url, disable_instance_discovery=True,
        prompt_callback=prompt, timeout=DRIVER_TIMEOUT,
    )
    access = credential.get_token(ARM_SCOPE)
    assert_user_token(server, access.token, server.admin_username)
    [(uri, _code, _expires)] = prompts
    assert uri == f"{server.url}/devicelogin", prompts
    out, _ = driver.result()
    assert "You have signed in" in json.loads(out)["steps"][-1], out


def test_msal_device_flow(server, driver):
    """msal's initiate_device_flow + acquire_token_by_device_flow (polling through authorization_pending)."""
    app = public_app(server)
    flow = app.initiate_device_flow(scopes=[ARM_SCOPE])
    assert "user_code" in flow, flow
    assert flow["verification_uri"] == f"{server.url}/devicelogin", flow
    assert flow["expires_in"] == 900 and flow["interval"] == 5, flow
    assert flow["user_code"] in flow["message"] and flow["verification_uri"] in flow["message"], flow
    driver.device(flow["user_code"], flow["verification_uri"])
    # msal polls until flow["expires_at"] (15 minutes away); a failed browser should not keep it that long.
    flow["expires_at"] = time.time() + DRIVER_TIMEOUT + 10
    result = app.acquire_token_by_device_flow(flow)
    assert "access_token" in result, result
    assert_user_token(server, result["access_token"], server.admin_username)
    assert result["id_token_claims"]["preferred_username"] == server.admin_username
    driver.result()


def test_device_code_raw_v1_and_v2(server, driver):
    """The wire: v2 `authorization_pending` (AADSTS70016) until approved, then the token; v1 with
    `resource`, `verification_url`, string numbers, and `grant_type=device_code` with `code`."""
    res = server.post(f"/{server.tenant_id}/oauth2/v2.0/devicecode", data={"client_id": AZ_CLI_CLIENT_ID, "scope": f"{ARM_SCOPE} {OIDC}"})
    assert res.status_code == 200, res.text
    v2 = res.json()
    assert set(v2) >= {"user_code", "device_code", "verification_uri", "expires_in", "interval", "message"}, v2
    pending = support.post_token(server, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": AZ_CLI_CLIENT_ID, "device_code": v2["device_code"]})
    support.assert_aad_error(pending, 400, "authorization_pending", 70016)

    res = server.post(f"/{server.tenant_id}/oauth2/devicecode", data={"client_id": AZ_CLI_CLIENT_ID, "resource": ARM})
    assert res.status_code == 200, res.text
    v1 = res.json()
    assert v1["verification_url"] == f"{server.url}/devicelogin" and v1["expires_in"] == "900" and v1["interval"] == "5", v1

    driver.result(driver.device(v2["user_code"], v2["verification_uri"]))
    done = support.post_token(server, {"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "client_id": AZ_CLI_CLIENT_ID, "device_code": v2["device_code"]})
    assert done.status_code == 200, done.text
    assert_user_token(server, done.json()["access_token"], server.admin_username)
    assert done.json().get("id_token") and done.json().get("refresh_token"), done.json()

    driver.result(driver.device(v1["user_code"], v1["verification_url"]))
    done = support.post_token(server, {"grant_type": "device_code", "client_id": AZ_CLI_CLIENT_ID, "code": v1["device_code"], "resource": ARM}, version=1)
    assert done.status_code == 200, done.text
    assert_user_token(server, done.json()["access_token"], server.admin_username)


# --------------------------------------------------------------------------------------------------
# the Azure CLI


@pytest.fixture
def az_cli(server, tmp_path):
    """A stock az with the openmi cloud registered by `openmi az-config --apply`, signed in to nothing."""
    from test_az import AZ, Az

    if not os.access(AZ, os.X_OK):
        pytest.fail(f"azure-cli is not installed at {AZ}: ./scripts/test installs it into target/az-venv")
    cli_dir = tmp_path / "openmi-cli"
    support.cli_login_sp(server, cli_dir)
    config = tmp_path / "az-config"
    out = support.run_cli(["az-config", "--apply", str(config), "--az", AZ], cli_dir, timeout=120)
    assert f"export AZURE_CONFIG_DIR={config}" in out.stdout, out.describe()
    return Az(config, server, tmp_path / "home")


def test_az_login_use_device_code(server, az_cli, driver):
    """`az login --use-device-code`: az prints the message on stderr while it polls; the browser
    enters the code; az saves the user's account."""
    from test_az import AZ

    proc = subprocess.Popen(
        [AZ, "login", "--use-device-code", "--output", "json"], env=az_cli.env(), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        message = ""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "devicelogin" not in message:
            line = proc.stderr.readline()
            if not line:
                break
            message += line
        match = re.search(r"open the page (https://\S+/devicelogin) and enter the code (\S+) to authenticate", message)
        assert match, f"az printed no device-code message: {message!r}"
        assert match.group(1) == f"{server.url}/devicelogin", message
        driver.result(driver.device(match.group(2), match.group(1)))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"az login --use-device-code -> {proc.returncode}\nstdout: {out}\nstderr: {message}{err}"
    [subscription] = json.loads(out)
    assert subscription["id"] == server.subscription_id and subscription["user"] == {"name": server.admin_username, "type": "user"}

    account = az_cli.json("account", "show")
    assert account["user"] == {"name": server.admin_username, "type": "user"}, account
    assert account["tenantId"] == server.tenant_id
    # The openmi cloud's ARM resource id is the server's own URL (/metadata/endpoints).
    token = az_cli.json("account", "get-access-token")["accessToken"]
    assert_user_token(server, token, server.admin_username, audience=f"{server.url}/")


def test_az_login_in_the_browser(server, az_cli, browser_command, tmp_path):
    """Plain `az login`: az opens `$BROWSER` on the authorize URL and listens on localhost."""
    from test_az import AZ

    b = Browser(browser_command, tmp_path, server.admin_username, server.admin_password)
    try:
        res = subprocess.run([AZ, "login", "--output", "json"], env=az_cli.env(b.env()), stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert res.returncode == 0, f"az login -> {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
        [run] = b.signed_in()
        assert urlparse(run["url"]).path == "/organizations/oauth2/v2.0/authorize", run
    finally:
        b.stop()
    account = az_cli.json("account", "show")
    assert account["user"] == {"name": server.admin_username, "type": "user"}, account
    assert_user_token(server, az_cli.json("account", "get-access-token")["accessToken"], server.admin_username, audience=f"{server.url}/")


# --------------------------------------------------------------------------------------------------
# errors, sessions and sign-out over plain HTTP


def test_unknown_client_and_unregistered_redirect_uri_are_error_pages(server):
    challenge = pkce()[1]
    cases = [
        (code_params("http://localhost:8400/", challenge, client_id=str(uuid.uuid4())), "AADSTS700016"),
        (code_params("https://evil.example.com/cb", challenge), "AADSTS50011"),
        (code_params("http://localhost.evil.example.com/cb", challenge), "AADSTS50011"),
    ]
    for params, code in cases:
        for version in (2, 1):
            res = requests.get(authorize_url(server, params, version), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
            detail = f"{params['redirect_uri']} v{version}: HTTP {res.status_code} {dict(res.headers)}: {res.text[:600]}"
            assert res.status_code == 400, detail
            assert "location" not in res.headers, detail
            assert res.headers["content-type"].startswith("text/html"), detail
            assert code in res.text, detail


def _signed_in_code(server, redirect_uri: str, **extra) -> tuple[str, str, dict]:
    """A code for the Azure CLI's client, signing in through the page's form: (code, verifier, params)."""
    verifier, challenge = pkce()
    params = code_params(redirect_uri, challenge, **extra)
    with requests.Session() as browser_session:
        res = sign_in_with_form(server, browser_session, authorize_url(server, params), server.admin_username, server.admin_password)
    answer = redirect_params(res, redirect_uri)
    assert answer["state"] == params["state"], answer
    return answer["code"], verifier, params


def test_pkce_and_redirect_uri_mismatches(server):
    """A wrong code_verifier is AADSTS501481, a missing one AADSTS900144, another redirect_uri
    AADSTS50148; a failed redemption burns the code (the right verifier then gets AADSTS70008)."""
    redirect_uri = "http://127.0.0.1:8765/"
    code, verifier, _ = _signed_in_code(server, redirect_uri)
    support.assert_aad_error(redeem(server, code, redirect_uri, "x" * 43), 400, "invalid_grant", 501481)
    support.assert_aad_error(redeem(server, code, redirect_uri, verifier), 400, "invalid_grant", 70008)

    code, verifier, _ = _signed_in_code(server, redirect_uri)
    support.assert_aad_error(redeem(server, code, redirect_uri, None), 400, "invalid_request", 900144)

    code, verifier, _ = _signed_in_code(server, redirect_uri)
    support.assert_aad_error(redeem(server, code, "http://127.0.0.1:8766/", verifier), 400, "invalid_grant", 50148)


def test_code_redeemed_once_with_the_nonce_in_the_id_token(server):
    redirect_uri = "http://localhost:8765/"
    code, verifier, params = _signed_in_code(server, redirect_uri)
    first = redeem(server, code, redirect_uri, verifier)
    assert first.status_code == 200, first.text
    body = first.json()
    assert_user_token(server, body["access_token"], server.admin_username)
    id_claims = support.verify_token(server, body["id_token"], audience=AZ_CLI_CLIENT_ID, issuer=f"{server.url}/{server.tenant_id}/v2.0")
    assert id_claims["nonce"] == params["nonce"], id_claims
    support.assert_aad_error(redeem(server, code, redirect_uri, verifier), 400, "invalid_grant", 70008)


def test_response_modes_and_v1_authorize(server):
    """`fragment` answers after `#`, `form_post` with a self-submitting form; the v1 endpoint takes `resource`."""
    redirect_uri = "http://localhost:8765/"
    with requests.Session() as browser_session:
        verifier, challenge = pkce()
        res = sign_in_with_form(server, browser_session, authorize_url(server, code_params(redirect_uri, challenge, response_mode="fragment")), server.admin_username, server.admin_password)
        assert redirect_params(res, redirect_uri, "fragment")["code"]

        # With the session, form_post answers at once with a page whose form posts code and state.
        params = code_params(redirect_uri, challenge, response_mode="form_post")
        res = browser_session.get(authorize_url(server, params), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert res.status_code == 200, res.text[:600]
        [form] = forms_of(res.text)
        assert form["action"] == redirect_uri and form["method"].lower() == "post", form
        assert form["inputs"]["state"] == params["state"] and form["inputs"]["code"], form

        # v1: `resource` instead of scopes; the token's audience is the resource.
        v1 = code_params(redirect_uri, challenge, scope=None, resource=ARM)
        res = browser_session.get(authorize_url(server, v1, version=1), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        code = redirect_params(res, redirect_uri)["code"]
    token = support.post_token(server, {"grant_type": "authorization_code", "client_id": AZ_CLI_CLIENT_ID, "code": code, "redirect_uri": redirect_uri, "code_verifier": verifier, "resource": ARM}, version=1)
    assert token.status_code == 200, token.text
    assert_user_token(server, token.json()["access_token"], server.admin_username)


def test_prompt_none_without_a_session_is_login_required(server):
    redirect_uri = "http://localhost:8765/"
    params = code_params(redirect_uri, pkce()[1], prompt="none")
    res = requests.get(authorize_url(server, params), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
    answer = redirect_params(res, redirect_uri)
    assert answer["error"] == "login_required", answer
    assert answer["error_description"].startswith("AADSTS50058"), answer
    assert answer["state"] == params["state"] and "code" not in answer, answer


def test_wrong_password_in_the_browser_shows_aadsts50126(server, driver):
    """The driver signs in with a wrong password: the page's alert names AADSTS50126, nothing redirects."""
    driver.env["OPENMI_SIGNIN_PASSWORD"] = server.admin_password + "-wrong"
    url = authorize_url(server, code_params("http://localhost:8765/", pkce()[1]))
    _, err = driver.result(driver.start(url), expect=1)
    assert "AADSTS50126" in err and "Your account or password is incorrect" in err, err
    # The same over HTTP: the page comes back with the alert and the username kept.
    with requests.Session() as browser_session:
        res = sign_in_with_form(server, browser_session, url, server.admin_username, "wrong-password")
    assert res.status_code == 200 and "location" not in res.headers, res.headers
    assert re.search(r'role="alert"[^>]*>[^<]*AADSTS50126', res.text), res.text[:1500]
    assert is_sign_in_page(res.text) and f'value="{server.admin_username}"' in res.text
    assert "openmi_session" not in res.headers.get("set-cookie", "")


def test_session_select_account_and_sign_out(server):
    """A session answers at once; `prompt=select_account` offers "Continue as"; `prompt=login` asks
    again; sign-out ends the session on the server, and authorize shows the sign-in page again."""
    redirect_uri = "http://localhost:8765/"
    challenge = pkce()[1]
    url = authorize_url(server, code_params(redirect_uri, challenge))
    with requests.Session() as browser_session:
        res = sign_in_with_form(server, browser_session, url, server.admin_username, server.admin_password)
        assert redirect_params(res, redirect_uri)["code"]
        cookie = res.headers["set-cookie"]
        assert cookie.startswith("openmi_session=") and "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Lax" in cookie, cookie
        session_value = browser_session.cookies.get("openmi_session")
        assert session_value

        again = browser_session.get(url, verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert redirect_params(again, redirect_uri)["code"], "a live session answers at once"

        select = browser_session.get(authorize_url(server, code_params(redirect_uri, challenge, prompt="select_account")), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert select.status_code == 200 and f"Continue as {server.admin_username}" in select.text, select.text[:1000]
        form = form_with_button(select.text, "Continue as")
        chosen = browser_session.post(server.url + form["action"], data=form["inputs"], verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert redirect_params(chosen, redirect_uri)["code"]

        login = browser_session.get(authorize_url(server, code_params(redirect_uri, challenge, prompt="login")), verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert login.status_code == 200 and is_sign_in_page(login.text) and "Continue as" not in login.text

        out = browser_session.get(f"{server.url}/{server.tenant_id}/oauth2/v2.0/logout", params={"post_logout_redirect_uri": "http://localhost:8765/signed-out"}, verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert out.status_code == 302 and out.headers["location"] == "http://localhost:8765/signed-out", out.headers
        assert re.search(r"openmi_session=;.*Max-Age=0", out.headers.get("set-cookie", "")), out.headers
        assert not browser_session.cookies.get("openmi_session")

        after = browser_session.get(url, verify=server.ca_cert_path, allow_redirects=False, timeout=30)
        assert after.status_code == 200 and is_sign_in_page(after.text) and "Continue as" not in after.text, after.text[:600]

    # The old cookie is dead on the server too, not just forgotten by the browser.
    replay = requests.get(url, cookies={"openmi_session": session_value}, verify=server.ca_cert_path, allow_redirects=False, timeout=30)
    assert replay.status_code == 200 and is_sign_in_page(replay.text), f"HTTP {replay.status_code} {replay.headers}"

    # Sign-out never redirects off the server or loopback.
    elsewhere = requests.get(f"{server.url}/{server.tenant_id}/oauth2/v2.0/logout", params={"post_logout_redirect_uri": "https://evil.example.com/"}, verify=server.ca_cert_path, allow_redirects=False, timeout=30)
    assert elsewhere.status_code == 200 and "location" not in elsewhere.headers, elsewhere.headers
    assert "You signed out of your account" in elsewhere.text


def test_graph_user_password_rules(server):
    weak = graph(server, "POST", "/v1.0/users", json={
        "displayName": "weak", "userPrincipalName": f"{support.unique_name('weak')}@openmi.local", "passwordProfile": {"password": "password"},
    })
    assert weak.status_code == 400, weak.text
    assert "password" in weak.json()["error"]["message"].lower(), weak.text


def test_a_locked_account_is_said_on_the_sign_in_page(server_factory, monkeypatch):
    """Smart lockout on the sign-in page (`--lockout-threshold 2`): after two wrong passwords the
    right one shows AADSTS50053 in the page's alert, no code is issued and no session is made."""
    srv = server_factory.start(extra_args=("--lockout-threshold", "2", "--lockout-duration", "60"))
    support.use_ca(monkeypatch, srv.ca_cert_path)
    url = authorize_url(srv, code_params("http://localhost:8765/", pkce()[1]))
    with requests.Session() as browser_session:
        for password in ("wrong-1", "wrong-2"):
            res = sign_in_with_form(srv, browser_session, url, srv.admin_username, password)
            assert re.search(r'role="alert"[^>]*>[^<]*AADSTS50126', res.text), res.text[:1500]
        res = sign_in_with_form(srv, browser_session, url, srv.admin_username, srv.admin_password)
    assert res.status_code == 200 and "location" not in res.headers, res.headers
    assert re.search(r'role="alert"[^>]*>[^<]*Your account is locked\. AADSTS50053', res.text), res.text[:1500]
    assert "openmi_session" not in res.headers.get("set-cookie", "")
