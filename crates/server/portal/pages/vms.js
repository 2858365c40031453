// Virtual machines: the list of every subscription's VMs (filter, paging) and a VM's overview
// (status from the instance view, location, size, image, identity summary, Delete).

import { apiVersionFor, arm } from "../lib/api.js";
import { listByType, operation, parseId, resourceRoute, subscriptionName, subscriptions } from "../lib/resources.js";
import { append, button, commandBar, confirmDialog, dataTable, errorBanner, essentials, h, link, pageHeader, refreshPage, replace, spinner } from "../lib/ui.js";

const VM_TYPE = "Microsoft.Compute/virtualMachines";
const VM_API = apiVersionFor(VM_TYPE);

export function osOf(vm) {
  const image = vm.properties?.storageProfile?.imageReference ?? {};
  const osType = vm.properties?.storageProfile?.osDisk?.osType;
  if (osType) return osType;
  if (/windows/i.test(`${image.publisher} ${image.offer}`)) return "Windows";
  if (image.publisher || image.offer) return "Linux";
  return "—";
}

export function identitySummary(vm) {
  const type = vm.identity?.type ?? "None";
  const system = /SystemAssigned/i.test(type) ? "On" : "Off";
  const users = Object.keys(vm.identity?.userAssignedIdentities ?? {}).length;
  return `System assigned: ${system}; User assigned: ${users}`;
}

export async function list(view, ctx) {
  const body = h("div", {}, spinner());
  append(view, pageHeader("Virtual machines"),
    commandBar(
      button("+ Create", () => (location.hash = "/create/vm"), { kind: "primary", ariaLabel: "Create" }),
      button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    body);
  try {
    const items = [];
    for (const sub of await subscriptions()) {
      const vms = await listByType(sub.subscriptionId, VM_TYPE, VM_API);
      items.push(...vms.map((vm) => ({ ...vm, subscriptionName: sub.displayName ?? sub.subscriptionId })));
    }
    if (!ctx.alive()) return;
    items.sort((a, b) => a.name.localeCompare(b.name));
    const table = dataTable({
      items,
      caption: "Virtual machines",
      text: (vm) => `${vm.name} ${parseId(vm.id).resourceGroup} ${vm.location} ${vm.subscriptionName} ${vm.properties?.hardwareProfile?.vmSize}`,
      emptyText: "No virtual machines to display",
      columns: [
        { label: "Name", render: (vm) => link(resourceRoute(vm.id), vm.name) },
        { label: "Subscription", render: (vm) => vm.subscriptionName },
        { label: "Resource group", render: (vm) => parseId(vm.id).resourceGroup },
        { label: "Location", render: (vm) => vm.location },
        { label: "Size", render: (vm) => vm.properties?.hardwareProfile?.vmSize ?? "—" },
        { label: "Operating system", render: osOf },
        { label: "Provisioning state", render: (vm) => vm.properties?.provisioningState ?? "—" },
      ],
    });
    replace(body, table.element);
  } catch (error) {
    replace(body, errorBanner(error, "The virtual machines could not be listed"));
  }
}

function powerState(vm) {
  const statuses = vm.properties?.instanceView?.statuses ?? [];
  const power = statuses.find((s) => /^PowerState\//i.test(s.code ?? ""));
  return power?.displayStatus ?? vm.properties?.provisioningState ?? "—";
}

export async function overview(content, vm) {
  const parts = parseId(vm.id);
  const result = h("div", { class: "form-result" });
  let detailed = vm;
  try {
    detailed = await arm.get(`${vm.id}?$expand=instanceView`, VM_API);
  } catch (error) {
    append(result, errorBanner(error, "The instance view could not be read"));
  }
  const image = vm.properties?.storageProfile?.imageReference ?? {};
  const principalId = vm.identity?.principalId;
  append(content, 
    commandBar(
      button("Delete", remove, { ariaLabel: "Delete" }),
      button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    h("h2", {}, "Essentials"),
    essentials([
      ["Resource group", link(resourceRoute(`/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}`), parts.resourceGroup)],
      ["Status", powerState(detailed)],
      ["Location", vm.location],
      ["Subscription", link(resourceRoute(`/subscriptions/${parts.subscription}`), await subscriptionName(parts.subscription))],
      ["Subscription ID", parts.subscription],
      ["Operating system", osOf(vm)],
      ["Size", vm.properties?.hardwareProfile?.vmSize],
      ["Image", [image.publisher, image.offer, image.sku].filter(Boolean).join(" / ") || image.id],
      ["Computer name", vm.properties?.osProfile?.computerName],
      ["Provisioning state", vm.properties?.provisioningState],
    ]),
    h("h2", {}, "Identity"),
    essentials([
      ["Managed identity", identitySummary(vm)],
      ["Object (principal) ID", principalId ? h("span", { class: "mono" }, principalId) : "—"],
    ]),
    h("p", {}, link(resourceRoute(vm.id, "identity"), "Configure identity")));

  async function remove() {
    const confirmed = await confirmDialog({
      title: "Delete virtual machine",
      message: `Are you sure you want to delete the virtual machine '${vm.name}'? Its system assigned managed identity is deleted with it.`,
      confirmLabel: "Delete",
      cancelLabel: "Cancel",
      danger: true,
    });
    if (!confirmed) return;
    const outcome = await operation({
      name: "Delete virtual machine",
      resource: vm.id,
      progress: `Deleting virtual machine ${vm.name}...`,
      success: `Virtual machine ${vm.name} deleted`,
      container: result,
      run: (progress) => arm.delete(vm.id, VM_API, { onProgress: progress }),
    });
    if (outcome.ok) location.hash = "/virtualmachines";
  }
}
