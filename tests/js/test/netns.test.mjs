// Node code with no configuration at all (issue 14, as tests/py/test_agent_netns.py for Python):
// in a network namespace made by the test, with 169.254.169.254 on its loopback interface, the
// agent listens on 169.254.169.254:80, and unmodified @azure/identity - `ManagedIdentityCredential()`
// (which first probes IMDS with a header-less GET and a 1 s timeout), `DefaultAzureCredential()`
// and `ManagedIdentityCredential({clientId})` - gets tokens with no AZURE_* or IDENTITY_* variable,
// and @azure/arm-resources reads the group.
//
// The server runs inside the namespace too, so the agent reaches it without routing; that makes
// the test SQLite-only (the PostgreSQL server listens in the host's namespace). The admin's calls
// go through the openmi CLI inside the namespace. Needs root for `ip netns add`; skipped otherwise.

import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { test } from "node:test";

import { ARM, BACKEND, CA_DIR, JS_ROOT, OPENMI_BIN, logged, newDir, sleep, tail, uniqueName, unverifiedClaims } from "../lib/support.mjs";

const NS_PORT = 8443; // the namespace is empty: any port is free in it

function inNs(ns, command, { env = process.env, timeout = 60_000 } = {}) {
  return spawnSync("ip", ["netns", "exec", ns, ...command], { encoding: "utf8", env, timeout, stdio: ["ignore", "pipe", "pipe"] });
}

/** A fresh namespace with lo up and 169.254.169.254/32 on it, or the reason there is none. */
function makeNamespace() {
  const name = `openmi-js-${crypto.randomBytes(4).toString("hex")}`;
  const add = spawnSync("ip", ["netns", "add", name], { encoding: "utf8" });
  if (add.error || add.status !== 0) {
    return { skip: `cannot create a network namespace here (ip netns add: ${add.error?.message ?? add.stderr.trim()}); needs root` };
  }
  for (const command of [["ip", "link", "set", "lo", "up"], ["ip", "addr", "add", "169.254.169.254/32", "dev", "lo"]]) {
    const res = inNs(name, command);
    assert.equal(res.status, 0, `${command.join(" ")} in ${name}: ${res.stderr}`);
  }
  return { name, remove: () => spawnSync("ip", ["netns", "del", name]) };
}

/** Starts a process in the namespace with its output in `logPath`; `stop()` ends it with SIGTERM. */
function startInNs(ns, command, logPath) {
  const log = fs.openSync(logPath, "a");
  const proc = spawn("ip", ["netns", "exec", ns, ...command], { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  return {
    proc,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((resolve) => proc.once("exit", resolve));
      proc.kill("SIGTERM");
      await Promise.race([exited, sleep(10_000).then(() => proc.kill("SIGKILL"))]);
    },
  };
}

async function waitFor(what, check, logPath, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const value = check();
    if (value) return value;
    await sleep(200);
  }
  throw new Error(`${what} not ready within ${timeoutMs} ms; log tail:\n${tail(logPath)}`);
}

const skip = BACKEND !== "sqlite" ? "the namespaced server runs on SQLite only" : false;

test("no configuration at all: ManagedIdentityCredential() and DefaultAzureCredential() on 169.254.169.254:80", { skip }, logged(async (t) => {
  const ns = makeNamespace();
  if (ns.skip) {
    t.skip(ns.skip);
    return;
  }
  const started = [];
  try {
    // The server in the namespace, with this run's CA (the workload trusts it through NODE_EXTRA_CA_CERTS).
    const dataDir = newDir("ns-server");
    fs.mkdirSync(path.join(dataDir, "tls"), { recursive: true });
    for (const file of ["ca.pem", "ca.key"]) fs.copyFileSync(path.join(CA_DIR, file), path.join(dataDir, "tls", file));
    const serverLog = path.join(dataDir, "server.log");
    const url = `https://127.0.0.1:${NS_PORT}`;
    started.push(startInNs(ns.name, [OPENMI_BIN, "server", "--data-dir", dataDir, "--listen", `127.0.0.1:${NS_PORT}`], serverLog));
    const boot = await waitFor("the namespaced server", () => {
      try {
        const parsed = JSON.parse(fs.readFileSync(path.join(dataDir, "bootstrap.json"), "utf8"));
        const health = inNs(ns.name, ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", parsed.caCertPath, `${url}/healthz`], { timeout: 10_000 });
        return health.stdout.trim() === "200" ? parsed : null;
      } catch {
        return null;
      }
    }, serverLog);

    // The admin, with the CLI inside the namespace: seed 002's steps.
    const cliEnv = { ...process.env, OPENMI_CONFIG_DIR: newDir("ns-cli") };
    const cli = (...args) => {
      const res = inNs(ns.name, [OPENMI_BIN, ...args], { env: cliEnv });
      assert.equal(res.status, 0, `openmi ${args.join(" ")} -> ${res.status}\n${res.stdout}\n${res.stderr}`);
      return res.stdout.trim() ? JSON.parse(res.stdout) : null;
    };
    cli("login", "--server", url, "--service-principal", "--username", boot.clientId, "--password", boot.clientSecret,
      "--tenant", boot.tenantId, "--ca-cert", boot.caCertPath);
    const rg = uniqueName("nsrg");
    cli("group", "create", "-n", rg, "-l", "westus");
    const identity = cli("identity", "create", "-g", rg, "-n", "ID1");
    cli("vm", "create", "-g", rg, "-n", "myVM", "--assign-identity", "ID1");
    const rgId = `/subscriptions/${boot.subscriptionId}/resourceGroups/${rg}`;
    cli("role", "assignment", "create", "--assignee-object-id", identity.principalId, "--assignee-principal-type", "ServicePrincipal",
      "--role", "Reader", "--scope", rgId);
    const joinToken = cli("vm", "join-token", "-g", rg, "-n", "myVM").joinToken;

    // The agent on the address every SDK knows.
    const agentDir = newDir("ns-agent");
    const agentLog = path.join(agentDir, "agent.log");
    const readyFile = path.join(agentDir, "ready");
    started.push(startInNs(ns.name, [OPENMI_BIN, "agent", "--server", url, "--ca-cert", boot.caCertPath, "--state-dir", path.join(agentDir, "state"),
      "--join-token", joinToken, "--listen", "169.254.169.254:80", "--ready-file", readyFile], agentLog));
    const agentUrl = await waitFor("the agent", () => (fs.existsSync(readyFile) ? fs.readFileSync(readyFile, "utf8").trim() : null), agentLog);
    assert.match(agentUrl, /169\.254\.169\.254/);

    // The workload: PATH, HOME and the CA for the https ARM call, nothing else.
    const env = { PATH: process.env.PATH, HOME: newDir("ns-home"), NODE_EXTRA_CA_CERTS: boot.caCertPath };
    const run = (spec) => {
      const res = inNs(ns.name, [process.execPath, path.join(JS_ROOT, "workloads", "identity.mjs"), JSON.stringify(spec)], { env, timeout: 120_000 });
      assert.equal(res.status, 0, `workload -> ${res.status}\n${res.stdout}\n${res.stderr}`);
      return JSON.parse(res.stdout.trim().split("\n").pop());
    };
    for (const spec of [{}, { credential: "default" }, { clientId: identity.clientId, group: rg, subscription: boot.subscriptionId, endpoint: url }]) {
      const out = run(spec);
      assert.deepEqual(Object.values(out.env).filter((v) => v !== null), [], JSON.stringify(out.env));
      assert.ok(out.token, `${JSON.stringify(spec)}: ${JSON.stringify(out)}`);
      const claims = unverifiedClaims(out.token);
      assert.equal(claims.oid, identity.principalId);
      assert.equal(claims.appid, identity.clientId);
      assert.equal(claims.xms_mirid.toLowerCase(), identity.id.toLowerCase());
      assert.equal(claims.aud, ARM);
      assert.equal(claims.iss, `${url}/${boot.tenantId}/`);
      if (spec.group) {
        assert.deepEqual(out.group, { id: rgId, name: rg, location: "westus", provisioningState: "Succeeded" }, JSON.stringify(out));
      }
    }
  } finally {
    for (const child of started.reverse()) await child.stop();
    ns.remove();
  }
}));
