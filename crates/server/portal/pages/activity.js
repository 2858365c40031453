// Activity log: the operations this browser session started (kept in sessionStorage with the
// sign-in), with status, time and result. The server's own activity log is a later issue.

import { activityEntries, parseId, resourceRoute } from "../lib/resources.js";
import { append, button, commandBar, dataTable, formatTime, h, infoBanner, link, pageHeader } from "../lib/ui.js";

export async function render(view, ctx) {
  const table = dataTable({
    items: activityEntries(),
    caption: "Activity log",
    text: (e) => `${e.operation} ${e.status} ${e.resource} ${e.result ?? ""}`,
    emptyText: "No operations in this browser session yet",
    columns: [
      { label: "Operation name", render: (e) => e.operation },
      { label: "Status", render: (e) => h("span", { class: `status status-${e.status.toLowerCase()}` }, e.status) },
      { label: "Time", render: (e) => formatTime(e.endedAt ?? e.startedAt) },
      { label: "Resource", render: (e) => (e.resource && e.status !== "Failed" && !/^Delete/.test(e.operation) ? link(resourceRoute(e.resource), parseId(e.resource).name ?? e.resource) : parseId(e.resource).name ?? e.resource ?? "—") },
      { label: "Result", render: (e) => e.result ?? "—" },
    ],
  });
  const update = () => {
    if (!ctx.alive()) return window.removeEventListener("portal-activity", update);
    table.setItems(activityEntries());
  };
  window.addEventListener("portal-activity", update);
  append(view, pageHeader("Activity log"),
    infoBanner("These are the operations started from this browser session (this tab, since you signed in). The server-side activity log is not available yet."),
    commandBar(button("↻ Refresh", update, { ariaLabel: "Refresh" })),
    table.element);
}
