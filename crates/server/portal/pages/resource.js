// A resource's blade (`#/resource{id}[/{blade}]`): the header, the resource menu for its type
// (Overview, Access control (IAM), and the type's own pages), and the chosen page. Resources of
// types the portal has no page for get a generic overview (properties as JSON, Delete).
//
// A resource id has an even number of path segments; one more segment names the blade.

import { SUBSCRIPTIONS_API, apiVersionFor, arm } from "../lib/api.js";
import { operation, parseId, resourceRoute, typeLabel } from "../lib/resources.js";
import { append, button, commandBar, confirmDialog, errorBanner, essentials, h, link } from "../lib/ui.js";
import * as cosmos from "./cosmos.js";
import * as deploy from "./deploy.js";
import * as groups from "./groups.js";
import * as iam from "./iam.js";
import * as identities from "./identities.js";
import * as subscriptionsPage from "./subscriptions.js";
import * as vmIdentity from "./vm-identity.js";
import * as vms from "./vms.js";

const IAM = ["iam", "Access control (IAM)", iam.blade];
const ADD_ROLE = ["addroleassignment", null, iam.addRoleAssignment];

/** Each type's menu: [blade, label (null: not in the menu), render(content, resource, ctx)]. */
const MENUS = {
  "microsoft.resources/subscriptions": [["overview", "Overview", subscriptionsPage.overview], IAM, ADD_ROLE, ["deployments", "Deployments", subscriptionsPage.deployments]],
  "microsoft.resources/resourcegroups": [["overview", "Overview", groups.overview], IAM, ADD_ROLE, ["deployments", "Deployments", groups.deployments]],
  "microsoft.compute/virtualmachines": [["overview", "Overview", vms.overview], IAM, ADD_ROLE, ["identity", "Identity", vmIdentity.blade]],
  "microsoft.managedidentity/userassignedidentities": [["overview", "Overview", identities.overview], IAM, ADD_ROLE, ["roleassignments", "Azure role assignments", identities.roleAssignments]],
  "microsoft.documentdb/databaseaccounts": [["overview", "Overview", cosmos.overview], IAM, ADD_ROLE, ["keys", "Keys", cosmos.keys], ["dataplaneroles", "Data plane role assignments", cosmos.dataPlaneRoles]],
  "microsoft.resources/deployments": [["overview", "Overview", deploy.overview], ["template", "Template", deploy.template]],
};
const GENERIC = [["overview", "Overview", genericOverview], IAM, ADD_ROLE];

/** Reads a resource of any kind (subscription, group, or provider resource). */
export async function getResource(id) {
  const parts = parseId(id);
  if (parts.type === "Microsoft.Resources/subscriptions") return arm.get(`/subscriptions/${parts.subscription}`, SUBSCRIPTIONS_API);
  return arm.get(id, apiVersionFor(parts.type));
}

export async function render(view, ctx) {
  const segments = ctx.params[0].split("/").filter(Boolean);
  const blade = segments.length % 2 === 1 ? segments.pop() : "overview";
  const id = `/${segments.join("/")}`;
  const parts = parseId(id);
  const menu = MENUS[(parts.type ?? "").toLowerCase()] ?? GENERIC;
  const entry = menu.find(([name]) => name === blade) ?? menu[0];
  let resource;
  try {
    resource = await getResource(id);
  } catch (error) {
    append(view, h("header", { class: "page-header" }, h("h1", {}, parts.name ?? id), h("p", { class: "page-subtitle" }, typeLabel(parts.type))),
      errorBanner(error, "The resource could not be read"));
    return;
  }
  if (!ctx.alive()) return;
  const title = parts.type === "Microsoft.Resources/subscriptions" ? resource.displayName ?? parts.name : resource.name ?? parts.name;
  const heading = entry[1] && entry[0] !== "overview" ? `${title} | ${entry[1]}` : entry[0] === "addroleassignment" ? "Add role assignment" : title;
  const resourceMenu = h("nav", { class: "resource-menu", "aria-label": "Resource menu" },
    h("ul", {}, menu.filter(([, label]) => label).map(([name, label]) => h("li", {},
      h("a", { href: `#${resourceRoute(id, name === "overview" ? "" : name)}`, "aria-current": name === entry[0] ? "page" : null }, label)))));
  const content = h("div", { class: "blade-content" });
  append(view, 
    h("header", { class: "page-header" },
      h("h1", {}, heading),
      h("p", { class: "page-subtitle" }, typeLabel(parts.type),
        parts.resourceGroup && parts.type !== "Microsoft.Resources/resourceGroups"
          ? [" in ", link(resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`), parts.resourceGroup)]
          : null)),
    h("div", { class: "blade" }, resourceMenu, content));
  await entry[2](content, resource, ctx);
}

/** The overview of a type the portal has no page for: essentials, properties, Delete. */
async function genericOverview(content, resource) {
  const parts = parseId(resource.id);
  const result = h("div", { class: "form-result" });
  append(content, 
    commandBar(button("Delete", remove, { ariaLabel: "Delete" })),
    result,
    essentials([
      ["Resource group", parts.resourceGroup ? link(resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`), parts.resourceGroup) : "—"],
      ["Location", resource.location],
      ["Type", resource.type],
      ["Resource ID", h("span", { class: "mono" }, resource.id)],
    ]),
    h("h2", {}, "Properties"),
    h("pre", { class: "json", tabindex: "0", "aria-label": "Resource JSON" }, JSON.stringify(resource, null, 2)));

  async function remove() {
    if (!(await confirmDialog({ title: `Delete ${typeLabel(parts.type).toLowerCase()}`, message: `Are you sure you want to delete '${resource.name}'?`, danger: true }))) return;
    const outcome = await operation({
      name: `Delete ${typeLabel(parts.type).toLowerCase()}`,
      resource: resource.id,
      container: result,
      run: (progress) => arm.delete(resource.id, apiVersionFor(parts.type), { onProgress: progress }),
    });
    if (outcome.ok) {
      location.hash = parts.resourceGroup ? resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`) : "/home";
    }
  }
}
