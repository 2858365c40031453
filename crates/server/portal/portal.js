// The portal's entry point: signs the user in (authorization code + PKCE through the server's
// authorize endpoint), draws the shell (top bar with search, the user and Sign out; the left
// menu), and routes `#/...` hashes to pages. Pages call ARM and Graph with the user's own token,
// so what a user may do is decided by the server's RBAC alone.

import { SignInError, currentUser, handleRedirect, isSignedIn, loadConfig, signIn, signOut } from "./lib/auth.js";
import { arm, RESOURCES_API } from "./lib/api.js";
import { SERVICES, parseId, resourceRoute, subscriptions, typeLabel } from "./lib/resources.js";
import { errorBanner, h, replace, spinner } from "./lib/ui.js";
import * as activity from "./pages/activity.js";
import * as cosmos from "./pages/cosmos.js";
import * as deploy from "./pages/deploy.js";
import * as groups from "./pages/groups.js";
import * as home from "./pages/home.js";
import * as iam from "./pages/iam.js";
import * as identities from "./pages/identities.js";
import * as resource from "./pages/resource.js";
import * as subs from "./pages/subscriptions.js";
import * as vmCreate from "./pages/vm-create.js";
import * as vms from "./pages/vms.js";

/** Routes: a pattern over the hash path and the page that draws it. */
const ROUTES = [
  [/^\/(home)?$/, () => home.render],
  [/^\/resourcegroups$/, () => groups.list],
  [/^\/create\/resourcegroup$/, () => groups.create],
  [/^\/virtualmachines$/, () => vms.list],
  [/^\/create\/vm$/, () => vmCreate.render],
  [/^\/identities$/, () => identities.list],
  [/^\/create\/identity$/, () => identities.create],
  [/^\/cosmos$/, () => cosmos.list],
  [/^\/create\/cosmos$/, () => cosmos.create],
  [/^\/subscriptions$/, () => subs.list],
  [/^\/create\/template$/, () => deploy.editor],
  [/^\/activity$/, () => activity.render],
  [/^\/roleassignments\/([^/]+)$/, () => iam.principalAssignments],
  [/^\/resource(\/.+)$/, () => resource.render],
];

let renderCount = 0;

function currentRoute() {
  const raw = location.hash.startsWith("#/") ? location.hash.slice(1) : "/home";
  const [path, queryText = ""] = raw.split("?");
  return { path: decodeURIComponent(path), query: new URLSearchParams(queryText) };
}

async function route() {
  const main = document.getElementById("main");
  if (!main) return;
  const token = ++renderCount;
  const { path, query } = currentRoute();
  const ctx = {
    path,
    query,
    alive: () => token === renderCount,
  };
  closeMenu();
  markNav(path);
  replace(main, spinner());
  for (const [pattern, page] of ROUTES) {
    const match = pattern.exec(path);
    if (!match) continue;
    ctx.params = match.slice(1);
    const view = h("div", { class: "page" });
    try {
      await page()(view, ctx);
    } catch (error) {
      if (!ctx.alive()) return;
      replace(view, errorBanner(error, "This page could not be loaded"));
    }
    if (ctx.alive()) {
      replace(main, view);
      const heading = view.querySelector("h1");
      document.title = heading ? `${heading.textContent} - openmi portal` : "openmi portal";
    }
    return;
  }
  replace(main, errorBanner({ code: "NotFound", message: `There is no page at ${path}.` }));
}

function markNav(path) {
  for (const a of document.querySelectorAll("#nav a")) {
    const target = a.getAttribute("href").slice(1);
    const current = target === path || (target !== "/home" && path.startsWith(target));
    if (current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// ------------------------------------------------------------------------------------------------
// the shell

function closeMenu() {
  document.body.classList.remove("nav-open");
  document.getElementById("menu-toggle")?.setAttribute("aria-expanded", "false");
}

function shell() {
  const user = currentUser();
  const menuToggle = h("button", {
    type: "button", id: "menu-toggle", class: "menu-toggle", "aria-label": "Show portal menu", "aria-expanded": "false", "aria-controls": "nav",
    onclick: () => {
      const open = !document.body.classList.contains("nav-open");
      document.body.classList.toggle("nav-open", open);
      menuToggle.setAttribute("aria-expanded", String(open));
      if (open) document.querySelector("#nav a")?.focus();
    },
  }, "☰");
  const top = h("header", { class: "topbar" },
    menuToggle,
    h("a", { class: "brand", href: "#/home" }, "openmi", h("span", { class: "brand-sub" }, " portal")),
    searchBox(),
    h("div", { class: "user" },
      h("span", { class: "user-name", title: user.username ?? "" }, user.name ?? user.username ?? "Signed in"),
      user.username && user.username !== user.name ? h("span", { class: "user-upn" }, user.username) : null),
    h("button", { type: "button", class: "btn btn-topbar", onclick: () => signOut() }, "Sign out"));
  const nav = h("nav", { id: "nav", class: "nav", "aria-label": "Portal menu" },
    h("ul", {}, SERVICES.map(([path, label, icon]) => h("li", {},
      h("a", { href: `#${path}` }, h("span", { class: "nav-icon", "aria-hidden": "true" }, icon), h("span", {}, label))))));
  const main = h("main", { id: "main", class: "main", tabindex: "-1" });
  const scrim = h("div", { class: "scrim", onclick: closeMenu });
  replace(document.getElementById("app"), top, h("div", { class: "layout" }, nav, scrim, main));
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && document.body.classList.contains("nav-open")) {
      closeMenu();
      menuToggle.focus();
    }
  });
}

// ------------------------------------------------------------------------------------------------
// search: services by name, resources and groups by name

let resourceCache = { at: 0, items: [] };

async function searchableResources() {
  if (Date.now() - resourceCache.at < 30_000) return resourceCache.items;
  const items = [];
  for (const sub of await subscriptions()) {
    const base = `/subscriptions/${sub.subscriptionId}`;
    const [groupsList, resources] = await Promise.all([
      arm.list(`${base}/resourcegroups`, RESOURCES_API).catch(() => []),
      arm.list(`${base}/resources`, RESOURCES_API).catch(() => []),
    ]);
    items.push(...groupsList, ...resources);
  }
  resourceCache = { at: Date.now(), items };
  return items;
}

function searchBox() {
  const listId = "search-results";
  const inputBox = h("input", {
    type: "search", id: "search", class: "search-input", role: "combobox", "aria-expanded": "false", "aria-controls": listId,
    "aria-autocomplete": "list", "aria-label": "Search resources, services, and docs", placeholder: "Search resources, services, and docs (G+/)",
    autocomplete: "off", spellcheck: "false",
  });
  const results = h("div", { id: listId, class: "search-results", role: "listbox", "aria-label": "Search results", hidden: true });
  const wrap = h("div", { class: "search" }, inputBox, results);
  let generation = 0;

  const hide = () => {
    results.hidden = true;
    inputBox.setAttribute("aria-expanded", "false");
  };
  const options = () => [...results.querySelectorAll('[role="option"]')];
  const go = (href) => {
    hide();
    inputBox.value = "";
    location.hash = href.slice(1);
  };
  const option = (href, label, detail) => h("a", {
    role: "option", href, class: "search-option", tabindex: "-1",
    onclick: (event) => {
      event.preventDefault();
      go(href);
    },
  }, h("span", {}, label), detail ? h("span", { class: "search-detail" }, detail) : null);

  const update = async () => {
    const text = inputBox.value.trim().toLowerCase();
    const mine = ++generation;
    if (!text) return hide();
    const words = text.split(/\s+/);
    const services = SERVICES.filter(([, label, , keywords]) => words.every((w) => `${label} ${keywords}`.toLowerCase().includes(w)));
    const draw = (resources, loading) => {
      replace(results,
        h("div", { class: "search-group", role: "presentation" }, "Services"),
        services.length ? services.map(([path, label]) => option(`#${path}`, label)) : h("div", { class: "search-empty", role: "presentation" }, "No services match"),
        h("div", { class: "search-group", role: "presentation" }, "Resources"),
        loading ? h("div", { class: "search-empty", role: "presentation" }, "Searching…")
          : resources.length ? resources.slice(0, 10).map((r) => option(`#${resourceRoute(r.id)}`, r.name, typeLabel(parseId(r.id).type)))
            : h("div", { class: "search-empty", role: "presentation" }, "No resources match"));
      results.hidden = false;
      inputBox.setAttribute("aria-expanded", "true");
    };
    draw([], true);
    let resources = [];
    try {
      resources = (await searchableResources()).filter((r) => words.every((w) => (r.name ?? "").toLowerCase().includes(w)));
    } catch {
      resources = [];
    }
    if (mine === generation && inputBox.value.trim()) draw(resources, false);
  };

  inputBox.addEventListener("input", update);
  inputBox.addEventListener("focus", () => {
    if (inputBox.value.trim()) update();
  });
  inputBox.addEventListener("keydown", (event) => {
    if (event.key === "ArrowDown") {
      event.preventDefault();
      options()[0]?.focus();
    } else if (event.key === "Enter") {
      event.preventDefault();
      const first = options()[0];
      if (first) go(first.getAttribute("href"));
    } else if (event.key === "Escape") {
      hide();
    }
  });
  results.addEventListener("keydown", (event) => {
    const list = options();
    const index = list.indexOf(document.activeElement);
    if (event.key === "ArrowDown" || event.key === "ArrowUp") {
      event.preventDefault();
      const next = index + (event.key === "ArrowDown" ? 1 : -1);
      if (next < 0) inputBox.focus();
      else list[Math.min(next, list.length - 1)]?.focus();
    } else if (event.key === "Escape") {
      hide();
      inputBox.focus();
    }
  });
  wrap.addEventListener("focusout", (event) => {
    if (!wrap.contains(event.relatedTarget)) setTimeout(hide, 150);
  });
  document.addEventListener("keydown", (event) => {
    const typing = ["INPUT", "TEXTAREA", "SELECT"].includes(document.activeElement?.tagName);
    if (event.key === "/" && !typing && !document.querySelector("dialog[open]")) {
      event.preventDefault();
      inputBox.focus();
    }
  });
  return wrap;
}

// ------------------------------------------------------------------------------------------------
// start

function signInFailed(error) {
  const retry = h("button", { type: "button", class: "btn btn-primary", onclick: () => signIn() }, "Sign in");
  replace(document.getElementById("app"),
    h("main", { id: "main", class: "signin-failed" },
      h("h1", {}, "Sign-in failed"),
      errorBanner({ code: error.code ?? "Error", message: error.description ?? error.message }),
      h("p", {}, retry)));
  retry.focus();
}

async function start() {
  document.addEventListener("click", (event) => {
    const skip = event.target.closest?.(".skip-link");
    if (skip) {
      event.preventDefault();
      document.getElementById("main")?.focus();
    }
  });
  try {
    await loadConfig();
    if ((await handleRedirect()) === "none" && !isSignedIn()) {
      await signIn();
      return;
    }
  } catch (error) {
    if (error instanceof SignInError || error?.code) return signInFailed(error);
    return signInFailed({ code: "Error", message: String(error?.message ?? error) });
  }
  shell();
  window.addEventListener("hashchange", () => {
    if (location.hash === "" || location.hash.startsWith("#/")) route();
  });
  await route();
}

start();
