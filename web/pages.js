// spate console pages: a page per function, topic or queue, and source, and
// the cluster's nodes, reached by the address's hash (#/function/NAME,
// #/topic/NAME, #/source/NAME, #/nodes); the overview (app.js) is "#/" and
// links here. Each page reads the /v1 API with the user's token every two
// seconds; the function page also follows its log with the long-poll logs API.
// Every name, error, payload and log line goes into the page as text
// (append/textContent), never as HTML: they come from functions and
// upstream brokers, not from us.
"use strict";

const spatePages = (() => {
  const REFRESH_MS = 2000;
  const LOG_WAIT_MS = 20000; // the logs API's long poll (at most 60000)
  const LOG_KEEP = 500; // lines the page keeps of the tail
  const PAYLOAD_SHOWN = 300; // characters of a dead letter's payload shown
  const DEAD_LETTERS_LISTED = 100;

  // --- Building the page from data, as text only ------------------------------

  // h("td", {class: "num"}, "text", node, ...): strings become text nodes.
  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "class") e.className = v;
      else e.setAttribute(k, v === true ? "" : String(v));
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null || k === false) continue;
      e.append(k instanceof Node ? k : String(k));
    }
    return e;
  }

  const KINDS = { function: "function", topic: "topic", source: "source" };
  // Every function, topic or source name fits this (common/names.h), and
  // every SQS queue's (which may start with '-' or '_'); never "." or "..".
  const NAME = /^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$/;

  // A link to a function, topic or source page; the name is only text.
  function link(kind, name) {
    return h("a", { href: `#/${KINDS[kind]}/${encodeURIComponent(name)}`, class: "page-link" }, name);
  }

  function num(v, unit = "") {
    if (v === null || v === undefined || Number.isNaN(v)) return "–";
    if (typeof v !== "number") return String(v);
    if (Number.isInteger(v)) return v + unit;
    return (Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)) + unit;
  }

  // UTC, to the second: the same on every operator's screen and in spated's log.
  function when(ms) {
    if (!ms) return "–";
    return new Date(ms).toISOString().replace("T", " ").slice(0, 19);
  }

  function yesNo(b) {
    return b ? "yes" : "no";
  }

  // A table in a box that scrolls sideways on a narrow screen. A cell is a
  // string, a node, or {v, cls}.
  function table(cls, heads, rows, empty) {
    if (!rows.length) return h("p", { class: "empty" }, empty || "None.");
    const body = rows.map((r) =>
      h("tr", {}, r.map((c) =>
        c && typeof c === "object" && !(c instanceof Node) ? h("td", { class: c.cls }, c.v) : h("td", {}, c))));
    return h("div", { class: "scroll" },
      h("table", { class: cls }, h("thead", {}, h("tr", {}, heads.map((x) => h("th", {}, x)))),
        h("tbody", {}, body)));
  }

  // Facts as a two-column list: [[label, value], ...].
  function facts(cls, pairs) {
    return h("dl", { class: "facts " + cls }, pairs.map(([k, v]) => h("div", {}, h("dt", {}, k), h("dd", {}, v))));
  }

  function section(title, ...kids) {
    return h("section", { class: "page-section" }, h("h3", {}, title), ...kids);
  }

  // What one function is doing now, in a word: for the overview's cards too.
  function functionState(inst, loadError) {
    if (loadError) return { word: "cannot load", cls: "risk" };
    if (inst.busy > 0) return { word: "busy", cls: "" };
    if (inst.starting > 0) return { word: "starting", cls: "" };
    if (inst.idle > 0) return { word: "idle", cls: "" };
    return { word: "scaled to zero", cls: "none" };
  }

  function deadlineBadge(sc) {
    if (!sc || sc.deadline_s === undefined) return h("span", { class: "badge none" }, "no deadline");
    if (sc.deadline_at_risk) return h("span", { class: "badge risk" }, "DEADLINE AT RISK");
    return h("span", { class: "badge" }, "deadline met");
  }

  // --- Talking to spated --------------------------------------------------------

  // The read token app.js keeps; for the log, which needs the admin scope,
  // the admin token when the user gave one (console.js). Both live in page
  // memory only.
  function authHeaders(admin = false) {
    const t = (admin && typeof adminToken === "string" && adminToken) || (typeof token === "string" ? token : "");
    return t ? { Authorization: "Bearer " + t } : {};
  }

  class ApiError extends Error {
    constructor(status, doc) {
      super(doc && doc.error ? doc.error : "HTTP " + status);
      this.status = status;
      this.code = doc && doc.code;
    }
  }

  async function api(path, signal, admin = false) {
    const r = await fetch(path, { headers: authHeaders(admin), signal });
    let doc = null;
    try { doc = await r.json(); } catch (e) { /* an answer that is not JSON: its status says */ }
    if (!r.ok) throw new ApiError(r.status, doc);
    return doc;
  }

  // Every trigger, following GET /v1/triggers' pages (1,000 at a time; at most
  // 20 pages, which a page of the console never needs more of).
  async function allTriggers(signal) {
    const out = { triggers: [] };
    let after = "";
    for (let i = 0; i < 20; i++) {
      const doc = await api("/v1/triggers?limit=1000" + (after ? "&after=" + encodeURIComponent(after) : ""), signal);
      out.triggers.push(...(doc.triggers || []));
      if (typeof doc.next !== "string") break;
      after = doc.next;
    }
    return out;
  }

  // --- The page's life: one at a time, stopped when the hash changes ------------

  let current = null; // {stop: AbortController, timer}

  function stopPage() {
    if (!current) return;
    current.abort.abort();
    clearTimeout(current.timer);
    current = null;
  }

  // Calls draw(signal) now and every REFRESH_MS until the page changes;
  // draw's errors show in the page's status line.
  function every(page, draw, abort = new AbortController()) {
    const me = { abort, timer: 0 };
    current = me;
    const status = h("span", { class: "page-status" }, "loading…");
    const nav = h("p", { class: "page-nav" }, h("a", { href: "#/" }, "← overview"), " · ",
      h("a", { href: "#/nodes" }, "nodes"), " · ", status);
    const body = h("div", { class: "page-body" });
    page.replaceChildren(nav, body);
    const tick = async () => {
      try {
        await draw(body, me.abort.signal);
        status.textContent = "live · " + when(Date.now()) + " UTC";
        status.className = "page-status";
        page.dataset.loads = String(Number(page.dataset.loads || 0) + 1);
      } catch (e) {
        if (me.abort.signal.aborted) return;
        status.textContent = e.status === 404 ? "not found: " + e.message : "cannot read spated: " + e.message;
        status.className = "page-status bad";
      }
      if (current === me) me.timer = setTimeout(tick, REFRESH_MS);
    };
    tick();
    return me;
  }

  // Keeps a section's element across refreshes (the log tail), replacing
  // the rest of body.
  function redraw(body, parts) {
    body.replaceChildren(...parts.filter(Boolean));
  }

  // --- Function page ----------------------------------------------------------------

  function instancesRow(label, inst, waiting) {
    return [label, { v: num(inst.starting), cls: "num" }, { v: num(inst.idle), cls: "num" },
      { v: num(inst.busy), cls: "num" }, { v: num(inst.stopping), cls: "num" }, { v: num(inst.spare), cls: "num" },
      { v: num(waiting), cls: "num" }];
  }

  function routing(a) {
    if (!a.weight_version) return `version ${a.version}: 100%`;
    return `version ${a.version}: ${100 - a.weight_percent}% · version ${a.weight_version}: ${a.weight_percent}%`;
  }

  function triggersTable(trs, first) {
    return table("triggers", [first === "topic" ? "topic" : "function", "batch size", "batch window",
      "event format", "item failures", "max attempts", "dead letters to", "ordered", "deadline", "paused",
      "depth", "in flight", "retrying", "dead-lettered"],
    trs.map((t) => [
      first === "topic" ? link("topic", t.topic)
        : h("span", {}, link("function", t.function), t.qualifier ? ":" + t.qualifier : ""),
      { v: num(t.batch_size), cls: "num" }, { v: num(t.batch_window_ms, " ms"), cls: "num" },
      t.event_format || "–", yesNo(t.report_batch_item_failures), { v: num(t.max_attempts), cls: "num" },
      t.dlq ? link("topic", t.dlq) : "–", yesNo(t.ordered),
      t.deadline_ms ? num(t.deadline_ms, " ms") : "none", yesNo(t.paused),
      { v: num(t.depth), cls: "num" }, { v: num(t.in_flight), cls: "num" }, { v: num(t.retrying), cls: "num" },
      { v: num(t.dead_lettered), cls: t.dead_lettered > 0 ? "num bad" : "num" }]),
    "No trigger.");
  }

  function recentTable(recent) {
    return table("recent", ["answered (UTC)", "request", "version", "outcome", "duration", "error"],
      recent.map((r) => [when(r.time_ms), h("code", {}, r.request_id), { v: num(r.version), cls: "num" },
        { v: r.outcome, cls: r.outcome === "ok" ? "" : "bad" }, { v: num(r.duration_ms, " ms"), cls: "num" },
        { v: r.error || "", cls: "error-text" }]),
      "No invocation since spated started.");
  }

  async function drawFunction(name, body, signal, tail) {
    const path = "/v1/functions/" + encodeURIComponent(name);
    const [f, trs] = await Promise.all([api(path, signal), allTriggers(signal)]);
    const st = functionState(f.instances, f.load_error);
    const sc = f.scaling || {};
    const st2 = f.stats || {};
    const head = h("div", { class: "page-head" },
      h("h2", {}, h("span", { class: "kind" }, "function "), h("span", { class: "name" }, f.name)),
      h("span", { class: "badge state " + st.cls }, st.word), deadlineBadge(f.scaling));
    const about = facts("about", [
      ["active version", num(f.version)], ["runtime", f.config ? f.config.runtime : "–"],
      ["instances min–max", f.config ? `${f.config.min}–${f.config.max}` : "–"],
      ["timeout", f.config ? num(f.config.timeout_ms, " ms") : "–"], ["updated (UTC)", when(f.updated_ms)],
      ["sha256", h("code", {}, (f.sha256 || "").slice(0, 16))],
      ...(f.load_error ? [["load error", h("span", { class: "bad" }, f.load_error)]] : []),
    ]);
    const inst = table("instances", ["version", "starting", "idle", "busy", "stopping", "spare", "waiting"], [
      instancesRow(`${f.version} (active)`, f.instances, f.waiting),
      ...(f.running_versions || []).map((v) => instancesRow(String(v.version), v.instances, v.waiting)),
    ]);
    const stats = facts("stats", [
      ["invocations", num(st2.invocations)], ["errors", num(st2.errors)], ["timeouts", num(st2.timeouts)],
      ["crashes", num(st2.crashes)], ["rejected", num(st2.rejected)], ["cold starts", num(st2.cold_starts)],
      ["last cold start", num(st2.last_cold_start_us !== undefined ? st2.last_cold_start_us / 1000 : null, " ms")],
      ["spares handed over", num(st2.spare_handovers)],
      ["instance-seconds (spares)", st2.instance_seconds === undefined ? "–"
        : `${num(Math.round(st2.instance_seconds))} (${num(Math.round(st2.spare_instance_seconds))})`],
    ]);
    const scaling = sc.backlog === undefined ? null : facts("scaling", [
      ["backlog", num(sc.backlog)], ["arrivals", num(sc.arrival_per_s, " /s")],
      ["handler time", num(sc.service_ms, " ms")], ["desired instances", num(sc.desired_instances)],
      ["drain ETA", sc.drain_eta_s === null ? (sc.drain_eta_known ? "never (arrivals outpace)" : "not known yet")
        : num(sc.drain_eta_s, " s")],
      ["deadline", sc.deadline_s === undefined ? "none" : num(sc.deadline_s, " s")],
      ["oldest message", num(sc.oldest_age_s, " s")],
    ]);
    const versions = table("versions", ["version", "created (UTC)", "runtime", "memory", "timeout", "sha256", ""],
      (f.versions || []).map((v) => [{ v: num(v.version), cls: "num" }, when(v.created_ms),
        v.config ? v.config.runtime : "–", v.config ? num(v.config.memory_mb, " MB") : "–",
        v.config ? num(v.config.timeout_ms, " ms") : "–", h("code", {}, (v.sha256 || "").slice(0, 16)),
        v.version === f.version ? "active" : (f.running_versions || []).some((r) => r.version === v.version) ? "running" : ""]));
    const aliases = table("aliases", ["alias", "routing", "updated (UTC)"],
      (f.aliases || []).map((a) => [a.name, routing(a), when(a.updated_ms)]), "No alias.");
    const mine = (trs.triggers || []).filter((t) => t.function === f.name);
    redraw(body, [head, about,
      section("Instances by state", inst, stats),
      scaling && section("Scaling", scaling),
      section("Versions", versions),
      section("Aliases", aliases),
      section("Triggers", triggersTable(mine, "topic")),
      section("Recent invocations", recentTable(f.recent || [])),
      tail.box]);
    body.dataset.function = f.name;
  }

  // Follows the function's log: the newest lines, then each new one as the
  // long poll gives it. Needs an admin token; says so when refused.
  function logTail(name, signal) {
    const list = h("ol", { class: "log-lines" });
    const note = h("p", { class: "log-status" }, "reading…");
    const box = section("Log (live)", note, h("div", { class: "log-box" }, list));
    const path = "/v1/functions/" + encodeURIComponent(name) + "/logs";
    const add = (lines) => {
      for (const l of lines) {
        list.append(h("li", { "data-seq": l.seq, class: "log-" + (l.stream || "unknown") },
          h("span", { class: "log-time" }, when(l.time_ms).slice(11)), " ",
          h("span", { class: "log-where" }, `v${l.version ?? "?"} #${l.instance ?? "?"} ${l.stream || ""}`), " ",
          h("span", { class: "log-text" }, l.text)));
      }
      while (list.children.length > LOG_KEEP) list.firstChild.remove();
    };
    (async () => {
      let after = null;
      while (!signal.aborted) {
        try {
          const q = after === null ? "?limit=100" : `?after=${after}&wait=${LOG_WAIT_MS}&limit=500`;
          const doc = await api(path + q, signal, true);
          add(doc.lines || []);
          after = doc.next;
          note.textContent = "following" + (doc.removed ? " (the function was removed)" : "");
          note.className = "log-status";
        } catch (e) {
          if (signal.aborted) return;
          note.textContent = e.status === 401 || e.status === 403
            ? "the log needs an admin token: " + e.message : "cannot read the log: " + e.message;
          note.className = "log-status bad";
          await new Promise((r) => setTimeout(r, e.status === 403 || e.status === 401 ? 10000 : 2000));
        }
      }
    })();
    return { box };
  }

  function functionPage(page, name) {
    const abort = new AbortController();
    const tail = logTail(name, abort.signal);
    every(page, (body, signal) => drawFunction(name, body, signal, tail), abort);
  }

  // --- Topic or queue page --------------------------------------------------------

  async function deadLetters(topic, signal) {
    let doc;
    try {
      doc = await api(`/v1/topics/${encodeURIComponent(topic)}/messages?limit=${DEAD_LETTERS_LISTED}`, signal);
    } catch (e) {
      if (e.status === 404) return h("p", { class: "empty" }, "None yet: ", link("topic", topic), " does not exist.");
      throw e;
    }
    const msgs = doc.messages || [];
    return h("div", { class: "dead-letters", "data-topic": topic },
      h("p", {}, "In ", link("topic", topic), `: ${msgs.length}${msgs.length >= DEAD_LETTERS_LISTED ? "+" : ""}`),
      table("dead", ["seq", "published (UTC)", "from", "attempts", "last error", "key", "payload"],
        msgs.map((m) => [{ v: num(m.seq), cls: "num" }, when(m.published_ms), m.source ? link("topic", m.source) : "–",
          { v: num(m.attempts), cls: "num" }, { v: m.error || "–", cls: "error-text" }, m.key || "",
          h("code", {}, payloadText(m))]), "None."));
  }

  function payloadText(m) {
    const p = m.payload !== undefined ? m.payload : m.payload_base64 !== undefined ? "base64: " + m.payload_base64 : "";
    return p.length > PAYLOAD_SHOWN ? p.slice(0, PAYLOAD_SHOWN) + "…" : p;
  }

  async function drawTopic(name, body, signal) {
    const t = await api("/v1/topics/" + encodeURIComponent(name), signal);
    const r = t.retention || {};
    const head = h("div", { class: "page-head" },
      h("h2", {}, h("span", { class: "kind" }, "topic or queue "), h("span", { class: "name" }, t.name)));
    const about = facts("about", [
      ["depth", num(t.depth)], ["oldest age", num(t.oldest_age_s, " s")], ["in flight", num(t.in_flight)],
      ["published", num(t.published)], ["acknowledged", num(t.acknowledged)],
      ["dead-lettered", h("span", { class: t.dead_lettered > 0 ? "bad" : "" }, num(t.dead_lettered))],
      ["stored", `${num(t.stored)} messages, ${num(t.bytes)} bytes`],
      ["retention", `max age ${r.max_age_ms ? r.max_age_ms + " ms" : "none"}, max bytes ${r.max_bytes || "none"}, ` +
        `max messages ${r.max_messages || "none"}`],
    ]);
    // Where this topic's dead letters are, and whether it holds some itself.
    const dlqs = [...new Set([...(t.dead_letter_topics || []),
      ...((t.dead_letter_topic_of || []).length ? [t.name] : [])])];
    const lists = await Promise.all(dlqs.map((q) => deadLetters(q, signal)));
    const of = (t.dead_letter_topic_of || []).map((x) => h("li", {}, link("topic", x.topic), " → ", link("function", x.function)));
    redraw(body, [head, about,
      section("Triggers", triggersTable(t.triggers || [], "function")),
      of.length && section("Dead-letter topic of", h("ul", {}, of)),
      section("Dead letters", lists.length ? lists : h("p", { class: "empty" }, "No trigger sends dead letters from here."))]);
    body.dataset.topic = t.name;
  }

  // --- Source page ------------------------------------------------------------------

  async function drawSource(name, body, signal) {
    const s = await api("/v1/sources/" + encodeURIComponent(name), signal);
    const head = h("div", { class: "page-head" },
      h("h2", {}, h("span", { class: "kind" }, "source "), h("span", { class: "name" }, s.name)),
      h("span", { class: "badge " + (s.connected ? "" : "risk") }, s.connected ? "connected" : "not connected"));
    redraw(body, [head, facts("about", [
      ["state", s.state], ["connected", yesNo(s.connected)],
      ["last error", s.last_error ? h("span", { class: "bad error-text" }, s.last_error) : "none"],
      ["last error at (UTC)", when(s.last_error_ms)],
      ["into topic", link("topic", s.topic)], ["upstream", h("code", {}, s.url)],
      ["received", num(s.received)], ["committed", num(s.committed)], ["refused", num(s.refused)],
      ["dead-lettered", num(s.dead_lettered)], ["publish failures", num(s.publish_failures)],
      ["lag", s.lag === null || s.lag === undefined ? "not told by the broker" : num(s.lag)],
      ["delivery", s.delivery || "–"], ["runs on", s.runs_on || "–"], ["lease holder", s.lease_holder || "–"],
      ["added (UTC)", when(s.created_ms)],
    ])]);
    body.dataset.source = s.name;
  }

  // --- Nodes --------------------------------------------------------------------------

  function nodesTable(doc) {
    return table("nodes", ["node", "url", "state", "instances", "functions", "last heard"],
      (doc.nodes || []).map((n) => [h("code", {}, n.id + (n.self ? " (this one)" : "")), n.url,
        { v: n.state, cls: n.state === "up" ? "" : "bad" }, { v: num(n.instances), cls: "num" },
        { v: num(n.functions), cls: "num" }, num(n.last_heartbeat_ms_ago, " ms ago")]), "No node.");
  }

  async function drawNodes(body, signal) {
    const doc = await api("/v1/nodes", signal);
    redraw(body, [h("div", { class: "page-head" }, h("h2", {}, "Nodes"),
      h("span", { class: "badge " + (doc.connected === false ? "risk" : "none") },
        doc.cluster ? (doc.connected === false ? "cut off from the cluster" : "cluster") : "single node")),
    nodesTable(doc)]);
  }

  // The overview's nodes section: shown in cluster mode only.
  let overviewNodesTimer = 0;
  async function overviewNodes() {
    const box = document.getElementById("overview-nodes");
    if (!box) return;
    try {
      if (!document.getElementById("overview").hidden) {
        const doc = await api("/v1/nodes");
        box.hidden = !doc.cluster;
        if (doc.cluster) box.replaceChildren(h("h2", {}, h("a", { href: "#/nodes" }, "Nodes")), nodesTable(doc));
      }
    } catch (e) {
      /* a token that may not read: app.js asks for one */
    }
    overviewNodesTimer = setTimeout(overviewNodes, REFRESH_MS);
  }

  // --- Routing --------------------------------------------------------------------------

  function route() {
    stopPage();
    const overview = document.getElementById("overview");
    const page = document.getElementById("page");
    const m = /^#\/(function|topic|source|nodes)(?:\/(.+))?$/.exec(location.hash);
    let name = null;
    try {
      name = m && m[2] ? decodeURIComponent(m[2]) : null;
    } catch (e) {
      name = ""; // a broken %-escape: no name at all
    }
    if (name !== null && !NAME.test(name)) {
      // "..", "a/../../v1/x" or a broken escape: the browser would read
      // another path of the API with the user's token; no page has such a name.
      overview.hidden = true;
      page.hidden = false;
      document.body.dataset.page = "bad-name";
      page.replaceChildren(h("p", { class: "page-nav" }, h("a", { href: "#/" }, "← overview")),
        h("p", { class: "page-status bad" }, `not a ${m[1]} name: `, h("code", {}, m[2].slice(0, 200))));
      return;
    }
    const known = m && (m[1] === "nodes" || name);
    overview.hidden = !!known;
    page.hidden = !known;
    document.body.dataset.page = known ? m[1] : "overview";
    page.dataset.loads = "0";
    if (!known) { document.title = "spate"; return; }
    document.title = `spate · ${m[1]}${name ? " " + name : ""}`;
    if (m[1] === "function") functionPage(page, name);
    else if (m[1] === "topic") every(page, (body, signal) => drawTopic(name, body, signal));
    else if (m[1] === "source") every(page, (body, signal) => drawSource(name, body, signal));
    else every(page, drawNodes);
    window.scrollTo(0, 0);
  }

  window.addEventListener("hashchange", route);
  document.addEventListener("DOMContentLoaded", () => {
    route();
    clearTimeout(overviewNodesTimer);
    overviewNodes();
  });

  return { link, functionState, h };
})();
