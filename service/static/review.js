// The review page: claim the next item, show it, take a label by key or click, show progress.
// Plain JavaScript over the review API; the reviewer token lives in this page's memory only (token.js).
"use strict";

const ITEM_KEY = "bnn-review-item";  // the item on screen: a reload shows it again while the claim holds
const POLL_MS = 4000;
const $ = (id) => document.getElementById(id);
const state = { token: tokenFromAddress(), item: null, busy: false, urls: [], poll: null };

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const headers = Object.assign({ Authorization: `Bearer ${state.token}` }, options.headers || {});
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    throw new Unauthorized("That token is not a reviewer's token.");
  }
  return response;
}

async function detail(response) {
  try { return (await response.json()).detail || response.statusText; } catch { return response.statusText; }
}

function showLogin(text) {
  state.token = null;
  $("item").hidden = true;
  $("empty").hidden = true;
  $("login").hidden = false;
  say(text || "", Boolean(text));
  $("token").focus();
}

function percent(value, digits = 1) {
  return value === null || value === undefined ? "–" : `${(100 * value).toFixed(digits)} %`;
}

async function refreshStats() {
  const response = await api("/review/stats");
  if (!response.ok) { return; }
  const stats = await response.json();
  const waiting = stats.waiting.referred + stats.waiting.audit;
  $("waiting").textContent = `${waiting} (${stats.waiting.referred} referred, ${stats.waiting.audit} audits)`;
  const mine = stats.done_today[stats.reviewer] || 0;
  const all = Object.values(stats.done_today).reduce((a, b) => a + b, 0);
  $("done-today").textContent = `${mine} by you, ${all} in all`;
  $("agreement").textContent = percent(stats.agreement);
  // each channel is held to its own promise: files, and drawings on the page's pad
  $("accepted-error").textContent = acceptedError(stats.accepted_error);
  $("drawn-accepted-error").textContent = acceptedError(stats.drawn_accepted_error);
}

function acceptedError(error) {
  return error.audited === 0 ? "no audit labelled yet"
    : `${error.wrong} of ${error.audited} (${percent(error.lower, 2)} – ${percent(error.upper, 2)})`
      + (error.target !== null ? `, promise ≤ ${percent(error.target, 2)}` : "");
}

function releaseImages() {
  state.urls.forEach((url) => URL.revokeObjectURL(url));
  state.urls = [];
}

async function imageUrl(path) {
  const response = await api(path);
  if (!response.ok) { throw new Error(await detail(response)); }
  const url = URL.createObjectURL(await response.blob());
  state.urls.push(url);
  return url;
}

function drawBars(probabilities) {
  const list = $("bars");
  list.replaceChildren(...probabilities.map((p, digit) => {
    const row = document.createElement("li");
    row.innerHTML = `<span class="label">${digit}</span><span class="track"><span class="fill"></span></span>`
      + `<span>${(100 * p).toFixed(1)} %</span>`;
    row.querySelector(".fill").style.width = `${Math.max(0, Math.min(100, 100 * p))}%`;
    return row;
  }));
}

async function show(item) {
  state.item = item;
  releaseImages();
  const answer = item.answer;
  const why = $("why");
  why.textContent = item.reason === "audit" ? "audit: the model accepted this"
    : (item.refer_reason === "unfamiliar" ? "referred: probably not a digit" : "referred: unsure which digit");
  why.className = `badge ${item.reason === "audit" ? "audit" : item.refer_reason || ""}`;
  $("held").textContent = `yours until ${new Date(item.lease_expires).toLocaleTimeString()}`;
  $("guess").textContent = answer.class;
  $("doubt").textContent = `entropy ${answer.entropy.toFixed(3)} nats (threshold ${answer.threshold.toFixed(3)})`;
  $("candidates").textContent = answer.candidates.length > 1 ? `worth a look: ${answer.candidates.join(", ")}` : "";
  drawBars(answer.probabilities);
  $("input-img").src = await imageUrl(item.links.input);
  if (item.links.file) {
    $("file-img").src = await imageUrl(item.links.file);
    $("file-note").textContent = "";
  } else {
    $("file-img").removeAttribute("src");
    $("file-note").textContent = "(sent as a 28 × 28 array: no file)";
  }
  $("item").dataset.item = item.id;
  sessionStorage.setItem(ITEM_KEY, item.id);
  $("item").hidden = false;
  $("empty").hidden = true;
  document.querySelectorAll("#item button").forEach((button) => button.classList.remove("chosen"));
}

async function next() {
  clearTimeout(state.poll);
  const response = await api("/review/items/next");
  if (response.status === 204) {
    state.item = null;
    releaseImages();
    $("item").hidden = true;
    $("empty").hidden = false;
    state.poll = setTimeout(() => run(next), POLL_MS);
    return;
  }
  if (!response.ok) {
    say(await detail(response), true);
    state.poll = setTimeout(() => run(next), POLL_MS);
    return;
  }
  say("");
  await show(await response.json());
}

async function decide(label) {
  if (!state.item) { return; }
  const item = state.item;
  const button = document.querySelector(`#item button[data-label="${label}"]`);
  if (button) { button.classList.add("chosen"); }
  const path = label === "skip" ? `/review/items/${item.id}/skip` : `/review/items/${item.id}/label`;
  const body = label === "skip" ? undefined : JSON.stringify({ label: /^\d$/.test(label) ? Number(label) : label });
  const response = await api(path, { method: "POST", body, headers: { "Content-Type": "application/json" } });
  if (response.status === 409 || response.status === 404) {
    say(`${await detail(response)}: moving on.`, false);
  } else if (!response.ok) {
    say(await detail(response), true);
    return;
  }
  await refreshStats();
  await next();
}

async function run(step) {
  if (state.busy) { return; }
  state.busy = true;
  try {
    await step();
  } catch (error) {
    if (error instanceof Unauthorized) { showLogin(error.message); } else { say(`${error.message || error}`, true); }
  } finally {
    state.busy = false;
  }
}

document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement || event.ctrlKey || event.metaKey || event.altKey) { return; }
  const keys = { n: "not_a_digit", u: "unreadable", s: "skip" };
  const label = /^\d$/.test(event.key) ? event.key : keys[event.key.toLowerCase()];
  if (label && state.item) {
    event.preventDefault();
    run(() => decide(label));  // ignored while the previous label is still on its way
  }
});

document.querySelectorAll("#item button[data-label]").forEach((button) => {
  button.addEventListener("click", () => run(() => decide(button.dataset.label)));
});

$("login").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("token").value.trim();
  $("token").value = "";
  $("login").hidden = true;
  run(start);
});

async function resumed() {
  // the item this tab was showing, if this reviewer still holds it unlabelled (a reload, a lost connection)
  const id = sessionStorage.getItem(ITEM_KEY);
  if (!id) { return false; }
  const [response, stats] = await Promise.all([api(`/review/items/${encodeURIComponent(id)}`), api("/review/stats")]);
  if (!response.ok || !stats.ok) { return false; }
  const item = await response.json();
  const me = (await stats.json()).reviewer;
  if (item.label !== null || item.claimed_by !== me || new Date(item.lease_expires) <= new Date()) { return false; }
  await show(item);
  return true;
}

async function start() {
  await refreshStats();
  if (!(await resumed())) { await next(); }
}

if (state.token) { run(start); } else { showLogin(); }
setInterval(() => { if (state.token && !state.busy) { refreshStats().catch(() => {}); } }, 10000);
