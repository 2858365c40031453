// Access control (IAM) for any scope (subscription, group, resource): the Role assignments list
// (member, type, role, scope: "This resource" or inherited), Remove, and "Add role assignment"
// (Role, then Members: users and service principals from Graph or managed identities from ARM,
// then Review + assign, which PUTs one assignment named by a new GUID per member). Also a
// principal's "Azure role assignments" page, reached from a managed identity.

import { apiVersionFor, arm, directoryObjects, graph } from "../lib/api.js";
import { listByType, operation, parseId, resourceRoute, sameId, subscriptions, groups as listGroups, typeLabel } from "../lib/resources.js";
import {
  append, button, commandBar, confirmDialog, dataTable, errorBanner, essentials, field, h, input, link, openDialog, pageHeader,
  refreshPage, replace, select, setOptions, spinner, tabs, uid,
} from "../lib/ui.js";

const AUTH_API = apiVersionFor("Microsoft.Authorization/roleAssignments");
const VM_TYPE = "Microsoft.Compute/virtualMachines";
const MSI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities";

function assignmentsUrl(scope) {
  return `${scope === "/" ? "" : scope}/providers/Microsoft.Authorization/roleAssignments`;
}

/** Role definitions assignable at `scope`. */
export function roleDefinitions(scope) {
  return arm.list(`${scope}/providers/Microsoft.Authorization/roleDefinitions`, AUTH_API);
}

function roleGuid(id) {
  return (id ?? "").split("/").pop().toLowerCase();
}

/** "User", "App", "Managed identity", "Group" for a Graph object (or the assignment's principalType). */
export function memberType(object, principalType) {
  const kind = object?.["@odata.type"] ?? "";
  if (/user$/i.test(kind)) return "User";
  if (/group$/i.test(kind)) return "Group";
  if (object?.servicePrincipalType === "ManagedIdentity") return "Managed identity";
  if (/servicePrincipal$/i.test(kind)) return "App";
  if (principalType === "ServicePrincipal") return "App";
  return principalType ?? "Unknown";
}

function scopeLabel(assignmentScope, scope) {
  if (sameId(assignmentScope, scope)) return "This resource";
  if (assignmentScope === "/") return "Root (Inherited)";
  const parts = parseId(assignmentScope);
  const name = parts.type === "Microsoft.Resources/subscriptions" ? "Subscription" : typeLabel(parts.type);
  return `${name} (Inherited)`;
}

// ------------------------------------------------------------------------------------------------
// the IAM blade

export async function blade(content, resource, ctx) {
  const scope = resource.id;
  const view = tabs([
    { id: "assignments", label: "Role assignments", render: (panel) => assignmentsTab(panel, scope, ctx) },
    { id: "roles", label: "Roles", render: (panel) => rolesTab(panel, scope) },
  ], { label: "Access control" });
  append(content, view.element);
}

function addMenu(scope) {
  const menuId = uid("menu");
  const item = h("a", { role: "menuitem", href: `#${resourceRoute(scope, "addroleassignment")}`, class: "menu-item" }, "Add role assignment");
  const menu = h("div", { id: menuId, class: "menu", role: "menu", hidden: true }, item);
  const toggle = button("+ Add", () => {
    const open = menu.hidden;
    menu.hidden = !open;
    toggle.setAttribute("aria-expanded", String(open));
    if (open) item.focus();
  }, { kind: "primary", ariaLabel: "Add", "aria-haspopup": "menu", "aria-expanded": "false", "aria-controls": menuId });
  menu.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      menu.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
      toggle.focus();
    }
  });
  const wrap = h("div", { class: "menu-wrap" }, toggle, menu);
  wrap.addEventListener("focusout", (event) => {
    if (!wrap.contains(event.relatedTarget)) setTimeout(() => {
      menu.hidden = true;
      toggle.setAttribute("aria-expanded", "false");
    }, 150);
  });
  return wrap;
}

async function assignmentsTab(panel, scope, ctx) {
  const result = h("div", { class: "form-result" });
  const removeButton = button("Remove", remove, { ariaLabel: "Remove", disabled: true });
  const body = h("div", {}, spinner());
  append(panel, commandBar(addMenu(scope), removeButton, button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })), result, body);
  const table = dataTable({
    selectable: true,
    caption: "Role assignments",
    rowLabel: (a) => `${a.memberName} ${a.roleName}`,
    text: (a) => `${a.memberName} ${a.memberType} ${a.roleName} ${a.scopeLabel} ${a.properties.principalId}`,
    emptyText: "No role assignments at this scope",
    onSelectionChange: (selected) => (removeButton.disabled = selected.length === 0),
    columns: [
      { label: "Name", render: (a) => h("span", {}, h("span", { class: "member-name" }, a.memberName), a.memberDetail ? h("span", { class: "member-detail" }, a.memberDetail) : null) },
      { label: "Type", render: (a) => a.memberType },
      { label: "Role", render: (a) => a.roleName },
      { label: "Scope", render: (a) => a.scopeLabel },
    ],
  });
  try {
    const [assignments, definitions] = await Promise.all([
      arm.list(`${assignmentsUrl(scope)}?$filter=atScope()`, AUTH_API),
      roleDefinitions(scope),
    ]);
    const names = new Map(definitions.map((d) => [roleGuid(d.id), d.properties?.roleName ?? d.name]));
    let objects = new Map();
    let directoryError = null;
    try {
      objects = await directoryObjects(assignments.map((a) => a.properties?.principalId));
    } catch (error) {
      directoryError = error;
    }
    if (!ctx.alive()) return;
    const rows = assignments.map((a) => {
      const object = objects.get((a.properties?.principalId ?? "").toLowerCase());
      return {
        ...a,
        memberName: object?.displayName ?? "Identity not found",
        memberDetail: object?.userPrincipalName ?? a.properties?.principalId,
        memberType: memberType(object, a.properties?.principalType),
        roleName: names.get(roleGuid(a.properties?.roleDefinitionId)) ?? roleGuid(a.properties?.roleDefinitionId),
        scopeLabel: scopeLabel(a.properties?.scope, scope),
      };
    });
    rows.sort((a, b) => a.roleName.localeCompare(b.roleName) || a.memberName.localeCompare(b.memberName));
    table.setItems(rows);
    replace(body, directoryError ? errorBanner(directoryError, "Member names could not be read from the directory") : null, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The role assignments could not be listed"));
  }

  async function remove() {
    const selected = table.selected();
    if (!selected.length) return;
    const confirmed = await confirmDialog({
      title: "Remove role assignments",
      message: `Do you want to remove ${selected.length === 1 ? `the role assignment '${selected[0].roleName}' of '${selected[0].memberName}'` : `${selected.length} role assignments`}?`,
    });
    if (!confirmed) return;
    let allOk = true;
    for (const assignment of selected) {
      const outcome = await operation({
        name: "Remove role assignment",
        resource: assignment.id,
        progress: `Removing role assignment ${assignment.roleName} of ${assignment.memberName}...`,
        success: `Role assignment ${assignment.roleName} of ${assignment.memberName} removed`,
        container: result,
        run: () => arm.delete(assignment.id, AUTH_API),
      });
      allOk &&= outcome.ok;
      if (!outcome.ok) break;
    }
    if (allOk) refreshPage();
  }
}

async function rolesTab(panel, scope) {
  const body = h("div", {}, spinner());
  append(panel, body);
  try {
    const definitions = await roleDefinitions(scope);
    definitions.sort((a, b) => (a.properties?.roleName ?? "").localeCompare(b.properties?.roleName ?? ""));
    const table = dataTable({
      items: definitions,
      caption: "Roles",
      text: (d) => `${d.properties?.roleName} ${d.properties?.description} ${d.name}`,
      columns: [
        { label: "Name", render: (d) => d.properties?.roleName },
        { label: "Description", render: (d) => d.properties?.description ?? "" },
        { label: "Type", render: (d) => d.properties?.type ?? "" },
      ],
    });
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The role definitions could not be listed"));
  }
}

// ------------------------------------------------------------------------------------------------
// member pickers (also used by the Cosmos DB data plane page)

/**
 * "Select members": users and service principals from Graph (managed identities are picked with
 * `pickManagedIdentities`). Resolves [{id, name, detail, type, principalType}] or null.
 */
export async function pickDirectoryMembers({ title = "Select members", already = [] } = {}) {
  const chosen = new Map();
  let selectButton;
  const listBlock = h("div", { class: "picker-list" }, spinner());
  const searchId = uid("search");
  const search = h("input", { id: searchId, type: "search", placeholder: "Search by name or email address", autocomplete: "off" });
  let members = [];
  const draw = () => {
    const needle = search.value.trim().toLowerCase();
    const shown = members.filter((m) => !already.includes(m.id)).filter((m) => `${m.name} ${m.detail} ${m.id}`.toLowerCase().includes(needle)).slice(0, 50);
    replace(listBlock, shown.length ? h("ul", { class: "picker" }, shown.map((member) => pickerRow(member, chosen, () => (selectButton.disabled = chosen.size === 0))))
      : h("p", { class: "hint" }, "No results."));
  };
  search.addEventListener("input", draw);
  const dialog = openDialog({
    title,
    className: "dialog-wide",
    body: [h("div", { class: "field" }, h("label", { for: searchId }, "Select"), search), listBlock],
    actions: [{ label: "Select", kind: "primary", value: "select", disabled: true, ref: (b) => (selectButton = b) }, { label: "Close", value: "close" }],
  });
  try {
    const [users, principals] = await Promise.all([graph.list("/v1.0/users"), graph.list("/v1.0/servicePrincipals")]);
    members = [
      ...users.map((u) => ({ id: u.id, name: u.displayName ?? u.userPrincipalName, detail: u.userPrincipalName ?? "", type: "User", principalType: "User" })),
      ...principals.filter((p) => p.servicePrincipalType !== "ManagedIdentity")
        .map((p) => ({ id: p.id, name: p.displayName ?? p.appId, detail: `App ID: ${p.appId ?? ""}`, type: "App", principalType: "ServicePrincipal" })),
    ].sort((a, b) => a.name.localeCompare(b.name));
    draw();
  } catch (error) {
    replace(listBlock, errorBanner(error, "The directory could not be listed"));
  }
  search.focus();
  return (await dialog) === "select" ? [...chosen.values()] : null;
}

function pickerRow(member, chosen, changed) {
  const box = h("input", {
    type: "checkbox", id: uid("pick"), checked: chosen.has(member.id),
    onchange: (event) => {
      if (event.target.checked) chosen.set(member.id, member);
      else chosen.delete(member.id);
      changed();
    },
  });
  return h("li", {}, box, h("label", { for: box.id }, h("span", { class: "picker-name" }, member.name), h("span", { class: "picker-detail" }, member.detail)));
}

/**
 * "Select managed identities": user-assigned identities of a subscription, or the system-assigned
 * identities of its virtual machines. Resolves [{id, name, detail, type, principalType}] or null.
 */
export async function pickManagedIdentities({ subscription, already = [] } = {}) {
  const chosen = new Map();
  let selectButton;
  const listBlock = h("div", { class: "picker-list" }, spinner());
  const subscriptionSelect = select([], {});
  const kindSelect = select([{ value: "user", label: "User-assigned managed identity" }, { value: "vm", label: "Virtual machine" }], { value: "user" });
  const filterId = uid("filter");
  const filter = h("input", { id: filterId, type: "search", placeholder: "Search by name", autocomplete: "off" });
  let members = [];
  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = members.filter((m) => !already.includes(m.id)).filter((m) => `${m.name} ${m.detail}`.toLowerCase().includes(needle));
    replace(listBlock, shown.length ? h("ul", { class: "picker" }, shown.map((member) => pickerRow(member, chosen, () => (selectButton.disabled = chosen.size === 0))))
      : h("p", { class: "hint" }, "No managed identities of this kind in this subscription."));
  };
  let generation = 0;
  const load = async () => {
    // A later choice wins over an earlier list still on its way.
    const mine = ++generation;
    replace(listBlock, spinner());
    try {
      let found;
      if (kindSelect.value === "user") {
        const list = await listByType(subscriptionSelect.value, MSI_TYPE, apiVersionFor(MSI_TYPE));
        found = list.filter((i) => i.properties?.principalId).map((i) => ({
          id: i.properties.principalId, name: i.name, detail: `Resource group: ${parseId(i.id).resourceGroup}`, type: "Managed identity", principalType: "ServicePrincipal", resourceId: i.id,
        }));
      } else {
        const list = await listByType(subscriptionSelect.value, VM_TYPE, apiVersionFor(VM_TYPE));
        found = list.filter((vm) => vm.identity?.principalId).map((vm) => ({
          id: vm.identity.principalId, name: vm.name, detail: `Virtual machine, resource group: ${parseId(vm.id).resourceGroup}`, type: "Managed identity", principalType: "ServicePrincipal", resourceId: vm.id,
        }));
      }
      if (mine !== generation) return;
      members = found.sort((a, b) => a.name.localeCompare(b.name));
      draw();
    } catch (error) {
      if (mine === generation) replace(listBlock, errorBanner(error, "The managed identities could not be listed"));
    }
  };
  subscriptionSelect.addEventListener("change", load);
  kindSelect.addEventListener("change", load);
  filter.addEventListener("input", draw);
  const dialog = openDialog({
    title: "Select managed identities",
    className: "dialog-wide",
    body: [field("Subscription", subscriptionSelect), field("Managed identity", kindSelect), h("div", { class: "field" }, h("label", { for: filterId }, "Select"), filter), listBlock],
    actions: [{ label: "Select", kind: "primary", value: "select", disabled: true, ref: (b) => (selectButton = b) }, { label: "Close", value: "close" }],
  });
  try {
    const subs = await subscriptions();
    setOptions(subscriptionSelect, subs.map((s) => ({ value: s.subscriptionId, label: s.displayName ?? s.subscriptionId })), { value: subscription });
    await load();
  } catch (error) {
    replace(listBlock, errorBanner(error, "The subscriptions could not be listed"));
  }
  return (await dialog) === "select" ? [...chosen.values()] : null;
}

// ------------------------------------------------------------------------------------------------
// Add role assignment

export async function addRoleAssignment(content, resource, ctx) {
  const scope = resource.id;
  const parts = parseId(scope);
  const result = h("div", { class: "form-result" });
  let role = null;
  let members = [];
  let definitions = [];

  const roleBody = h("div", {}, spinner());
  const roleTable = dataTable({
    caption: "Roles",
    filterLabel: "Search by role name, description, permission, or ID",
    text: (d) => `${d.properties?.roleName} ${d.properties?.description} ${d.name} ${(d.properties?.permissions ?? []).flatMap((p) => p.actions ?? []).join(" ")}`,
    columns: [
      {
        label: "Name",
        render: (d) => {
          const radio = h("input", {
            type: "radio", name: "role", id: uid("role"), checked: role?.id === d.id,
            onchange: () => {
              role = d;
              selectedRole.textContent = `Selected role: ${d.properties?.roleName}`;
            },
          });
          return h("span", { class: "radio-cell" }, radio, h("label", { for: radio.id }, d.properties?.roleName ?? d.name));
        },
      },
      { label: "Description", render: (d) => d.properties?.description ?? "" },
      { label: "Type", render: (d) => d.properties?.type ?? "" },
    ],
  });
  const selectedRole = h("p", { class: "selected-role", "aria-live": "polite" }, "No role selected");
  const roleTab = h("div", {}, h("p", { class: "hint" }, "A role definition is a collection of permissions. You can use the built-in roles or you can create your own custom roles."), roleBody, selectedRole);

  const assignUser = h("input", { type: "radio", name: "assign-to", id: uid("assign"), value: "user", checked: true });
  const assignIdentity = h("input", { type: "radio", name: "assign-to", id: uid("assign"), value: "identity" });
  const membersTableBody = h("div", {});
  const descriptionInput = input({ maxlength: "1024" });
  const drawMembers = () => {
    replace(membersTableBody, members.length
      ? h("table", { class: "data-table" }, h("caption", { class: "visually-hidden" }, "Selected members"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Name"), h("th", { scope: "col" }, "Object ID"), h("th", { scope: "col" }, "Type"), h("th", { scope: "col" }, h("span", { class: "visually-hidden" }, "Actions")))),
        h("tbody", {}, members.map((m) => h("tr", {}, h("td", {}, m.name), h("td", { class: "mono" }, m.id), h("td", {}, m.type),
          h("td", {}, button("Remove", () => {
            members = members.filter((x) => x.id !== m.id);
            drawMembers();
          }, { ariaLabel: `Remove ${m.name}` }))))))
      : h("p", { class: "hint" }, "No members selected"));
  };
  const switchKind = () => {
    members = [];
    drawMembers();
  };
  assignUser.addEventListener("change", switchKind);
  assignIdentity.addEventListener("change", switchKind);
  const selectMembers = async () => {
    const picked = assignIdentity.checked
      ? await pickManagedIdentities({ subscription: parts.subscription, already: members.map((m) => m.id) })
      : await pickDirectoryMembers({ already: members.map((m) => m.id) });
    if (picked?.length) {
      members = [...members, ...picked];
      drawMembers();
    }
  };
  drawMembers();
  const membersTab = h("div", { class: "form" },
    h("p", {}, "Selected role: ", h("strong", { class: "role-name" }, "")),
    h("fieldset", { class: "fieldset" }, h("legend", {}, "Assign access to"),
      h("div", { class: "check" }, assignUser, h("label", { for: assignUser.id }, "User, group, or service principal")),
      h("div", { class: "check" }, assignIdentity, h("label", { for: assignIdentity.id }, "Managed identity"))),
    h("div", { class: "field" }, h("span", { class: "label-text" }, "Members"), h("div", { class: "field-control" }, button("+ Select members", selectMembers, { ariaLabel: "Select members" }))),
    membersTableBody,
    field("Description", descriptionInput, { hint: "Optional" }));

  const reviewBody = h("div", {});
  const reviewTab = h("div", {}, result, reviewBody);
  const drawReview = () => {
    replace(reviewBody, essentials([
      ["Role", role?.properties?.roleName ?? "No role selected"],
      ["Scope", scope],
      ["Members", members.length ? h("ul", { class: "plain" }, members.map((m) => h("li", {}, `${m.name} (${m.type}, ${m.id})`))) : "No members selected"],
      ["Description", descriptionInput.value || "No description"],
    ]));
  };

  const order = ["role", "members", "review"];
  const footer = h("div", { class: "wizard-footer" });
  let wizard;
  const drawFooter = (id) => {
    const index = order.indexOf(id);
    replace(footer,
      button("Review + assign", () => (id === "review" ? assign() : wizard.select(order[index + 1])), { kind: "primary", id: "review-assign" }),
      index > 0 ? button("Previous", () => wizard.select(order[index - 1])) : null,
      index < order.length - 1 ? button("Next", () => wizard.select(order[index + 1])) : null);
  };
  wizard = tabs([
    { id: "role", label: "Role", render: (panel) => append(panel, roleTab) },
    {
      id: "members",
      label: "Members",
      render: (panel) => {
        membersTab.querySelector(".role-name").textContent = role?.properties?.roleName ?? "None";
        append(panel, membersTab);
      },
    },
    { id: "review", label: "Review + assign", render: (panel) => { drawReview(); append(panel, reviewTab); } },
  ], { label: "Add role assignment", onChange: drawFooter });
  append(content, 
    h("p", {}, "Scope: ", h("span", { class: "mono" }, scope), " · ", link(resourceRoute(scope, "iam"), "Back to Access control (IAM)")),
    wizard.element, footer);

  try {
    definitions = await roleDefinitions(scope);
    definitions.sort((a, b) => (a.properties?.roleName ?? "").localeCompare(b.properties?.roleName ?? ""));
    roleTable.setItems(definitions);
    replace(roleBody, roleTable.element);
  } catch (error) {
    replace(roleBody, errorBanner(error, "The role definitions could not be listed"));
  }

  async function assign() {
    const problems = [];
    if (!role) problems.push("Select a role on the Role tab.");
    if (!members.length) problems.push("Select at least one member on the Members tab.");
    if (problems.length) {
      replace(result, errorBanner({ code: "Validation", message: problems.join(" ") }));
      return;
    }
    const submit = footer.querySelector("#review-assign");
    if (submit) submit.disabled = true;
    let allOk = true;
    for (const member of members) {
      const id = `${assignmentsUrl(scope)}/${crypto.randomUUID()}`;
      const properties = { roleDefinitionId: role.id, principalId: member.id, principalType: member.principalType };
      if (descriptionInput.value.trim()) properties.description = descriptionInput.value.trim();
      const outcome = await operation({
        name: "Add role assignment",
        resource: id,
        progress: `Adding role assignment ${role.properties?.roleName} for ${member.name}...`,
        success: `${member.name} was added as ${role.properties?.roleName} for ${parts.name ?? scope}`,
        container: result,
        run: () => arm.put(id, AUTH_API, { properties }),
      });
      if (!outcome.ok) {
        allOk = false;
        break;
      }
    }
    if (submit) submit.disabled = false;
    if (allOk) location.hash = resourceRoute(scope, "iam");
  }
}

// ------------------------------------------------------------------------------------------------
// a principal's Azure role assignments

/** `#/roleassignments/{principalId}?name=&from=`: as a page of its own. */
export async function principalAssignments(view, ctx) {
  const principalId = ctx.params[0];
  const name = ctx.query.get("name");
  const from = ctx.query.get("from");
  append(view, pageHeader("Azure role assignments", name ? `Managed identity of ${name}` : principalId),
    from ? h("p", {}, link(resourceRoute(from, "identity"), `Back to ${parseId(from).name}`)) : null);
  await assignmentsOfPrincipal(view, principalId, from ? parseId(from).subscription : null, ctx);
}

/** The assignments of one principal in a subscription, with "+ Add role assignment". */
export async function assignmentsOfPrincipal(container, principalId, subscription, ctx) {
  const result = h("div", { class: "form-result" });
  const subscriptionSelect = select([], {});
  const body = h("div", {}, spinner());
  append(container, 
    commandBar(button("+ Add role assignment", add, { kind: "primary", ariaLabel: "Add role assignment" }), button("↻ Refresh", () => load(), { ariaLabel: "Refresh" })),
    field("Subscription", subscriptionSelect),
    result, body);
  const table = dataTable({
    caption: "Azure role assignments",
    text: (a) => `${a.roleName} ${a.resourceName} ${a.resourceType}`,
    emptyText: "No role assignments for this identity in this subscription",
    columns: [
      { label: "Role", render: (a) => a.roleName },
      { label: "Resource Name", render: (a) => link(resourceRoute(a.properties.scope), a.resourceName) },
      { label: "Resource Type", render: (a) => a.resourceType },
      { label: "Scope", render: (a) => h("span", { class: "mono" }, a.properties.scope) },
    ],
  });
  subscriptionSelect.addEventListener("change", () => load());
  try {
    const subs = await subscriptions();
    setOptions(subscriptionSelect, subs.map((s) => ({ value: s.subscriptionId, label: s.displayName ?? s.subscriptionId })), { value: subscription ?? undefined });
  } catch (error) {
    replace(body, errorBanner(error, "The subscriptions could not be listed"));
    return;
  }
  await load();

  async function load() {
    replace(body, spinner());
    const sub = `/subscriptions/${subscriptionSelect.value}`;
    try {
      const [assignments, definitions] = await Promise.all([
        arm.list(`${sub}/providers/Microsoft.Authorization/roleAssignments?$filter=${encodeURIComponent(`principalId eq '${principalId}'`)}`, AUTH_API),
        roleDefinitions(sub),
      ]);
      if (ctx && !ctx.alive()) return;
      const names = new Map(definitions.map((d) => [roleGuid(d.id), d.properties?.roleName]));
      table.setItems(assignments.map((a) => {
        const scopeParts = parseId(a.properties?.scope);
        return {
          ...a,
          roleName: names.get(roleGuid(a.properties?.roleDefinitionId)) ?? roleGuid(a.properties?.roleDefinitionId),
          resourceName: scopeParts.type === "Microsoft.Resources/subscriptions" ? subscriptionSelect.selectedOptions[0]?.textContent : scopeParts.name ?? a.properties?.scope,
          resourceType: typeLabel(scopeParts.type),
        };
      }));
      replace(body, table.element);
    } catch (error) {
      replace(body, errorBanner(error, "The role assignments could not be listed"));
    }
  }

  async function add() {
    const scopeKind = select([{ value: "subscription", label: "Subscription" }, { value: "group", label: "Resource group" }], { value: "group" });
    const groupSelect = select([], {});
    const roleSelect = select([], {});
    const problems = h("div", {});
    const loadGroups = async () => {
      try {
        const list = await listGroups(subscriptionSelect.value);
        setOptions(groupSelect, list.map((g) => ({ value: g.id, label: g.name })).sort((a, b) => a.label.localeCompare(b.label)), { placeholder: "Select a resource group" });
      } catch (error) {
        append(problems, errorBanner(error, "The resource groups could not be listed"));
      }
    };
    const groupField = field("Resource group", groupSelect);
    scopeKind.addEventListener("change", () => (groupField.hidden = scopeKind.value !== "group"));
    const chosenScope = () => (scopeKind.value === "group" ? groupSelect.value : `/subscriptions/${subscriptionSelect.value}`);
    const dialog = openDialog({
      title: "Add role assignment",
      body: [problems, field("Scope", scopeKind), field("Subscription", h("input", { type: "text", readOnly: true, value: subscriptionSelect.selectedOptions[0]?.textContent ?? "" })), groupField, field("Role", roleSelect)],
      actions: [{ label: "Save", kind: "primary", value: "save" }, { label: "Cancel", value: "cancel" }],
    });
    try {
      const definitions = await roleDefinitions(`/subscriptions/${subscriptionSelect.value}`);
      setOptions(roleSelect, definitions.map((d) => ({ value: d.id, label: d.properties?.roleName ?? d.name })).sort((a, b) => a.label.localeCompare(b.label)), { placeholder: "Select a role" });
    } catch (error) {
      append(problems, errorBanner(error, "The role definitions could not be listed"));
    }
    await loadGroups();
    if ((await dialog) !== "save") return;
    const scope = chosenScope();
    if (!scope || !roleSelect.value) {
      replace(result, errorBanner({ code: "Validation", message: "Choose a scope and a role." }));
      return;
    }
    const id = `${scope}/providers/Microsoft.Authorization/roleAssignments/${crypto.randomUUID()}`;
    const outcome = await operation({
      name: "Add role assignment",
      resource: id,
      container: result,
      run: () => arm.put(id, AUTH_API, { properties: { roleDefinitionId: roleSelect.value, principalId, principalType: "ServicePrincipal" } }),
    });
    if (outcome.ok) await load();
  }
}
