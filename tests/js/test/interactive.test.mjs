// Interactive sign-in with the real JavaScript clients (issue 18): @azure/identity's
// InteractiveBrowserCredential (Node) and DeviceCodeCredential, @azure/msal-node's
// PublicClientApplication (acquireTokenInteractive with its built-in loopback listener,
// acquireTokenByDeviceCode) and ConfidentialClientApplication (getAuthCodeUrl + acquireTokenByCode
// with PKCE) for a web app registered through Graph. Every token verified with jose through the
// discovery document and the JWKS.
//
// "The browser" is Debian's Chromium, headless, driven like a person by lib/browser-signin.mjs
// (playwright-core): Username, Password, Sign in; or the device code on /devicelogin. The clients
// open it the way they open any browser: @azure/identity calls the `open` package, whose bundled
// xdg-open (no desktop here: its generic branch) runs `$BROWSER URL`; msal-node takes an
// `openBrowser` callback; the device-code clients hand the code to a prompt callback.

import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import http from "node:http";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { ClientSecretCredential, DeviceCodeCredential, InteractiveBrowserCredential } from "@azure/identity";
import { ConfidentialClientApplication, CryptoProvider, PublicClientApplication } from "@azure/msal-node";
import { createRemoteJWKSet, jwtVerify } from "jose";

import {
  ARM,
  ARM_SCOPE,
  AZ_CLI_CLIENT_ID,
  GRAPH_SCOPE,
  GUID_RE,
  JS_ROOT,
  bootstrapToken,
  logged,
  newDir,
  sleep,
  startServer,
  uniqueName,
} from "../lib/support.mjs";

const DRIVER = path.join(JS_ROOT, "lib", "browser-signin.mjs");
const DRIVER_TIMEOUT_MS = 25_000;

// Clients left waiting for a browser that failed: an interactive client waits for its loopback
// listener as long as a person might take (msal-node has no timeout for it), so a failed sign-in
// fails the test at once and the file exits at the end instead of hanging on that listener.
const stuck = [];

let server;
before(async () => {
  for (const needed of ["/usr/bin/chromium", path.join(JS_ROOT, "node_modules", "playwright-core")]) {
    if (!fs.existsSync(needed)) throw new Error(`${needed} is missing (./scripts/test installs chromium and runs npm ci)`);
  }
  server = await startServer();
});
after(async () => {
  await server?.stop();
  if (stuck.length) setTimeout(() => process.exit(1), 1_000).unref();
});

/** Verifies signature (keys from the discovery document's jwks_uri), audience, issuer, times. */
async function verify(token, audience = ARM) {
  const discovery = await (await fetch(`${server.url}/${server.tenantId}/v2.0/.well-known/openid-configuration`)).json();
  const keys = createRemoteJWKSet(new URL(discovery.jwks_uri));
  const { payload } = await jwtVerify(token, keys, {
    audience,
    issuer: `${server.url}/${server.tenantId}/`,
    algorithms: ["RS256"],
    requiredClaims: ["exp", "iat", "nbf"],
    clockTolerance: 5,
  });
  return payload;
}

/** A user's ARM token: verified, `idtyp` user, the user's upn, the client's appid. */
async function verifyUser(token, { upn = server.adminUsername, appid = AZ_CLI_CLIENT_ID } = {}) {
  const claims = await verify(token);
  assert.equal(claims.idtyp, "user");
  assert.equal(claims.upn, upn);
  assert.equal(claims.appid, appid);
  assert.equal(claims.tid, server.tenantId);
  return claims;
}

function authority() {
  return `${server.url}/${server.tenantId}`;
}

function knownAuthorities() {
  return [new URL(server.url).host];
}

// ------------------------------------------------------------------------------------------------
// the person at the browser

/** Runs the driver once; resolves with its exit code and output (never rejects). */
function runDriver(args, { username = server.adminUsername, password = server.adminPassword } = {}) {
  const dir = newDir("signin");
  const child = spawn(process.execPath, [DRIVER, ...args], {
    env: {
      ...process.env,
      OPENMI_SIGNIN_USERNAME: username,
      OPENMI_SIGNIN_PASSWORD: password,
      OPENMI_SIGNIN_SCREENSHOT: path.join(dir, "last.png"),
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (chunk) => (stdout += chunk));
  child.stderr.on("data", (chunk) => (stderr += chunk));
  const done = new Promise((resolve) => {
    const timer = setTimeout(() => child.kill("SIGKILL"), DRIVER_TIMEOUT_MS);
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? signal, stdout, stderr, args });
    });
  });
  return done;
}

/** A promise that settles only when the browser fails (resolve it with the failed run). */
function browserFailure() {
  let fail;
  const failed = new Promise((resolve) => (fail = resolve));
  return {
    watch(run) {
      run.then((result) => result.code !== 0 && fail(result));
      return run;
    },
    fail,
    failed,
  };
}

/** The client's answer, or the browser's failure as soon as the driver exits non-zero. */
function unlessBrowserFails(client, failure) {
  const failed = failure.failed.then((run) => {
    const error = new Error(`the browser failed (exit ${run.code ?? run.rc}):\n${run.stdout ?? ""}\n${run.stderr ?? ""}`);
    stuck.push(error);
    throw error;
  });
  return Promise.race([client, failed]);
}

async function signedIn(run) {
  const result = await run;
  assert.equal(result.code, 0, `browser-signin ${result.args.join(" ")} failed:\n${result.stdout}\n${result.stderr}`);
  return JSON.parse(result.stdout.trim().split("\n").pop());
}

/**
 * `$BROWSER` for code that opens URLs through xdg-open: a launcher that starts the driver in the
 * background and returns at once, leaving each run's URL, output and exit code in its directory.
 */
function browserLauncher() {
  const dir = newDir("browser");
  const command = path.join(dir, "browser");
  fs.writeFileSync(command, [
    "#!/bin/sh",
    `run="${dir}/run-$$"`,
    'printf "%s\\n" "$1" > "$run.url"',
    "(",
    `  OPENMI_SIGNIN_SCREENSHOT="$run.png" "${process.execPath}" "${DRIVER}" "$1" > "$run.out" 2> "$run.err"`,
    '  echo $? > "$run.rc.tmp" && mv "$run.rc.tmp" "$run.rc"',
    ") < /dev/null > /dev/null 2>&1 &",
    "",
  ].join("\n"), { mode: 0o755 });
  const failure = browserFailure();
  let watching = true;
  (async () => {
    while (watching) {
      for (const name of fs.readdirSync(dir).filter((n) => n.endsWith(".rc"))) {
        const rc = fs.readFileSync(path.join(dir, name), "utf8").trim();
        if (rc !== "0") {
          const stem = path.join(dir, name.slice(0, -".rc".length));
          failure.fail({ rc, stdout: fs.readFileSync(`${stem}.out`, "utf8"), stderr: fs.readFileSync(`${stem}.err`, "utf8") });
          watching = false;
        }
      }
      await sleep(200);
    }
  })();
  return {
    command,
    failure,
    stopWatching() {
      watching = false;
    },
    /** Waits for `count` runs to end; returns them (url, rc, stdout, stderr). */
    async finished(count = 1) {
      const deadline = Date.now() + DRIVER_TIMEOUT_MS;
      const rcs = () => fs.readdirSync(dir).filter((name) => name.endsWith(".rc"));
      while (rcs().length < count && Date.now() < deadline) await sleep(100);
      const runs = fs.readdirSync(dir).filter((name) => name.endsWith(".url")).map((name) => {
        const stem = path.join(dir, name.slice(0, -".url".length));
        const read = (ext) => (fs.existsSync(stem + ext) ? fs.readFileSync(stem + ext, "utf8") : null);
        return { url: read(".url").trim(), rc: read(".rc")?.trim(), stdout: read(".out"), stderr: read(".err") };
      });
      assert.ok(runs.filter((run) => run.rc !== undefined).length >= count, `the browser did not finish: ${JSON.stringify(runs)}`);
      for (const run of runs) assert.equal(run.rc, "0", `the browser run failed: ${JSON.stringify(run)}`);
      return runs;
    },
  };
}

/** Sets environment variables for the duration of `body` (children spawned meanwhile see them). */
async function withEnv(vars, body) {
  const saved = Object.fromEntries(Object.keys(vars).map((key) => [key, process.env[key]]));
  Object.assign(process.env, vars);
  try {
    return await body();
  } finally {
    for (const [key, value] of Object.entries(saved)) {
      if (value === undefined) delete process.env[key];
      else process.env[key] = value;
    }
  }
}

/** A web app's redirect target on 127.0.0.1: resolves with the first request's query. */
function webAppListener() {
  let resolveArrived;
  const arrived = new Promise((resolve) => (resolveArrived = resolve));
  const listener = http.createServer((req, res) => {
    const url = new URL(req.url, "http://localhost");
    if (url.pathname === "/favicon.ico") {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": "text/html" }).end("<html><title>web app</title><body>Signed in to the web app.</body></html>");
    resolveArrived({ method: req.method, path: url.pathname, params: Object.fromEntries(url.searchParams) });
  });
  return new Promise((resolve) => {
    listener.listen(0, "127.0.0.1", () => resolve({ port: listener.address().port, arrived, close: () => listener.close() }));
  });
}

// ------------------------------------------------------------------------------------------------

describe("@azure/identity", () => {
  test("InteractiveBrowserCredential opens $BROWSER through `open`/xdg-open; the browser signs in", logged(async () => {
    const browser = browserLauncher();
    const credential = new InteractiveBrowserCredential({
      tenantId: server.tenantId,
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    const access = await withEnv({
      BROWSER: browser.command,
      OPENMI_SIGNIN_USERNAME: server.adminUsername,
      OPENMI_SIGNIN_PASSWORD: server.adminPassword,
    }, () => unlessBrowserFails(credential.getToken(ARM_SCOPE), browser.failure)).finally(() => browser.stopWatching());
    await verifyUser(access.token);
    const [run] = await browser.finished();
    const sent = new URL(run.url);
    assert.equal(sent.pathname, `/${server.tenantId}/oauth2/v2.0/authorize`);
    assert.equal(sent.searchParams.get("client_id"), AZ_CLI_CLIENT_ID, "the Azure CLI's client by default");
    assert.equal(sent.searchParams.get("code_challenge_method"), "S256");
    assert.equal(sent.searchParams.get("prompt"), "select_account");
    assert.match(sent.searchParams.get("redirect_uri"), /^http:\/\/localhost:\d+$/);

    // The account is cached: another scope comes silently (no second browser run).
    const graph = await credential.getToken(GRAPH_SCOPE);
    assert.equal((await verify(graph.token, "https://graph.microsoft.com")).upn, server.adminUsername);
    assert.equal((await browser.finished()).length, 1);
  }));

  test("DeviceCodeCredential: userPromptCallback hands the code to the browser", logged(async () => {
    let run;
    const prompts = [];
    const failure = browserFailure();
    const credential = new DeviceCodeCredential({
      tenantId: server.tenantId,
      authorityHost: server.url,
      disableInstanceDiscovery: true,
      userPromptCallback: (info) => {
        prompts.push(info);
        run = failure.watch(runDriver(["--device", info.userCode, info.verificationUri]));
      },
    });
    const access = await unlessBrowserFails(credential.getToken(ARM_SCOPE, { abortSignal: AbortSignal.timeout(DRIVER_TIMEOUT_MS + 10_000) }), failure);
    await verifyUser(access.token);
    assert.equal(prompts.length, 1);
    assert.equal(prompts[0].verificationUri, `${server.url}/devicelogin`);
    assert.ok(prompts[0].message.includes(prompts[0].userCode), prompts[0].message);
    const last = await signedIn(run);
    assert.match(last.steps.at(-1), /You have signed in/);
  }));
});

describe("@azure/msal-node", () => {
  test("PublicClientApplication.acquireTokenInteractive with openBrowser (built-in loopback listener), query and form_post", logged(async () => {
    for (const responseMode of [undefined, "form_post"]) {
      const app = new PublicClientApplication({ auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority(), knownAuthorities: knownAuthorities() } });
      const opened = [];
      let run;
      const failure = browserFailure();
      const result = await unlessBrowserFails(app.acquireTokenInteractive({
        scopes: [ARM_SCOPE],
        ...(responseMode ? { responseMode } : {}),
        openBrowser: async (url) => {
          opened.push(url);
          run = failure.watch(runDriver([url]));
        },
      }), failure);
      await verifyUser(result.accessToken);
      assert.equal(result.account.username, server.adminUsername);
      assert.equal(result.idTokenClaims.preferred_username, server.adminUsername);
      const landed = await signedIn(run);
      const sent = new URL(opened[0]);
      assert.equal(sent.searchParams.get("response_mode"), responseMode ?? "query");
      assert.ok(sent.searchParams.get("code_challenge"), "PKCE");
      // The request that reached msal-node's listener (it may close before the browser shows
      // its answer, leaving the browser on chrome-error://).
      assert.ok(landed.arrived?.startsWith(sent.searchParams.get("redirect_uri")), `${landed.arrived} is the listener`);

      // The cache answers silently for the account.
      const [account] = await app.getTokenCache().getAllAccounts();
      const silent = await app.acquireTokenSilent({ account, scopes: [GRAPH_SCOPE] });
      assert.equal((await verify(silent.accessToken, "https://graph.microsoft.com")).upn, server.adminUsername);
    }
  }));

  // The twin of tests/py/test_interactive.py::test_graph_user_signs_in_in_the_browser.
  test("a user made with Graph POST /v1.0/users (listed by the paged GET /v1.0/users) signs in with acquireTokenInteractive", logged(async () => {
    const graphToken = (await new ClientSecretCredential(server.tenantId, server.clientId, server.clientSecret, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    }).getToken(GRAPH_SCOPE)).token;
    const upn = `${uniqueName("jsuser")}@openmi.local`;
    const password = "Interactive-1";
    const made = await server.request("POST", "/v1.0/users", {
      token: graphToken,
      body: { displayName: upn.split("@")[0], userPrincipalName: upn, passwordProfile: { password } },
    });
    assert.equal(made.status, 201, made.text);
    assert.equal(made.json.userPrincipalName, upn, made.text);
    const listed = [];
    for (let url = "/v1.0/users?$top=1"; url;) {
      const page = await server.request("GET", url.replace(server.url, ""), { token: graphToken });
      assert.equal(page.status, 200, page.text);
      assert.ok(page.json.value.length <= 1, page.text);
      listed.push(...page.json.value.map((user) => user.userPrincipalName));
      url = page.json["@odata.nextLink"];
    }
    assert.ok(listed.includes(upn) && listed.includes(server.adminUsername), JSON.stringify(listed));

    const app = new PublicClientApplication({ auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority(), knownAuthorities: knownAuthorities() } });
    let run;
    const failure = browserFailure();
    const result = await unlessBrowserFails(app.acquireTokenInteractive({
      scopes: [ARM_SCOPE],
      openBrowser: async (url) => {
        run = failure.watch(runDriver([url], { username: upn, password }));
      },
    }), failure);
    const claims = await verifyUser(result.accessToken, { upn });
    assert.match(claims.oid, GUID_RE);
    assert.equal(result.idTokenClaims.preferred_username, upn);
    await signedIn(run);
  }));

  test("PublicClientApplication.acquireTokenByDeviceCode", logged(async () => {
    const app = new PublicClientApplication({ auth: { clientId: AZ_CLI_CLIENT_ID, authority: authority(), knownAuthorities: knownAuthorities() } });
    let run;
    let device;
    const failure = browserFailure();
    const result = await unlessBrowserFails(app.acquireTokenByDeviceCode({
      scopes: [ARM_SCOPE],
      timeout: (DRIVER_TIMEOUT_MS + 10_000) / 1000,
      deviceCodeCallback: (response) => {
        device = response;
        run = failure.watch(runDriver(["--device", response.userCode, response.verificationUri]));
      },
    }), failure);
    await verifyUser(result.accessToken);
    assert.equal(device.verificationUri, `${server.url}/devicelogin`);
    assert.equal(device.expiresIn, 900);
    assert.equal(device.interval, 5);
    await signedIn(run);
  }));

  test("ConfidentialClientApplication: getAuthCodeUrl + acquireTokenByCode with PKCE for a web app registered through Graph", logged(async () => {
    const listener = await webAppListener();
    try {
      const redirectUri = `http://localhost:${listener.port}/signin-oidc`;
      const token = await bootstrapToken(server, GRAPH_SCOPE);
      const registered = await server.request("POST", "/v1.0/applications", {
        token, body: { displayName: uniqueName("js-webapp"), web: { redirectUris: [redirectUri] } },
      });
      assert.equal(registered.status, 201, registered.text);
      const secret = await server.request("POST", `/v1.0/applications/${registered.json.id}/addPassword`, {
        token, body: { passwordCredential: { displayName: "node" } },
      });
      assert.equal(secret.status, 200, secret.text);
      const appId = registered.json.appId;

      const app = new ConfidentialClientApplication({
        auth: { clientId: appId, clientSecret: secret.json.secretText, authority: authority(), knownAuthorities: knownAuthorities() },
      });
      const { verifier, challenge } = await new CryptoProvider().generatePkceCodes();
      const state = crypto.randomUUID();
      const url = await app.getAuthCodeUrl({
        scopes: [ARM_SCOPE], redirectUri, codeChallenge: challenge, codeChallengeMethod: "S256", state,
      });
      const landed = await signedIn(runDriver([url]));
      assert.ok(landed.url.startsWith(redirectUri), landed.url);
      const arrived = await listener.arrived;
      assert.equal(arrived.path, "/signin-oidc");
      assert.equal(arrived.params.state, state);
      assert.ok(arrived.params.code, JSON.stringify(arrived));

      const result = await app.acquireTokenByCode(
        { code: arrived.params.code, scopes: [ARM_SCOPE], redirectUri, codeVerifier: verifier, state },
        arrived.params,
      );
      await verifyUser(result.accessToken, { appid: appId });
      assert.equal(result.account.username, server.adminUsername);
      assert.equal(result.idTokenClaims.aud, appId);

      // The same code again is refused: codes are single use.
      const again = await app.acquireTokenByCode({ code: arrived.params.code, scopes: [ARM_SCOPE], redirectUri, codeVerifier: verifier }).catch((error) => error);
      assert.match(String(again?.errorMessage ?? again?.message), /AADSTS70008/);
    } finally {
      listener.close();
    }
  }));
});
