// "Deploy a custom template" and a deployment's page. The editor takes a template (pasted or a
// quickstart), Save parses it and builds the parameters form from its `parameters` (types,
// defaultValue, allowedValues as a select, securestring as a password box); Review + create then
// Create PUTs a group deployment (`Microsoft.Template-<timestamp>`). A deployment's page polls
// the deployment and its operations until it ends: "Deployment is in progress", then "Your
// deployment is complete" (Go to resource) or the failure in ARM's words, with the operations
// table (resource, type, status, error).

import { apiVersionFor, arm } from "../lib/api.js";
import { missing, projectDetails, timestamp, validationBanner } from "../lib/forms.js";
import { operation, parseId, resourceRoute, sameId, settleActivity, subscriptionName, typeLabel } from "../lib/resources.js";
import {
  append, button, commandBar, dataTable, errorBanner, essentials, field, formatTime, h, infoBanner, input, link, notify, notifyError, pageHeader,
  refreshPage, replace, select, spinner, tabs,
} from "../lib/ui.js";

const DEPLOYMENTS_API = apiVersionFor("Microsoft.Resources/deployments");
const SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentTemplate.json#";

const QUICKSTARTS = [
  {
    label: "Create user-assigned managed identities",
    template: {
      $schema: SCHEMA,
      contentVersion: "1.0.0.0",
      parameters: {
        identityPrefix: { type: "string", defaultValue: "id", metadata: { description: "The identities' names start with this." } },
        count: { type: "int", defaultValue: 2, minValue: 1, maxValue: 10 },
        location: { type: "string", defaultValue: "[resourceGroup().location]" },
      },
      resources: [{
        type: "Microsoft.ManagedIdentity/userAssignedIdentities",
        apiVersion: "2023-01-31",
        name: "[concat(parameters('identityPrefix'), copyIndex())]",
        location: "[parameters('location')]",
        copy: { name: "identities", count: "[parameters('count')]" },
      }],
      outputs: { first: { type: "string", value: "[reference(resourceId('Microsoft.ManagedIdentity/userAssignedIdentities', concat(parameters('identityPrefix'), '0'))).principalId]" } },
    },
  },
  {
    label: "Create an Azure Cosmos DB account",
    template: {
      $schema: SCHEMA,
      contentVersion: "1.0.0.0",
      parameters: {
        accountName: { type: "string", metadata: { description: "Lower-case letters, digits and hyphens." } },
        location: { type: "string", defaultValue: "[resourceGroup().location]" },
      },
      resources: [{
        type: "Microsoft.DocumentDB/databaseAccounts",
        apiVersion: "2024-05-15",
        name: "[parameters('accountName')]",
        location: "[parameters('location')]",
        kind: "GlobalDocumentDB",
        properties: { databaseAccountOfferType: "Standard", locations: [{ locationName: "[parameters('location')]", failoverPriority: 0 }] },
      }],
    },
  },
];

/** "adminUsername" -> "Admin Username", as the portal labels template parameters. */
export function parameterLabel(name) {
  const spaced = name.replace(/([a-z0-9])([A-Z])/g, "$1 $2").replace(/[_-]+/g, " ");
  return spaced.charAt(0).toUpperCase() + spaced.slice(1);
}

function isExpression(value) {
  return typeof value === "string" && value.startsWith("[") && !value.startsWith("[[") && value.endsWith("]");
}

/** Where a JSON.parse error points, as "line L, column C" when the engine says the offset. */
function jsonErrorMessage(text, error) {
  const match = /position (\d+)/.exec(error.message);
  if (!match || /line \d+/.test(error.message)) return error.message;
  const offset = Number(match[1]);
  const before = text.slice(0, offset).split("\n");
  return `${error.message} (line ${before.length}, column ${before[before.length - 1].length + 1})`;
}

/** A parameter's control: [element, read() -> {value} | {omit} | {error}]. */
function parameterControl(name, spec) {
  const type = String(spec.type ?? "string").toLowerCase();
  const hasDefault = "defaultValue" in spec;
  const expressionDefault = hasDefault && isExpression(spec.defaultValue);
  const literalDefault = hasDefault && !expressionDefault ? spec.defaultValue : undefined;
  let control;
  if (Array.isArray(spec.allowedValues)) {
    control = select(spec.allowedValues.map((v) => ({ value: JSON.stringify(v), label: typeof v === "string" ? v : JSON.stringify(v) })),
      { value: literalDefault !== undefined ? JSON.stringify(literalDefault) : undefined, placeholder: literalDefault === undefined ? "Select a value" : undefined });
  } else if (type === "bool") {
    control = select([{ value: "true", label: "true" }, { value: "false", label: "false" }], { value: literalDefault !== undefined ? String(literalDefault) : undefined, placeholder: literalDefault === undefined ? "Select a value" : undefined });
  } else if (type === "int") {
    control = input({ type: "number", value: literalDefault !== undefined ? String(literalDefault) : undefined, min: spec.minValue, max: spec.maxValue, step: "1" });
  } else if (type === "securestring") {
    control = input({ type: "password", autocomplete: "new-password", value: literalDefault });
  } else if (type === "object" || type === "array" || type === "secureobject") {
    control = h("textarea", { rows: "4", class: "mono", spellcheck: "false" });
    control.value = literalDefault !== undefined ? JSON.stringify(literalDefault, null, 2) : "";
  } else {
    control = input({ value: literalDefault, maxlength: spec.maxLength });
  }
  if (expressionDefault) control.placeholder = `Default: ${spec.defaultValue}`;
  const hintParts = [spec.metadata?.description, expressionDefault ? `Leave empty for the default ${spec.defaultValue}` : null].filter(Boolean);
  const element = field(parameterLabel(name), control, { required: !hasDefault, hint: hintParts.join(" ") || undefined });
  const read = () => {
    const raw = control.value;
    if (raw === "" || raw === undefined) {
      // Left empty: ARM applies the template's defaultValue.
      if (hasDefault) return { omit: true };
      return { error: `${parameterLabel(name)} is required.` };
    }
    if (Array.isArray(spec.allowedValues)) return { value: JSON.parse(raw) };
    if (type === "int") {
      const number = Number(raw);
      if (!Number.isInteger(number)) return { error: `${parameterLabel(name)} must be a whole number.` };
      return { value: number };
    }
    if (type === "bool") return { value: raw === "true" };
    if (type === "object" || type === "array" || type === "secureobject") {
      try {
        return { value: JSON.parse(raw) };
      } catch (error) {
        return { error: `${parameterLabel(name)} is not valid JSON: ${error.message}` };
      }
    }
    return { value: raw };
  };
  return { element, read, secure: type.startsWith("secure") };
}

export async function editor(view, ctx) {
  const textarea = h("textarea", { id: "template-editor", class: "editor mono", rows: "22", spellcheck: "false", "aria-describedby": "template-help" });
  textarea.value = JSON.stringify({ $schema: SCHEMA, contentVersion: "1.0.0.0", parameters: {}, resources: [] }, null, 2);
  const quickstart = select(QUICKSTARTS.map((q, i) => ({ value: String(i), label: q.label })), { placeholder: "Select a template" });
  quickstart.addEventListener("change", () => {
    const chosen = QUICKSTARTS[Number(quickstart.value)];
    if (chosen) textarea.value = JSON.stringify(chosen.template, null, 2);
  });
  const problems = h("div", { class: "form-result" });
  const stage = h("div", {});
  const editorBlock = h("div", { class: "form" },
    h("p", { id: "template-help", class: "hint" }, "Build your own template in the editor: paste an ARM template (JSON), or start from a quickstart template, then Save."),
    field("Quickstart template", quickstart),
    h("div", { class: "field field-wide" }, h("label", { for: textarea.id }, "Edit template"), textarea),
    problems,
    h("div", { class: "form-actions" }, button("Save", save, { kind: "primary" }), button("Discard", () => history.back())));
  append(view, pageHeader("Custom deployment", "Deploy from a custom template"), stage);
  append(stage, editorBlock);
  textarea.focus();

  function save() {
    let template;
    try {
      template = JSON.parse(textarea.value);
    } catch (error) {
      replace(problems, errorBanner({ code: "InvalidTemplate", message: `The template is not valid JSON: ${jsonErrorMessage(textarea.value, error)}` }));
      return;
    }
    if (!template || typeof template !== "object" || Array.isArray(template)) {
      replace(problems, errorBanner({ code: "InvalidTemplate", message: "The template must be a JSON object." }));
      return;
    }
    problems.replaceChildren();
    replace(stage, deploymentForm(template, () => replace(stage, editorBlock), ctx));
  }
}

function deploymentForm(template, editAgain, ctx) {
  const project = projectDetails({ initialGroup: ctx.query.get("group") ?? undefined });
  project.regionSelect.disabled = true;
  const parameters = Object.entries(template.parameters ?? {}).map(([name, spec]) => ({ name, spec, ...parameterControl(name, spec ?? {}) }));
  const result = h("div", { class: "form-result" });
  const reviewBody = h("div", { class: "review" });
  const resourceCount = Array.isArray(template.resources) ? template.resources.length : Object.keys(template.resources ?? {}).length;
  const basics = h("div", { class: "form" },
    h("section", { class: "form-section" }, h("h2", {}, "Template"),
      h("p", {}, `Customized template: ${resourceCount} resource${resourceCount === 1 ? "" : "s"}`),
      button("Edit template", editAgain)),
    project.element,
    h("section", { class: "form-section" }, h("h2", {}, "Instance details"),
      parameters.length ? parameters.map((p) => p.element) : h("p", { class: "hint" }, "This template has no parameters.")));
  const review = h("div", { class: "form" }, result, reviewBody);
  const footer = h("div", { class: "wizard-footer" });
  let wizard;
  const drawFooter = (id) => {
    if (id === "review") replace(footer, button("Create", submit, { kind: "primary", id: "template-create" }), button("< Previous", () => wizard.select("basics")));
    else replace(footer, button("Review + create", () => wizard.select("review"), { kind: "primary" }), button("Next : Review + create >", () => wizard.select("review")));
  };
  wizard = tabs([
    { id: "basics", label: "Basics", render: (panel) => append(panel, basics) },
    { id: "review", label: "Review + create", render: (panel) => { drawReview(); append(panel, review); } },
  ], { label: "Custom deployment", onChange: drawFooter });

  function collect() {
    const { subscription, group } = project.values();
    const issues = missing([["Subscription", subscription], ["Resource group", group]]);
    const values = {};
    for (const p of parameters) {
      const read = p.read();
      if (read.error) issues.push(read.error);
      else if (!read.omit) values[p.name] = { value: read.value };
    }
    return { subscription, group, values, issues };
  }

  function drawReview() {
    const { group, values, issues } = collect();
    replace(reviewBody,
      issues.length ? validationBanner(issues) : h("div", { class: "banner banner-success", role: "status" }, h("span", { class: "banner-icon", "aria-hidden": "true" }, "✓"), h("div", {}, "Validation passed")),
      h("h2", {}, "Basics"),
      essentials([
        ["Subscription", project.subscriptionSelect.selectedOptions[0]?.textContent],
        ["Resource group", group],
        ["Region", project.values().regionLabel],
        ...parameters.map((p) => [parameterLabel(p.name), p.name in values ? (p.secure ? "••••••••" : JSON.stringify(values[p.name].value)) : "(default)"]),
      ]));
  }

  async function submit() {
    const { subscription, group, values, issues } = collect();
    if (issues.length) return drawReview();
    const createButton = footer.querySelector("#template-create");
    if (createButton) createButton.disabled = true;
    const name = `Microsoft.Template-${timestamp()}`;
    const id = `/subscriptions/${subscription}/resourceGroups/${group}/providers/Microsoft.Resources/deployments/${name}`;
    const outcome = await operation({
      name: "Create custom template deployment",
      resource: id,
      progress: "Submitting deployment...",
      success: "Deployment in progress...",
      container: result,
      acceptedOnly: true,
      run: () => arm.write("PUT", id, DEPLOYMENTS_API, { properties: { mode: "Incremental", template, parameters: values } }, { finalGet: false, poll: false }),
    });
    if (createButton) createButton.disabled = false;
    if (outcome.ok) location.hash = resourceRoute(id);
  }

  const element = h("div", {}, wizard.element, footer);
  project.ready.then(() => {
    drawFooter(wizard.current());
  });
  return element;
}

// ------------------------------------------------------------------------------------------------
// a deployment's page

function operationError(op) {
  const message = op.properties?.statusMessage;
  const error = message?.error ?? (message && typeof message === "object" && message.code ? message : null);
  return error ? `${error.code}: ${error.message}` : "";
}

const RUNNING = /^(accepted|running|creating|updating|deleting|waiting|notspecified)$/i;

export async function overview(content, deployment, ctx) {
  const status = h("div", { class: "deployment-status" });
  const details = h("div", {});
  const operationsBlock = h("section", { class: "section" }, h("h2", {}, "Deployment details"), spinner());
  const actions = h("div", { class: "form-actions" });
  append(content, commandBar(button("↻ Refresh", refreshPage, { ariaLabel: "Refresh" })), status, details, actions, operationsBlock);
  const parts = parseId(deployment.id);
  const groupId = parts.resourceGroup ? `/subscriptions/${parts.subscription}/resourceGroups/${parts.resourceGroup}` : null;
  const target = ctx.query.get("target");
  const operationsTable = dataTable({
    caption: "Deployment operations",
    text: (op) => `${op.properties?.targetResource?.resourceName} ${op.properties?.targetResource?.resourceType} ${op.properties?.provisioningState} ${operationError(op)}`,
    emptyText: "No operations yet",
    columns: [
      {
        label: "Resource",
        render: (op) => {
          const t = op.properties?.targetResource;
          if (!t) return "—";
          return op.properties?.provisioningState === "Succeeded" && t.id ? link(resourceRoute(t.id), t.resourceName ?? t.id) : t.resourceName ?? t.id;
        },
      },
      { label: "Type", render: (op) => op.properties?.targetResource?.resourceType ?? "—" },
      { label: "Status", render: (op) => h("span", { class: `status status-${String(op.properties?.statusCode ?? op.properties?.provisioningState).toLowerCase()}` }, op.properties?.statusCode ?? op.properties?.provisioningState ?? "—") },
      { label: "Operation details", render: (op) => operationError(op) || "—" },
    ],
  });
  replace(operationsBlock, h("h2", {}, "Deployment details"), operationsTable.element);

  let current = deployment;
  const subscriptionLabel = await subscriptionName(parts.subscription);
  for (;;) {
    const state = current.properties?.provisioningState ?? "Running";
    drawStatus(state);
    try {
      const operations = await arm.list(`${deployment.id}/operations`, DEPLOYMENTS_API);
      if (!ctx.alive()) return;
      operationsTable.setItems(operations);
    } catch (error) {
      replace(operationsBlock, h("h2", {}, "Deployment details"), errorBanner(error, "The deployment's operations could not be listed"));
    }
    if (!RUNNING.test(state)) {
      announce(state);
      return;
    }
    if (!ctx.alive()) return;
    await new Promise((resolve) => setTimeout(resolve, 1500));
    if (!ctx.alive()) return;
    try {
      current = await arm.get(deployment.id, DEPLOYMENTS_API);
    } catch (error) {
      replace(status, errorBanner(error, "The deployment could not be read"));
      return;
    }
  }

  /** The deployment this session submitted has ended: the activity entry and a notification. */
  function announce(state) {
    const ok = /^succeeded$/i.test(state);
    const error = current.properties?.error;
    const result = ok ? "Deployment succeeded" : `${error?.code ?? state}: ${error?.message ?? ""}`;
    if (!settleActivity(deployment.id, ok ? "Succeeded" : "Failed", result)) return;
    if (ok) notify("success", "Deployment succeeded", `Deployment '${deployment.name}' to resource group '${parts.resourceGroup ?? ""}' was successful.`);
    else notifyError("Deployment failed", error ?? { code: state, message: `Deployment '${deployment.name}' ended ${state}.` });
  }

  function drawStatus(state) {
    const props = current.properties ?? {};
    if (RUNNING.test(state)) {
      replace(status, h("div", { class: "deployment-banner", role: "status" }, h("span", { class: "spinner", "aria-hidden": "true" }), h("h2", {}, "Deployment is in progress")));
    } else if (/^succeeded$/i.test(state)) {
      replace(status, h("div", { class: "deployment-banner deployment-ok", role: "status" }, h("span", { class: "big-check", "aria-hidden": "true" }, "✓"), h("h2", {}, "Your deployment is complete")));
    } else {
      replace(status,
        h("div", { class: "deployment-banner deployment-failed" }, h("span", { class: "big-cross", "aria-hidden": "true" }, "✕"), h("h2", {}, "Your deployment failed")),
        errorBanner(props.error ?? { code: state, message: `The deployment ended ${state}.` }, "Deployment failed"));
    }
    replace(details, essentials([
      ["Deployment name", current.name],
      ["Subscription", subscriptionLabel],
      ["Resource group", groupId ? link(resourceRoute(groupId), parts.resourceGroup) : "—"],
      ["Start time", formatTime(props.timestamp)],
      ["Duration", props.duration],
      ["Correlation ID", props.correlationId],
      ["Status", state],
    ]),
    props.outputs && Object.keys(props.outputs).length
      ? [h("h2", {}, "Outputs"), essentials(Object.entries(props.outputs).map(([k, v]) => [k, typeof v?.value === "string" ? v.value : JSON.stringify(v?.value)]))]
      : null);
    actions.replaceChildren();
    if (/^succeeded$/i.test(state)) {
      const outputs = props.outputResources ?? [];
      const chosen = target
        ? outputs.find((r) => sameId(r.id, target))?.id ?? target
        : outputs.length === 1 ? outputs[0].id : null;
      if (chosen) append(actions, link(resourceRoute(chosen), "Go to resource", { class: "btn btn-primary" }));
      if (groupId) append(actions, link(resourceRoute(groupId), "Go to resource group", { class: "btn btn-secondary" }));
    } else if (!RUNNING.test(state)) {
      append(actions, link(resourceRoute(deployment.id, "template"), "Template", { class: "btn btn-secondary" }));
      if (groupId) append(actions, link(resourceRoute(groupId), "Go to resource group", { class: "btn btn-secondary" }));
    }
  }
}

/** The deployment's template (`exportTemplate`). */
export async function template(content, deployment) {
  const block = h("div", {}, spinner());
  append(content, block);
  try {
    const exported = await arm.post(`${deployment.id}/exportTemplate`, DEPLOYMENTS_API);
    replace(block, infoBanner(`${typeLabel(parseId(deployment.id).type)} ${deployment.name}: the template it was deployed with.`),
      h("pre", { class: "json", tabindex: "0", "aria-label": "Template JSON" }, JSON.stringify(exported?.template ?? exported, null, 2)));
  } catch (error) {
    replace(block, errorBanner(error, "The template could not be exported"));
  }
}
