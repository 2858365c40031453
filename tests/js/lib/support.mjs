// Helpers shared by the tests in tests/js: starting the real openmi server, PostgreSQL schemas, the
// openmi CLI, service principals made through the Graph-shaped API, and `openmi vm run` workloads.
//
// Nothing here imitates a client: the tests drive @azure/identity, @azure/msal-node, the
// @azure/arm-* clients and jose themselves. TLS trust comes from NODE_EXTRA_CA_CERTS, which
// run.mjs points at the one test CA every server of the run issues its certificate from (a user
// does the same with openmi's `DIR/tls/ca.pem`).
//
// Environment (set by run.mjs): OPENMI_BIN, OPENMI_TEST_BACKEND (sqlite | postgres),
// OPENMI_TEST_PG_URL, OPENMI_TEST_CA_DIR (ca.pem + ca.key), OPENMI_TEST_TMP.

import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const JS_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
export const REPO_ROOT = path.resolve(JS_ROOT, "..", "..");
export const OPENMI_BIN = process.env.OPENMI_BIN || path.join(REPO_ROOT, "target", "debug", "openmi");
export const BACKEND = process.env.OPENMI_TEST_BACKEND || "sqlite";
export const PG_URL = process.env.OPENMI_TEST_PG_URL || "postgres://postgres@127.0.0.1:5432/test";
export const CA_DIR = process.env.OPENMI_TEST_CA_DIR;
export const TMP = process.env.OPENMI_TEST_TMP || fs.mkdtempSync(path.join("/tmp", "openmi-js-"));

export const ARM = "https://management.azure.com";
export const ARM_SCOPE = `${ARM}/.default`;
export const GRAPH_SCOPE = "https://graph.microsoft.com/.default";
export const AZ_CLI_CLIENT_ID = "04b07795-8ddb-461a-bbee-02f9e1bf7b46";
export const GUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

// Azure's built-in role definitions: the same GUIDs in every tenant.
export const ROLES = {
  Owner: "8e3af657-a8ff-443c-a75c-2fe8c4bcb635",
  Contributor: "b24988ac-6180-42a0-ab88-20f7382dd24c",
  Reader: "acdd72a7-3385-48ef-bd42-f606fba81ae7",
  "User Access Administrator": "18d7d88d-d35e-4fb5-a5c3-7773c20a72d9",
  "Virtual Machine Contributor": "9980e02c-c2be-4d73-94e8-173b1dc7cf3c",
  "Managed Identity Contributor": "e40ec5ca-96e0-45a2-b4ff-59039f2c2b59",
  "Managed Identity Operator": "f1a07417-d97a-45cb-824c-7a7467783830",
};

// Variables that make @azure/identity pick a credential; a workload starts without them.
const CREDENTIAL_ENV_VARS = [
  "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET", "AZURE_TENANT_ID", "AZURE_USERNAME", "AZURE_PASSWORD",
  "AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
  "AZURE_POD_IDENTITY_AUTHORITY_HOST", "IDENTITY_ENDPOINT", "IDENTITY_HEADER", "MSI_ENDPOINT",
  "MSI_SECRET", "IMDS_ENDPOINT", "IDENTITY_SERVER_THUMBPRINT", "AZURE_TOKEN_CREDENTIALS",
];

const START_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;

let counter = 0;

/** A unique name with a prefix, as tests name their groups and identities. */
export function uniqueName(prefix) {
  return `${prefix}-${crypto.randomBytes(4).toString("hex")}`;
}

/** A new empty directory under this run's temporary folder. */
export function newDir(stem) {
  counter += 1;
  const dir = path.join(TMP, `${stem}-${process.pid}-${counter}-${crypto.randomBytes(3).toString("hex")}`);
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  return dir;
}

export function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A TCP port that was free a moment ago on 127.0.0.1. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

export function tail(file, lines = 80) {
  try {
    return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
  } catch (error) {
    return `<no log: ${error.message}>`;
  }
}

// ------------------------------------------------------------------------------------------------
// PostgreSQL schemas

function psql(sql) {
  const res = spawnSync("psql", [PG_URL, "-v", "ON_ERROR_STOP=1", "-q", "-X", "-c", sql], { encoding: "utf8" });
  if (res.status !== 0) {
    throw new Error(`psql failed (${res.status}) on ${sql}: ${res.stderr}`);
  }
}

/** A fresh schema `openmi_js_<hex>` in the test database; `url` points a server at it. */
export function newPgSchema() {
  const name = `openmi_js_${crypto.randomBytes(6).toString("hex")}`;
  psql(`CREATE SCHEMA "${name}"`);
  const sep = PG_URL.includes("?") ? "&" : "?";
  return { name, url: `${PG_URL}${sep}options=-csearch_path%3D${name}`, drop: () => psql(`DROP SCHEMA IF EXISTS "${name}" CASCADE`) };
}

// ------------------------------------------------------------------------------------------------
// the server

const live = new Set();
/** Servers started by this test file, whose log tails `logged` adds to a failure. */
const started = [];
process.on("exit", () => {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
});

/**
 * Starts `openmi server` on a new data dir (holding this run's test CA, so its certificate is
 * trusted through NODE_EXTRA_CA_CERTS), a free port and, on PostgreSQL, a new schema (or
 * `databaseUrl`); resolves once /healthz answers 200 over verified TLS. `port` (a restart on the
 * same port, so that the issuer of the old tokens is still the server's) is tried a few times
 * while the previous process's socket is released.
 */
export async function startServer({ extraArgs = [], databaseUrl, dataDir, port: fixedPort } = {}) {
  if (!fs.existsSync(OPENMI_BIN)) {
    throw new Error(`OPENMI_BIN ${OPENMI_BIN} does not exist: run \`cargo build --bins\` first`);
  }
  dataDir = dataDir || newDir("server");
  if (CA_DIR) {
    const tls = path.join(dataDir, "tls");
    fs.mkdirSync(tls, { recursive: true });
    for (const file of ["ca.pem", "ca.key"]) {
      if (!fs.existsSync(path.join(tls, file))) {
        fs.copyFileSync(path.join(CA_DIR, file), path.join(tls, file));
      }
    }
  }
  let schema = null;
  if (databaseUrl === undefined && BACKEND === "postgres") {
    schema = newPgSchema();
    databaseUrl = schema.url;
  }
  let lastError;
  for (let attempt = 0; attempt < 3; attempt += 1) {
    if (fixedPort && attempt > 0) await sleep(500);
    const port = fixedPort ?? (await freePort());
    try {
      const server = await startOnce(dataDir, port, databaseUrl, extraArgs);
      server.schema = schema;
      started.push(server);
      return server;
    } catch (error) {
      lastError = error;
      if (!/in use/i.test(error.message)) break;
    }
  }
  if (schema) schema.drop();
  throw lastError;
}

async function startOnce(dataDir, port, databaseUrl, extraArgs) {
  const logPath = path.join(dataDir, `server-${port}.log`);
  const log = fs.openSync(logPath, "a");
  const args = ["server", "--data-dir", dataDir, "--listen", `127.0.0.1:${port}`];
  if (databaseUrl) args.push("--database-url", databaseUrl);
  args.push(...extraArgs);
  const proc = spawn(OPENMI_BIN, args, { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  live.add(proc);
  let exited = null;
  proc.on("exit", (code, signal) => {
    exited = { code, signal };
    live.delete(proc);
  });
  const url = `https://127.0.0.1:${port}`;
  const deadline = Date.now() + START_TIMEOUT_MS;
  let last = "no bootstrap.json yet";
  while (Date.now() < deadline) {
    if (exited) {
      throw new Error(`openmi server exited with ${exited.code ?? exited.signal} before becoming healthy; log tail:\n${tail(logPath)}`);
    }
    try {
      const boot = JSON.parse(fs.readFileSync(path.join(dataDir, "bootstrap.json"), "utf8"));
      const res = await fetch(`${url}/healthz`);
      if (res.status === 200) {
        return new Server({ url, port, dataDir, logPath, proc, boot, databaseUrl, exitedRef: () => exited });
      }
      last = `/healthz answered ${res.status}`;
    } catch (error) {
      last = `${error.name}: ${error.message}${error.cause ? ` (${error.cause.message ?? error.cause})` : ""}`;
    }
    await sleep(200);
  }
  proc.kill("SIGKILL");
  throw new Error(`openmi server not healthy within ${START_TIMEOUT_MS} ms (${last}); log tail:\n${tail(logPath)}`);
}

export class Server {
  constructor({ url, port, dataDir, logPath, proc, boot, databaseUrl, exitedRef }) {
    this.url = url;
    this.port = port;
    this.dataDir = dataDir;
    this.logPath = logPath;
    this.proc = proc;
    this.databaseUrl = databaseUrl;
    this.tenantId = boot.tenantId;
    this.subscriptionId = boot.subscriptionId;
    this.clientId = boot.clientId;
    this.clientSecret = boot.clientSecret;
    this.adminUsername = boot.adminUsername;
    this.adminPassword = boot.adminPassword;
    this.caCertPath = boot.caCertPath;
    this.exitedRef = exitedRef;
    this.schema = null;
  }

  logTail(lines = 80) {
    return tail(this.logPath, lines);
  }

  /** SIGTERM and a graceful exit (code 0) within 10 s; the schema is dropped afterwards. */
  async stop() {
    const proc = this.proc;
    if (!this.exitedRef()) {
      const exited = new Promise((resolve) => proc.once("exit", (code, signal) => resolve({ code, signal })));
      proc.kill("SIGTERM");
      const outcome = await Promise.race([exited, sleep(STOP_TIMEOUT_MS).then(() => null)]);
      if (!outcome) {
        proc.kill("SIGKILL");
        throw new Error(`openmi server did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM; log tail:\n${this.logTail()}`);
      }
      if (outcome.code !== 0) {
        throw new Error(`openmi server exited with ${outcome.code ?? outcome.signal} after SIGTERM; log tail:\n${this.logTail()}`);
      }
    }
    if (this.schema) {
      this.schema.drop();
      this.schema = null;
    }
  }

  get subscriptionScope() {
    return `/subscriptions/${this.subscriptionId}`;
  }

  groupId(rg) {
    return `${this.subscriptionScope}/resourceGroups/${rg}`;
  }

  identityId(rg, name) {
    return `${this.groupId(rg)}/providers/Microsoft.ManagedIdentity/userAssignedIdentities/${name}`;
  }

  vmId(rg, name) {
    return `${this.groupId(rg)}/providers/Microsoft.Compute/virtualMachines/${name}`;
  }

  roleDefinitionId(role) {
    return `${this.subscriptionScope}/providers/Microsoft.Authorization/roleDefinitions/${ROLES[role] ?? role}`;
  }

  /** A raw HTTPS request to the server (fetch), with a bearer token when given. */
  async request(method, pathAndQuery, { token, body, headers = {} } = {}) {
    const init = { method, headers: { ...headers } };
    if (token) init.headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
      init.headers["Content-Type"] ??= "application/json";
    }
    const res = await fetch(this.url + pathAndQuery, init);
    const text = await res.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: the test shows the text
    }
    return { status: res.status, headers: res.headers, text, json };
  }
}

/**
 * Wraps a test body so that a failure carries the tail of every server log of this file
 * (as the Python suite attaches them to its reports).
 */
export function logged(body) {
  return async (t) => {
    try {
      await body(t);
    } catch (error) {
      const tails = started.map((s) => `--- openmi server log tail (${s.logPath}) ---\n${s.logTail(40)}`).join("\n");
      if (error && typeof error === "object") {
        error.message = `${error.message}\n${tails}`;
      }
      throw error;
    }
  };
}

// ------------------------------------------------------------------------------------------------
// the openmi CLI

/** Runs `openmi ARGS` with its own config dir; returns code, stdout, stderr and a json() reader. */
export function runCli(configDir, args, { check = true, env = {}, timeout = 60_000 } = {}) {
  const res = spawnSync(OPENMI_BIN, args, {
    encoding: "utf8",
    env: { ...process.env, OPENMI_CONFIG_DIR: configDir, ...env },
    timeout,
    stdio: ["ignore", "pipe", "pipe"],
  });
  const out = {
    args,
    code: res.status,
    stdout: res.stdout ?? "",
    stderr: res.stderr ?? "",
    describe() {
      return `\`openmi ${args.join(" ")}\` -> ${this.code}\nstdout: ${this.stdout.slice(-2000)}\nstderr: ${this.stderr.slice(-2000)}`;
    },
    json() {
      try {
        return JSON.parse(this.stdout);
      } catch (error) {
        throw new Error(`not JSON (${error.message}): ${this.describe()}`);
      }
    },
  };
  if (check && out.code !== 0) {
    throw new Error(out.describe());
  }
  return out;
}

/** A CLI config dir signed in to `server` as its bootstrap service principal. */
export function cliLoginSp(server) {
  const dir = newDir("cli");
  runCli(dir, [
    "login", "--server", server.url, "--service-principal", "--username", server.clientId,
    "--password", server.clientSecret, "--tenant", server.tenantId, "--ca-cert", server.caCertPath,
  ]);
  return dir;
}

/** `openmi vm run -g RG -n VM [--protocol P] -- node WORKLOAD SPEC`: the workload's JSON output. */
export async function vmRun(cliDir, rg, vm, workload, spec, { protocol, env = {}, timeout = 90_000 } = {}) {
  const args = ["vm", "run", "-g", rg, "-n", vm];
  if (protocol) args.push("--protocol", protocol);
  args.push("--", process.execPath, path.join(JS_ROOT, "workloads", workload), JSON.stringify(spec));
  const childEnv = { ...process.env };
  for (const name of CREDENTIAL_ENV_VARS) delete childEnv[name];
  Object.assign(childEnv, { OPENMI_CONFIG_DIR: cliDir }, env);
  const { code, stdout, stderr } = await new Promise((resolve, reject) => {
    const proc = spawn(OPENMI_BIN, args, { env: childEnv, cwd: JS_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let stdoutText = "";
    let stderrText = "";
    proc.stdout.on("data", (chunk) => (stdoutText += chunk));
    proc.stderr.on("data", (chunk) => (stderrText += chunk));
    const timer = setTimeout(() => proc.kill("SIGKILL"), timeout);
    proc.on("error", reject);
    proc.on("close", (exitCode) => {
      clearTimeout(timer);
      resolve({ code: exitCode, stdout: stdoutText, stderr: stderrText });
    });
  });
  const describe = `\`openmi ${args.join(" ")}\` -> ${code}\nstdout: ${stdout.slice(-3000)}\nstderr: ${stderr.slice(-3000)}`;
  if (code !== 0) throw new Error(describe);
  const line = stdout.split("\n").filter((l) => l.startsWith("{")).pop();
  if (!line) throw new Error(`the workload printed no JSON: ${describe}`);
  return JSON.parse(line);
}

// ------------------------------------------------------------------------------------------------
// tokens

/** The claims of a JWT, unverified (the tests that verify use jose on the published keys). */
export function unverifiedClaims(token) {
  return JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString("utf8"));
}

/** A raw client-credentials request; the parsed OAuth answer with its status. */
export async function postToken(server, form, { version = 2, tenant } = {}) {
  const tenantPart = tenant ?? server.tenantId;
  const endpoint = version === 2 ? `/${tenantPart}/oauth2/v2.0/token` : `/${tenantPart}/oauth2/token`;
  return server.request("POST", endpoint, {
    body: new URLSearchParams(form).toString(),
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
  });
}

/** A token of the bootstrap service principal (Owner of the subscription) for `scope`. */
export async function bootstrapToken(server, scope = ARM_SCOPE) {
  const res = await postToken(server, {
    grant_type: "client_credentials", client_id: server.clientId, client_secret: server.clientSecret, scope,
  });
  if (res.status !== 200) throw new Error(`bootstrap token: HTTP ${res.status}: ${res.text}`);
  return res.json.access_token;
}

// ------------------------------------------------------------------------------------------------
// service principals through the Graph-shaped API

/**
 * A new application + service principal + client secret, made by the bootstrap SP through
 * `POST /v1.0/applications`, `POST /v1.0/servicePrincipals` and `addPassword`.
 */
export async function createServicePrincipal(server, name = uniqueName("js-sp")) {
  const token = await bootstrapToken(server, GRAPH_SCOPE);
  const app = await server.request("POST", "/v1.0/applications", { token, body: { displayName: name } });
  if (app.status !== 201 && app.status !== 200) throw new Error(`POST /v1.0/applications: ${app.status} ${app.text}`);
  const sp = await server.request("POST", "/v1.0/servicePrincipals", { token, body: { appId: app.json.appId } });
  if (sp.status !== 201 && sp.status !== 200) throw new Error(`POST /v1.0/servicePrincipals: ${sp.status} ${sp.text}`);
  const secret = await server.request("POST", `/v1.0/applications/${app.json.id}/addPassword`, {
    token, body: { passwordCredential: { displayName: "node" } },
  });
  if (secret.status !== 200 && secret.status !== 201) throw new Error(`addPassword: ${secret.status} ${secret.text}`);
  return { appId: app.json.appId, appObjectId: app.json.id, objectId: sp.json.id, secret: secret.json.secretText, displayName: name };
}

/** An RSA key and a self-signed certificate (openssl), as PEM files and strings. */
export function makeCertificate(commonName = "openmi-js-test") {
  const dir = newDir("cert");
  const keyPath = path.join(dir, "key.pem");
  const certPath = path.join(dir, "cert.pem");
  const res = spawnSync("openssl", [
    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", keyPath, "-out", certPath,
    "-days", "30", "-subj", `/CN=${commonName}`,
  ], { encoding: "utf8" });
  if (res.status !== 0) throw new Error(`openssl req failed: ${res.stderr}`);
  const keyPem = fs.readFileSync(keyPath, "utf8");
  const certPem = fs.readFileSync(certPath, "utf8");
  const combinedPath = path.join(dir, "combined.pem");
  fs.writeFileSync(combinedPath, keyPem + certPem);
  const der = new crypto.X509Certificate(certPem).raw;
  return {
    keyPath, certPath, combinedPath, keyPem, certPem, der,
    thumbprintSha1: crypto.createHash("sha1").update(der).digest("hex").toUpperCase(),
    thumbprintSha256: crypto.createHash("sha256").update(der).digest("hex").toUpperCase(),
  };
}

// ------------------------------------------------------------------------------------------------
// ARM errors as the JS clients raise them

/** The ARM error code of a RestError from @azure/core-rest-pipeline (from the envelope). */
export function armErrorCode(error) {
  if (error?.code && typeof error.code === "string" && !error.code.startsWith("ERR_")) return error.code;
  return armErrorBody(error)?.code;
}

/**
 * The `error` object of the ARM envelope a RestError carries ({} when none). The core-client
 * generation (@azure/arm-resources, -msi, -authorization) keeps the body as `bodyAsText`; the
 * TypeSpec generation (@azure/arm-compute 24, @typespec/ts-http-runtime's createRestError) parses
 * it and keeps only the envelope's `code` and `message` on the error itself.
 */
export function armErrorBody(error) {
  const body = error?.response?.bodyAsText;
  if (body === undefined && error?.code && error?.message) {
    return { code: error.code, message: error.message };
  }
  try {
    return JSON.parse(body).error ?? {};
  } catch {
    return {};
  }
}

export function describeError(error) {
  const status = error?.statusCode ?? error?.status;
  const req = error?.request;
  return `${error?.name}: ${error?.message} (HTTP ${status} ${req?.method} ${req?.url}: ${error?.response?.bodyAsText?.slice(0, 600)})`;
}

const AUTHZ_FAILED_RE = /^The client '([^']*)' with object id '([^']*)' does not have authorization to perform action '([^']*)' over scope '([^']*)' or the scope is invalid\./;

/** The parts of Azure's AuthorizationFailed message: client, object id, action, scope. */
export function parseAuthorizationFailed(message) {
  const match = AUTHZ_FAILED_RE.exec(message ?? "");
  return match ? { client: match[1], objectId: match[2], action: match[3], scope: match[4] } : null;
}

/** Awaits `promise`, expecting a RestError; returns it. */
export async function rejects(promise) {
  try {
    const value = await promise;
    throw new Error(`expected an error, got ${JSON.stringify(value)?.slice(0, 300)}`);
  } catch (error) {
    if (error?.message?.startsWith("expected an error")) throw error;
    return error;
  }
}
