// The try-it page: draw (pointer events: mouse, touch, pen) or choose, drop or paste an image;
// POST it to the public API (/predict, the image as the raw body, include=spread,input, and
// channel=drawn for a drawing: drawings have their own calibrated threshold) and show
// the answer: the digit, the refer decision in words, the entropy against the threshold, each
// class's mean probability with the samples' spread and votes, and the image the network saw.
"use strict";

const MAX_ENTROPY = Math.log(10);
// The entropy bar is on a log scale from SCALE_LOW to ln 10 nats: the calibrated thresholds (about 0.06
// for drawings, 0.3 for files) sit near the middle, where a linear scale put them at its left edge.
const SCALE_LOW = 0.001;
// labelled ticks, evenly spaced; the right end (ln 10, 0.11 of the width past 1) is named in the note above the
// bar, since a label there would run into the "1" on a phone
const SCALE_TICKS = [0.001, 0.01, 0.1, 1];
const pad = document.getElementById("pad");
const ink = pad.getContext("2d");
const $ = (id) => document.getElementById(id);

let strokes = [];          // drawn strokes, each {points: [[x, y], ...] in canvas pixels, width}
let current = null;        // the stroke being drawn
let source = null;         // what was classified last: {kind: "drawing"} or {kind: "file", blob}
let pending = null;        // debounce timer for classify-after-drawing
let inFlight = null;       // AbortController of the request in flight

// body[data-state]: "idle" (the answer shown is for the current image), "waiting" (classify
// scheduled), "busy" (a request in flight, from the moment it leaves until its answer or error
// arrives): "Classifying…" in a status line, the answer region aria-busy (a screen reader waits for
// the new answer; the status line is outside it, so it is announced), and Classify marked disabled
// (aria-disabled, not disabled: a keyboard user's focus stays on the button)
function setState(state) {
  document.body.dataset.state = state;
  const busy = state === "busy";
  $("busy").textContent = busy ? "Classifying…" : "";
  $("answer").setAttribute("aria-busy", String(busy));
  $("classify").setAttribute("aria-disabled", String(busy));
  if (busy) $("empty").hidden = true;
}

// a word under the buttons about what the pad holds ("" hides it)
const padNote = (text) => { $("pad-note").textContent = text; };

function blank() {
  ink.fillStyle = "#fff";
  ink.fillRect(0, 0, pad.width, pad.height);
}

// the pen chosen (fine, medium, marker), in canvas pixels
const penWidth = () => Math.max(1, Number($("pen").value) || 18);

function drawStroke({points, width}) {
  ink.strokeStyle = "#000";
  ink.fillStyle = "#000";
  ink.lineWidth = width;
  ink.lineCap = "round";
  ink.lineJoin = "round";
  if (points.length === 1) {
    ink.beginPath();
    ink.arc(points[0][0], points[0][1], width / 2, 0, 2 * Math.PI);
    ink.fill();
    return;
  }
  ink.beginPath();
  ink.moveTo(points[0][0], points[0][1]);
  for (const [x, y] of points.slice(1)) ink.lineTo(x, y);
  ink.stroke();
}

function redraw() {
  blank();
  strokes.forEach(drawStroke);
}

function position(event) {
  const box = pad.getBoundingClientRect();
  return [(event.clientX - box.left) * (pad.width / box.width), (event.clientY - box.top) * (pad.height / box.height)];
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  clearTimeout(pending);  // still drawing: classify when the hand pauses
  if (source && source.kind === "file") { strokes = []; blank(); }
  source = {kind: "drawing"};
  padNote("");
  pad.setPointerCapture(event.pointerId);
  current = {points: [position(event)], width: penWidth()};
  drawStroke(current);
  $("drop-hint").hidden = true;
});

pad.addEventListener("pointermove", (event) => {
  if (!current) return;
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
  for (const each of events) current.points.push(position(each));
  redraw();
  drawStroke(current);
});

function endStroke() {
  if (!current) return;
  strokes.push(current);
  current = null;
  clearTimeout(pending);
  setState("waiting");
  pending = setTimeout(classify, 250);  // classify once the hand pauses
}
pad.addEventListener("pointerup", endStroke);
pad.addEventListener("pointercancel", endStroke);

$("undo").addEventListener("click", () => {
  strokes.pop();
  if (source && source.kind === "drawing" && strokes.length) {
    redraw();
    classify();
  } else {
    $("clear").click();  // a chosen file, or the last stroke: nothing left to classify
  }
});

$("clear").addEventListener("click", () => {
  clearTimeout(pending);
  if (inFlight) { inFlight.abort(); inFlight = null; }
  setState("idle");
  strokes = [];
  source = null;
  blank();
  $("drop-hint").hidden = false;
  padNote("");
  showNothing();
});

$("classify").addEventListener("click", () => {
  if (document.body.dataset.state === "busy") return;  // marked disabled: the answer is on its way
  if (!source) { padNote("The pad is empty: draw a digit first, or choose an image."); return; }
  classify();
});
$("samples").addEventListener("change", () => { if (source) classify(); });

function useFile(blob) {
  if (!blob) return;
  source = {kind: "file", blob};
  strokes = [];
  blank();
  $("drop-hint").hidden = true;
  padNote("");
  const url = URL.createObjectURL(blob);
  const picture = new Image();
  picture.onload = () => {  // show it, fitted into the pad; the API gets the file itself
    const scale = Math.min(pad.width / picture.width, pad.height / picture.height);
    const w = picture.width * scale, h = picture.height * scale;
    ink.drawImage(picture, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    URL.revokeObjectURL(url);
  };
  picture.onerror = () => URL.revokeObjectURL(url);  // not an image the browser can show: the API will say why
  picture.src = url;
  classify();
}

$("file").addEventListener("change", (event) => {
  useFile(event.target.files[0]);
  event.target.value = "";  // choosing the same file again classifies it again
});

const drop = $("drop");
drop.addEventListener("dragover", (event) => { event.preventDefault(); drop.classList.add("dragging"); });
drop.addEventListener("dragleave", () => drop.classList.remove("dragging"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  drop.classList.remove("dragging");
  useFile(event.dataTransfer.files[0]);
});
document.addEventListener("paste", (event) => {
  const item = [...event.clipboardData.items].find((entry) => entry.kind === "file");
  if (item) { event.preventDefault(); useFile(item.getAsFile()); }
});

function drawingBlob() {
  return new Promise((resolve) => pad.toBlob(resolve, "image/png"));
}

async function classify() {
  clearTimeout(pending);
  if (!source) { setState("idle"); return; }
  if (inFlight) inFlight.abort();  // an older answer must not overwrite this one
  const controller = new AbortController();
  inFlight = controller;
  setState("busy");
  const blob = source.kind === "file" ? source.blob : await drawingBlob();
  const samples = Math.max(1, Math.round(Number($("samples").value) || 100));
  // the service reads the format from the bytes; anything not declared as an image goes as octet-stream
  const type = blob.type && blob.type.startsWith("image/") ? blob.type : "application/octet-stream";
  const headers = {"Content-Type": type};
  const key = $("api-key").value;
  if (key) headers["X-API-Key"] = key;
  try {
    // a drawing on the pad is judged by the drawn channel's calibrated rule, a chosen file by the file channel's
    const channel = source.kind === "file" ? "file" : "drawn";
    const response = await fetch(`/predict?samples=${samples}&include=spread,input&channel=${channel}`,
                                 {method: "POST", headers, body: blob, signal: controller.signal});
    const body = await response.json().catch(() => ({detail: `${response.status} ${response.statusText}`}));
    if (controller.signal.aborted) return;
    if (response.ok) showAnswer(body); else showError(response.status, body.detail);
  } catch (error) {
    if (error.name === "AbortError") return;
    showError(0, `the service did not answer (${error.message})`);
  }
  if (inFlight === controller) { inFlight = null; setState("idle"); }
}

function showNothing() {
  $("answer").hidden = true;
  $("error").hidden = true;
  $("empty").hidden = false;
}

function showError(status, detail) {
  $("answer").hidden = true;
  $("empty").hidden = true;
  const box = $("error");
  box.textContent = status ? `${status}: ${detail}` : detail;
  box.hidden = false;
}

const fixed = (value, digits = 3) => Number(value).toFixed(digits);

// where `nats` lies on the entropy bar, as a CSS percentage: log scale, clamped to [SCALE_LOW, ln 10]
const share = (nats) => {
  const at = Math.log(Math.max(nats, SCALE_LOW) / SCALE_LOW) / Math.log(MAX_ENTROPY / SCALE_LOW);
  return `${100 * Math.min(1, Math.max(0, at))}%`;
};

// the entropy bar's axis: a label under each tick
function drawAxis() {
  $("entropy-axis").replaceChildren(...SCALE_TICKS.map((nats) => {
    const tick = document.createElement("span");
    tick.textContent = String(nats);
    tick.style.left = share(nats);
    return tick;
  }));
}

// each channel is calibrated on its own: drawings on the pad, or files
const thresholdName = (answer) =>
  answer.channel === "drawn" ? "threshold calibrated for drawings" : "threshold calibrated for files";

// [3, 5, 8] -> "3, 5 or 8"
function listed(items, word) {
  const all = (items || []).map(String);
  return all.length <= 1 ? all.join("") : `${all.slice(0, -1).join(", ")} ${word} ${all[all.length - 1]}`;
}

function showAnswer(answer) {
  $("error").hidden = true;
  $("empty").hidden = true;
  $("answer").hidden = false;
  const verdict = $("verdict");
  const reason = answer.refer_reason || (answer.refer ? "uncertain" : null);
  verdict.className = "verdict " + (reason || "accepted");
  $("class").textContent = String(answer.class);
  // probably not a digit: no big digit, which would read as an answer; the best guess goes small, below
  $("class").hidden = reason === "unfamiliar";
  $("guess").hidden = reason !== "unfamiliar";
  $("guess").textContent = reason === "unfamiliar"
    ? `The model's best guess: ${answer.class} (${(100 * answer.probabilities[answer.class]).toFixed(1)} %).` : "";
  if (!answer.refer) {
    $("decision").textContent = `Accepted: it is a ${answer.class}`;
    $("reason").textContent = `The entropy ${fixed(answer.entropy)} nats is below the ${thresholdName(answer)} ` +
      `${fixed(answer.threshold)}: no human needed.`;
  } else if (reason === "unfamiliar") {
    const top = [...answer.probabilities].sort((a, b) => b - a);
    $("decision").textContent = "Probably not a digit: refer to a human";
    $("reason").textContent = `The entropy ${fixed(answer.entropy)} nats is over the ${thresholdName(answer)} ` +
      `${fixed(answer.threshold)}, and the probability is spread: the two likeliest digits hold only ` +
      `${Math.round(100 * (top[0] + top[1]))} %. If it is a digit at all: ${listed(answer.candidates, "or")}.`;
  } else {
    $("decision").textContent = `Refer to a human: unsure: ${listed(answer.candidates, "or")}?`;
    $("reason").textContent = `The entropy ${fixed(answer.entropy)} nats is over the ${thresholdName(answer)} ` +
      `${fixed(answer.threshold)}. Its best guess is ${answer.class}.`;
  }
  // a referred (or audited) answer is queued for a person: say so, and where they look
  $("queued").hidden = !answer.review_id;
  $("queued").textContent = answer.review_id
    ? `${answer.refer ? "Sent" : "Also sent, as a spot check,"} to a reviewer: item ${answer.review_id.slice(0, 8)}… on the review page (/review).`
    : "";

  $("entropy-fill").style.width = share(answer.entropy);
  $("entropy-fill").classList.toggle("over", answer.entropy > answer.threshold);
  $("threshold-mark").style.left = share(answer.threshold);
  $("threshold-label").style.left = share(answer.threshold);
  $("threshold-label").textContent = `threshold ${fixed(answer.threshold)}`;
  $("entropy-scale").setAttribute("aria-label", `entropy ${fixed(answer.entropy)} nats, threshold ` +
    `${fixed(answer.threshold)} nats, on a log scale from ${SCALE_LOW} to 2.30 nats`);
  $("entropy-text").textContent = `Entropy ${fixed(answer.entropy)} nats; threshold ${fixed(answer.threshold)} ` +
    `(${answer.entropy > answer.threshold ? "over: refer" : "under: accept"}).`;
  $("mi").textContent = `${fixed(answer.mutual_information, 4)} nats`;
  $("ee").textContent = `${fixed(answer.expected_entropy, 4)} nats`;
  $("n").textContent = String(answer.samples);
  $("version").textContent = answer.model_version;

  const bars = $("bars");
  bars.replaceChildren();
  answer.probabilities.forEach((p, digit) => {
    const sd = answer.spread ? answer.spread[digit] : 0;
    const votes = answer.votes ? answer.votes[digit] : null;
    const row = document.createElement("li");
    if (digit === answer.class) row.className = "top";
    const label = document.createElement("span");
    label.className = "label";
    label.textContent = String(digit);
    const track = document.createElement("span");
    track.className = "track";
    track.setAttribute("aria-hidden", "true");
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${100 * p}%`;
    const whisker = document.createElement("span");
    whisker.className = "whisker";
    const low = Math.max(0, p - sd), high = Math.min(1, p + sd);
    whisker.style.left = `${100 * low}%`;
    whisker.style.width = `${100 * (high - low)}%`;
    whisker.hidden = sd < 0.005;
    track.append(fill, whisker);
    const value = document.createElement("span");
    value.className = "value";
    value.textContent = `${(100 * p).toFixed(1)}%`;
    const voted = document.createElement("span");
    voted.className = "votes";
    voted.textContent = votes === null ? "" : `${votes} ${votes === 1 ? "vote" : "votes"}`;
    row.setAttribute("aria-label", `digit ${digit}: ${(100 * p).toFixed(1)} percent, spread ` +
      `${(100 * sd).toFixed(1)} points` + (votes === null ? "" : `, ${votes} of ${answer.samples} samples`));
    row.append(label, track, value, voted);
    bars.append(row);
  });

  if (answer.input) {
    const seen = $("seen").getContext("2d");
    const pixels = seen.createImageData(28, 28);
    answer.input.flat().forEach((level, i) => {
      pixels.data.set([level, level, level, 255], 4 * i);
    });
    seen.putImageData(pixels, 0, 0);
  }
}

blank();
drawAxis();
setState("idle");
