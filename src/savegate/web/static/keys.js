// The dashboard's key management: list, create (the secret shown once), edit settings
// (PATCH), revoke. Every call goes to the admin API with the admin key typed in the page.
import { apiJson, count, describeError, el, usd } from "./common.js";

const $ = (id) => document.getElementById(id);
const NULLABLE = [
  "owner", "allowed_models", "monthly_budget_usd", "monthly_token_quota",
  "rpm", "tpm", "max_concurrent", "expires_at",
];
const NUMBERS = new Set(["monthly_budget_usd", "monthly_token_quota", "rpm", "tpm", "max_concurrent"]);

/** Form fields → the admin API's key settings; empty fields become null (no limit). */
function settingsFrom(form) {
  const values = new FormData(form);
  const settings = { name: values.get("name").trim(), budget_mode: values.get("budget_mode") };
  for (const name of NULLABLE) {
    const raw = (values.get(name) || "").trim();
    if (!raw) settings[name] = null;
    else if (NUMBERS.has(name)) settings[name] = Number(raw);
    else if (name === "allowed_models") settings[name] = raw.split(",").map((m) => m.trim()).filter(Boolean);
    else if (name === "expires_at") settings[name] = `${raw}T00:00:00Z`;
    else settings[name] = raw;
  }
  return settings;
}

function fillForm(form, key) {
  for (const name of ["name", "budget_mode", ...NULLABLE]) {
    let value = key[name];
    if (name === "allowed_models" && value) value = value.join(", ");
    if (name === "expires_at" && value) value = value.slice(0, 10);
    form.elements[name].value = value ?? "";
  }
}

function status(key) {
  if (key.revoked_at) return el("span", { class: "pill bad" }, "revoked");
  if (key.expires_at && new Date(key.expires_at) <= new Date()) {
    return el("span", { class: "pill warn" }, "expired");
  }
  return el("span", { class: "pill ok" }, key.is_admin ? "active · admin" : "active");
}

function limits(key) {
  const parts = [];
  if (key.monthly_token_quota !== null) parts.push(`${count(key.monthly_token_quota)} tokens/month`);
  if (key.rpm !== null) parts.push(`${key.rpm} rpm`);
  if (key.tpm !== null) parts.push(`${count(key.tpm)} tpm`);
  if (key.max_concurrent !== null) parts.push(`${key.max_concurrent} in flight`);
  return parts.length ? parts.join(", ") : "none";
}

/** This month's spend against the key's budget, with a bar that turns amber at 80%. */
function budgetCell(key, month) {
  const spent = month?.cost_usd || 0;
  if (!key.monthly_budget_usd) return el("td", { class: "num" }, `${usd(spent)} · no budget`);
  const share = spent / key.monthly_budget_usd;
  const level = share >= 1 ? "bad" : share >= 0.8 ? "warn" : "";
  const bar = el("div", { class: `meter ${level}` }, el("div", { style: `width: ${Math.min(share, 1) * 100}%` }));
  return el(
    "td", { class: "num" },
    `${usd(spent)} of ${usd(key.monthly_budget_usd)} (${key.budget_mode})`, bar,
  );
}

export class KeysPanel {
  constructor({ adminKey, reload, report }) {
    this.adminKey = adminKey;
    this.reload = reload;
    this.report = report;
    this.editing = null;
    $("create-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.create();
    });
    $("edit-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    $("edit-cancel").addEventListener("click", () => $("edit-dialog").close());
    $("secret-dismiss").addEventListener("click", () => { $("secret").hidden = true; });
    $("secret-copy").addEventListener("click", () => navigator.clipboard?.writeText($("secret-value").textContent));
    $("show-revoked").addEventListener("change", () => this.reload());
  }

  get includeRevoked() {
    return $("show-revoked").checked;
  }

  render(keys, monthByKey) {
    const head = el("tr", {}, ["Name", "Owner", "Key", "Models", "Limits", "This month", "Created", "Last used", "Status", ""]
      .map((title) => el("th", { class: title === "This month" ? "num" : null }, title)));
    const rows = keys
      .filter((key) => this.includeRevoked || !key.revoked_at)
      .map((key) => el(
        "tr", { class: key.revoked_at ? "revoked" : null, "data-key-id": key.id },
        el("td", {}, el("strong", {}, key.name), el("div", { class: "muted mono" }, key.id)),
        el("td", {}, key.owner || "–"),
        el("td", { class: "mono" }, key.key_hint),
        el("td", {}, key.allowed_models ? key.allowed_models.join(", ") : "all"),
        el("td", {}, limits(key)),
        budgetCell(key, monthByKey.get(key.id)),
        el("td", {}, key.created_at.slice(0, 10)),
        el("td", {}, key.last_used_at ? key.last_used_at.slice(0, 16).replace("T", " ") : "never"),
        el("td", {}, status(key)),
        el("td", { class: "actions" }, key.revoked_at ? null : [
          el("button", { type: "button", onclick: () => this.edit(key) }, "Edit"),
          " ",
          el("button", { type: "button", class: "danger", onclick: () => this.revoke(key) }, "Revoke"),
        ]),
      ));
    $("keys").replaceChildren(el("thead", {}, head), el("tbody", {}, rows));
  }

  async create() {
    const form = $("create-form");
    const settings = settingsFrom(form);
    settings.is_admin = form.elements.is_admin.checked;
    try {
      const created = await apiJson("/admin/keys", this.adminKey.value, { method: "POST", body: settings });
      $("secret-name").textContent = created.name;
      $("secret-value").textContent = created.secret;
      $("secret").hidden = false;
      form.reset();
      $("create-details").open = false;
      await this.reload();
    } catch (error) {
      this.report(error);
    }
  }

  edit(key) {
    this.editing = key;
    $("edit-title").textContent = key.name;
    $("edit-error").hidden = true;
    fillForm($("edit-form"), key);
    $("edit-dialog").showModal();
  }

  async save() {
    try {
      await apiJson(`/admin/keys/${this.editing.id}`, this.adminKey.value, {
        method: "PATCH", body: settingsFrom($("edit-form")),
      });
      $("edit-dialog").close();
      await this.reload();
    } catch (error) {
      $("edit-error").textContent = describeError(error);
      $("edit-error").hidden = false;
    }
  }

  async revoke(key) {
    if (!confirm(`Revoke key "${key.name}" (${key.id})? Requests with it are refused at once.`)) return;
    try {
      await apiJson(`/admin/keys/${key.id}`, this.adminKey.value, { method: "DELETE" });
      await this.reload();
    } catch (error) {
      this.report(error);
    }
  }
}
