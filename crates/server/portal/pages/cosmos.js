// Azure Cosmos DB: the accounts list, "Create Azure Cosmos DB Account" (account name, group,
// location), an account's overview (URI), Keys (read-write and read-only keys and connection
// strings, each hidden until shown), and Data plane role assignments (the account's
// sqlRoleAssignments: add one with a role from its sqlRoleDefinitions, a principal, a scope;
// remove).

import { apiVersionFor, arm, directoryObjects } from "../lib/api.js";
import { missing, projectDetails, validationBanner } from "../lib/forms.js";
import { listByType, operation, parseId, resourceRoute, sameId, subscriptionName, subscriptions } from "../lib/resources.js";
import {
  append, button, commandBar, confirmDialog, copyable, dataTable, errorBanner, essentials, field, flash, h, input, link, openDialog, pageHeader,
  refreshPage, replace, select, spinner, tabs, uid,
} from "../lib/ui.js";
import { memberType, pickDirectoryMembers, pickManagedIdentities } from "./iam.js";

const COSMOS_TYPE = "Microsoft.DocumentDB/databaseAccounts";
const COSMOS_API = apiVersionFor(COSMOS_TYPE);

export async function list(view, ctx) {
  const body = h("div", {}, spinner());
  append(view, pageHeader("Azure Cosmos DB"),
    commandBar(
      button("+ Create", () => (location.hash = "/create/cosmos"), { kind: "primary", ariaLabel: "Create" }),
      button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    body);
  try {
    const items = [];
    for (const sub of await subscriptions()) {
      const listed = await listByType(sub.subscriptionId, COSMOS_TYPE, COSMOS_API);
      items.push(...listed.map((a) => ({ ...a, subscriptionName: sub.displayName ?? sub.subscriptionId })));
    }
    if (!ctx.alive()) return;
    items.sort((a, b) => a.name.localeCompare(b.name));
    const table = dataTable({
      items,
      caption: "Azure Cosmos DB accounts",
      text: (a) => `${a.name} ${parseId(a.id).resourceGroup} ${a.location}`,
      emptyText: "No Azure Cosmos DB accounts to display",
      columns: [
        { label: "Name", render: (a) => link(resourceRoute(a.id), a.name) },
        { label: "Resource group", render: (a) => parseId(a.id).resourceGroup },
        { label: "Location", render: (a) => a.location },
        { label: "Subscription", render: (a) => a.subscriptionName },
        { label: "Status", render: (a) => a.properties?.provisioningState ?? "—" },
      ],
    });
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The Azure Cosmos DB accounts could not be listed"));
  }
}

export async function create(view, ctx) {
  const project = projectDetails({ initialGroup: ctx.query.get("group") ?? undefined });
  const nameInput = input({ name: "accountName", maxlength: "44" });
  const result = h("div", { class: "form-result" });
  const createButton = button("Create", submit, { kind: "primary" });
  append(view, pageHeader("Create Azure Cosmos DB Account", "Azure Cosmos DB for NoSQL"),
    h("div", { class: "form" },
      h("section", { class: "form-section" }, h("h2", {}, "Project details"), project.fields.problems, project.fields.subscription, project.fields.group),
      h("section", { class: "form-section" }, h("h2", {}, "Instance details"),
        field("Account Name", nameInput, { required: true, hint: "3 to 44 lower-case letters, digits and hyphens." }),
        field("Location", project.regionSelect)),
      result,
      h("div", { class: "form-actions" }, createButton, button("Cancel", () => history.back()))));
  await project.ready;

  async function submit() {
    const { subscription, group, location: region } = project.values();
    const name = nameInput.value.trim();
    const problems = missing([["Subscription", subscription], ["Resource group", group], ["Account Name", name], ["Location", region]]);
    if (name && !/^[a-z0-9][a-z0-9-]{1,42}[a-z0-9]$/.test(name)) problems.push("The account name must be 3 to 44 lower-case letters, digits and hyphens, and start and end with a letter or digit.");
    if (problems.length) return replace(result, validationBanner(problems));
    createButton.disabled = true;
    const id = `/subscriptions/${subscription}/resourceGroups/${group}/providers/${COSMOS_TYPE}/${name}`;
    const outcome = await operation({
      name: "Create Azure Cosmos DB account",
      resource: id,
      progress: `Creating Azure Cosmos DB account ${name}...`,
      success: `Azure Cosmos DB account ${name} created`,
      container: result,
      run: (progress) => arm.put(id, COSMOS_API, {
        location: region,
        kind: "GlobalDocumentDB",
        properties: { databaseAccountOfferType: "Standard", locations: [{ locationName: region, failoverPriority: 0, isZoneRedundant: false }] },
      }, { onProgress: progress }),
    });
    createButton.disabled = false;
    if (outcome.ok) location.hash = resourceRoute(id);
  }
}

export async function overview(content, account) {
  const parts = parseId(account.id);
  const result = h("div", { class: "form-result" });
  const props = account.properties ?? {};
  append(content, 
    commandBar(button("Delete account", remove, { ariaLabel: "Delete account" }), button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    h("h2", {}, "Essentials"),
    essentials([
      ["Resource group", link(resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`), parts.resourceGroup)],
      ["Status", props.provisioningState],
      ["Subscription", link(resourceRoute(`/subscriptions/${parts.subscription}`), await subscriptionName(parts.subscription))],
      ["URI", copyable(props.documentEndpoint, "URI")],
      ["Location", account.location],
      ["Read Locations", (props.readLocations ?? []).map((l) => l.locationName).join(", ")],
      ["Write Locations", (props.writeLocations ?? []).map((l) => l.locationName).join(", ")],
      ["Capacity mode", (props.capabilities ?? []).some((c) => c.name === "EnableServerless") ? "Serverless" : "Provisioned throughput"],
    ]));

  async function remove() {
    const confirmed = await confirmDialog({
      title: "Delete account",
      message: `Are you sure you want to delete the Azure Cosmos DB account '${account.name}' and all its databases?`,
      typeToConfirm: account.name,
      typeLabel: "Confirm the account name",
      confirmLabel: "Delete",
      cancelLabel: "Cancel",
      danger: true,
    });
    if (!confirmed) return;
    const outcome = await operation({
      name: "Delete Azure Cosmos DB account",
      resource: account.id,
      container: result,
      run: (progress) => arm.delete(account.id, COSMOS_API, { onProgress: progress }),
    });
    if (outcome.ok) location.hash = "/cosmos";
  }
}

/** A secret shown as dots until its "Show" button is pressed. */
function secretField(label, value) {
  const id = uid("secret");
  const box = h("input", { id, type: "password", readOnly: true, value: value ?? "", class: "mono secret" });
  const show = h("button", {
    type: "button", class: "btn btn-secondary", "aria-pressed": "false", "aria-label": `Show ${label}`,
    onclick: () => {
      const hidden = box.type === "password";
      box.type = hidden ? "text" : "password";
      show.setAttribute("aria-pressed", String(hidden));
      show.setAttribute("aria-label", `${hidden ? "Hide" : "Show"} ${label}`);
      show.textContent = hidden ? "Hide" : "Show";
    },
  }, "Show");
  const copy = h("button", {
    type: "button", class: "icon-button", "aria-label": `Copy ${label} to clipboard`,
    onclick: async (event) => {
      const target = event.currentTarget;
      try {
        await navigator.clipboard.writeText(value ?? "");
        flash(target, "Copied");
      } catch {
        flash(target, "Copy failed");
      }
    },
  }, "Copy");
  return h("div", { class: "field" }, h("label", { for: id }, label), h("div", { class: "field-control secret-row" }, box, show, copy));
}

export async function keys(content, account) {
  const body = h("div", {}, spinner());
  append(content, body);
  try {
    const [listed, strings] = await Promise.all([
      arm.post(`${account.id}/listKeys`, COSMOS_API),
      arm.post(`${account.id}/listConnectionStrings`, COSMOS_API),
    ]);
    const connection = (strings?.connectionStrings ?? []);
    const find = (re) => connection.find((c) => re.test(c.description ?? ""))?.connectionString;
    const uri = account.properties?.documentEndpoint;
    const view = tabs([
      {
        id: "rw",
        label: "Read-write Keys",
        render: (panel) => append(panel, 
          h("div", { class: "field" }, h("span", { class: "label-text" }, "URI"), copyable(uri, "URI")),
          secretField("PRIMARY KEY", listed?.primaryMasterKey),
          secretField("SECONDARY KEY", listed?.secondaryMasterKey),
          secretField("PRIMARY CONNECTION STRING", find(/^primary sql/i) ?? (uri && `AccountEndpoint=${uri};AccountKey=${listed?.primaryMasterKey};`)),
          secretField("SECONDARY CONNECTION STRING", find(/^secondary sql/i) ?? (uri && `AccountEndpoint=${uri};AccountKey=${listed?.secondaryMasterKey};`))),
      },
      {
        id: "ro",
        label: "Read-only Keys",
        render: (panel) => append(panel, 
          h("div", { class: "field" }, h("span", { class: "label-text" }, "URI"), copyable(uri, "URI")),
          secretField("PRIMARY READ-ONLY KEY", listed?.primaryReadonlyMasterKey),
          secretField("SECONDARY READ-ONLY KEY", listed?.secondaryReadonlyMasterKey),
          secretField("PRIMARY READ-ONLY CONNECTION STRING", find(/^primary read-only sql/i)),
          secretField("SECONDARY READ-ONLY CONNECTION STRING", find(/^secondary read-only sql/i))),
      },
    ], { label: "Keys" });
    replace(body, view.element);
  } catch (error) {
    replace(body, errorBanner(error, "The keys could not be listed"));
  }
}

export async function dataPlaneRoles(content, account, ctx) {
  const result = h("div", { class: "form-result" });
  const removeButton = button("Remove", remove, { ariaLabel: "Remove", disabled: true });
  const body = h("div", {}, spinner());
  append(content, 
    h("p", { class: "hint" }, "Data plane role assignments grant Microsoft Entra principals access to this account's databases, containers and items (sqlRoleAssignments). They are separate from Access control (IAM), which governs the account resource."),
    commandBar(button("+ Add", add, { kind: "primary", ariaLabel: "Add" }), removeButton, button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result, body);
  let definitions = [];
  const table = dataTable({
    selectable: true,
    caption: "Data plane role assignments",
    rowLabel: (a) => `${a.principalName} ${a.roleName}`,
    text: (a) => `${a.roleName} ${a.principalName} ${a.properties?.principalId} ${a.properties?.scope}`,
    emptyText: "No data plane role assignments",
    onSelectionChange: (selected) => (removeButton.disabled = selected.length === 0),
    columns: [
      { label: "Role", render: (a) => a.roleName },
      { label: "Principal", render: (a) => a.principalName },
      { label: "Type", render: (a) => a.principalType },
      { label: "Principal ID", render: (a) => h("span", { class: "mono" }, a.properties?.principalId) },
      { label: "Scope", render: (a) => h("span", { class: "mono" }, relativeScope(account.id, a.properties?.scope)) },
    ],
  });
  try {
    const [assignments, defs] = await Promise.all([
      arm.list(`${account.id}/sqlRoleAssignments`, COSMOS_API),
      arm.list(`${account.id}/sqlRoleDefinitions`, COSMOS_API),
    ]);
    definitions = defs;
    let objects = new Map();
    try {
      objects = await directoryObjects(assignments.map((a) => a.properties?.principalId));
    } catch (error) {
      append(result, errorBanner(error, "Principal names could not be read from the directory"));
    }
    if (!ctx.alive()) return;
    table.setItems(assignments.map((a) => {
      const object = objects.get((a.properties?.principalId ?? "").toLowerCase());
      return {
        ...a,
        roleName: defs.find((d) => sameId(d.id, a.properties?.roleDefinitionId))?.properties?.roleName ?? a.properties?.roleDefinitionId,
        principalName: object?.displayName ?? "Identity not found",
        principalType: memberType(object),
      };
    }));
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The data plane role assignments could not be listed"));
  }

  async function add() {
    const roleSelect = select(definitions.map((d) => ({ value: d.id, label: d.properties?.roleName ?? d.name })), { placeholder: "Select a role" });
    const principalInput = input({ placeholder: "Object (principal) ID", spellcheck: "false" });
    const scopeInput = input({ value: "/" });
    const chosenName = h("span", { class: "hint", "aria-live": "polite" });
    const pick = async (kind) => {
      const picked = kind === "identity"
        ? await pickManagedIdentities({ subscription: parseId(account.id).subscription })
        : await pickDirectoryMembers({ title: "Select a principal" });
      if (picked?.length) {
        principalInput.value = picked[0].id;
        chosenName.textContent = `${picked[0].name} (${picked[0].type})`;
      }
    };
    const value = await openDialog({
      title: "Add data plane role assignment",
      body: [
        field("Role", roleSelect, { required: true }),
        field("Principal ID", principalInput, { required: true, info: chosenName }),
        h("div", { class: "button-row" },
          button("Select a managed identity", () => pick("identity")),
          button("Select a user or service principal", () => pick("user"))),
        field("Scope", scopeInput, { hint: "/ (the account), /dbs/{database} or /dbs/{database}/colls/{container}" }),
      ],
      actions: [{ label: "Save", kind: "primary", value: "save" }, { label: "Cancel", value: "cancel" }],
    });
    if (value !== "save") return;
    const problems = missing([["Role", roleSelect.value], ["Principal ID", principalInput.value], ["Scope", scopeInput.value]]);
    if (problems.length) return replace(result, validationBanner(problems));
    const id = `${account.id}/sqlRoleAssignments/${crypto.randomUUID()}`;
    const outcome = await operation({
      name: "Add data plane role assignment",
      resource: id,
      progress: "Adding data plane role assignment...",
      success: "Data plane role assignment added",
      container: result,
      run: (progress) => arm.put(id, COSMOS_API, {
        properties: { roleDefinitionId: roleSelect.value, scope: scopeInput.value.trim(), principalId: principalInput.value.trim() },
      }, { onProgress: progress }),
    });
    if (outcome.ok) refreshPage();
  }

  async function remove() {
    const selected = table.selected();
    if (!selected.length) return;
    if (!(await confirmDialog({ title: "Remove data plane role assignments", message: `Do you want to remove ${selected.length} data plane role assignment${selected.length === 1 ? "" : "s"}?` }))) return;
    for (const assignment of selected) {
      const outcome = await operation({
        name: "Remove data plane role assignment",
        resource: assignment.id,
        container: result,
        run: (progress) => arm.delete(assignment.id, COSMOS_API, { onProgress: progress }),
      });
      if (!outcome.ok) return;
    }
    refreshPage();
  }
}

function relativeScope(accountId, scope) {
  if (!scope) return "—";
  if (sameId(scope, accountId)) return "/";
  return scope.toLowerCase().startsWith(`${accountId.toLowerCase()}/`) ? scope.slice(accountId.length) : scope;
}


