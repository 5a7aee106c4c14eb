// The console page: hash routes over the JSON API in workflow/console/app.py.
//   #/                       all executions
//   #/machine/<arn>          one state machine: its executions and a Start form
//   #/execution/<arn>        graph, state details, history, Stop / Redrive / report
//   #/models                 model versions: metrics, a plot across versions, which one production serves
"use strict";

const POLL_MS = 1000;
const IDLE_POLL_MS = 3000;
let session = {actions: false};
let timer = null;
let view = 0;  // bumped on every navigation, so a stale poll does not draw over a new page

function element(tag, attributes, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attributes || {})) {
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The token: opening the printed /?token=... URL puts it here (sessionStorage is per origin,
// so per port, and per tab) and takes it out of the address bar. It is sent as a header, never
// as a cookie: cookies ignore ports and would reach every other web service on 127.0.0.1.
// A stored token is used again only when this tab reloads the console or comes back to it
// (Back/Forward): a browser copies sessionStorage into windows a page opens, so a page this
// tab navigated to could otherwise window.open() the console with actions enabled.
const TOKEN_KEY = "ddcicd-token";

function adoptToken() {
  const query = new URLSearchParams(location.search);
  if (query.has("token")) {
    sessionStorage.setItem(TOKEN_KEY, query.get("token"));
    query.delete("token");
    const rest = query.toString();
    history.replaceState(null, "", `${location.pathname}${rest ? `?${rest}` : ""}${location.hash}`);
    return;
  }
  const [entry] = performance.getEntriesByType("navigation");
  if (!entry || !["reload", "back_forward"].includes(entry.type)) sessionStorage.removeItem(TOKEN_KEY);
}

async function api(path, body) {
  const headers = {};
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token) headers["X-Ddcicd-Token"] = token;
  const options = {headers, credentials: "omit"};
  if (body !== undefined) {
    Object.assign(options, {method: "POST", body: JSON.stringify(body)});
    headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, options);
  const text = await response.text();
  let data = null;
  try { data = JSON.parse(text); } catch (error) { data = {error: text}; }
  if (!response.ok) throw new Error((data && data.error) || text || response.statusText);
  return data;
}

function toast(message, kind) {
  const box = document.getElementById("toast");
  box.textContent = message;
  box.className = `toast ${kind || ""}`;
  box.hidden = false;
  clearTimeout(box.timer);
  box.timer = setTimeout(() => { box.hidden = true; }, 6000);
}

function shortName(arn) { return arn.split(":").pop(); }
function when(epoch) { return epoch ? new Date(epoch * 1000).toLocaleString() : "–"; }

function duration(start, stop) {
  if (!start) return "–";
  let seconds = Math.max(0, (stop || Date.now() / 1000) - start);
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const hours = Math.floor(seconds / 3600);
  const minutes = Math.floor((seconds % 3600) / 60);
  seconds = Math.floor(seconds % 60);
  return hours ? `${hours} h ${minutes} min` : `${minutes} min ${seconds} s`;
}

function badge(status) { return element("span", {class: `badge status-${status.toLowerCase()}`}, status); }

function schedule(callback, delay) {
  clearTimeout(timer);
  const current = view;
  timer = setTimeout(() => { if (current === view) callback(); }, delay || POLL_MS);
}

// ---------------------------------------------------------------- sidebar
async function loadMachines(selected) {
  const list = document.getElementById("machine-list");
  const machines = await api("/api/state-machines");
  list.textContent = "";
  list.append(element("li", {class: selected ? "" : "active"}, element("a", {href: "#/"}, "All executions")));
  list.append(element("li", {class: selected === "models" ? "active" : ""}, element("a", {href: "#/models", id: "models-link"}, "Models")));
  for (const machine of machines) {
    const meta = machine.latest
      ? [badge(machine.latest.status), ` ${machine.executions} execution${machine.executions === 1 ? "" : "s"}`]
      : ["no executions yet"];
    list.append(element("li", {class: selected === machine.stateMachineArn ? "active" : ""},
      element("a", {href: `#/machine/${encodeURIComponent(machine.stateMachineArn)}`}, machine.name),
      element("div", {class: "machine-meta"}, ...meta)));
  }
  return machines;
}

// ---------------------------------------------------------------- executions list
function executionsTable(executions) {
  if (!executions.length) return element("p", {class: "muted"}, "No executions yet.");
  return element("table", {class: "executions"},
    element("thead", {}, element("tr", {}, ["Name", "State machine", "Status", "Started", "Duration", "Redrives"].map((h) => element("th", {}, h)))),
    element("tbody", {}, executions.map((item) => element("tr", {"data-execution": item.name},
      element("td", {}, element("a", {href: `#/execution/${encodeURIComponent(item.executionArn)}`}, item.name)),
      element("td", {}, shortName(item.stateMachineArn)),
      element("td", {}, badge(item.status)),
      element("td", {}, when(item.startDate)),
      element("td", {}, duration(item.startDate, item.stopDate)),
      element("td", {class: "number"}, item.redriveCount || 0)))));
}

async function showExecutions(machineArn) {
  const current = view;
  const main = document.getElementById("main");
  const query = machineArn ? `?stateMachineArn=${encodeURIComponent(machineArn)}` : "";
  const [executions] = await Promise.all([api(`/api/executions${query}`), loadMachines(machineArn)]);
  if (current !== view) return;
  const page = `list:${machineArn || ""}:${view}`;
  if (main.dataset.page === page) {  // a poll: only the table changes (the Start form keeps what was typed)
    main.querySelector("#executions").replaceChildren(executionsTable(executions));
  } else {
    const parts = [element("h1", {}, machineArn ? shortName(machineArn) : "All executions")];
    if (machineArn) parts.push(await startForm(machineArn, executions));
    parts.push(element("div", {id: "executions"}, executionsTable(executions)));
    if (current !== view) return;
    main.replaceChildren(...parts);
    main.dataset.page = page;
  }
  schedule(() => showExecutions(machineArn), IDLE_POLL_MS);
}

async function startForm(machineArn, executions) {
  const previous = executions.length ? (await api(`/api/execution?arn=${encodeURIComponent(executions[0].executionArn)}`)).input : "{}";
  let pretty = previous;
  try { pretty = JSON.stringify(JSON.parse(previous), null, 2); } catch (error) { /* shown as stored */ }
  const input = element("textarea", {id: "start-input", rows: 8, spellcheck: "false"});
  input.value = pretty;
  const name = element("input", {id: "start-name", placeholder: "name (optional)"});
  const button = element("button", {id: "start-button", class: "primary", disabled: !session.actions,
    onclick: async () => {
      try {
        JSON.parse(input.value);
      } catch (error) { toast(`input is not valid JSON: ${error.message}`, "error"); return; }
      try {
        const result = await api("/api/start", {stateMachineArn: machineArn, input: input.value, name: name.value});
        location.hash = `#/execution/${encodeURIComponent(result.executionArn)}`;
      } catch (error) { toast(error.message, "error"); }
    }}, "Start execution");
  return element("details", {id: "start-form", class: "start"},
    element("summary", {}, "Start an execution"),
    element("p", {class: "muted"}, "Input JSON (prefilled with the latest execution's input):"), input,
    element("div", {class: "row"}, name, button));
}

// ---------------------------------------------------------------- one execution
const HISTORY_COLUMNS = ["ID", "Type", "State", "Time", "Details"];

function eventDetails(event) {
  const key = Object.keys(event).find((name) => name.endsWith("EventDetails"));
  return key ? event[key] : null;
}

function historyRow(event, start, stateOf) {
  const details = eventDetails(event);
  if (details && details.name && event.type.endsWith("StateEntered")) stateOf[event.id] = details.name;
  else if (stateOf[event.previousEventId]) stateOf[event.id] = stateOf[event.previousEventId];
  const kind = /Failed|TimedOut|Aborted/.test(event.type) ? "failed" : /Succeeded/.test(event.type) ? "succeeded" : "";
  const summary = details ? element("details", {}, element("summary", {}, summarise(details)),
                                    element("pre", {}, JSON.stringify(details, null, 2))) : "";
  return element("tr", {class: kind},
    element("td", {class: "number"}, event.id), element("td", {}, event.type),
    element("td", {}, stateOf[event.id] || ""), element("td", {class: "number"}, `+${(event.timestamp - start).toFixed(2)} s`),
    element("td", {}, summary));
}

function summarise(details) {
  if (details.error) return `${details.error}: ${(details.cause || "").slice(0, 120)}`;
  if (details.resource) return details.resource.replace("arn:aws:states:::", "");
  if (details.name) return details.name;
  return Object.keys(details).join(", ");
}

// A Lambda's cause is its error JSON, a .sync job's its Describe* response: lead with the message.
function causeBlock(error, cause) {
  let message = cause || "";
  try {
    const parsed = JSON.parse(cause);
    message = parsed.errorMessage || parsed.FailureReason || parsed.Cause || cause;
  } catch (parseError) { /* plain text */ }
  const parts = [element("strong", {}, error || "Error"), element("div", {class: "cause"}, String(message).slice(0, 2000))];
  if (cause && message !== cause) parts.push(element("details", {}, element("summary", {}, "full cause"), element("pre", {}, cause.slice(0, 20000))));
  return element("div", {class: "error-box"}, ...parts);
}

function jsonBlock(text) {
  if (text === null || text === undefined) return element("p", {class: "muted"}, "–");
  let shown = text;
  try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (error) { /* not JSON: as is */ }
  return element("pre", {class: "json"}, shown);
}

function statePanel(description, name) {
  if (!name) return element("p", {class: "muted"}, "Select a state in the graph to see its input and output.");
  const run = description.states[name];
  if (!run) return element("div", {}, element("h3", {}, name), element("p", {class: "muted"}, "Not entered in this execution."));
  const rows = [["Status", badge(run.status.toUpperCase())], ["Visits", run.visits],
                ["Time", duration(run.entered, run.status === "running" ? null : run.entered + run.seconds)]];
  if (run.resource) rows.push(["Resource", run.resource]);
  const parts = [element("h3", {}, name),
                 element("table", {class: "facts"}, rows.map(([k, v]) => element("tr", {}, element("th", {}, k), element("td", {}, v))))];
  if (run.error) parts.push(causeBlock(run.error, run.cause));
  parts.push(element("h4", {}, "Input"), jsonBlock(run.input), element("h4", {}, "Output"), jsonBlock(run.output));
  return element("div", {id: "state-detail"}, ...parts);
}

async function showExecution(arn) {
  const current = view;
  const main = document.getElementById("main");
  const [description, graph] = await Promise.all([api(`/api/execution?arn=${encodeURIComponent(arn)}`),
                                                  api(`/api/graph?arn=${encodeURIComponent(arn)}`),
                                                  loadMachines(null)]);
  if (current !== view) return;
  main.dataset.page = `execution:${view}`;
  const state = {selected: null, lastEvent: 0, stateOf: {}, description};
  const header = element("div", {class: "execution-header"});
  const graphBox = element("div", {class: "graph-box", id: "graph"});
  const panel = element("aside", {class: "state-panel", id: "state-panel"});
  const historyBody = element("tbody", {id: "history-body"});
  const output = element("div", {id: "execution-output"});
  const approvalBox = element("section", {class: "approval", id: "approval", hidden: true});
  main.replaceChildren(header, approvalBox,
    element("section", {class: "split"}, graphBox, panel),
    output,
    element("h2", {}, "Event history"),
    element("table", {class: "history"}, element("thead", {}, element("tr", {}, HISTORY_COLUMNS.map((h) => element("th", {}, h)))), historyBody));
  const drawing = drawGraph(graphBox, graph, (name) => {
    state.selected = name;
    drawing.select(name);
    panel.replaceChildren(statePanel(state.description, name));
  });

  function render(description) {
    state.description = description;
    const running = description.status === "RUNNING";
    const redrivable = description.redriveStatus === "REDRIVABLE";
    header.replaceChildren(
      element("div", {},
        element("div", {class: "crumbs"}, element("a", {href: `#/machine/${encodeURIComponent(description.stateMachineArn)}`}, shortName(description.stateMachineArn)), " / execution"),
        element("h1", {}, description.name, " ", badge(description.status))),
      element("dl", {class: "summary"},
        element("dt", {}, "Started"), element("dd", {}, when(description.startDate)),
        element("dt", {}, "Duration"), element("dd", {id: "duration"}, duration(description.startDate, description.stopDate)),
        element("dt", {}, "Redrives"), element("dd", {id: "redrive-count"}, description.redriveCount),
        element("dt", {}, "Events"), element("dd", {}, description.eventCount)),
      element("div", {class: "actions"},
        element("button", {id: "stop-button", disabled: !(running && session.actions), onclick: () => act("/api/stop", "stop")}, "Stop"),
        element("button", {id: "redrive-button", class: "primary", disabled: !(redrivable && session.actions), onclick: () => act("/api/redrive", "redrive")}, "Redrive"),
        element("a", {class: "button", id: "report-link", href: `/report?arn=${encodeURIComponent(arn)}`, target: "_blank", rel: "noopener"}, "Run report")));
    renderApproval(description.approval);
    output.replaceChildren(...(description.error
      ? [causeBlock(description.error, description.cause)]
      : description.output ? [element("details", {}, element("summary", {}, "Execution output"), jsonBlock(description.output))] : []));
    drawing.colour(description.states);
    if (state.selected) panel.replaceChildren(statePanel(description, state.selected));
    else panel.replaceChildren(statePanel(description, null));
  }

  // Drawn again only when another request comes (a redrive asks anew), so a reason being typed survives the polls.
  function renderApproval(approval) {
    const key = approval ? `${approval.state}@${approval.requested}` : "";
    if (approvalBox.dataset.key === key) return;
    approvalBox.dataset.key = key;
    approvalBox.hidden = !approval;
    if (!approval) { approvalBox.replaceChildren(); return; }
    const figures = [["Accuracy", approval.evaluation.accuracy], ["Log loss", approval.evaluation.log_loss],
                     ["Better than production", approval.evaluation.better_than_production],
                     ["p99 latency (ms)", approval.loadTest.p99_ms], ["Throughput (req/s)", approval.loadTest.throughput_rps],
                     ["Error rate", approval.loadTest.error_rate], ["SLO met", approval.loadTest.slo_met]];
    const reason = element("input", {id: "approval-reason", type: "text", placeholder: "reason (for a rejection)", maxlength: 1000});
    const allowed = session.actions;
    approvalBox.replaceChildren(
      element("h2", {}, "Waiting for approval before promotion"),
      element("p", {class: "muted"}, `${approval.state}: requested ${when(approval.requested)}`,
              approval.deadline ? `, counts as rejected after ${when(approval.deadline)}` : ""),
      element("table", {class: "facts", id: "approval-figures"},
              figures.map(([k, v]) => element("tr", {}, element("th", {}, k), element("td", {}, v === undefined || v === null ? "–" : String(v))))),
      element("div", {class: "actions"}, reason,
        element("button", {id: "approve-button", class: "primary", disabled: !allowed, onclick: () => decide("approve", reason.value)}, "Approve"),
        element("button", {id: "reject-button", disabled: !allowed, onclick: () => decide("reject", reason.value)}, "Reject")));
  }

  async function decide(decision, reason) {
    if (decision === "reject" && !confirm(`Reject the promotion of ${description.name}?`)) return;
    try {
      await api("/api/approve", {arn, decision, reason});
      toast(decision === "approve" ? "approved: the run promotes" : "rejected: the run cleans up", "ok");
      poll();
    } catch (error) { toast(`${decision} refused: ${error.message}`, "error"); }
  }

  async function act(path, verb) {
    if (verb === "stop" && !confirm(`Stop ${description.name}?`)) return;
    try {
      await api(path, {arn});
      toast(`${verb} requested`, "ok");
      poll();
    } catch (error) { toast(`${verb} refused: ${error.message}`, "error"); }
  }

  async function poll() {
    if (current !== view) return;
    try {
      const [latest, history] = await Promise.all([api(`/api/execution?arn=${encodeURIComponent(arn)}`),
                                                   api(`/api/history?arn=${encodeURIComponent(arn)}&after=${state.lastEvent}`)]);
      if (current !== view) return;
      const start = latest.startDate;
      for (const event of history.events) {
        historyBody.append(historyRow(event, start, state.stateOf));
        state.lastEvent = event.id;
      }
      if (latest.status !== state.description.status) loadMachines(null);  // the sidebar's latest status
      render(latest);
      // finished executions are still polled, slowly: a redrive from another process restarts them
      schedule(poll, latest.status === "RUNNING" ? POLL_MS : IDLE_POLL_MS);
    } catch (error) { toast(error.message, "error"); schedule(poll); }
  }
  render(description);
  poll();
}

// ---------------------------------------------------------------- models
const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attributes, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attributes || {})) node.setAttribute(key, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function fixed(value, digits) { return typeof value === "number" ? value.toFixed(digits) : "–"; }

// One series per metric on its own scale (log loss left axis, p99 right), versions oldest to newest.
function modelsPlot(versions) {
  const points = [...versions].reverse();
  const width = 640, height = 220, left = 56, right = 56, top = 16, bottom = 36;
  const plot = svg("svg", {id: "models-plot", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "validation log loss and p99 latency across model versions"});
  const x = (index) => left + (points.length === 1 ? (width - left - right) / 2 : index * (width - left - right) / (points.length - 1));
  const series = [
    {key: "log_loss", label: "validation log loss", cls: "series-loss", axis: left - 6, anchor: "end"},
    {key: "p99_ms", label: "p99 latency (ms)", cls: "series-p99", axis: width - right + 6, anchor: "start"},
  ];
  plot.append(svg("line", {x1: left, y1: height - bottom, x2: width - right, y2: height - bottom, class: "axis"}));
  points.forEach((item, index) => plot.append(svg("text", {x: x(index), y: height - bottom + 16, "text-anchor": "middle",
    class: item.in_production ? "tick production" : "tick"}, `v${item.version}`)));
  for (const line of series) {
    const values = points.map((item) => item[line.key]).filter((value) => typeof value === "number");
    if (!values.length) continue;
    const low = Math.min(...values), high = Math.max(...values), span = high - low || Math.abs(high) || 1;
    const y = (value) => top + (1 - (value - low) / span) * (height - top - bottom);
    const path = points.map((item, index) => typeof item[line.key] === "number" ? [x(index), y(item[line.key])] : null).filter(Boolean);
    plot.append(svg("polyline", {points: path.map((point) => point.join(",")).join(" "), class: `series ${line.cls}`}));
    for (const [px, py] of path) plot.append(svg("circle", {cx: px, cy: py, r: 4, class: `series ${line.cls}`}));
    plot.append(svg("text", {x: line.axis, y: y(high) + 4, "text-anchor": line.anchor, class: `tick ${line.cls}`}, fixed(high, line.key === "p99_ms" ? 1 : 3)));
    if (high !== low) plot.append(svg("text", {x: line.axis, y: y(low) + 4, "text-anchor": line.anchor, class: `tick ${line.cls}`}, fixed(low, line.key === "p99_ms" ? 1 : 3)));
  }
  const legend = element("div", {class: "legend"}, series.map((line) => element("span", {class: `key ${line.cls}`}, line.label)));
  return element("figure", {class: "models-plot"}, plot, legend);
}

function modelsTable(versions) {
  return element("table", {class: "executions models"},
    element("thead", {}, element("tr", {}, ["Version", "Status", "Accuracy", "Log loss", "p99 ms", "Error rate", "Registered", "Execution", "Report", "Reason"]
      .map((h) => element("th", {}, h)))),
    element("tbody", {}, versions.map((item) => element("tr", {"data-version": item.version, class: item.in_production ? "in-production" : ""},
      element("td", {class: "number"}, `v${item.version}`, item.in_production ? element("span", {class: "badge status-succeeded production-mark"}, "production") : null),
      element("td", {}, element("span", {class: `badge approval-${item.status.toLowerCase()}`}, item.status)),
      element("td", {class: "number"}, fixed(item.accuracy, 4)),
      element("td", {class: "number"}, fixed(item.log_loss, 4)),
      element("td", {class: "number"}, fixed(item.p99_ms, 1)),
      element("td", {class: "number"}, fixed(item.error_rate, 4)),
      element("td", {}, new Date(item.created).toLocaleString()),
      element("td", {}, item.execution_arn ? element("a", {href: `#/execution/${encodeURIComponent(item.execution_arn)}`}, item.execution_name) : "–"),
      element("td", {}, item.execution_arn ? element("a", {href: `/report?arn=${encodeURIComponent(item.execution_arn)}`, target: "_blank", rel: "noopener"}, "run report") : "–"),
      element("td", {class: "reason"}, item.approval_description || "")))));
}

async function showModels() {
  const current = view;
  const [models] = await Promise.all([api("/api/models"), loadMachines("models")]);
  if (current !== view) return;
  const serving = models.versions.find((item) => item.in_production);
  const parts = [element("h1", {}, `Models · ${models.group}`),
    element("p", {id: "production-note"}, serving
      ? [`Production (${models.production}) serves `, element("strong", {}, `version ${serving.version}`), "."]
      : `Production (${models.production}) serves none of these versions.`)];
  if (!models.versions.length) parts.push(element("p", {class: "muted"}, "No model versions yet: a run whose candidate passes the quality gate registers one."));
  else parts.push(modelsPlot(models.versions), modelsTable(models.versions));
  document.getElementById("main").replaceChildren(...parts);
  schedule(showModels, IDLE_POLL_MS);
}

// ---------------------------------------------------------------- routing
async function route() {
  view += 1;
  clearTimeout(timer);
  const hash = decodeURIComponent(location.hash.slice(1) || "/");
  try {
    if (hash.startsWith("/execution/")) await showExecution(hash.slice("/execution/".length));
    else if (hash.startsWith("/machine/")) await showExecutions(hash.slice("/machine/".length));
    else if (hash === "/models") await showModels();
    else await showExecutions(null);
  } catch (error) {
    document.getElementById("main").replaceChildren(element("div", {class: "error-box"}, error.message));
  }
}

async function start() {
  adoptToken();
  session = await api("/api/session");
  document.getElementById("session").replaceChildren(session.actions
    ? element("span", {class: "badge status-succeeded"}, "actions enabled")
    : element("span", {class: "badge status-none", title: "open the URL printed by `ddcicd console` (with ?token=...)"}, "read-only: open the URL with ?token="));
  window.addEventListener("hashchange", route);
  route();
}

start();
