// The Thinnest operator console: one page, hash routes (#/overview, #/calls, #/calls/<id>,
// #/agents, #/agents/<id>, #/keys, #/webhooks), plain browser JavaScript over the JSON API.
//
// Signing in sends the API key once to POST /console/session, which sets an HttpOnly cookie:
// the key is never kept by the page (no storage, the input is cleared). The CSRF token that
// every POST/PATCH/PUT/DELETE must carry lives only in a variable. All text from the API is
// set with textContent (never innerHTML); charts are SVG drawn here.

const SVG = "http://www.w3.org/2000/svg";
const STATUSES = ["starting", "active", "ended", "error", "failed"];
const END_REASONS = {
  user_left: "caller hung up",
  agent_ended: "agent ended it",
  max_duration: "time limit reached",
  ended_by_api: "ended through the API",
  no_show: "caller never joined",
  room_closed: "room closed",
  error: "error",
  livekit_unavailable: "LiveKit unavailable",
};
const LATENCY = [
  ["end_of_turn_delay", "end of turn", "--eot"],
  ["llm_ttft", "LLM first token", "--llm"],
  ["tts_ttfb", "TTS first audio", "--tts"],
];
const LIVE_REFRESH_MS = 3000;

// What the console holds: the CSRF token (never the key), who is signed in, and what the
// current page must stop when it is left (timers, listeners).
const state = { csrf: null, owner: null, key: null, cleanup: [], gen: 0 };
window.thinnestConsole = state; // for people debugging and for the browser tests

// --- DOM helpers ----------------------------------------------------------------------------

/** An element with attributes and children; strings become text nodes (never HTML). */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const $ = (id) => document.getElementById(id);

/** Replace ``el``'s children (null and false are left out, not written as text). */
function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

function view(...children) {
  fill($("view"), children);
}

function toast(text) {
  if (!text) return;
  const el = $("toast");
  el.textContent = text;
  el.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (el.hidden = true), 2500);
}

function confirmDialog(text, ok = "Confirm") {
  const dialog = $("confirm");
  $("confirm-text").textContent = text;
  $("confirm-ok").textContent = ok;
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "";
    dialog.showModal();
  });
}

// --- formatting -----------------------------------------------------------------------------

function when(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  const today = new Date().toDateString() === d.toDateString();
  return today
    ? d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : d.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
}

function seconds(value) {
  if (value === null || value === undefined) return "–";
  if (value < 60) return `${value.toFixed(1)} s`;
  return `${Math.floor(value / 60)} min ${Math.round(value % 60)} s`;
}

function ms(value) {
  return value === null || value === undefined ? "–" : `${Math.round(value * 1000)} ms`;
}

function clock(secs) {
  const t = Math.max(0, secs);
  return `${Math.floor(t / 60)}:${String(Math.floor(t % 60)).padStart(2, "0")}`;
}

function percent(value) {
  return value === null || value === undefined ? "–" : `${(value * 100).toFixed(1)} %`;
}

function statusBadge(status) {
  const live = status === "starting" || status === "active";
  return h("span", { class: `badge ${status}${live ? " live" : ""}` }, live ? `${status} · live` : status);
}

// --- the API --------------------------------------------------------------------------------

/** What a page's request throws once another page was opened meanwhile: its answer would
 * otherwise be drawn over the page the user went to. */
class StaleError extends Error {
  constructor() {
    super(""); // nothing to tell the user: they went elsewhere
  }
}

class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.code = body && body.code;
    this.field = body && body.field;
  }
}

async function api(method, path, body) {
  const gen = state.gen;
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (method !== "GET" && state.csrf) headers["X-CSRF-Token"] = state.csrf;
  let resp;
  try {
    resp = await fetch(path, {
      method,
      credentials: "same-origin",
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ApiError(0, { message: "The Thinnest API is not reachable." });
  }
  const data = resp.status === 204 ? null : await resp.json().catch(() => ({}));
  if (gen !== state.gen && !path.startsWith("/console/session")) throw new StaleError();
  if (resp.status === 204) return null;
  if (!resp.ok) {
    const err = new ApiError(resp.status, data.error || { message: resp.statusText });
    if (resp.status === 401 && !path.startsWith("/console/session")) signedOut(err.message);
    throw err;
  }
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== "" && v !== null && v !== undefined) q.set(k, v);
  const text = q.toString();
  return text ? `?${text}` : "";
}

// --- session (sign in / out) ----------------------------------------------------------------

function signedIn(body) {
  state.csrf = body.csrf_token;
  state.owner = body.owner;
  state.key = body.key;
  $("owner-name").textContent = body.owner.name;
  $("signin").hidden = true;
  $("topbar").hidden = false;
  $("view").hidden = false;
  route();
}

function signedOut(message) {
  stopPage();
  state.gen += 1;
  state.csrf = state.owner = state.key = null;
  $("topbar").hidden = true;
  $("view").hidden = true;
  $("view").replaceChildren();
  $("signin").hidden = false;
  const err = $("signin-error");
  err.textContent = message || "";
  err.hidden = !message;
  $("api-key").focus();
}

$("signin-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = $("api-key");
  const apiKey = input.value.trim();
  const button = event.submitter || $("signin-form").querySelector("button");
  button.disabled = true;
  try {
    const body = await api("POST", "/console/session", { api_key: apiKey });
    input.value = "";
    $("signin-error").hidden = true;
    signedIn(body);
  } catch (err) {
    $("signin-error").textContent = err.message;
    $("signin-error").hidden = false;
    input.setAttribute("aria-invalid", "true");
  } finally {
    button.disabled = false;
  }
});
$("api-key").addEventListener("input", () => $("api-key").removeAttribute("aria-invalid"));

$("sign-out").addEventListener("click", async () => {
  try {
    await api("DELETE", "/console/session");
  } catch (err) {
    if (err.status !== 401) return toast(err.message);
  }
  location.hash = "";
  signedOut("");
});

async function restore() {
  try {
    signedIn(await api("GET", "/console/session"));
  } catch {
    signedOut("");
  }
}

// --- routing --------------------------------------------------------------------------------

function stopPage() {
  for (const stop of state.cleanup.splice(0)) stop();
}

function every(msDelay, fn) {
  const id = setInterval(fn, msDelay);
  state.cleanup.push(() => clearInterval(id));
}

function route() {
  if (!state.csrf) return;
  stopPage();
  state.gen += 1;
  $("toast").hidden = true;
  const [path, search = ""] = location.hash.replace(/^#/, "").split("?");
  const parts = path.split("/").filter(Boolean);
  const params = new URLSearchParams(search);
  const section = parts[0] || "overview";
  for (const a of document.querySelectorAll("[data-nav]")) {
    if (a.dataset.nav === section) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const pages = {
    overview: () => overviewPage(),
    calls: () => (parts[1] ? callPage(decodeURIComponent(parts[1])) : callsPage(params)),
    agents: () => (parts[1] ? agentPage(decodeURIComponent(parts[1])) : agentsPage()),
    keys: () => keysPage(),
    webhooks: () => webhooksPage(parts[1] ? decodeURIComponent(parts[1]) : null),
  };
  const page = pages[section] || pages.overview;
  document.title = `Thinnest console · ${section}`;
  view(h("p", { class: "muted" }, "Loading…"));
  page().catch((err) => {
    if (err instanceof StaleError || err.status === 401) return;
    view(h("p", { class: "banner error", role: "alert" }, err.message));
  });
}
window.addEventListener("hashchange", route);

function pageHead(title, subtitle, ...actions) {
  return h(
    "div",
    { class: "page-head" },
    h("div", {}, h("h1", {}, title), subtitle ? h("p", { class: "sub" }, subtitle) : null),
    h("div", { class: "actions" }, actions),
  );
}

// --- overview -------------------------------------------------------------------------------

async function overviewPage() {
  const stats = await api("GET", "/stats/overview?hours=24");
  const cap = stats.capacity || {};
  const used = cap.max_jobs ? Math.min(1, (cap.active_jobs || 0) / cap.max_jobs) : 0;
  const stat = (label, value, extra) =>
    h("div", { class: "card stat" }, h("div", { class: "label" }, label), h("div", { class: "value" }, value), extra);
  view(
    pageHead("Overview", `The last 24 hours, until ${when(stats.until)}.`),
    h(
      "div",
      { class: "grid stats", id: "overview-stats" },
      stat("Calls", String(stats.calls), h("div", { class: "label" }, `${stats.calls - stats.errors} without an error`)),
      stat("Error rate", percent(stats.error_rate), h("div", { class: "label" }, `${stats.errors} calls failed`)),
      stat("No-show rate", percent(stats.no_show_rate), h("div", { class: "label" }, `${stats.no_shows} callers never joined`)),
      stat(
        "Active calls",
        `${stats.active_calls}`,
        h(
          "div",
          {},
          h("div", { class: "label" }, `${cap.active_jobs ?? 0} of ${cap.max_jobs ?? 0} job slots on ${cap.workers ?? 0} worker(s)`),
          h("div", { class: "meter", title: "capacity in use" }, h("div", { style: `width:${(used * 100).toFixed(1)}%` })),
        ),
      ),
    ),
    h("div", { class: "card" }, h("h2", {}, "Calls per hour"), hourChart(stats.hours || [])),
    h("div", { class: "card" }, h("h2", {}, "Voice-to-voice latency per agent"), agentLatency(stats.agents || [])),
  );
}

function hourChart(hours) {
  const W = 1060, H = 200, pad = { l: 36, r: 8, t: 10, b: 26 };
  const max = Math.max(1, ...hours.map((x) => x.calls));
  const step = niceStep(max);
  const top = Math.ceil(max / step) * step;
  const y = (v) => pad.t + (H - pad.t - pad.b) * (1 - v / top);
  const bw = (W - pad.l - pad.r) / Math.max(1, hours.length);
  const svg = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: "100%", role: "img", "aria-label": "Calls per hour" });
  for (let v = 0; v <= top; v += step) {
    svg.append(s("line", { class: "grid-line", x1: pad.l, x2: W - pad.r, y1: y(v), y2: y(v) }));
    svg.append(s("text", { x: pad.l - 6, y: y(v) + 4, "text-anchor": "end" }, String(v)));
  }
  hours.forEach((hour, i) => {
    const x = pad.l + i * bw + bw * 0.15;
    const w = bw * 0.7;
    const ok = hour.calls - hour.failed;
    const label = `${new Date(hour.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })}: ${hour.calls} calls, ${hour.failed} failed`;
    const g = s("g", { "data-calls": hour.calls }, s("title", {}, label));
    if (ok > 0) g.append(s("rect", { class: "calls", x, width: w, y: y(hour.calls), height: y(hour.failed) - y(hour.calls), rx: 2 }));
    if (hour.failed > 0) g.append(s("rect", { class: "failed", x, width: w, y: y(hour.failed), height: y(0) - y(hour.failed), rx: 2 }));
    svg.append(g);
    if (i % 3 === 0) {
      const t = new Date(hour.hour).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      svg.append(s("text", { x: x + w / 2, y: H - 8, "text-anchor": "middle" }, t));
    }
  });
  return h(
    "div",
    {},
    svg,
    h("div", { class: "legend" }, h("span", {}, h("i", { style: "background:var(--accent)" }), "calls"), h("span", {}, h("i", { style: "background:var(--danger)" }), "failed")),
  );
}

function niceStep(max) {
  for (const step of [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000]) if (max / step <= 5) return step;
  return 10000;
}

function agentLatency(agents) {
  if (!agents.length) return h("p", { class: "empty" }, "No calls in this period.");
  const max = Math.max(0.5, ...agents.map((a) => a.v2v_p95 || a.v2v_p50 || 0));
  const rows = agents.map((a) => {
    const W = 320, H = 22;
    const bar = s("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img", "aria-label": `p50 ${ms(a.v2v_p50)}, p95 ${ms(a.v2v_p95)}` });
    if (a.v2v_p95) bar.append(s("rect", { class: "p95", x: 0, y: 4, height: 14, rx: 3, width: (W * a.v2v_p95) / max }));
    if (a.v2v_p50) bar.append(s("rect", { class: "p50", x: 0, y: 4, height: 14, rx: 3, width: (W * a.v2v_p50) / max }));
    return h(
      "tr",
      { "data-agent": a.agent_id },
      h("td", {}, h("a", { href: `#/calls?agent_id=${encodeURIComponent(a.agent_id)}` }, a.name || a.agent_id)),
      h("td", {}, String(a.calls)),
      h("td", {}, String(a.turns)),
      h("td", {}, ms(a.v2v_p50)),
      h("td", {}, ms(a.v2v_p95)),
      h("td", {}, bar),
    );
  });
  return h(
    "div",
    {},
    h(
      "table",
      { class: "list" },
      h("thead", {}, h("tr", {}, ["Agent", "Calls", "Turns", "p50", "p95", ""].map((t) => h("th", {}, t)))),
      h("tbody", {}, rows),
    ),
    h("div", { class: "legend" }, h("span", {}, h("i", { style: "background:var(--accent)" }), "p50"), h("span", {}, h("i", { style: "background:#9bd3b3" }), "p95")),
  );
}

// --- calls ----------------------------------------------------------------------------------

const PAGE_SIZE = 20;

async function callsPage(params) {
  const filters = {
    agent_id: params.get("agent_id") || "",
    status: params.get("status") || "",
    end_reason: params.get("end_reason") || "",
    q: params.get("q") || "",
    since: params.get("since") || "",
    until: params.get("until") || "",
  };
  const offset = Number(params.get("offset") || 0);
  const agents = await api("GET", "/agents");
  const names = new Map(agents.map((a) => [a.id, a.name]));
  const tbody = h("tbody", { id: "calls-body" });
  const pager = h("div", { class: "pager" });
  const select = (name, label, options) =>
    h(
      "div",
      { class: "field" },
      h("label", { for: `f-${name}` }, label),
      h(
        "select",
        { id: `f-${name}`, name },
        h("option", { value: "" }, "any"),
        options.map(([value, text]) => h("option", { value, selected: filters[name] === value }, text)),
      ),
    );
  const dateField = (name, label) =>
    h("div", { class: "field" }, h("label", { for: `f-${name}` }, label), h("input", { id: `f-${name}`, name, type: "datetime-local", value: toLocalInput(filters[name]) }));
  const form = h(
    "form",
    { class: "filters", id: "calls-filters", role: "search" },
    h("div", { class: "field" }, h("label", { for: "f-q" }, "Search transcripts"), h("input", { id: "f-q", name: "q", type: "search", value: filters.q, placeholder: "words said in the call" })),
    select("agent_id", "Agent", agents.map((a) => [a.id, a.name])),
    select("status", "Status", STATUSES.map((x) => [x, x])),
    select("end_reason", "End reason", Object.entries(END_REASONS)),
    dateField("since", "From"),
    dateField("until", "To"),
    h("button", { type: "submit", class: "primary" }, "Filter"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const next = {};
    for (const [k, v] of data.entries()) next[k] = k === "since" || k === "until" ? fromLocalInput(v) : String(v).trim();
    location.hash = `#/calls${query(next)}`;
  });
  form.addEventListener("change", (event) => {
    if (event.target.tagName === "SELECT") form.requestSubmit();
  });

  async function load() {
    const page = await api("GET", `/voice/sessions${query({ ...filters, limit: PAGE_SIZE, offset })}`);
    tbody.replaceChildren(
      ...page.data.map((c) =>
        h(
          "tr",
          { class: "link", "data-session": c.id, "data-status": c.status, onclick: () => (location.hash = `#/calls/${encodeURIComponent(c.id)}`) },
          h("td", {}, when(c.created_at)),
          h("td", {}, names.get(c.agent_id) || h("span", { class: "muted" }, c.agent_id)),
          h("td", {}, statusBadge(c.status)),
          h("td", {}, seconds(c.duration)),
          h("td", {}, c.end_reason ? END_REASONS[c.end_reason] || c.end_reason : "–"),
          h("td", {}, c.recording ? "yes" : "–"),
          h("td", {}, h("a", { class: "mono", href: `#/calls/${encodeURIComponent(c.id)}` }, c.id)),
        ),
      ),
    );
    if (!page.data.length) tbody.append(h("tr", {}, h("td", { colspan: 7, class: "empty" }, "No calls match these filters.")));
    const last = Math.min(page.total, offset + page.data.length);
    const go = (o) => () => (location.hash = `#/calls${query({ ...filters, offset: o || "" })}`);
    pager.replaceChildren(
      h("span", {}, page.total ? `${offset + 1}–${last} of ${page.total}` : "0 calls"),
      h(
        "span",
        { class: "actions" },
        h("button", { type: "button", disabled: offset === 0, onclick: go(Math.max(0, offset - PAGE_SIZE)) }, "← Newer"),
        h("button", { type: "button", disabled: last >= page.total, onclick: go(offset + PAGE_SIZE) }, "Older →"),
      ),
    );
    return page.data.some((c) => c.status === "starting" || c.status === "active");
  }

  view(
    pageHead("Calls", "Every session of your agents, newest first."),
    h(
      "div",
      { class: "card" },
      form,
      h(
        "table",
        { class: "list", id: "calls" },
        h("thead", {}, h("tr", {}, ["Started", "Agent", "Status", "Duration", "End reason", "Recorded", "Session"].map((t) => h("th", {}, t)))),
        tbody,
      ),
      pager,
    ),
  );
  let live = await load();
  // Refresh while a call on the page may still change (starting or active).
  every(LIVE_REFRESH_MS, async () => {
    if (live) live = await load().catch(() => live);
  });
}

function toLocalInput(iso) {
  if (!iso) return "";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return "";
  return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  return value ? new Date(value).toISOString() : "";
}

// --- one call -------------------------------------------------------------------------------

async function callPage(id) {
  const path = `/voice/sessions/${encodeURIComponent(id)}`;
  let call = await api("GET", path);
  // The agent may have been deleted since: the call is shown with its id.
  const agent = await api("GET", `/agents/${encodeURIComponent(call.agent_id)}`).catch((err) => {
    if (err instanceof StaleError) throw err;
    return null;
  });
  const audio = call.recording ? h("audio", { controls: true, preload: "metadata", id: "recording", src: `${path}/recording` }) : null;
  const head = h("div", { class: "card" });
  const transcript = h("ol", { class: "transcript", id: "transcript" });
  const tools = h("div", { class: "tools", id: "tool-calls" });

  function render() {
    const live = call.status === "starting" || call.status === "active";
    const item = (label, ...value) => h("div", {}, h("div", { class: "label" }, label), h("div", { class: "value" }, value));
    fill(
      head,
      h(
        "div",
        { class: "detail-head" },
        item("Status", statusBadge(call.status)),
        item("Agent", agent ? h("a", { href: `#/agents/${encodeURIComponent(agent.id)}` }, agent.name) : call.agent_id),
        item("Started", when(call.started_at || call.created_at)),
        item("Duration", seconds(call.duration)),
        item("End reason", h("span", { id: "end-reason" }, call.end_reason ? `${END_REASONS[call.end_reason] || call.end_reason} (${call.end_reason})` : "–")),
      ),
      call.error ? h("p", { class: "banner error", id: "call-error" }, `Error: ${call.error}`) : null,
      live
        ? h("div", { class: "actions", style: "margin-top:12px" }, h("button", { type: "button", class: "danger", onclick: endCall }, "End call"))
        : null,
      audio ? h("div", { style: "margin-top:12px" }, h("div", { class: "label muted" }, "Recording (caller left, agent right)"), audio) : null,
    );
    renderTranscript(call, transcript, audio);
    tools.replaceChildren(...call.tool_calls.map(toolCall));
    if (!call.tool_calls.length) tools.append(h("p", { class: "muted" }, "No tool calls."));
  }

  async function endCall() {
    if (!(await confirmDialog("End this call now? The caller is disconnected.", "End call"))) return;
    try {
      call = await api("POST", `${path}/end`);
      render();
    } catch (err) {
      toast(err.message);
    }
  }

  view(
    pageHead("Call", null, h("a", { class: "button", href: "#/calls" }, "← All calls")),
    h("p", { class: "mono muted", style: "margin-top:-12px" }, call.id),
    head,
    h("div", { class: "card" }, h("div", { class: "page-head", style: "margin:0 0 8px" }, h("h2", { style: "margin:0" }, "Transcript"), latencyLegend()), transcript),
    h("div", { class: "card" }, h("h2", {}, "Tool calls"), tools),
  );
  render();
  if (audio) followAudio(audio, transcript);
  every(LIVE_REFRESH_MS, async () => {
    if (call.status !== "starting" && call.status !== "active") return;
    call = await api("GET", path).catch(() => call);
    render();
  });
}

/** The turn's start in the recording, in seconds (null without the timestamps). */
function offsetOf(call, turn) {
  if (!call.recording_started_at || !turn.started_at) return null;
  return (new Date(turn.started_at) - new Date(call.recording_started_at)) / 1000;
}

function renderTranscript(call, list, audio) {
  const start = new Date(call.started_at || call.created_at);
  const turns = call.transcript;
  list.replaceChildren(
    ...turns.map((turn) => {
      const offset = offsetOf(call, turn);
      const at = offset !== null ? offset : turn.started_at ? (new Date(turn.started_at) - start) / 1000 : null;
      const who = turn.role === "user" ? "Caller" : "Agent";
      let cut = null;
      if (turn.interrupted) {
        // The engine marks the turn that was cut off; the other side spoke over it.
        const by = turn.role === "user" ? "the agent" : "the caller";
        cut = h("span", { class: "badge interrupted", title: `${who} was cut off by ${by}` }, `interrupted by ${by}`);
      }
      const li = h(
        "li",
        {
          class: `${turn.role}${turn.interrupted ? " interrupted" : ""}`,
          "data-seq": turn.seq,
          "data-role": turn.role,
          "data-offset": offset === null ? "" : offset.toFixed(2),
          title: offset !== null ? "Play from here" : null,
        },
        h("span", { class: "time" }, at === null ? "" : clock(at)),
        h("div", {}, h("span", { class: "who" }, who), cut, h("p", { class: "text" }, turn.text), latencyBar(turn.latency || {})),
      );
      if (audio && offset !== null) {
        const seek = () => {
          audio.currentTime = Math.max(0, offset);
          audio.play().catch(() => {});
        };
        li.tabIndex = 0;
        li.addEventListener("click", seek);
        li.addEventListener("keydown", (event) => {
          if (event.key === "Enter" || event.key === " ") {
            event.preventDefault();
            seek();
          }
        });
      }
      return li;
    }),
  );
  if (!turns.length) list.append(h("p", { class: "muted" }, "Nothing was said."));
}

/** Highlight the line being heard while the recording plays. */
function followAudio(audio, list) {
  const update = () => {
    const t = audio.currentTime;
    // The line that started last before this moment (turns may overlap: a barge-in).
    let current = null;
    let best = -Infinity;
    for (const li of list.children) {
      const offset = li.dataset.offset;
      if (offset === "" || offset === undefined) continue;
      const at = Number(offset);
      if (at <= t + 0.05 && at >= best) [current, best] = [li, at];
    }
    for (const li of list.querySelectorAll("li.playing")) if (li !== current) li.classList.remove("playing");
    if (current && !current.classList.contains("playing")) {
      current.classList.add("playing");
      current.scrollIntoView({ block: "nearest", behavior: "smooth" });
    }
  };
  audio.addEventListener("timeupdate", update);
  audio.addEventListener("seeked", update);
  state.cleanup.push(() => audio.pause());
}

function latencyLegend() {
  return h(
    "div",
    { class: "legend" },
    LATENCY.map(([, label, color]) => h("span", {}, h("i", { style: `background:var(${color})` }), label)),
    h("span", {}, h("i", { style: "background:var(--other)" }), "other"),
  );
}

/** A turn's latency as a stacked bar: end of turn, LLM first token, TTS first audio, rest. */
function latencyBar(latency) {
  const total = latency.voice_to_voice;
  const parts = LATENCY.filter(([k]) => typeof latency[k] === "number");
  if (typeof total !== "number" && !parts.length) return null;
  const sum = parts.reduce((acc, [k]) => acc + latency[k], 0);
  const whole = Math.max(total || 0, sum, 0.001);
  const W = 260, H = 12, scale = W / Math.max(whole, 2);
  const svg = s("svg", { class: "chart latency", viewBox: `0 0 ${W} ${H}`, width: W, height: H, role: "img" });
  let x = 0;
  const described = [];
  for (const [k, label, color] of parts) {
    const w = latency[k] * scale;
    svg.append(s("rect", { x, y: 0, width: Math.max(w, 1), height: H, style: `fill:var(${color})` }, s("title", {}, `${label}: ${ms(latency[k])}`)));
    described.push(`${label} ${ms(latency[k])}`);
    x += w;
  }
  if (typeof total === "number" && total > sum) {
    svg.append(s("rect", { x, y: 0, width: (total - sum) * scale, height: H, style: "fill:var(--other)" }, s("title", {}, `other: ${ms(total - sum)}`)));
  }
  if (typeof latency.stt === "number") described.push(`STT ${ms(latency.stt)}`);
  svg.setAttribute("aria-label", described.join(", "));
  return h(
    "div",
    { class: "latency-bar" },
    svg,
    h("span", {}, typeof total === "number" ? `voice to voice ${ms(total)}` : ""),
    typeof latency.stt === "number" ? h("span", {}, `· STT ${ms(latency.stt)}`) : null,
  );
}

function toolCall(call) {
  const failed = Boolean(call.error);
  return h(
    "div",
    { class: `tool${failed ? " failed" : ""}`, "data-tool": call.name },
    h(
      "div",
      { class: "actions" },
      h("strong", { class: "mono" }, call.name),
      h("span", { class: `badge ${failed ? "error" : "ended"}` }, failed ? "failed" : "ok"),
      h("span", { class: "muted" }, `${when(call.created_at)} · ${ms(call.duration)}`),
    ),
    h("pre", {}, `arguments: ${JSON.stringify(call.arguments, null, 2)}`),
    call.result !== null && call.result !== undefined ? h("pre", {}, `result: ${call.result}`) : null,
    failed ? h("pre", { class: "field-error" }, `error: ${call.error}`) : null,
  );
}

// --- agents ---------------------------------------------------------------------------------

async function agentsPage() {
  const agents = await api("GET", "/agents");
  view(
    pageHead("Agents", "What each agent says, hears with and can do.", h("a", { class: "button primary", href: "#/agents/new" }, "New agent")),
    h(
      "div",
      { class: "card" },
      h(
        "table",
        { class: "list", id: "agents" },
        h("thead", {}, h("tr", {}, ["Name", "Language", "Voice", "LLM", "Recording", "Max duration", "Updated", ""].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          agents.map((a) =>
            h(
              "tr",
              { "data-agent": a.id },
              h("td", {}, h("a", { href: `#/agents/${encodeURIComponent(a.id)}` }, a.name)),
              h("td", {}, a.language),
              h("td", {}, a.voice || "default"),
              h("td", {}, a.providers && a.providers.llm ? a.providers.llm.name : "–"),
              h("td", {}, a.recording ? "on" : "off"),
              h("td", {}, a.max_duration ? seconds(a.max_duration) : "–"),
              h("td", {}, when(a.updated_at)),
              h("td", {}, h("a", { class: "button small", href: testCallUrl(a.id), target: "_blank", rel: "noopener" }, "Test call")),
            ),
          ),
          agents.length ? null : h("tr", {}, h("td", { colspan: 8, class: "empty" }, "No agents yet.")),
        ),
      ),
    ),
  );
}

function testCallUrl(id) {
  return `/demo?agent=${encodeURIComponent(id)}`;
}

const AGENT_FIELDS = ["name", "instructions", "greeting", "language", "voice", "recording", "max_duration", "providers", "tools"];

async function agentPage(id) {
  const isNew = id === "new";
  const agent = isNew ? null : await api("GET", `/agents/${encodeURIComponent(id)}`);
  const v = agent || {};
  const field = (name, label, control, hint) =>
    h(
      "div",
      { class: "field", "data-field": name },
      h("label", { for: `a-${name}` }, label),
      control,
      hint ? h("span", { class: "hint" }, hint) : null,
      h("p", { class: "field-error", id: `a-${name}-error`, hidden: true }),
    );
  const text = (name, value, attrs = {}) => h("input", { id: `a-${name}`, name, type: "text", value: value ?? "", "aria-describedby": `a-${name}-error`, ...attrs });
  const area = (name, value, cls = "") => {
    const el = h("textarea", { id: `a-${name}`, name, class: cls, spellcheck: cls ? "false" : null, "aria-describedby": `a-${name}-error` });
    el.value = value ?? "";
    return el;
  };
  const json = (value, fallback) => JSON.stringify(value ?? fallback, null, 2);
  const banner = h("div", { id: "agent-banner" });
  const form = h(
    "form",
    { class: "form card", id: "agent-form", novalidate: true },
    h(
      "div",
      { class: "row" },
      field("name", "Name", text("name", v.name, { required: true })),
      field("language", "Language", text("language", v.language ?? "en"), "BCP 47, e.g. en or en-GB"),
      field("voice", "Voice", text("voice", v.voice, { placeholder: "the TTS default" })),
    ),
    field("instructions", "Instructions", area("instructions", v.instructions ?? "You are a helpful, concise voice assistant.")),
    field("greeting", "Greeting", text("greeting", v.greeting), "said first; empty: the agent waits for the caller"),
    h(
      "div",
      { class: "row" },
      field("max_duration", "Max duration (s)", h("input", { id: "a-max_duration", name: "max_duration", type: "text", inputmode: "numeric", value: v.max_duration ?? "" })),
      h(
        "div",
        { class: "field", "data-field": "recording" },
        h("label", {}, "Recording"),
        h("label", { class: "field check" }, h("input", { id: "a-recording", name: "recording", type: "checkbox", checked: Boolean(v.recording) }), "record calls"),
        h("p", { class: "field-error", id: "a-recording-error", hidden: true }),
      ),
    ),
    h(
      "div",
      { class: "grid two" },
      field("providers", "Providers (JSON)", area("providers", json(v.providers, {}), "code"), "stt, llm, tts, vad, turn_detection: {name, options}"),
      field("tools", "Tools (JSON)", area("tools", json(v.tools, []), "code"), "HTTP tools: [{name, description, parameters, url, method}]"),
    ),
    h(
      "div",
      { class: "actions" },
      h("button", { type: "submit", class: "primary" }, isNew ? "Create agent" : "Save"),
      isNew ? null : h("a", { class: "button", href: testCallUrl(v.id), target: "_blank", rel: "noopener" }, "Test call"),
      isNew ? null : h("button", { type: "button", class: "quiet", onclick: remove }, "Delete"),
    ),
  );

  function showError(name, message) {
    const target = AGENT_FIELDS.find((f) => name === f || name.startsWith(`${f}.`)) || null;
    if (!target) {
      banner.replaceChildren(h("p", { class: "banner error", role: "alert" }, message));
      return;
    }
    const err = $(`a-${target}-error`);
    err.textContent = message;
    err.hidden = false;
    $(`a-${target}`).setAttribute("aria-invalid", "true");
    $(`a-${target}`).focus();
  }

  function clearErrors() {
    banner.replaceChildren();
    for (const el of form.querySelectorAll(".field-error")) {
      el.hidden = true;
      el.textContent = "";
    }
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function collect() {
    const get = (n) => form.elements[n].value;
    const body = {
      name: get("name").trim(),
      instructions: get("instructions"),
      greeting: get("greeting") === "" ? null : get("greeting"),
      language: get("language").trim(),
      voice: get("voice").trim() === "" ? null : get("voice").trim(),
      recording: form.elements.recording.checked,
    };
    const dur = get("max_duration").trim();
    if (dur !== "") {
      if (!/^\d+$/.test(dur)) throw Object.assign(new Error("a whole number of seconds"), { field: "max_duration" });
      body.max_duration = Number(dur);
    }
    for (const name of ["providers", "tools"]) {
      try {
        body[name] = JSON.parse(get(name) || (name === "tools" ? "[]" : "{}"));
      } catch (err) {
        throw Object.assign(new Error(`not valid JSON: ${err.message}`), { field: name });
      }
    }
    return body;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearErrors();
    let body;
    try {
      body = collect();
    } catch (err) {
      return showError(err.field, err.message);
    }
    const button = form.querySelector("button[type=submit]");
    button.disabled = true;
    try {
      const saved = isNew
        ? await api("POST", "/agents", body)
        : await api("PATCH", `/agents/${encodeURIComponent(v.id)}`, body);
      toast(isNew ? "Agent created" : "Saved");
      if (isNew) {
        location.hash = `#/agents/${encodeURIComponent(saved.id)}`;
        return;
      }
      banner.replaceChildren(
        h("p", { class: "banner ok", id: "agent-saved" }, `Saved at ${when(saved.updated_at)}.`),
        ...(saved.warnings || []).map((w) => h("p", { class: "banner warn" }, w)),
      );
    } catch (err) {
      showError(err.field || "", err.message);
    } finally {
      button.disabled = false;
    }
  });

  async function remove() {
    if (!(await confirmDialog(`Delete the agent "${v.name}"? Its past calls are kept.`, "Delete"))) return;
    try {
      await api("DELETE", `/agents/${encodeURIComponent(v.id)}`);
      location.hash = "#/agents";
    } catch (err) {
      toast(err.message);
    }
  }

  view(
    pageHead(isNew ? "New agent" : v.name, isNew ? "Defaults are the offline providers." : h("span", { class: "mono" }, v.id), h("a", { class: "button", href: "#/agents" }, "← All agents")),
    banner,
    form,
  );
}

// --- keys -----------------------------------------------------------------------------------

async function keysPage() {
  const [keys, agents] = await Promise.all([api("GET", "/keys"), api("GET", "/agents")]);
  const names = new Map(agents.map((a) => [a.id, a.name]));
  const created = h("div", { id: "key-created" });
  const err = h("p", { class: "field-error", id: "key-error", role: "alert", hidden: true });
  const kind = h("select", { id: "k-kind", name: "kind" }, h("option", { value: "secret" }, "secret (server side)"), h("option", { value: "publishable" }, "publishable (browser)"));
  const pubFields = h(
    "div",
    { class: "row", hidden: true },
    h(
      "div",
      { class: "field" },
      h("label", { for: "k-agents" }, "Agents it may call"),
      h("select", { id: "k-agents", name: "agents", multiple: true, size: Math.min(4, Math.max(2, agents.length)) }, agents.map((a) => h("option", { value: a.id }, a.name))),
    ),
    h("div", { class: "field" }, h("label", { for: "k-origins" }, "Origins"), h("input", { id: "k-origins", name: "origins", type: "text", placeholder: "https://example.com, …" })),
    h("div", { class: "field" }, h("label", { for: "k-rate" }, "Starts per minute"), h("input", { id: "k-rate", name: "rate_limit_per_minute", type: "number", min: 1, placeholder: "server default" })),
  );
  kind.addEventListener("change", () => (pubFields.hidden = kind.value !== "publishable"));
  const form = h(
    "form",
    { class: "form card", id: "key-form" },
    h("h2", {}, "Create a key"),
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: "k-name" }, "Name"), h("input", { id: "k-name", name: "name", type: "text", placeholder: "e.g. production backend" })),
      h("div", { class: "field" }, h("label", { for: "k-kind" }, "Kind"), kind),
      h("div", { class: "field" }, h("label", { for: "k-max" }, "Max open sessions"), h("input", { id: "k-max", name: "max_open_sessions", type: "number", min: 1, placeholder: "default" })),
    ),
    pubFields,
    err,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Create key")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    err.hidden = true;
    const f = form.elements;
    const body = { name: f.name.value.trim(), kind: kind.value };
    if (f.max_open_sessions.value) body.max_open_sessions = Number(f.max_open_sessions.value);
    if (kind.value === "publishable") {
      body.agents = [...f.agents.selectedOptions].map((o) => o.value);
      body.origins = f.origins.value.split(/[\s,]+/).filter(Boolean);
      if (f.rate_limit_per_minute.value) body.rate_limit_per_minute = Number(f.rate_limit_per_minute.value);
    }
    try {
      const key = await api("POST", "/keys", body);
      form.reset();
      pubFields.hidden = true;
      await renderList();
      showCreated(key);
    } catch (e) {
      err.textContent = e.field ? `${e.field}: ${e.message}` : e.message;
      err.hidden = false;
    }
  });

  function showCreated(key) {
    const code = h("code", { id: "new-key" }, key.key);
    created.replaceChildren(
      h(
        "div",
        { class: "card banner ok" },
        h("strong", {}, `Key "${key.name || key.prefix}" created. Copy it now: it is shown only once.`),
        h(
          "div",
          { class: "secret" },
          code,
          h(
            "button",
            {
              type: "button",
              onclick: async () => {
                try {
                  await navigator.clipboard.writeText(key.key);
                  toast("Copied");
                } catch {
                  getSelection().selectAllChildren(code);
                  toast("Select and copy the key");
                }
              },
            },
            "Copy",
          ),
          h("button", { type: "button", class: "quiet", onclick: () => created.replaceChildren() }, "Done"),
        ),
      ),
    );
  }

  const tbody = h("tbody", {});
  async function renderList(list) {
    const rows = list || (await api("GET", "/keys"));
    tbody.replaceChildren(
      ...rows.map((k) => {
        const revoked = Boolean(k.revoked_at);
        const current = state.key && state.key.id === k.id;
        const limits =
          k.kind === "publishable"
            ? h(
                "div",
                { class: "chips" },
                (k.allowed_agents || []).map((a) => h("span", { class: "chip" }, `agent: ${names.get(a) || a}`)),
                (k.allowed_origins || []).map((o) => h("span", { class: "chip" }, o)),
                h("span", { class: "chip" }, `${k.rate_limit_per_minute ?? "default"} / min`),
              )
            : h("span", { class: "muted" }, "–");
        return h(
          "tr",
          { "data-key": k.id, class: revoked ? "revoked" : null },
          h("td", { class: "nowrap" }, k.name || h("span", { class: "muted" }, "(no name)"), current ? h("span", { class: "muted" }, " · this session") : null),
          h("td", {}, k.kind),
          h("td", {}, h("code", {}, `${k.prefix}…`)),
          h("td", {}, limits),
          h("td", { class: "nowrap" }, when(k.created_at)),
          h("td", { class: "nowrap" }, when(k.last_used_at)),
          h("td", {}, revoked ? h("span", { class: "badge revoked" }, "revoked") : h("span", { class: "badge active-key" }, "active")),
          h(
            "td",
            {},
            revoked
              ? null
              : h(
                  "button",
                  {
                    type: "button",
                    class: "small",
                    onclick: async () => {
                      const warn = current ? " This is the key this console session was opened with." : "";
                      if (!(await confirmDialog(`Revoke the key ${k.prefix}…? Requests with it fail from now on.${warn}`, "Revoke"))) return;
                      try {
                        await api("DELETE", `/keys/${encodeURIComponent(k.id)}`);
                        toast("Key revoked");
                        await renderList();
                      } catch (e) {
                        toast(e.message);
                      }
                    },
                  },
                  "Revoke",
                ),
          ),
        );
      }),
    );
  }
  await renderList(keys);
  view(
    pageHead("API keys", "Secret keys start calls from your backend; publishable keys from a browser, limited to agents and origins."),
    created,
    h(
      "div",
      { class: "card" },
      h(
        "table",
        { class: "list", id: "keys" },
        h("thead", {}, h("tr", {}, ["Name", "Kind", "Key", "Limits", "Created", "Last used", "Status", ""].map((t) => h("th", {}, t)))),
        tbody,
      ),
    ),
    form,
  );
}

// --- webhooks -------------------------------------------------------------------------------

async function webhooksPage(selected) {
  const hooks = await api("GET", "/webhooks");
  const created = h("div", { id: "webhook-created" });
  const fresh = state.createdWebhook;
  state.createdWebhook = null;
  if (fresh && fresh.id === selected) {
    fill(
      created,
      h(
        "div",
        { class: "card banner ok" },
        h("strong", {}, "Endpoint added. Its signing secret is shown only once:"),
        h("div", { class: "secret" }, h("code", { id: "webhook-secret" }, fresh.secret)),
      ),
      (fresh.warnings || []).map((w) => h("p", { class: "banner warn" }, w)),
    );
  }
  const err = h("p", { class: "field-error", role: "alert", hidden: true });
  const events = ["session.started", "session.ended", "tool.failed"];
  const form = h(
    "form",
    { class: "form card", id: "webhook-form" },
    h("h2", {}, "Add an endpoint"),
    h(
      "div",
      { class: "row" },
      h("div", { class: "field" }, h("label", { for: "w-url" }, "URL"), h("input", { id: "w-url", name: "url", type: "text", placeholder: "https://example.com/hooks/thinnest" })),
      h("div", { class: "field" }, h("label", { for: "w-desc" }, "Description"), h("input", { id: "w-desc", name: "description", type: "text" })),
      h("div", { class: "field" }, h("label", {}, "Events"), h("div", { class: "chips" }, events.map((e) => h("label", { class: "chip" }, h("input", { type: "checkbox", name: "events", value: e, checked: true }), ` ${e}`)))),
    ),
    err,
    h("div", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Add endpoint")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    err.hidden = true;
    const f = form.elements;
    const body = { url: f.url.value.trim(), description: f.description.value, events: [...form.querySelectorAll("input[name=events]:checked")].map((x) => x.value) };
    try {
      const hook = await api("POST", "/webhooks", body);
      state.createdWebhook = hook; // its secret, shown once on the page that opens next
      location.hash = `#/webhooks/${encodeURIComponent(hook.id)}`;
    } catch (e) {
      err.textContent = e.message;
      err.hidden = false;
    }
  });
  const rows = hooks.map((w) =>
    h(
      "tr",
      { class: "link", "data-webhook": w.id, onclick: () => (location.hash = `#/webhooks/${encodeURIComponent(w.id)}`), style: w.id === selected ? "background:#f3f8f5" : null },
      h("td", {}, h("span", { class: "mono" }, w.url), w.description ? h("div", { class: "muted" }, w.description) : null),
      h("td", {}, h("div", { class: "chips" }, w.events.map((e) => h("span", { class: "chip" }, e)))),
      h("td", {}, w.enabled ? h("span", { class: "badge ended" }, "enabled") : h("span", { class: "badge" }, "disabled")),
      h("td", {}, h("code", {}, `${w.secret_prefix}…`)),
    ),
  );
  const deliveries = selected ? await deliveryLog(hooks.find((w) => w.id === selected)) : null;
  view(
    pageHead("Webhooks", "Where session and tool events are POSTed, signed with each endpoint's secret."),
    created,
    h(
      "div",
      { class: "card" },
      h(
        "table",
        { class: "list", id: "webhooks" },
        h("thead", {}, h("tr", {}, ["URL", "Events", "State", "Secret"].map((t) => h("th", {}, t)))),
        h("tbody", {}, rows, hooks.length ? null : h("tr", {}, h("td", { colspan: 4, class: "empty" }, "No endpoints yet."))),
      ),
    ),
    deliveries,
    form,
  );
}

async function deliveryLog(hook) {
  if (!hook) return h("p", { class: "banner error" }, "No such webhook endpoint.");
  const body = h("tbody", {});
  async function load() {
    const page = await api("GET", `/webhooks/${encodeURIComponent(hook.id)}/deliveries?limit=50`);
    body.replaceChildren(
      ...page.data.map((d) =>
        h(
          "tr",
          { "data-delivery": d.id },
          h("td", {}, when(d.created_at)),
          h("td", {}, d.event_type),
          h("td", {}, h("span", { class: `badge ${d.status}` }, d.status)),
          h("td", {}, String(d.attempts)),
          h("td", {}, d.last_status_code ? String(d.last_status_code) : "–"),
          h("td", {}, d.session_id ? h("a", { class: "mono", href: `#/calls/${encodeURIComponent(d.session_id)}` }, d.session_id) : "–"),
          h(
            "td",
            { class: "muted" },
            [d.last_error, d.next_attempt_at ? `next try ${when(d.next_attempt_at)}` : null].filter(Boolean).join(" · "),
          ),
          h("td", {}, d.status === "pending" ? null : h("button", { type: "button", class: "small", onclick: () => resend(d) }, "Resend")),
        ),
      ),
    );
    if (!page.data.length) body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" }, "Nothing delivered yet.")));
    return page.data.some((d) => d.status === "pending");
  }
  await load();
  every(LIVE_REFRESH_MS, () => load().catch(() => {}));
  const test = async () => {
    try {
      await api("POST", `/webhooks/${encodeURIComponent(hook.id)}/test`);
      toast("Test event queued");
      await load();
    } catch (e) {
      toast(e.message);
    }
  };
  const resend = async (delivery) => {
    try {
      await api("POST", `/webhooks/${encodeURIComponent(hook.id)}/deliveries/${encodeURIComponent(delivery.id)}/resend`);
      toast("Sent again");
      await load();
    } catch (e) {
      toast(e.message);
    }
  };
  const rotate = async () => {
    const text = "Make a new signing secret? The current one keeps signing beside it for 24 hours, until your receiver has switched.";
    if (!(await confirmDialog(text, "Rotate"))) return;
    try {
      const rotated = await api("POST", `/webhooks/${encodeURIComponent(hook.id)}/rotate-secret`, { grace_hours: 24 });
      fill(
        $("webhook-created"),
        h(
          "div",
          { class: "card banner ok" },
          h("strong", {}, "New signing secret, shown only once (the old one signs too for 24 hours):"),
          h("div", { class: "secret" }, h("code", { id: "webhook-secret" }, rotated.secret)),
        ),
      );
    } catch (e) {
      toast(e.message);
    }
  };
  const remove = async () => {
    if (!(await confirmDialog(`Delete the endpoint ${hook.url} and its delivery log?`, "Delete"))) return;
    try {
      await api("DELETE", `/webhooks/${encodeURIComponent(hook.id)}`);
      location.hash = "#/webhooks";
    } catch (e) {
      toast(e.message);
    }
  };
  return h(
    "div",
    { class: "card", id: "deliveries" },
    h(
      "div",
      { class: "page-head", style: "margin:0 0 8px" },
      h("h2", { style: "margin:0" }, "Deliveries to ", h("span", { class: "mono" }, hook.url)),
      h(
        "div",
        { class: "actions" },
        h("button", { type: "button", onclick: test }, "Send test event"),
        h("button", { type: "button", onclick: rotate }, "Rotate secret"),
        h("button", { type: "button", class: "quiet", onclick: remove }, "Delete endpoint"),
      ),
    ),
    h(
      "table",
      { class: "list" },
      h("thead", {}, h("tr", {}, ["Created", "Event", "Status", "Attempts", "HTTP", "Session", "", ""].map((t) => h("th", {}, t)))),
      body,
    ),
  );
}

restore();
