// What the pages share about ARM resources: parsing resource ids, the portal's names for resource
// types, the subscription and region lists, and `operation()`, which runs a write with a progress
// notification, records it in this browser session's activity log, and shows a failure in ARM's
// words (never swallowed).

import { RESOURCES_API, SUBSCRIPTIONS_API, arm } from "./api.js";
import { errorBanner, notify, notifyError } from "./ui.js";

/** The left menu and the search box's services: [route, label, icon, search keywords]. */
export const SERVICES = [
  ["/home", "Home", "⌂", "home dashboard"],
  ["/resourcegroups", "Resource groups", "▦", "resource groups rg"],
  ["/virtualmachines", "Virtual machines", "▣", "virtual machines vm compute"],
  ["/identities", "Managed Identities", "◇", "managed identities user assigned msi"],
  ["/cosmos", "Azure Cosmos DB", "◎", "azure cosmos db database accounts nosql"],
  ["/subscriptions", "Subscriptions", "◈", "subscriptions access control iam"],
  ["/create/template", "Deploy a custom template", "▤", "deploy a custom template arm deployment"],
  ["/activity", "Activity log", "≡", "activity log operations"],
];

/** The parts of a resource id (case kept as given). */
export function parseId(id) {
  const parts = (id ?? "").split("/").filter(Boolean);
  const result = { id, subscription: null, resourceGroup: null, namespace: null, type: null, name: null, types: [] };
  for (let i = 0; i < parts.length; i += 2) {
    const key = parts[i].toLowerCase();
    const value = parts[i + 1];
    if (key === "subscriptions" && result.subscription === null) result.subscription = value;
    else if (key === "resourcegroups" && result.namespace === null) result.resourceGroup = value;
    else if (key === "providers") {
      result.namespace = value;
      result.types = [];
    } else if (result.namespace) {
      result.types.push(parts[i]);
      result.name = value;
    }
  }
  if (result.namespace) result.type = `${result.namespace}/${result.types.join("/")}`;
  else if (result.resourceGroup) {
    result.type = "Microsoft.Resources/resourceGroups";
    result.name = result.resourceGroup;
  } else if (result.subscription) {
    result.type = "Microsoft.Resources/subscriptions";
    result.name = result.subscription;
  }
  return result;
}

export const TYPE_LABELS = {
  "microsoft.resources/subscriptions": "Subscription",
  "microsoft.resources/resourcegroups": "Resource group",
  "microsoft.compute/virtualmachines": "Virtual machine",
  "microsoft.compute/virtualmachines/extensions": "Virtual machine extension",
  "microsoft.managedidentity/userassignedidentities": "Managed Identity",
  "microsoft.documentdb/databaseaccounts": "Azure Cosmos DB account",
  "microsoft.resources/deployments": "Deployment",
  "microsoft.network/virtualnetworks": "Virtual network",
  "microsoft.network/networkinterfaces": "Network interface",
  "microsoft.network/networksecuritygroups": "Network security group",
  "microsoft.network/publicipaddresses": "Public IP address",
  "microsoft.authorization/roleassignments": "Role assignment",
};

export function typeLabel(type) {
  return TYPE_LABELS[(type ?? "").toLowerCase()] ?? type ?? "Resource";
}

export function sameId(a, b) {
  return (a ?? "").toLowerCase() === (b ?? "").toLowerCase();
}

/** The portal route of a resource's blade. */
export function resourceRoute(id, blade) {
  return `/resource${id}${blade ? `/${blade}` : ""}`;
}

let subscriptionsPromise = null;
/** The subscriptions the user can see (cached for the page's life; `refresh` to reload). */
export function subscriptions({ refresh = false } = {}) {
  if (refresh || !subscriptionsPromise) {
    subscriptionsPromise = arm.list("/subscriptions", SUBSCRIPTIONS_API).catch((error) => {
      subscriptionsPromise = null;
      throw error;
    });
  }
  return subscriptionsPromise;
}

const locationsBySubscription = new Map();
/** The regions of a subscription (`/subscriptions/{s}/locations`). */
export function locations(subscriptionId) {
  if (!locationsBySubscription.has(subscriptionId)) {
    locationsBySubscription.set(subscriptionId, arm.list(`/subscriptions/${subscriptionId}/locations`, SUBSCRIPTIONS_API).catch((error) => {
      locationsBySubscription.delete(subscriptionId);
      throw error;
    }));
  }
  return locationsBySubscription.get(subscriptionId);
}

export function groups(subscriptionId) {
  return arm.list(`/subscriptions/${subscriptionId}/resourcegroups`, RESOURCES_API);
}

/** Every resource of a type in a subscription (`/subscriptions/{s}/providers/{type}`). */
export function listByType(subscriptionId, type, apiVersion) {
  return arm.list(`/subscriptions/${subscriptionId}/providers/${type}`, apiVersion);
}

/** The subscription's display name, or its id. */
export async function subscriptionName(subscriptionId) {
  try {
    const found = (await subscriptions()).find((s) => sameId(s.subscriptionId, subscriptionId));
    return found?.displayName ?? subscriptionId;
  } catch {
    return subscriptionId;
  }
}

// ------------------------------------------------------------------------------------------------
// this browser session's activity log

const ACTIVITY = "openmi.portal.activity";

export function activityEntries() {
  try {
    return JSON.parse(sessionStorage.getItem(ACTIVITY) ?? "[]");
  } catch {
    return [];
  }
}

function saveActivity(entries) {
  sessionStorage.setItem(ACTIVITY, JSON.stringify(entries.slice(0, 500)));
  window.dispatchEvent(new CustomEvent("portal-activity"));
}

function recordActivity(entry) {
  const entries = activityEntries().filter((e) => e.id !== entry.id);
  entries.unshift(entry);
  saveActivity(entries);
}

/**
 * Runs one write the user asked for: a progress notification, an activity-log entry (Started,
 * then Succeeded or Failed with ARM's code and message), and on failure an error notification
 * plus an error banner in `container` when one is given. Resolves { ok, result, error }.
 * `acceptedOnly`: the write only started something (a deployment) whose page settles the entry.
 */
export async function operation({ name, resource, progress, success, container, run, acceptedOnly = false }) {
  const entry = { id: crypto.randomUUID(), operation: name, resource, status: "Started", startedAt: new Date().toISOString() };
  recordActivity(entry);
  const note = notify("progress", progress ?? `${name}...`, resource ? parseId(resource).name ?? resource : "");
  if (container) container.replaceChildren();
  try {
    const result = await run((status) => note.update("progress", progress ?? `${name}...`, status));
    recordActivity({ ...entry, status: acceptedOnly ? "Accepted" : "Succeeded", endedAt: new Date().toISOString(), result: success ?? "Succeeded" });
    note.update(acceptedOnly ? "info" : "success", success ?? `${name}: succeeded`, resource ? parseId(resource).name ?? "" : "");
    return { ok: true, result };
  } catch (error) {
    note.close();
    recordActivity({
      ...entry, status: "Failed", endedAt: new Date().toISOString(),
      result: `${error?.code ?? "Error"}: ${error?.message ?? error}`,
    });
    notifyError(`${name}: failed`, error);
    if (container) container.replaceChildren(errorBanner(error, `${name} failed`));
    return { ok: false, error };
  }
}

/**
 * Ends this session's "Accepted" entries for `resource` (a deployment it submitted) with the
 * final status; returns whether there was one (so the page announces the result only then).
 */
export function settleActivity(resource, status, result) {
  let settled = false;
  const entries = activityEntries().map((entry) => {
    if (entry.status !== "Accepted" || !sameId(entry.resource, resource)) return entry;
    settled = true;
    return { ...entry, status, result, endedAt: new Date().toISOString() };
  });
  if (settled) saveActivity(entries);
  return settled;
}
