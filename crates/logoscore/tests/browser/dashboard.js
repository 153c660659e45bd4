// Drives Debian's Chromium through playwright-core against a running `logoscore run --http`,
// as an operator would: log in, watch the modules table, kill a module and watch it come
// back live, read its log, try actions without the token, click reload, take a screenshot.
// Prints one JSON document of what it saw on stdout; the Rust test asserts on it. Any step
// that does not happen within its deadline throws, and the process exits 1 with the reason.
//
//   node dashboard.js live   BASE TOKEN SCREENSHOT
//   node dashboard.js render BASE TOKEN SCREENSHOT MODULES
"use strict";

const { chromium } = require("playwright-core");
const process = require("node:process");

const [mode, base, token, shot, modules] = process.argv.slice(2);
const STEP = 60_000;

async function login(browser) {
  const ctx = await browser.newContext({ viewport: { width: 1400, height: 1000 } });
  const page = await ctx.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  // The refusals this script provokes (a wrong login, actions without a token) show as
  // failed loads; anything else logged as an error is one.
  const provoked = /^Failed to load resource: the server responded with a status of 40[13] /;
  page.on("console", (m) => { if (m.type() === "error" && !provoked.test(m.text())) errors.push(m.text()); });
  page.on("dialog", (d) => d.accept());
  await page.goto(base + "/");
  if (!page.url().endsWith("/login")) throw new Error("a stranger was not sent to /login: " + page.url());
  await page.fill("#token", "ab".repeat(32));
  await page.click("button[type=submit]");
  await page.waitForSelector("p.error", { timeout: STEP });
  const loginError = await page.textContent("p.error");
  await page.fill("#token", token);
  await page.click("button[type=submit]");
  await page.waitForURL(base + "/", { timeout: STEP });
  await page.waitForSelector("#live.s-ready", { timeout: STEP });
  return { ctx, page, errors, loginError };
}

const pidOf = (page, name) => page.textContent(`tr[data-module="${name}"] td.pid`);

async function live(browser) {
  const { page, errors, loginError } = await login(browser);
  const out = { loginError };
  await page.waitForSelector('tr[data-module="calc"] [data-state="ready"]', { timeout: STEP });
  out.rows = await page.$$eval("#modules tbody tr", (rs) => rs.map((r) => r.dataset.module));
  out.nodes = await page.$$eval("#graph .node", (ns) => ns.map((n) => n.dataset.module));
  out.edges = await page.$$eval("#graph .edge", (es) => es.map((e) => `${e.dataset.from}->${e.dataset.to}`));

  // Every state calc shows from now on, as the page shows it.
  await page.evaluate(() => {
    window.__seen = [];
    const note = () => {
      const s = document.querySelector('tr[data-module="calc"] [data-state]');
      const v = s && s.dataset.state;
      if (v && window.__seen[window.__seen.length - 1] !== v) window.__seen.push(v);
    };
    note();
    new MutationObserver(note).observe(document.querySelector("#modules tbody"), { subtree: true, childList: true, attributes: true });
  });
  const pid = Number(await pidOf(page, "calc"));
  out.killed = pid;
  process.kill(pid, "SIGKILL");
  await page.waitForFunction((old) => {
    const row = document.querySelector('tr[data-module="calc"]');
    return row && row.querySelector('[data-state="ready"]') && Number(row.querySelector("td.pid").textContent) !== old;
  }, pid, { timeout: STEP });
  out.seen = await page.evaluate(() => window.__seen);
  out.restartedPid = Number(await pidOf(page, "calc"));
  await page.waitForSelector('#crashes li[data-module="calc"]', { timeout: STEP });
  out.crash = await page.textContent('#crashes li[data-module="calc"]');

  // Its log, live: the core's lines about the crash and restart.
  await page.click('tr[data-module="calc"] td:first-child');
  await page.waitForFunction(() => document.querySelector("#logs").textContent.includes("to=ready"), null, { timeout: STEP });
  out.log = await page.textContent("#logs");

  // Actions without the token: this page's cookie but no CSRF header, and no cookie at all.
  out.withoutCsrf = await page.evaluate(async () => (await fetch("/api/modules/calc/reload", { method: "POST" })).status);
  const stranger = await (await browser.newContext()).newPage();
  await stranger.goto(base + "/login");
  out.withoutLogin = await stranger.evaluate(async () => (await fetch("/api/modules/calc/reload", { method: "POST" })).status);
  out.pidAfterRefusals = Number(await pidOf(page, "calc"));

  // The reload button, as a person clicks it (the confirm dialog is accepted).
  await page.click('tr[data-module="calc"] button[data-action="reload"]');
  await page.waitForFunction(() => document.querySelector("#notice").textContent.includes("reload calc: ready"), null, { timeout: STEP });
  await page.waitForFunction((old) => {
    const row = document.querySelector('tr[data-module="calc"]');
    return row && row.querySelector('[data-state="ready"]') && Number(row.querySelector("td.pid").textContent) !== old;
  }, out.pidAfterRefusals, { timeout: STEP });
  out.reloadedPid = Number(await pidOf(page, "calc"));
  out.notice = await page.textContent("#notice");
  await page.screenshot({ path: shot, fullPage: true });
  out.errors = errors;
  return out;
}

async function render(browser) {
  const n = Number(modules);
  const { page, errors } = await login(browser);
  await page.waitForFunction((n) => window.__logos.lastRows >= n, n, { timeout: 3 * STEP });
  await page.waitForFunction((n) => document.querySelectorAll('#modules [data-state="ready"]').length >= n, n, { timeout: 3 * STEP });
  // Five more views, each a full update of every row's figures.
  const seen = await page.evaluate(() => window.__logos.events);
  await page.waitForFunction((k) => window.__logos.events >= k + 5, seen, { timeout: STEP });
  const figures = await page.evaluate(() => window.__logos);
  await page.screenshot({ path: shot, fullPage: false });
  const rows = await page.$$eval("#modules tbody tr", (rs) => rs.length);
  const nodes = await page.$$eval("#graph .node", (ns) => ns.length);
  return { rows, nodes, renders: figures.renders, events: figures.events, errors };
}

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const out = mode === "render" ? await render(browser) : await live(browser);
    process.stdout.write(JSON.stringify(out) + "\n");
  } finally {
    await browser.close();
  }
})().catch((e) => {
  process.stderr.write(`dashboard.js ${mode}: ${e.stack || e}\n`);
  process.exit(1);
});
