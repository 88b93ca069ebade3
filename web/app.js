// spate dashboard: reads /metrics every second for what is now, and the
// history spated keeps (history.js) for the charts: per function and topic
// the last fifteen minutes, drawn at once when the page opens.
"use strict";

const POLL_MS = 1000;
const KEEP = 900;        // points per series: fifteen minutes at one a second (history.js)
const QUANTILE_WINDOW = 5; // scrapes over which p50/p99 are taken
const SVG = "http://www.w3.org/2000/svg";

// The read token the user typed: page memory only, as the admin token
// (console.js). It may be an admin token too, so it is never stored.
let token = "";
const history = new Map(); // function -> {points: [...], prev: scrape}
let prevScrape = null;

// --- The Prometheus text format -----------------------------------------------

// Returns Map name -> [{labels: {...}, value}].
function parseMetrics(text) {
  const out = new Map();
  for (const line of text.split("\n")) {
    if (!line || line[0] === "#") continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)/.exec(line);
    if (!m) continue;
    const labels = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;
      let l;
      while ((l = re.exec(m[2]))) labels[l[1]] = l[2];
    }
    const v = m[3] === "+Inf" ? Infinity : m[3] === "-Inf" ? -Infinity : Number(m[3]);
    if (!out.has(m[1])) out.set(m[1], []);
    out.get(m[1]).push({ labels, value: v });
  }
  return out;
}

function pick(s, name, match) {
  const rows = s.get(name) || [];
  return rows.filter((r) => Object.entries(match).every(([k, v]) => r.labels[k] === v));
}

function one(s, name, match, dflt = 0) {
  const r = pick(s, name, match);
  return r.length ? r[0].value : dflt;
}

function sum(s, name, match) {
  return pick(s, name, match).reduce((a, r) => a + r.value, 0);
}

// Cumulative bucket counts {le: count} of one histogram series.
function buckets(s, name, match) {
  const b = new Map();
  for (const r of pick(s, name + "_bucket", match)) b.set(Number(r.labels.le === "+Inf" ? Infinity : r.labels.le), r.value);
  return b;
}

// The q-quantile of what was observed between two bucket snapshots, by
// linear interpolation inside the bucket (as PromQL's histogram_quantile).
function quantile(q, now, before) {
  const les = [...now.keys()].sort((a, b) => a - b);
  const counts = les.map((le) => (now.get(le) || 0) - ((before && before.get(le)) || 0));
  const total = counts[counts.length - 1];
  if (!total || total <= 0) return null;
  const rank = q * total;
  let lower = 0, below = 0;
  for (let i = 0; i < les.length; i++) {
    if (counts[i] >= rank) {
      const upper = les[i] === Infinity ? lower : les[i];
      const inBucket = counts[i] - below;
      return inBucket > 0 ? lower + (upper - lower) * ((rank - below) / inBucket) : upper;
    }
    lower = les[i];
    below = counts[i];
  }
  return lower;
}

// --- Charts -----------------------------------------------------------------------

function el(tag, attrs = {}, parent) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (parent) parent.appendChild(e);
  return e;
}

function fmt(v, unit = "") {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (v === Infinity) return "∞";
  const a = Math.abs(v);
  if (Number.isInteger(v) && a < 1e4) return v + unit;
  const s = a >= 1e6 ? (v / 1e6).toFixed(1) + "M" : a >= 1e4 ? (v / 1e3).toFixed(1) + "k"
    : a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2);
  return s + unit;
}

// Draws series [{name, color, values}] into svg as lines over a shared
// y-axis from 0; values may hold nulls (gaps) and Infinity (drawn at the top).
function drawChart(svg, series, unit, spark = false) {
  // L leaves room for the longest y label, "1234.5 ms" at 10px.
  const W = 300, H = spark ? 28 : 110, L = spark ? 0 : 50, B = spark ? 2 : 14, T = spark ? 2 : 6;
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  while (svg.firstChild) svg.removeChild(svg.firstChild);
  // The x-axis spans the history held (a minute at least, KEEP at most): a
  // page opened after a short day draws that day across the chart.
  const span = Math.min(KEEP, Math.max(60, ...series.map((s) => s.values.length)));
  let max = 0;
  for (const s of series) for (const v of s.values) if (v !== null && Number.isFinite(v)) max = Math.max(max, v);
  if (max <= 0) max = 1;
  max *= 1.1;
  el("line", { x1: L, y1: H - B, x2: W, y2: H - B, class: "axis" }, svg);
  if (!spark) {
    el("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }, svg);
    el("text", { x: L - 3, y: T + 8, "text-anchor": "end" }, svg).textContent = fmt(max / 1.1, unit);
    el("text", { x: L - 3, y: H - B, "text-anchor": "end" }, svg).textContent = "0";
    el("text", { x: W, y: H - 2, "text-anchor": "end" }, svg).textContent = "now";
    el("text", { x: L, y: H - 2 }, svg).textContent = span >= 120 ? `-${Math.round(span / 60)} min` : `-${span} s`;
  }
  const x = (i) => L + ((W - L) * (span - 1 - i)) / (span - 1);
  const y = (v) => H - B - ((H - B - T) * Math.min(v, max)) / max;
  const last = {};
  for (const s of series) {
    const n = s.values.length;
    let pts = [];
    const flush = () => {
      if (pts.length) el("polyline", { points: pts.join(" "), stroke: s.color, "data-series": s.name }, svg);
      pts = [];
    };
    for (let i = 0; i < n; i++) {
      const v = s.values[i];
      if (v === null || Number.isNaN(v)) { flush(); continue; }
      pts.push(`${x(n - 1 - i).toFixed(1)},${y(v === Infinity ? max : v).toFixed(1)}`);
    }
    flush();
    last[s.name] = n ? s.values[n - 1] : null;
  }
  svg.dataset.points = String(Math.max(0, ...series.map((s) => s.values.length)));
  svg.dataset.last = JSON.stringify(last, (k, v) => (v === Infinity ? "Infinity" : v));
}

function chartBox(parent, title, keys) {
  const box = document.createElement("div");
  box.className = "chart";
  const h = document.createElement("h4");
  h.textContent = title;
  for (const [name, color] of keys) {
    const k = document.createElement("span");
    k.className = "key";
    k.innerHTML = `<i style="background:${color}"></i>`;
    k.append(name);
    h.appendChild(k);
  }
  box.appendChild(h);
  const svg = el("svg", {}, box);
  parent.appendChild(box);
  return svg;
}

// --- Functions -----------------------------------------------------------------------

function functionCard(name) {
  const id = "fn-" + name;
  let card = document.getElementById(id);
  if (card) return card;
  card = document.createElement("div");
  card.className = "fn";
  card.id = id;
  card.dataset.function = name;
  const h = document.createElement("h3");
  h.innerHTML = `<span class="name"></span><span class="badge none">no deadline</span><span class="facts"></span>`;
  h.querySelector(".name").append(spatePages.link("function", name));
  card.appendChild(h);
  const charts = document.createElement("div");
  charts.className = "charts";
  card.appendChild(charts);
  card.charts = {
    instances: chartBox(charts, "Instances", [["busy", "var(--busy)"], ["idle", "var(--idle)"], ["starting", "var(--starting)"]]),
    backlog: chartBox(charts, "Backlog", [["messages", "#7c3aed"]]),
    rate: chartBox(charts, "Rate /s", [["arrivals", "#0891b2"], ["completions", "#16a34a"]]),
    duration: chartBox(charts, "Duration", [["p50", "#2563eb"], ["p99", "#dc2626"]]),
    eta: chartBox(charts, "Drain ETA vs deadline", [["eta", "#ea580c"], ["deadline", "#6b7280"]]),
    cold: chartBox(charts, "Cold starts /s", [["cold starts", "#f59e0b"]]),
  };
  for (const [k, svg] of Object.entries(card.charts)) svg.dataset.chart = k;
  document.getElementById("functions").appendChild(card);
  return card;
}

function completions(s, fn) {
  return ["ok", "error", "crashed", "timeout"].reduce((a, o) => a + one(s, "spate_invocations_total", { function: fn, outcome: o }), 0);
}

function updateFunction(name, s, prev, dt) {
  let h = history.get(name);
  if (!h) history.set(name, (h = { points: [], durations: [] }));
  const f = { function: name };
  const triggered = pick(s, "spate_autoscaler_backlog_messages", f).length > 0;
  const done = completions(s, name);
  const waiting = one(s, "spate_invocations_waiting", f);
  const p = {
    busy: one(s, "spate_instances", { function: name, state: "busy" }),
    idle: one(s, "spate_instances", { function: name, state: "idle" }),
    starting: one(s, "spate_instances", { function: name, state: "starting" }),
    backlog: triggered ? one(s, "spate_autoscaler_backlog_messages", f) : waiting,
    completions: null,
    arrivals: null,
    eta: triggered ? one(s, "spate_autoscaler_drain_eta_seconds", f) : null,
    deadline: triggered ? one(s, "spate_autoscaler_deadline_seconds", f) || null : null,
    risk: one(s, "spate_autoscaler_deadline_at_risk", f),
    desired: one(s, "spate_autoscaler_desired_instances", f, null),
    p50: null,
    p99: null,
  };
  if (prev && dt > 0 && history.has(name) && h.lastDone !== undefined) {
    p.completions = Math.max(0, (done - h.lastDone) / dt);
    p.arrivals = triggered ? one(s, "spate_autoscaler_arrivals_per_second", f)
      : Math.max(0, p.completions + (waiting - h.lastWaiting) / dt);
  }
  h.lastDone = done;
  h.lastWaiting = waiting;
  const b = buckets(s, "spate_invocation_duration_seconds", f);
  h.durations.push(b);
  if (h.durations.length > QUANTILE_WINDOW + 1) h.durations.shift();
  if (h.durations.length > 1) {
    const q50 = quantile(0.5, b, h.durations[0]), q99 = quantile(0.99, b, h.durations[0]);
    p.p50 = q50 === null ? null : q50 * 1000;
    p.p99 = q99 === null ? null : q99 * 1000;
  }
  const card = functionCard(name);
  drawFunctionHistory(card, name); // the charts: spated's history (history.js)

  const badge = card.querySelector(".badge");
  if (!p.deadline) { badge.className = "badge none"; badge.textContent = "no deadline"; }
  else if (p.risk) { badge.className = "badge risk"; badge.textContent = "DEADLINE AT RISK"; }
  else { badge.className = "badge"; badge.textContent = "deadline met"; }
  const live = p.busy + p.idle + p.starting;
  card.querySelector(".facts").textContent = spatePages.functionState(p).word + " · " +
    `${live} instance${live === 1 ? "" : "s"}` +
    (p.desired !== null ? ` (desired ${fmt(p.desired)})` : "") +
    ` · backlog ${fmt(p.backlog)} · p99 ${fmt(p.p99, " ms")}` +
    (triggered ? ` · drain ETA ${fmt(p.eta, " s")}` + (p.deadline ? ` / deadline ${fmt(p.deadline, " s")}` : "") : "");
}

// --- Topics -------------------------------------------------------------------------------

function updateTopics(s) {
  const body = document.querySelector("#topics tbody");
  const names = [...new Set((s.get("spate_topic_depth") || []).map((r) => r.labels.topic))].sort();
  document.getElementById("no-topics").hidden = names.length > 0;
  for (const name of names) {
    const t = { topic: name };
    let row = body.querySelector(`tr[data-topic="${CSS.escape(name)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.topic = name;
      row.innerHTML = "<td></td>" + '<td class="num"></td>'.repeat(5) + "<td></td>";
      row.cells[0].append(spatePages.link("topic", name));
      row.spark = el("svg", {}, row.cells[6]);
      body.appendChild(row);
    }
    const depth = one(s, "spate_topic_depth", t);
    const dead = one(s, "spate_topic_dead_lettered_total", t);
    row.cells[1].textContent = fmt(depth);
    row.cells[2].textContent = fmt(one(s, "spate_topic_in_flight", t));
    row.cells[3].textContent = fmt(one(s, "spate_topic_oldest_message_age_seconds", t), " s");
    row.cells[4].textContent = fmt(one(s, "spate_topic_messages_published_total", t));
    row.cells[5].textContent = fmt(dead);
    row.cells[5].className = dead > 0 ? "num bad" : "num";
    drawChart(row.spark, [{ name: "depth", color: "#7c3aed", values: topicDepthHistory(name) }], "", true);
  }
  for (const row of [...body.rows]) if (!names.includes(row.dataset.topic)) row.remove();
}

// --- Sources --------------------------------------------------------------------------------

function updateSources(s) {
  const body = document.querySelector("#sources tbody");
  const infos = s.get("spate_source_info") || [];
  const names = infos.map((r) => r.labels.source).sort();
  document.getElementById("no-sources").hidden = names.length > 0;
  for (const info of infos) {
    const name = info.labels.source;
    const t = { source: name };
    let row = body.querySelector(`tr[data-source="${CSS.escape(name)}"]`);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.source = name;
      row.innerHTML = "<td></td><td></td><td></td>" + '<td class="num"></td>'.repeat(4);
      row.cells[0].append(spatePages.link("source", name));
      body.appendChild(row);
    }
    row.cells[1].textContent = info.labels.topic;
    const up = one(s, "spate_source_connected", t) > 0;
    row.cells[2].textContent = (up ? "connected" : "not connected") + ` (${info.labels.scheme})`;
    row.cells[2].className = up ? "" : "bad";
    row.cells[3].textContent = fmt(one(s, "spate_source_received_total", t));
    row.cells[4].textContent = fmt(one(s, "spate_source_committed_total", t));
    const refused = one(s, "spate_source_refused_total", t);
    row.cells[5].textContent = fmt(refused);
    row.cells[5].className = refused > 0 ? "num bad" : "num";
    const lag = pick(s, "spate_source_lag", t)[0];
    row.cells[6].textContent = lag ? fmt(lag.value) : "–";
  }
  for (const row of [...body.rows]) if (!names.includes(row.dataset.source)) row.remove();
}

// The node's limits (docs/operations.md, "Node limits"): used of max for
// each, marked when 90 % is used or when it refused callers (503 with its code).
function updateLimits(s) {
  const line = document.getElementById("node-limits");
  const parts = [];
  let bad = false;
  for (const label of ["descriptors", "processes", "instances", "zygotes"]) {
    const used = pick(s, "spate_node_limit_used", { limit: label })[0];
    if (!used) continue;
    const max = pick(s, "spate_node_limit_max", { limit: label })[0];
    const refused = one(s, "spate_node_limit_refusals_total", { limit: label });
    let text = `${label} ${fmt(used.value)}` + (max ? ` of ${fmt(max.value)}` : "");
    if (refused > 0) text += ` (${fmt(refused)} refused)`;
    if (refused > 0 || (max && used.value >= 0.9 * max.value)) bad = true;
    parts.push(text);
  }
  const mem = pick(s, "spate_node_memory_available_bytes", {})[0];
  if (mem) {
    const refused = one(s, "spate_node_limit_refusals_total", { limit: "memory" });
    parts.push(`memory ${fmt(mem.value / 1048576)} MiB free` + (refused > 0 ? ` (${fmt(refused)} refused)` : ""));
    if (refused > 0) bad = true;
  }
  line.hidden = parts.length === 0;
  line.textContent = "Node limits: " + parts.join(" · ");
  line.className = bad ? "limits bad" : "limits";
}

// --- Polling ---------------------------------------------------------------------------------

async function poll() {
  const status = document.getElementById("status");
  try {
    const headers = token ? { Authorization: "Bearer " + token } : {};
    const r = await fetch("/metrics", { headers });
    if (r.status === 401 || r.status === 403) {
      document.getElementById("login").hidden = false;
      status.textContent = r.status === 401 ? "needs a token" : "the token may not read";
      status.className = "status down";
      return;
    }
    if (!r.ok) throw new Error("HTTP " + r.status);
    const s = parseMetrics(await r.text());
    await historyUpdate(headers);
    consoleUpdate(); // the deadline banner (console.js)
    const now = performance.now();
    const dt = prevScrape ? (now - prevScrape.at) / 1000 : 0;
    const info = pick(s, "spate_build_info", {})[0];
    document.getElementById("node").textContent = location.host + (info ? ` · spated ${info.labels.version}` : "");
    const fns = [...new Set((s.get("spate_instances") || []).map((x) => x.labels.function))].sort();
    document.getElementById("no-functions").hidden = fns.length > 0;
    for (const name of fns) updateFunction(name, s, prevScrape, dt);
    for (const card of [...document.querySelectorAll(".fn")])
      if (!fns.includes(card.dataset.function)) { card.remove(); history.delete(card.dataset.function); }
    updateTopics(s);
    updateSources(s);
    updateLimits(s);
    prevScrape = { at: now };
    status.textContent = "live · " + new Date().toLocaleTimeString();
    status.className = "status";
    document.body.dataset.scrapes = String(Number(document.body.dataset.scrapes || 0) + 1);
  } catch (e) {
    status.textContent = "cannot reach spated: " + e.message;
    status.className = "status down";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

document.getElementById("login").addEventListener("submit", (e) => {
  e.preventDefault();
  token = document.getElementById("token").value.trim();
  document.getElementById("login").hidden = true;
});

poll();
