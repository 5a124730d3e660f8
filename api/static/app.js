// The chat page: plain browser JavaScript, no build step, no third-party code.
// Answers stream from POST /v1/query (Server-Sent Events read with fetch, since
// EventSource cannot POST or send the Authorization header); earlier turns go with each
// question as its `history`.
"use strict";

const KEY_STORAGE = "rag-kb-api-key";
const $ = (sel) => document.querySelector(sel);

function apiKey() { return localStorage.getItem(KEY_STORAGE) || ""; }

function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key.trim());
  else localStorage.removeItem(KEY_STORAGE);
  $("#api-key").value = apiKey();
}

// `make run` prints http://127.0.0.1:8000/#key=…: the key is taken, then dropped from the
// address bar at once. Without a stored key it becomes this page's key. A different key never
// replaces the stored one silently: a link someone sent would make this page answer from the
// sender's documents (their tenant), so the page asks, and keeps the stored key until told.
function keyFromFragment() {
  const match = /(?:^#|&)key=([^&]*)/.exec(location.hash);
  if (!match) return;
  const rest = location.hash.slice(1).split("&").filter((part) => !part.startsWith("key="));
  history.replaceState(null, "", location.pathname + location.search + (rest.length ? "#" + rest.join("&") : ""));
  let offered = "";
  try { offered = decodeURIComponent(match[1]).trim(); } catch (e) { return; }
  const mine = apiKey();
  if (!offered || offered === mine) return;
  if (!mine) { saveKey(offered); return; }
  offerKey(offered);
}

// The tenant a key belongs to (GET /v1/documents says), or why it is not known.
async function tenantOf(key) {
  try {
    const resp = await fetch("/v1/documents", { headers: { Authorization: "Bearer " + key } });
    if (!resp.ok) return "unknown: " + await errorMessage(resp);
    return (await resp.json()).tenant || "unknown";
  } catch (e) { return "unknown"; }
}

// The banner: "This link carries another API key (tenant …): use it? / keep mine". Until a
// button is pressed the stored key stays in use.
async function offerKey(offered) {
  const banner = $("#key-offer");
  const text = banner.querySelector(".offer-text");
  const done = () => { banner.hidden = true; text.textContent = ""; };
  text.textContent = "This link carries another API key: use it instead of yours?";
  banner.hidden = false;
  banner.querySelector(".use-offered").onclick = () => { done(); saveKey(offered); refreshDocuments(); };
  banner.querySelector(".keep-mine").onclick = done;
  banner.querySelector(".keep-mine").focus();  // the default: keep the stored key
  const [theirs, mine] = await Promise.all([tenantOf(offered), tenantOf(apiKey())]);
  if (!banner.hidden) {
    text.textContent = "This link carries another API key (tenant " + theirs + "): use it instead of yours (tenant " + mine + ")?";
    banner.dataset.tenant = theirs;
  }
}

function headers(extra) {
  return Object.assign({ Authorization: "Bearer " + apiKey() }, extra || {});
}

async function errorMessage(resp) {
  try {
    const body = await resp.json();
    if (body && body.error) return body.error.message;
  } catch (e) { /* not JSON */ }
  return "HTTP " + resp.status;
}

function encodePath(path) { return path.split("/").map(encodeURIComponent).join("/"); }

// Opens an authenticated resource in a new tab. The tab is opened first, inside the click,
// so pop-up blockers allow it; the content follows once fetched.
async function openAuthenticated(url, fallbackType) {
  const tab = window.open("", "_blank");
  const resp = await fetch(url, { headers: headers() });
  if (!resp.ok) {
    const msg = await errorMessage(resp);
    if (tab) tab.close();
    alert(msg);
    return;
  }
  const blob = await resp.blob();
  const typed = blob.type ? blob : new Blob([blob], { type: fallbackType });
  const href = URL.createObjectURL(typed);
  if (tab) tab.location.href = href; else location.href = href;
}

// -- SSE over fetch --------------------------------------------------------------------
async function* sseEvents(resp) {
  const reader = resp.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: JSON.parse(data.join("\n")) };
    }
  }
}

// -- rendering -------------------------------------------------------------------------
// Text with [n] markers → text nodes and links to citation n (never innerHTML).
function renderMarkers(container, text, turnId) {
  const parts = text.split(/(\[\d+\])/);
  for (const part of parts) {
    const m = /^\[(\d+)\]$/.exec(part);
    if (m) {
      const a = document.createElement("a");
      a.className = "marker";
      a.href = "#" + turnId + "-c" + m[1];
      a.textContent = part;
      container.appendChild(a);
    } else if (part) {
      container.appendChild(document.createTextNode(part));
    }
  }
}

// Sentences verification flagged (unsupported) are marked; they may come as character
// ranges of the answer or as the sentences themselves. With generation.verify.unsupported:
// mark they stand in the answer behind the "[unverified] " prefix, which is marked with them
// (with drop, the default, they are not in the answer at all).
const UNVERIFIED = "[unverified] ";
function flaggedRanges(answer, flagged) {
  const ranges = [];
  for (const item of flagged || []) {
    if (typeof item === "string") {
      // Flagged sentences come without their [n] markers: match the text before them.
      for (const probe of [item, item.replace(/[.!?]+$/, "")]) {
        let at = probe ? answer.indexOf(probe) : -1;
        if (at < 0) continue;
        const end = at + probe.length;
        if (answer.slice(at - UNVERIFIED.length, at) === UNVERIFIED) at -= UNVERIFIED.length;
        ranges.push([at, end]);
        break;
      }
    } else if (item && typeof item.start === "number" && typeof item.end === "number") {
      ranges.push([item.start, item.end]);
    } else if (item && typeof item.text === "string") {
      const at = answer.indexOf(item.text);
      if (at >= 0) ranges.push([at, at + item.text.length]);
    }
  }
  return ranges.sort((a, b) => a[0] - b[0]);
}

function renderAnswer(el, result, turnId) {
  el.textContent = "";
  el.classList.remove("streaming");
  const answer = result.answer || "";
  if (result.abstained) {
    const p = document.createElement("span");
    p.className = "abstained";
    p.textContent = answer || "The documents don't contain an answer to this.";
    el.appendChild(p);
    return;
  }
  let pos = 0;
  for (const [start, end] of flaggedRanges(answer, result.unsupported)) {
    if (start < pos) continue;
    renderMarkers(el, answer.slice(pos, start), turnId);
    const span = document.createElement("span");
    span.className = "flagged";
    span.title = "Not verified: no passage of the documents supports this sentence";
    renderMarkers(span, answer.slice(start, end), turnId);
    el.appendChild(span);
    pos = end;
  }
  renderMarkers(el, answer.slice(pos), turnId);
}

function renderCitations(list, citations, turnId) {
  list.textContent = "";
  for (const c of citations || []) {
    const li = document.createElement("li");
    li.id = turnId + "-c" + c.n;
    li.value = c.n;
    const where = document.createElement("span");
    where.className = "where";
    const bits = [c.source];
    if (c.section && c.section.length) bits.push(c.section.join(" › "));
    if (c.page) bits.push("p. " + c.page);
    where.textContent = bits.join(" — ");
    li.appendChild(where);
    if (c.verified === false) {
      const badge = document.createElement("span");
      badge.className = "unverified";
      badge.textContent = "not verified";
      li.appendChild(badge);
    }
    const quote = document.createElement("blockquote");
    quote.textContent = c.quote || "";
    li.appendChild(quote);
    const open = document.createElement("button");
    open.type = "button";
    open.className = "open-source";
    open.textContent = "Open source";
    open.addEventListener("click", () => openAuthenticated("/v1/sources/" + encodePath(c.source), "text/plain"));
    li.appendChild(open);
    list.appendChild(li);
  }
}

function describe(result) {
  const bits = [];
  if (result.generator) bits.push("answered by " + result.generator + (result.degraded ? " (fallback)" : ""));
  if (result.prompt && result.prompt.name) bits.push("prompt " + result.prompt.name + "@" + result.prompt.version);
  if (result.timings_ms && result.timings_ms.total) bits.push(Math.round(result.timings_ms.total) + " ms");
  return bits.join(" · ");
}

// -- feedback: thumbs up / down on an answer, by its trace id (POST /v1/feedback) ------------
async function sendFeedback(traceId, value, comment) {
  const resp = await fetch("/v1/feedback", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json" }),
    body: JSON.stringify(comment ? { trace_id: traceId, value, comment } : { trace_id: traceId, value }),
  });
  return resp.ok ? "Thanks: recorded." : await errorMessage(resp);
}

function wireFeedback(node, traceId) {
  const box = node.querySelector(".feedback");
  const state = box.querySelector(".feedback-state");
  const commentForm = box.querySelector(".feedback-comment");
  box.hidden = false;
  box.dataset.traceId = traceId;
  for (const thumb of box.querySelectorAll(".thumb")) {
    thumb.addEventListener("click", async () => {
      for (const t of box.querySelectorAll(".thumb")) t.classList.toggle("chosen", t === thumb);
      const value = Number(thumb.dataset.value);
      if (value === 0) {  // thumbs down: ask what was wrong, then send
        commentForm.hidden = false;
        commentForm.querySelector(".comment").focus();
        state.textContent = "";
        return;
      }
      commentForm.hidden = true;
      state.textContent = await sendFeedback(traceId, 1, null);
    });
  }
  commentForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const comment = commentForm.querySelector(".comment").value.trim();
    commentForm.hidden = true;
    state.textContent = await sendFeedback(traceId, 0, comment || null);
  });
}

// -- asking ----------------------------------------------------------------------------
let turns = 0;
// The conversation so far, sent as `history`: a follow-up ("And the business tier?") is
// answered as the standalone question it stands for (the answer's `standalone_question`).
const conversation = [];
const HISTORY_MESSAGES = 12;

async function ask(question) {
  const turnId = "t" + ++turns;
  const node = $("#turn-template").content.firstElementChild.cloneNode(true);
  node.id = turnId;
  node.querySelector(".question").textContent = question;
  const answerEl = node.querySelector(".answer");
  const metaEl = node.querySelector(".meta");
  const citesEl = node.querySelector(".citations");
  $("#hint").hidden = true;
  $("#log").appendChild(node);
  node.scrollIntoView({ block: "end" });

  const resp = await fetch("/v1/query", {
    method: "POST",
    headers: headers({ "Content-Type": "application/json", Accept: "text/event-stream" }),
    body: JSON.stringify({ question, stream: true, history: conversation.slice(-HISTORY_MESSAGES) }),
  });
  if (!resp.ok) {
    answerEl.classList.remove("streaming");
    answerEl.classList.add("error");
    answerEl.textContent = await errorMessage(resp);
    return;
  }
  let citations = [];
  for await (const { event, data } of sseEvents(resp)) {
    if (event === "token") {
      answerEl.appendChild(document.createTextNode(data.text));
    } else if (event === "reset") {
      answerEl.textContent = "";  // a fallback generator starts the answer over
    } else if (event === "citations") {
      citations = data.citations;
      renderCitations(citesEl, citations, turnId);
    } else if (event === "done") {
      renderAnswer(answerEl, data, turnId);
      conversation.push({ role: "user", content: question }, { role: "assistant", content: data.answer || "" });
      if (data.standalone_question && data.standalone_question !== question) {
        const asked = node.querySelector(".standalone");
        asked.textContent = "Answered as: " + data.standalone_question;
        asked.hidden = false;
      }
      if (data.citations && data.citations.length) renderCitations(citesEl, data.citations, turnId);
      metaEl.textContent = describe(data);
      if (data.trace_id) wireFeedback(node, data.trace_id);
      node.classList.add("done");
    } else if (event === "error") {
      answerEl.classList.remove("streaming");
      answerEl.classList.add("error");
      answerEl.textContent = data.error.message;
    }
  }
  answerEl.classList.remove("streaming");
}

async function refreshDocuments() {
  const label = $("#docs-count");
  if (!apiKey()) { label.textContent = "enter your API key to start"; return; }
  const resp = await fetch("/v1/documents", { headers: headers() });
  if (!resp.ok) { label.textContent = await errorMessage(resp); return; }
  const body = await resp.json();
  label.textContent = "tenant " + body.tenant + " · " + body.total + " document(s)";
}

document.addEventListener("DOMContentLoaded", () => {
  keyFromFragment();
  $("#api-key").value = apiKey();
  $("#key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    saveKey($("#api-key").value);
    refreshDocuments();
  });
  $("#report-link").addEventListener("click", (e) => {
    e.preventDefault();
    openAuthenticated("/reports/latest", "text/html");
  });
  const form = $("#ask-form");
  const input = $("#question");
  input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    input.value = "";
    $("#ask").disabled = true;
    try { await ask(question); } catch (err) { alert(String(err)); }
    finally { $("#ask").disabled = false; input.focus(); }
  });
  // A link pasted into this open tab changes only the fragment: no new page load.
  window.addEventListener("hashchange", () => { keyFromFragment(); refreshDocuments(); });
  refreshDocuments();
});
