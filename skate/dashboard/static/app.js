// The Skate dashboard page: polls the JSON APIs of the server it came from and redraws.
// Every value from the cluster reaches the page as text (textContent), never as HTML.
"use strict";

const REFRESH_MS = 3000;
const state = { tab: "overview", openJob: null };

// -- helpers ------------------------------------------------------------------------------
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else if (key === "onclick") node.addEventListener("click", value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function short(id) {
  return id ? String(id).slice(0, 12) : "";
}

function bytes(n) {
  if (n === null || n === undefined) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function when(ms) {
  return ms ? new Date(ms).toLocaleTimeString() : "";
}

function bar(label, used, total, text) {
  const pct = total > 0 ? Math.min(100, Math.max(0, (100 * used) / total)) : 0;
  const fill = el("div", { class: "fill" + (pct > 90 ? " high" : "") });
  fill.style.width = `${pct.toFixed(1)}%`;
  return el("div", { class: "bar-row" },
    el("span", { class: "bar-label" }, label),
    el("div", { class: "bar", title: `${pct.toFixed(0)}%` }, fill),
    el("span", { class: "bar-text" }, text));
}

function badge(text) {
  return el("span", { class: `badge s-${String(text || "").toLowerCase()}` }, text || "");
}

// A table from rows and [header, (row) => cell] columns.
function fillTable(table, rows, columns, empty) {
  table.replaceChildren();
  const head = el("tr", {}, ...columns.map(([title]) => el("th", {}, title)));
  table.append(el("thead", {}, head));
  const body = el("tbody");
  if (!rows.length) {
    body.append(el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, empty || "(none)")));
  }
  for (const row of rows) {
    body.append(el("tr", {}, ...columns.map(([, cell]) => {
      const value = cell(row);
      return el("td", {}, value === null || value === undefined ? "" : value);
    })));
  }
  table.append(body);
}

function counts(obj) {
  return Object.entries(obj || {}).map(([k, v]) => `${k}: ${v}`).join(", ");
}

async function getJSON(path) {
  const response = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
  if (response.status === 401) {
    window.location.reload(); // the server answers the page itself with the login form
    throw new Error("not logged in");
  }
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${path}: HTTP ${response.status}`);
  return body;
}

async function stateAPI(path) {
  const body = await getJSON(`/api/v0/${path}`);
  return body.data.result;
}

// -- sections -----------------------------------------------------------------------------
async function drawOverview() {
  const [nodes, stats] = await Promise.all([
    stateAPI("nodes?detail=true&limit=1000"),
    getJSON("/api/skate/node_stats").catch(() => []),
  ]);
  const byNode = Object.fromEntries(stats.map((s) => [s.node_id, s]));
  const cards = document.getElementById("nodes");
  cards.replaceChildren();
  for (const n of nodes.result) {
    const total = n.resources_total || {};
    const avail = n.resources_available || {};
    const cpuTotal = total.CPU || 0;
    const cpuUsed = cpuTotal - (avail.CPU ?? cpuTotal);
    const machine = byNode[n.node_id];
    const card = el("div", { class: `card node ${n.state === "ALIVE" ? "" : "dead"}`, "data-node-id": n.node_id },
      el("div", { class: "card-title" },
        el("strong", {}, short(n.node_id)), " ", badge(n.state), n.is_head_node ? el("span", { class: "tag" }, "head") : null),
      el("div", { class: "muted" }, n.node_ip),
      bar("CPU", cpuUsed, cpuTotal, `${cpuUsed} / ${cpuTotal} used` +
        (machine ? ` (machine ${machine.cpu_percent.toFixed(0)}%)` : "")),
      machine ? bar("Memory", machine.mem_used, machine.mem_total,
        `${bytes(machine.mem_used)} / ${bytes(machine.mem_total)}`) : null,
      bar("Store", n.object_store_used_bytes, n.object_store_total_bytes,
        `${bytes(n.object_store_used_bytes)} / ${bytes(n.object_store_total_bytes)}`),
      el("div", { class: "muted small" }, Object.entries(total)
        .filter(([k]) => !k.startsWith("node:"))
        .map(([k, v]) => {
          const used = v - (avail[k] ?? v);
          return k === "memory" || k === "object_store_memory" ? `${k} ${bytes(used)}/${bytes(v)}` : `${k} ${used}/${v}`;
        }).join("  ")));
    cards.append(card);
  }
  const alive = nodes.result.filter((n) => n.state === "ALIVE").length;
  const box = document.getElementById("cluster-summary");
  box.replaceChildren(el("div", {}, `Nodes: ${alive} alive of ${nodes.total}`));
  const [jobs, actors, tasks] = await Promise.all([
    getJSON("/api/jobs/"), stateAPI("actors/summarize"), stateAPI("tasks/summarize"),
  ]);
  const tally = (pairs) => {
    const out = {};
    for (const [key, n] of pairs) out[key] = (out[key] || 0) + n;
    return counts(out) || "none";
  };
  box.append(
    el("div", {}, `Jobs: ${tally(jobs.map((j) => [j.status, 1]))}`),
    el("div", {}, `Actors: ${tally(Object.values(actors.summary).flatMap((s) => Object.entries(s.state_counts)))}`),
    el("div", {}, `Tasks: ${tally(Object.values(tasks.summary).flatMap((s) => Object.entries(s.state_counts)))}`));
}

async function drawJobs() {
  const jobs = await getJSON("/api/jobs/");
  jobs.sort((a, b) => (b.start_time || 0) - (a.start_time || 0));
  fillTable(document.getElementById("jobs-table"), jobs, [
    ["Job", (j) => el("span", { class: "mono job-id" }, j.submission_id || j.job_id)],
    ["Type", (j) => j.type],
    ["Status", (j) => badge(j.status)],
    ["Entrypoint", (j) => el("span", { class: "mono" }, j.entrypoint || "")],
    ["Started", (j) => when(j.start_time)],
    ["Ended", (j) => when(j.end_time)],
    ["Message", (j) => j.message || ""],
    ["", (j) => j.submission_id && j.type === "SUBMISSION"
      ? el("button", { class: "link", onclick: () => { state.openJob = j.submission_id; drawJobLogs(); } }, "logs")
      : ""],
  ], "no jobs yet");
  if (state.openJob) await drawJobLogs();
}

async function drawJobLogs() {
  const box = document.getElementById("job-logs");
  const id = state.openJob;
  const body = await getJSON(`/api/jobs/${encodeURIComponent(id)}/logs`);
  box.hidden = false;
  document.getElementById("job-logs-title").textContent = `Logs of ${id}`;
  const pre = document.getElementById("job-logs-text");
  const atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
  pre.textContent = body.logs || "(no output yet)";
  if (atEnd) pre.scrollTop = pre.scrollHeight;
}

async function drawActors() {
  const [actors, summary] = await Promise.all([stateAPI("actors?limit=1000"), stateAPI("actors/summarize")]);
  document.getElementById("actors-summary").textContent = Object.values(summary.summary)
    .map((s) => `${s.class_name}: ${counts(s.state_counts)}`).join(" | ") || "no actors";
  fillTable(document.getElementById("actors-table"), actors.result, [
    ["Actor", (a) => el("span", { class: "mono actor-id" }, a.actor_id)],
    ["Class", (a) => a.class_name],
    ["Name", (a) => a.name],
    ["State", (a) => badge(a.state)],
    ["Node", (a) => el("span", { class: "mono" }, short(a.node_id))],
    ["PID", (a) => a.pid],
    ["Job", (a) => a.job_id],
    ["Restarts", (a) => a.num_restarts],
    ["Death cause", (a) => (a.death_cause ? JSON.stringify(a.death_cause) : "")],
  ], "no actors");
}

function taskQuery() {
  const form = document.getElementById("task-filters");
  const params = new URLSearchParams();
  for (const key of ["state", "name", "job_id", "node_id"]) {
    const value = form.elements[key].value.trim();
    if (value) params.append("filter", `${key}=${value}`);
  }
  params.set("limit", form.elements.limit.value || "100");
  return params.toString();
}

async function drawTasks() {
  const [summary, tasks] = await Promise.all([stateAPI("tasks/summarize"), stateAPI(`tasks?${taskQuery()}`)]);
  fillTable(document.getElementById("tasks-summary"), Object.values(summary.summary), [
    ["Function", (s) => s.func_or_class_name],
    ["Type", (s) => s.type],
    ["States", (s) => counts(s.state_counts)],
  ], "no tasks recorded");
  document.getElementById("tasks-count").textContent =
    `${tasks.num_after_truncation} of ${tasks.total} matching attempts shown` +
    (tasks.task_events && tasks.task_events.num_evicted ? `; ${tasks.task_events.num_evicted} dropped from the window` : "");
  fillTable(document.getElementById("tasks-table"), tasks.result, [
    ["Task", (t) => el("span", { class: "mono" }, short(t.task_id))],
    ["Attempt", (t) => t.attempt_number],
    ["Name", (t) => t.name],
    ["State", (t) => badge(t.state)],
    ["Type", (t) => t.type],
    ["Job", (t) => t.job_id],
    ["Node", (t) => el("span", { class: "mono" }, short(t.node_id))],
    ["Error", (t) => t.error_type || ""],
  ], "no matching task attempts");
}

async function drawObjects() {
  const [summary, objects] = await Promise.all([stateAPI("objects/summarize"), stateAPI("objects?limit=500")]);
  fillTable(document.getElementById("objects-summary"), Object.entries(summary.summary), [
    ["Call site", ([site]) => el("span", { class: "mono" }, site)],
    ["Objects", ([, s]) => s.total_objects],
    ["Size", ([, s]) => bytes(s.total_size_mb * 1048576)],
    ["References", ([, s]) => counts(s.ref_type_counts)],
    ["Nodes", ([, s]) => s.total_num_nodes],
  ], "no objects");
  fillTable(document.getElementById("objects-table"), objects.result, [
    ["Object", (o) => el("span", { class: "mono" }, short(o.object_id))],
    ["Size", (o) => bytes(o.object_size)],
    ["Reference", (o) => o.reference_type],
    ["Held by", (o) => o.type],
    ["PID", (o) => o.pid],
    ["Node", (o) => el("span", { class: "mono" }, short(o.node_id))],
    ["Status", (o) => o.task_status],
  ], "no objects");
}

async function drawPlacementGroups() {
  const pgs = await stateAPI("placement_groups?detail=true&limit=1000");
  fillTable(document.getElementById("pgs-table"), pgs.result, [
    ["Placement group", (p) => el("span", { class: "mono" }, short(p.placement_group_id))],
    ["Name", (p) => p.name],
    ["State", (p) => badge(p.state)],
    ["Strategy", (p) => p.strategy],
    ["Bundles", (p) => (p.bundles || []).map((b) =>
      `${JSON.stringify(b.unit_resources)}@${short(b.node_id) || "?"}`).join(" ")],
  ], "no placement groups");
}

const SECTIONS = [drawOverview, drawJobs, drawActors, drawTasks, drawObjects, drawPlacementGroups];

// -- refresh and navigation ---------------------------------------------------------------
let refreshing = false;
async function refresh() {
  if (refreshing) return;
  refreshing = true;
  const status = document.getElementById("status");
  const results = await Promise.allSettled(SECTIONS.map((draw) => draw()));
  const failed = results.filter((r) => r.status === "rejected");
  status.textContent = failed.length
    ? `refresh failed: ${failed[0].reason.message || failed[0].reason}`
    : `updated ${new Date().toLocaleTimeString()}`;
  status.className = failed.length ? "error" : "muted";
  document.body.dataset.loaded = "true";
  refreshing = false;
}

function showTab() {
  const tab = (window.location.hash || "#overview").slice(1);
  state.tab = document.getElementById(tab) ? tab : "overview";
  for (const section of document.querySelectorAll("section.tab")) {
    section.classList.toggle("active", section.id === state.tab);
  }
  for (const link of document.querySelectorAll("#tabs a")) {
    link.classList.toggle("active", link.dataset.tab === state.tab);
  }
}

window.addEventListener("hashchange", showTab);
window.addEventListener("DOMContentLoaded", () => {
  showTab();
  const filters = document.getElementById("task-filters");
  filters.addEventListener("change", () => drawTasks());
  filters.addEventListener("submit", (event) => { event.preventDefault(); drawTasks(); });
  refresh();
  setInterval(refresh, REFRESH_MS);
});
