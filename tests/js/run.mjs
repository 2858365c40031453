// The JavaScript compatibility suite's runner (issue 14): makes the run's test CA, then runs
// every tests/js/test/*.test.mjs with Node's built-in test runner once per storage backend
// (SQLite, PostgreSQL), each file starting the real openmi server it needs.
//
// Node reads NODE_EXTRA_CA_CERTS once, at start-up, and the SDKs' HTTPS clients trust what it
// names, as a user would point Node at openmi's `DIR/tls/ca.pem`. So the CA exists before the
// test processes start: a first server creates it in its data dir (openmi's own local CA), and
// every server of the run gets a copy of it in `DIR/tls/`, from which it issues its certificate.
//
// Usage: node run.mjs [file filter...]; OPENMI_TEST_BACKENDS=sqlite,postgres (default both).

import { spawn } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, "..", "..");
const bin = process.env.OPENMI_BIN || path.join(repoRoot, "target", "debug", "openmi");
const backends = (process.env.OPENMI_TEST_BACKENDS || "sqlite,postgres").split(",").filter(Boolean);
const filters = process.argv.slice(2);

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Starts a server on a scratch data dir until its CA files exist, then stops it. */
async function makeCa(dir) {
  const dataDir = path.join(dir, "ca-server");
  fs.mkdirSync(dataDir, { recursive: true });
  const log = fs.openSync(path.join(dataDir, "server.log"), "a");
  const proc = spawn(bin, ["server", "--data-dir", dataDir, "--listen", "127.0.0.1:0"], { stdio: ["ignore", log, log] });
  fs.closeSync(log);
  const boot = path.join(dataDir, "bootstrap.json");
  const deadline = Date.now() + 60_000;
  while (!fs.existsSync(boot)) {
    if (proc.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the CA server did not start: ${fs.readFileSync(path.join(dataDir, "server.log"), "utf8")}`);
    }
    await sleep(100);
  }
  proc.kill("SIGTERM");
  await new Promise((resolve) => (proc.exitCode !== null ? resolve() : proc.once("exit", resolve)));
  const caDir = path.join(dir, "ca");
  fs.mkdirSync(caDir, { recursive: true, mode: 0o700 });
  for (const file of ["ca.pem", "ca.key"]) {
    fs.copyFileSync(path.join(dataDir, "tls", file), path.join(caDir, file));
  }
  return caDir;
}

function testFiles() {
  const dir = path.join(here, "test");
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith(".test.mjs"))
    .filter((name) => filters.length === 0 || filters.some((f) => name.includes(f)))
    .sort()
    .map((name) => path.join("test", name));
}

function runNodeTest(backend, caDir, tmp, files) {
  const env = {
    ...process.env,
    OPENMI_BIN: bin,
    OPENMI_TEST_BACKEND: backend,
    OPENMI_TEST_CA_DIR: caDir,
    OPENMI_TEST_TMP: tmp,
    NODE_EXTRA_CA_CERTS: path.join(caDir, "ca.pem"),
  };
  const args = ["--test", "--test-concurrency=2", "--test-reporter=spec", ...files];
  return new Promise((resolve) => {
    const proc = spawn(process.execPath, args, { cwd: here, env, stdio: "inherit" });
    proc.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "openmi-js-"));
let failed = false;
try {
  const caDir = await makeCa(tmp);
  const files = testFiles();
  if (files.length === 0) {
    console.error("no test files matched");
    process.exit(1);
  }
  for (const backend of backends) {
    console.log(`\n==> node --test (${backend}): ${files.length} files`);
    fs.mkdirSync(path.join(tmp, backend), { recursive: true });
    const code = await runNodeTest(backend, caDir, path.join(tmp, backend), files);
    if (code !== 0) {
      console.log(`==> node --test (${backend}) FAILED (exit ${code}); logs under ${tmp}`);
      failed = true;
    }
  }
} catch (error) {
  console.error(error);
  failed = true;
}
if (!failed && !process.env.OPENMI_TEST_KEEP) fs.rmSync(tmp, { recursive: true, force: true });
if (process.env.OPENMI_TEST_KEEP) console.log(`==> logs kept under ${tmp}`);
process.exit(failed ? 1 : 0);
