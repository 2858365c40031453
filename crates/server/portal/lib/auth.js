// Sign-in as a public client: OAuth 2.0 authorization code with PKCE (RFC 7636, S256) against
// the server's Entra-shaped authorize and token endpoints, exactly as MSAL.js does for a
// single-page app. Tokens live in sessionStorage (this tab only); sign-out clears them and sends
// the browser to the logout endpoint, which ends the server's sign-in session.

const STORE = "openmi.portal.";
const PENDING = `${STORE}pending`;
const TOKENS = `${STORE}tokens`;
// Refresh this long before the access token expires.
const REFRESH_MARGIN_MS = 120_000;

let config = null;
let refreshing = null;

/** `GET /portal/config.json`: tenant, client id, authority, resource, redirect URI, scopes. */
export async function loadConfig() {
  const res = await fetch("config.json", { cache: "no-store" });
  if (!res.ok) throw new Error(`config.json: HTTP ${res.status}`);
  config = await res.json();
  return config;
}

export function getConfig() {
  return config;
}

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function randomString(byteCount = 32) {
  return base64url(crypto.getRandomValues(new Uint8Array(byteCount)));
}

/** The claims of a JWT (the id_token came straight from the token endpoint over TLS). */
export function jwtClaims(token) {
  const part = token.split(".")[1] ?? "";
  const padded = part.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((part.length + 3) % 4);
  const bytes = Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** Sends the browser to the authorize endpoint; the hash to come back to is kept. */
export async function signIn({ loginHint } = {}) {
  const verifier = randomString(48);
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  const state = randomString(16);
  const nonce = randomString(16);
  const returnHash = location.hash && location.hash !== "#" ? location.hash : "#/home";
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, nonce, returnHash }));
  const params = new URLSearchParams({
    client_id: config.clientId,
    response_type: "code",
    redirect_uri: config.redirectUri,
    scope: config.scopes,
    state,
    nonce,
    code_challenge: challenge,
    code_challenge_method: "S256",
    response_mode: "query",
  });
  if (loginHint) params.set("login_hint", loginHint);
  location.assign(`${config.authority}/oauth2/v2.0/authorize?${params}`);
}

/** An OAuth failure in Entra's words (`error`, `error_description`). */
export class SignInError extends Error {
  constructor(code, description) {
    super(description || code);
    this.code = code;
    this.description = description;
  }
}

async function tokenRequest(form) {
  const res = await fetch(`${config.authority}/oauth2/v2.0/token`, {
    method: "POST",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ client_id: config.clientId, scope: config.scopes, ...form }),
  });
  let body = null;
  try {
    body = await res.json();
  } catch {
    // a non-JSON answer is reported below
  }
  if (!res.ok || !body?.access_token) {
    throw new SignInError(body?.error ?? `HTTP ${res.status}`, body?.error_description ?? "The token endpoint did not return a token.");
  }
  return body;
}

function store(body, nonce) {
  const previous = readTokens();
  const idToken = body.id_token ?? previous?.idToken;
  const idClaims = idToken ? jwtClaims(idToken) : previous?.idClaims ?? {};
  if (nonce !== undefined && idClaims.nonce !== nonce) {
    throw new SignInError("invalid_nonce", "The id_token's nonce does not match the sign-in request.");
  }
  const tokens = {
    accessToken: body.access_token,
    refreshToken: body.refresh_token ?? previous?.refreshToken,
    idToken,
    idClaims,
    expiresAt: Date.now() + Number(body.expires_in ?? 3600) * 1000,
  };
  sessionStorage.setItem(TOKENS, JSON.stringify(tokens));
  return tokens;
}

function readTokens() {
  try {
    return JSON.parse(sessionStorage.getItem(TOKENS) ?? "null");
  } catch {
    return null;
  }
}

/**
 * Finishes a sign-in when the URL carries `?code=&state=` (or `?error=`): checks the state,
 * redeems the code with the PKCE verifier, checks the nonce, and puts the saved hash back.
 * Returns "signed-in", "none" (no redirect to handle), or throws a SignInError.
 */
export async function handleRedirect() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return "none";
  const pending = JSON.parse(sessionStorage.getItem(PENDING) ?? "null");
  sessionStorage.removeItem(PENDING);
  const cleanUrl = `${location.pathname}${pending?.returnHash ?? "#/home"}`;
  history.replaceState(null, "", cleanUrl);
  if (!pending || params.get("state") !== pending.state) {
    throw new SignInError("invalid_state", "The sign-in answer does not belong to a sign-in this tab started.");
  }
  if (params.has("error")) {
    throw new SignInError(params.get("error"), params.get("error_description") ?? "");
  }
  const body = await tokenRequest({
    grant_type: "authorization_code",
    code: params.get("code"),
    redirect_uri: config.redirectUri,
    code_verifier: pending.verifier,
  });
  store(body, pending.nonce);
  return "signed-in";
}

/** Whether this tab holds tokens (possibly expired; `accessToken()` refreshes). */
export function isSignedIn() {
  return Boolean(readTokens()?.accessToken);
}

/** The signed-in user from the id_token: name, preferred_username, oid, tid. */
export function currentUser() {
  const claims = readTokens()?.idClaims ?? {};
  return { name: claims.name, username: claims.preferred_username, oid: claims.oid, tenantId: claims.tid };
}

/** A valid access token, refreshed with the refresh token when it is near expiry. */
export async function accessToken({ force = false } = {}) {
  const tokens = readTokens();
  if (!tokens) throw new SignInError("not_signed_in", "You are not signed in.");
  if (!force && tokens.expiresAt - Date.now() > REFRESH_MARGIN_MS) return tokens.accessToken;
  if (!tokens.refreshToken) {
    if (tokens.expiresAt > Date.now()) return tokens.accessToken;
    throw new SignInError("interaction_required", "Your session has expired. Sign in again.");
  }
  refreshing ??= tokenRequest({ grant_type: "refresh_token", refresh_token: tokens.refreshToken })
    .then((body) => store(body).accessToken)
    .catch((error) => {
      // The refresh token was refused (expired, revoked, the session ended): sign in again,
      // coming back to this page.
      if (error instanceof SignInError && /^(invalid_grant|interaction_required)$/.test(error.code)) {
        sessionStorage.removeItem(TOKENS);
        signIn();
      }
      throw error;
    })
    .finally(() => {
      refreshing = null;
    });
  return refreshing;
}

/** Clears this tab's tokens and ends the server's session through its logout endpoint. */
export function signOut() {
  sessionStorage.clear();
  const params = new URLSearchParams({ post_logout_redirect_uri: config.redirectUri });
  location.assign(`${config.authority}/oauth2/v2.0/logout?${params}`);
}
