// Subscriptions: the list, a subscription's overview (with the way to its Access control (IAM))
// and its subscription-level deployments.

import { apiVersionFor, arm } from "../lib/api.js";
import { resourceRoute, subscriptions } from "../lib/resources.js";
import { append, commandBar, dataTable, errorBanner, essentials, formatTime, h, link, pageHeader, replace, spinner } from "../lib/ui.js";

export async function list(view, ctx) {
  const body = h("div", {}, spinner());
  append(view, pageHeader("Subscriptions"), body);
  try {
    const items = await subscriptions({ refresh: true });
    if (!ctx.alive()) return;
    const table = dataTable({
      items,
      caption: "Subscriptions",
      text: (s) => `${s.displayName} ${s.subscriptionId} ${s.state}`,
      emptyText: "You have no subscriptions",
      columns: [
        { label: "Subscription name", render: (s) => link(resourceRoute(s.id), s.displayName ?? s.subscriptionId) },
        { label: "Subscription ID", render: (s) => h("span", { class: "mono" }, s.subscriptionId) },
        { label: "State", render: (s) => s.state ?? "—" },
        { label: "Access control", render: (s) => link(resourceRoute(s.id, "iam"), "Access control (IAM)", { "aria-label": `Access control (IAM) of ${s.displayName ?? s.subscriptionId}` }) },
      ],
    });
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The subscriptions could not be listed"));
  }
}

export async function overview(content, subscription) {
  append(content, 
    commandBar(link(resourceRoute(subscription.id, "iam"), "Access control (IAM)", { class: "btn btn-secondary" })),
    essentials([
      ["Subscription ID", h("span", { class: "mono" }, subscription.subscriptionId)],
      ["Subscription name", subscription.displayName],
      ["Directory (tenant) ID", subscription.tenantId],
      ["State", subscription.state],
    ]),
    h("p", {}, link("/resourcegroups", "Resource groups"), " · ", link("/virtualmachines", "Virtual machines"), " · ",
      link("/identities", "Managed Identities"), " · ", link("/cosmos", "Azure Cosmos DB")));
}

export async function deployments(content, subscription) {
  const block = h("div", {}, spinner());
  append(content, block);
  try {
    const items = await arm.list(`${subscription.id}/providers/Microsoft.Resources/deployments`, apiVersionFor("Microsoft.Resources/deployments"));
    const table = dataTable({
      items,
      caption: "Deployments",
      text: (d) => `${d.name} ${d.properties?.provisioningState}`,
      emptyText: "No deployments to display",
      columns: [
        { label: "Deployment name", render: (d) => link(resourceRoute(d.id), d.name) },
        { label: "Status", render: (d) => d.properties?.provisioningState ?? "—" },
        { label: "Last modified", render: (d) => formatTime(d.properties?.timestamp) },
      ],
    });
    replace(block, table.element);
  } catch (error) {
    replace(block, errorBanner(error, "The deployments could not be listed"));
  }
}
