// A VM's Identity page: the System assigned tab (Status Off/On, Save with the portal's
// confirmation, then the Object (principal) ID and its Azure role assignments) and the User
// assigned tab (the attached identities, + Add from the subscription's identities, Remove).
// Every change is one PATCH of the VM carrying only the identity block, keeping the identities
// that stay (removed user-assigned ones are sent as null), as the Azure portal does.

import { apiVersionFor, arm } from "../lib/api.js";
import { listByType, operation, parseId, resourceRoute, sameId, subscriptions } from "../lib/resources.js";
import {
  append, button, commandBar, confirmDialog, copyable, dataTable, errorBanner, essentials, goOrRefresh, h, link, openDialog, refreshPage, replace,
  select, setOptions, spinner, tabs, uid,
} from "../lib/ui.js";

const VM_API = apiVersionFor("Microsoft.Compute/virtualMachines");
const MSI_TYPE = "Microsoft.ManagedIdentity/userAssignedIdentities";
const MSI_API = apiVersionFor(MSI_TYPE);

export function identityType(system, userCount) {
  if (system && userCount) return "SystemAssigned, UserAssigned";
  if (system) return "SystemAssigned";
  if (userCount) return "UserAssigned";
  return "None";
}

/** The PATCH body for the VM's identity: `system` on/off, user-assigned ids kept and removed. */
export function identityPatch(system, keep, remove = []) {
  const type = identityType(system, keep.length);
  const identity = { type };
  if (keep.length) {
    identity.userAssignedIdentities = Object.fromEntries([...keep.map((id) => [id, {}]), ...remove.map((id) => [id, null])]);
  }
  return { identity };
}

export async function blade(content, vm, ctx) {
  const initial = ctx.query.get("tab") === "user" ? "user" : "system";
  const view = tabs([
    { id: "system", label: "System assigned", render: (panel) => systemAssigned(panel, vm) },
    { id: "user", label: "User assigned", render: (panel) => userAssigned(panel, vm) },
  ], { initial, label: "Identity types" });
  append(content, view.element);
}

function systemAssigned(panel, vm) {
  const enabled = /SystemAssigned/i.test(vm.identity?.type ?? "");
  const userIds = Object.keys(vm.identity?.userAssignedIdentities ?? {});
  const result = h("div", { class: "form-result" });
  const name = uid("status");
  const off = h("input", { type: "radio", name, id: `${name}-off`, value: "off", checked: !enabled });
  const on = h("input", { type: "radio", name, id: `${name}-on`, value: "on", checked: enabled });
  const saveButton = button("Save", save, { kind: "primary", ariaLabel: "Save", disabled: true });
  const discardButton = button("Discard", () => {
    off.checked = !enabled;
    on.checked = enabled;
    sync();
  }, { ariaLabel: "Discard", disabled: true });
  const sync = () => {
    const changed = on.checked !== enabled;
    saveButton.disabled = !changed;
    discardButton.disabled = !changed;
  };
  off.addEventListener("change", sync);
  on.addEventListener("change", sync);
  const principalId = vm.identity?.principalId;
  append(panel, 
    h("p", { class: "hint" }, "A system assigned managed identity is restricted to one per resource and is tied to the lifecycle of this resource. You can grant permissions to the managed identity by using Azure role-based access control (Azure RBAC). The managed identity is authenticated with Microsoft Entra ID, so you don't have to store any credentials in code."),
    commandBar(saveButton, discardButton, button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    h("fieldset", { class: "toggle", role: "radiogroup", "aria-label": "Status" },
      h("legend", {}, "Status"),
      h("label", { class: "toggle-option", for: off.id }, off, "Off"),
      h("label", { class: "toggle-option", for: on.id }, on, "On")),
    enabled && principalId
      ? [
        essentials([["Object (principal) ID", copyable(principalId, "Object (principal) ID")]]),
        h("div", { class: "field" }, h("span", { class: "label-text" }, "Permissions"),
          h("div", { class: "field-control" }, button("Azure role assignments", () => {
            location.hash = `/roleassignments/${principalId}?name=${encodeURIComponent(vm.name)}&from=${encodeURIComponent(vm.id)}`;
          }))),
      ]
      : null);

  async function save() {
    const enabling = on.checked;
    const confirmed = await confirmDialog(enabling
      ? {
        title: "Enable system assigned managed identity",
        message: `'${vm.name}' will be registered with Microsoft Entra ID. Once it is registered, '${vm.name}' can be granted permissions to access resources protected by Microsoft Entra ID. Do you want to enable the system assigned managed identity for '${vm.name}'?`,
      }
      : {
        title: "Disable system assigned managed identity",
        message: `Disabling the system assigned managed identity of '${vm.name}' deletes its identity from Microsoft Entra ID; its role assignments stop working. Do you want to disable it?`,
      });
    if (!confirmed) return;
    saveButton.disabled = true;
    const outcome = await operation({
      name: enabling ? "Enable system assigned managed identity" : "Disable system assigned managed identity",
      resource: vm.id,
      progress: "Updating the virtual machine's identity...",
      success: enabling ? "System assigned managed identity enabled" : "System assigned managed identity disabled",
      container: result,
      run: (progress) => arm.patch(vm.id, VM_API, identityPatch(enabling, userIds), { onProgress: progress }),
    });
    if (outcome.ok) {
      goOrRefresh(resourceRoute(vm.id, "identity"));
    } else {
      sync();
    }
  }
}

function userAssigned(panel, vm) {
  const attached = Object.entries(vm.identity?.userAssignedIdentities ?? {}).map(([id, value]) => ({ id, ...value }));
  const system = /SystemAssigned/i.test(vm.identity?.type ?? "");
  const result = h("div", { class: "form-result" });
  const removeButton = button("Remove", remove, { ariaLabel: "Remove", disabled: true });
  const table = dataTable({
    items: attached,
    selectable: true,
    caption: "User assigned managed identities",
    rowLabel: (item) => parseId(item.id).name,
    text: (item) => `${parseId(item.id).name} ${parseId(item.id).resourceGroup} ${item.clientId} ${item.principalId}`,
    emptyText: "No user assigned managed identities found on this resource.",
    onSelectionChange: (selected) => (removeButton.disabled = selected.length === 0),
    columns: [
      { label: "Name", render: (item) => link(resourceRoute(item.id), parseId(item.id).name) },
      { label: "Resource group", render: (item) => parseId(item.id).resourceGroup },
      { label: "Client ID", render: (item) => h("span", { class: "mono" }, item.clientId ?? "—") },
      { label: "Object (principal) ID", render: (item) => h("span", { class: "mono" }, item.principalId ?? "—") },
    ],
  });
  append(panel, 
    h("p", { class: "hint" }, "User assigned managed identities enable Azure resources to authenticate to cloud services without storing credentials in code. This type of managed identity is created as a standalone Azure resource and has its own lifecycle; one resource can have several."),
    commandBar(button("+ Add", add, { kind: "primary", ariaLabel: "Add" }), removeButton, button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })),
    result,
    table.element);

  async function add() {
    const chosen = await pickIdentities(vm, attached.map((a) => a.id));
    if (!chosen?.length) return;
    const keep = [...attached.map((a) => a.id), ...chosen];
    const outcome = await operation({
      name: "Add user assigned managed identity",
      resource: vm.id,
      progress: "Updating the virtual machine's identities...",
      success: "User assigned managed identity added",
      container: result,
      run: (progress) => arm.patch(vm.id, VM_API, identityPatch(system, keep), { onProgress: progress }),
    });
    if (outcome.ok) goOrRefresh(`${resourceRoute(vm.id, "identity")}?tab=user`);
  }

  async function remove() {
    const selected = table.selected();
    if (!selected.length) return;
    const names = selected.map((s) => parseId(s.id).name).join(", ");
    const confirmed = await confirmDialog({
      title: "Remove user assigned managed identities",
      message: `Do you want to remove ${names} from '${vm.name}'? The identity resources themselves are not deleted.`,
    });
    if (!confirmed) return;
    const removed = selected.map((s) => s.id);
    const keep = attached.map((a) => a.id).filter((id) => !removed.some((r) => sameId(r, id)));
    const outcome = await operation({
      name: "Remove user assigned managed identity",
      resource: vm.id,
      progress: "Updating the virtual machine's identities...",
      success: "User assigned managed identity removed",
      container: result,
      run: (progress) => arm.patch(vm.id, VM_API, identityPatch(system, keep, removed), { onProgress: progress }),
    });
    if (outcome.ok) goOrRefresh(`${resourceRoute(vm.id, "identity")}?tab=user`);
  }
}

/** "Add user assigned managed identity": a subscription's identities to choose from. */
async function pickIdentities(vm, already) {
  const chosen = new Set();
  let addButton;
  const listBlock = h("div", { class: "picker-list" }, spinner());
  const subscriptionSelect = select([], {});
  const filter = h("input", { type: "search", "aria-label": "Filter by identity name and/or resource group", placeholder: "Filter by identity name and/or resource group" });
  let identities = [];
  const draw = () => {
    const needle = filter.value.trim().toLowerCase();
    const shown = identities.filter((i) => !already.some((a) => sameId(a, i.id)))
      .filter((i) => `${i.name} ${parseId(i.id).resourceGroup}`.toLowerCase().includes(needle));
    replace(listBlock, shown.length ? h("ul", { class: "picker" }, shown.map((identity) => {
      const box = h("input", {
        type: "checkbox", id: uid("pick"), checked: chosen.has(identity.id),
        onchange: (event) => {
          if (event.target.checked) chosen.add(identity.id);
          else chosen.delete(identity.id);
          addButton.disabled = chosen.size === 0;
        },
      });
      return h("li", {}, box, h("label", { for: box.id }, h("span", { class: "picker-name" }, identity.name), h("span", { class: "picker-detail" }, `Resource group: ${parseId(identity.id).resourceGroup}`)));
    })) : h("p", { class: "hint" }, "No user assigned managed identities to add in this subscription."));
  };
  let generation = 0;
  const load = async () => {
    // A later subscription choice wins over an earlier list still on its way.
    const mine = ++generation;
    replace(listBlock, spinner());
    try {
      const found = await listByType(subscriptionSelect.value, MSI_TYPE, MSI_API);
      if (mine !== generation) return;
      identities = found.sort((a, b) => a.name.localeCompare(b.name));
      draw();
    } catch (error) {
      if (mine === generation) replace(listBlock, errorBanner(error, "The user assigned managed identities could not be listed"));
    }
  };
  subscriptionSelect.addEventListener("change", load);
  filter.addEventListener("input", draw);
  const subscriptionId = uid("sub");
  subscriptionSelect.id = subscriptionId;
  const dialogPromise = openDialog({
    title: "Add user assigned managed identity",
    className: "dialog-wide",
    body: [
      h("div", { class: "field" }, h("label", { for: subscriptionId }, "Subscription"), subscriptionSelect),
      filter,
      listBlock,
    ],
    actions: [
      { label: "Add", kind: "primary", value: "add", disabled: true, ref: (b) => (addButton = b) },
      { label: "Cancel", value: "cancel" },
    ],
  });
  try {
    const subs = await subscriptions();
    setOptions(subscriptionSelect, subs.map((s) => ({ value: s.subscriptionId, label: s.displayName ?? s.subscriptionId })), { value: parseId(vm.id).subscription });
    await load();
  } catch (error) {
    replace(listBlock, errorBanner(error, "The subscriptions could not be listed"));
  }
  return (await dialogPromise) === "add" ? [...chosen] : null;
}


