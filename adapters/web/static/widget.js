/*
 * 小申 — the 一网通办 chat widget (Bangban web channel). No dependencies.
 * Embed with ONE tag: <script src="https://<bangban host>/widget.js" defer></script>
 *
 * Transport: a websocket to /channels/web/ws. Every message carries its conversation's seq;
 * the widget renders strictly in seq order, drops what it has already rendered, and asks the
 * server to replay ("resume") from its last seq after a reconnect or when it sees a gap.
 * Safety: citizen text is only ever set as textContent; HTML is taken only from the `html`
 * field of bot/agent messages (sanitised by the server) and parsed inert before insertion.
 */
(function () {
  "use strict";
  if (window.__bangbanWidget) return;
  window.__bangbanWidget = true;

  var script = document.currentScript;
  var ORIGIN = new URL(script && script.src ? script.src : "/widget.js", location.href).origin;
  var WS_URL = ORIGIN.replace(/^http/, "ws") + "/channels/web/ws";
  var TOKEN_KEY = "bangban.web.token";
  var SAFE_URL = /^(https?:|mailto:|tel:|\/(?!\/))/i;
  var SENDERS = { citizen: "我", bot: "小申", agent: "人工客服", system: "系统消息" };
  var WELCOME = "您好，我是“一网通办”智能客服小申，请问有什么可以帮您？";
  var EXAMPLES = ["居住证签注需要什么材料", "社保卡丢了怎么补办", "怎样转人工帮办"];

  var state = {
    ws: null, token: null, conv: null, lastSeq: 0, pending: new Map(), retry: 0,
    timer: null, opened: false, started: false, hadHello: false, resumeAt: 0,
    maxLength: 500, typingTimer: null, statusTimer: null
  };
  try { state.token = localStorage.getItem(TOKEN_KEY); } catch (e) { /* storage blocked */ }

  // -- DOM helpers ---------------------------------------------------------------------------
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text != null) node.textContent = text;
    return node;
  }
  function attrs(node, map) {
    Object.keys(map).forEach(function (k) { node.setAttribute(k, map[k]); });
    return node;
  }
  function safeUrl(url) { return typeof url === "string" && SAFE_URL.test(url.trim()); }

  // -- the UI (in a shadow root, so the host page's CSS and ours never meet) ------------------
  var host = attrs(el("div"), { id: "bangban-widget", lang: "zh-CN" });
  var root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
  var wrap = attrs(el("div", "bb-root"), { lang: "zh-CN" });
  wrap.style.visibility = "hidden";
  var css = attrs(el("link"), { rel: "stylesheet", href: ORIGIN + "/widget.css" });
  css.onload = css.onerror = function () { wrap.style.visibility = ""; };

  var launcher = attrs(el("button", "bb-launcher"), {
    type: "button", "aria-expanded": "false", "aria-controls": "bb-panel",
    "aria-label": "打开智能客服小申"
  });
  launcher.append(attrs(el("span", "bb-launcher-icon", "申"), { "aria-hidden": "true" }),
                  el("span", "bb-launcher-text", "小申"));
  var badge = attrs(el("span", "bb-badge"), { "aria-hidden": "true" });
  badge.hidden = true;
  launcher.append(badge);

  var panel = attrs(el("section", "bb-panel"), {
    id: "bb-panel", role: "dialog", "aria-modal": "false", "aria-labelledby": "bb-title"
  });
  panel.hidden = true;
  var head = el("header", "bb-head");
  var titles = el("div", "bb-titles");
  titles.append(attrs(el("h2", "bb-title", "智能客服小申"), { id: "bb-title" }),
                el("p", "bb-sub", "上海市一网通办 · 7×24小时在线"));
  var closeBtn = attrs(el("button", "bb-close", "×"), { type: "button", "aria-label": "关闭对话窗口" });
  head.append(titles, closeBtn);
  var status = attrs(el("div", "bb-status"), { role: "status", "aria-live": "polite" });
  var log = attrs(el("div", "bb-log"), {
    role: "log", "aria-live": "polite", "aria-label": "对话记录", tabindex: "0"
  });
  var typing = attrs(el("div", "bb-typing"), { role: "status" });
  typing.append(attrs(el("span", "bb-dots"), { "aria-hidden": "true" }), el("span", null, "小申正在输入…"));
  typing.hidden = true;
  var form = el("form", "bb-form");
  var label = attrs(el("label", "bb-sr", "输入您的问题"), { for: "bb-input" });
  var input = attrs(el("textarea", "bb-input"), {
    id: "bb-input", rows: "2", maxlength: String(state.maxLength), autocomplete: "off",
    placeholder: "请输入您的问题，按 Enter 发送"
  });
  var sendBtn = attrs(el("button", "bb-send", "发送"), { type: "submit" });
  form.append(label, input, sendBtn);
  panel.append(head, status, log, typing, form);
  wrap.append(panel, launcher);
  root.append(css, wrap);

  function welcome() {
    var row = el("div", "bb-msg bb-from-bot bb-welcome");
    var bubble = el("div", "bb-bubble");
    bubble.append(el("span", "bb-sr", "小申："), el("div", "bb-text", WELCOME));
    var group = attrs(el("div", "bb-choices"), { role: "group", "aria-label": "您可以这样问" });
    EXAMPLES.forEach(function (q) {
      var b = attrs(el("button", "bb-choice", q), { type: "button" });
      b.addEventListener("click", function () { sendText(q); });
      group.append(b);
    });
    bubble.append(group);
    row.append(bubble);
    log.append(row);
  }
  welcome();

  // -- status, typing, open/close ------------------------------------------------------------
  function setStatus(text, isError) {
    clearTimeout(state.statusTimer);
    status.textContent = text || "";
    status.classList.toggle("bb-error", !!isError);
    if (text && isError) state.statusTimer = setTimeout(function () { setStatus(""); }, 8000);
  }
  function showTyping(on) {
    clearTimeout(state.typingTimer);
    typing.hidden = !on;
    if (on) state.typingTimer = setTimeout(function () { typing.hidden = true; }, 30000);
    scrollDown();
  }
  function scrollDown() { log.scrollTop = log.scrollHeight; }

  function open() {
    state.opened = true;
    panel.hidden = false;
    wrap.classList.add("bb-open");
    launcher.setAttribute("aria-expanded", "true");
    launcher.setAttribute("aria-label", "打开智能客服小申");
    badge.hidden = true;
    if (!state.started) { state.started = true; connect(); }
    scrollDown();
    input.focus();
  }
  function close() {
    state.opened = false;
    panel.hidden = true;
    wrap.classList.remove("bb-open");
    launcher.setAttribute("aria-expanded", "false");
    launcher.focus();
  }
  launcher.addEventListener("click", function () { state.opened ? close() : open(); });
  closeBtn.addEventListener("click", close);
  panel.addEventListener("keydown", function (e) { if (e.key === "Escape") { e.preventDefault(); close(); } });

  // -- rendering -----------------------------------------------------------------------------
  function richHtml(html) {
    // parsed into an inert template (nothing loads or runs there), then tidied defensively
    var t = document.createElement("template");
    t.innerHTML = html;
    t.content.querySelectorAll("script,style,iframe,object,embed,form,link,meta").forEach(function (n) { n.remove(); });
    t.content.querySelectorAll("*").forEach(function (n) {
      Array.prototype.slice.call(n.attributes).forEach(function (a) {
        var name = a.name.toLowerCase();
        if (name.indexOf("on") === 0 || name === "style" || ((name === "href" || name === "src") && !safeUrl(a.value))) {
          n.removeAttribute(a.name);
        }
      });
      if (n.tagName === "A") { n.target = "_blank"; n.rel = "noopener noreferrer"; }
    });
    return document.importNode(t.content, true);
  }

  function link(title, url) {
    var a = attrs(el("a", "bb-link", title), { href: url, rel: "noopener noreferrer" });
    if (!/^tel:|^mailto:/i.test(url)) a.target = "_blank";
    return a;
  }

  function disableChoices() {
    log.querySelectorAll(".bb-choice").forEach(function (b) { b.disabled = true; });
  }

  function render(m) {
    var sender = SENDERS[m.sender] ? m.sender : "system";
    var row = attrs(el("div", "bb-msg bb-from-" + sender), { "data-seq": String(m.seq) });
    var bubble = el("div", "bb-bubble");
    bubble.append(el("span", "bb-sr", SENDERS[sender] + "："));
    if ((sender === "bot" || sender === "agent") && m.html) {
      var rich = el("div", "bb-rich");
      rich.append(richHtml(m.html));
      bubble.append(rich);
    } else {
      bubble.append(el("div", "bb-text", m.text));
    }
    var links = (m.links || []).filter(function (l) { return safeUrl(l.url); });
    if (links.length) {
      var ul = el("ul", "bb-links");
      links.forEach(function (l) { var li = el("li"); li.append(link(l.title, l.url)); ul.append(li); });
      bubble.append(ul);
    }
    (m.cards || []).forEach(function (c) {
      var card = el("div", "bb-card");
      if (c.image_url && /^https:/i.test(c.image_url)) card.append(attrs(el("img"), { src: c.image_url, alt: "" }));
      card.append(el("strong", null, c.title));
      if (c.text) card.append(el("p", null, c.text));
      if (safeUrl(c.url)) card.append(link("查看详情", c.url));
      bubble.append(card);
    });
    if (m.quick_replies && m.quick_replies.length) {
      var prompt = m.rating ? m.rating.prompt : "可选操作";
      var group = attrs(el("div", "bb-choices"), { role: "group", "aria-label": prompt });
      if (m.rating) group.append(el("p", "bb-prompt", prompt));
      m.quick_replies.forEach(function (q) {
        var b = attrs(el("button", "bb-choice", q.label), { type: "button" });
        b.addEventListener("click", function () {
          if (send({ type: "quick_reply", payload: q.payload, label: q.label })) {
            b.setAttribute("aria-pressed", "true");
            group.querySelectorAll("button").forEach(function (x) { x.disabled = true; });
            showTyping(true);
            input.focus();
          }
        });
        group.append(b);
      });
      bubble.append(group);
    }
    if (sender === "citizen") disableChoices();  // older choices are stale once the citizen moves on
    else showTyping(false);
    row.append(bubble);
    log.append(row);
    scrollDown();
  }

  // in seq order, each once; a gap asks the server to replay it
  function newConversation(m, fromSeq) {
    if (state.conv) log.append(attrs(el("div", "bb-divider", "—— 新的会话 ——"), { role: "separator" }));
    state.conv = m.conversation_id;
    state.lastSeq = fromSeq;
    state.pending.clear();
  }
  function accept(m, live) {
    if (!m || typeof m.seq !== "number" || !m.conversation_id) return;
    if (m.conversation_id !== state.conv) {
      if (state.conv && m.conversation_id < state.conv) return;  // ids are time-ordered
      newConversation(m, 0);
    }
    if (m.seq <= state.lastSeq || state.pending.has(m.seq)) return;
    state.pending.set(m.seq, m);
    while (state.pending.has(state.lastSeq + 1)) {
      var next = state.pending.get(state.lastSeq + 1);
      state.pending.delete(state.lastSeq + 1);
      state.lastSeq += 1;
      render(next);
      if (live && !state.opened && next.sender !== "citizen") {
        badge.hidden = false;
        launcher.setAttribute("aria-label", "打开智能客服小申（有新消息）");
      }
    }
    if (state.pending.size) resume(false);
  }
  function resume(force) {
    var now = Date.now();
    if (!force && now - state.resumeAt < 2000) return;
    state.resumeAt = now;
    send({ type: "resume", after: state.lastSeq, conversation: state.conv || undefined });
  }

  // -- the socket ----------------------------------------------------------------------------
  function connect() {
    clearTimeout(state.timer);
    var q = [];
    if (state.token) q.push("token=" + encodeURIComponent(state.token));
    if (state.conv) q.push("history=0");  // we have the conversation: resume instead
    var ws;
    try { ws = new WebSocket(WS_URL + (q.length ? "?" + q.join("&") : "")); } catch (e) { return retry(); }
    state.ws = ws;
    if (!state.hadHello) setStatus("正在连接…");
    ws.onmessage = function (e) {
      var f;
      try { f = JSON.parse(e.data); } catch (err) { return; }
      if (f.type === "hello") onHello(f);
      else if (f.type === "message") accept(f.message, true);
      else if (f.type === "typing") showTyping(true);
      else if (f.type === "error") { showTyping(false); setStatus(f.reason || "出错了，请稍后再试", true); }
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      state.ws = null;
      showTyping(false);
      setStatus("连接已断开，正在重新连接…");
      retry();
    };
  }
  function retry() {
    clearTimeout(state.timer);
    var delay = Math.min(30000, 1000 * Math.pow(2, state.retry)) * (0.75 + Math.random() / 2);
    state.retry += 1;
    state.timer = setTimeout(connect, delay);
  }
  function onHello(f) {
    state.retry = 0;
    setStatus("");
    if (f.token && f.token !== state.token) {
      state.token = f.token;
      try { localStorage.setItem(TOKEN_KEY, f.token); } catch (e) { /* storage blocked */ }
    }
    if (f.max_length) { state.maxLength = f.max_length; input.setAttribute("maxlength", String(f.max_length)); }
    var history = f.history || [];
    if (history.length) {
      var welcomeRow = log.querySelector(".bb-welcome");
      if (welcomeRow && !state.conv) welcomeRow.remove();
      var first = history[0];
      if (first.conversation_id !== state.conv && !(state.conv && first.conversation_id < state.conv)) {
        newConversation(first, first.seq - 1);  // the history may be the tail of a long one
      }
      history.forEach(function (m) { accept(m, false); });
    }
    if (state.hadHello && state.conv) resume(true);  // a reconnect: fetch what we missed
    state.hadHello = true;
  }
  function send(frame) {
    if (!state.ws || state.ws.readyState !== 1) {
      setStatus("网络连接中断，正在重新连接，请稍后再发送", true);
      if (!state.ws) { state.retry = 0; connect(); }  // not even trying right now: try at once
      return false;
    }
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  function sendText(text) {
    text = text.trim();
    if (!text) return false;
    if (text.length > state.maxLength) {
      setStatus("消息过长，请控制在" + state.maxLength + "字以内", true);
      return false;
    }
    if (!send({ type: "message", text: text })) return false;
    showTyping(true);
    return true;
  }

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (sendText(input.value)) input.value = "";
    input.focus();
  });
  input.addEventListener("keydown", function (e) {
    // Enter sends; Shift+Enter is a new line; Enter that confirms an IME candidate is not a send
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      if (sendText(input.value)) input.value = "";
    }
  });
  window.addEventListener("online", function () { if (state.started && !state.ws) { state.retry = 0; connect(); } });

  function mount() { document.body.append(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
