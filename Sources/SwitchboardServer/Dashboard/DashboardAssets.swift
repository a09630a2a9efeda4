/// The dashboard's page, stylesheet and script (see ``Dashboard``). Kept as plain text here so the binary
/// serves them itself; the script builds every dynamic element with `textContent`, never HTML from data.
enum DashboardAssets {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Switchboard</title>
<link rel="icon" href="/favicon.svg" type="image/svg+xml">
<link rel="stylesheet" href="/dashboard.css">
<script src="/dashboard.js" defer></script>
</head>
<body>
<header>
  <h1>Switchboard</h1>
  <span id="feed-status" class="pill">connecting…</span>
</header>
<main>
  <section class="card wide" aria-labelledby="quotes-title">
    <h2 id="quotes-title">Market data <small>live over <code>/ws</code>, anonymous</small></h2>
    <table id="quotes">
      <thead><tr><th>symbol</th><th>bid</th><th>ask</th><th>last</th><th>seq</th><th>updated</th></tr></thead>
      <tbody></tbody>
    </table>
    <p class="hint" id="quotes-hint">Waiting for quotes on <code>market_data:*</code> (run <code>switchboard serve --demo</code> for a feed).</p>
  </section>

  <section class="card wide" aria-labelledby="admin-title">
    <h2 id="admin-title">Operations</h2>
    <form id="token-form" class="row">
      <label for="token">Admin token</label>
      <input id="token" type="password" autocomplete="off" placeholder="paste an admin JWT (kept in this tab only)">
      <button type="submit">Connect</button>
      <button type="button" id="forget">Forget</button>
    </form>
    <p id="admin-error" class="error" role="alert" hidden></p>
    <div id="admin" hidden>
      <div id="figures" class="figures"></div>
      <h3>Messages per second <small>(published, delivered; last 2 minutes)</small></h3>
      <svg id="chart" viewBox="0 0 600 120" preserveAspectRatio="none" role="img" aria-label="messages per second">
        <polyline id="delivered-line" points=""></polyline>
        <polyline id="published-line" points=""></polyline>
      </svg>
      <p class="legend"><span class="swatch delivered"></span> delivered <span id="delivered-now"></span>
        <span class="swatch published"></span> published <span id="published-now"></span></p>
      <div id="cluster" hidden>
        <h3>Cluster <small id="redis-status"></small></h3>
        <table id="nodes"><thead><tr><th>node</th><th>connections</th><th>subscriptions</th><th>published</th><th>delivered</th></tr></thead><tbody></tbody></table>
      </div>
      <h3>Live channels</h3>
      <table id="channels"><thead><tr><th>channel</th><th>subscribers</th></tr></thead><tbody></tbody></table>
      <div class="forms">
        <form id="broadcast-form" class="stack">
          <h3>Broadcast</h3>
          <label>Target <select id="target-kind"><option value="channel">channel</option><option value="userId">user</option><option value="all">every connection</option></select></label>
          <label>Channel or user <input id="target" placeholder="system_status"></label>
          <label>Event <input id="event" value="notice" required></label>
          <label>Data (JSON) <textarea id="data" rows="3">{"text":"hello from the dashboard"}</textarea></label>
          <label>Key (optional) <input id="key"></label>
          <button type="submit">Publish</button>
          <p id="broadcast-result" class="result" role="status"></p>
        </form>
        <form id="disconnect-form" class="stack">
          <h3>Disconnect</h3>
          <label>What <select id="disconnect-kind"><option value="connection">connection id</option><option value="user">user</option><option value="ip">IP address</option></select></label>
          <label>Id, user or IP <input id="disconnect-target" required></label>
          <label>Block seconds (IP only) <input id="block-seconds" type="number" min="1"></label>
          <label>Reason <input id="reason" placeholder="disconnected by an administrator"></label>
          <button type="submit" class="danger">Disconnect</button>
          <p id="disconnect-result" class="result" role="status"></p>
        </form>
      </div>
    </div>
  </section>
</main>
</body>
</html>
"""#

    /// A switchboard's jack, as the tab's icon.
    static let favicon = #"""
<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect width="32" height="32" rx="7" fill="#182029"/><circle cx="11" cy="11" r="4" fill="#4aa3ff"/><circle cx="21" cy="21" r="4" fill="#3fb950"/><path d="M11 11 L21 21" stroke="#e6edf3" stroke-width="2"/></svg>
"""#

    static let css = #"""
:root { --bg: #0f1419; --card: #182029; --line: #2a3542; --text: #e6edf3; --muted: #8b98a5; --accent: #4aa3ff;
  --up: #3fb950; --down: #f85149; --warn: #d29922; font-family: system-ui, -apple-system, "Segoe UI", sans-serif; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font-size: 15px; }
header { display: flex; align-items: center; gap: 1rem; padding: 0.8rem 1.2rem; border-bottom: 1px solid var(--line); }
h1 { font-size: 1.2rem; margin: 0; }
h2 { font-size: 1.05rem; margin: 0 0 0.8rem; }
h3 { font-size: 0.95rem; margin: 1.2rem 0 0.5rem; color: var(--muted); }
small { color: var(--muted); font-weight: normal; }
main { display: grid; gap: 1rem; padding: 1rem; max-width: 1100px; margin: 0 auto; }
.card { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem; overflow-x: auto; }
.pill { padding: 0.15rem 0.6rem; border-radius: 999px; background: var(--line); font-size: 0.8rem; }
.pill.live { background: #1f3a26; color: var(--up); }
.pill.down { background: #3d1f1f; color: var(--down); }
table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { text-align: right; padding: 0.35rem 0.5rem; border-bottom: 1px solid var(--line); white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
th { color: var(--muted); font-weight: 500; font-size: 0.85rem; }
td.up { color: var(--up); } td.down { color: var(--down); }
.hint { color: var(--muted); font-size: 0.85rem; }
.row { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center; }
.row input { flex: 1 1 16rem; }
input, select, textarea, button { font: inherit; color: var(--text); background: var(--bg); border: 1px solid var(--line);
  border-radius: 6px; padding: 0.45rem 0.6rem; }
button { background: var(--accent); border-color: var(--accent); color: #04111f; cursor: pointer; font-weight: 600; }
button.danger { background: var(--down); border-color: var(--down); }
button[type=button] { background: transparent; color: var(--muted); }
.error { color: var(--down); background: #2d1618; border: 1px solid #5a2326; padding: 0.5rem 0.7rem; border-radius: 6px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(9.5rem, 1fr)); gap: 0.6rem; margin-top: 0.8rem; }
.figure { background: var(--bg); border: 1px solid var(--line); border-radius: 6px; padding: 0.5rem 0.7rem; }
.figure .value { font-size: 1.3rem; font-variant-numeric: tabular-nums; }
.figure .label { color: var(--muted); font-size: 0.78rem; }
svg { width: 100%; height: 120px; background: var(--bg); border: 1px solid var(--line); border-radius: 6px; }
polyline { fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }
#delivered-line { stroke: var(--accent); } #published-line { stroke: var(--warn); }
.legend { color: var(--muted); font-size: 0.85rem; }
.swatch { display: inline-block; width: 0.8rem; height: 0.25rem; vertical-align: middle; margin-left: 0.6rem; }
.swatch.delivered { background: var(--accent); } .swatch.published { background: var(--warn); }
.forms { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; }
.stack { display: flex; flex-direction: column; gap: 0.5rem; }
.stack label { display: flex; flex-direction: column; gap: 0.25rem; color: var(--muted); font-size: 0.85rem; }
.result { min-height: 1.2rem; font-size: 0.9rem; }
.result.ok { color: var(--up); } .result.failed { color: var(--down); }
@media (max-width: 600px) { main { padding: 0.5rem; } .card { padding: 0.7rem; } th, td { padding: 0.3rem; font-size: 0.85rem; } }
"""#

    static let javascript = #"""
"use strict";
// Switchboard dashboard: a quote board over /ws and, with an admin token, the management API.
const symbols = ["AAPL", "MSFT", "GOOG", "BTC-USD", "ETH-USD"];
const $ = (id) => document.getElementById(id);
// Where the board is in each channel's stream: the stream's epoch (from `subscribed`) and the last seq shown.
const lastSeq = {};
const epochs = {};
const rows = {};
let backoff = 500;

function cell(row, text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  row.appendChild(td);
  return td;
}

function setFeedStatus(text, state) {
  const pill = $("feed-status");
  pill.textContent = text;
  pill.className = "pill " + (state || "");
}

function showQuote(message) {
  const quote = message.data || {};
  const symbol = quote.symbol || message.channel.slice("market_data:".length);
  let row = rows[symbol];
  if (!row) {
    row = document.createElement("tr");
    row.dataset.symbol = symbol;
    for (let i = 0; i < 6; i++) cell(row, "");
    $("quotes").tBodies[0].appendChild(row);
    rows[symbol] = row;
    $("quotes-hint").hidden = true;
  }
  const cells = row.children;
  const previous = parseFloat(cells[3].textContent);
  cells[0].textContent = symbol;
  cells[1].textContent = Number(quote.bid).toFixed(2);
  cells[2].textContent = Number(quote.ask).toFixed(2);
  cells[3].textContent = Number(quote.last).toFixed(2);
  cells[3].className = isNaN(previous) ? "" : (quote.last >= previous ? "up" : "down");
  cells[4].textContent = message.seq;
  cells[5].textContent = new Date(message.ts || Date.now()).toLocaleTimeString();
}

// The quote board: subscribes to every symbol, reconnects with jittered backoff and recovers with `since` and
// `epoch`. A `subscribed` of another epoch (the node restarted, the stream was dropped or restarted) starts the
// channel's numbering again, so a new stream's low seqs are not taken for old ones; a seq already shown in the
// same stream is skipped.
function connectFeed() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(scheme + "://" + location.host + "/ws");
  socket.onopen = () => {
    backoff = 500;
    setFeedStatus("live", "live");
    for (const symbol of symbols) {
      const channel = "market_data:" + symbol;
      const request = { type: "subscribe", channel: channel };
      if (lastSeq[channel] && epochs[channel]) {
        request.since = lastSeq[channel];
        request.epoch = epochs[channel];
      }
      socket.send(JSON.stringify(request));
    }
  };
  socket.onmessage = (event) => {
    const message = JSON.parse(event.data);
    const messages = message.type === "batch" ? message.messages : [message];
    for (const m of messages) {
      if (typeof m.channel !== "string" || !m.channel.startsWith("market_data:")) continue;
      if (m.type === "subscribed") {
        if (m.epoch !== epochs[m.channel] || m.recovered === false) delete lastSeq[m.channel];
        epochs[m.channel] = m.epoch;
      } else if (m.type === "message" && !(m.seq <= lastSeq[m.channel])) {
        lastSeq[m.channel] = m.seq;
        showQuote(m);
      }
    }
  };
  socket.onclose = () => {
    setFeedStatus("reconnecting…", "down");
    setTimeout(connectFeed, backoff / 2 + Math.random() * backoff / 2);
    backoff = Math.min(backoff * 2, 10000);
  };
}

// The management API, with the token kept in sessionStorage only.
const tokenKey = "switchboard.adminToken";
const history = [];
let statsTimer = null;

async function api(method, path, body) {
  const headers = { Authorization: "Bearer " + (sessionStorage.getItem(tokenKey) || "") };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch("/api/v1/websocket/" + path, { method: method, headers: headers,
    body: body === undefined ? undefined : JSON.stringify(body) });
  let answer = {};
  try { answer = await response.json(); } catch (e) { /* not JSON */ }
  if (!response.ok) {
    const error = answer.error || {};
    throw new Error(response.status + " " + (error.code || response.statusText) + ": " + (error.message || ""));
  }
  return answer;
}

function showAdminError(error) {
  const box = $("admin-error");
  box.textContent = error ? error.message : "";
  box.hidden = !error;
}

function figure(label, value) {
  const box = document.createElement("div");
  box.className = "figure";
  const number = document.createElement("div");
  number.className = "value";
  number.textContent = value;
  const caption = document.createElement("div");
  caption.className = "label";
  caption.textContent = label;
  box.append(number, caption);
  return box;
}

function fill(table, lines) {
  const body = table.tBodies[0];
  body.replaceChildren();
  for (const line of lines) {
    const row = document.createElement("tr");
    for (const value of line) cell(row, String(value));
    body.appendChild(row);
  }
}

function drawChart() {
  const max = Math.max(1, ...history.map((h) => Math.max(h.delivered, h.published)));
  const points = (key) => history.map((h, i) => (i * 600 / 59).toFixed(1) + "," + (118 - h[key] / max * 110).toFixed(1)).join(" ");
  $("delivered-line").setAttribute("points", points("delivered"));
  $("published-line").setAttribute("points", points("published"));
}

async function refresh() {
  try {
    const stats = await api("GET", "stats");
    const channels = await api("GET", "channels");
    showAdminError(null);
    $("admin").hidden = false;
    const c = stats.connections, m = stats.messages, roles = c.byRole || {};
    $("figures").replaceChildren(
      figure("connections", c.total), figure("anonymous", c.anonymous), figure("users", roles.user || 0),
      figure("admins", (roles.admin || 0) + (roles.super_admin || 0)), figure("channels", stats.channels.total),
      figure("subscriptions", stats.channels.subscriptions), figure("published / s", m.publishedPerSecond.toFixed(1)),
      figure("delivered / s", m.deliveredPerSecond.toFixed(1)), figure("slow consumers closed", stats.slowConsumerDisconnects),
      figure("rate limited", (stats.rateLimited || {}).total || 0), figure("blocked IPs", stats.blockedIPs),
      figure("node", stats.nodeId));
    history.push({ delivered: m.deliveredPerSecond, published: m.publishedPerSecond });
    while (history.length > 60) history.shift();
    drawChart();
    $("delivered-now").textContent = m.deliveredPerSecond.toFixed(1);
    $("published-now").textContent = m.publishedPerSecond.toFixed(1);
    const cluster = stats.cluster;
    $("cluster").hidden = !cluster;
    if (cluster) {
      $("redis-status").textContent = "Redis " + (cluster.redis.up ? "up" : "DOWN");
      fill($("nodes"), cluster.nodes.map((n) => [n.nodeId, n.connections, n.subscriptions, n.published, n.delivered]));
    }
    fill($("channels"), (channels.live || []).map((l) => [l.channel, l.subscribers]));
  } catch (error) {
    showAdminError(error);
    if (String(error.message).startsWith("401") || String(error.message).startsWith("403")) stopStats();
  }
}

function startStats() {
  stopStats();
  refresh();
  statsTimer = setInterval(refresh, 2000);
}

function stopStats() {
  if (statsTimer) clearInterval(statsTimer);
  statsTimer = null;
}

function result(id, text, ok) {
  const line = $(id);
  line.textContent = text;
  line.className = "result " + (ok ? "ok" : "failed");
}

document.addEventListener("DOMContentLoaded", () => {
  connectFeed();
  $("token-form").addEventListener("submit", (event) => {
    event.preventDefault();
    sessionStorage.setItem(tokenKey, $("token").value.trim());
    $("token").value = "";
    startStats();
  });
  $("forget").addEventListener("click", () => {
    sessionStorage.removeItem(tokenKey);
    stopStats();
    $("admin").hidden = true;
  });
  $("broadcast-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    let data;
    try { data = JSON.parse($("data").value); } catch (e) { result("broadcast-result", "data is not JSON: " + e.message, false); return; }
    const body = { event: $("event").value, data: data };
    const kind = $("target-kind").value;
    if (kind === "all") body.all = true; else body[kind] = $("target").value.trim();
    if ($("key").value.trim()) body.key = $("key").value.trim();
    try {
      const answer = await api("POST", "broadcast", body);
      result("broadcast-result", "published: seq " + answer.seq + ", " + answer.recipients + " recipients" + (answer.held ? " (held by the throttle)" : ""), true);
    } catch (error) { result("broadcast-result", error.message, false); }
  });
  $("disconnect-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const kind = $("disconnect-kind").value;
    const target = encodeURIComponent($("disconnect-target").value.trim());
    const path = kind === "connection" ? "disconnect/" + target : "disconnect/" + kind + "/" + target;
    const body = {};
    if ($("reason").value.trim()) body.reason = $("reason").value.trim();
    if (kind === "ip" && $("block-seconds").value) body.blockSeconds = parseInt($("block-seconds").value, 10);
    try {
      const answer = await api("POST", path, body);
      result("disconnect-result", "disconnected " + answer.disconnected + (answer.blockedSeconds ? ", blocked for " + answer.blockedSeconds + " s" : ""), true);
    } catch (error) { result("disconnect-result", error.message, false); }
  });
  if (sessionStorage.getItem(tokenKey)) startStats();
});
"""#
}
