// Resource groups: the list (filter, paging), "Create a resource group", a group's overview
// (its resources, "Delete resource group" confirmed by typing the name) and its deployments.

import { RESOURCES_API, apiVersionFor, arm } from "../lib/api.js";
import { missing, projectDetails, validationBanner } from "../lib/forms.js";
import { operation, parseId, resourceRoute, subscriptionName, subscriptions, typeLabel } from "../lib/resources.js";
import {
  append, button, commandBar, confirmDialog, dataTable, errorBanner, essentials, field, formatTime, h, input, link, pageHeader,
  refreshPage, replace, spinner,
} from "../lib/ui.js";

export async function list(view, ctx) {
  const body = h("div", {}, spinner());
  append(view, pageHeader("Resource groups"),
    commandBar(
      button("+ Create", () => (location.hash = "/create/resourcegroup"), { kind: "primary", ariaLabel: "Create" }),
      button("↻ Refresh", () => load(), { ariaLabel: "Refresh" })),
    body);
  const table = dataTable({
    caption: "Resource groups",
    text: (g) => `${g.name} ${g.location} ${g.subscriptionName}`,
    emptyText: "No resource groups to display",
    columns: [
      { label: "Name", render: (g) => link(resourceRoute(g.id), g.name) },
      { label: "Subscription", render: (g) => g.subscriptionName },
      { label: "Location", render: (g) => g.location },
    ],
  });
  async function load() {
    replace(body, spinner());
    try {
      const items = [];
      for (const sub of await subscriptions({ refresh: true })) {
        const listed = await arm.list(`/subscriptions/${sub.subscriptionId}/resourcegroups`, RESOURCES_API);
        items.push(...listed.map((g) => ({ ...g, subscriptionName: sub.displayName ?? sub.subscriptionId })));
      }
      if (!ctx.alive()) return;
      items.sort((a, b) => a.name.localeCompare(b.name));
      table.setItems(items);
      replace(body, table.element);
    } catch (error) {
      replace(body, errorBanner(error, "The resource groups could not be listed"));
    }
  }
  await load();
}

export async function create(view) {
  const project = projectDetails({ group: false });
  const nameInput = input({ name: "name", maxlength: "90" });
  const result = h("div", { class: "form-result" });
  const createButton = button("Create", submit, { kind: "primary" });
  const form = h("div", { class: "form" },
    h("section", { class: "form-section" },
      h("h2", {}, "Project details"),
      project.fields.problems,
      project.fields.subscription,
      field("Resource group name", nameInput, { required: true, hint: "Letters, digits, underscores, hyphens, periods and parentheses; up to 90 characters." })),
    h("section", { class: "form-section" }, h("h2", {}, "Resource details"), project.fields.region),
    result,
    h("div", { class: "form-actions" }, createButton, button("Cancel", () => history.back())));
  append(view, pageHeader("Create a resource group"), form);
  await project.ready;

  async function submit() {
    const subscription = project.values().subscription;
    const name = nameInput.value.trim();
    const region = project.values().location;
    const problems = missing([["Subscription", subscription], ["Resource group name", name], ["Region", region]]);
    if (problems.length) return replace(result, validationBanner(problems));
    createButton.disabled = true;
    const id = `/subscriptions/${subscription}/resourceGroups/${name}`;
    const outcome = await operation({
      name: "Create resource group",
      resource: id,
      progress: "Creating resource group...",
      success: "Resource group created",
      container: result,
      run: () => arm.put(id, RESOURCES_API, { location: region }),
    });
    createButton.disabled = false;
    if (outcome.ok) location.hash = resourceRoute(outcome.result?.id ?? id);
  }
}

/** A group's overview: essentials, its resources, and "Delete resource group". */
export async function overview(content, group) {
  const id = group.id;
  const parts = parseId(id);
  const result = h("div", { class: "form-result" });
  const resourcesBlock = h("section", { class: "section" }, h("h2", {}, "Resources"), spinner());
  append(content, 
    commandBar(
      button("+ Create", () => (location.hash = `/create/vm?subscription=${parts.subscription}&group=${encodeURIComponent(group.name)}`), { ariaLabel: "Create a virtual machine in this group", kind: "primary" }),
      button("Delete resource group", deleteGroup, { ariaLabel: "Delete resource group" }),
      button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    essentials([
      ["Subscription", link(resourceRoute(`/subscriptions/${parts.subscription}`), await subscriptionName(parts.subscription))],
      ["Subscription ID", parts.subscription],
      ["Location", group.location],
      ["Provisioning state", group.properties?.provisioningState],
      ["Tags", Object.entries(group.tags ?? {}).map(([k, v]) => `${k}: ${v}`).join(", ") || "—"],
    ]),
    resourcesBlock);
  try {
    const resources = await arm.list(`${id}/resources`, RESOURCES_API);
    const table = dataTable({
      items: resources,
      caption: "Resources in this group",
      text: (r) => `${r.name} ${r.type} ${r.location}`,
      emptyText: "No resources to display",
      columns: [
        { label: "Name", render: (r) => link(resourceRoute(r.id), r.name) },
        { label: "Type", render: (r) => typeLabel(r.type) },
        { label: "Location", render: (r) => r.location ?? "—" },
      ],
    });
    replace(resourcesBlock, h("h2", {}, "Resources"), table.element);
  } catch (error) {
    replace(resourcesBlock, h("h2", {}, "Resources"), errorBanner(error, "The group's resources could not be listed"));
  }

  async function deleteGroup() {
    const confirmed = await confirmDialog({
      title: "Delete a resource group",
      message: `The following resource group and all its dependent resources will be permanently deleted: ${group.name}. This cannot be undone.`,
      typeToConfirm: group.name,
      typeLabel: "Enter resource group name to confirm deletion",
      confirmLabel: "Delete",
      cancelLabel: "Cancel",
      danger: true,
    });
    if (!confirmed) return;
    const outcome = await operation({
      name: "Delete resource group",
      resource: id,
      progress: `Deleting resource group ${group.name}...`,
      success: `Resource group ${group.name} deleted`,
      container: result,
      run: (progress) => arm.delete(id, RESOURCES_API, { onProgress: progress }),
    });
    if (outcome.ok) location.hash = "/resourcegroups";
  }
}

/** A group's deployments (Microsoft.Resources/deployments). */
export async function deployments(content, group) {
  const block = h("div", {}, spinner());
  append(content, block);
  try {
    const items = await arm.list(`${group.id}/providers/Microsoft.Resources/deployments`, apiVersionFor("Microsoft.Resources/deployments"));
    items.sort((a, b) => String(b.properties?.timestamp ?? "").localeCompare(String(a.properties?.timestamp ?? "")));
    const table = dataTable({
      items,
      caption: "Deployments",
      text: (d) => `${d.name} ${d.properties?.provisioningState}`,
      emptyText: "No deployments to display",
      columns: [
        { label: "Deployment name", render: (d) => link(resourceRoute(d.id), d.name) },
        { label: "Status", render: (d) => d.properties?.provisioningState ?? "—" },
        { label: "Last modified", render: (d) => formatTime(d.properties?.timestamp) },
        { label: "Duration", render: (d) => d.properties?.duration ?? "—" },
      ],
    });
    replace(block, table.element);
  } catch (error) {
    replace(block, errorBanner(error, "The deployments could not be listed"));
  }
}
