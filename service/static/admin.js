// The models page: what every worker holds and serves, the shadow's comparison, and the changes.
// Plain JavaScript over the admin API; the admin token lives in this page's memory only (token.js).
"use strict";

const POLL_MS = 2000;
const $ = (id) => document.getElementById(id);
const state = { token: tokenFromAddress(), busy: false };

function percent(value, digits = 2) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)} %`;
}

function showLogin(text) {
  state.token = null;
  for (const id of ["models", "shadow", "actions"]) { $(id).hidden = true; }
  $("login").hidden = false;
  say(text || "", Boolean(text));
  $("token").focus();
}

async function api(method, path, body) {
  const options = { method, headers: { Authorization: `Bearer ${state.token}` } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  if (response.status === 401) {
    showLogin("That token is not an admin's token.");
    return null;
  }
  let answer = {};
  try { answer = await response.json(); } catch { answer = { detail: response.statusText }; }
  return { status: response.status, answer };
}

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) { td.className = className; }
  row.appendChild(td);
}

function showModels(answer) {
  const body = $("held");
  body.replaceChildren();
  for (const role of ["live", "previous", "shadow"]) {
    const model = answer.models[role];
    const row = document.createElement("tr");
    const th = document.createElement("th");
    th.scope = "row";
    th.textContent = role;
    row.appendChild(th);
    if (model === null) {
      cell(row, "–");
      for (let i = 0; i < 4; i++) { cell(row, ""); }
    } else {
      cell(row, model.model_version);
      cell(row, `${model.path} (sha256 ${model.sha256.slice(0, 12)}…)`, "path");
      cell(row, `${model.threshold.toPrecision(4)} nats (drawings ${model.drawn_threshold.toPrecision(4)}), ` +
                `N = ${model.samples}, ${model.precision}`);
      cell(row, model.calibration ? model.calibration.source : "threshold set by BNN_THRESHOLD");
      cell(row, new Date(model.loaded_at * 1000).toLocaleString());
    }
    body.appendChild(row);
  }
  $("generation").textContent = `(generation ${answer.generation})`;
  const workers = answer.workers.map((w) => `worker ${w.pid}: ${w.live} (generation ${w.generation})`);
  $("workers").textContent = `${answer.workers.length} worker(s) serving: ${workers.join("; ")}`;
}

function wrongOf(error) {
  if (!error.audited) { return "none accepted"; }
  return `${error.wrong} of ${error.audited} accepted wrong (${percent(error.ratio)}; 95 % ` +
    `${percent(error.lower)} to ${percent(error.upper)})`;
}

function showOnAudits(found) {
  const line = $("on-audits");
  line.hidden = !found;
  if (!found) { return; }
  line.textContent = found.labelled_audits === 0
    ? "No labelled audit the shadow answered yet: its accepted error appears as reviewers label audits."
    : `On ${found.labelled_audits} labelled audits both answered: live ${wrongOf(found.live)}; ` +
      `shadow ${wrongOf(found.shadow)}.`;
}

function showShadow(answer) {
  showOnAudits(answer.models.shadow !== null ? answer.shadow_on_audits : null);
  const shadow = answer.shadow;
  const held = answer.models.shadow !== null;
  $("shadow-none").hidden = held;
  $("shadow-none").textContent = "No shadow is loaded.";
  $("shadow-stats").hidden = !held;
  $("reasons").replaceChildren();
  if (!held) { return; }
  if (!shadow || !shadow.compared) {
    $("shadow-none").hidden = false;
    $("shadow-none").textContent = `Shadow ${answer.models.shadow.model_version}: no image compared yet ` +
      `(${percent(answer.shadow_fraction, 0)} of answers are drawn).`;
    $("shadow-stats").hidden = true;
    return;
  }
  $("compared").textContent = `${shadow.compared} (${percent(answer.shadow_fraction, 0)} drawn)`;
  $("class-agreement").textContent = percent(shadow.class_agreement);
  $("refer-agreement").textContent = percent(shadow.refer_agreement);
  $("live-referred").textContent = percent(shadow.live_referred);
  $("shadow-referred").textContent = percent(shadow.shadow_referred);
  $("dropped").textContent = String(shadow.dropped);
  const grid = $("reasons");
  for (const text of ["", "accepted", "uncertain", "unfamiliar"]) {
    const head = document.createElement("strong");
    head.textContent = text;
    grid.appendChild(head);
  }
  for (const role of ["live", "shadow"]) {
    const name = document.createElement("span");
    name.textContent = role;
    grid.appendChild(name);
    for (const reason of ["accepted", "uncertain", "unfamiliar"]) {
      const share = shadow.reasons[role][reason] / shadow.compared;
      const box = document.createElement("span");
      box.className = "cell";
      const bar = document.createElement("span");
      bar.className = "bar";
      bar.style.width = `${Math.max(2, 80 * share)}px`;
      const label = document.createElement("span");
      label.textContent = percent(share, 1);
      box.append(bar, label);
      grid.appendChild(box);
    }
  }
}

async function refresh() {
  if (!state.token) { return; }
  const got = await api("GET", "/admin/models");
  if (got === null) { return; }
  if (got.status !== 200) { say(got.answer.detail || `HTTP ${got.status}`, true); return; }
  $("login").hidden = true;
  for (const id of ["models", "shadow", "actions"]) { $(id).hidden = false; }
  showModels(got.answer);
  showShadow(got.answer);
}

async function change(method, path, body, doing) {
  if (state.busy) { return; }
  state.busy = true;
  $("result").textContent = `${doing}: every worker loads and verifies it…`;
  for (const button of document.querySelectorAll("#actions button")) { button.disabled = true; }
  try {
    const got = await api(method, path, body);
    if (got === null) { return; }
    if (got.status === 200) {
      $("result").textContent = `Done: generation ${got.answer.generation}, live ${got.answer.live} on ` +
        `${got.answer.workers.length} worker(s) after ${got.answer.elapsed_s.toFixed(2)} s.`;
      say("");
    } else {
      $("result").textContent = "";
      say(got.answer.detail || `HTTP ${got.status}`, true);
    }
    await refresh();
  } finally {
    state.busy = false;
    for (const button of document.querySelectorAll("#actions button")) { button.disabled = false; }
  }
}

function pathOrWarn() {
  const path = $("path").value.trim();
  if (!path) { say("Give the checkpoint's path on the server first.", true); $("path").focus(); }
  return path;
}

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value;
  $("token").value = "";
  say("");
  refresh();
});
$("candidate-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const path = pathOrWarn();
  if (path) { change("POST", "/admin/models/shadow", { path }, "Loading the shadow"); }
});
$("promote-path").addEventListener("click", () => {
  const path = pathOrWarn();
  if (path) { change("POST", "/admin/models/promote", { path }, "Promoting"); }
});
$("promote-shadow").addEventListener("click", () => change("POST", "/admin/models/promote", {}, "Promoting the shadow"));
$("rollback").addEventListener("click", () => change("POST", "/admin/models/rollback", undefined, "Rolling back"));
$("drop-shadow").addEventListener("click", () => change("DELETE", "/admin/models/shadow", undefined, "Dropping the shadow"));

if (state.token) { refresh(); } else { showLogin(""); }
setInterval(() => { if (!state.busy && !document.hidden) { refresh(); } }, POLL_MS);
