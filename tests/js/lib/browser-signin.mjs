#!/usr/bin/env node
// A person at a browser, for the interactive sign-in tests (issue 18): drives Debian's Chromium
// (headless, through playwright-core, which downloads no browser of its own) through openmi's
// sign-in pages exactly as a user would, by the pages' labels and button names.
//
//   node browser-signin.mjs <authorize-url>
//       opens the URL a client handed to "the browser", signs in (Username, Password, Sign in;
//       or "Continue as ..." when the page offers only that), and waits until the browser has
//       reached the client's redirect URI (its loopback listener, or a web app's page): exit 0.
//   node browser-signin.mjs --device <user-code> <verification-uri>
//       opens the code-entry page, enters the code (Code, Next), signs in, and waits for
//       "You have signed in": exit 0.
//
// Environment: OPENMI_SIGNIN_USERNAME, OPENMI_SIGNIN_PASSWORD (the account to sign in with),
// OPENMI_SIGNIN_SCREENSHOT (optional: a PNG of the last page), OPENMI_SIGNIN_TIMEOUT_MS (default
// 20000), OPENMI_CHROMIUM (default /usr/bin/chromium).
//
// On failure it exits 1 and prints the last page's URL and text on stderr. On success it prints
// one JSON line on stdout: {"url": <the last page's URL>, "arrived": <the request that reached the
// redirect URI, for the authorize flow>, "title", "steps": [...]}.
// The server's certificate comes from a local CA the browser does not know: the context ignores
// HTTPS errors, as a user clicking through the warning would.

import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "package.json"));
const { chromium } = require("playwright-core");

const CHROMIUM = process.env.OPENMI_CHROMIUM || "/usr/bin/chromium";
const TIMEOUT_MS = Number(process.env.OPENMI_SIGNIN_TIMEOUT_MS || 20_000);
const USERNAME = process.env.OPENMI_SIGNIN_USERNAME || "";
const PASSWORD = process.env.OPENMI_SIGNIN_PASSWORD || "";
const SCREENSHOT = process.env.OPENMI_SIGNIN_SCREENSHOT || "";

class SignInFailed extends Error {}

function usage() {
  console.error("usage: browser-signin.mjs <authorize-url>\n       browser-signin.mjs --device <user-code> <verification-uri>");
  process.exit(2);
}

const steps = [];
function step(text) {
  steps.push(text);
}

async function pageText(page) {
  try {
    return (await page.locator("body").innerText({ timeout: 2_000 })).trim();
  } catch {
    return "<no page text>";
  }
}

/** The error an openmi page shows: a `role=alert` message, or the error page's heading. */
async function pageError(page) {
  try {
    const alert = page.getByRole("alert");
    if (await alert.count()) return (await alert.first().innerText({ timeout: 1_000 })).trim();
    if (await page.getByText("having trouble signing you in").count()) return await pageText(page);
  } catch {
    // the page is navigating; look again on the next round
  }
  return null;
}

/** Waits until `done()` holds, failing at once when the page shows an error. */
async function until(page, what, done) {
  const deadline = Date.now() + TIMEOUT_MS;
  for (;;) {
    if (await done()) return;
    const error = await pageError(page);
    if (error) throw new SignInFailed(`${what}: the page shows an error: ${error}`);
    if (Date.now() > deadline) throw new SignInFailed(`${what}: not within ${TIMEOUT_MS} ms`);
    await page.waitForTimeout(100);
  }
}

/** The sign-in page: Username, Password, Sign in; or the "Continue as" button of a session. */
async function signIn(page) {
  const username = page.getByLabel("Username", { exact: true });
  const continueAs = page.getByRole("button", { name: /^Continue as / });
  await until(page, "the sign-in page", async () => (await username.count()) > 0 || (await continueAs.count()) > 0);
  if ((await continueAs.count()) > 0 && !USERNAME) {
    step(`clicked "${(await continueAs.innerText()).trim()}"`);
    await continueAs.click();
    return;
  }
  if (!USERNAME || !PASSWORD) throw new SignInFailed("OPENMI_SIGNIN_USERNAME and OPENMI_SIGNIN_PASSWORD are needed to sign in");
  await username.fill(USERNAME);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  step(`signed in as ${USERNAME}`);
  await page.getByRole("button", { name: "Sign in", exact: true }).click();
}

/** Same origin and path as the redirect URI (a loopback URI's port is part of its origin). */
function reached(current, redirectUri) {
  try {
    const a = new URL(current);
    const b = new URL(redirectUri);
    return a.origin === b.origin && a.pathname.replace(/\/$/, "") === b.pathname.replace(/\/$/, "");
  } catch {
    return false;
  }
}

async function authorizeFlow(page, authorizeUrl) {
  const redirectUri = new URL(authorizeUrl).searchParams.get("redirect_uri");
  if (!redirectUri) throw new SignInFailed(`the authorize URL names no redirect_uri: ${authorizeUrl}`);
  // The listener's answer is the last page; remember the request that reached it, whatever the
  // listener then shows (the browser's URL is the redirect URI with the code, or the form post).
  let arrived = null;
  page.on("request", (request) => {
    if (request.isNavigationRequest() && reached(request.url(), redirectUri)) arrived ??= request.url();
  });
  step(`opened ${new URL(authorizeUrl).pathname}`);
  await page.goto(authorizeUrl, { waitUntil: "domcontentloaded", timeout: TIMEOUT_MS });
  if (!arrived) await signIn(page);
  await until(page, `the redirect to ${redirectUri}`, async () => arrived !== null);
  step(`reached ${redirectUri}`);
  await page.waitForLoadState("load", { timeout: TIMEOUT_MS }).catch(() => {});
  return arrived;
}

async function deviceFlow(page, code, verificationUri) {
  step(`opened ${verificationUri}`);
  await page.goto(verificationUri, { waitUntil: "domcontentloaded", timeout: TIMEOUT_MS });
  await page.getByLabel("Code", { exact: true }).fill(code);
  step(`entered ${code}`);
  await page.getByRole("button", { name: "Next", exact: true }).click();
  await signIn(page);
  const done = page.getByText("You have signed in");
  await until(page, "the device sign-in confirmation", async () => (await done.count()) > 0);
  step("saw \"You have signed in\"");
}

async function main() {
  const args = process.argv.slice(2);
  let run;
  if (args[0] === "--device") {
    if (args.length !== 3) usage();
    run = (page) => deviceFlow(page, args[1], args[2]);
  } else {
    if (args.length !== 1) usage();
    run = (page) => authorizeFlow(page, args[0]);
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, timeout: TIMEOUT_MS });
  let page;
  let code = 0;
  try {
    const context = await browser.newContext({ ignoreHTTPSErrors: true });
    page = await context.newPage();
    page.setDefaultTimeout(TIMEOUT_MS);
    // `arrived`: the URL of the request that reached the redirect URI. A client's loopback
    // listener may close as soon as it has the code, leaving the browser on its own error page
    // (`url` is then chrome-error://...), so tests check `arrived`.
    const arrived = await run(page);
    console.log(JSON.stringify({ url: page.url(), arrived: arrived ?? null, title: await page.title().catch(() => ""), steps }));
  } catch (error) {
    code = 1;
    const url = page ? page.url() : "<no page>";
    const text = page ? await pageText(page) : "";
    console.error(`browser-signin: ${error.message}\nsteps: ${steps.join(" → ")}\nlast page: ${url}\n${text}`);
  } finally {
    if (SCREENSHOT && page) await page.screenshot({ path: SCREENSHOT, fullPage: true }).catch(() => {});
    await browser.close().catch(() => {});
  }
  process.exit(code);
}

main().catch((error) => {
  console.error(`browser-signin: ${error.stack || error}`);
  process.exit(1);
});
