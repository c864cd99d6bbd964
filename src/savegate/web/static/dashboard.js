// The operator dashboard: spend, savings and usage by day, model and key, budget alerts,
// keys, and the request log, all read from the admin API with the admin key typed here.
import { SOURCES, drawCharts } from "./charts.js";
import { apiJson, count, describeError, el, keyField, ms, usd } from "./common.js";
import { KeysPanel } from "./keys.js";

const $ = (id) => document.getElementById(id);
const adminKey = keyField($("admin-key"), "savegate.dashboard.key");
const ALERT_SHARE = 0.8;

function monthStart() {
  const now = new Date();
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1));
}

function rangeStart() {
  const range = $("range").value;
  if (range === "all") return null;
  if (range === "month") return monthStart();
  return new Date(Date.now() - Number(range) * 86400000);
}

function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined) search.set(name, value instanceof Date ? value.toISOString() : value);
  }
  return search.toString();
}

const get = (path, params = {}) => apiJson(`${path}?${query(params)}`, adminKey.value);

function showError(error) {
  $("error").textContent = error ? describeError(error) : "";
  $("error").hidden = !error;
}

function card(label, value, sub, extra = "") {
  return el("div", { class: `card ${extra}` },
    el("div", { class: "label" }, label), el("div", { class: "value" }, value),
    sub ? el("div", { class: "sub" }, sub) : null);
}

function renderSummary(spend) {
  const share = spend.list_cost_usd ? (spend.savings_usd / spend.list_cost_usd) * 100 : 0;
  $("summary").replaceChildren(
    card("Spend", usd(spend.cost_usd), "at the prices paid"),
    card("At list price", usd(spend.list_cost_usd), "what the providers list"),
    card("Savings", usd(spend.savings_usd), `${share.toFixed(1)}% below list`, "savings"),
    card("Requests", count(spend.requests), `${count(spend.errors)} failed`),
    card("Tokens", count(spend.total_tokens),
      `${count(spend.prompt_tokens)} in · ${count(spend.completion_tokens)} out`),
    card("Avg latency", ms(spend.avg_latency_ms), `first token ${ms(spend.avg_ttft_ms)}`),
  );
}

/** What each lever saved in the period, and its share of all savings. */
function renderSavings(spend) {
  const total = SOURCES.reduce((sum, [source]) => sum + spend.savings_by_source[source], 0);
  table("savings-sources", [
    ["Source", ([, label]) => label],
    ["Saved", ([source]) => usd(spend.savings_by_source[source]), true],
    ["Share", ([source]) => `${total ? ((spend.savings_by_source[source] / total) * 100).toFixed(1) : "0.0"}%`, true],
  ], SOURCES);
}

/** A row's savings by source, the ones that saved anything. */
function savedBy(row) {
  const parts = SOURCES.filter(([source]) => row.savings_by_source[source])
    .map(([source, label]) => `${label} ${usd(row.savings_by_source[source])}`);
  return parts.join(" · ") || "–";
}

/** Keys at or past 80% of their monthly budget or token quota this month (UTC). */
function renderAlerts(keys, monthByKey) {
  const alerts = [];
  for (const key of keys.filter((k) => !k.revoked_at)) {
    const month = monthByKey.get(key.id) || { cost_usd: 0, total_tokens: 0 };
    const checks = [
      [key.monthly_budget_usd, month.cost_usd, usd, "budget"],
      [key.monthly_token_quota, month.total_tokens, count, "token quota"],
    ];
    for (const [limit, used, format, what] of checks) {
      if (!limit || used / limit < ALERT_SHARE) continue;
      const share = Math.round((used / limit) * 100);
      const action = key.budget_mode === "hard" || what === "token quota"
        ? "requests are refused at 100%" : "soft: alerts only";
      alerts.push(el("div", { class: `banner ${share >= 100 ? "error" : "warn"}`, "data-key-id": key.id },
        el("strong", {}, key.name), ` has used ${share}% of its monthly ${what}: `,
        `${format(used)} of ${format(limit)} (${action}).`));
    }
  }
  $("alerts").replaceChildren(...(alerts.length
    ? alerts : [el("p", { class: "muted" }, "No key is past 80% of its monthly budget or quota.")]));
}

function table(id, columns, rows) {
  const head = el("tr", {}, columns.map(([title, , numeric]) => el("th", { class: numeric ? "num" : null }, title)));
  const body = rows.length
    ? rows.map((row) => el("tr", {}, columns.map(([, value, numeric]) => el("td", { class: numeric ? "num" : null }, value(row)))))
    : [el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "Nothing in this period."))];
  $(id).replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

const TOTALS = [
  ["Requests", (r) => count(r.requests), true],
  ["Prompt tokens", (r) => count(r.prompt_tokens), true],
  ["Completion tokens", (r) => count(r.completion_tokens), true],
  ["Spend", (r) => usd(r.cost_usd), true],
  ["List price", (r) => usd(r.list_cost_usd), true],
  ["Savings", (r) => usd(r.savings_usd), true],
  ["Saved by", savedBy],
  ["Errors", (r) => count(r.errors), true],
  ["Avg latency", (r) => ms(r.avg_latency_ms), true],
  ["Avg first token", (r) => ms(r.avg_ttft_ms), true],
];

function requestStatus(row) {
  const left = row.client_disconnected && row.error_type !== "client_disconnected";
  const flags = [row.error_type, left ? "client left" : null, row.estimated ? "estimated" : null]
    .filter(Boolean).join(", ");
  const pill = el("span", { class: `pill ${row.status >= 400 ? "bad" : "ok"}` }, String(row.status));
  return flags ? [pill, ` ${flags}`] : pill;
}

function renderRequests(rows, keyName) {
  table("requests", [
    ["Time (UTC)", (r) => r.created_at.slice(0, 19).replace("T", " ")],
    ["Key", (r) => keyName(r.key_id)],
    ["Model", (r) => (r.model && r.model !== r.requested_model ? `${r.requested_model} → ${r.model}` : r.requested_model)],
    ["Provider", (r) => r.provider || "–"],
    ["Endpoint", (r) => `${r.endpoint}${r.stream ? " · stream" : ""}`],
    ["Status", requestStatus],
    ["Tokens in / out", (r) => `${count(r.prompt_tokens)} / ${count(r.completion_tokens)}`, true],
    ["Cost", (r) => usd(r.cost_usd), true],
    ["Saved", (r) => usd(r.list_cost_usd - r.cost_usd), true],
    ["Latency", (r) => ms(r.latency_ms), true],
    ["First token", (r) => ms(r.ttft_ms), true],
  ], rows);
}

let generation = 0;

async function load() {
  const current = ++generation;
  const start = rangeStart();
  const [keys, spend, byDay, byModel, byKey, month, requests] = await Promise.all([
    get("/admin/keys", { limit: 1000 }),
    get("/admin/spend", { start }),
    get("/admin/usage", { group_by: "day", start, limit: 1000 }),
    get("/admin/usage", { group_by: "model", start, limit: 20 }),
    get("/admin/usage", { group_by: "key", start, limit: 20 }),
    get("/admin/usage", { group_by: "key", start: monthStart(), limit: 1000 }),
    get("/admin/usage/requests", { start, limit: 50 }),
  ]);
  if (current !== generation) return; // a newer load is under way: it draws
  const names = new Map(keys.data.map((key) => [key.id, key.name]));
  const keyName = (id) => names.get(id) || id;
  const monthByKey = new Map(month.data.map((row) => [row.key, row]));
  renderSummary(spend);
  renderSavings(spend);
  renderAlerts(keys.data, monthByKey);
  drawCharts({ byDay: byDay.data, byModel: byModel.data, byKey: byKey.data, keyName });
  table("by-model", [["Model", (r) => r.model], ...TOTALS], byModel.data);
  table("by-key", [["Key", (r) => keyName(r.key)], ...TOTALS], byKey.data);
  panel.render(keys.data, monthByKey);
  renderRequests(requests.data, keyName);
  $("updated").textContent = `Updated ${new Date().toLocaleTimeString()}`;
}

/** Reload everything (the latest load wins); errors are shown in the banner. */
async function reload() {
  if (!adminKey.value) return;
  adminKey.save();
  try {
    await load();
    showError(null);
    $("key-status").textContent = "Connected";
  } catch (error) {
    showError(error);
    $("key-status").textContent = "";
  }
}

const panel = new KeysPanel({ adminKey, reload, report: showError });

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  reload();
});
$("refresh").addEventListener("click", reload);
$("range").addEventListener("change", reload);
reload();
