// Home: the services as tiles and the user's resources (every subscription's groups and
// resources, newest first as ARM lists them).

import { RESOURCES_API, arm } from "../lib/api.js";
import { SERVICES, parseId, resourceRoute, subscriptions, typeLabel } from "../lib/resources.js";
import { append, dataTable, errorBanner, h, link, pageHeader } from "../lib/ui.js";

export async function render(view) {
  const tiles = h("ul", { class: "tiles" }, SERVICES.filter(([path]) => path !== "/home").map(([path, label, icon]) =>
    h("li", {}, h("a", { class: "tile", href: `#${path}` }, h("span", { class: "tile-icon", "aria-hidden": "true" }, icon), h("span", {}, label)))));
  const resourcesBlock = h("section", { class: "section" }, h("h2", {}, "Resources"));
  append(view, pageHeader("Welcome to openmi"), h("section", { class: "section" }, h("h2", {}, "Azure services"), tiles), resourcesBlock);
  try {
    const items = [];
    for (const sub of await subscriptions()) {
      const base = `/subscriptions/${sub.subscriptionId}`;
      const [groupList, resources] = await Promise.all([
        arm.list(`${base}/resourcegroups`, RESOURCES_API),
        arm.list(`${base}/resources`, RESOURCES_API),
      ]);
      items.push(...groupList, ...resources);
    }
    const table = dataTable({
      items,
      pageSize: 10,
      caption: "Resources",
      text: (r) => `${r.name} ${r.type}`,
      emptyText: "No resources yet. Create a resource group to start.",
      columns: [
        { label: "Name", render: (r) => link(resourceRoute(r.id), r.name) },
        { label: "Type", render: (r) => typeLabel(parseId(r.id).type) },
        { label: "Location", render: (r) => r.location ?? "—" },
      ],
    });
    append(resourcesBlock, table.element);
  } catch (error) {
    append(resourcesBlock, errorBanner(error, "Your resources could not be listed"));
  }
}
