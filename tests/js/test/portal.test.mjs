// The portal (crates/server/portal), driven as a person at a browser: Debian's Chromium through
// playwright-core, by the pages' roles and labels, signing in through the authorize endpoint
// (authorization code + PKCE). Each seed's "Portal" tab is a test; every result the page shows
// is checked through the API with the real @azure/arm-* clients (the VM's identity block, the
// principal, the role assignments). A screenshot of each test's last page goes to
// target/test-output/portal/<backend>/<name>.png.

import assert from "node:assert/strict";
import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import { after, before, describe, test } from "node:test";

import { CosmosDBManagementClient } from "@azure/arm-cosmosdb";
import { ResourceManagementClient as DeploymentsClient } from "@azure/arm-resources-deployments";
import { chromium } from "playwright-core";

import {
  AZ_CLI_CLIENT_ID, BACKEND, GRAPH_SCOPE, GUID_RE, REPO_ROOT, ROLES, describeError, logged, postToken, rejects, startServer, uniqueName,
} from "../lib/support.mjs";
import { all, armClients, clientOptions, createGroup, deleteGroupQuietly, userAssigned, vmBody } from "../lib/arm.mjs";

const CHROMIUM = process.env.OPENMI_CHROMIUM || "/usr/bin/chromium";
const SHOTS = path.join(REPO_ROOT, "target", "test-output", "portal", BACKEND);
const STEP_TIMEOUT_MS = 15_000;

let server;
let arm;
let cosmos;
let deployments;
let browser;

before(async () => {
  fs.mkdirSync(SHOTS, { recursive: true });
  for (const file of fs.readdirSync(SHOTS)) if (file.endsWith("-failed.png")) fs.rmSync(path.join(SHOTS, file));
  server = await startServer();
  arm = await armClients(server);
  cosmos = new CosmosDBManagementClient(arm.credential, server.subscriptionId, clientOptions(server));
  deployments = new DeploymentsClient(arm.credential, server.subscriptionId, clientOptions(server));
  browser = await chromium.launch({ executablePath: CHROMIUM, headless: true });
});
after(async () => {
  await browser?.close();
  await server?.stop();
});

// ------------------------------------------------------------------------------------------------
// a person at a browser

/**
 * A test with a fresh browser context (its own cookies and sessionStorage) and page. On failure
 * the page's URL, text and browser errors join the error, and a `-failed` screenshot is kept.
 */
function browserTest(name, body, { viewport = { width: 1280, height: 800 } } = {}) {
  return test(name, logged(async () => {
    const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport });
    const page = await context.newPage();
    page.setDefaultTimeout(STEP_TIMEOUT_MS);
    const problems = [];
    page.on("pageerror", (error) => problems.push(`pageerror: ${error.message}`));
    page.on("console", (message) => {
      if (message.type() === "error") problems.push(`console: ${message.text()}`);
    });
    try {
      await body(page);
    } catch (error) {
      const slug = name.replace(/[^a-z0-9]+/gi, "-").slice(0, 60);
      await page.screenshot({ path: path.join(SHOTS, `${slug}-failed.png`), fullPage: true }).catch(() => {});
      const text = await page.locator("body").innerText({ timeout: 2_000 }).catch(() => "<no text>");
      error.message = `${error.message}\n--- page ${page.url()} ---\n${text.slice(0, 3000)}\n--- browser ---\n${problems.join("\n")}`;
      throw error;
    } finally {
      await context.close();
    }
    // The app itself must not throw, whatever the server answered.
    assert.deepEqual(problems.filter((p) => p.startsWith("pageerror")), []);
  }));
}

/** Retries `check` (an assertion about the page) until it passes or the step timeout ends. */
async function eventually(check, timeoutMs = STEP_TIMEOUT_MS) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

/** Opens the portal and signs in on the server's sign-in page (Username, Password, Sign in). */
async function signIn(page, username = server.adminUsername, password = server.adminPassword) {
  await page.goto(`${server.url}/portal/`);
  await page.getByLabel("Username").fill(username);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor();
}

/** The left menu (the portal's service list). */
async function nav(page, label) {
  await page.getByRole("navigation", { name: "Portal menu" }).getByRole("link", { name: label, exact: true }).click();
  await page.getByRole("heading", { level: 1, name: label === "Home" ? "Welcome to openmi" : label }).waitFor();
}

/** From a list page: filter by name and open the resource. */
async function openFromList(page, service, name) {
  await nav(page, service);
  await page.getByRole("searchbox", { name: "Filter for any field..." }).fill(name);
  await page.getByRole("link", { name, exact: true }).click();
  await page.getByRole("heading", { level: 1, name, exact: true }).waitFor();
}

/** The resource menu of a blade (Overview, Access control (IAM), Identity, ...). */
async function blade(page, label) {
  const link = page.getByRole("navigation", { name: "Resource menu" }).getByRole("link", { name: label, exact: true });
  await link.click();
  if (label === "Overview") {
    await page.locator('.resource-menu a[aria-current="page"]', { hasText: "Overview" }).waitFor();
  } else {
    await page.getByRole("heading", { level: 1, name: new RegExp(`\\| ${label.replace(/[()]/g, "\\$&")}$`) }).waitFor();
  }
}

function dialog(page) {
  return page.getByRole("dialog");
}

/** The page's error alert (banner) containing `text`. */
function alertWith(page, text) {
  return page.locator(".banner-error", { hasText: text }).first();
}

/** A group and a VM made through the API (tests that start from an existing VM). */
async function groupWithVm(identity = { type: "SystemAssigned" }) {
  const rg = await createGroup(arm, uniqueName("portalrg"));
  const name = uniqueName("vm");
  const vm = await arm.compute.virtualMachines.createOrUpdate(rg, name, vmBody(server, name, { identity }));
  return { rg, name, vm };
}

function roleDefinitionGuid(id) {
  return id.split("/").pop().toLowerCase();
}

async function assignmentsOf(scope, principalId) {
  return all(arm.authorization.roleAssignments.listForScope(scope, { filter: `principalId eq '${principalId}'` }));
}

/** The Access control (IAM) flow: + Add, Add role assignment, Role, Members, Review + assign. */
async function addRoleAssignment(page, { role, managedIdentityKind, memberName }) {
  await blade(page, "Access control (IAM)");
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await page.getByRole("menuitem", { name: "Add role assignment" }).click();
  await page.getByRole("heading", { level: 1, name: "Add role assignment" }).waitFor();
  await page.getByRole("searchbox", { name: "Search by role name, description, permission, or ID" }).fill(role);
  await page.getByRole("radio", { name: role, exact: true }).check();
  await page.getByRole("tab", { name: "Members" }).click();
  await page.getByRole("radio", { name: "Managed identity" }).check();
  await page.getByRole("button", { name: "Select members" }).click();
  const picker = dialog(page);
  await picker.getByLabel("Managed identity").selectOption({ label: managedIdentityKind });
  await picker.getByRole("checkbox", { name: memberName }).check();
  await picker.getByRole("button", { name: "Select", exact: true }).click();
  await page.getByRole("cell", { name: memberName, exact: true }).waitFor();
  await page.getByRole("button", { name: "Review + assign", exact: true }).click();
  await page.getByRole("tabpanel").getByText(role, { exact: true }).waitFor();
  await page.getByRole("button", { name: "Review + assign", exact: true }).click();
  await page.getByRole("heading", { level: 1, name: /\| Access control \(IAM\)$/ }).waitFor();
  await page.getByRole("row", { name: new RegExp(`${memberName}.*${role}.*This resource`) }).waitFor();
}

// ------------------------------------------------------------------------------------------------

describe("the portal", () => {
  browserTest("sign in; create a group; create a VM with System assigned managed identity on Management (seed: managed identities in Windows VMs)", async (page) => {
    await signIn(page);
    await page.getByText("openmi admin").first().waitFor();

    const rg = uniqueName("portalrg");
    await nav(page, "Resource groups");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Create a resource group" }).waitFor();
    await page.getByLabel("Subscription").selectOption(server.subscriptionId);
    await page.getByLabel("Resource group name").fill(rg);
    await page.getByLabel("Region").selectOption({ label: "West US" });
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: rg }).waitFor();
    const group = await arm.resource.resourceGroups.get(rg);
    assert.equal(group.location, "westus");

    // "From the Azure portal search for virtual machines. Choose Create."
    await page.getByRole("combobox", { name: "Search resources, services, and docs" }).fill("virtual machines");
    await page.getByRole("option", { name: "Virtual machines" }).click();
    await page.getByRole("heading", { level: 1, name: "Virtual machines" }).waitFor();
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Create a virtual machine" }).waitFor();

    // "In the Basics tab provide the required information."
    const vm = uniqueName("myvm");
    await page.getByLabel("Resource group").selectOption(rg);
    await page.getByLabel("Virtual machine name").fill(vm);
    await page.getByLabel("Region").selectOption("westus");
    await page.getByLabel("Image").selectOption({ label: "Windows Server 2016 Datacenter - x64 Gen2" });
    await page.getByLabel("Username").fill("azureuser");
    await page.getByLabel("Password", { exact: true }).fill("myPassword12!");
    await page.getByLabel("Confirm password").fill("myPassword12!");
    // "Choose Next: Disks >", continue, and in Management find Identity.
    await page.getByRole("button", { name: "Next : Disks >" }).click();
    await page.getByLabel("OS disk type").waitFor();
    await page.getByRole("button", { name: "Next : Networking >" }).click();
    await page.getByLabel("Public IP", { exact: true }).waitFor();
    await page.getByRole("button", { name: "Next : Management >" }).click();
    await page.getByRole("heading", { name: "Identity" }).waitFor();
    await page.getByRole("checkbox", { name: "System assigned managed identity" }).check();
    await page.getByRole("button", { name: "Review + create", exact: true }).click();
    await page.getByText("Validation passed").waitFor();
    await page.getByRole("button", { name: "Create", exact: true }).click();

    await page.getByRole("heading", { name: "Your deployment is complete" }).waitFor({ timeout: 40_000 });
    await page.getByRole("row", { name: /Microsoft\.Compute\/virtualMachines/ }).waitFor();
    await shot(page, "vm-deployment-complete");
    await page.getByRole("link", { name: "Go to resource", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: vm }).waitFor();

    const created = await arm.compute.virtualMachines.get(rg, vm);
    assert.equal(created.identity?.type, "SystemAssigned");
    assert.match(created.identity?.principalId ?? "", GUID_RE);
    assert.equal(created.storageProfile?.imageReference?.offer, "WindowsServer");
    assert.equal(created.osProfile?.adminUsername, "azureuser");
    assert.equal(created.networkProfile?.networkInterfaces?.length, 1, "the deployment made the NIC the Networking tab named");
    await page.getByText(created.identity.principalId).waitFor();
    const deploymentList = await all(deployments.deployments.listByResourceGroup(rg));
    assert.ok(deploymentList.some((d) => d.name.startsWith(`CreateVm-${vm}-`) && d.properties.provisioningState === "Succeeded"), JSON.stringify(deploymentList.map((d) => d.name)));
    await shot(page, "vm-created-overview");
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("VM Identity, System assigned: Off, Save, Yes; then On again, with its Azure role assignments (seed: enable on an existing VM)", async (page) => {
    const { rg, name } = await groupWithVm({ type: "SystemAssigned" });
    await signIn(page);
    await openFromList(page, "Virtual machines", name);
    await blade(page, "Identity");
    await page.getByRole("tab", { name: "System assigned" }).waitFor();
    assert.equal(await page.getByRole("radio", { name: "On" }).isChecked(), true);

    await page.getByRole("radio", { name: "Off" }).check();
    await page.getByRole("button", { name: "Save" }).click();
    await dialog(page).getByRole("heading", { name: "Disable system assigned managed identity" }).waitFor();
    await dialog(page).getByRole("button", { name: "Yes" }).click();
    await page.getByRole("status").filter({ hasText: "System assigned managed identity disabled" }).first().waitFor();
    await page.getByText("Object (principal) ID").waitFor({ state: "detached" });
    const disabled = await arm.compute.virtualMachines.get(rg, name);
    assert.ok(!disabled.identity || disabled.identity.type === "None", JSON.stringify(disabled.identity));

    await page.getByRole("radio", { name: "On" }).check();
    await page.getByRole("button", { name: "Save" }).click();
    await dialog(page).getByRole("heading", { name: "Enable system assigned managed identity" }).waitFor();
    await dialog(page).getByRole("button", { name: "Yes" }).click();
    await page.getByText("Object (principal) ID").waitFor();
    const enabled = await arm.compute.virtualMachines.get(rg, name);
    assert.equal(enabled.identity?.type, "SystemAssigned");
    assert.match(enabled.identity?.principalId ?? "", GUID_RE);
    await page.getByText(enabled.identity.principalId, { exact: true }).waitFor();

    // Give the new principal Reader on the group through the API; the page lists it.
    await arm.authorization.roleAssignments.create(server.groupId(rg), crypto.randomUUID(), {
      roleDefinitionId: server.roleDefinitionId("Reader"), principalId: enabled.identity.principalId, principalType: "ServicePrincipal",
    });
    await page.getByRole("button", { name: "Azure role assignments" }).click();
    await page.getByRole("heading", { level: 1, name: "Azure role assignments" }).waitFor();
    await page.getByRole("row", { name: new RegExp(`Reader.*${rg}.*Resource group`) }).waitFor();
    await shot(page, "vm-identity-system-assigned");
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("VM Identity, User assigned: + Add an identity, Add; then Remove, Yes (seed: assign a user-assigned identity to a VM)", async (page) => {
    const { rg, name } = await groupWithVm({ type: "SystemAssigned" });
    const identityName = uniqueName("myUserAssignedIdentity");
    const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, identityName, { location: "westus" });
    await signIn(page);
    await openFromList(page, "Virtual machines", name);
    await blade(page, "Identity");
    await page.getByRole("tab", { name: "User assigned" }).click();
    await page.getByText("No user assigned managed identities found on this resource.").waitFor();
    await page.getByRole("button", { name: "Add", exact: true }).click();
    await dialog(page).getByRole("heading", { name: "Add user assigned managed identity" }).waitFor();
    await dialog(page).getByRole("checkbox", { name: identityName }).check();
    await dialog(page).getByRole("button", { name: "Add", exact: true }).click();
    await page.getByRole("link", { name: identityName, exact: true }).waitFor();

    let vm = await arm.compute.virtualMachines.get(rg, name);
    assert.equal(vm.identity?.type, "SystemAssigned, UserAssigned", "the system identity was kept");
    const attached = userAssigned(vm)[identity.id.toLowerCase()];
    assert.ok(attached, JSON.stringify(vm.identity));
    assert.equal(attached.principalId, identity.principalId);
    await page.getByText(identity.clientId).waitFor();
    await shot(page, "vm-identity-user-assigned");

    await page.getByRole("checkbox", { name: `Select ${identityName}` }).check();
    await page.getByRole("button", { name: "Remove" }).click();
    await dialog(page).getByRole("heading", { name: "Remove user assigned managed identities" }).waitFor();
    await dialog(page).getByRole("button", { name: "Yes" }).click();
    await page.getByText("No user assigned managed identities found on this resource.").waitFor();
    vm = await arm.compute.virtualMachines.get(rg, name);
    assert.equal(vm.identity?.type, "SystemAssigned", JSON.stringify(vm.identity));
    assert.deepEqual(userAssigned(vm), {});
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("Access control (IAM): Reader for the VM's system identity on a group, a VM and a Cosmos DB account; Remove (seed: grant access)", async (page) => {
    const { rg, name } = await groupWithVm({ type: "SystemAssigned" });
    const principalId = (await arm.compute.virtualMachines.get(rg, name)).identity.principalId;
    const account = uniqueName("portalcos");
    await cosmos.databaseAccounts.beginCreateOrUpdateAndWait(rg, account, {
      location: "westus", kind: "GlobalDocumentDB", databaseAccountOfferType: "Standard",
      locations: [{ locationName: "westus", failoverPriority: 0, isZoneRedundant: false }],
    });
    await signIn(page);

    const check = async (scope) => {
      const found = await assignmentsOf(scope, principalId);
      const here = found.filter((a) => a.scope.toLowerCase() === scope.toLowerCase());
      assert.equal(here.length, 1, JSON.stringify(found));
      assert.equal(roleDefinitionGuid(here[0].roleDefinitionId), ROLES.Reader);
      assert.equal(here[0].principalType, "ServicePrincipal");
      assert.match(here[0].name, GUID_RE);
      return here[0];
    };

    await openFromList(page, "Resource groups", rg);
    await addRoleAssignment(page, { role: "Reader", managedIdentityKind: "Virtual machine", memberName: name });
    const onGroup = await check(server.groupId(rg));
    await shot(page, "iam-group");

    await openFromList(page, "Virtual machines", name);
    await addRoleAssignment(page, { role: "Reader", managedIdentityKind: "Virtual machine", memberName: name });
    await check(server.vmId(rg, name));
    // The group's assignment shows on the VM as inherited.
    await page.getByRole("row", { name: new RegExp(`${name}.*Reader.*Resource group \\(Inherited\\)`) }).waitFor();

    await openFromList(page, "Azure Cosmos DB", account);
    await addRoleAssignment(page, { role: "Reader", managedIdentityKind: "Virtual machine", memberName: name });
    await check(`${server.groupId(rg)}/providers/Microsoft.DocumentDB/databaseAccounts/${account}`);
    await shot(page, "iam-cosmos");

    // Remove the group's assignment: select it, Remove, Yes.
    await openFromList(page, "Resource groups", rg);
    await blade(page, "Access control (IAM)");
    await page.getByRole("checkbox", { name: `Select ${name} Reader` }).check();
    await page.getByRole("button", { name: "Remove" }).click();
    await dialog(page).getByRole("heading", { name: "Remove role assignments" }).waitFor();
    await dialog(page).getByRole("button", { name: "Yes" }).click();
    await page.getByText("No role assignments at this scope").or(page.getByRole("row", { name: /Owner/ })).first().waitFor();
    await page.getByRole("row", { name: new RegExp(`${name}.*Reader`) }).waitFor({ state: "detached" });
    const error = await rejects(arm.authorization.roleAssignments.getById(onGroup.id));
    assert.equal(error.statusCode, 404, describeError(error));
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("Azure Cosmos DB: create an account; Keys hidden until shown; a data plane role assignment added and removed", async (page) => {
    const rg = await createGroup(arm, uniqueName("portalrg"));
    const identityName = uniqueName("cosmosreader");
    const identity = await arm.msi.userAssignedIdentities.createOrUpdate(rg, identityName, { location: "westus" });
    const account = uniqueName("portalcos");
    await signIn(page);
    await nav(page, "Azure Cosmos DB");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Create Azure Cosmos DB Account" }).waitFor();
    await page.getByLabel("Resource group").selectOption(rg);
    await page.getByLabel("Account Name").fill(account);
    await page.getByLabel("Location").selectOption("westus");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: account, exact: true }).waitFor();
    const created = await cosmos.databaseAccounts.get(rg, account);
    await page.getByText(created.documentEndpoint, { exact: true }).waitFor();

    await blade(page, "Keys");
    const keys = await cosmos.databaseAccounts.listKeys(rg, account);
    const primary = page.getByLabel("PRIMARY KEY", { exact: true });
    assert.equal(await primary.getAttribute("type"), "password", "the key is hidden until shown");
    await page.getByRole("button", { name: "Show PRIMARY KEY", exact: true }).click();
    assert.equal(await primary.getAttribute("type"), "text");
    assert.equal(await primary.inputValue(), keys.primaryMasterKey);
    await page.getByRole("button", { name: "Show PRIMARY CONNECTION STRING", exact: true }).click();
    assert.match(await page.getByLabel("PRIMARY CONNECTION STRING", { exact: true }).inputValue(), new RegExp(`AccountKey=${keys.primaryMasterKey.replace(/[+/=]/g, "\\$&")}`));
    await shot(page, "cosmos-keys");

    await blade(page, "Data plane role assignments");
    await page.getByText("No data plane role assignments").waitFor();
    await page.getByRole("button", { name: "Add", exact: true }).click();
    const add = page.getByRole("dialog", { name: "Add data plane role assignment" });
    await add.getByLabel("Role").selectOption({ label: "Cosmos DB Built-in Data Reader" });
    await add.getByRole("button", { name: "Select a managed identity" }).click();
    const picker = page.getByRole("dialog", { name: "Select managed identities" });
    await picker.getByRole("checkbox", { name: identityName }).check();
    await picker.getByRole("button", { name: "Select", exact: true }).click();
    await eventually(async () => assert.equal(await add.getByLabel("Principal ID").inputValue(), identity.principalId));
    assert.equal(await add.getByLabel("Scope").inputValue(), "/");
    await add.getByRole("button", { name: "Save" }).click();
    await page.getByRole("row", { name: new RegExp(`Cosmos DB Built-in Data Reader.*${identityName}`) }).waitFor();
    const assignments = await all(cosmos.sqlResources.listSqlRoleAssignments(rg, account));
    assert.equal(assignments.length, 1);
    assert.equal(assignments[0].principalId, identity.principalId);
    assert.match(assignments[0].roleDefinitionId, /sqlRoleDefinitions\/00000000-0000-0000-0000-000000000001$/);
    await shot(page, "cosmos-data-plane-roles");

    await page.getByRole("checkbox", { name: `Select ${identityName} Cosmos DB Built-in Data Reader` }).check();
    await page.getByRole("button", { name: "Remove" }).click();
    await dialog(page).getByRole("button", { name: "Yes" }).click();
    await page.getByText("No data plane role assignments").waitFor();
    assert.deepEqual(await all(cosmos.sqlResources.listSqlRoleAssignments(rg, account)), []);
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("Delete: a VM after confirmation (then 404), and a group only once its name is typed (seed: clean up)", async (page) => {
    const { rg, name } = await groupWithVm({ type: "SystemAssigned" });
    await signIn(page);
    await openFromList(page, "Virtual machines", name);
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await dialog(page).getByRole("heading", { name: "Delete virtual machine" }).waitFor();
    await dialog(page).getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Virtual machines" }).waitFor();
    const gone = await rejects(arm.compute.virtualMachines.get(rg, name));
    assert.equal(gone.statusCode ?? gone.status, 404, describeError(gone));

    await openFromList(page, "Resource groups", rg);
    await page.getByRole("button", { name: "Delete resource group" }).click();
    const confirm = dialog(page);
    const deleteButton = confirm.getByRole("button", { name: "Delete", exact: true });
    assert.equal(await deleteButton.isDisabled(), true, "disabled until the name is typed");
    await confirm.getByLabel("Enter resource group name to confirm deletion").fill(`${rg}x`);
    assert.equal(await deleteButton.isDisabled(), true);
    await confirm.getByLabel("Enter resource group name to confirm deletion").fill(rg);
    assert.equal(await deleteButton.isDisabled(), false);
    await deleteButton.click();
    await page.getByRole("heading", { level: 1, name: "Resource groups" }).waitFor();
    assert.equal((await arm.resource.resourceGroups.checkExistence(rg)).body, false);
    await shot(page, "deleted-group");
  });

  browserTest("a Reader's create and delete show ARM's AuthorizationFailed on the page", async (page) => {
    const { rg, name } = await groupWithVm({ type: "SystemAssigned" });
    // The admin creates the user through Graph and makes it Reader of the subscription.
    const adminToken = await postToken(server, {
      grant_type: "password", client_id: AZ_CLI_CLIENT_ID, username: server.adminUsername, password: server.adminPassword, scope: GRAPH_SCOPE,
    });
    assert.equal(adminToken.status, 200, adminToken.text);
    const domain = server.adminUsername.split("@")[1];
    const username = `${uniqueName("reader")}@${domain}`;
    const password = `Rd-${crypto.randomBytes(9).toString("base64url")}9a`;
    const created = await server.request("POST", "/v1.0/users", {
      token: adminToken.json.access_token,
      body: { accountEnabled: true, displayName: "Portal Reader", mailNickname: username.split("@")[0], userPrincipalName: username, passwordProfile: { forceChangePasswordNextSignIn: false, password } },
    });
    assert.equal(created.status, 201, created.text);
    await arm.authorization.roleAssignments.create(server.subscriptionScope, crypto.randomUUID(), {
      roleDefinitionId: server.roleDefinitionId("Reader"), principalId: created.json.id, principalType: "User",
    });

    await signIn(page, username, password);
    await page.getByText("Portal Reader").first().waitFor();
    // Create: the page shows ARM's refusal.
    const denied = uniqueName("denied");
    await nav(page, "Resource groups");
    await page.getByRole("link", { name: rg, exact: true }).waitFor();
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByLabel("Resource group name").fill(denied);
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await alertWith(page, "AuthorizationFailed").waitFor();
    const createMessage = await alertWith(page, "AuthorizationFailed").innerText();
    assert.match(createMessage, new RegExp(`does not have authorization to perform action 'Microsoft\\.Resources/subscriptions/resourcegroups/write' over scope '/subscriptions/${server.subscriptionId}/resourcegroups/${denied}'`, "i"));
    assert.equal((await arm.resource.resourceGroups.checkExistence(denied)).body, false);
    await page.getByRole("link", { name: "Activity log" }).click();
    await page.getByRole("row", { name: /Create resource group.*Failed.*AuthorizationFailed/ }).waitFor();

    // Delete: the same.
    await openFromList(page, "Virtual machines", name);
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await dialog(page).getByRole("button", { name: "Delete", exact: true }).click();
    await alertWith(page, "AuthorizationFailed").waitFor();
    assert.match(await alertWith(page, "AuthorizationFailed").innerText(), /Microsoft\.Compute\/virtualMachines\/delete/);
    assert.equal((await arm.compute.virtualMachines.get(rg, name)).name, name, "the VM is still there");
    await shot(page, "reader-authorization-failed");
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("an expiring token is refreshed (refresh_token grant); Sign out ends the session: the portal asks for the password again", async (page) => {
    await signIn(page);
    // Near expiry, the app redeems its refresh token before calling ARM.
    const stored = () => page.evaluate(() => JSON.parse(sessionStorage.getItem("openmi.portal.tokens")));
    const before = await stored();
    assert.ok(before.refreshToken, "the sign-in asked for offline_access");
    await page.evaluate(() => {
      const tokens = JSON.parse(sessionStorage.getItem("openmi.portal.tokens"));
      tokens.expiresAt = Date.now() - 1_000;
      sessionStorage.setItem("openmi.portal.tokens", JSON.stringify(tokens));
    });
    const refreshed = page.waitForResponse((res) => res.url().endsWith("/oauth2/v2.0/token") && res.request().method() === "POST");
    await nav(page, "Resource groups");
    assert.equal((await refreshed).status(), 200);
    assert.match(new URLSearchParams((await refreshed).request().postData()).get("grant_type"), /^refresh_token$/);
    const after = await stored();
    assert.notEqual(after.accessToken, before.accessToken);
    assert.ok(after.expiresAt > Date.now() + 60_000);
    await page.getByText(/Showing \d+ to \d+ of \d+ records\./).waitFor();

    await page.getByRole("button", { name: "Sign out" }).click();
    await page.getByLabel("Password").waitFor();
    await page.goto(`${server.url}/portal/`);
    await page.getByLabel("Password").waitFor();
    await page.getByLabel("Username").waitFor();
    assert.equal(await page.getByRole("button", { name: "Sign out" }).count(), 0);
    await shot(page, "signed-out");
  });

  browserTest("a wrong password shows Entra's AADSTS50126 on the sign-in page; the right one comes back to the page asked for", async (page) => {
    await page.goto(`${server.url}/portal/#/identities`);
    await page.getByLabel("Username").fill(server.adminUsername);
    await page.getByLabel("Password").fill("not-the-password");
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByText(/AADSTS50126/).waitFor();
    assert.match(page.url(), /\/oauth2\/v2\.0\/authorize/);
    await shot(page, "wrong-password");
    await page.getByLabel("Password").fill(server.adminPassword);
    await page.getByRole("button", { name: "Sign in" }).click();
    await page.getByRole("heading", { level: 1, name: "Managed Identities" }).waitFor();
    assert.equal(new URL(page.url()).search, "", "the code and state left the address bar");
  });

  browserTest("Deploy a custom template: parameters form, Review + create, Create, operations until complete; a failure in ARM's words", async (page) => {
    const rg = await createGroup(arm, uniqueName("portalrg"));
    const template = {
      $schema: "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#",
      contentVersion: "1.0.0.0",
      parameters: {
        identityPrefix: { type: "string", metadata: { description: "Name prefix" } },
        count: { type: "int", defaultValue: 1 },
        tier: { type: "string", defaultValue: "basic", allowedValues: ["basic", "premium"] },
        secret: { type: "securestring" },
        location: { type: "string", defaultValue: "[resourceGroup().location]" },
      },
      resources: [{
        type: "Microsoft.ManagedIdentity/userAssignedIdentities",
        apiVersion: "2023-01-31",
        name: "[concat(parameters('identityPrefix'), copyIndex())]",
        location: "[parameters('location')]",
        tags: { tier: "[parameters('tier')]" },
        copy: { name: "ids", count: "[parameters('count')]" },
      }],
      outputs: { secretLength: { type: "int", value: "[length(parameters('secret'))]" } },
    };
    await signIn(page);
    await nav(page, "Home");
    await page.getByRole("navigation", { name: "Portal menu" }).getByRole("link", { name: "Deploy a custom template" }).click();
    await page.getByRole("heading", { level: 1, name: "Custom deployment" }).waitFor();
    await page.getByLabel("Edit template").fill(JSON.stringify(template, null, 2));
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByText("Customized template: 1 resource").waitFor();
    await page.getByLabel("Resource group").selectOption(rg);
    await page.getByLabel("Identity Prefix").fill("tid");
    await page.getByLabel("Count").fill("3");
    await page.getByLabel("Tier").selectOption({ label: "premium" });
    assert.equal(await page.getByLabel("Secret").getAttribute("type"), "password");
    await page.getByLabel("Secret").fill("s3cret!");
    await page.getByRole("button", { name: "Review + create", exact: true }).click();
    await page.getByText("Validation passed").waitFor();
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "Your deployment is complete" }).waitFor({ timeout: 40_000 });
    for (const index of [0, 1, 2]) await page.getByRole("row", { name: new RegExp(`tid${index}.*userAssignedIdentities`) }).waitFor();
    await shot(page, "custom-template-complete");

    const identities = (await all(arm.msi.userAssignedIdentities.listByResourceGroup(rg))).map((i) => i.name).sort();
    assert.deepEqual(identities, ["tid0", "tid1", "tid2"]);
    const deployment = (await all(deployments.deployments.listByResourceGroup(rg))).find((d) => d.name.startsWith("Microsoft.Template-"));
    assert.equal(deployment?.properties?.provisioningState, "Succeeded");
    assert.equal(deployment.properties.outputs.secretLength.value, 7);
    assert.equal((await arm.msi.userAssignedIdentities.get(rg, "tid1")).tags?.tier, "premium");

    // A template whose NIC names a subnet that does not exist fails as ARM says.
    const failing = {
      $schema: template.$schema,
      contentVersion: "1.0.0.0",
      resources: [{
        type: "Microsoft.Network/networkInterfaces", apiVersion: "2024-05-01", name: "nic-nowhere", location: "westus",
        properties: { ipConfigurations: [{ name: "ipconfig1", properties: { subnet: { id: `${server.groupId(rg)}/providers/Microsoft.Network/virtualNetworks/absent/subnets/default` } } }] },
      }],
    };
    await page.getByRole("navigation", { name: "Portal menu" }).getByRole("link", { name: "Deploy a custom template" }).click();
    await page.getByLabel("Edit template").fill(JSON.stringify(failing));
    await page.getByRole("button", { name: "Save" }).click();
    await page.getByLabel("Resource group").selectOption(rg);
    await page.getByRole("button", { name: "Review + create", exact: true }).click();
    await page.getByText("Validation passed").waitFor();
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { name: "Your deployment failed" }).waitFor({ timeout: 40_000 });
    await alertWith(page, "DeploymentFailed").waitFor();
    await page.getByRole("row", { name: /nic-nowhere.*InvalidResourceReference/ }).waitFor();
    await shot(page, "custom-template-failed");
    await nav(page, "Activity log");
    await page.getByRole("row", { name: /Create custom template deployment.*Succeeded.*Deployment succeeded/ }).waitFor();
    await page.getByRole("row", { name: /Create custom template deployment.*Failed.*DeploymentFailed/ }).waitFor();
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("Managed Identities: + Create; the overview's Client ID and Object (principal) ID match the API; Delete", async (page) => {
    const rg = await createGroup(arm, uniqueName("portalrg"));
    const name = uniqueName("myUserAssignedIdentity");
    await signIn(page);
    await nav(page, "Managed Identities");
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Create User Assigned Managed Identity" }).waitFor();
    await page.getByLabel("Resource group").selectOption(rg);
    await page.getByLabel("Region").selectOption("westus");
    await page.getByLabel("Name", { exact: true }).fill(name);
    await page.getByRole("button", { name: "Create", exact: true }).click();
    await page.getByRole("heading", { level: 1, name, exact: true }).waitFor();

    const identity = await arm.msi.userAssignedIdentities.get(rg, name);
    assert.match(identity.clientId, GUID_RE);
    assert.match(identity.principalId, GUID_RE);
    const essentials = page.locator(".essentials");
    await essentials.getByText(identity.clientId, { exact: true }).waitFor();
    await essentials.getByText(identity.principalId, { exact: true }).waitFor();
    await essentials.getByText(identity.id, { exact: true }).waitFor();
    const clientIdValue = await page.locator("dt", { hasText: /^Client ID$/ }).locator("xpath=following-sibling::dd[1]").innerText();
    assert.match(clientIdValue, new RegExp(identity.clientId));
    const principalValue = await page.locator("dt", { hasText: /^Object \(principal\) ID$/ }).locator("xpath=following-sibling::dd[1]").innerText();
    assert.match(principalValue, new RegExp(identity.principalId));
    await shot(page, "managed-identity-overview");

    await blade(page, "Azure role assignments");
    await page.getByText("No role assignments for this identity in this subscription").waitFor();
    await blade(page, "Overview");
    await page.getByRole("button", { name: "Delete", exact: true }).click();
    await dialog(page).getByRole("button", { name: "Delete", exact: true }).click();
    await page.getByRole("heading", { level: 1, name: "Managed Identities" }).waitFor();
    const gone = await rejects(arm.msi.userAssignedIdentities.get(rg, name));
    assert.equal(gone.statusCode, 404, describeError(gone));
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("lists page 20 at a time and filter", async (page) => {
    const rg = await createGroup(arm, uniqueName("portalrg"));
    const prefix = `pg${crypto.randomBytes(3).toString("hex")}`;
    const names = Array.from({ length: 23 }, (_, index) => `${prefix}-${String(index).padStart(2, "0")}`);
    await Promise.all(names.map((name) => arm.msi.userAssignedIdentities.createOrUpdate(rg, name, { location: "westus" })));
    await signIn(page);
    await nav(page, "Managed Identities");
    await page.getByRole("searchbox", { name: "Filter for any field..." }).fill(prefix);
    await page.getByText("Showing 1 to 20 of 23 records.").waitFor();
    assert.equal(await page.getByRole("link", { name: names[20], exact: true }).count(), 0);
    await page.getByRole("button", { name: "Next page" }).click();
    await page.getByText("Showing 21 to 23 of 23 records.").waitFor();
    await page.getByRole("link", { name: names[22], exact: true }).waitFor();
    assert.equal(await page.getByRole("button", { name: "Next page" }).isDisabled(), true);
    await page.getByRole("button", { name: "Previous page" }).click();
    await page.getByRole("link", { name: names[0], exact: true }).waitFor();
    await page.getByRole("searchbox", { name: "Filter for any field..." }).fill(names[7]);
    await page.getByText("Showing 1 to 1 of 1 records.").waitFor();
    await shot(page, "paged-list");
    await deleteGroupQuietly(arm, rg);
  });

  browserTest("at a narrow width the menu collapses behind Show portal menu; keyboard reaches search and pages", async (page) => {
    await signIn(page);
    const menu = page.getByRole("navigation", { name: "Portal menu" });
    assert.equal(await menu.getByRole("link", { name: "Virtual machines" }).isVisible(), false, "collapsed");
    await page.getByRole("button", { name: "Show portal menu" }).click();
    await menu.getByRole("link", { name: "Virtual machines" }).click();
    await page.getByRole("heading", { level: 1, name: "Virtual machines" }).waitFor();
    assert.equal(await menu.getByRole("link", { name: "Virtual machines" }).isVisible(), false, "closed after choosing");
    // "/" focuses the search box; typing and Enter opens the first match.
    await page.keyboard.press("/");
    await page.keyboard.type("managed identities");
    await page.getByRole("option", { name: "Managed Identities" }).waitFor();
    await page.keyboard.press("Enter");
    await page.getByRole("heading", { level: 1, name: "Managed Identities" }).waitFor();
    await shot(page, "narrow");
  }, { viewport: { width: 400, height: 800 } });
});
