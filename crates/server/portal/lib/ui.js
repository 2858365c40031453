// The portal's DOM helpers and shared controls: an element builder (text always goes in as text,
// never as HTML), notifications, error banners in ARM's words, confirmation dialogs, tables with
// a filter box and paging, tabs, and labelled form fields.
//
// Nothing here calls the server: pages pass data in and get elements back.

let nextId = 0;

/** A fresh element id with a readable prefix (labels point at it with `for`). */
export function uid(prefix = "c") {
  nextId += 1;
  return `${prefix}-${nextId}`;
}

/**
 * Builds an element. `attrs`: `class`, `for`, `on<event>` (functions become listeners),
 * boolean properties (`disabled`, `checked`, `hidden`, `selected`, `required`, `readOnly`),
 * `value`, anything else as an attribute. Children: nodes, strings (as text), arrays, null.
 */
export function h(tag, attrs = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs ?? {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") element.className = value;
    else if (key === "for") element.htmlFor = value;
    else if (key.startsWith("on") && typeof value === "function") element.addEventListener(key.slice(2).toLowerCase(), value);
    else if (key === "value") element.value = value;
    else if (["disabled", "checked", "hidden", "selected", "required", "readOnly", "multiple"].includes(key)) element[key] = Boolean(value);
    else element.setAttribute(key, value === true ? "" : String(value));
  }
  append(element, children);
  return element;
}

/** Appends children (nodes, strings, arrays; null, undefined and false are skipped) to `parent`. */
export function append(parent, ...children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    parent.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return parent;
}

/** Replaces every child of `parent`. */
export function replace(parent, ...children) {
  parent.replaceChildren();
  return append(parent, children);
}

/** A link to a portal route (`#/...`). */
export function link(route, text, attrs = {}) {
  return h("a", { href: `#${route}`, ...attrs }, text);
}

export function button(label, onClick, { kind = "secondary", icon, disabled, ariaLabel, type = "button", ...rest } = {}) {
  return h("button", { type, class: `btn btn-${kind}`, onclick: onClick, disabled, "aria-label": ariaLabel, ...rest },
    icon ? h("span", { class: "btn-icon", "aria-hidden": "true" }, icon) : null, label);
}

export function spinner(label = "Loading…") {
  return h("div", { class: "loading", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), h("span", {}, label));
}

/** A page title block, as the portal's blade header: title, optional subtitle (resource type). */
export function pageHeader(title, subtitle) {
  return h("header", { class: "page-header" }, h("h1", {}, title), subtitle ? h("p", { class: "page-subtitle" }, subtitle) : null);
}

/** The command bar under a blade header (buttons in a toolbar). */
export function commandBar(...buttons) {
  return h("div", { class: "command-bar", role: "toolbar", "aria-label": "Commands" }, buttons);
}

// ------------------------------------------------------------------------------------------------
// errors and notifications

/** The ARM error's code and message, whatever shape the failure has. */
export function errorParts(error) {
  if (error && typeof error === "object" && "code" in error && "message" in error) {
    return { code: error.code || "Error", message: error.message || "" };
  }
  return { code: "Error", message: String(error?.message ?? error) };
}

/** A red banner with the error's code and message (the portal's "error" info box). */
export function errorBanner(error, title) {
  const { code, message } = errorParts(error);
  const details = Array.isArray(error?.details) ? error.details : [];
  return h("div", { class: "banner banner-error", role: "alert" },
    h("span", { class: "banner-icon", "aria-hidden": "true" }, "✕"),
    h("div", {},
      title ? h("strong", { class: "banner-title" }, title) : null,
      h("div", { class: "error-code" }, code),
      h("div", { class: "error-message" }, message),
      details.length ? h("ul", { class: "error-details" }, details.map((d) => h("li", {}, `${d.code}: ${d.message}`))) : null));
}

export function infoBanner(text, kind = "info") {
  return h("div", { class: `banner banner-${kind}`, role: kind === "warning" ? "note" : "status" },
    h("span", { class: "banner-icon", "aria-hidden": "true" }, kind === "success" ? "✓" : kind === "warning" ? "!" : "i"),
    h("div", {}, text));
}

function notificationsRegion() {
  return document.getElementById("notifications");
}

/**
 * A notification in the top-right panel. `kind`: progress, success, error, info. Errors stay
 * until dismissed; the rest fade after a while. Returns { update(kind, title, message), close }.
 */
export function notify(kind, title, message) {
  const region = notificationsRegion();
  const box = h("div", { class: "toast" });
  let timer = null;
  const close = () => {
    clearTimeout(timer);
    box.remove();
  };
  const render = (nextKind, nextTitle, nextMessage) => {
    box.className = `toast toast-${nextKind}`;
    box.setAttribute("role", nextKind === "error" ? "alert" : "status");
    const icon = nextKind === "progress"
      ? h("span", { class: "spinner", "aria-hidden": "true" })
      : h("span", { class: "toast-icon", "aria-hidden": "true" }, nextKind === "error" ? "✕" : nextKind === "success" ? "✓" : "i");
    replace(box, icon,
      h("div", { class: "toast-body" },
        h("strong", { class: "toast-title" }, nextTitle),
        nextMessage instanceof Node ? nextMessage : nextMessage ? h("div", { class: "toast-message" }, nextMessage) : null),
      h("button", { type: "button", class: "toast-close", "aria-label": "Dismiss notification", onclick: close }, "✕"));
    clearTimeout(timer);
    if (nextKind === "success" || nextKind === "info") timer = setTimeout(close, 8000);
  };
  render(kind, title, message);
  region?.prepend(box);
  // At most five at a time: the oldest that is not an error goes first.
  const shown = [...(region?.children ?? [])];
  for (const old of shown.slice(5).reverse()) {
    if (!old.classList.contains("toast-error") && !old.classList.contains("toast-progress")) old.remove();
  }
  return { update: render, close };
}

/** An error notification with the ARM code and message. */
export function notifyError(title, error) {
  const { code, message } = errorParts(error);
  return notify("error", title, h("div", { class: "toast-message" }, h("div", { class: "error-code" }, code), h("div", { class: "error-message" }, message)));
}

// ------------------------------------------------------------------------------------------------
// dialogs

/**
 * A modal dialog (`<dialog>`: focus stays inside, Escape cancels). `body` is an element or a
 * function of the dialog's `close(value)`; `actions` are [{label, kind, value, disabled}] buttons
 * that close with their value. Resolves with the value (undefined on Escape).
 */
export function openDialog({ title, body, actions = [], className = "" }) {
  return new Promise((resolve) => {
    const titleId = uid("dialog-title");
    const dialog = h("dialog", { class: `dialog ${className}`, "aria-labelledby": titleId });
    let result;
    const close = (value) => {
      result = value;
      dialog.close();
    };
    const content = typeof body === "function" ? body(close, dialog) : body;
    const footer = h("div", { class: "dialog-actions" }, actions.map((action) => {
      const btn = button(action.label, () => close(action.value), { kind: action.kind ?? "secondary", disabled: action.disabled });
      if (action.ref) action.ref(btn);
      return btn;
    }));
    append(dialog, [
      h("div", { class: "dialog-header" }, h("h2", { id: titleId }, title),
        h("button", { type: "button", class: "dialog-close", "aria-label": "Close", onclick: () => close(undefined) }, "✕")),
      h("div", { class: "dialog-body" }, content),
      actions.length ? footer : null,
    ]);
    dialog.addEventListener("close", () => {
      dialog.remove();
      resolve(result);
    });
    document.body.append(dialog);
    dialog.showModal();
    // Focus the first field, else the first action (Cancel when the action destroys something),
    // not the header's close button.
    const first = dialog.querySelector(".dialog-body input:not([type=hidden]):not([readonly]), .dialog-body select, .dialog-body textarea")
      ?? (footer.querySelector(".btn-danger") ? footer.lastElementChild : footer.querySelector("button:not(:disabled)"));
    first?.focus();
  });
}

/**
 * A yes/no confirmation. With `typeToConfirm`, the confirm button stays disabled until the
 * typed text equals it (the portal's "Enter resource group name to confirm deletion").
 */
export async function confirmDialog({ title, message, confirmLabel = "Yes", cancelLabel = "No", danger = false, typeToConfirm, typeLabel }) {
  let confirmButton;
  const body = () => {
    const parts = [h("p", {}, message)];
    if (typeToConfirm !== undefined) {
      const inputId = uid("confirm");
      const input = h("input", { id: inputId, type: "text", autocomplete: "off", spellcheck: "false" });
      input.addEventListener("input", () => {
        confirmButton.disabled = input.value !== typeToConfirm;
      });
      parts.push(h("div", { class: "field" }, h("label", { for: inputId }, typeLabel ?? "Enter the name to confirm deletion"), input));
    }
    return parts;
  };
  const value = await openDialog({
    title,
    body,
    actions: [
      { label: confirmLabel, kind: danger ? "danger" : "primary", value: true, disabled: typeToConfirm !== undefined, ref: (b) => (confirmButton = b) },
      { label: cancelLabel, value: false },
    ],
  });
  return value === true;
}

// ------------------------------------------------------------------------------------------------
// forms

/** A labelled field: `<label for>` plus the control (given an id if it has none). */
export function field(label, control, { hint, required, info } = {}) {
  if (!control.id) control.id = uid("f");
  if (required) control.required = true;
  const hintNode = hint ? h("div", { class: "field-hint", id: `${control.id}-hint` }, hint) : null;
  if (hintNode) control.setAttribute("aria-describedby", hintNode.id);
  // The asterisk sits beside the label, not in it, so the control's name is the label alone.
  return h("div", { class: "field" },
    h("div", { class: "field-label" }, h("label", { for: control.id }, label), required ? h("span", { class: "required", "aria-hidden": "true" }, " *") : null),
    h("div", { class: "field-control" }, control, hintNode, info ?? null));
}

/** A `<select>` of [{value, label}] (or strings). */
export function select(options, { value, placeholder, ...attrs } = {}) {
  const element = h("select", attrs);
  setOptions(element, options, { value, placeholder });
  return element;
}

export function setOptions(element, options, { value, placeholder } = {}) {
  const items = options.map((o) => (typeof o === "string" ? { value: o, label: o } : o));
  replace(element,
    placeholder !== undefined ? h("option", { value: "" }, placeholder) : null,
    items.map((o) => h("option", { value: o.value, selected: value !== undefined && o.value === value }, o.label)));
  if (value !== undefined && items.some((o) => o.value === value)) element.value = value;
}

export function input(attrs = {}) {
  return h("input", { type: "text", autocomplete: "off", ...attrs });
}

/** A read-only "Essentials" list of label/value pairs (values are nodes or text). */
export function essentials(pairs) {
  return h("dl", { class: "essentials" }, pairs.filter(Boolean).map(([label, value]) => [
    h("dt", {}, label),
    h("dd", {}, value === undefined || value === null || value === "" ? "—" : value),
  ]));
}

/** Shows `text` on a button for two seconds. */
export function flash(target, text) {
  target.dataset.label ??= target.textContent;
  const original = target.dataset.label;
  target.textContent = text;
  setTimeout(() => (target.textContent = original), 2000);
}

/** A value with a "Copy to clipboard" button beside it. */
export function copyable(text, label) {
  const valueNode = h("span", { class: "mono" }, text ?? "—");
  if (!text) return valueNode;
  return h("span", { class: "copyable" }, valueNode,
    h("button", {
      type: "button", class: "icon-button", "aria-label": `Copy ${label ?? "value"} to clipboard`,
      onclick: async (event) => {
        const target = event.currentTarget;
        try {
          await navigator.clipboard.writeText(text);
          flash(target, "Copied");
        } catch {
          flash(target, "Copy failed");
        }
      },
    }, "Copy"));
}

// ------------------------------------------------------------------------------------------------
// tabs

/**
 * A tab list with panels. `tabs`: [{id, label, render(panel)}]; `render` is called each time the
 * tab is shown. Arrow keys move between tabs (WAI-ARIA tabs pattern). Returns { element, select(id), current() }.
 */
export function tabs(tabList, { initial, onChange, label = "Tabs" } = {}) {
  const listId = uid("tabs");
  const tablist = h("div", { class: "tabs", role: "tablist", "aria-label": label });
  const panel = h("div", { class: "tab-panel", role: "tabpanel", tabindex: "0" });
  const buttons = new Map();
  let current = null;
  const choose = async (id, focus = false) => {
    current = id;
    for (const [tabId, btn] of buttons) {
      const selected = tabId === id;
      btn.setAttribute("aria-selected", String(selected));
      btn.tabIndex = selected ? 0 : -1;
      if (selected) {
        panel.setAttribute("aria-labelledby", btn.id);
        if (focus) btn.focus();
      }
    }
    const tab = tabList.find((t) => t.id === id);
    panel.replaceChildren();
    await tab.render(panel);
    onChange?.(id);
  };
  tabList.forEach((tab, index) => {
    const btn = h("button", {
      type: "button", role: "tab", id: `${listId}-${tab.id}`, class: "tab",
      onclick: () => choose(tab.id),
      onkeydown: (event) => {
        const step = event.key === "ArrowRight" ? 1 : event.key === "ArrowLeft" ? -1 : 0;
        if (!step) return;
        event.preventDefault();
        const next = tabList[(index + step + tabList.length) % tabList.length];
        choose(next.id, true);
      },
    }, tab.label);
    buttons.set(tab.id, btn);
    tablist.append(btn);
  });
  const element = h("div", { class: "tabs-container" }, tablist, panel);
  choose(initial ?? tabList[0].id);
  return { element, select: (id) => choose(id), current: () => current };
}

// ------------------------------------------------------------------------------------------------
// tables

/**
 * A table with a filter box and paging (20 rows a page by default), optionally with a checkbox
 * per row. `columns`: [{label, render(item) -> node|string}]; `text(item)` is what the filter
 * matches. Returns { element, setItems(items), selected() }.
 */
export function dataTable({ columns, items = [], text, pageSize = 20, selectable = false, rowLabel, emptyText = "No items to display", onSelectionChange, filterLabel = "Filter for any field..." , caption }) {
  let all = items;
  let page = 0;
  const selectedKeys = new Set();
  const keyOf = (item) => item.id ?? JSON.stringify(item);
  const filterId = uid("filter");
  const filter = h("input", { id: filterId, type: "search", class: "filter", placeholder: filterLabel, "aria-label": filterLabel, autocomplete: "off" });
  const summary = h("div", { class: "table-summary", "aria-live": "polite" });
  const tbody = h("tbody");
  const headerCells = columns.map((c) => h("th", { scope: "col" }, c.label));
  const selectAll = selectable ? h("input", { type: "checkbox", "aria-label": "Select all" }) : null;
  const table = h("table", { class: "data-table" },
    caption ? h("caption", { class: "visually-hidden" }, caption) : null,
    h("thead", {}, h("tr", {}, selectable ? h("th", { class: "check-col" }, selectAll) : null, headerCells)),
    tbody);
  const prev = button("< Previous", () => { page -= 1; render(); }, { ariaLabel: "Previous page" });
  const next = button("Next >", () => { page += 1; render(); }, { ariaLabel: "Next page" });
  const pageInfo = h("span", { class: "page-info" });
  const pager = h("div", { class: "pager" }, prev, pageInfo, next);

  const visible = () => {
    const needle = filter.value.trim().toLowerCase();
    if (!needle) return all;
    return all.filter((item) => (text ? text(item) : JSON.stringify(item)).toLowerCase().includes(needle));
  };
  const changed = () => onSelectionChange?.(all.filter((item) => selectedKeys.has(keyOf(item))));
  function render() {
    const rows = visible();
    const pages = Math.max(1, Math.ceil(rows.length / pageSize));
    page = Math.min(Math.max(page, 0), pages - 1);
    const shown = rows.slice(page * pageSize, page * pageSize + pageSize);
    tbody.replaceChildren();
    if (shown.length === 0) {
      tbody.append(h("tr", {}, h("td", { colspan: String(columns.length + (selectable ? 1 : 0)), class: "empty" }, emptyText)));
    }
    for (const item of shown) {
      const key = keyOf(item);
      const check = selectable
        ? h("input", {
          type: "checkbox", checked: selectedKeys.has(key), "aria-label": `Select ${rowLabel ? rowLabel(item) : key}`,
          onchange: (event) => {
            if (event.target.checked) selectedKeys.add(key);
            else selectedKeys.delete(key);
            changed();
          },
        })
        : null;
      tbody.append(h("tr", {}, selectable ? h("td", { class: "check-col" }, check) : null, columns.map((c) => h("td", {}, c.render(item)))));
    }
    const from = rows.length === 0 ? 0 : page * pageSize + 1;
    summary.textContent = `Showing ${from} to ${page * pageSize + shown.length} of ${rows.length} records.`;
    pageInfo.textContent = `Page ${page + 1} of ${pages}`;
    prev.disabled = page === 0;
    next.disabled = page >= pages - 1;
    pager.hidden = pages <= 1;
  }
  filter.addEventListener("input", () => { page = 0; render(); });
  selectAll?.addEventListener("change", () => {
    for (const item of visible()) {
      if (selectAll.checked) selectedKeys.add(keyOf(item));
      else selectedKeys.delete(keyOf(item));
    }
    render();
    changed();
  });
  render();
  const element = h("div", { class: "table-block" }, h("div", { class: "table-tools" }, filter, summary), h("div", { class: "table-scroll" }, table), pager);
  return {
    element,
    setItems(newItems) {
      all = newItems;
      for (const key of [...selectedKeys]) if (!all.some((item) => keyOf(item) === key)) selectedKeys.delete(key);
      render();
      changed();
    },
    selected: () => all.filter((item) => selectedKeys.has(keyOf(item))),
    clearSelection() {
      selectedKeys.clear();
      if (selectAll) selectAll.checked = false;
      render();
      changed();
    },
  };
}

/** Draws the current route again (after a change made on the page). */
export function refreshPage() {
  window.dispatchEvent(new HashChangeEvent("hashchange"));
}

/** Goes to `route` (`/...`), or draws it again when the browser is already there. */
export function goOrRefresh(route) {
  if (location.hash === `#${route}`) refreshPage();
  else location.hash = route;
}

/** Formats an ISO time as the browser's local date and time. */
export function formatTime(value) {
  if (!value) return "—";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? String(value) : date.toLocaleString();
}
