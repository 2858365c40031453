// The "Project details" block every create page starts with (Subscription, Resource group,
// Region), loaded from ARM, plus small form utilities.

import { groups, locations, subscriptions } from "./resources.js";
import { errorBanner, field, h, select, setOptions } from "./ui.js";

/**
 * Subscription / Resource group / Region selects. `group: false` leaves out the group, `region:
 * false` the region. `initialGroup` preselects a group (e.g. when created from a group's page).
 * Returns { element, fields (the labelled fields, to lay out otherwise), values() ->
 * {subscription, group, location}, ready (a promise), and the selects }.
 */
export function projectDetails({ group = true, region = true, initialGroup, initialSubscription, regionFollowsGroup = true } = {}) {
  const subscriptionSelect = select([], { name: "subscription" });
  const groupSelect = group ? select([], { name: "resourceGroup" }) : null;
  const regionSelect = region ? select([], { name: "region" }) : null;
  const problems = h("div", { class: "form-errors" });
  let groupList = [];

  const loadGroups = async () => {
    if (!groupSelect) return;
    setOptions(groupSelect, [], { placeholder: "Loading…" });
    try {
      groupList = await groups(subscriptionSelect.value);
      setOptions(groupSelect, groupList.map((g) => ({ value: g.name, label: g.name })).sort((a, b) => a.label.localeCompare(b.label)),
        { placeholder: "Select a resource group", value: initialGroup });
      followGroup();
    } catch (error) {
      setOptions(groupSelect, [], { placeholder: "Select a resource group" });
      problems.append(errorBanner(error, "The resource groups could not be listed"));
    }
  };
  const loadRegions = async () => {
    if (!regionSelect) return;
    try {
      const list = await locations(subscriptionSelect.value);
      const current = regionSelect.value;
      setOptions(regionSelect, list.map((l) => ({ value: l.name, label: l.displayName ?? l.name })), { value: current || "eastus" });
      if (!regionSelect.value && list.length) regionSelect.value = list[0].name;
      followGroup();
    } catch (error) {
      problems.append(errorBanner(error, "The regions could not be listed"));
    }
  };
  const followGroup = () => {
    if (!regionSelect || !groupSelect || !regionFollowsGroup) return;
    const chosen = groupList.find((g) => g.name === groupSelect.value);
    if (chosen && [...regionSelect.options].some((o) => o.value === chosen.location)) regionSelect.value = chosen.location;
  };

  subscriptionSelect.addEventListener("change", () => {
    problems.replaceChildren();
    loadGroups();
    loadRegions();
  });
  groupSelect?.addEventListener("change", followGroup);

  const ready = (async () => {
    try {
      const subs = await subscriptions();
      setOptions(subscriptionSelect, subs.map((s) => ({ value: s.subscriptionId, label: s.displayName ?? s.subscriptionId })),
        { value: initialSubscription });
    } catch (error) {
      problems.append(errorBanner(error, "The subscriptions could not be listed"));
      return;
    }
    await Promise.all([loadGroups(), loadRegions()]);
  })();

  const fields = {
    problems,
    subscription: field("Subscription", subscriptionSelect, { required: true }),
    group: groupSelect ? field("Resource group", groupSelect, { required: true }) : null,
    region: regionSelect ? field("Region", regionSelect, { required: true }) : null,
  };
  const element = h("section", { class: "form-section" },
    h("h2", {}, "Project details"), problems, fields.subscription, fields.group, fields.region);

  return {
    element,
    fields,
    ready,
    groupSelect,
    regionSelect,
    subscriptionSelect,
    values: () => ({
      subscription: subscriptionSelect.value,
      group: groupSelect?.value ?? null,
      location: regionSelect?.value ?? null,
      regionLabel: regionSelect?.selectedOptions[0]?.textContent ?? regionSelect?.value,
    }),
  };
}

/** Checks required values; returns a list of messages (empty when all is well). */
export function missing(pairs) {
  return pairs.filter(([, value]) => !value || !String(value).trim()).map(([label]) => `${label} is required.`);
}

/** A validation banner listing messages. */
export function validationBanner(messages) {
  return h("div", { class: "banner banner-error", role: "alert" },
    h("span", { class: "banner-icon", "aria-hidden": "true" }, "✕"),
    h("div", {}, h("strong", { class: "banner-title" }, "Validation failed"), h("ul", {}, messages.map((m) => h("li", {}, m)))));
}

/** A compact UTC timestamp for deployment names: yyyyMMddHHmmss. */
export function timestamp(date = new Date()) {
  return date.toISOString().replace(/[-:T]/g, "").slice(0, 14);
}
