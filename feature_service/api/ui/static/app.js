// feature-service web UI. Talks to the public API only (fetch), draws its plots as SVG.
// Values shown carry their raw JSON in data-value, so tests can compare them to the API.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG_NS = "http://www.w3.org/2000/svg";
const STATUS_EVERY_MS = 2000;

const ui = {
  views: [],          // GET /feature-views
  status: null,       // GET /status
  lookup: null,       // {keys: [...], ids: [...], views: [...]} of the last lookup
};

// ---------------------------------------------------------------- helpers

function el(tag, attrs = {}, ...children) {
  const node = tag.startsWith("svg:")
    ? document.createElementNS(SVG_NS, tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null) continue;
    if (k === "text") node.textContent = v;
    else if (k === "on") for (const [ev, fn] of Object.entries(v)) node.addEventListener(ev, fn);
    else node.setAttribute(k, v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

async function api(path, body) {
  const headers = { "Accept": "application/json" };
  const key = localStorage.getItem("fs-api-key");
  if (key) headers["X-API-Key"] = key;
  const init = { headers };
  if (body !== undefined) {
    init.method = "POST";
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = text; }
  if (!response.ok) {
    const detail = data && data.detail !== undefined ? data.detail : text;
    const message = typeof detail === "string" ? detail : JSON.stringify(detail);
    const error = new Error(`${response.status}: ${message}`);
    error.status = response.status;
    if (response.status === 401) showBanner("This API needs a key: type it in the API key field.");
    throw error;
  }
  return data;
}

function showBanner(message) {
  const banner = $("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function formatValue(v) {
  if (v === null || v === undefined) return "—";
  if (typeof v === "number") {
    if (Number.isInteger(v)) return String(v);
    return String(Number(v.toPrecision(6)));
  }
  // last_k and friends: the values in order; frequent_k and histogram: value: count
  if (Array.isArray(v)) return `[${v.map(formatValue).join(", ")}]`;
  if (typeof v === "object") {
    return Object.entries(v).map(([key, n]) => `${key}: ${formatValue(n)}`).join(", ");
  }
  return String(v);
}

function isMap(v) {
  return v !== null && typeof v === "object" && !Array.isArray(v);
}

// A map value (frequent_k, histogram: value -> count) as bars, longest for the largest count.
function mapBars(v) {
  const entries = Object.entries(v);
  const top = Math.max(1, ...entries.map(([, n]) => n));
  return el("div", { class: "map-bars", title: formatValue(v) },
    ...entries.map(([key, n]) => el("div", { class: "map-bar" },
      el("span", { class: "map-key", text: key }),
      el("span", { class: "map-fill", style: `width: ${Math.max(2, Math.round(80 * n / top))}px` }),
      el("span", { class: "map-count", text: formatValue(n) }))));
}

function formatAge(seconds) {
  if (seconds === null || seconds === undefined) return "—";
  const s = Math.max(0, seconds);
  if (s < 60) return `${s.toFixed(1)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.floor(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

// The newest event's time and its age: a replayed sample is days old while the pipeline
// is live (the "last commit" column says that), so the age alone would mislead.
function newestEventText(epoch, now) {
  if (epoch === null || epoch === undefined) return "—";
  const when = new Date(epoch * 1000).toISOString().slice(0, 16).replace("T", " ");
  return `${when} UTC (${formatAge(now - epoch)} ago)`;
}

function isoUtc(epoch) {
  return new Date(epoch * 1000).toISOString().replace(".000Z", "Z");
}

// The "as of" field: null for now, else epoch seconds.
function asOf() {
  const raw = $("as-of").value.trim();
  if (!raw) return null;
  if (/^-?\d+(\.\d+)?$/.test(raw)) return Number(raw);
  const text = /^\d{4}-\d\d-\d\d$/.test(raw) ? raw + "T00:00:00" : raw;
  const ms = Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(text) ? text : text + "Z");  // UTC
  if (Number.isNaN(ms)) throw new Error(`as of: ${JSON.stringify(raw)} is not a time`);
  return ms / 1000;
}

// A view's join keys (several for a composite key), and the name of that set of keys:
// the lookup form's choice, e.g. "customer_id" or "customer_id, merchant_id".
function keysOf(view) {
  return view.join_keys || [view.join_key];
}

function keyName(view) {
  return keysOf(view).join(", ");
}

function viewsWithKey(key) {
  return ui.views.filter((v) => keyName(v) === key);
}

// One input per join key of the chosen key: #lookup-id for the first, one more
// (input.lookup-more, its data-key the column) for each further column.
function lookupKeys() {
  const view = viewsWithKey($("lookup-key").value)[0];
  return view ? keysOf(view) : [$("lookup-key").value];
}

function setLookupInputs() {
  const keys = lookupKeys();
  $("lookup-id").placeholder = keys.length > 1 ? keys[0] : "entity id, e.g. c001";
  $("lookup-more").replaceChildren(...keys.slice(1).map((k) => el("span", {},
    el("input", { class: "lookup-more", "data-key": k, placeholder: k, required: "",
      "aria-label": k, list: `lookup-suggestions-${k}` }),
    el("datalist", { id: `lookup-suggestions-${k}` }))));
}

function lookupIds() {
  const more = [...document.querySelectorAll("#lookup-more input.lookup-more")];
  return [$("lookup-id").value.trim(), ...more.map((input) => input.value.trim())];
}

function setOptions(select, options, keep = true) {
  const previous = select.value;
  select.replaceChildren(...options.map(([value, label]) => el("option", { value, text: label })));
  if (keep && options.some(([value]) => value === previous)) select.value = previous;
}

// ---------------------------------------------------------------- registry

async function loadViews() {
  ui.views = await api("/feature-views");
  const keys = [...new Set(ui.views.map(keyName))];
  setOptions($("lookup-key"), keys.map((k) => [k, k]));
  setLookupInputs();
  suggestEntities();
  const all = ui.views.flatMap((v) => v.features.map((f) => [`${v.name}:${f.name}`, `${v.name}:${f.name}`]));
  setOptions($("distribution-feature"), all);
  renderViews();
}

function renderViews() {
  const blocks = ui.views.map((v) => {
    const rows = v.features.map((f) => el("tr", {},
      el("td", {}, el("code", { text: f.name })),
      el("td", { text: f.aggregation + (f.column ? `(${f.column})` : "") }),
      el("td", { text: f.window || "lifetime" }),
      el("td", { text: f.where || "" }),
      el("td", { text: f.description || "" }),
    ));
    return el("div", { class: "view", "data-view": v.name },
      el("h3", { text: `${v.name} — ${v.features.length} features of ${v.entity} (${keyName(v)}), from ${v.source}` + (v.ttl ? `, ttl ${v.ttl}` : "") }),
      v.description ? el("p", { text: v.description }) : null,
      el("table", {},
        el("thead", {}, el("tr", {}, ...["feature", "aggregation", "window", "where", "description"].map((h) => el("th", { text: h })))),
        el("tbody", {}, ...rows)),
    );
  });
  $("views").replaceChildren(...blocks);
}

// Entity ids to pick from: a sample of those with state in a view of the chosen key.
async function suggestEntities() {
  const view = viewsWithKey($("lookup-key").value)[0];
  if (!view) return;
  try {
    const sample = await api(`/feature-views/${encodeURIComponent(view.name)}/entities?limit=200`);
    const columns = sample.columns || { [keysOf(view)[0]]: sample.entities };
    const options = (key) => [...new Set(columns[key] || [])].map((id) => el("option", { value: id }));
    const [first, ...more] = keysOf(view);
    $("lookup-suggestions").replaceChildren(...options(first));
    for (const key of more) {
      const list = $(`lookup-suggestions-${key}`);
      if (list) list.replaceChildren(...options(key));
    }
  } catch { /* suggestions are a convenience: the lookup works without them */ }
}

// ---------------------------------------------------------------- pipeline status

async function refreshStatus() {
  try {
    ui.status = await api("/status");
    renderStatus();
    const t = new Date().toISOString().slice(11, 19);
    $("live").textContent = `live · ${t} UTC`;
    $("live").className = "pill ok";
  } catch (error) {
    $("live").textContent = "status unavailable";
    $("live").className = "pill bad";
    $("pipeline-note").textContent = String(error.message || error);
  }
}

function renderStatus() {
  const status = ui.status;
  const rows = [];
  for (const s of status.sources) {
    for (const viewName of s.views) {
      const view = ui.views.find((v) => v.name === viewName);
      const cell = (field, value, text, cls = "num") =>
        el("td", { class: cls, "data-field": field, "data-value": JSON.stringify(value), text });
      rows.push(el("tr", { "data-view": viewName },
        el("td", {}, el("strong", { text: viewName })),
        el("td", { text: view ? `${view.entity} (${keyName(view)})` : "" }),
        el("td", { text: `${s.source} → ${s.topic}${s.format && s.format !== "json" ? ` (${s.format})` : ""}` }),
        cell("freshness_s", s.freshness_s, newestEventText(s.newest_event_ts, status.at),
          "num" + (s.freshness_s !== null && s.freshness_s > 3600 ? " warn" : "")),
        cell("last_commit_ts", s.last_commit_ts,
          s.last_commit_ts === null ? "—" : `${formatAge(status.at - s.last_commit_ts)} ago`),
        cell("events_per_s", s.events_per_s, s.events_per_s === null ? "—" : s.events_per_s.toFixed(1)),
        cell("events", s.events, String(s.events)),
        cell("skipped", s.skipped[viewName] ?? 0, String(s.skipped[viewName] ?? 0),
          "num" + (s.skipped[viewName] ? " warn" : "")),
        cell("dlq", s.dlq, String(s.dlq), "num" + (s.dlq ? " warn" : "")),
        cell("late", s.late[viewName] ?? 0, String(s.late[viewName] ?? 0)),
        cell("lag", s.lag, s.lag === null ? "?" : String(s.lag), "num" + (s.lag ? " warn" : "")),
        cell("workers", s.workers, String(s.workers), "num" + (s.workers ? "" : " bad")),
      ));
    }
  }
  $("pipeline").tBodies[0].replaceChildren(...rows);
  const notes = [];
  if (status.broker_error) notes.push(`lag unknown: ${status.broker_error}`);
  notes.push(`${status.workers.length} live worker(s)` +
    (status.workers.length ? `: ${status.workers.map((w) => w.id).join(", ")}` : ""));
  $("pipeline-note").textContent = notes.join(" · ");
}

function newestEventTs() {
  if (!ui.status) return null;
  const times = ui.status.sources.map((s) => s.newest_event_ts).filter((t) => t !== null);
  return times.length ? Math.max(...times) : null;
}

// ---------------------------------------------------------------- entity lookup

async function lookup(event) {
  if (event) event.preventDefault();
  const views = viewsWithKey($("lookup-key").value);
  const keys = lookupKeys();
  const ids = lookupIds();
  const error = $("lookup-error");
  error.hidden = true;
  const body = {
    features: views.flatMap((v) => v.features.map((f) => `${v.name}:${f.name}`)),
    entities: Object.fromEntries(keys.map((k, i) => [k, [ids[i]]])),  // Feast's columns
    full_feature_names: true,
  };
  try {
    const t = asOf();
    if (t !== null) body.as_of = t;
    $("lookup-result").setAttribute("aria-busy", "true");
    const response = await api("/get-online-features", body);
    renderLookup(keys, ids, views, response, t);
  } catch (e) {
    error.textContent = String(e.message || e);
    error.hidden = false;
  } finally {
    $("lookup-result").removeAttribute("aria-busy");
  }
}

function entityText(keys, ids) {
  return keys.map((k, i) => `${k} = ${ids[i]}`).join(", ");
}

function renderLookup(keys, ids, views, response, t) {
  const columns = {};
  response.metadata.feature_names.forEach((name, i) => { columns[name] = response.results[i]; });
  ui.lookup = { keys, ids, views };
  const blocks = views.map((v) => {
    const rows = v.features.map((f) => {
      const column = columns[`${v.name}__${f.name}`];
      const value = column.values[0];
      const status = column.statuses[0];
      const ref = `${v.name}:${f.name}`;
      return el("tr", {
        class: "clickable", "data-feature": ref, title: "plot its history",
        on: { click: () => { $("history-feature").value = ref; plotHistory(); } },
      },
        el("td", {}, el("code", { text: f.name })),
        el("td", { class: "num value", "data-feature": ref, "data-value": JSON.stringify(value), text: isMap(value) ? null : formatValue(value) },
          isMap(value) ? mapBars(value) : null),
        el("td", {}, el("span", { class: `status ${status}`, text: status })),
      );
    });
    return el("div", {},
      el("h3", { text: `${v.name}` }),
      el("table", { "data-view": v.name },
        el("thead", {}, el("tr", {}, el("th", { text: "feature" }), el("th", { class: "num", text: "value" }), el("th", { text: "status" }))),
        el("tbody", {}, ...rows)));
  });
  const when = t === null ? "now" : isoUtc(t);
  const first = response.results[Math.min(keys.length, response.metadata.feature_names.length - 1)];
  const stamp = first ? first.event_timestamps[0] : null;
  const newest = stamp && stamp !== "1970-01-01T00:00:00Z" ? `; newest event ${stamp}` : "";
  $("lookup-result").replaceChildren(
    el("p", { class: "note", id: "lookup-summary", text: `${entityText(keys, ids)}, as of ${when}${newest}` }),
    el("div", { class: "lookup-views" }, ...blocks));
  const features = views.flatMap((v) => v.features.map((f) => [`${v.name}:${f.name}`, `${v.name}:${f.name}`]));
  setOptions($("history-feature"), features);
  $("history-note").textContent = `History of ${entityText(keys, ids)}: pick a feature (or click a row).`;
  plotHistory();
}

// ---------------------------------------------------------------- charts

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) { hi = lo + 1; }
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * mag).find((s) => s >= raw);
  const ticks = [];
  for (let v = Math.floor(lo / step) * step; v <= hi + step * 1e-9; v += step) ticks.push(Number(v.toPrecision(12)));
  if (ticks[ticks.length - 1] < hi) ticks.push(Number((ticks[ticks.length - 1] + step).toPrecision(12)));
  return ticks;
}

function frame(width, height, margin, yTicks, yScale) {
  const svg = el("svg:svg", { viewBox: `0 0 ${width} ${height}`, role: "img" });
  for (const v of yTicks) {
    const y = yScale(v);
    svg.append(el("svg:line", { class: "grid", x1: margin.l, x2: width - margin.r, y1: y, y2: y }));
    svg.append(el("svg:text", { x: margin.l - 6, y: y + 4, "text-anchor": "end", text: formatValue(v) }));
  }
  svg.append(el("svg:line", { class: "axis", x1: margin.l, x2: margin.l, y1: margin.t, y2: height - margin.b }));
  svg.append(el("svg:line", { class: "axis", x1: margin.l, x2: width - margin.r, y1: height - margin.b, y2: height - margin.b }));
  return svg;
}

function lineChart(points, label) {
  const width = 640, height = 240, margin = { l: 56, r: 14, t: 10, b: 30 };
  const values = points.map((p) => p.v).filter((v) => typeof v === "number");
  const lo = Math.min(0, ...values), hi = Math.max(...values, lo + 1e-9);
  const yTicks = niceTicks(lo, hi);
  const y0 = yTicks[0], y1 = yTicks[yTicks.length - 1];
  const t0 = points[0].t, t1 = points[points.length - 1].t;
  const x = (t) => margin.l + ((t - t0) / (t1 - t0 || 1)) * (width - margin.l - margin.r);
  const y = (v) => height - margin.b - ((v - y0) / (y1 - y0 || 1)) * (height - margin.t - margin.b);
  const svg = frame(width, height, margin, yTicks, y);
  svg.setAttribute("aria-label", label);
  for (let i = 0; i <= 4; i++) {
    const t = t0 + ((t1 - t0) * i) / 4;
    const text = isoUtc(t).slice(5, 16).replace("T", " ");
    svg.append(el("svg:text", { x: x(t), y: height - 10, "text-anchor": i === 0 ? "start" : i === 4 ? "end" : "middle", text }));
  }
  let d = "";
  let pen = false;
  for (const p of points) {
    if (typeof p.v !== "number") { pen = false; continue; }
    d += `${pen ? "L" : "M"}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`;
    pen = true;
  }
  svg.append(el("svg:path", { class: "line", d }));
  for (const p of points) {
    const circle = el("svg:circle", {
      class: "point", cx: x(p.t).toFixed(1), cy: typeof p.v === "number" ? y(p.v).toFixed(1) : y(y0).toFixed(1),
      r: typeof p.v === "number" ? 2.5 : 0, "data-ts": p.t, "data-value": JSON.stringify(p.v ?? null),
    }, el("svg:title", { text: `${isoUtc(p.t)}: ${formatValue(p.v)}` }));
    svg.append(circle);
  }
  return svg;
}

function barChart(bins, label) {
  const width = 640, height = 240, margin = { l: 56, r: 14, t: 10, b: 42 };
  const hi = Math.max(1, ...bins.map((b) => b.count));
  const yTicks = niceTicks(0, hi).filter((v) => Number.isInteger(v));
  const y1 = yTicks[yTicks.length - 1];
  const y = (v) => height - margin.b - (v / y1) * (height - margin.t - margin.b);
  const svg = frame(width, height, margin, yTicks, y);
  svg.setAttribute("aria-label", label);
  const slot = (width - margin.l - margin.r) / bins.length;
  const every = Math.ceil(bins.length / 8);
  bins.forEach((b, i) => {
    const left = margin.l + i * slot;
    svg.append(el("svg:rect", {
      class: "bar", x: (left + 1).toFixed(1), y: y(b.count).toFixed(1),
      width: Math.max(1, slot - 2).toFixed(1), height: (height - margin.b - y(b.count)).toFixed(1),
      "data-label": b.label, "data-count": b.count,
    }, el("svg:title", { text: `${b.label}: ${b.count}` })));
    if (i % every === 0) {
      svg.append(el("svg:text", { x: (left + slot / 2).toFixed(1), y: height - margin.b + 14, "text-anchor": "middle", text: b.tick ?? b.label }));
    }
  });
  return svg;
}

// ---------------------------------------------------------------- history (offline)

let historySeq = 0;  // only the newest request draws: an older answer may come back later

async function plotHistory(event) {
  if (event) event.preventDefault();
  const seq = ++historySeq;
  const note = $("history-note");
  const chart = $("history-chart");
  if (!ui.lookup) { note.textContent = "Look up an entity first."; return; }
  const ref = $("history-feature").value;
  const span = Number($("history-range").value);
  const n = 48;
  try {
    const end = asOf() ?? Date.now() / 1000;
    const times = Array.from({ length: n }, (_, i) => Math.round((end - span + (span * (i + 1)) / n) * 1000) / 1000);
    const body = {
      features: [ref],
      entities: {
        ...Object.fromEntries(ui.lookup.keys.map((k, i) => [k, times.map(() => ui.lookup.ids[i])])),
        event_timestamp: times,
      },
      full_feature_names: false,
    };
    const response = await api("/get-historical-features", body);
    if (seq !== historySeq) return;
    const name = response.metadata.feature_names[response.metadata.feature_names.length - 1];
    const values = response.columns[name];
    const stamps = response.columns.event_timestamp;
    const points = stamps.map((t, i) => ({ t, v: values[i] }));
    chart.replaceChildren(lineChart(points, `${ref} of ${ui.lookup.ids.join(", ")}`));
    chart.dataset.feature = ref;
    chart.dataset.entity = ui.lookup.ids.join(",");
    note.textContent = `${ref} of ${entityText(ui.lookup.keys, ui.lookup.ids)}, ${n} points up to ${isoUtc(end)}`;
  } catch (e) {
    if (seq !== historySeq) return;
    chart.replaceChildren();
    note.textContent = e.status === 404 || e.status === 405
      ? "This server has no POST /get-historical-features."
      : String(e.message || e);
  }
}

// ---------------------------------------------------------------- distribution (online)

function histogram(values) {
  const distinct = [...new Set(values)].sort((a, b) => a - b);
  if (distinct.length <= 20 && distinct.every(Number.isInteger)) {
    return distinct.map((v) => ({ label: String(v), count: values.filter((x) => x === v).length }));
  }
  const lo = distinct[0], hi = distinct[distinct.length - 1];
  const k = 20, width = (hi - lo) / k || 1;
  const bins = Array.from({ length: k }, (_, i) => ({
    label: `${formatValue(lo + i * width)} – ${formatValue(lo + (i + 1) * width)}`,
    tick: formatValue(lo + i * width), count: 0,
  }));
  for (const v of values) bins[Math.min(k - 1, Math.floor((v - lo) / width))].count += 1;
  return bins;
}

let distributionSeq = 0;

async function plotDistribution(event) {
  if (event) event.preventDefault();
  const seq = ++distributionSeq;
  const ref = $("distribution-feature").value;
  const [viewName] = ref.split(":");
  const view = ui.views.find((v) => v.name === viewName);
  const note = $("distribution-note");
  const chart = $("distribution-chart");
  try {
    const sample = await api(`/feature-views/${encodeURIComponent(viewName)}/entities?limit=${$("distribution-size").value}`);
    if (!sample.entities.length) { chart.replaceChildren(); note.textContent = "No entity has state in this view yet."; return; }
    const body = { features: [ref], entities: sample.columns || { [keysOf(view)[0]]: sample.entities } };
    const t = asOf();
    if (t !== null) body.as_of = t;
    const response = await api("/get-online-features", body);
    if (seq !== distributionSeq) return;
    const values = response.results[1].values;
    const numbers = values.filter((v) => typeof v === "number");
    const nulls = values.filter((v) => v === null).length;
    let bins;
    if (numbers.length) {
      bins = histogram(numbers);
    } else {
      const counts = new Map();
      for (const v of values) if (v !== null) counts.set(String(v), (counts.get(String(v)) || 0) + 1);
      bins = [...counts].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([label, count]) => ({ label, count }));
    }
    chart.replaceChildren(barChart(bins, `${ref} across ${values.length} entities`));
    chart.dataset.feature = ref;
    chart.dataset.entities = String(values.length);
    const sorted = [...numbers].sort((a, b) => a - b);
    const stats = numbers.length
      ? ` · min ${formatValue(sorted[0])} · median ${formatValue(sorted[Math.floor(sorted.length / 2)])}` +
        ` · mean ${formatValue(numbers.reduce((a, b) => a + b, 0) / numbers.length)} · max ${formatValue(sorted[sorted.length - 1])}`
      : "";
    note.textContent = `${ref} over ${values.length} entities (${nulls} null), as of ${t === null ? "now" : isoUtc(t)}${stats}`;
  } catch (e) {
    chart.replaceChildren();
    note.textContent = String(e.message || e);
  }
}

// ---------------------------------------------------------------- dead letters

// The newest dead letters (GET /dlq): on load and on "Refresh", not every 2 s (each read
// opens a broker connection); the DLQ column of the pipeline says when there are new ones.
async function refreshDeadLetters(event) {
  if (event) event.preventDefault();
  const note = $("dlq-note");
  try {
    const answer = await api("/dlq?limit=10");
    const letters = answer.dead_letters.slice().reverse();  // newest first
    $("dlq").tBodies[0].replaceChildren(...letters.map((d) => el("tr", {},
      el("td", { text: d.source }),
      el("td", { text: d.partition === null ? `dlq offset ${d.dlq_offset}` : `p${d.partition} o${d.offset}` }),
      el("td", { "data-field": "reason", text: d.reason }),
      el("td", { class: "raw", text: d.value === null ? "(no value)" : d.value.slice(0, 200) }),
    )));
    note.textContent = letters.length
      ? `${letters.length} newest · all of them: feature-service dlq --limit N`
      : "none: every event was accepted";
  } catch (e) {
    note.textContent = String(e.message || e);
  }
}

// ---------------------------------------------------------------- start

function start() {
  $("api-key").value = localStorage.getItem("fs-api-key") || "";
  $("api-key").addEventListener("change", () => {
    localStorage.setItem("fs-api-key", $("api-key").value);
    showBanner("");
    init();
  });
  $("controls").addEventListener("submit", (e) => e.preventDefault());
  $("as-of-newest").addEventListener("click", () => {
    const t = newestEventTs();
    if (t !== null) $("as-of").value = isoUtc(Math.ceil(t));
  });
  $("as-of-now").addEventListener("click", () => { $("as-of").value = ""; });
  $("lookup-form").addEventListener("submit", lookup);
  $("lookup-key").addEventListener("change", () => { setLookupInputs(); suggestEntities(); });
  $("history-form").addEventListener("submit", plotHistory);
  $("distribution-form").addEventListener("submit", plotDistribution);
  $("dlq-form").addEventListener("submit", refreshDeadLetters);
  init();
  refreshDeadLetters();
  setInterval(refreshStatus, STATUS_EVERY_MS);
}

async function init() {
  try {
    await loadViews();
    await refreshStatus();
    document.body.dataset.ready = "true";
  } catch (e) {
    if (e.status !== 401) showBanner(String(e.message || e));  // 401 already asked for a key
  }
}

document.addEventListener("DOMContentLoaded", start);
