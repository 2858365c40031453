// Metrics (issue 20), the JavaScript twin of tests/py/test_metrics.py: @azure/identity tokens
// (ClientSecretCredential, UsernamePasswordCredential, a wrong secret and a wrong password),
// @azure/arm-resources writes and reads, a managed identity inside `openmi vm run`, then the
// server's and the agent's /metrics read in the Prometheus text format (a minimal parser here,
// no package) and every counter checked against what was done; `/livez`, and `/readyz` answering
// 503 while PostgreSQL is unreachable through a TCP proxy of the test.

import assert from "node:assert/strict";
import net from "node:net";
import { after, before, describe, test } from "node:test";

import { ClientSecretCredential, UsernamePasswordCredential } from "@azure/identity";
import { ResourceManagementClient } from "@azure/arm-resources";

import {
  ARM_SCOPE,
  AZ_CLI_CLIENT_ID,
  BACKEND,
  GRAPH_SCOPE,
  PG_URL,
  cliLoginSp,
  freePort,
  logged,
  newPgSchema,
  postToken,
  rejects,
  sleep,
  startServer,
  uniqueName,
  vmRun,
} from "../lib/support.mjs";
import { armClients, clientOptions, secretCredential, timed, vmBody } from "../lib/arm.mjs";

const PROMETHEUS_TEXT = "text/plain; version=0.0.4";

/** A sample value of the text format: a float, `+Inf`, `-Inf` or `NaN`. */
function sampleValue(text) {
  if (text === "+Inf") return Infinity;
  if (text === "-Inf") return -Infinity;
  return Number(text);
}

/**
 * The Prometheus text format (version 0.0.4), read as far as the tests need: `# TYPE` lines and
 * sample lines `name{label="value",...} value [timestamp]`, with label values unescaped.
 */
function parseMetrics(text) {
  const types = {};
  const samples = [];
  for (const line of text.split("\n")) {
    if (!line.trim()) continue;
    if (line.startsWith("#")) {
      const type = /^# TYPE (\S+) (\S+)$/.exec(line);
      if (type) types[type[1]] = type[2];
      continue;
    }
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    assert.ok(sample, `not a sample line: ${line}`);
    const labels = {};
    for (const [, name, value] of (sample[2] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[name] = value.replace(/\\(.)/g, (_, c) => (c === "n" ? "\n" : c));
    }
    const value = sampleValue(sample[3]);
    assert.ok(!Number.isNaN(value) || sample[3] === "NaN", `not a value: ${line}`);
    samples.push({ name: sample[1], labels, value });
  }
  return {
    text,
    types,
    samples,
    /** The sum of the samples named `name` whose labels include `labels` (0 if none). */
    value(name, labels = {}) {
      return samples
        .filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))
        .reduce((sum, s) => sum + s.value, 0);
    },
    delta(before, name, labels = {}) {
      return this.value(name, labels) - before.value(name, labels);
    },
  };
}

async function scrape(url) {
  const res = await fetch(`${url}/metrics`);
  const text = await res.text();
  assert.equal(res.status, 200, text.slice(0, 300));
  assert.ok(res.headers.get("content-type").startsWith(PROMETHEUS_TEXT), res.headers.get("content-type"));
  return parseMetrics(text);
}

/** fetch() every `intervalMs` until done(result) or `timeoutMs`; the last result. */
async function waitFor(fetchIt, done, timeoutMs, intervalMs = 100) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const result = await fetchIt();
    if (done(result) || Date.now() >= deadline) return result;
    await sleep(intervalMs);
  }
}

function checkDeltas(after, before, expected) {
  const wrong = expected
    .map(([name, labels, want]) => [name, labels, want, after.delta(before, name, labels)])
    .filter(([, , want, got]) => want !== got);
  assert.deepEqual(wrong, [], `${JSON.stringify(wrong)}\n${after.text}`);
}

describe("the server's /metrics", () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test("tokens, ARM calls, failed sign-ins and group commits move their counters by what was done", logged(async () => {
    assert.equal((await fetch(`${server.url}/livez`)).status, 200);
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    const before = await scrape(server.url);
    for (const [name, type] of [
      ["openmi_http_requests_total", "counter"], ["openmi_http_request_duration_seconds", "histogram"],
      ["openmi_tokens_minted_total", "counter"], ["openmi_sign_in_failures_total", "counter"],
      ["openmi_store_write_batch_size", "histogram"], ["openmi_store_commit_seconds", "histogram"],
      ["openmi_rbac_assignments", "gauge"], ["openmi_cache_entries", "gauge"], ["openmi_agents_connected", "gauge"],
    ]) {
      assert.equal(before.types[name], type, `${name}: ${JSON.stringify(before.types)}`);
    }

    // ARM as a service principal: its token (the client's bearer policy asks once and keeps it),
    // a group created (one group commit) and read.
    const credential = secretCredential(server);
    const resource = new ResourceManagementClient(credential, server.subscriptionId, clientOptions(server));
    const rg = uniqueName("jsmetrics");
    await resource.resourceGroups.createOrUpdate(rg, { location: "westus" });
    assert.equal((await resource.resourceGroups.get(rg)).name, rg);
    // A wrong client secret.
    const wrongSecret = new ClientSecretCredential(server.tenantId, server.clientId, `${server.clientSecret}x`, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    assert.ok(await rejects(wrongSecret.getToken(ARM_SCOPE)));
    // A user (ROPC), a token for another resource from its refresh token, then a wrong password.
    const user = new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, server.adminUsername, server.adminPassword, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    await user.getToken(ARM_SCOPE);
    await user.getToken(GRAPH_SCOPE);
    const wrongPassword = new UsernamePasswordCredential(server.tenantId, AZ_CLI_CLIENT_ID, server.adminUsername, `${server.adminPassword}x`, {
      authorityHost: server.url,
      disableInstanceDiscovery: true,
    });
    assert.ok(await rejects(wrongPassword.getToken(ARM_SCOPE)));

    const after = await scrape(server.url);
    const token = (status) => ({ family: "token", status });
    checkDeltas(after, before, [
      ["openmi_tokens_minted_total", { kind: "client_credentials" }, 1],
      ["openmi_tokens_minted_total", { kind: "password" }, 1],
      ["openmi_tokens_minted_total", { kind: "refresh_token" }, 1],
      ["openmi_tokens_minted_total", {}, 3],
      ["openmi_sign_in_failures_total", { kind: "client_credentials", reason: "invalid_client" }, 1],
      ["openmi_sign_in_failures_total", { kind: "password", reason: "invalid_user_credentials" }, 1],
      ["openmi_sign_in_failures_total", {}, 2],
      ["openmi_http_requests_total", token("200"), 3],
      ["openmi_http_requests_total", token("401"), 1],
      ["openmi_http_requests_total", token("400"), 1],
      ["openmi_http_request_duration_seconds_count", { family: "token" }, 5],
      ["openmi_http_request_duration_seconds_bucket", { family: "token", le: "+Inf" }, 5],
      ["openmi_http_requests_total", { family: "arm", status: "201" }, 1],
      ["openmi_http_requests_total", { family: "arm", status: "200" }, 1],
      ["openmi_http_requests_total", { family: "metrics", status: "200" }, 1],
    ]);
    const batches = after.delta(before, "openmi_store_write_batch_size_count");
    assert.ok(batches >= 1, after.text);
    assert.ok(after.delta(before, "openmi_store_write_batch_size_sum") >= batches);
    assert.equal(after.delta(before, "openmi_store_commit_seconds_count"), batches);
    assert.ok(after.value("openmi_rbac_assignments") >= 2, after.text);
    assert.ok(after.value("openmi_cache_entries", { cache: "bearer_tokens" }) >= 1, after.text);
    // The sign-ins above reach the audit log through the batch appender (within its 50 ms).
    let audited = after;
    for (let i = 0; i < 100 && audited.delta(before, "openmi_audit_records_total", { outcome: "appended" }) < 5; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      audited = await scrape(server.url);
    }
    assert.ok(audited.delta(before, "openmi_audit_records_total", { outcome: "appended" }) >= 5, audited.text);
    assert.equal(audited.value("openmi_audit_records_total", { outcome: "dropped" }), 0);
    // Labels are route families, never paths or names.
    const leaked = after.samples.filter((s) => Object.values(s.labels).some((v) => v.startsWith("/") || v.includes(rg)));
    assert.deepEqual(leaked, []);
  }));

  test("a managed identity inside `openmi vm run`: the agent's /metrics and the server's", logged(async () => {
    const arm = await armClients(server);
    const rg = uniqueName("jsmetrics");
    await arm.resource.resourceGroups.createOrUpdate(rg, { location: "westus" });
    await timed(arm.compute.virtualMachines.createOrUpdate(rg, "vm1", vmBody(server, "vm1", { identity: { type: "SystemAssigned" } })));
    const cli = cliLoginSp(server);

    const before = await scrape(server.url);
    const out = await vmRun(cli, rg, "vm1", "metrics.mjs", { burst: 40 });
    assert.ok(out.token, JSON.stringify(out));
    assert.deepEqual(out.again, [200, 200], JSON.stringify(out));
    assert.equal(out.metricsStatus, 200);
    assert.ok(out.metricsContentType.startsWith(PROMETHEUS_TEXT), out.metricsContentType);
    const burstOk = out.burst.filter((status) => status === 200).length;
    const burstThrottled = out.burst.filter((status) => status === 429).length;
    assert.ok(burstOk + burstThrottled === 40 && burstThrottled >= 1, JSON.stringify(out.burst));

    const onVm = parseMetrics(out.metrics);
    const served = 1 + 2 + burstOk;
    assert.equal(onVm.value("openmi_agent_token_cache_misses_total"), 1, onVm.text);
    assert.equal(onVm.value("openmi_agent_token_cache_hits_total"), served - 1, onVm.text);
    assert.equal(onVm.value("openmi_agent_token_refreshes_total"), 0, onVm.text);
    assert.equal(onVm.value("openmi_agent_throttled_requests_total"), burstThrottled, onVm.text);
    assert.equal(onVm.value("openmi_agent_requests_total", { route: "imds_token", status: "200" }), served, onVm.text);
    assert.equal(onVm.value("openmi_agent_requests_total", { route: "imds_token", status: "429" }), burstThrottled, onVm.text);
    assert.equal(onVm.value("openmi_agent_cached_tokens"), 1, onVm.text);
    assert.equal(onVm.value("openmi_agent_server_reachable"), 1, onVm.text);
    assert.ok(onVm.value("openmi_agent_server_calls_total", { outcome: "ok" }) >= 2, onVm.text);
    assert.equal(onVm.value("openmi_agent_server_calls_total", { outcome: "unreachable" }), 0, onVm.text);

    const after = await scrape(server.url);
    assert.equal(after.delta(before, "openmi_tokens_minted_total", { kind: "managed_identity" }), 1, after.text);
    assert.ok(after.delta(before, "openmi_http_requests_total", { family: "agent", status: "200" }) >= 2, after.text);
  }));
});

/** A TCP proxy on 127.0.0.1 to `target`; `stop` closes the listener and every connection. */
class TcpProxy {
  constructor(target, port) {
    this.target = target;
    this.port = port;
    this.sockets = new Set();
    this.listener = null;
  }

  async start() {
    this.listener = net.createServer((client) => {
      const upstream = net.connect(this.target);
      for (const socket of [client, upstream]) {
        this.sockets.add(socket);
        socket.on("error", () => {});
        socket.on("close", () => {
          this.sockets.delete(socket);
          client.destroy();
          upstream.destroy();
        });
      }
      client.pipe(upstream);
      upstream.pipe(client);
    });
    await new Promise((resolve, reject) => {
      this.listener.once("error", reject);
      this.listener.listen(this.port, "127.0.0.1", resolve);
    });
  }

  async stop() {
    const listener = this.listener;
    this.listener = null;
    for (const socket of this.sockets) socket.destroy();
    this.sockets.clear();
    if (listener) await new Promise((resolve) => listener.close(resolve));
  }
}

describe("readiness", () => {
  // The proxy stands for PostgreSQL going away, so this runs on the PostgreSQL pass only.
  test("/readyz answers 503 while PostgreSQL is unreachable, and 200 again when it is back", { skip: BACKEND !== "postgres" && "PostgreSQL pass only" }, logged(async () => {
    const pg = new URL(PG_URL);
    const proxy = new TcpProxy({ host: pg.hostname || "127.0.0.1", port: Number(pg.port || 5432) }, await freePort());
    await proxy.start();
    const schema = newPgSchema();
    let server;
    try {
      const throughProxy = new URL(schema.url);
      throughProxy.hostname = "127.0.0.1";
      throughProxy.port = String(proxy.port);
      server = await startServer({ databaseUrl: throughProxy.toString() });
      assert.equal((await fetch(`${server.url}/readyz`)).status, 200);

      await proxy.stop();
      const down = await waitFor(async () => {
        const res = await fetch(`${server.url}/readyz`);
        return { status: res.status, retryAfter: res.headers.get("retry-after"), text: await res.text() };
      }, (res) => res.status === 503, 15_000, 200);
      assert.equal(down.status, 503, JSON.stringify(down));
      assert.equal(down.retryAfter, "1");
      assert.match(down.text, /database/);
      assert.equal((await fetch(`${server.url}/livez`)).status, 200, "alive all the same");

      await proxy.start();
      const up = await waitFor(async () => (await fetch(`${server.url}/readyz`)).status, (status) => status === 200, 20_000, 200);
      assert.equal(up, 200);
      const res = await postToken(server, {
        grant_type: "client_credentials", client_id: server.clientId, client_secret: server.clientSecret, scope: ARM_SCOPE,
      });
      assert.equal(res.status, 200, res.text);
      const health = await scrape(server.url);
      assert.ok(health.value("openmi_http_requests_total", { family: "health", status: "503" }) >= 1, health.text);
    } finally {
      await server?.stop();
      await proxy.stop();
      schema.drop();
    }
  }));
});
