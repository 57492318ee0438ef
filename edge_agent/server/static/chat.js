// The chat page of `edge-agent serve`: one conversation over the OpenAI-compatible streaming API
// and a side panel with what the agent did per reply. Plain JS, no libraries, nothing fetched from
// outside this server. Text from customers, replies and strategies is set with textContent only.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = {
    history: [],          // OpenAI messages of the conversation so far
    replies: [],          // per assistant reply: {item, ext}
    key: null,            // the API key, in memory only (never stored)
    keyRequired: false,
    model: "edge-agent",
    controller: null,     // AbortController of the request in flight
    strategies: new Map(),  // id -> Promise of {id, scenario, compact}
    countdown: null,
    healthTimer: null,
    lastText: "",
  };

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function headers() {
    const out = { "Content-Type": "application/json" };
    if (state.key) out.Authorization = "Bearer " + state.key;
    return out;
  }

  // --- banner: one clear line per error state ----------------------------------------------
  function showBanner(text, { bad = false, retry = false } = {}) {
    $("banner-text").textContent = text;
    $("banner").classList.toggle("bad", bad);
    $("banner-retry").hidden = !retry;
    $("banner").hidden = false;
  }

  function clearBanner() {
    if (state.countdown) { clearInterval(state.countdown); state.countdown = null; }
    $("banner").hidden = true;
    $("banner-text").textContent = "";
  }

  function setBusy(busy) {
    $("send").disabled = busy;
    $("input").readOnly = busy;
  }

  function showKeyBar(message) {
    $("keybar").hidden = false;
    if (message) showBanner(message, { bad: true });
    $("key").focus();
  }

  function busyCountdown(seconds, detail) {
    let left = Math.max(1, seconds);
    $("banner").title = detail;  // the server's own words, e.g. how many requests wait
    const tick = () => {
      if (left <= 0) {
        clearInterval(state.countdown); state.countdown = null;
        showBanner("The agent has room again; press Retry or Send.", { retry: true });
        $("send").disabled = false;
        return;
      }
      showBanner(`The agent is busy answering other customers. Retry in ${left} s.`);
      $("send").disabled = true;
      left -= 1;
    };
    if (state.countdown) clearInterval(state.countdown);
    tick();
    state.countdown = setInterval(tick, 1000);
  }

  // The server may be restarting or still loading its model: poll /health until it answers.
  function waitForServer(loading) {
    showBanner(loading
      ? "The model is still loading; this page is ready as soon as it is. Waiting\u2026"
      : "Cannot reach the server; it may be starting or loading its model. Trying again\u2026", { bad: !loading });
    $("send").disabled = true;
    if (state.healthTimer) return;
    state.healthTimer = setInterval(async () => {
      try {
        const res = await fetch("health", { cache: "no-store" });
        if (res.ok) {
          clearInterval(state.healthTimer); state.healthTimer = null;
          $("send").disabled = false;
          showBanner(loading ? "The model is ready." : "The server is back; press Retry or Send.",
            { retry: Boolean($("input").value) });
          loadInfo();
        }
      } catch (err) { /* still down */ }
    }, loading ? 1000 : 2000);
  }

  // --- the conversation ----------------------------------------------------------------------
  function addMessage(role, text) {
    const item = el("li", "msg " + role);
    item.appendChild(el("span", "who", role === "user" ? "customer" : "agent"));
    item.appendChild(el("span", "text", text));
    $("log").appendChild(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  async function* sseEvents(body) {
    const reader = body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        const data = block.split("\n").filter((l) => l.startsWith("data:"))
          .map((l) => l.slice(5).trimStart()).join("\n");
        if (!data) continue;
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }

  async function failureOf(res) {
    let error = {};
    try { error = (await res.json()).error || {}; } catch (err) { /* not JSON */ }
    const message = error.message || `${res.status} ${res.statusText}`;
    if (res.status === 401) return { kind: "key", message };
    if (res.status === 429) {
      const retry = parseInt(res.headers.get("Retry-After") || "", 10);
      return { kind: "busy", message, retry: Number.isFinite(retry) ? retry : 5 };
    }
    if (res.status === 503 && error.code === "model_loading") return { kind: "loading", message };
    if (res.status === 503 || res.status === 502) return { kind: "down", message };
    return { kind: "error", message };
  }

  function report(failure) {
    if (failure.kind === "key") {
      state.key = null;
      showKeyBar(state.keyRequired || !failure.message
        ? "The API key was refused: enter the key the server was started with (--api-key or EDGE_AGENT_API_KEY)."
        : failure.message);
    } else if (failure.kind === "busy") {
      busyCountdown(failure.retry, failure.message);
    } else if (failure.kind === "down") {
      showBanner(`The server cannot answer now: ${failure.message}`, { bad: true, retry: true });
    } else if (failure.kind === "unreachable" || failure.kind === "loading") {
      waitForServer(failure.kind === "loading");
    } else {
      showBanner(failure.message, { bad: true, retry: true });
    }
  }

  async function send(text) {
    if (!text.trim() || state.controller) return;
    if (state.keyRequired && !state.key) { showKeyBar("This server needs its API key before you can chat."); return; }
    clearBanner();
    state.lastText = text;
    const turn = { role: "user", content: text };
    const userItem = addMessage("user", text);
    const replyItem = addMessage("assistant", "");
    replyItem.classList.add("pending");
    $("input").value = "";
    setBusy(true);
    const controller = new AbortController();
    state.controller = controller;
    let reply = "";
    let ext = null;
    let failure = null;
    try {
      const res = await fetch("v1/chat/completions", {
        method: "POST", headers: headers(), signal: controller.signal,
        body: JSON.stringify({ model: state.model, stream: true, messages: [...state.history, turn] }),
      });
      if (!res.ok) {
        failure = await failureOf(res);
      } else {
        for await (const event of sseEvents(res.body)) {
          if (event.error) { failure = { kind: "error", message: event.error.message || "the reply failed" }; break; }
          const delta = event.choices && event.choices[0] && event.choices[0].delta;
          if (delta && delta.content) {
            reply += delta.content;
            replyItem.querySelector(".text").textContent = reply;
          }
          if (event.edge_agent) ext = event.edge_agent;
        }
        if (!failure && ext === null) failure = { kind: "error", message: "the reply stream ended early; retry" };
      }
    } catch (err) {
      failure = err && err.name === "AbortError" ? { kind: "aborted" } : { kind: "unreachable" };
    } finally {
      if (state.controller === controller) state.controller = null;
      setBusy(false);
    }
    if (failure) {
      userItem.remove();
      replyItem.remove();
      if (failure.kind !== "aborted") {
        if (!$("input").value) $("input").value = text;  // nothing the customer typed is lost
        report(failure);
      }
      return;
    }
    replyItem.classList.remove("pending");
    state.history.push(turn, { role: "assistant", content: reply });
    const index = state.replies.push({ item: replyItem, ext }) - 1;
    replyItem.dataset.reply = String(index);
    replyItem.addEventListener("click", () => select(index));
    select(index);
    $("input").focus();
  }

  function select(index) {
    state.replies.forEach((r, i) => r.item.classList.toggle("selected", i === index));
    const body = $("panel-body");
    body.replaceChildren(renderPanel(state.replies[index].ext, index + 1));
  }

  function reset() {
    if (state.controller) state.controller.abort();
    state.history = [];
    state.replies = [];
    $("log").replaceChildren();
    $("panel-body").replaceChildren(el("p", "muted", "Conversation reset. Send a message to start again."));
    clearBanner();
    $("input").value = "";
    $("input").focus();
  }

  // --- the side panel ------------------------------------------------------------------------
  const TIMING_LABELS = {
    queue_ms: "waited in queue", embed_ms: "embed query", search_ms: "search", retrieval_ms: "retrieval total",
    select_ms: "strategy selection", assemble_ms: "prompt assembly", ttft_ms: "first token", generate_ms: "generation", total_ms: "total",
    decode_tps: "decode speed",
  };
  const KNOWN = new Set(["route", "reason", "strategy_id", "mode", "strategies", "facts", "candidates", "timings_ms",
    "trimmed"]);

  function strategyText(id) {
    if (!state.strategies.has(id)) {
      const found = fetch("ui/strategy/" + encodeURIComponent(id), { headers: headers() })
        .then((res) => (res.ok ? res.json() : null)).catch(() => null);
      state.strategies.set(id, found);
    }
    return state.strategies.get(id);
  }

  function scoreRow(label, score, extra) {
    const item = el("li", "item");
    const head = el("div", "head");
    head.appendChild(el("span", "id", label));
    const right = el("span", "score", typeof score === "number" ? score.toFixed(3) : "");
    head.appendChild(right);
    item.appendChild(head);
    if (typeof score === "number") {
      const bar = el("div", "bar");
      const fill = el("span");
      fill.style.width = Math.round(Math.max(0, Math.min(1, score)) * 100) + "%";
      bar.appendChild(fill);
      item.appendChild(bar);
    }
    if (extra) item.appendChild(extra);
    return item;
  }

  function section(parent, title) {
    parent.appendChild(el("h3", null, title));
  }

  function renderPanel(ext, number) {
    const root = el("div", "details");
    ext = ext || {};
    root.appendChild(el("p", "muted", `Reply ${number || ""}${ext.mode ? " \u00b7 mode " + ext.mode : ""}`));
    if (ext.route) {
      section(root, "Route");
      root.appendChild(el("span", "route " + String(ext.route).replace(/[^a-z_-]/gi, ""), ext.route));
      if (ext.reason) root.appendChild(el("p", "reason", ext.reason));
      if (ext.strategy_id) root.appendChild(el("p", "muted", `answered from strategy ${ext.strategy_id}`));
    }
    section(root, "Strategies");
    const strategies = Array.isArray(ext.strategies) ? ext.strategies : [];
    if (!strategies.length) root.appendChild(el("p", "muted", "none above the threshold; the student answered unguided"));
    const list = el("ul", "items strategies");
    for (const s of strategies) {
      const body = el("div", "body muted", "");
      list.appendChild(scoreRow(String(s.id), s.score, body));
      strategyText(String(s.id)).then((found) => {
        body.textContent = found ? (found.compact || found.scenario || "") : "";
      });
    }
    root.appendChild(list);
    if (ext.facts && typeof ext.facts === "object" && Object.keys(ext.facts).length) {
      section(root, "Facts");
      const table = el("table", "facts");
      for (const [id, value] of Object.entries(ext.facts)) {
        const row = el("tr");
        row.appendChild(el("td", null, id));
        row.appendChild(el("td", null, value === true ? "yes" : typeof value === "object" ? JSON.stringify(value) : value));
        table.appendChild(row);
      }
      root.appendChild(table);
    }
    if (Array.isArray(ext.candidates) && ext.candidates.length) {
      section(root, "Candidates");
      const cands = el("ul", "items candidates");
      for (const c of ext.candidates) {
        cands.appendChild(scoreRow(String(c.id), c.score, c.verdict ? el("div", "verdict", c.verdict) : null));
      }
      root.appendChild(cands);
    }
    const timings = ext.timings_ms || {};
    if (Object.keys(timings).length) {
      section(root, "Timings");
      const table = el("table", "timings");
      for (const [key, value] of Object.entries(timings)) {
        const row = el("tr");
        row.appendChild(el("td", null, TIMING_LABELS[key] || key));
        const unit = key === "decode_tps" ? " tok/s" : " ms";
        row.appendChild(el("td", "num", (typeof value === "number" ? value.toFixed(1) : value) + unit));
        table.appendChild(row);
      }
      root.appendChild(table);
    }
    if (ext.trimmed) root.appendChild(el("p", "muted", `${ext.trimmed} oldest turn(s) dropped to fit the context`));
    const other = Object.keys(ext).filter((k) => !KNOWN.has(k));
    if (other.length) {
      section(root, "Other");
      const table = el("table", "other");
      for (const key of other) {
        const row = el("tr");
        row.appendChild(el("td", null, key));
        row.appendChild(el("td", null, JSON.stringify(ext[key])));
        table.appendChild(row);
      }
      root.appendChild(table);
    }
    return root;
  }

  // --- start ---------------------------------------------------------------------------------
  async function loadInfo() {
    try {
      const res = await fetch("ui/info", { cache: "no-store" });
      if (res.status === 503) { waitForServer(true); return; }
      if (!res.ok) return;
      const info = await res.json();
      state.keyRequired = Boolean(info.key_required);
      state.model = info.model || state.model;
      $("title").textContent = info.company ? `${info.company} support` : "edge-agent";
      $("model").textContent = `model ${state.model}`;
      if (state.keyRequired && !state.key) showKeyBar(null);
    } catch (err) {
      waitForServer(false);
    }
  }

  function start() {
    $("composer").addEventListener("submit", (event) => { event.preventDefault(); send($("input").value); });
    $("input").addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey) { event.preventDefault(); send($("input").value); }
    });
    $("reset").addEventListener("click", reset);
    $("banner-retry").addEventListener("click", () => { clearBanner(); send($("input").value || state.lastText); });
    $("keybar").addEventListener("submit", (event) => {
      event.preventDefault();
      const given = $("key").value.trim();
      $("key").value = "";  // the key lives in state.key only
      if (!given) return;
      state.key = given;
      state.strategies.clear();
      $("keybar").hidden = true;
      clearBanner();
      $("input").focus();
    });
    loadInfo();
  }

  // For embedding and tests: the panel renderer, and whether a request is in flight.
  window.edgeAgentChat = { renderPanel, busy: () => state.controller !== null };
  start();
})();
