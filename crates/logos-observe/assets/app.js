// The logoscore dashboard. One file, no build step, no dependencies: it asks /api/session
// for the CSRF token, follows /api/events (Server-Sent Events: the whole view after every
// change, never polled), re-renders only the table rows that changed, follows the selected
// module's log over /api/modules/NAME/logs, and sends actions with the CSRF token.
// It never holds a token: the session cookie (HttpOnly) is the browser's.
"use strict";

const STATES = ["known", "starting", "ready", "stopping", "stopped", "crashed", "backoff", "failed", "disconnected"];
const $ = (id) => document.getElementById(id);
const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]);
const state = { csrf: null, view: null, rows: new Map(), selected: null, logs: null, graphKey: "" };
// Figures for tests and people: how long each table render took (ms), and how many rows.
window.__logos = { renders: [], lastRows: 0, events: 0 };

function dur(s) {
  if (s == null) return "";
  if (s < 60) return s.toFixed(0) + "s";
  if (s < 3600) return (s / 60).toFixed(0) + "m";
  if (s < 86400) return (s / 3600).toFixed(1) + "h";
  return (s / 86400).toFixed(1) + "d";
}
function lat(s) {
  if (s == null) return "";
  if (s < 1e-3) return (s * 1e6).toFixed(0) + "µs";
  if (s < 1) return (s * 1e3).toFixed(s < 0.01 ? 2 : 1) + "ms";
  return s.toFixed(2) + "s";
}
function bytes(n) {
  if (n == null) return "";
  const u = ["B", "KiB", "MiB", "GiB"];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return n.toFixed(i ? 1 : 0) + " " + u[i];
}
function notice(text, isError) {
  const n = $("notice");
  n.textContent = text;
  n.className = isError ? "error" : "";
}

function rowHtml(m) {
  const s = STATES.includes(m.state) ? m.state : "known";
  const remote = m.location && m.location !== "local";
  // The core did not start a remote module: it can unload (end) it, never load or reload it.
  const loaded = remote || ["starting", "ready", "crashed", "backoff"].includes(s);
  const btn = (a, on) => `<button type="button" data-action="${a}"${on ? "" : " disabled"}>${a}</button>`;
  const errors = m.errors_total ? `<span class="err">${m.errors_total}</span>` : "0";
  return `<td>${esc(m.name)} <small>${esc(m.version)}</small>${m.unhealthy ? ` <span class="err" title="${esc(m.unhealthy)}">unhealthy</span>` : ""}</td>` +
    `<td><span class="badge s-${s}" data-state="${s}">${s}</span></td>` +
    `<td class="pid">${remote ? `<small title="remote module">${esc(m.location)}</small>` : (m.pid ?? "")}</td><td>${dur(m.uptime_seconds)}</td><td>${m.restarts}</td>` +
    `<td>${bytes(m.rss_bytes)}</td><td>${m.cpu_seconds == null ? "" : m.cpu_seconds.toFixed(2) + "s"}</td>` +
    `<td>${m.calls_per_second == null ? "" : m.calls_per_second.toFixed(1)}</td>` +
    `<td>${lat(m.p50_seconds)}</td><td>${lat(m.p99_seconds)}</td><td>${errors}</td>` +
    `<td class="actions">${btn("load", !loaded && s !== "stopping")}${btn("reload", !remote && s !== "stopping")}${btn("unload", loaded)}</td>`;
}

function renderTable(view) {
  const t0 = performance.now();
  const body = $("modules").tBodies[0];
  const seen = new Set();
  let before = null;
  // Rows in view order; only changed rows get new HTML.
  for (let i = view.modules.length - 1; i >= 0; i--) {
    const m = view.modules[i];
    seen.add(m.name);
    let r = state.rows.get(m.name);
    const html = rowHtml(m);
    if (!r) {
      const tr = document.createElement("tr");
      tr.dataset.module = m.name;
      r = { tr, html: "" };
      state.rows.set(m.name, r);
    }
    if (r.html !== html) {
      r.tr.innerHTML = html;
      r.html = html;
    }
    if (r.tr.nextSibling !== before || r.tr.parentNode !== body) body.insertBefore(r.tr, before);
    r.tr.classList.toggle("selected", m.name === state.selected);
    before = r.tr;
  }
  for (const [name, r] of state.rows) {
    if (!seen.has(name)) { r.tr.remove(); state.rows.delete(name); }
  }
  const ready = view.modules.filter((m) => m.state === "ready").length;
  $("summary").textContent = `${ready} of ${view.modules.length} modules ready`;
  window.__logos.renders.push(performance.now() - t0);
  if (window.__logos.renders.length > 1000) window.__logos.renders.shift();
  window.__logos.lastRows = body.rows.length;
}

// Layered layout: a module sits one column right of the deepest module it depends on.
function renderGraph(view) {
  const key = view.modules.map((m) => m.name + ":" + m.state + ":" + m.dependencies.join(",")).join(";");
  if (key === state.graphKey) return;
  state.graphKey = key;
  const svg = $("graph");
  const byName = new Map(view.modules.map((m) => [m.name, m]));
  const depth = new Map();
  const visit = (n, stack) => {
    if (depth.has(n)) return depth.get(n);
    if (stack.has(n)) return 0;
    stack.add(n);
    const m = byName.get(n);
    let d = 0;
    for (const dep of (m ? m.dependencies : [])) if (byName.has(dep)) d = Math.max(d, visit(dep, stack) + 1);
    stack.delete(n);
    depth.set(n, d);
    return d;
  };
  view.modules.forEach((m) => visit(m.name, new Set()));
  const cols = [];
  for (const m of view.modules) (cols[depth.get(m.name)] ||= []).push(m.name);
  const W = 130, H = 26, GX = 60, GY = 10;
  const pos = new Map();
  cols.forEach((names, c) => names.forEach((n, r) => pos.set(n, { x: 10 + c * (W + GX), y: 10 + r * (H + GY) })));
  const width = 20 + cols.length * (W + GX);
  const height = 20 + Math.max(1, ...cols.map((c) => c.length)) * (H + GY);
  // Drawn at its own size (the box scrolls): a few modules stay small, many stay legible.
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  let out = `<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="6" markerHeight="6" orient="auto-start-reverse"><path d="M0 0L10 5L0 10z" fill="#6b7280"/></marker></defs>`;
  for (const m of view.modules) {
    const a = pos.get(m.name);
    for (const dep of m.dependencies) {
      const b = pos.get(dep);
      if (!b) continue;
      out += `<path class="edge" data-from="${esc(m.name)}" data-to="${esc(dep)}" d="M${a.x} ${a.y + H / 2} C${a.x - GX / 2} ${a.y + H / 2} ${b.x + W + GX / 2} ${b.y + H / 2} ${b.x + W} ${b.y + H / 2}"/>`;
    }
  }
  for (const m of view.modules) {
    const p = pos.get(m.name);
    out += `<g class="node s-${esc(m.state)}" data-module="${esc(m.name)}" transform="translate(${p.x} ${p.y})"><rect width="${W}" height="${H}"/><text x="8" y="17">${esc(m.name.length > 18 ? m.name.slice(0, 17) + "…" : m.name)}</text></g>`;
  }
  svg.innerHTML = out;
}

function renderCrashes(view) {
  const ol = $("crashes");
  const html = view.crashes.slice().reverse().map((c) =>
    `<li data-module="${esc(c.module)}"><b>${esc(c.module)}</b> ${esc(c.status)} after ${dur(c.uptime_ms / 1000)}, ${new Date(c.at_ms).toLocaleTimeString()}` +
    (c.stderr.length ? `<pre>${esc(c.stderr.join("\n"))}</pre>` : "") + "</li>").join("");
  if (ol.innerHTML !== html) ol.innerHTML = html || "";
}

function render(view) {
  state.view = view;
  window.__logos.events++;
  renderTable(view);
  renderGraph(view);
  renderCrashes(view);
}

function follow(name) {
  if (state.logs) state.logs.close();
  state.selected = name;
  $("logs-module").textContent = name;
  $("logs").textContent = "";
  for (const [n, r] of state.rows) r.tr.classList.toggle("selected", n === name);
  const es = new EventSource(`/api/modules/${encodeURIComponent(name)}/logs`);
  state.logs = es;
  es.addEventListener("reset", () => { $("logs").textContent = ""; });
  es.addEventListener("line", (e) => {
    const l = JSON.parse(e.data);
    const pre = $("logs");
    const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    const span = document.createElement("span");
    span.className = l.level;
    span.textContent = `${new Date(l.at_ms).toLocaleTimeString()} ${l.level} ${l.text}\n`;
    pre.appendChild(span);
    while (pre.childNodes.length > 500) pre.firstChild.remove();
    if (atEnd) pre.scrollTop = pre.scrollHeight;
  });
  es.addEventListener("lagged", (e) => notice(`log of ${name}: ${e.data} lines skipped (reading too slowly); reconnecting`, true));
}

async function act(name, action) {
  if (action !== "load" && !window.confirm(`${action} ${name}?`)) return;
  notice(`${action} ${name}…`);
  try {
    const r = await fetch(`/api/modules/${encodeURIComponent(name)}/${action}`, {
      method: "POST",
      headers: { "X-CSRF-Token": state.csrf || "" },
      credentials: "same-origin",
    });
    const body = await r.json().catch(() => ({}));
    if (r.ok) notice(`${action} ${name}: ${body.state}`);
    else notice(`${action} ${name} refused (${r.status}): ${body.error || r.statusText}`, true);
  } catch (e) {
    notice(`${action} ${name} failed: ${e}`, true);
  }
}

async function start() {
  const r = await fetch("/api/session", { credentials: "same-origin" });
  if (r.status === 401) { window.location = "/login"; return; }
  const s = await r.json();
  state.csrf = s.csrf;
  $("who").textContent = `as ${s.who} · core ${s.instance}`;
  $("modules").tBodies[0].addEventListener("click", (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    const b = e.target.closest("button[data-action]");
    if (b) act(tr.dataset.module, b.dataset.action);
    else follow(tr.dataset.module);
  });
  const es = new EventSource("/api/events");
  const live = $("live");
  es.addEventListener("open", () => { live.textContent = "live"; live.className = "badge s-ready"; });
  es.addEventListener("error", () => { live.textContent = "reconnecting"; live.className = "badge s-backoff"; });
  es.addEventListener("view", (e) => render(JSON.parse(e.data)));
}

document.addEventListener("DOMContentLoaded", start);
