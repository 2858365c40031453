// "Create a virtual machine": the portal's wizard (Basics, Disks, Networking, Management with
// the Identity section, Review + create). Create submits one template deployment, as the Azure
// portal does (`CreateVm-<name>-<timestamp>`): the network security group, virtual network,
// public IP and network interface the Networking tab names, then the VM (with
// `"identity": {"type": "SystemAssigned"}` when System assigned managed identity is checked),
// and opens the deployment's progress page.

import { apiVersionFor, arm } from "../lib/api.js";
import { missing, projectDetails, timestamp, validationBanner } from "../lib/forms.js";
import { operation, resourceRoute } from "../lib/resources.js";
import { append, button, field, h, input, pageHeader, replace, select, tabs } from "../lib/ui.js";

export const IMAGES = [
  { value: "win2016datacenter", label: "Windows Server 2016 Datacenter - x64 Gen2", os: "Windows", reference: { publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2016-datacenter-gensecond", version: "latest" } },
  { value: "win2022datacenter", label: "Windows Server 2022 Datacenter: Azure Edition - x64 Gen2", os: "Windows", reference: { publisher: "MicrosoftWindowsServer", offer: "WindowsServer", sku: "2022-datacenter-azure-edition", version: "latest" } },
  { value: "ubuntu2204", label: "Ubuntu Server 22.04 LTS - x64 Gen2", os: "Linux", reference: { publisher: "canonical", offer: "0001-com-ubuntu-server-jammy", sku: "22_04-lts-gen2", version: "latest" } },
  { value: "debian12", label: "Debian 12 \"Bookworm\" - x64 Gen2", os: "Linux", reference: { publisher: "Debian", offer: "debian-12", sku: "12-gen2", version: "latest" } },
];

const SIZES = [
  { value: "Standard_B1s", label: "Standard_B1s - 1 vcpu, 1 GiB memory" },
  { value: "Standard_B2s", label: "Standard_B2s - 2 vcpus, 4 GiB memory" },
  { value: "Standard_DS1_v2", label: "Standard_DS1_v2 - 1 vcpu, 3.5 GiB memory" },
  { value: "Standard_D2s_v3", label: "Standard_D2s_v3 - 2 vcpus, 8 GiB memory" },
];

const NET_API = apiVersionFor("Microsoft.Network/virtualNetworks");

/** Azure's password rule: 12-123 characters, three of lower, upper, digit, special. */
function passwordProblems(password, confirmation) {
  const problems = [];
  const classes = [/[a-z]/, /[A-Z]/, /[0-9]/, /[^a-zA-Z0-9]/].filter((re) => re.test(password)).length;
  if (password && (password.length < 12 || password.length > 123)) problems.push("The password must be between 12 and 123 characters long.");
  if (password && classes < 3) problems.push("The password must have 3 of the following: 1 lower case character, 1 upper case character, 1 number, and 1 special character.");
  if (password !== confirmation) problems.push("Password and confirm password must match.");
  return problems;
}

/** The deployment template the wizard's choices make. */
export function vmTemplate({ systemAssigned, publicIp, nsg, inboundPorts, deleteWithVm }) {
  const resources = [];
  const nicDepends = ["[resourceId('Microsoft.Network/virtualNetworks', parameters('virtualNetworkName'))]"];
  if (nsg) {
    resources.push({
      type: "Microsoft.Network/networkSecurityGroups",
      apiVersion: NET_API,
      name: "[parameters('networkSecurityGroupName')]",
      location: "[parameters('location')]",
      properties: {
        securityRules: inboundPorts.map((port, index) => ({
          name: port.name,
          properties: {
            priority: 300 + index * 10, protocol: "TCP", access: "Allow", direction: "Inbound",
            sourceAddressPrefix: "*", sourcePortRange: "*", destinationAddressPrefix: "*", destinationPortRange: String(port.port),
          },
        })),
      },
    });
    nicDepends.push("[resourceId('Microsoft.Network/networkSecurityGroups', parameters('networkSecurityGroupName'))]");
  }
  resources.push({
    type: "Microsoft.Network/virtualNetworks",
    apiVersion: NET_API,
    name: "[parameters('virtualNetworkName')]",
    location: "[parameters('location')]",
    properties: {
      addressSpace: { addressPrefixes: ["10.0.0.0/16"] },
      subnets: [{ name: "[parameters('subnetName')]", properties: { addressPrefix: "10.0.0.0/24" } }],
    },
  });
  if (publicIp) {
    resources.push({
      type: "Microsoft.Network/publicIPAddresses",
      apiVersion: NET_API,
      name: "[parameters('publicIpAddressName')]",
      location: "[parameters('location')]",
      sku: { name: "Standard", tier: "Regional" },
      properties: { publicIPAllocationMethod: "Static" },
    });
    nicDepends.push("[resourceId('Microsoft.Network/publicIPAddresses', parameters('publicIpAddressName'))]");
  }
  const ipConfiguration = {
    name: "ipconfig1",
    properties: {
      subnet: { id: "[resourceId('Microsoft.Network/virtualNetworks/subnets', parameters('virtualNetworkName'), parameters('subnetName'))]" },
      privateIPAllocationMethod: "Dynamic",
    },
  };
  if (publicIp) {
    ipConfiguration.properties.publicIPAddress = {
      id: "[resourceId('Microsoft.Network/publicIPAddresses', parameters('publicIpAddressName'))]",
      properties: { deleteOption: deleteWithVm ? "Delete" : "Detach" },
    };
  }
  const nicProperties = { ipConfigurations: [ipConfiguration] };
  if (nsg) nicProperties.networkSecurityGroup = { id: "[resourceId('Microsoft.Network/networkSecurityGroups', parameters('networkSecurityGroupName'))]" };
  resources.push({
    type: "Microsoft.Network/networkInterfaces",
    apiVersion: NET_API,
    name: "[parameters('networkInterfaceName')]",
    location: "[parameters('location')]",
    dependsOn: nicDepends,
    properties: nicProperties,
  });
  const vm = {
    type: "Microsoft.Compute/virtualMachines",
    apiVersion: apiVersionFor("Microsoft.Compute/virtualMachines"),
    name: "[parameters('virtualMachineName')]",
    location: "[parameters('location')]",
    dependsOn: ["[resourceId('Microsoft.Network/networkInterfaces', parameters('networkInterfaceName'))]"],
    properties: {
      hardwareProfile: { vmSize: "[parameters('virtualMachineSize')]" },
      storageProfile: {
        osDisk: { createOption: "fromImage", managedDisk: { storageAccountType: "[parameters('osDiskType')]" }, deleteOption: "[parameters('osDiskDeleteOption')]" },
        imageReference: "[parameters('imageReference')]",
      },
      networkProfile: {
        networkInterfaces: [{
          id: "[resourceId('Microsoft.Network/networkInterfaces', parameters('networkInterfaceName'))]",
          properties: { deleteOption: deleteWithVm ? "Delete" : "Detach" },
        }],
      },
      osProfile: {
        computerName: "[parameters('virtualMachineComputerName')]",
        adminUsername: "[parameters('adminUsername')]",
        adminPassword: "[parameters('adminPassword')]",
      },
    },
  };
  if (systemAssigned) vm.identity = { type: "SystemAssigned" };
  resources.push(vm);
  const string = { type: "string" };
  return {
    $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
    contentVersion: "1.0.0.0",
    parameters: {
      location: string, networkInterfaceName: string, networkSecurityGroupName: string, subnetName: string,
      virtualNetworkName: string, publicIpAddressName: string, virtualMachineName: string, virtualMachineComputerName: string,
      osDiskType: string, osDiskDeleteOption: string, virtualMachineSize: string, adminUsername: string,
      adminPassword: { type: "secureString" }, imageReference: { type: "object" },
    },
    resources,
    outputs: { adminUsername: { type: "string", value: "[parameters('adminUsername')]" } },
  };
}

export async function render(view, ctx) {
  const project = projectDetails({ initialGroup: ctx.query.get("group") ?? undefined, initialSubscription: ctx.query.get("subscription") ?? undefined });
  const nameInput = input({ name: "vmName", maxlength: "64" });
  const imageSelect = select(IMAGES.map(({ value, label }) => ({ value, label })), { value: "win2016datacenter" });
  const sizeSelect = select(SIZES, { value: "Standard_DS1_v2" });
  const usernameInput = input({ name: "adminUsername", autocomplete: "off" });
  const passwordInput = input({ type: "password", name: "adminPassword", autocomplete: "new-password" });
  const confirmInput = input({ type: "password", name: "adminPasswordConfirm", autocomplete: "new-password" });
  const publicPortsNone = h("input", { type: "radio", name: "publicPorts", value: "none", id: "ports-none" });
  const publicPortsAllow = h("input", { type: "radio", name: "publicPorts", value: "allow", id: "ports-allow", checked: true });
  const portChecks = [["RDP (3389)", "RDP", 3389], ["SSH (22)", "SSH", 22], ["HTTP (80)", "HTTP", 80], ["HTTPS (443)", "HTTPS", 443]]
    .map(([label, name, port]) => ({ label, name, port, box: h("input", { type: "checkbox", id: `port-${port}` }) }));
  const osDiskSelect = select([{ value: "Premium_LRS", label: "Premium SSD (locally-redundant storage)" }, { value: "StandardSSD_LRS", label: "Standard SSD (locally-redundant storage)" }, { value: "Standard_LRS", label: "Standard HDD (locally-redundant storage)" }], { value: "Premium_LRS" });
  const deleteDiskBox = h("input", { type: "checkbox", id: "delete-os-disk", checked: true });
  const vnetInput = input({ name: "virtualNetworkName" });
  const subnetInput = input({ name: "subnetName", value: "default" });
  const publicIpSelect = select([], {});
  const nsgSelect = select([{ value: "basic", label: "Basic" }, { value: "none", label: "None" }], { value: "basic" });
  const deleteNicBox = h("input", { type: "checkbox", id: "delete-nic", checked: true });
  const systemIdentityBox = h("input", { type: "checkbox", id: "system-identity" });
  const reviewBody = h("div", { class: "review" });
  const result = h("div", { class: "form-result" });
  let nicSuffix = String(Math.floor(Math.random() * 900) + 100);

  const imageChoice = () => IMAGES.find((i) => i.value === imageSelect.value) ?? IMAGES[0];
  const syncDefaults = () => {
    const name = nameInput.value.trim();
    vnetInput.placeholder = name ? `${name}-vnet` : "(new) vnet";
    setOptionsKeeping(publicIpSelect, [{ value: "new", label: name ? `(new) ${name}-ip` : "(new) public IP" }, { value: "none", label: "None" }]);
    const windows = imageChoice().os === "Windows";
    for (const check of portChecks) if (!check.touched) check.box.checked = windows ? check.port === 3389 : check.port === 22;
  };
  for (const check of portChecks) check.box.addEventListener("change", () => (check.touched = true));
  nameInput.addEventListener("input", syncDefaults);
  imageSelect.addEventListener("change", syncDefaults);
  syncDefaults();

  const portFieldset = h("fieldset", { class: "fieldset" }, h("legend", {}, "Select inbound ports"),
    portChecks.map((c) => h("div", { class: "check" }, c.box, h("label", { for: c.box.id }, c.label))));
  const togglePorts = () => {
    portFieldset.disabled = publicPortsNone.checked;
  };
  publicPortsNone.addEventListener("change", togglePorts);
  publicPortsAllow.addEventListener("change", togglePorts);

  const basics = h("div", { class: "form" },
    project.element,
    h("section", { class: "form-section" }, h("h2", {}, "Instance details"),
      field("Virtual machine name", nameInput, { required: true }),
      project.fields.region,
      field("Image", imageSelect, { required: true }),
      field("Size", sizeSelect, { required: true })),
    h("section", { class: "form-section" }, h("h2", {}, "Administrator account"),
      field("Username", usernameInput, { required: true }),
      field("Password", passwordInput, { required: true }),
      field("Confirm password", confirmInput, { required: true })),
    h("section", { class: "form-section" }, h("h2", {}, "Inbound port rules"),
      h("fieldset", { class: "fieldset" }, h("legend", {}, "Public inbound ports"),
        h("div", { class: "check" }, publicPortsNone, h("label", { for: publicPortsNone.id }, "None")),
        h("div", { class: "check" }, publicPortsAllow, h("label", { for: publicPortsAllow.id }, "Allow selected ports"))),
      portFieldset));
  // The region select belongs under Instance details, as in the portal.
  basics.querySelector(".form-section:nth-child(2)").insertBefore(project.fields.region, imageSelect.closest(".field"));

  const disks = h("div", { class: "form" },
    h("section", { class: "form-section" }, h("h2", {}, "OS disk"),
      field("OS disk type", osDiskSelect),
      h("div", { class: "check" }, deleteDiskBox, h("label", { for: deleteDiskBox.id }, "Delete with VM"))));
  const networking = h("div", { class: "form" },
    h("section", { class: "form-section" }, h("h2", {}, "Network interface"),
      h("p", { class: "hint" }, "When creating a virtual machine, a network interface will be created for you."),
      field("Virtual network", vnetInput, { hint: "A new virtual network (10.0.0.0/16); leave empty for the default name." }),
      field("Subnet", subnetInput, { hint: "10.0.0.0/24" }),
      field("Public IP", publicIpSelect),
      field("NIC network security group", nsgSelect),
      h("div", { class: "check" }, deleteNicBox, h("label", { for: deleteNicBox.id }, "Delete public IP and NIC when VM is deleted"))));
  const management = h("div", { class: "form" },
    h("section", { class: "form-section" }, h("h2", {}, "Identity"),
      h("div", { class: "check" }, systemIdentityBox, h("label", { for: systemIdentityBox.id }, "System assigned managed identity")),
      h("p", { class: "hint" }, "A system assigned managed identity lets the VM's code get tokens for Azure resources without credentials; it is deleted with the VM.")));
  const review = h("div", { class: "form" }, result, reviewBody);

  const order = ["basics", "disks", "networking", "management", "review"];
  const labels = { basics: "Basics", disks: "Disks", networking: "Networking", management: "Management", review: "Review + create" };
  const footer = h("div", { class: "wizard-footer" });
  let wizard;
  const go = (id) => wizard.select(id);
  const drawFooter = (id) => {
    const index = order.indexOf(id);
    const prev = index > 0 ? button("< Previous", () => go(order[index - 1])) : null;
    if (id === "review") {
      replace(footer, button("Create", submit, { kind: "primary", id: "vm-create-submit" }), prev);
    } else {
      replace(footer, button("Review + create", () => go("review"), { kind: "primary" }), prev,
        button(`Next : ${labels[order[index + 1]]} >`, () => go(order[index + 1])));
    }
  };
  const panels = { basics, disks, networking, management, review };
  wizard = tabs(order.map((id) => ({
    id,
    label: labels[id],
    render: (panel) => {
      if (id === "review") drawReview();
      append(panel, panels[id]);
    },
  })), { label: "Create a virtual machine", onChange: drawFooter });

  append(view, pageHeader("Create a virtual machine"), wizard.element, footer);
  await project.ready;

  function values() {
    const name = nameInput.value.trim();
    const image = imageChoice();
    const { subscription, group, location: region, regionLabel } = project.values();
    const inboundPorts = publicPortsAllow.checked ? portChecks.filter((c) => c.box.checked) : [];
    return {
      subscription, group, region, regionLabel, name, image,
      size: sizeSelect.value,
      username: usernameInput.value.trim(),
      password: passwordInput.value,
      confirmation: confirmInput.value,
      osDiskType: osDiskSelect.value,
      deleteDisk: deleteDiskBox.checked,
      vnet: vnetInput.value.trim() || `${name}-vnet`,
      subnet: subnetInput.value.trim() || "default",
      publicIp: publicIpSelect.value === "new",
      nsg: nsgSelect.value === "basic",
      deleteWithVm: deleteNicBox.checked,
      inboundPorts,
      systemAssigned: systemIdentityBox.checked,
    };
  }

  function problems(v) {
    const list = missing([["Subscription", v.subscription], ["Resource group", v.group], ["Virtual machine name", v.name], ["Region", v.region], ["Username", v.username], ["Password", v.password]]);
    if (v.name && !/^[a-zA-Z0-9][a-zA-Z0-9._-]{0,62}[a-zA-Z0-9_]$|^[a-zA-Z0-9]$/.test(v.name)) {
      list.push("The virtual machine name can contain only letters, numbers, periods, underscores and hyphens, and must start with a letter or number.");
    }
    list.push(...passwordProblems(v.password, v.confirmation));
    return list;
  }

  function drawReview() {
    const v = values();
    const issues = problems(v);
    const rows = [
      ["Subscription", project.subscriptionSelect.selectedOptions[0]?.textContent],
      ["Resource group", v.group],
      ["Virtual machine name", v.name],
      ["Region", v.regionLabel],
      ["Image", v.image.label],
      ["Size", v.size],
      ["Username", v.username],
      ["OS disk type", v.osDiskType],
      ["Virtual network", `(new) ${v.vnet}`],
      ["Subnet", `(new) ${v.subnet} (10.0.0.0/24)`],
      ["Public IP", v.publicIp ? `(new) ${v.name}-ip` : "None"],
      ["Public inbound ports", v.inboundPorts.length ? v.inboundPorts.map((p) => p.label).join(", ") : "None"],
      ["System assigned managed identity", v.systemAssigned ? "On" : "Off"],
    ];
    replace(reviewBody,
      issues.length ? validationBanner(issues) : h("div", { class: "banner banner-success", role: "status" }, h("span", { class: "banner-icon", "aria-hidden": "true" }, "✓"), h("div", {}, "Validation passed")),
      h("h2", {}, "Basics"),
      h("dl", { class: "essentials" }, rows.map(([k, val]) => [h("dt", {}, k), h("dd", {}, val || "—")])));
  }

  async function submit() {
    const v = values();
    const issues = problems(v);
    if (issues.length) {
      drawReview();
      return;
    }
    const createButton = footer.querySelector("#vm-create-submit");
    if (createButton) createButton.disabled = true;
    const deploymentName = `CreateVm-${v.name}-${timestamp()}`.slice(0, 64);
    const groupId = `/subscriptions/${v.subscription}/resourceGroups/${v.group}`;
    const deploymentId = `${groupId}/providers/Microsoft.Resources/deployments/${deploymentName}`;
    const vmId = `${groupId}/providers/Microsoft.Compute/virtualMachines/${v.name}`;
    const body = {
      properties: {
        mode: "Incremental",
        template: vmTemplate(v),
        parameters: {
          location: { value: v.region },
          networkInterfaceName: { value: `${v.name}${nicSuffix}`.slice(0, 80) },
          networkSecurityGroupName: { value: `${v.name}-nsg` },
          subnetName: { value: v.subnet },
          virtualNetworkName: { value: v.vnet },
          publicIpAddressName: { value: `${v.name}-ip` },
          virtualMachineName: { value: v.name },
          virtualMachineComputerName: { value: v.image.os === "Windows" ? v.name.replace(/[^a-zA-Z0-9-]/g, "").slice(0, 15) : v.name.slice(0, 64) },
          osDiskType: { value: v.osDiskType },
          osDiskDeleteOption: { value: v.deleteDisk ? "Delete" : "Detach" },
          virtualMachineSize: { value: v.size },
          adminUsername: { value: v.username },
          adminPassword: { value: v.password },
          imageReference: { value: v.image.reference },
        },
      },
    };
    // The deployment is accepted, then its page follows it to the end.
    const outcome = await operation({
      name: "Create virtual machine deployment",
      resource: deploymentId,
      progress: "Submitting deployment...",
      success: "Deployment in progress...",
      container: result,
      acceptedOnly: true,
      run: () => arm.write("PUT", deploymentId, apiVersionFor("Microsoft.Resources/deployments"), body, { finalGet: false, poll: false }),
    });
    if (createButton) createButton.disabled = false;
    if (outcome.ok) {
      nicSuffix = String(Math.floor(Math.random() * 900) + 100);
      location.hash = `${resourceRoute(deploymentId)}?target=${encodeURIComponent(vmId)}`;
    }
  }
}

function setOptionsKeeping(selectElement, options) {
  const current = selectElement.value;
  selectElement.replaceChildren(...options.map((o) => h("option", { value: o.value }, o.label)));
  if (options.some((o) => o.value === current)) selectElement.value = current;
}
