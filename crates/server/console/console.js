// The Missive console: one page, a hash per view. Every text from the server is put in
// with textContent, never parsed as HTML. Changes carry the session's CSRF token; the
// session cookie itself is HttpOnly and never seen here.
"use strict";

let session = null;
// Views rendered so far: lets a test (or anything else) wait for the next one.
let renders = 0;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function api(method, path, body) {
  const headers = {};
  if (body !== undefined) headers["content-type"] = "application/json";
  if (method !== "GET" && session) headers["x-missive-csrf"] = session.csrf_token;
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (response.status === 204) return null;
  const data = await response.json().catch(() => ({}));
  if (response.status === 401) { showSignIn(data.error ? data.error.message : ""); throw new Error("signed out"); }
  if (!response.ok) throw new Error(data.error ? data.error.message : response.statusText);
  return data;
}

function table(columns, rows, testid) {
  return el("table", { "data-testid": testid },
    el("thead", {}, el("tr", {}, columns.map(([title]) => el("th", {}, title)))),
    el("tbody", {}, rows.map((row) => el("tr", {}, columns.map(([, cell]) => el("td", {}, cell(row)))))));
}

function form(testid, fields, submit, onsubmit) {
  const node = el("form", { class: "inline", "data-testid": testid },
    fields.map(([label, input]) => el("label", {}, label, input)),
    el("button", { type: "submit" }, submit));
  node.addEventListener("submit", async (event) => {
    event.preventDefault();
    try { await onsubmit(); } catch (err) { report(err); }
  });
  return node;
}

function report(err) {
  const page = document.getElementById("page");
  page.prepend(el("p", { class: "error", role: "alert" }, err.message));
}

function isAdmin() { return session && session.kind === "admin"; }

async function workspaceChoice(id) {
  const { data } = await api("GET", "/console/api/workspaces");
  return el("select", { id }, data.map((w) => el("option", { value: w.id }, w.name)));
}

// Overview: billed tokens over time by model.
async function overview(page) {
  const bucket = el("select", { id: "bucket" }, el("option", { value: "1h" }, "1 hour"), el("option", { value: "1d" }, "1 day"));
  const days = el("input", { id: "days", type: "number", min: 1, max: 90, value: 1 });
  const chart = el("div", { id: "chart" });
  const draw = async () => {
    const end = Date.now() + 1;
    const start = end - Number(days.value || 1) * 86400000;
    const usage = await api("GET", `/console/api/usage?bucket=${bucket.value}&start_ms=${start}&end_ms=${end}`);
    chart.replaceChildren(barChart(usage.data));
  };
  bucket.addEventListener("change", draw);
  days.addEventListener("change", draw);
  page.append(el("h1", {}, "Overview"),
    el("div", { class: "inline" }, el("label", {}, "Bucket", bucket), el("label", {}, "Days", days)),
    chart);
  await draw();
}

const COLORS = ["#d97757", "#6a9bcc", "#788c5d", "#b0aea5", "#c46686", "#8e7cc3"];

function barChart(rows) {
  const buckets = [...new Set(rows.map((r) => r.bucket_start))].sort();
  const models = [...new Set(rows.map((r) => r.model))].sort();
  const total = (r) => r.input_tokens + r.cache_read_input_tokens + r.output_tokens;
  const height = 160, width = Math.max(300, buckets.length * 28);
  const peak = Math.max(1, ...buckets.map((b) => rows.filter((r) => r.bucket_start === b).reduce((s, r) => s + total(r), 0)));
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("width", width); svg.setAttribute("height", height + 20);
  svg.setAttribute("data-testid", "usage-chart");
  buckets.forEach((b, i) => {
    let y = height;
    models.forEach((m, j) => {
      const row = rows.find((r) => r.bucket_start === b && r.model === m);
      if (!row) return;
      const h = Math.max(1, (total(row) / peak) * (height - 10));
      y -= h;
      const rect = document.createElementNS(ns, "rect");
      rect.setAttribute("x", i * 28 + 4); rect.setAttribute("y", y);
      rect.setAttribute("width", 20); rect.setAttribute("height", h);
      rect.setAttribute("fill", COLORS[j % COLORS.length]);
      rect.setAttribute("data-tokens", total(row));
      const title = document.createElementNS(ns, "title");
      title.textContent = `${b} ${m}: ${total(row)} tokens, $${row.cost_usd.toFixed(6)}`;
      rect.append(title);
      svg.append(rect);
    });
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", i * 28 + 4); label.setAttribute("y", height + 14);
    label.textContent = b.slice(11, 13) || b.slice(5, 10);
    svg.append(label);
  });
  const tokens = rows.reduce((s, r) => s + total(r), 0);
  const cost = rows.reduce((s, r) => s + r.cost_usd, 0);
  return el("div", {},
    el("p", { "data-testid": "usage-total" }, `${tokens} tokens, $${cost.toFixed(4)} in this range`),
    svg,
    el("div", { class: "legend" }, models.map((m, j) => el("span", {}, swatch(COLORS[j % COLORS.length]), m))));
}

// Set through the CSSOM: the page's policy allows no inline style attributes.
function swatch(color) {
  const node = el("i", {});
  node.style.background = color;
  return node;
}

// Workspaces, their keys and kill switches.
async function workspaces(page) {
  page.append(el("h1", {}, "Workspaces & keys"));
  const { data } = await api("GET", "/console/api/workspaces");
  const keys = (await api("GET", "/console/api/keys")).data;
  if (isAdmin()) {
    const name = el("input", { id: "workspace-name", required: true });
    page.append(form("create-workspace", [["New workspace", name]], "Create workspace", async () => {
      await api("POST", "/console/api/workspaces", { name: name.value });
      route();
    }));
  }
  for (const w of data) {
    const section = el("section", { "data-testid": `workspace-${w.name}` },
      el("h2", {}, w.name, " ", w.killed ? el("span", { class: "killed" }, "(switched off)") : ""));
    if (isAdmin()) {
      section.append(el("button", {
        "data-testid": "kill-switch",
        onclick: async () => {
          const on = !w.killed;
          if (!confirm(on ? `Stop all traffic of ${w.name}?` : `Let ${w.name}'s traffic through again?`)) return;
          try { await api("POST", "/console/api/kill_switches", { workspace_id: w.id, on }); route(); } catch (err) { report(err); }
        },
      }, w.killed ? "Turn traffic back on" : "Kill switch: stop traffic"));
      const number = (field, step) => el("input", {
        "data-testid": `limit-${field}`, type: "number", min: step === "any" ? 0 : 1, step: step || 1,
        value: w.limits[field] === null ? "" : w.limits[field], placeholder: "config",
      });
      const limits = {
        requests_per_minute: number("requests_per_minute"),
        input_tokens_per_minute: number("input_tokens_per_minute"),
        output_tokens_per_minute: number("output_tokens_per_minute"),
        spend_cap_usd: number("spend_cap_usd", "any"),
      };
      section.append(form("set-limits", [
        ["Requests / min", limits.requests_per_minute], ["Input tokens / min", limits.input_tokens_per_minute],
        ["Output tokens / min", limits.output_tokens_per_minute], ["Spend cap, USD / month", limits.spend_cap_usd],
      ], "Set limits", async () => {
        const body = {};
        for (const [field, input] of Object.entries(limits)) body[field] = input.value === "" ? null : Number(input.value);
        await api("POST", `/console/api/workspaces/${w.id}/limits`, body);
        await route();
      }));
      const keyName = el("input", { "data-testid": "key-name", required: true });
      section.append(form("create-key", [["New key", keyName]], "Create key", async () => {
        const created = await api("POST", "/console/api/keys", { workspace_id: w.id, name: keyName.value });
        await route();
        document.getElementById("page").prepend(el("div", {},
          el("p", {}, `Key ${created.name} created. Copy it now: it is shown once.`),
          el("code", { class: "secret", "data-testid": "new-secret" }, created.secret)));
      }));
    }
    const mine = keys.filter((k) => k.workspace_id === w.id);
    section.append(table([
      ["Name", (k) => k.name], ["Key", (k) => k.hint], ["Status", (k) => k.status],
      ["Created", (k) => k.created_at.slice(0, 19).replace("T", " ")],
      ["", (k) => isAdmin() && k.status === "active" ? el("span", {},
        el("button", { onclick: async () => {
          const name = prompt("New name", k.name);
          if (name) { try { await api("POST", `/console/api/keys/${k.id}`, { name }); route(); } catch (err) { report(err); } }
        } }, "Rename"), " ",
        el("button", { "data-testid": `revoke-${k.name}`, onclick: async () => {
          if (!confirm(`Revoke ${k.name}? Clients using it stop working at once.`)) return;
          try { await api("POST", `/console/api/keys/${k.id}`, { status: "inactive" }); route(); } catch (err) { report(err); }
        } }, "Revoke")) : ""],
    ], mine, `keys-${w.name}`));
    page.append(section);
  }
}

async function requests(page) {
  const { data } = await api("GET", "/console/api/requests?limit=200");
  page.append(el("h1", {}, "Request log"), table([
    ["Time", (r) => r.at.slice(0, 19).replace("T", " ")], ["Endpoint", (r) => r.endpoint],
    ["Key", (r) => r.api_key_id], ["Model", (r) => r.model],
    ["Input", (r) => r.input_tokens], ["Cache write", (r) => r.cache_creation_input_tokens],
    ["Cache read", (r) => r.cache_read_input_tokens], ["Output", (r) => r.output_tokens],
    ["Prompt", (r) => r.prompt_version || ""], ["Schema", (r) => r.schema_version || ""],
  ], data, "request-log"));
}

async function prompts(page) {
  page.append(el("h1", {}, "Prompts"));
  const choice = await workspaceChoice("prompt-workspace");
  const list = el("div", {});
  const load = async () => {
    const { data } = await api("GET", `/console/api/prompts?workspace_id=${encodeURIComponent(choice.value)}`);
    list.replaceChildren(...data.map((p) => {
      const label = el("input", { "data-testid": "label-name", value: "production" });
      const version = el("input", { "data-testid": "label-version", type: "number", min: 1, value: p.versions.length });
      return el("section", { "data-testid": `prompt-${p.name}` },
        el("h2", {}, p.name),
        el("p", { "data-testid": "labels" }, Object.entries(p.labels).map(([l, v]) => `${l} → ${v}`).join(", ")),
        table([["Version", (v) => v.version], ["Text", (v) => v.text], ["Created", (v) => v.created_at.slice(0, 19).replace("T", " ")]], p.versions, `versions-${p.name}`),
        form("move-label", [["Label", label], ["Version", version]], "Move label", async () => {
          await api("POST", `/console/api/prompts/${encodeURIComponent(p.name)}/labels`,
            { workspace_id: choice.value, label: label.value, version: Number(version.value) });
          await load();
        }));
    }));
  };
  const name = el("input", { "data-testid": "prompt-name", required: true });
  const text = el("textarea", { "data-testid": "prompt-text", rows: 3, cols: 50, required: true });
  choice.addEventListener("change", load);
  page.append(el("label", {}, "Workspace", choice),
    form("create-prompt", [["Name", name], ["Text (a new version)", text]], "Save version", async () => {
      await api("POST", "/console/api/prompts", { workspace_id: choice.value, name: name.value, text: text.value });
      await load();
    }),
    el("p", {}, "Use a prompt from any SDK with a system text block of exactly {{prompt:NAME}} or {{prompt:NAME@LABEL}}."),
    list);
  await load();
}

async function audit(page) {
  const { data } = await api("GET", "/console/api/audit?limit=200");
  page.append(el("h1", {}, "Audit log"), table([
    ["Time", (e) => e.at.slice(0, 19).replace("T", " ")], ["Actor", (e) => e.actor],
    ["Action", (e) => e.action], ["Target", (e) => e.target], ["Detail", (e) => JSON.stringify(e.detail)],
  ], data, "audit-log"));
}

const PAGES = { overview, workspaces, requests, prompts, audit };

async function route() {
  if (!session) return;
  const name = (location.hash || "#overview").slice(1);
  const view = PAGES[name] || overview;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#${name}`);
  const page = el("section", { id: "page", "data-page": name });
  try { await view(page); } catch (err) { page.append(el("p", { class: "error", role: "alert" }, err.message)); }
  document.getElementById("page").replaceWith(page);
  renders += 1;
}

function showSignIn(message) {
  session = null;
  document.getElementById("nav").hidden = true;
  document.getElementById("sign-out").hidden = true;
  document.getElementById("who").textContent = "";
  document.getElementById("page").replaceChildren();
  document.getElementById("sign-in").hidden = false;
  document.getElementById("sign-in-error").textContent = message || "";
}

function signedIn(info) {
  session = info;
  document.getElementById("sign-in").hidden = true;
  document.getElementById("nav").hidden = false;
  document.getElementById("sign-out").hidden = false;
  for (const a of document.querySelectorAll("nav a[data-admin]")) a.hidden = !isAdmin();
  document.getElementById("who").textContent = isAdmin() ? "Admin" : `Workspace ${info.workspace_name}`;
  route();
}

document.addEventListener("DOMContentLoaded", async () => {
  const key = document.getElementById("key");
  document.getElementById("sign-in").addEventListener("submit", async (event) => {
    event.preventDefault();
    const response = await fetch("/console/session", {
      method: "POST", headers: { "content-type": "application/json" },
      body: JSON.stringify({ key: key.value }), credentials: "same-origin",
    });
    key.value = "";
    const data = await response.json().catch(() => ({}));
    if (!response.ok) { showSignIn(data.error ? data.error.message : "Sign-in failed"); return; }
    signedIn(data);
  });
  document.getElementById("sign-out").addEventListener("click", async () => {
    await api("POST", "/console/api/session/end").catch(() => {});
    showSignIn("");
  });
  window.addEventListener("hashchange", route);
  const response = await fetch("/console/api/session", { credentials: "same-origin" });
  if (response.ok) signedIn(await response.json()); else showSignIn("");
});
