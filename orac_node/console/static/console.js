// orac-node console: renders what the server's bridge relays from the broker, and
// streams the microphone when Talk is pressed. No framework, no build step; every
// text from the broker goes in with textContent, never as HTML.
"use strict";

const LIVE_ITEMS = 100; // sessions kept in the live list
const LATENCY_EDGES = [0, 100, 200, 300, 500, 750, 1000, 1500, 2000, 3000, 5000];
const state = {
  ws: null,
  clockOffset: 0, // server time minus this page's clock, seconds
  nodes: new Map(),
  satellites: new Map(),
  latencies: [],
  errors: [],
  device: "console",
  talk: null, // {session, context, stream, node} while talking
  talkSession: null,
};
const $ = (id) => document.getElementById(id);
const now = () => Date.now() / 1000 + state.clockOffset;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function ago(ts) {
  if (!ts) return "–";
  const s = Math.max(0, now() - ts);
  if (s < 60) return `${Math.round(s)} s ago`;
  if (s < 3600) return `${Math.round(s / 60)} min ago`;
  return `${(s / 3600).toFixed(1)} h ago`;
}

function duration(s) {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  if (s < 120) return `${Math.round(s)} s`;
  if (s < 7200) return `${Math.round(s / 60)} min`;
  if (s < 172800) return `${(s / 3600).toFixed(1)} h`;
  return `${(s / 86400).toFixed(1)} d`;
}

// --- the connection ------------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const ws = new WebSocket(`${scheme}://${location.host}/ws`);
  state.ws = ws;
  ws.onmessage = (message) => handle(JSON.parse(message.data));
  ws.onclose = () => {
    setBroker(false, "console unreachable — retrying");
    stopCapture();
    setTimeout(connect, 2000);
  };
}

function handle(event) {
  switch (event.kind) {
    case "snapshot": return snapshot(event);
    case "broker": return setBroker(event.connected, null, event.device);
    case "node": return node(event);
    case "satellite": return satellite(event);
    case "transcript": transcript(event); return addLatency(event);
    case "error": return error(event);
    case "talk": return talkState(event);
    case "talk-transcript": return talkTranscript(event);
  }
}

function snapshot(event) {
  state.clockOffset = event.now - Date.now() / 1000;
  state.nodes.clear();
  state.satellites.clear();
  $("live").replaceChildren();
  event.nodes.forEach(node);
  event.satellites.forEach(satellite);
  event.finals.forEach(transcript);
  state.latencies = event.latencies.slice();
  drawLatency();
  state.errors = [];
  event.errors.forEach(error);
}

function setBroker(connected, text, device) {
  if (device) state.device = device;
  const badge = $("broker");
  badge.className = `badge ${connected ? "on" : "off"}`;
  badge.textContent = text || (connected ? "broker: connected" : "broker: reconnecting…");
  $("talk").disabled = !connected && !state.talk;
}

// --- nodes and satellites -------------------------------------------------------

function node(status) {
  state.nodes.set(status.node, status);
  renderNodes();
}

function renderNodes() {
  const body = $("nodes").tBodies[0];
  body.replaceChildren();
  for (const s of [...state.nodes.values()].sort((a, b) => a.node.localeCompare(b.node))) {
    const row = el("tr");
    row.dataset.node = s.node;
    row.append(el("td", "", s.node));
    const stateCell = el("td");
    const label = s.overloaded && s.state === "ready" ? "overloaded" : s.state;
    stateCell.append(el("span", `badge state ${label}`, label));
    row.append(stateCell);
    row.append(el("td", "", s.model));
    row.append(el("td", "", s.state === "offline" ? "–" : s.sessions));
    row.append(el("td", "", s.state === "offline" ? "–" : s.queued));
    row.append(el("td", "", s.last_final_ms === null ? "–" : `${Math.round(s.last_final_ms)} ms`));
    const up = s.state === "offline" || !s.started ? null : now() - s.started;
    row.append(el("td", "uptime", duration(up)));
    body.append(row);
  }
  $("no-nodes").hidden = state.nodes.size > 0;
}

function satellite(s) {
  state.satellites.set(s.device, s);
  renderSatellites();
}

function renderSatellites() {
  const body = $("satellites").tBodies[0];
  body.replaceChildren();
  const sorted = [...state.satellites.values()].sort((a, b) => (b.last_heard || 0) - (a.last_heard || 0));
  for (const s of sorted) {
    const row = el("tr");
    row.dataset.device = s.device;
    row.append(el("td", "", s.device));
    const online = el("td");
    const label = s.online === null ? "no heartbeat" : s.online ? "online" : "offline";
    online.append(el("span", `badge ${s.online === null ? "" : label}`, label));
    row.append(online);
    row.append(el("td", "heard", ago(s.last_heard)));
    row.append(el("td", "", s.last_text || "–"));
    body.append(row);
  }
  $("no-satellites").hidden = state.satellites.size > 0;
}

// --- the live stream ------------------------------------------------------------

function sessionItem(t) {
  const list = $("live");
  let item = list.querySelector(`li[data-session="${CSS.escape(t.session)}"]`);
  if (!item) {
    item = el("li");
    item.dataset.session = t.session;
    item.append(el("div", "who"), el("p", "transcript"), el("div", "meta"));
    list.prepend(item);
    while (list.children.length > LIVE_ITEMS) list.lastElementChild.remove();
  }
  item.querySelector(".who").textContent = `${t.device} → transcript/${t.topic} · ${t.node}`;
  return item;
}

function transcript(t) {
  const item = sessionItem(t);
  const text = item.querySelector(".transcript");
  const meta = item.querySelector(".meta");
  if (t.type === "partial") {
    if (item.dataset.final) return; // a partial that arrived after its final
    text.replaceChildren(el("span", "stable", t.stable), document.createTextNode(" "),
      el("span", "unstable", t.unstable));
    meta.textContent = `partial ${t.seq} · ${t.audio_s.toFixed(1)} s heard`;
    return;
  }
  item.dataset.final = "1";
  item.classList.toggle("rejected", t.rejected !== null);
  item.classList.add("final");
  text.replaceChildren(el("span", "stable", t.text || "(nothing)"));
  meta.replaceChildren();
  const parts = [
    `confidence ${Math.round(t.confidence * 100)} %`,
    t.language + (t.language_p !== null ? ` (${Math.round(t.language_p * 100)} %)` : ""),
    `final ${Math.round(t.latency_ms)} ms after the end`,
    `${t.audio_s.toFixed(1)} s of audio`,
  ];
  if (t.incomplete) parts.push("incomplete");
  meta.append(document.createTextNode(parts.join(" · ")));
  if (t.rejected !== null) {
    meta.append(document.createTextNode(" · "), el("span", "reason", `rejected: ${t.rejected}`));
  }
}

// --- latency histogram ------------------------------------------------------------

let plot = null;

function latencyCounts() {
  const counts = LATENCY_EDGES.map(() => 0);
  for (const ms of state.latencies) {
    let bin = LATENCY_EDGES.length - 1;
    while (bin > 0 && ms < LATENCY_EDGES[bin]) bin--;
    counts[bin]++;
  }
  return counts;
}

function binLabel(i) {
  const lo = LATENCY_EDGES[i];
  return i === LATENCY_EDGES.length - 1 ? `${lo}+` : `${lo}–${LATENCY_EDGES[i + 1]}`;
}

function drawLatency() {
  const xs = LATENCY_EDGES.map((_, i) => i);
  const data = [xs, latencyCounts()];
  const box = $("latency");
  const width = Math.max(280, box.clientWidth || 420);
  if (!plot) {
    plot = new uPlot({
      width, height: 180,
      scales: { x: { time: false, range: [-0.5, xs.length - 0.5] }, y: { range: (u, lo, hi) => [0, Math.max(1, hi)] } },
      axes: [
        { values: (u, splits) => splits.map((i) => (Number.isInteger(i) ? binLabel(i) : "")), label: "ms", size: 40 },
        { label: "finals", size: 40, incrs: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] },
      ],
      legend: { show: false },
      cursor: { show: false },
      series: [{}, { label: "finals", fill: "rgba(37,87,214,.35)", stroke: "#2557d6",
        paths: uPlot.paths.bars({ size: [0.8, 60] }), points: { show: false } }],
    }, data, box);
  } else {
    plot.setData(data);
  }
  const sorted = state.latencies.slice().sort((a, b) => a - b);
  const pick = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  $("latency-summary").textContent = sorted.length
    ? `${sorted.length} final${sorted.length === 1 ? "" : "s"} · median ${Math.round(pick(0.5))} ms · p95 ${Math.round(pick(0.95))} ms`
    : "No finals yet.";
}

function addLatency(t) {
  if (t.type !== "final" || t.rejected !== null) return;
  state.latencies.push(t.latency_ms);
  drawLatency();
}

// --- errors -----------------------------------------------------------------------

function error(e) {
  state.errors.unshift(e);
  state.errors = state.errors.slice(0, 50);
  const list = $("errors");
  const item = el("li");
  item.dataset.device = e.device;
  item.append(el("strong", "", e.device), document.createTextNode(" · "), el("code", "", e.code),
    document.createTextNode(` ${e.message} `), el("span", "muted", new Date(e.ts * 1000).toLocaleTimeString()));
  list.prepend(item);
  while (list.children.length > 50) list.lastElementChild.remove();
  $("no-errors").hidden = true;
}

// --- talk -------------------------------------------------------------------------

async function startTalk() {
  const button = $("talk");
  button.disabled = true;
  $("talk-state").textContent = "asking for the microphone…";
  try {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: true, noiseSuppression: true, autoGainControl: true },
    });
    const context = new AudioContext(); // the device's rate: the server resamples
    await context.audioWorklet.addModule("/static/talk-worklet.js");
    const source = context.createMediaStreamSource(stream);
    const tap = new AudioWorkletNode(context, "pcm-capture");
    state.talk = { context, stream, tap };
    state.ws.send(JSON.stringify({ talk: "start", rate: context.sampleRate }));
    tap.port.onmessage = (message) => {
      if (state.ws && state.ws.readyState === WebSocket.OPEN) state.ws.send(message.data);
    };
    source.connect(tap);
    button.textContent = "■ Stop";
    button.classList.add("live");
    button.disabled = false;
    $("talk-state").textContent = `listening as satellite “${state.device}”`;
    $("talk-panel").hidden = false;
    $("talk-text").replaceChildren();
    delete $("talk-text").dataset.final;
    $("talk-text").dataset.partials = "0";
    $("talk-meta").textContent = "";
  } catch (err) {
    stopCapture();
    $("talk-state").textContent = `no microphone: ${err.message || err}`;
  }
}

function stopCapture() {
  const talk = state.talk;
  state.talk = null;
  if (talk) {
    talk.stream.getTracks().forEach((track) => track.stop());
    talk.context.close();
  }
  const button = $("talk");
  button.textContent = "● Talk";
  button.classList.remove("live");
  button.disabled = !state.ws || state.ws.readyState !== WebSocket.OPEN;
}

function talkState(event) {
  if (event.state === "started") {
    state.talkSession = event.session;
    return;
  }
  stopCapture();
  if (event.state === "done") $("talk-state").textContent = "done — press Talk to say more";
  else $("talk-state").textContent = `${event.state}: ${event.error || ""}`;
}

function talkTranscript(t) {
  const text = $("talk-text");
  if (t.type === "partial") {
    text.dataset.partials = String(Number(text.dataset.partials || 0) + 1);
    text.replaceChildren(el("span", "stable", t.stable), document.createTextNode(" "), el("span", "unstable", t.unstable));
    return;
  }
  text.replaceChildren(el("span", "stable final", t.text || "(nothing)"));
  text.dataset.final = "1";
  $("talk-meta").textContent = t.rejected !== null
    ? `rejected: ${t.rejected}`
    : `confidence ${Math.round(t.confidence * 100)} % · final ${Math.round(t.latency_ms)} ms after you stopped`;
}

$("talk").addEventListener("click", () => {
  if (state.talk) {
    state.ws.send(JSON.stringify({ talk: "stop" }));
    $("talk-state").textContent = "finishing…";
    stopCapture();
  } else {
    startTalk();
  }
});

// Relative times ("3 s ago", uptimes) tick once a second.
setInterval(() => { renderSatellites(); renderNodes(); }, 1000);
connect();
