// Calls to ARM (`/subscriptions/...`, `/tenants`) and Graph (`/v1.0/...`) on this origin with the
// signed-in user's token: api-versions per resource type, `nextLink` paging, long-running
// operations polled through `Azure-AsyncOperation` or `Location` (honouring `Retry-After`), and
// failures raised as `ApiError` carrying ARM's `{"error":{"code","message"}}`.
//
// No authorization decision is made here: whatever the user may not do, the server refuses.

import { accessToken } from "./auth.js";

/** The api-versions the portal speaks, by resource type (lower case). */
const API_VERSIONS = {
  "microsoft.resources/resourcegroups": "2021-04-01",
  "microsoft.resources/deployments": "2021-04-01",
  "microsoft.compute/virtualmachines": "2024-07-01",
  "microsoft.compute/virtualmachines/extensions": "2024-07-01",
  "microsoft.managedidentity/userassignedidentities": "2023-01-31",
  "microsoft.authorization/roleassignments": "2022-04-01",
  "microsoft.authorization/roledefinitions": "2022-04-01",
  "microsoft.documentdb/databaseaccounts": "2024-05-15",
  "microsoft.network/virtualnetworks": "2024-05-01",
  "microsoft.network/networkinterfaces": "2024-05-01",
  "microsoft.network/networksecuritygroups": "2024-05-01",
  "microsoft.network/publicipaddresses": "2024-05-01",
};
export const SUBSCRIPTIONS_API = "2022-12-01";
export const RESOURCES_API = "2021-04-01";

/** The api-version for a resource type such as `Microsoft.Compute/virtualMachines`. */
export function apiVersionFor(type) {
  const key = (type ?? "").toLowerCase();
  if (API_VERSIONS[key]) return API_VERSIONS[key];
  const parent = Object.keys(API_VERSIONS).find((known) => key.startsWith(`${known}/`));
  return parent ? API_VERSIONS[parent] : RESOURCES_API;
}

/** A failed call: HTTP status and ARM's (or Graph's) error code and message. */
export class ApiError extends Error {
  constructor(status, code, message, details) {
    super(message);
    this.status = status;
    this.code = code;
    this.details = details;
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function withApiVersion(path, apiVersion) {
  if (!apiVersion || /[?&]api-version=/.test(path)) return path;
  return `${path}${path.includes("?") ? "&" : "?"}api-version=${encodeURIComponent(apiVersion)}`;
}

async function parse(res) {
  const text = await res.text();
  if (!text) return null;
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

function failure(res, body) {
  const error = body && typeof body === "object" ? body.error ?? body : null;
  if (error && typeof error === "object" && (error.code || error.message)) {
    return new ApiError(res.status, error.code ?? `HTTP ${res.status}`, error.message ?? "", error.details);
  }
  return new ApiError(res.status, `HTTP ${res.status}`, typeof body === "string" && body ? body.slice(0, 500) : res.statusText || "The request failed.");
}

/** One authenticated request; retried once with a refreshed token on 401. */
export async function send(method, url, { body, headers = {} } = {}) {
  for (let attempt = 0; ; attempt += 1) {
    const token = await accessToken({ force: attempt > 0 });
    const init = { method, headers: { Authorization: `Bearer ${token}`, ...headers } };
    if (body !== undefined) {
      init.body = typeof body === "string" ? body : JSON.stringify(body);
      init.headers["Content-Type"] ??= "application/json";
    }
    const res = await fetch(url, init);
    if (res.status === 401 && attempt === 0) continue;
    const parsed = await parse(res);
    if (!res.ok) throw failure(res, parsed);
    return { status: res.status, headers: res.headers, body: parsed };
  }
}

function retryAfter(headers) {
  const seconds = Number(headers.get("Retry-After"));
  return Number.isFinite(seconds) && seconds > 0 ? Math.min(seconds * 1000, 5000) : 1000;
}

/**
 * Follows a long-running operation to its end (ARM's async pattern): an `Azure-AsyncOperation`
 * status URL until `Succeeded`/`Failed`/`Canceled`, or a `Location` URL until it stops
 * answering 202. `onProgress(status)` hears each poll.
 */
async function pollOperation(first, { onProgress } = {}) {
  const asyncUrl = first.headers.get("Azure-AsyncOperation");
  const locationUrl = first.headers.get("Location");
  let wait = retryAfter(first.headers);
  if (asyncUrl) {
    for (;;) {
      await sleep(wait);
      const res = await send("GET", asyncUrl);
      const status = res.body?.status ?? "InProgress";
      onProgress?.(status);
      if (/^succeeded$/i.test(status)) return res;
      if (/^(failed|canceled|cancelled)$/i.test(status)) {
        const error = res.body?.error ?? {};
        throw new ApiError(200, error.code ?? status, error.message ?? `The operation ${status.toLowerCase()}.`, error.details);
      }
      wait = retryAfter(res.headers);
    }
  }
  if (locationUrl) {
    for (;;) {
      await sleep(wait);
      const res = await send("GET", locationUrl);
      onProgress?.(res.status === 202 ? "InProgress" : "Succeeded");
      if (res.status !== 202) return res;
      wait = retryAfter(res.headers);
    }
  }
  return first;
}

/** ARM calls by path (`/subscriptions/...`); `apiVersion` is added unless the path has one. */
export const arm = {
  async get(path, apiVersion) {
    return (await send("GET", withApiVersion(path, apiVersion))).body;
  },

  /** Every item of a list, following `nextLink`. */
  async list(path, apiVersion) {
    const items = [];
    let url = withApiVersion(path, apiVersion);
    while (url) {
      const { body } = await send("GET", url);
      items.push(...(body?.value ?? []));
      url = body?.nextLink ? new URL(body.nextLink, location.origin).toString() : null;
      if (url && new URL(url).origin !== location.origin) url = null;
    }
    return items;
  },

  /**
   * PUT/PATCH/POST/DELETE, following the long-running operation when there is one (unless
   * `poll: false`: the caller follows it, as the deployment page does).
   */
  async write(method, path, apiVersion, body, { onProgress, finalGet = method === "PUT" || method === "PATCH", poll = true } = {}) {
    const url = withApiVersion(path, apiVersion);
    const first = await send(method, url, { body });
    const isAsync = poll && (first.status === 201 || first.status === 202)
      && (first.headers.get("Azure-AsyncOperation") || first.headers.get("Location"));
    if (!isAsync) return first.body;
    const done = await pollOperation(first, { onProgress });
    if (finalGet) return (await send("GET", url)).body;
    return done.body && typeof done.body === "object" && !("status" in done.body) ? done.body : first.body;
  },

  put(path, apiVersion, body, options) {
    return this.write("PUT", path, apiVersion, body, options);
  },
  patch(path, apiVersion, body, options) {
    return this.write("PATCH", path, apiVersion, body, options);
  },
  post(path, apiVersion, body, options) {
    return this.write("POST", path, apiVersion, body, { finalGet: false, ...options });
  },
  delete(path, apiVersion, options) {
    return this.write("DELETE", path, apiVersion, undefined, { finalGet: false, ...options });
  },
};

/** Graph calls (`/v1.0/...`). */
export const graph = {
  async get(path) {
    return (await send("GET", path)).body;
  },
  async list(path) {
    const items = [];
    let url = path;
    while (url) {
      const { body } = await send("GET", url);
      items.push(...(body?.value ?? []));
      const nextLink = body?.["@odata.nextLink"];
      url = nextLink && new URL(nextLink, location.origin).origin === location.origin ? nextLink : null;
    }
    return items;
  },
  async post(path, body) {
    return (await send("POST", path, { body })).body;
  },
};

/**
 * Display names of directory objects by id (`POST /v1.0/directoryObjects/getByIds`), as a Map
 * id -> object. Unknown ids are simply absent.
 */
export async function directoryObjects(ids) {
  const unique = [...new Set(ids.filter(Boolean))];
  const found = new Map();
  for (let start = 0; start < unique.length; start += 1000) {
    const body = await graph.post("/v1.0/directoryObjects/getByIds", { ids: unique.slice(start, start + 1000) });
    for (const object of body?.value ?? []) found.set(object.id.toLowerCase(), object);
  }
  return found;
}
