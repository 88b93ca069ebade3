// spate dashboard: the deadline banner and the admin actions.
//
// The banner names every function whose drain ETA is past its deadline, from
// the newest history sample (history.js); it goes when the ETA is back
// within. The actions (redrive dead letters, roll a function back, change an
// alias's weights) send the admin token the user typed, kept in this
// script's memory only: never a cookie, never web storage. Each asks for
// confirmation and shows the API's answer verbatim. Everything from names,
// errors and answers is inserted as text, never as HTML.
"use strict";

let adminToken = ""; // page memory only

function fmtSeconds(v) {
  if (v === Infinity) return "never (cannot drain)";
  if (v === null || v === undefined) return "–";
  return v >= 120 ? `${(v / 60).toFixed(1)} min` : `${v.toFixed(v < 10 ? 1 : 0)} s`;
}

// --- The deadline banner ---------------------------------------------------------------

function consoleUpdate() {
  const banner = document.getElementById("deadline-banner");
  if (!banner) return;
  const late = [];
  for (const [name, row] of historyLatest("functions"))
    if (row.deadline > 0 && row.eta !== null && row.eta > row.deadline) late.push([name, row]);
  late.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  banner.replaceChildren();
  banner.hidden = late.length === 0;
  for (const [name, row] of late) {
    const p = document.createElement("p");
    p.dataset.function = name;
    const b = document.createElement("strong");
    b.textContent = name;
    p.append("Deadline will be missed: ", b,
      ` — backlog ${Number(row.backlog).toLocaleString("en")} messages, drain ETA ${fmtSeconds(row.eta)},` +
      ` deadline ${fmtSeconds(row.deadline)}`);
    banner.appendChild(p);
  }
}

// --- Actions ------------------------------------------------------------------------------

// Asks in the page (not window.confirm, which a phone may suppress) and
// resolves to true when the user confirms.
function askConfirm(question) {
  const box = document.getElementById("confirm");
  document.getElementById("confirm-text").textContent = question;
  box.hidden = false;
  return new Promise((resolve) => {
    const done = (yes) => {
      box.hidden = true;
      document.getElementById("confirm-yes").onclick = null;
      document.getElementById("confirm-no").onclick = null;
      resolve(yes);
    };
    document.getElementById("confirm-yes").onclick = () => done(true);
    document.getElementById("confirm-no").onclick = () => done(false);
  });
}

// Sends one action and shows its answer, status and body as the API gave them.
async function runAction(form, question, method, path, body) {
  const out = form.querySelector(".result");
  if (!(await askConfirm(question))) {
    out.textContent = "cancelled";
    out.className = "result";
    return;
  }
  const headers = { "Content-Type": "application/json" };
  if (adminToken) headers.Authorization = "Bearer " + adminToken;
  out.textContent = "…";
  try {
    const r = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit" });
    const text = await r.text();
    out.textContent = `HTTP ${r.status} ${r.statusText}\n${text}`;
    out.className = r.ok ? "result ok" : "result bad";
  } catch (e) {
    out.textContent = "cannot reach spated: " + e.message;
    out.className = "result bad";
  }
}

function field(form, name) {
  return form.elements[name].value.trim();
}

function setupActions() {
  const tokenForm = document.getElementById("admin-token-form");
  if (!tokenForm) return;
  tokenForm.addEventListener("submit", (e) => {
    e.preventDefault();
    const input = document.getElementById("admin-token");
    adminToken = input.value.trim();
    input.value = "";
    document.getElementById("admin-state").textContent = adminToken
      ? "an admin token is held in this page's memory (reload to forget it)" : "no admin token";
  });
  document.getElementById("admin-forget").addEventListener("click", () => {
    adminToken = "";
    document.getElementById("admin-state").textContent = "no admin token";
  });

  document.getElementById("act-redrive").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target, topic = field(f, "topic");
    runAction(f, `Redrive the dead letters of '${topic}' to their source topics?`, "POST",
      `/v1/topics/${encodeURIComponent(topic)}/redrive`);
  });
  document.getElementById("act-rollback").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target, fn = field(f, "function"), v = field(f, "version");
    runAction(f, `Roll '${fn}' back to ${v ? "version " + v : "the version before the active one"}?`, "POST",
      `/v1/functions/${encodeURIComponent(fn)}/rollback`, v ? { version: Number(v) } : {});
  });
  document.getElementById("act-alias").addEventListener("submit", (e) => {
    e.preventDefault();
    const f = e.target, fn = field(f, "function"), alias = field(f, "alias");
    const body = { version: Number(field(f, "version")) };
    const wv = field(f, "weight_version"), wp = field(f, "weight_percent");
    if (wv) body.weight_version = Number(wv);
    if (wp) body.weight_percent = Number(wp);
    runAction(f, `Point '${fn}:${alias}' at version ${body.version}` +
      (wv ? ` with ${wp}% to version ${wv}` : " alone") + "?", "PUT",
      `/v1/functions/${encodeURIComponent(fn)}/aliases/${encodeURIComponent(alias)}`, body);
  });
}

setupActions();
