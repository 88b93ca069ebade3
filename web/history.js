// spate dashboard: the history spated keeps (GET /v1/history, docs/api.md).
// When the page opens it reads the last 15 minutes at once; then, each
// second, only the samples after the last one it has (delta=1). A sample
// carries the rows that changed; a series missing from the state is zero.
"use strict";

const HISTORY_KEEP = 900; // samples: fifteen minutes at one a second
// The columns of a function's row, after its name (docs/api.md "History").
const HISTORY_FN = ["busy", "idle", "starting", "backlog", "arrivals", "completions",
  "p50", "p99", "eta", "deadline", "cold", "risk"];
const HISTORY_TOPIC = ["depth", "oldest"];
const HISTORY_SOURCE = ["lag", "connected"];
// What a series is when its row is absent (zero, or no value for the
// figures that need something to have happened).
const HISTORY_ABSENT = { p50: null, p99: null, eta: null, deadline: null, lag: null };

const spateHistory = {
  times: [], // ms of each sample, oldest first
  kinds: {
    functions: { cols: HISTORY_FN, state: new Map(), series: new Map() },
    topics: { cols: HISTORY_TOPIC, state: new Map(), series: new Map() },
    sources: { cols: HISTORY_SOURCE, state: new Map(), series: new Map() },
  },
  last: 0, // t of the newest sample held; 0: none yet
  node: "",
  sampleUs: null,
};

function historyValue(v) {
  return v === "inf" ? Infinity : v;
}

// Applies one sample and appends a point to every series.
function historyApply(s) {
  const h = spateHistory;
  for (const [kind, k] of Object.entries(h.kinds)) {
    if (s.full) k.state.clear();
    for (const row of s[kind] || []) {
      const vals = {};
      k.cols.forEach((c, i) => { vals[c] = historyValue(row[i + 1]); });
      k.state.set(String(row[0]), vals);
    }
  }
  h.times.push(s.t);
  const drop = h.times.length > HISTORY_KEEP;
  if (drop) h.times.shift();
  for (const k of Object.values(h.kinds)) {
    for (const name of k.state.keys()) {
      if (!k.series.has(name)) {
        // A series first seen now: no value for the seconds before.
        const ser = {};
        for (const c of k.cols) ser[c] = new Array(h.times.length - 1).fill(null);
        k.series.set(name, ser);
      }
    }
    for (const [name, ser] of k.series) {
      const row = k.state.get(name);
      for (const c of k.cols) {
        const arr = ser[c];
        arr.push(row ? row[c] : (c in HISTORY_ABSENT ? HISTORY_ABSENT[c] : 0));
        if (arr.length > h.times.length) arr.shift();
      }
    }
    // A series that holds nothing any more is forgotten.
    for (const [name, ser] of k.series)
      if (!k.state.has(name) && ser[k.cols[0]].every((v) => v === null || v === 0)) k.series.delete(name);
  }
  h.last = s.t;
}

// Reads what is new since the last sample held (everything on the first
// call). headers: the read token's. Resolves to the HTTP status.
async function historyUpdate(headers) {
  const h = spateHistory;
  for (let round = 0; round < 20; round++) {
    const url = h.last ? `/v1/history?since=${h.last}&delta=1` : "/v1/history";
    const r = await fetch(url, { headers });
    if (!r.ok) return r.status;
    const doc = await r.json();
    h.node = doc.node || "";
    h.sampleUs = doc.sample_avg_us;
    for (const s of doc.samples) if (s.t > h.last) historyApply(s);
    if (!doc.truncated) break;
  }
  document.documentElement.dataset.historySamples = String(h.times.length);
  return 200;
}

// The series of one function, topic or source, field by field ({busy:
// [...], ...}); one the history never held was zero all along.
function historyOf(kind, name) {
  const k = spateHistory.kinds[kind];
  const s = k.series.get(name);
  if (s) return s;
  const zero = {};
  for (const c of k.cols) zero[c] = new Array(spateHistory.times.length).fill(c in HISTORY_ABSENT ? null : 0);
  return zero;
}

// The newest row of each function ({name -> {busy, ..., eta, deadline}}).
function historyLatest(kind) {
  return spateHistory.kinds[kind].state;
}

// Draws a function card's charts (app.js functionCard) from the history.
function drawFunctionHistory(card, name) {
  const s = historyOf("functions", name);
  drawChart(card.charts.instances, [
    { name: "busy", color: "var(--busy)", values: s.busy },
    { name: "idle", color: "var(--idle)", values: s.idle },
    { name: "starting", color: "var(--starting)", values: s.starting },
  ]);
  drawChart(card.charts.backlog, [{ name: "messages", color: "#7c3aed", values: s.backlog }]);
  drawChart(card.charts.rate, [
    { name: "arrivals", color: "#0891b2", values: s.arrivals },
    { name: "completions", color: "#16a34a", values: s.completions },
  ]);
  drawChart(card.charts.duration, [
    { name: "p50", color: "#2563eb", values: s.p50 },
    { name: "p99", color: "#dc2626", values: s.p99 },
  ], " ms");
  drawChart(card.charts.eta, [
    { name: "eta", color: "#ea580c", values: s.eta },
    { name: "deadline", color: "#6b7280", values: s.deadline },
  ], " s");
  drawChart(card.charts.cold, [{ name: "cold starts", color: "#f59e0b", values: s.cold }]);
}

// A topic's depth over the history (app.js's sparkline).
function topicDepthHistory(name) {
  return historyOf("topics", name).depth;
}
