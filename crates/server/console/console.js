// The Missive console: one page, a hash per view. Every text from the server is put in
// with textContent, never parsed as HTML. Changes carry the session's CSRF token; the
// session cookie itself is HttpOnly and never seen here.
"use strict";

let session = null;
// Views rendered so far: lets a test (or anything else) wait for the next one.
let renders = 0;
// Routes started, and the latest one's render. A render lands only if no later route
// started, so a slow, stale one never replaces a newer page (nor wipes what the user typed
// into it); awaiting a stale route waits for the latest.
let routes = 0;
let latestRoute = null;

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
  const group = el("select", { id: "group" }, ["model", "workspace", "key"].map((g) => el("option", { value: g }, g)));
  const today = new Date().toISOString().slice(0, 10);
  const from = el("input", { id: "from", type: "date", value: today, max: today });
  const to = el("input", { id: "to", type: "date", value: today, max: today });
  const chart = el("div", { id: "chart" });
  const draw = async () => {
    // Whole UTC days, the buckets' own calendar: from the first day's start to the last's end.
    const start = Date.parse(`${from.value || today}T00:00:00Z`);
    const end = Date.parse(`${to.value || today}T00:00:00Z`) + 86400000;
    if (!(end > start)) { chart.replaceChildren(el("p", { class: "error" }, "The range ends before it starts.")); return; }
    const usage = await api("GET", `/console/api/usage?bucket=${bucket.value}&group=${group.value}&start_ms=${start}&end_ms=${end}`);
    chart.replaceChildren(barChart(usage.data));
  };
  bucket.addEventListener("change", draw);
  group.addEventListener("change", draw);
  from.addEventListener("change", draw);
  to.addEventListener("change", draw);
  const { data: spaces } = await api("GET", "/console/api/workspaces");
  const dollars = (usd) => `$${usd.toFixed(4)}`;
  page.append(el("h1", {}, "Overview"),
    el("div", { class: "inline" }, el("label", {}, "Bucket", bucket), el("label", {}, "By", group), el("label", {}, "From", from), el("label", {}, "To", to)),
    chart,
    el("h2", {}, "Spend this month"),
    table([
      ["Workspace", (w) => w.name], ["Spent", (w) => dollars(w.spend.month_to_date_usd)],
      ["Cap", (w) => w.spend.cap_usd === null ? "none" : dollars(w.spend.cap_usd)],
      ["Of cap", (w) => w.spend.cap_usd ? `${Math.round((100 * w.spend.month_to_date_usd) / w.spend.cap_usd)}%` : ""],
    ], spaces, "spend"));
  await draw();
}

const COLORS = ["#d97757", "#6a9bcc", "#788c5d", "#b0aea5", "#c46686", "#8e7cc3"];

function barChart(rows) {
  const buckets = [...new Set(rows.map((r) => r.bucket_start))].sort();
  const models = [...new Set(rows.map((r) => r.group))].sort();
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
      const row = rows.find((r) => r.bucket_start === b && r.group === m);
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
  const users = isAdmin() ? (await api("GET", "/console/api/users")).data : [];
  if (isAdmin()) {
    const name = el("input", { id: "workspace-name", required: true });
    page.append(form("create-workspace", [["New workspace", name]], "Create workspace", async () => {
      await api("POST", "/console/api/workspaces", { name: name.value });
      route();
    }));
  }
  if (isAdmin()) page.append(organizationUsers(users));
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
        value: w.limits[field] === null ? "" : w.limits[field], placeholder: field === "capture_content_days" ? "off" : "config",
      });
      const limits = {
        requests_per_minute: number("requests_per_minute"),
        input_tokens_per_minute: number("input_tokens_per_minute"),
        output_tokens_per_minute: number("output_tokens_per_minute"),
        spend_cap_usd: number("spend_cap_usd", "any"),
        capture_content_days: number("capture_content_days"),
      };
      section.append(form("set-limits", [
        ["Requests / min", limits.requests_per_minute], ["Input tokens / min", limits.input_tokens_per_minute],
        ["Output tokens / min", limits.output_tokens_per_minute], ["Spend cap, USD / month", limits.spend_cap_usd],
        ["Keep content (redacted), days", limits.capture_content_days],
      ], "Set limits", async () => {
        const body = {};
        for (const [field, input] of Object.entries(limits)) body[field] = input.value === "" ? null : Number(input.value);
        await api("POST", `/console/api/workspaces/${w.id}/limits`, body);
        await route();
      }));
      const model = el("input", { "data-testid": "kill-model", placeholder: "model id" });
      section.append(form("kill-model", [["Switch off one model", model]], "Switch off", async () => {
        if (!confirm(`Stop ${w.name}'s traffic to ${model.value}?`)) return;
        await api("POST", "/console/api/kill_switches", { workspace_id: w.id, model: model.value, on: true });
        await route();
      }));
      for (const killed of w.killed_models) {
        section.append(el("p", { class: "killed", "data-testid": `killed-${killed}` }, `${killed} is switched off `,
          el("button", { onclick: async () => {
            try { await api("POST", "/console/api/kill_switches", { workspace_id: w.id, model: killed, on: false }); await route(); } catch (err) { report(err); }
          } }, "Turn back on")));
      }
      const keyName = el("input", { "data-testid": "key-name", required: true });
      const keyDays = el("input", { "data-testid": "key-expires-days", type: "number", min: 0, max: 3650, placeholder: "never" });
      section.append(form("create-key", [["New key", keyName], ["Expires in days", keyDays]], "Create key", async () => {
        const body = { workspace_id: w.id, name: keyName.value };
        if (keyDays.value !== "" && Number(keyDays.value) > 0) body.expires_in_days = Number(keyDays.value);
        const created = await api("POST", "/console/api/keys", body);
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
      ["Expires", (k) => k.expires_at ? k.expires_at.slice(0, 10) : "never"],
      ["", (k) => isAdmin() && k.status === "active" ? el("span", {},
        el("button", { onclick: async () => {
          const name = prompt("New name", k.name);
          if (name) { try { await api("POST", `/console/api/keys/${k.id}`, { name }); route(); } catch (err) { report(err); } }
        } }, "Rename"), " ",
        el("button", { "data-testid": `expire-${k.name}`, onclick: async () => {
          const days = prompt("Expires in how many days? (0: never)", "30");
          if (days !== null) { try { await api("POST", `/console/api/keys/${k.id}`, { expires_in_days: Number(days) }); route(); } catch (err) { report(err); } }
        } }, "Set expiry"), " ",
        el("button", { "data-testid": `revoke-${k.name}`, onclick: async () => {
          if (!confirm(`Revoke ${k.name}? Clients using it stop working at once.`)) return;
          try { await api("POST", `/console/api/keys/${k.id}`, { status: "inactive" }); route(); } catch (err) { report(err); }
        } }, "Revoke")) : ""],
    ], mine, `keys-${w.name}`));
    section.append(await members(w, users));
    page.append(section);
  }
}

const WORKSPACE_ROLES = ["workspace_user", "workspace_developer", "workspace_admin", "workspace_billing"];

// A workspace's members; an admin adds them, changes their role and removes them.
async function members(w, users) {
  const { data } = await api("GET", `/console/api/workspaces/${w.id}/members`);
  const node = el("div", { "data-testid": `members-${w.name}` }, el("h3", {}, "Members"));
  const change = (body) => api("POST", `/console/api/workspaces/${w.id}/members`, body).then(route, report);
  node.append(table([
    ["Member", (m) => m.email || m.user_id],
    ["Role", (m) => isAdmin()
      ? el("select", { "data-testid": `role-${m.email}`, onchange: (event) => change({ user_id: m.user_id, workspace_role: event.target.value }) },
        WORKSPACE_ROLES.map((r) => el("option", { value: r, selected: r === m.workspace_role }, r)))
      : m.workspace_role],
    ["", (m) => isAdmin() ? el("button", { "data-testid": `remove-${m.email}`, onclick: async () => {
      if (!confirm(`Remove ${m.email || m.user_id} from ${w.name}?`)) return;
      try { await api("POST", `/console/api/workspaces/${w.id}/members/${m.user_id}/remove`); route(); } catch (err) { report(err); }
    } }, "Remove") : ""],
  ], data, "member-list"));
  if (isAdmin() && users.length) {
    const who = el("select", { "data-testid": "member-user" }, users.map((u) => el("option", { value: u.id }, u.email)));
    const role = el("select", { "data-testid": "member-role" }, WORKSPACE_ROLES.map((r) => el("option", { value: r }, r)));
    node.append(form("add-member", [["User", who], ["Role", role]], "Add member",
      () => change({ user_id: who.value, workspace_role: role.value })));
  }
  return node;
}

// The organization's users: who may sign in with single sign-on.
function organizationUsers(users) {
  const email = el("input", { "data-testid": "user-email", type: "email", required: true });
  const name = el("input", { "data-testid": "user-name" });
  const role = el("select", { "data-testid": "user-role" },
    ["user", "developer", "billing", "claude_code_user"].map((r) => el("option", { value: r }, r)));
  return el("section", { "data-testid": "users" }, el("h2", {}, "Users"),
    table([["Email", (u) => u.email], ["Name", (u) => u.name], ["Role", (u) => u.role]], users, "user-list"),
    form("add-user", [["Email", email], ["Name", name], ["Role", role]], "Add user", async () => {
      await api("POST", "/console/api/users", { email: email.value, name: name.value, role: role.value });
      await route();
    }));
}

async function requests(page) {
  const key = el("input", { id: "log-key", placeholder: "any key" });
  const model = el("input", { id: "log-model", placeholder: "any model" });
  const errors = el("input", { id: "log-errors", type: "checkbox" });
  const rows = el("div", {});
  const load = async () => {
    const query = new URLSearchParams({ limit: "200", api_key_id: key.value, model: model.value, errors_only: errors.checked });
    const { data } = await api("GET", `/console/api/requests?${query}`);
    rows.replaceChildren(table([
      ["Time", (r) => r.at.slice(0, 19).replace("T", " ")], ["Status", (r) => r.status],
      ["Latency ms", (r) => r.latency_ms], ["Request", (r) => `${r.method} ${r.path}`],
      ["Key", (r) => r.api_key_id], ["Model", (r) => r.model || ""], ["Upstream", (r) => r.upstream || ""],
      ["Input", (r) => r.input_tokens], ["Cache write", (r) => r.cache_creation_input_tokens],
      ["Cache read", (r) => r.cache_read_input_tokens], ["Output", (r) => r.output_tokens],
      ["Prompt", (r) => r.prompt_version || ""],
      ["", (r) => r.path.endsWith("/messages") ? el("button", { "data-testid": `content-${r.request_id}`, onclick: () => showContent(r).catch(report) }, "Content") : ""],
    ], data, "request-log"));
  };
  // A workspace that keeps content (set beside its limits) shows what was asked and answered.
  const content = el("pre", { "data-testid": "request-content" });
  const showContent = async (r) => {
    content.textContent = "";
    const kept = await api("GET", `/console/api/requests/${encodeURIComponent(r.request_id)}/content?workspace_id=${encodeURIComponent(r.workspace_id)}`);
    content.textContent = `Kept until ${kept.expires_at}\n\nRequest:\n${JSON.stringify(kept.request, null, 2)}\n\nResponse:\n${JSON.stringify(kept.response, null, 2)}`;
    content.scrollIntoView();
  };
  page.append(el("h1", {}, "Request log"),
    form("log-filter", [["Key id", key], ["Model", model], ["Errors only", errors]], "Filter", load),
    rows, el("h2", {}, "Content"), content);
  await load();
}

// The registry: versioned prompts or schemas, their labels and A/B splits.
function registryPage(kind) {
  const prompts = kind === "prompts";
  return async (page) => {
    page.append(el("h1", {}, prompts ? "Prompts" : "Schemas"));
    const choice = await workspaceChoice(`${kind}-workspace`);
    const list = el("div", {});
    const path = `/console/api/registry/${kind}`;
    const load = async () => {
      const { data } = await api("GET", `${path}?workspace_id=${encodeURIComponent(choice.value)}`);
      list.replaceChildren(...data.map((entry) => {
        const label = el("input", { "data-testid": "label-name", value: "production" });
        const version = el("input", { "data-testid": "label-version", type: "number", min: 1, value: entry.latest_version });
        const splitLabel = el("input", { "data-testid": "split-label", value: "production" });
        const split = el("input", { "data-testid": "split-weights", placeholder: "1:70, 2:30" });
        const move = (body) => api("POST", `${path}/${encodeURIComponent(entry.name)}/labels`, { workspace_id: choice.value, ...body });
        const labels = [
          ...Object.entries(entry.labels).map(([l, v]) => `${l} → ${v}`),
          ...Object.entries(entry.splits).map(([l, shares]) => `${l} → ${shares.map((x) => `${x.version} (${x.weight})`).join(" / ")}`),
        ];
        return el("section", { "data-testid": `${kind.slice(0, -1)}-${entry.name}` },
          el("h2", {}, entry.name),
          el("p", { "data-testid": "labels" }, labels.join(", ")),
          table([
            ["Version", (v) => v.version],
            [prompts ? "Text" : "Schema", (v) => prompts ? v.text : el("code", {}, JSON.stringify(v.schema))],
            ["Created", (v) => v.created_at.slice(0, 19).replace("T", " ")],
          ], entry.versions, `versions-${entry.name}`),
          form("move-label", [["Label", label], ["Version", version]], "Move label", async () => {
            await move({ label: label.value, version: Number(version.value) });
            await load();
          }),
          form("set-split", [["Label", splitLabel], ["Version:weight, …", split]], "Split", async () => {
            const shares = split.value.split(",").map((part) => part.trim()).filter(Boolean).map((part) => {
              const [v, w] = part.split(":").map(Number);
              return { version: v, weight: w };
            });
            await move({ label: splitLabel.value, split: shares });
            await load();
          }));
      }));
    };
    const name = el("input", { "data-testid": `${kind.slice(0, -1)}-name`, required: true });
    const text = el("textarea", { "data-testid": `${kind.slice(0, -1)}-${prompts ? "text" : "schema"}`, rows: 3, cols: 50, required: true });
    choice.addEventListener("change", () => load().catch(report));
    page.append(el("label", {}, "Workspace", choice),
      form(`create-${kind.slice(0, -1)}`, [["Name", name], [prompts ? "Text (a new version)" : "JSON Schema (a new version)", text]], "Save version", async () => {
        const body = prompts ? { text: text.value } : { schema: JSON.parse(text.value) };
        await api("POST", path, { workspace_id: choice.value, name: name.value, ...body });
        await load();
      }),
      el("p", {}, prompts
        ? "Use a prompt from any SDK with a system text block of exactly {{prompt:NAME}} or {{prompt:NAME@LABEL}}."
        : "Fetch a schema with GET /v1/missive/schemas/NAME?label=production, or use it in output_config.format or a tool's input_schema as {\"$ref\": \"missive:schemas/NAME@LABEL\"}."),
      list);
    await load();
  };
}

async function audit(page) {
  const { data } = await api("GET", "/console/api/audit?limit=200");
  page.append(el("h1", {}, "Audit log"), table([
    ["Time", (e) => e.at.slice(0, 19).replace("T", " ")], ["Actor", (e) => e.actor],
    ["Action", (e) => e.action], ["Target", (e) => e.target], ["Detail", (e) => JSON.stringify(e.detail)],
  ], data, "audit-log"));
}

// The workbench: a Messages request, streamed, with the raw request and events beside it.
async function workbench(page) {
  page.append(el("h1", {}, "Workbench"));
  const workspace = await workspaceChoice("wb-workspace");
  const { data: models } = await api("GET", "/console/api/models");
  const model = el("select", { id: "wb-model" }, models.map((m) => el("option", { value: m.id }, m.display_name || m.id)));
  const prices = Object.fromEntries(models.map((m) => [m.id, m.price]));
  const system = el("textarea", { id: "wb-system", rows: 2, cols: 80 });
  const message = el("textarea", { id: "wb-message", rows: 3, cols: 80 }, "Hello!");
  const tools = el("textarea", { id: "wb-tools", rows: 4, cols: 80, placeholder: "[] (a JSON list of tools)" });
  const toolChoice = el("select", { id: "wb-tool-choice" },
    ["auto", "any", "none"].map((c) => el("option", { value: c }, c)));
  const forcedTool = el("input", { id: "wb-forced-tool", placeholder: "or a tool name to force" });
  const schema = el("textarea", { id: "wb-schema", rows: 4, cols: 80, placeholder: "an output JSON Schema (optional)" });
  const temperature = el("input", { id: "wb-temperature", type: "number", min: 0, max: 1, step: 0.1, value: 1 });
  const maxTokens = el("input", { id: "wb-max-tokens", type: "number", min: 1, value: 256 });
  const thinking = el("input", { id: "wb-thinking", type: "number", min: 0, value: 0, title: "thinking budget tokens; 0: off" });
  const answer = el("div", { id: "wb-answer", "data-testid": "wb-answer" });
  const usage = el("p", { "data-testid": "wb-usage" });
  const rawRequest = el("pre", { "data-testid": "wb-raw-request" });
  const rawEvents = el("pre", { "data-testid": "wb-raw-events" });
  const code = el("pre", { "data-testid": "wb-code" });

  const request = () => {
    const body = { model: model.value, max_tokens: Number(maxTokens.value), stream: true,
      messages: [{ role: "user", content: message.value }], temperature: Number(temperature.value) };
    if (system.value) body.system = system.value;
    if (tools.value.trim()) body.tools = JSON.parse(tools.value);
    if (body.tools && body.tools.length) {
      body.tool_choice = forcedTool.value ? { type: "tool", name: forcedTool.value } : { type: toolChoice.value };
    }
    if (schema.value.trim()) body.output_config = { format: { type: "json_schema", schema: JSON.parse(schema.value) } };
    if (Number(thinking.value) > 0) body.thinking = { type: "enabled", budget_tokens: Number(thinking.value) };
    return body;
  };

  const run = async () => {
    const body = request();
    rawRequest.textContent = JSON.stringify(body, null, 2);
    answer.replaceChildren();
    rawEvents.textContent = "";
    usage.textContent = "";
    const response = await fetch(`/console/api/messages?workspace_id=${encodeURIComponent(workspace.value)}`, {
      method: "POST", credentials: "same-origin",
      headers: { "content-type": "application/json", "x-missive-csrf": session.csrf_token },
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const error = await response.json().catch(() => ({}));
      throw new Error(error.error ? error.error.message : response.statusText);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    const blocks = [];
    let buffer = "";
    let input = 0, output = 0, cacheRead = 0, cacheWrite = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const frame = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const line = frame.split("\n").find((l) => l.startsWith("data: "));
        if (!line) continue;
        const event = JSON.parse(line.slice(6));
        rawEvents.textContent += JSON.stringify(event) + "\n";
        if (event.type === "message_start") {
          const u = event.message.usage;
          input = u.input_tokens; cacheRead = u.cache_read_input_tokens || 0; cacheWrite = u.cache_creation_input_tokens || 0;
        } else if (event.type === "content_block_start") {
          const block = event.content_block;
          const node = el("div", { class: `block ${block.type}`, "data-testid": `wb-block-${block.type}` },
            block.type === "tool_use" ? `${block.name}: ` : "");
          const body = el("span", { "data-testid": "wb-block-body" });
          node.append(body);
          blocks[event.index] = body;
          answer.append(node);
        } else if (event.type === "content_block_delta") {
          const d = event.delta;
          blocks[event.index].textContent += d.text || d.partial_json || d.thinking || "";
        } else if (event.type === "message_delta") {
          output = event.usage.output_tokens;
          const price = prices[body.model] || { input: 0, output: 0, cache_write_5m: 0, cache_read: 0 };
          const usd = (input * price.input + cacheWrite * price.cache_write_5m + cacheRead * price.cache_read + output * price.output) / 1e6;
          usage.textContent = `stop_reason ${event.delta.stop_reason}; input ${input}, cache write ${cacheWrite}, ` +
            `cache read ${cacheRead}, output ${output} tokens; cost $${usd.toFixed(6)}`;
        } else if (event.type === "error") {
          throw new Error(event.error.message);
        }
      }
    }
  };

  const getCode = () => {
    const body = request();
    delete body.stream;
    // SDK 2.x takes sampling parameters in the body only (`extra_body`), not as arguments.
    const { temperature, ...named } = body;
    const pythonLiteral = (value) => JSON.stringify(value, null, 4)
      .replace(/\btrue\b/g, "True").replace(/\bfalse\b/g, "False").replace(/\bnull\b/g, "None");
    const python = `import anthropic\n\nclient = anthropic.Anthropic(base_url="${location.origin}")\n` +
      `with client.messages.stream(\n    **${pythonLiteral(named)},\n    extra_body={"temperature": ${temperature}},\n) as stream:\n` +
      `    for text in stream.text_stream:\n        print(text, end="", flush=True)\n`;
    const typescript = `import Anthropic from "@anthropic-ai/sdk";\n\nconst client = new Anthropic({ baseURL: "${location.origin}" });\n` +
      `const stream = client.messages.stream(${JSON.stringify(body, null, 2)});\n` +
      `stream.on("text", (text) => process.stdout.write(text));\nawait stream.finalMessage();\n`;
    const shellQuoted = JSON.stringify({ ...body, stream: true }).replace(/'/g, "'\\''");
    const curl = `curl ${location.origin}/v1/messages \\\n  -H "x-api-key: $ANTHROPIC_API_KEY" \\\n` +
      `  -H "anthropic-version: 2023-06-01" \\\n  -H "content-type: application/json" \\\n  -d '${shellQuoted}'\n`;
    code.textContent = `# Python\n${python}\n// TypeScript\n${typescript}\n# curl\n${curl}`;
  };

  page.append(
    el("div", { class: "inline" }, el("label", {}, "Workspace", workspace), el("label", {}, "Model", model),
      el("label", {}, "Temperature", temperature), el("label", {}, "Max tokens", maxTokens),
      el("label", {}, "Thinking budget", thinking)),
    el("label", {}, "System", system), el("label", {}, "User message", message),
    el("label", {}, "Tools (JSON)", tools), el("div", { class: "inline" }, el("label", {}, "Tool choice", toolChoice), el("label", {}, "Force tool", forcedTool)),
    el("label", {}, "Output schema (JSON)", schema),
    el("div", { class: "inline" },
      el("button", { id: "wb-run", onclick: () => run().catch(report) }, "Run"),
      el("button", { id: "wb-get-code", onclick: () => { try { getCode(); } catch (err) { report(err); } } }, "Get code")),
    el("h2", {}, "Answer"), answer, usage,
    el("h2", {}, "Raw request"), rawRequest, el("h2", {}, "Raw events"), rawEvents, el("h2", {}, "Code"), code);
}

// Batches (progress, cancel, results) and files (list, delete), per workspace.
async function batches(page) {
  page.append(el("h1", {}, "Batches & files"));
  const choice = await workspaceChoice("batch-workspace");
  const lists = el("div", {});
  const query = () => `workspace_id=${encodeURIComponent(choice.value)}`;
  const load = async () => {
    const { data: batches } = await api("GET", `/console/api/batches?${query()}`);
    const { data: files } = await api("GET", `/console/api/files?${query()}`);
    const counts = (b) => Object.entries(b.request_counts).filter(([, n]) => n > 0).map(([k, n]) => `${n} ${k}`).join(", ");
    lists.replaceChildren(
      el("h2", {}, "Batches"),
      table([
        ["Batch", (b) => b.id], ["Status", (b) => b.processing_status], ["Requests", counts],
        ["Created", (b) => b.created_at.slice(0, 19).replace("T", " ")],
        ["", (b) => b.processing_status === "ended"
          ? el("button", { "data-testid": `results-${b.id}`, onclick: () => download(b).catch(report) }, "Download results")
          : b.processing_status === "in_progress"
            ? el("button", { "data-testid": `cancel-${b.id}`, onclick: async () => {
              if (!confirm(`Cancel ${b.id}? Requests not yet run are canceled.`)) return;
              try { await api("POST", `/console/api/batches/${b.id}/cancel?${query()}`); await load(); } catch (err) { report(err); }
            } }, "Cancel") : ""],
      ], batches, "batches"),
      el("h2", {}, "Files"),
      table([
        ["File", (f) => f.id], ["Name", (f) => f.filename], ["Type", (f) => f.mime_type], ["Bytes", (f) => f.size_bytes],
        ["", (f) => el("button", { "data-testid": `delete-${f.id}`, onclick: async () => {
          if (!confirm(`Delete ${f.filename}?`)) return;
          try { await api("POST", `/console/api/files/${f.id}/delete?${query()}`); await load(); } catch (err) { report(err); }
        } }, "Delete")],
      ], files, "files"));
  };
  const download = async (b) => {
    const response = await fetch(`/console/api/batches/${b.id}/results?${query()}`, { credentials: "same-origin" });
    if (!response.ok) throw new Error(`results: ${response.status}`);
    const link = el("a", { href: URL.createObjectURL(await response.blob()), download: `${b.id}_results.jsonl` });
    document.body.append(link);
    link.click();
    link.remove();
  };
  choice.addEventListener("change", () => load().catch(report));
  page.append(el("label", {}, "Workspace", choice),
    el("button", { id: "batches-refresh", onclick: () => load().catch(report) }, "Refresh"), lists);
  await load();
}

const PAGES = { overview, workspaces, requests, prompts: registryPage("prompts"), schemas: registryPage("schemas"), workbench, batches, audit };

function route() {
  latestRoute = render(++routes);
  return latestRoute;
}

async function render(started) {
  if (!session) return;
  const name = (location.hash || "#overview").slice(1);
  const view = PAGES[name] || overview;
  for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === `#${name}`);
  const page = el("section", { id: "page", "data-page": name });
  try { await view(page); } catch (err) { page.append(el("p", { class: "error", role: "alert" }, err.message)); }
  if (started !== routes) return latestRoute;
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
  const who = document.getElementById("who");
  who.textContent = isAdmin() ? "Admin" : `Workspace ${info.workspace_name}`;
  if (info.workspaces && info.workspaces.length > 1) {
    const choice = el("select", { id: "session-workspace", onchange: async () => {
      try { signedIn(await api("POST", "/console/api/session/workspace", { workspace_id: choice.value })); } catch (err) { report(err); }
    } }, info.workspaces.map((w) => el("option", { value: w.id, selected: w.id === info.workspace_id }, w.name)));
    who.append(" ", choice);
  }
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
  const options = await fetch("/console/sign-in-options").then((r) => r.json()).catch(() => ({}));
  document.getElementById("sso").hidden = !options.oidc;
  const failed = new URLSearchParams(location.search).get("sign_in_error");
  const response = await fetch("/console/api/session", { credentials: "same-origin" });
  if (response.ok) signedIn(await response.json()); else showSignIn(failed || "");
});
