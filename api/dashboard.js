// scale-scheduler dashboard: renders the daemon's snapshot stream and calls the REST API.
// Plain JavaScript, no build step, no external code. Data from the daemon is only ever put into
// the page as text (textContent), never as HTML.
"use strict";

(() => {
  const TOKEN_KEY = "scale-scheduler.api-token";
  const STALE_MS = 5000;
  const HISTORY = 120;
  const STATE_ORDER = [
    "QUEUED", "LAUNCHING", "STAGING", "STARTING", "RUNNING", "KILLING", "UNREACHABLE",
  ];
  const STATE_COLORS = {
    QUEUED: "#4c9aff", LAUNCHING: "#a371f7", STAGING: "#8957e5", STARTING: "#bc8cff",
    RUNNING: "#3fb950", KILLING: "#d29922", UNREACHABLE: "#f85149",
  };
  const FAILED_STATES = new Set(["FAILED", "LOST", "ERROR", "DROPPED", "GONE"]);

  const $ = (id) => document.getElementById(id);
  const authMode = document.body.dataset.auth || "none"; // none | write | all
  let snapshot = null;
  let lastFrameAt = 0;
  let previous = null; // {t, launches} for the launch rate
  let launchRate = 0;
  const history = { queue: [], launch: [] };
  let pendingNode = null;

  // --- small helpers ----------------------------------------------------------------------------

  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [key, value] of Object.entries(props)) {
        if (value === undefined || value === null) continue;
        if (key === "class") node.className = value;
        else if (key === "text") node.textContent = value;
        else if (key.startsWith("data-")) node.setAttribute(key, value);
        else node[key] = value;
      }
    }
    for (const child of children) {
      if (child !== null && child !== undefined) {
        node.append(child instanceof Node ? child : String(child));
      }
    }
    return node;
  }

  function setText(id, value) {
    const node = $(id);
    const text = String(value);
    if (node.textContent !== text) node.textContent = text;
  }

  const fmtInt = (n) => Number(n || 0).toLocaleString("en-US");

  function fmtNum(n, digits = 1) {
    const value = Number(n || 0);
    return Number.isInteger(value) ? fmtInt(value) : value.toFixed(digits);
  }

  function fmtMiB(mib) {
    const value = Number(mib || 0);
    if (value >= 1024 * 1024) return (value / 1024 / 1024).toFixed(1) + " TiB";
    if (value >= 1024) return (value / 1024).toFixed(1) + " GiB";
    return Math.round(value) + " MiB";
  }

  // "6.0 / 16.0 GiB": both figures in the unit that suits the larger one.
  function fmtMiBPair(part, whole) {
    const top = Math.max(Number(part || 0), Number(whole || 0));
    const [div, unit] = top >= 1024 * 1024 ? [1024 * 1024, "TiB"] : top >= 1024 ? [1024, "GiB"] : [1, "MiB"];
    const f = (v) => (div === 1 ? String(Math.round(v)) : (v / div).toFixed(1));
    return f(part || 0) + " / " + (whole ? f(whole) : "?") + " " + unit;
  }

  function ago(iso) {
    if (!iso || !snapshot) return "–";
    const seconds = (Date.parse(snapshot.time) - Date.parse(iso)) / 1000;
    if (!isFinite(seconds)) return "–";
    if (seconds < 1) return "just now";
    if (seconds < 60) return Math.round(seconds) + " s ago";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    return Math.round(seconds / 86400) + " d ago";
  }

  function badge(state) {
    return el("span", { class: "badge s-" + state, text: state.replace("_", " ") });
  }

  function toast(message, kind = "") {
    const node = el("div", { class: "toast " + kind, text: message });
    $("toasts").append(node);
    setTimeout(() => node.remove(), kind === "bad" ? 8000 : 4000);
  }

  // Rows keyed by id are updated in place, so a button keeps its identity across updates.
  function syncRows(tbody, items, key, create, update) {
    const existing = new Map();
    for (const row of tbody.rows) existing.set(row.dataset.key, row);
    let cursor = tbody.firstElementChild;
    for (const item of items) {
      const id = String(key(item));
      let row = existing.get(id);
      if (row) existing.delete(id);
      else {
        row = create(item);
        row.dataset.key = id;
      }
      update(row, item);
      if (row !== cursor) tbody.insertBefore(row, cursor);
      else cursor = cursor.nextElementSibling;
    }
    for (const row of existing.values()) row.remove();
  }

  function cells(row, count) {
    while (row.cells.length < count) row.insertCell();
    return row.cells;
  }

  function setCell(cell, text, className) {
    const value = text === null || text === undefined ? "" : String(text);
    if (cell.textContent !== value) cell.textContent = value;
    if (className !== undefined && cell.className !== className) cell.className = className;
  }

  function setBadge(cell, state) {
    const current = cell.firstElementChild;
    if (current && current.textContent === state.replace("_", " ")) return;
    cell.replaceChildren(badge(state));
  }

  // --- the API and the token --------------------------------------------------------------------

  function token() {
    return sessionStorage.getItem(TOKEN_KEY) || "";
  }

  function authHeaders() {
    const value = token();
    return value ? { Authorization: "Bearer " + value } : {};
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json", ...authHeaders() };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      cache: "no-store",
    });
    if (response.status === 401) {
      refused();
      throw new Error("The API needs a valid token for this.");
    }
    const text = await response.text();
    if (!response.ok) throw new Error(text.trim() || response.status + " " + response.statusText);
    return text ? JSON.parse(text) : null;
  }

  function askToken(why) {
    const dialog = $("token-dialog");
    if (why) setText("token-why", why);
    $("token-skip").hidden = authMode === "all";
    $("token-forget").hidden = !token();
    $("token-input").value = "";
    if (!dialog.open) dialog.showModal();
    $("token-input").focus();
  }

  function refused() {
    const had = Boolean(token());
    sessionStorage.removeItem(TOKEN_KEY);
    updateTokenButton();
    askToken(had ? "The token was refused; enter the current one." : null);
  }

  function updateTokenButton() {
    const button = $("token-button");
    button.hidden = authMode === "none";
    button.textContent = token() ? "Token set" : "Sign in";
  }

  // --- the live stream --------------------------------------------------------------------------

  async function stream() {
    let delay = 500;
    for (;;) {
      if (authMode === "all" && !token()) {
        await new Promise((resolve) => setTimeout(resolve, 500));
        continue;
      }
      const controller = new AbortController();
      const watchdog = setInterval(() => {
        if (Date.now() - lastFrameAt > STALE_MS) controller.abort();
      }, 1000);
      try {
        lastFrameAt = Date.now();
        const response = await fetch("/dashboard/events/", {
          headers: { Accept: "text/event-stream", ...authHeaders() },
          cache: "no-store",
          signal: controller.signal,
        });
        if (response.status === 401) {
          refused();
          throw new Error("unauthorized");
        }
        if (!response.ok || !response.body) throw new Error("HTTP " + response.status);
        const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += value;
          let end;
          while ((end = buffer.indexOf("\n\n")) >= 0) {
            const frame = buffer.slice(0, end);
            buffer = buffer.slice(end + 2);
            lastFrameAt = Date.now();
            handleFrame(frame);
            delay = 500;
          }
        }
      } catch (error) {
        // reconnect below
      } finally {
        clearInterval(watchdog);
      }
      setLive("stale", "reconnecting");
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 8000);
    }
  }

  function handleFrame(frame) {
    let event = "message";
    const data = [];
    for (const line of frame.split("\n")) {
      if (line.startsWith("event:")) event = line.slice(6).trim();
      else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
    }
    if (event !== "snapshot" || !data.length) return;
    render(JSON.parse(data.join("\n")));
  }

  function setLive(state, text) {
    const live = $("live");
    live.dataset.state = state;
    setText("live-text", text);
  }

  // --- rendering --------------------------------------------------------------------------------

  function render(data) {
    snapshot = data;
    const now = Date.parse(data.time);
    setLive("live", "live · " + new Date(now).toLocaleTimeString("en-GB"));
    renderHeader(data);
    renderKpis(data, now);
    renderResources(data.resources);
    renderStates(data.tasks || {}, data.suppressed);
    renderFacts(data);
    renderNodes(data.nodes || { count: 0, items: [] });
    renderQueue(data.queue || [], data.queue_depth);
    renderRecent(data.recent || []);
  }

  function pill(id, text, kind) {
    const node = $(id);
    setText(id, text);
    const className = "pill " + kind;
    if (node.className !== className) node.className = className;
  }

  function renderLeader(view) {
    if (!view) return;
    const leader = view.leader;
    pill("leader-pill", leader ? "epoch " + view.epoch : "none", leader ? "ok" : "bad");
    setText("leader-addr", leader ? leader.instance + " (" + leader.hostname + ")" : "no leader known");
  }

  function renderHeader(data) {
    const master = data.master;
    const scheduler = data.scheduler;
    pill("master-pill", master.is_online ? "online" : "offline", master.is_online ? "ok" : "bad");
    setText("master-addr", master.hostname ? master.hostname + ":" + master.port : "not known");
    const connection = scheduler.connection;
    const kind = connection === "SUBSCRIBED" ? "ok" : connection === "CONNECTING" ? "warn" : "bad";
    pill("scheduler-pill", connection.toLowerCase(), kind);
    setText("scheduler-addr", scheduler.hostname);
    setText("framework-id", scheduler.framework_id || "");
    renderLeader(data.leader);

    const button = $("pause-button");
    button.disabled = false;
    button.dataset.paused = String(scheduler.is_paused);
    button.textContent = scheduler.is_paused ? "Resume scheduler" : "Pause scheduler";
    button.className = "btn " + (scheduler.is_paused ? "btn-resume" : "btn-pause");

    const banner = $("banner");
    let message = "";
    let bannerKind = "";
    if (!scheduler.is_online) {
      message = "Not subscribed to Mesos (" + connection.toLowerCase() + ")";
      if (scheduler.last_error) message += ": " + scheduler.last_error;
      bannerKind = "bad";
    } else if (scheduler.is_paused) {
      message = "The scheduler is paused: nothing is launched and offers are suppressed. "
        + "Running tasks continue.";
      bannerKind = "warn";
    }
    banner.hidden = !message;
    if (message) {
      setText("banner", message);
      banner.className = "banner " + bannerKind;
    }
  }

  function pushHistory(series, value) {
    series.push(value);
    if (series.length > HISTORY) series.shift();
  }

  function spark(id, series) {
    const svg = $(id);
    if (series.length < 2) return;
    const max = Math.max(1, ...series);
    const step = 120 / (HISTORY - 1);
    const offset = 120 - step * (series.length - 1);
    const points = series.map((v, i) => (offset + i * step).toFixed(1) + "," + (27 - (v / max) * 25).toFixed(1));
    const ns = "http://www.w3.org/2000/svg";
    const area = document.createElementNS(ns, "polygon");
    area.setAttribute("points", offset.toFixed(1) + ",28 " + points.join(" ") + " 120,28");
    const line = document.createElementNS(ns, "polyline");
    line.setAttribute("points", points.join(" "));
    svg.replaceChildren(area, line);
  }

  function renderKpis(data, now) {
    const counters = data.counters || {};
    const tasks = data.tasks || {};
    const launches = counters.launches || 0;
    if (previous && now > previous.t) {
      const rate = Math.max(0, (launches - previous.launches) / ((now - previous.t) / 1000));
      launchRate = launchRate * 0.5 + rate * 0.5;
    }
    previous = { t: now, launches };
    pushHistory(history.queue, data.queue_depth);
    pushHistory(history.launch, launchRate);

    setText("queue-depth", fmtInt(data.queue_depth));
    setText("running", fmtInt(tasks.RUNNING || 0));
    const starting = (tasks.LAUNCHING || 0) + (tasks.STAGING || 0) + (tasks.STARTING || 0);
    setText("running-sub", fmtInt(starting) + " starting · " + fmtInt(tasks.KILLING || 0) + " killing");
    setText("launches", fmtInt(launches));
    setText("launch-rate", launchRate.toFixed(1));
    setText("offers-received", fmtInt(counters.offers_received));
    setText("offers-accepted", fmtInt(counters.offers_accepted));
    setText("offers-declined", fmtInt(counters.offers_declined));
    setText("finished", fmtInt(counters.finished));
    setText("failed", fmtInt(counters.failed));

    const nodes = (data.nodes && data.nodes.items) || [];
    const ready = nodes.filter((n) => n.state === "READY").length;
    const paused = nodes.filter((n) => n.state === "PAUSED").length;
    const offline = nodes.filter((n) => n.state === "OFFLINE").length;
    setText("nodes-ready", fmtInt(ready) + " / " + fmtInt(data.nodes ? data.nodes.count : 0));
    setText("nodes-sub", fmtInt(paused) + " paused · " + fmtInt(offline) + " offline");
    spark("spark-queue", history.queue);
    spark("spark-launch", history.launch);
  }

  function renderResources(resources) {
    const container = $("resource-bars");
    const rows = [
      ["CPUs", "cpus", (v) => fmtNum(v, 2)],
      ["Memory", "mem", fmtMiB],
      ["Disk", "disk", fmtMiB],
    ];
    if (!container.children.length) {
      for (const [label, key] of rows) {
        container.append(
          el("div", { class: "bar-row", "data-resource": key },
            el("span", { class: "what", text: label }),
            el("div", { class: "track" },
              el("div", { class: "fill scheduled" }), el("div", { class: "fill used" })),
            el("span", { class: "figures" })),
        );
      }
    }
    setText("resources-hint", resources ? "" : "totals not known yet (no agent seen)");
    for (const [, key, fmt] of rows) {
      const row = container.querySelector('[data-resource="' + key + '"]');
      const track = row.querySelector(".track");
      const figures = row.querySelector(".figures");
      if (!resources) {
        track.classList.add("unknown");
        row.querySelector(".fill.scheduled").style.width = "0%";
        row.querySelector(".fill.used").style.width = "0%";
        figures.textContent = "unknown";
        continue;
      }
      track.classList.remove("unknown");
      const total = resources.total[key] || 0;
      const scheduled = resources.scheduled[key] || 0;
      const used = resources.used[key] || 0;
      const pct = (v) => (total > 0 ? Math.min(100, (v / total) * 100) : 0);
      row.querySelector(".fill.scheduled").style.width = pct(scheduled) + "%";
      row.querySelector(".fill.used").style.width = pct(used) + "%";
      const pair = key === "cpus"
        ? fmt(scheduled) + " / " + fmt(total)
        : fmtMiBPair(scheduled, total);
      figures.replaceChildren(
        pair + " ",
        el("span", { class: "pct", text: "(" + pct(scheduled).toFixed(0) + "%) · " + fmt(used) + " used" }),
      );
    }
  }

  function renderStates(tasks, suppressed) {
    const total = STATE_ORDER.reduce((sum, state) => sum + (tasks[state] || 0), 0);
    const stack = $("state-stack");
    const legend = $("state-legend");
    if (!stack.children.length) {
      for (const state of STATE_ORDER) {
        stack.append(el("span", { "data-state": state, title: state }));
        const item = el("li", { "data-state": state },
          el("i", { class: "sw" }), state.toLowerCase(), el("b", { text: "0" }));
        item.querySelector("i").style.background = STATE_COLORS[state];
        legend.append(item);
      }
    }
    for (const state of STATE_ORDER) {
      const count = tasks[state] || 0;
      const bar = stack.querySelector('[data-state="' + state + '"]');
      bar.style.width = (total ? (count / total) * 100 : 0) + "%";
      bar.style.background = STATE_COLORS[state];
      legend.querySelector('[data-state="' + state + '"] b').textContent = fmtInt(count);
    }
    setText("offers-state", suppressed ? "offers suppressed" : "receiving offers");
  }

  function renderFacts(data) {
    const counters = data.counters || {};
    setText("fact-passes", fmtInt(counters.offer_passes));
    setText("fact-rescinded", fmtInt(counters.offers_rescinded));
    setText("fact-updates", fmtInt(counters.status_updates));
    setText("fact-subscriptions", fmtInt(data.scheduler.subscriptions));
    setText("fact-reconnects", fmtInt(data.scheduler.reconnects));
    setText("fact-cancelled", fmtInt(counters.cancelled));
  }

  function miniBar(cell, scheduled, total, fmt) {
    if (!cell.firstElementChild) {
      cell.append(el("div", { class: "mini" },
        el("div", { class: "track" }, el("div", { class: "fill scheduled" })),
        el("span", { class: "txt" })));
    }
    const pct = total ? Math.min(100, (scheduled / total) * 100) : 0;
    cell.querySelector(".fill").style.width = pct + "%";
    const text = fmt(scheduled, total);
    const txt = cell.querySelector(".txt");
    if (txt.textContent !== text) txt.textContent = text;
  }

  function renderNodes(nodes) {
    const tbody = $("nodes-table").tBodies[0];
    const items = nodes.items || [];
    $("nodes-empty").hidden = items.length > 0;
    setText("nodes-hint", items.length < nodes.count
      ? "showing " + items.length + " of " + fmtInt(nodes.count)
      : fmtInt(nodes.count) + " known");
    syncRows(tbody, items, (n) => n.id, (n) => {
      const row = el("tr", { "data-node": n.hostname });
      const button = el("button", { type: "button", class: "btn btn-small node-toggle" });
      button.addEventListener("click", () => toggleNode(row.dataset.key));
      cells(row, 9)[8].append(button);
      return row;
    }, (row, n) => {
      const c = cells(row, 9);
      setCell(c[0], n.hostname, "mono host");
      setBadge(c[1], n.state);
      setCell(c[2], fmtInt(n.running_tasks), "num");
      const total = n.resources.total || {};
      const scheduled = n.resources.scheduled || {};
      miniBar(c[3], scheduled.cpus || 0, total.cpus || 0,
        (v, t) => fmtNum(v, 1) + " / " + (t ? fmtNum(t, 1) : "?"));
      miniBar(c[4], scheduled.mem || 0, total.mem || 0, fmtMiBPair);
      // Real usage of every container on the node (null: its agent did not answer).
      const used = n.resources.used;
      setCell(c[5], used ? fmtNum(used.cpus, 2) + " CPUs · " + fmtMiB(used.mem) : "unknown",
        used ? "num" : "num why");
      setCell(c[6], ago(n.last_offer), "");
      setCell(c[7], n.pause_reason || "", "why");
      row.dataset.paused = String(n.is_paused);
      c[8].className = "act";
      const button = c[8].firstElementChild;
      const label = n.is_paused ? "Resume" : "Pause…";
      if (button.textContent !== label) button.textContent = label;
      button.className = "btn btn-small node-toggle " + (n.is_paused ? "btn-resume" : "btn-quiet");
    });
  }

  function renderQueue(queue, depth) {
    const tbody = $("queue-table").tBodies[0];
    $("queue-empty").hidden = queue.length > 0;
    setText("queue-hint", depth > queue.length
      ? "launch order · first " + queue.length + " of " + fmtInt(depth)
      : "launch order");
    syncRows(tbody, queue, (t) => t.id, () => el("tr"), (row, t) => {
      const c = cells(row, 6);
      setCell(c[0], t.id, "num mono");
      setCell(c[1], t.name, "name");
      c[1].title = t.name;
      setCell(c[2], t.priority, "num");
      setCell(c[3], fmtNum(t.cpus, 2), "num");
      setCell(c[4], fmtMiB(t.mem), "num");
      setCell(c[5], t.waiting_reason || "", "why");
      c[5].title = t.waiting_reason || "";
    });
  }

  function attemptsText(t) {
    // "3 (2 task, 1 cluster)": the attempts, and the classes of those that failed.
    const counts = {};
    for (const name of t.attempt_classes || []) counts[name] = (counts[name] || 0) + 1;
    const parts = Object.keys(counts).map((name) => counts[name] + " " + name);
    return parts.length ? t.attempts + " (" + parts.join(", ") + ")" : String(t.attempts);
  }

  function renderRecent(recent) {
    const tbody = $("recent-table").tBodies[0];
    $("recent-empty").hidden = recent.length > 0;
    syncRows(tbody, recent, (t) => t.id, () => el("tr"), (row, t) => {
      const c = cells(row, 7);
      setCell(c[0], t.id, "num mono");
      setCell(c[1], t.name, "name");
      c[1].title = t.name;
      setBadge(c[2], t.state);
      setCell(c[3], t.hostname || "", "mono");
      setCell(c[4], attemptsText(t), "num");
      c[4].title = (t.attempt_classes || []).length
        ? "failed attempts by class (task: its own; cluster: agent lost or gone; operator: killed)"
        : "";
      let detail = t.waiting_reason || t.message || "";
      if (!t.waiting_reason && t.reason) detail = detail ? detail + " (" + t.reason + ")" : t.reason;
      setCell(c[5], detail, FAILED_STATES.has(t.state) ? "why bad" : "why");
      c[5].title = detail;
      setCell(c[6], ago(t.last_modified), "");
    });
  }

  // --- actions ----------------------------------------------------------------------------------

  async function togglePause() {
    const button = $("pause-button");
    const pause = button.dataset.paused !== "true";
    button.disabled = true;
    try {
      const result = await api("PATCH", "/scheduler/", { is_paused: pause });
      if (snapshot) {
        snapshot.scheduler.is_paused = result.is_paused;
        renderHeader(snapshot);
      }
      toast(result.is_paused ? "Scheduler paused." : "Scheduler resumed.", "ok");
    } catch (error) {
      toast(error.message, "bad");
    } finally {
      button.disabled = false;
    }
  }

  function findNode(id) {
    const items = (snapshot && snapshot.nodes && snapshot.nodes.items) || [];
    return items.find((n) => String(n.id) === String(id));
  }

  async function patchNode(id, body, done) {
    try {
      const node = await api("PATCH", "/nodes/" + id + "/", body);
      if (snapshot) {
        const items = snapshot.nodes.items;
        const index = items.findIndex((n) => n.id === node.id);
        if (index >= 0) items[index] = node;
        renderNodes(snapshot.nodes);
      }
      toast(done(node), "ok");
    } catch (error) {
      toast(error.message, "bad");
    }
  }

  function toggleNode(id) {
    const node = findNode(id);
    if (!node) return;
    if (node.is_paused) {
      patchNode(id, { is_paused: false }, (n) => "Node " + n.hostname + " resumed.");
      return;
    }
    pendingNode = node;
    setText("node-dialog-host", node.hostname);
    $("node-reason").value = "";
    $("node-dialog").showModal();
    $("node-reason").focus();
  }

  const OPERATORS = ["UNIQUE", "CLUSTER", "GROUP_BY", "MAX_PER", "LIKE", "UNLIKE", "IS"];

  // The constraints field: Marathon's JSON list form as is, or one per line as
  // field:OPERATOR[:value] or key=value (IS), as `scale-scheduler submit --constraint` takes them.
  function parseConstraints(text) {
    const trimmed = text.trim();
    if (!trimmed) return null;
    if (trimmed.startsWith("[") || trimmed.startsWith("{")) return JSON.parse(trimmed);
    return trimmed.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
      const parts = line.split(":");
      if (parts.length >= 2 && parts[0] && OPERATORS.includes(parts[1])) {
        return parts.length > 2 ? [parts[0], parts[1], parts.slice(2).join(":")] : parts.slice(0, 2);
      }
      const at = line.indexOf("=");
      if (at < 1) throw new Error("constraint '" + line + "': expected field:OPERATOR[:value] or key=value");
      return [line.slice(0, at), "IS", line.slice(at + 1)];
    });
  }

  async function submitTasks(event) {
    event.preventDefault();
    const form = event.target;
    const values = Object.fromEntries(new FormData(form).entries());
    const count = Math.max(1, Math.min(10000, parseInt(values.count, 10) || 1));
    const base = {
      cpus: Number(values.cpus),
      mem: Number(values.mem),
      disk: Number(values.disk || 0),
      priority: parseInt(values.priority, 10) || 100,
    };
    if (values.command.trim()) base.command = values.command.trim();
    if (values.image.trim()) base.container = { image: values.image.trim() };
    if (values.group.trim()) base.group = values.group.trim();
    const attempts = parseInt(values.max_attempts, 10);
    if (attempts > 1) base.max_attempts = attempts;
    // Left empty, a lifecycle field is left out and the daemon's default applies.
    if (values.kill_grace_period !== "") base.kill_grace_period = Number(values.kill_grace_period);
    if (values.max_runtime !== "") base.max_runtime = Number(values.max_runtime);
    if (values.retry_initial !== "") base.retry_backoff = { initial: Number(values.retry_initial) };
    try {
      const constraints = parseConstraints(values.constraints);
      if (constraints) base.constraints = constraints;
    } catch (error) {
      toast(error.message, "bad");
      return;
    }
    const name = values.name.trim();
    const tasks = [];
    for (let i = 1; i <= count; i += 1) {
      tasks.push({ ...base, name: count > 1 ? name + "-" + i : name });
    }
    const button = $("submit-button");
    button.disabled = true;
    try {
      const created = await api("POST", "/queue/", count > 1 ? tasks : tasks[0]);
      const list = Array.isArray(created) ? created : [created];
      const ids = list.map((t) => t.id);
      toast(list.length === 1
        ? "Queued task " + ids[0] + "."
        : "Queued " + list.length + " tasks (" + ids[0] + "–" + ids[ids.length - 1] + ").", "ok");
    } catch (error) {
      toast(error.message, "bad");
    } finally {
      button.disabled = false;
    }
  }

  // --- wiring -----------------------------------------------------------------------------------

  function init() {
    $("pause-button").addEventListener("click", togglePause);
    $("submit-form").addEventListener("submit", submitTasks);
    $("node-dialog-cancel").addEventListener("click", () => $("node-dialog").close());
    $("node-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const node = pendingNode;
      $("node-dialog").close();
      if (!node) return;
      const reason = $("node-reason").value.trim();
      patchNode(node.id, { is_paused: true, pause_reason: reason || null },
        (n) => "Node " + n.hostname + " paused.");
    });
    $("token-button").addEventListener("click", () => askToken(null));
    $("token-skip").addEventListener("click", () => $("token-dialog").close());
    $("token-forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      updateTokenButton();
      $("token-dialog").close();
    });
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      updateTokenButton();
      $("token-dialog").close();
    });
    updateTokenButton();
    if (authMode !== "none" && !token()) askToken(null);
    stream();
  }

  init();
})();
