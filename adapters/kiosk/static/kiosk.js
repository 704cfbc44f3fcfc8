/* The self-service kiosk (自助终端) page of Bangban: /kiosk?device=ID.
 *
 * A shared terminal: after idle_timeout_s without a touch (a countdown with 继续使用 shows in
 * the last idle_warning_s) the page wipes everything it shows and asks the server for a new
 * session ({"type": "end"}); the server closes the old conversation. The session id is kept in
 * sessionStorage only so a reload *during* a session resumes it; a wipe forgets it, and the
 * server refuses to resume an ended session anyway.
 *
 * Nothing from a message is ever parsed as markup except `html`, which the server sanitised
 * (allow-list, links and images removed); everything else goes in with textContent.
 *
 * Human help: statuses (stored messages carrying `queue`, and transient "status" frames) drive
 * the status line, newest wins: the position in the line, whether a 留言 has been written (the
 * citizen wrote something in it), the agent's name. Once nobody is waiting any more (an agent
 * serves, or it is over) the 取消排队 / 取消留言 buttons left in the conversation are disabled.
 * All of it lives in this page's memory only and goes with the wipe.
 *
 * Frames: see adapters/kiosk/socket.py.
 */
(function () {
  "use strict";

  var body = document.body;

  // -- the print view (/kiosk/print/{id}) -----------------------------------------------------
  if (body.classList.contains("kp")) {
    var printButton = document.querySelector("[data-action=print]");
    if (printButton) printButton.addEventListener("click", function () { window.print(); });
    return;
  }
  if (!body.classList.contains("kq")) return;

  var SESSION_KEY = "bangban.kiosk.session";
  var LABELS = { citizen: "我", bot: "小申", system: "系统消息" };
  var HUMAN = { waiting: true, message: true, assigned: true, routing: true };
  // states with a line or a 留言 to cancel; in any other a 取消排队 / 取消留言 button is stale
  var CANCELLABLE = { waiting: true, message: true };
  var CANCEL_PAYLOAD = "handoff:cancel";
  // what a citizen types to cancel (answered by the server, not part of a 留言)
  var CANCEL_WORDS = { "取消": 1, "取消排队": 1, "不排了": 1, "不等了": 1, "取消人工": 1, "取消留言": 1 };

  function $(sel, root) { return (root || document).querySelector(sel); }
  function $all(sel, root) { return Array.prototype.slice.call((root || document).querySelectorAll(sel)); }
  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }
  function newId() {
    var a = new Uint8Array(12);
    crypto.getRandomValues(a);
    return Array.prototype.map.call(a, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
  }
  function storedSession() {
    try { return sessionStorage.getItem(SESSION_KEY); } catch (e) { return null; }
  }
  function storeSession(id) {
    try {
      if (id) sessionStorage.setItem(SESSION_KEY, id); else sessionStorage.removeItem(SESSION_KEY);
    } catch (e) { /* private mode: the session simply does not survive a reload */ }
  }

  var homeView = $(".kq-home-view"), chatView = $(".kq-chat-view"), main = $(".kq-main");
  var log = $(".kq-log"), typing = $(".kq-typing");
  var popular = $(".kq-popular"), popularList = $(".kq-popular-list");
  var statusText = $(".kq-status-text"), cancelBtn = $(".kq-cancel");
  var form = $(".kq-form"), input = $("#kq-input");
  var idleBox = $(".kq-idle"), count = $(".kq-count"), notice = $(".kq-notice");
  var printFrame = $(".kq-print-frame");

  var state = {
    ws: null, session: storedSession(), retry: 0, conv: null, wipedConv: "",
    idle: Number(body.dataset.idle) || 120, warning: Number(body.dataset.warning) || 20,
    used: false, deadline: 0, lastActive: 0, noticeTimer: null,
    // the human-help status shown, its time and conversation, and whether a 留言 was written
    queue: null, queueAt: 0, queueConv: null, left: false
  };

  // -- views and notices ----------------------------------------------------------------------
  function showChat() { homeView.hidden = true; chatView.hidden = false; }
  function showHome() {
    chatView.hidden = true;  // the conversation stays; a tap on a matter goes on with it
    homeView.hidden = false;
    main.scrollTop = 0;
  }
  function say(text, isError, sticky) {
    clearTimeout(state.noticeTimer);
    notice.textContent = text || "";
    notice.hidden = !text;
    notice.classList.toggle("kq-error", !!isError);
    if (text && !sticky) state.noticeTimer = setTimeout(function () { notice.hidden = true; }, 5000);
  }
  function scrollDown() { main.scrollTop = main.scrollHeight; }

  // -- human help status line (transient statuses update it in place) ------------------------
  function minutes(s) { return Math.max(1, Math.ceil(s / 60)); }
  function humanMode() { return body.classList.contains("kq-human"); }
  function applyQueue(m) {
    var q = m && m.queue;
    if (!q || typeof q.state !== "string") return;
    var at = Date.parse(m.created_at) || 0;
    if (at < state.queueAt) return;  // an older status, replayed after a newer one
    var prev = state.queue;
    // the same 留言 still (another status of it) keeps what the citizen has written in it
    var sameLeft = prev && prev.state === "message" && q.state === "message" &&
      prev.unit === q.unit && m.conversation_id === state.queueConv;
    if (!sameLeft) state.left = false;
    state.queue = q; state.queueAt = at; state.queueConv = m.conversation_id || null;
    showQueue();
    cancelBtn.textContent = q.state === "message" ? "取消留言" : "取消排队";
    cancelBtn.hidden = !q.can_cancel;
    cancelBtn.disabled = false;
    staleCancels();
  }
  function showQueue() {
    var q = state.queue;
    var unit = q.unit_name ? q.unit_name + " · " : "";
    var text = "";
    if (q.state === "routing") text = "正在为您转接人工帮办…";
    else if (q.state === "waiting") {
      text = unit + "排队中";
      if (typeof q.position === "number") text += q.position > 1 ? "，您前面还有 " + (q.position - 1) + " 位" : "，下一位就是您";
      if (typeof q.wait_s === "number") text += "，预计等待 " + minutes(q.wait_s) + " 分钟";
    } else if (q.state === "message") {
      // no promise of a later answer here: a kiosk's 留言 ends with the session (the wipe)
      text = unit + (state.left ? "留言已提交" : "当前非工作时间，可以留言");
    } else if (q.state === "assigned") text = unit + "工作人员 " + (q.agent_name || "") + " 为您服务";
    statusText.textContent = text;
    body.classList.toggle("kq-human", !!HUMAN[q.state] && !!text);
    if (humanMode()) typing.hidden = true;
  }
  /* Nobody waits any more (an agent serves, or the help is over): the 取消排队 / 取消留言
     buttons still in the conversation have nothing to cancel. */
  function staleCancels() {
    if (!state.queue || CANCELLABLE[state.queue.state]) return;
    $all('.kq-choice[data-reply="' + CANCEL_PAYLOAD + '"]', log).forEach(function (b) { b.disabled = true; });
  }
  // the citizen wrote while leaving a 留言: the status line says it has been submitted
  function noteLeft(m) {
    if (!state.queue || state.queue.state !== "message" || state.left) return;
    if (m.conversation_id !== state.queueConv) return;
    if (!m.text || CANCEL_WORDS[m.text.trim()]) return;
    state.left = true;
    showQueue();
  }
  function resetQueue() {
    state.queue = null; state.queueAt = 0; state.queueConv = null; state.left = false;
    statusText.textContent = "";
    cancelBtn.hidden = true;
    body.classList.remove("kq-human");
  }

  // -- messages -------------------------------------------------------------------------------
  function choiceButton(q, group) {
    var b = el("button", "kq-btn kq-choice", q.label);
    b.type = "button";
    b.dataset.reply = q.payload;  // not data-payload: that is the home screen's own buttons
    b.addEventListener("click", function () {
      if (choose(q.payload, q.label)) $all("button", group).forEach(function (x) { x.disabled = true; });
    });
    return b;
  }
  function choices(m, shown) {
    var wrap = el("div", "kq-choices-wrap");
    var rated = {};
    if (m.rating && m.rating.options && m.rating.options.length) {
      var rg = el("div", "kq-choices kq-rating");
      rg.setAttribute("role", "group");
      rg.setAttribute("aria-label", m.rating.prompt);
      // an agent rating's prompt is already the message's text: say it once
      if ((m.rating.prompt || "").trim() !== (shown || "").trim()) rg.appendChild(el("p", "kq-prompt", m.rating.prompt));
      m.rating.options.forEach(function (q) { rated[q.payload] = true; rg.appendChild(choiceButton(q, rg)); });
      wrap.appendChild(rg);
    }
    var rest = (m.quick_replies || []).filter(function (q) { return !rated[q.payload]; });
    if (rest.length) {
      var g = el("div", "kq-choices");
      g.setAttribute("role", "group");
      g.setAttribute("aria-label", "可选操作");
      rest.forEach(function (q) { g.appendChild(choiceButton(q, g)); });
      wrap.appendChild(g);
    }
    return wrap.children.length ? wrap : null;
  }
  function entryPart(entry) {
    var box = el("div", "kq-entry");
    if (entry.qr) {
      var fig = el("figure", "kq-qr");
      var img = el("img");
      img.src = entry.qr;
      img.alt = "手机扫码继续查看：" + entry.title;
      img.width = 220; img.height = 220;
      fig.appendChild(img);
      fig.appendChild(el("figcaption", null, "用手机扫码，继续查看或咨询"));
      box.appendChild(fig);
    }
    var p = el("button", "kq-btn kq-print", "打印办事指南");
    p.type = "button";
    p.addEventListener("click", function () { printGuide(entry.print); });
    box.appendChild(p);
    return box;
  }
  function showPopular(matter) {
    var source = matter && $('.kq-faqs ul[data-matter="' + matter + '"]');
    popularList.textContent = "";
    if (!source) { popular.hidden = true; return; }
    var list = source.cloneNode(true);
    list.removeAttribute("data-matter");
    list.className = "kq-questions";
    popularList.appendChild(list);
    popular.hidden = false;
  }
  function render(m) {
    if (m.conversation_id && state.wipedConv && m.conversation_id <= state.wipedConv) return;
    if (m.seq && log.querySelector('.kq-msg[data-seq="' + m.seq + '"]')) return;
    if (m.conversation_id) state.conv = m.conversation_id;
    var who = m.sender === "agent" ? (m.sender_name || "工作人员") : (LABELS[m.sender] || "");
    var item = el("article", "kq-msg kq-from-" + m.sender);
    item.dataset.seq = m.seq;
    item.appendChild(el("p", "kq-who", who));
    var content, shown = null;
    if (m.html) {
      content = el("div", "kq-text kq-html");
      content.innerHTML = m.html;  // sanitised by the server; no links, no images
    } else {
      shown = m.text;
      // an agent's rating request: its text is for text-only channels ("5 非常满意，4 满意…");
      // with the buttons to tap, its prompt alone asks for the rating
      var r = m.rating;
      if (r && r.segment === "agent" && r.prompt && r.options && r.options.length) shown = r.prompt;
      content = el("p", "kq-text", shown);
    }
    item.appendChild(content);
    (m.links || []).forEach(function (l) { item.appendChild(el("p", "kq-link", l.title)); });
    if (m.entry) item.appendChild(entryPart(m.entry));
    var c = choices(m, shown);
    if (c) item.appendChild(c);
    log.appendChild(item);
    if (m.entry && m.entry.matter) showPopular(m.entry.matter);
    if (m.queue) applyQueue(m);
    staleCancels();  // this message's own 取消排队 too, if a newer status already made it stale
    if (m.sender === "citizen") noteLeft(m);
    // nobody types back while a person is asked (小申 is quiet then)
    if (m.sender !== "citizen" || humanMode()) typing.hidden = true;
    // the bot's reply to what this person just did: they get the whole idle time to read it
    // (only the bot: it answers nothing but their own taps, so it cannot keep a screen alive)
    if (m.sender === "bot" && state.used) {
      state.deadline = Math.max(state.deadline, Date.now() + state.idle * 1000);
      idleBox.hidden = true;
    }
    showChat();
    scrollDown();
  }

  // -- printing ---------------------------------------------------------------------------------
  function printGuide(url) {
    printFrame.onload = function () {
      if (printFrame.getAttribute("src") === url) {
        try { printFrame.contentWindow.print(); } catch (e) { say("打印失败，请联系现场工作人员", true); }
      }
    };
    printFrame.setAttribute("src", url);
  }

  // -- sending ----------------------------------------------------------------------------------
  function send(frame) {
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) {
      say("网络连接中断，正在重新连接，请稍后再试", true);
      return false;
    }
    state.ws.send(JSON.stringify(frame));
    return true;
  }
  function choose(payload, label) {
    showChat();
    var ok = send({ type: "quick_reply", payload: payload, label: label, id: newId() });
    if (ok) { typing.hidden = humanMode(); scrollDown(); }
    return ok;
  }
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var text = input.value.trim();
    if (!text) { say("请输入您要咨询的问题", true); input.focus(); return; }
    if (send({ type: "message", text: text, id: newId() })) {
      input.value = "";
      showChat();
      typing.hidden = humanMode();
    }
  });
  input.addEventListener("keydown", function (ev) {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      form.requestSubmit();
    }
  });

  // -- the home screen ----------------------------------------------------------------------------
  $all(".kq-dept").forEach(function (tab) {
    tab.addEventListener("click", function () { selectTab(tab); });
  });
  function selectTab(tab) {
    $all(".kq-dept").forEach(function (t) {
      var on = t === tab;
      t.setAttribute("aria-selected", String(on));
      document.getElementById(t.getAttribute("aria-controls")).hidden = !on;
    });
  }
  document.addEventListener("click", function (ev) {
    var b = ev.target.closest && ev.target.closest("button[data-payload]");
    if (b && !b.disabled) { choose(b.dataset.payload, b.textContent.trim()); return; }
    var a = ev.target.closest && ev.target.closest("button[data-action]");
    if (!a) return;
    var action = a.dataset.action;
    if (action === "home") showHome();
    else if (action === "end") wipe(true);
    else if (action === "human") choose("human", "转人工帮办");
    else if (action === "cancel") { if (choose("handoff:cancel", a.textContent)) a.disabled = true; }
    else if (action === "continue") touched();
  });

  // -- idle: countdown, then wipe ---------------------------------------------------------------
  function activeEvery() { return Math.max(1, Math.min(10, state.idle / 3)) * 1000; }
  function touched() {
    var now = Date.now();
    if (!state.used || now - state.lastActive >= activeEvery()) {
      if (send({ type: "active" })) state.lastActive = now;
    }
    state.used = true;
    state.deadline = now + state.idle * 1000;
    idleBox.hidden = true;
  }
  ["pointerdown", "keydown", "input", "wheel"].forEach(function (type) {
    document.addEventListener(type, touched, { capture: true, passive: true });
  });
  setInterval(function () {
    if (!state.used) return;
    var left = state.deadline - Date.now();
    if (left <= 0) { wipe(true); return; }
    if (left <= state.warning * 1000) {
      count.textContent = String(Math.ceil(left / 1000));
      if (idleBox.hidden) {
        idleBox.hidden = false;
        $(".kq-continue").focus();
      }
    }
  }, 200);

  /* Everything the last person saw goes: the conversation, the popular questions, the status
     line, the text box, any print preview; the server is asked for a new session. */
  function wipe(tellServer) {
    if (state.conv && state.conv > state.wipedConv) state.wipedConv = state.conv;
    state.conv = null;
    log.textContent = "";
    popularList.textContent = "";
    popular.hidden = true;
    typing.hidden = true;
    input.value = "";
    input.blur();
    resetQueue();
    idleBox.hidden = true;
    state.used = false;
    state.deadline = 0;
    printFrame.setAttribute("src", "about:blank");
    var first = $(".kq-dept");
    if (first) selectTab(first);
    chatView.hidden = true;
    homeView.hidden = false;
    main.scrollTop = 0;
    storeSession(null);
    body.removeAttribute("data-session");
    if (tellServer && !send({ type: "end" })) state.session = null;
    say("已清除上一位的咨询内容，您可以开始新的咨询", false);
  }

  // -- the connection -----------------------------------------------------------------------------
  function onFrame(f) {
    if (f.type === "hello") {
      state.retry = 0;
      if (notice.classList.contains("kq-error")) say("");
      if (f.session !== state.session && !f.resumed && log.children.length) wipe(false);
      state.session = f.session;
      storeSession(f.session);
      body.dataset.session = f.session;
      state.idle = f.idle_timeout_s || state.idle;
      state.warning = f.idle_warning_s || 0;
      if (f.max_length) input.maxLength = f.max_length;
      (f.history || []).forEach(render);
      if (f.resumed && (f.history || []).length) touched();
    } else if (f.type === "ended") wipe(false);
    else if (f.type === "message") render(f.message);
    else if (f.type === "status") applyQueue(f.message);
    else if (f.type === "typing") { if (!humanMode()) typing.hidden = false; }
    else if (f.type === "error") { typing.hidden = true; say(f.reason, true); }
  }
  function connect() {
    var url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/kiosk/ws";
    if (state.session) url += "?session=" + encodeURIComponent(state.session);
    var ws = new WebSocket(url);
    state.ws = ws;
    ws.onmessage = function (ev) {
      var f;
      try { f = JSON.parse(ev.data); } catch (e) { return; }
      onFrame(f);
    };
    ws.onclose = function () {
      if (state.ws !== ws) return;
      state.ws = null;
      say("网络连接中断，正在重新连接…", true, true);
      var wait = Math.min(10000, 500 * Math.pow(2, state.retry++));
      setTimeout(connect, wait);
    };
  }
  connect();
})();
