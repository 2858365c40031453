// Managed Identities (user-assigned): the list, "Create User Assigned Managed Identity"
// (subscription, group, region, name), an identity's overview (Client ID, Object (principal) ID,
// Resource ID, Delete) and its Azure role assignments.

import { apiVersionFor, arm } from "../lib/api.js";
import { missing, projectDetails, validationBanner } from "../lib/forms.js";
import { listByType, operation, parseId, resourceRoute, subscriptionName, subscriptions } from "../lib/resources.js";
import {
  append, button, commandBar, confirmDialog, copyable, dataTable, errorBanner, essentials, field, h, input, link, pageHeader, refreshPage,
  replace, spinner,
} from "../lib/ui.js";
import { assignmentsOfPrincipal } from "./iam.js";

const MSI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities";
const MSI_API = apiVersionFor(MSI_TYPE);

export async function list(view, ctx) {
  const body = h("div", {}, spinner());
  append(view, pageHeader("Managed Identities"),
    commandBar(
      button("+ Create", () => (location.hash = "/create/identity"), { kind: "primary", ariaLabel: "Create" }),
      button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    body);
  try {
    const items = [];
    for (const sub of await subscriptions()) {
      const listed = await listByType(sub.subscriptionId, MSI_TYPE, MSI_API);
      items.push(...listed.map((i) => ({ ...i, subscriptionName: sub.displayName ?? sub.subscriptionId })));
    }
    if (!ctx.alive()) return;
    items.sort((a, b) => a.name.localeCompare(b.name));
    const table = dataTable({
      items,
      caption: "Managed Identities",
      text: (i) => `${i.name} ${parseId(i.id).resourceGroup} ${i.location} ${i.properties?.clientId}`,
      emptyText: "No managed identities to display",
      columns: [
        { label: "Name", render: (i) => link(resourceRoute(i.id), i.name) },
        { label: "Resource group", render: (i) => parseId(i.id).resourceGroup },
        { label: "Location", render: (i) => i.location },
        { label: "Subscription", render: (i) => i.subscriptionName },
      ],
    });
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The managed identities could not be listed"));
  }
}

export async function create(view, ctx) {
  const project = projectDetails({ initialGroup: ctx.query.get("group") ?? undefined });
  const nameInput = input({ name: "name", maxlength: "128" });
  const result = h("div", { class: "form-result" });
  const createButton = button("Create", submit, { kind: "primary" });
  append(view, pageHeader("Create User Assigned Managed Identity"),
    h("div", { class: "form" },
      h("section", { class: "form-section" }, h("h2", {}, "Project details"), project.fields.problems, project.fields.subscription, project.fields.group),
      h("section", { class: "form-section" }, h("h2", {}, "Instance details"), project.fields.region,
        field("Name", nameInput, { required: true, hint: "3 to 128 letters, digits, hyphens and underscores, starting with a letter or digit." })),
      result,
      h("div", { class: "form-actions" }, createButton, button("Cancel", () => history.back()))));
  await project.ready;

  async function submit() {
    const { subscription, group, location: region } = project.values();
    const name = nameInput.value.trim();
    const problems = missing([["Subscription", subscription], ["Resource group", group], ["Region", region], ["Name", name]]);
    if (problems.length) return replace(result, validationBanner(problems));
    createButton.disabled = true;
    const id = `/subscriptions/${subscription}/resourceGroups/${group}/providers/${MSI_TYPE}/${name}`;
    const outcome = await operation({
      name: "Create managed identity",
      resource: id,
      progress: `Creating managed identity ${name}...`,
      success: `Managed identity ${name} created`,
      container: result,
      run: () => arm.put(id, MSI_API, { location: region }),
    });
    createButton.disabled = false;
    if (outcome.ok) location.hash = resourceRoute(outcome.result?.id ?? id);
  }
}

export async function overview(content, identity) {
  const parts = parseId(identity.id);
  const result = h("div", { class: "form-result" });
  append(content, 
    commandBar(button("Delete", remove, { ariaLabel: "Delete" }), button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    h("h2", {}, "Essentials"),
    essentials([
      ["Resource group", link(resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`), parts.resourceGroup)],
      ["Location", identity.location],
      ["Subscription", link(resourceRoute(`/subscriptions/${parts.subscription}`), await subscriptionName(parts.subscription))],
      ["Subscription ID", parts.subscription],
      ["Client ID", copyable(identity.properties?.clientId, "Client ID")],
      ["Object (principal) ID", copyable(identity.properties?.principalId, "Object (principal) ID")],
      ["Tenant ID", identity.properties?.tenantId],
      ["Resource ID", copyable(identity.id, "Resource ID")],
    ]));

  async function remove() {
    const confirmed = await confirmDialog({
      title: "Delete managed identity",
      message: `Are you sure you want to delete '${identity.name}'? Resources using it lose it, and its role assignments stop working.`,
      confirmLabel: "Delete",
      cancelLabel: "Cancel",
      danger: true,
    });
    if (!confirmed) return;
    const outcome = await operation({
      name: "Delete managed identity",
      resource: identity.id,
      progress: `Deleting managed identity ${identity.name}...`,
      success: `Managed identity ${identity.name} deleted`,
      container: result,
      run: () => arm.delete(identity.id, MSI_API),
    });
    if (outcome.ok) location.hash = "/identities";
  }
}

export async function roleAssignments(content, identity, ctx) {
  const principalId = identity.properties?.principalId;
  if (!principalId) {
    append(content, errorBanner({ code: "NoPrincipal", message: "This identity has no principal id." }));
    return;
  }
  await assignmentsOfPrincipal(content, principalId, parseId(identity.id).subscription, ctx);
}
