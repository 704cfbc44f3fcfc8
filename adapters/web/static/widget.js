/*
 * 小申 — the 一网通办 chat widget (Bangban web channel). No dependencies.
 * Embed with ONE tag: <script src="https://<bangban host>/widget.js" defer></script>
 *
 * Transport: a websocket to /channels/web/ws. Every message carries its conversation's seq;
 * the widget renders strictly in seq order, drops what it has already rendered, and asks the
 * server to replay ("resume") from its last seq after a reconnect or when it sees a gap.
 * Safety: citizen text is only ever set as textContent; HTML is taken only from the `html`
 * field of bot/agent messages (sanitised by the server) and parsed inert before insertion.
 *
 * Human help: "status" frames (transient, seq 0) and stored messages carrying `queue` drive a
 * banner above the log (position, expected wait, cancel; whether a 留言 has been received, from
 * the citizen writing in it; then the agent's name), newest wins. Once a person serves, earlier
 * 取消排队 buttons in the log are disabled.
 * Pictures and voice: the attach button (or pasting a screenshot) uploads the file over HTTP
 * to /channels/web/upload, then a "message" frame names the uploaded id. Attachments are shown
 * only from our own /attachments/{id} URLs; on another origin's page, where our cookie does
 * not travel, they are fetched with the widget's token and shown from a blob.
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
  var SAME_ORIGIN = ORIGIN === location.origin;
  var ATTACHMENT_URL = /^\/attachments\/[A-Za-z0-9]{1,40}$/;
  var ACCEPT = "image/png,image/jpeg,image/gif,image/webp,audio/*,.amr,.m4a,.mp3,.ogg,.wav,.webm";
  var TOKEN_HEADER = "X-Bangban-Token";
  // human help states in which the bot is quiet (no "小申正在输入…") and the banner shows
  var HUMAN = { routing: 1, waiting: 1, message: 1, assigned: 1 };
  // states in which there is a line or a 留言 to cancel; in any other a 取消排队 button is stale
  var CANCELLABLE = { waiting: 1, message: 1 };
  // what the citizen types to cancel (answered by the core, not part of a 留言)
  var CANCEL_WORDS = { "取消": 1, "取消排队": 1, "不排了": 1, "不等了": 1, "取消人工": 1, "取消留言": 1 };
  var WELCOME = "您好，我是“一网通办”智能客服小申，请问有什么可以帮您？";
  // each is answered (tests/adapters/web/test_widget_examples.py): a welcome that offers a question
  // the bot cannot answer is a bad first impression
  var EXAMPLES = ["居住证签注需要什么材料", "无犯罪记录证明怎么开", "怎样转人工帮办"];

  var state = {
    ws: null, token: null, conv: null, lastSeq: 0, pending: new Map(), retry: 0,
    timer: null, opened: false, started: false, hadHello: false, resumeAt: 0,
    maxLength: 500, typingTimer: null, statusTimer: null,
    queue: null, queueAt: 0, queueConv: null, left: false, limits: {}, uploading: false
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
  var queueBar = attrs(el("div", "bb-queue"), { role: "status", "aria-live": "polite", "aria-label": "人工帮办状态" });
  var queueText = el("span", "bb-queue-text");
  var cancelBtn = attrs(el("button", "bb-queue-cancel", "取消排队"), { type: "button" });
  queueBar.append(queueText, cancelBtn);
  queueBar.hidden = true;
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
  var attachBtn = attrs(el("button", "bb-attach", "+"), {
    type: "button", "aria-label": "发送图片或语音", title: "发送图片或语音（也可直接粘贴截图）"
  });
  var fileInput = attrs(el("input", "bb-file"), { type: "file", accept: ACCEPT, tabindex: "-1", "aria-hidden": "true" });
  fileInput.hidden = true;
  form.append(label, attachBtn, fileInput, input, sendBtn);
  panel.append(head, status, queueBar, log, typing, form);
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
  function humanMode() { return !!(state.queue && HUMAN[state.queue.state]); }
  function showTyping(on) {
    if (on && humanMode()) on = false;  // a person answers when they answer: no bot typing
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

  // -- human help banner ---------------------------------------------------------------------
  function minutes(s) { return Math.max(1, Math.ceil(s / 60)); }
  function applyQueue(m) {
    var q = m && m.queue;
    if (!q || typeof q.state !== "string") return;
    if (state.conv && m.conversation_id && m.conversation_id < state.conv) return;  // older conversation
    var at = Date.parse(m.created_at) || 0;
    // statuses arrive by two paths (live frames, stored messages replayed): newest wins
    if (m.conversation_id === state.queueConv && at < state.queueAt) return;
    var prev = state.queue;
    // the same 留言 still (a reconnect's status, say) keeps what the citizen has written in it
    var sameLeft = prev && prev.state === "message" && q.state === "message" &&
      prev.unit === q.unit && m.conversation_id === state.queueConv;
    if (!sameLeft) state.left = false;
    state.queue = q; state.queueAt = at; state.queueConv = m.conversation_id;
    showQueue();
    cancelBtn.textContent = q.state === "message" ? "取消留言" : "取消排队";
    cancelBtn.hidden = !q.can_cancel;
    cancelBtn.disabled = false;
    if (!CANCELLABLE[q.state]) {
      // a person serves (or it is over): earlier 取消排队 / 取消留言 buttons have nothing to cancel
      log.querySelectorAll('.bb-choice[data-payload="handoff:cancel"]').forEach(function (b) { b.disabled = true; });
    }
    if (humanMode()) showTyping(false);
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
      text = unit + (state.left ? "留言已提交，工作人员上班后将尽快回复"
                                : "当前非工作时间，请留言，工作人员上班后将尽快回复");
    } else if (q.state === "assigned") text = "工作人员 " + (q.agent_name || "") + " 为您服务";
    queueText.textContent = text;
    queueBar.setAttribute("data-state", q.state);
    queueBar.hidden = !text;  // closed / cancelled: the banner goes away
  }
  // the citizen wrote while leaving a message (留言): the banner says it has been received
  function noteLeft(m) {
    if (!state.queue || state.queue.state !== "message" || state.left) return;
    if (m.conversation_id !== state.queueConv) return;
    if (!(m.attachments || []).length && (!m.text || CANCEL_WORDS[m.text.trim()])) return;
    state.left = true;
    showQueue();
  }
  function resetQueue() {
    state.queue = null; state.queueAt = 0; state.queueConv = null; state.left = false;
    queueBar.hidden = true;
  }
  cancelBtn.addEventListener("click", function () {
    if (send({ type: "quick_reply", payload: "handoff:cancel", label: cancelBtn.textContent })) cancelBtn.disabled = true;
  });

  // -- pictures and voice --------------------------------------------------------------------
  function mediaSource(url, node, attr) {
    var abs = ORIGIN + url;
    if (SAME_ORIGIN || !state.token) { node.setAttribute(attr, abs); return; }
    var headers = {};
    headers[TOKEN_HEADER] = state.token;
    fetch(abs, { headers: headers, credentials: "omit" }).then(function (r) {
      if (!r.ok) throw new Error("HTTP " + r.status);
      return r.blob();
    }).then(function (blob) {
      node.setAttribute(attr, URL.createObjectURL(blob));
    }).catch(function () { node.replaceWith(el("span", "bb-media-error", "（文件无法加载）")); });
  }
  function attachment(a) {
    var box = el("div", "bb-media");
    if (a.kind === "image") {
      var img = attrs(el("img", "bb-thumb"), { alt: a.name ? "图片：" + a.name : "图片", loading: "lazy" });
      mediaSource(a.url, img, "src");
      if (SAME_ORIGIN) {
        var open = attrs(el("a", "bb-thumb-link"), { href: ORIGIN + a.url, target: "_blank", rel: "noopener noreferrer", title: "查看原图" });
        open.append(img);
        box.append(open);
      } else box.append(img);
    } else {
      var audio = attrs(el("audio", "bb-audio"), { controls: "", preload: "metadata", "aria-label": "语音消息" });
      audio.addEventListener("error", function () {
        audio.replaceWith(el("span", "bb-media-error", "（此语音格式浏览器无法播放）"));
      });
      mediaSource(a.url, audio, "src");
      box.append(audio);
    }
    return box;
  }
  function mb(n) { var v = n / 1048576; return v >= 1 ? (Math.round(v * 10) / 10) + " MB" : Math.round(n / 1024) + " KB"; }
  function upload(file) {
    if (!file || state.uploading) return;
    var voice = /^audio\//i.test(file.type) || /\.(amr|m4a|mp3|ogg|wav|webm|aac)$/i.test(file.name || "");
    var limit = voice ? state.limits.max_voice_bytes : state.limits.max_image_bytes;
    if (limit && file.size > limit) {
      setStatus((voice ? "语音" : "图片") + "过大，请控制在 " + mb(limit) + " 以内", true);
      return;
    }
    if (!state.ws || state.ws.readyState !== 1) { send(null); return; }
    var body = new FormData();
    body.append("file", file, file.name || (voice ? "voice" : "image"));
    var headers = {};
    if (state.token) headers[TOKEN_HEADER] = state.token;
    state.uploading = true;
    attachBtn.disabled = true;
    setStatus("正在发送" + (voice ? "语音" : "图片") + "…");
    function done() { state.uploading = false; attachBtn.disabled = false; }
    fetch(ORIGIN + "/channels/web/upload", {
      method: "POST", body: body, headers: headers, credentials: SAME_ORIGIN ? "same-origin" : "omit"
    }).then(function (r) {
      return r.json().catch(function () { return {}; }).then(function (b) { return { ok: r.ok, body: b || {} }; });
    }).then(function (res) {
      done();
      if (!res.ok || typeof res.body.id !== "string") {
        setStatus(res.body.message || "发送失败，请稍后再试", true);
        return;
      }
      setStatus("");
      if (send({ type: "message", text: "", attachments: [res.body.id] })) showTyping(true);
    }, function () { done(); setStatus("发送失败，请检查网络后重试", true); });
  }
  attachBtn.addEventListener("click", function () { fileInput.click(); });
  fileInput.addEventListener("change", function () {
    var file = fileInput.files && fileInput.files[0];
    fileInput.value = "";
    upload(file);
  });

  function disableChoices() {
    log.querySelectorAll(".bb-choice").forEach(function (b) { b.disabled = true; });
  }

  function render(m) {
    var sender = SENDERS[m.sender] ? m.sender : "system";
    var row = attrs(el("div", "bb-msg bb-from-" + sender), { "data-seq": String(m.seq) });
    var bubble = el("div", "bb-bubble");
    var who = SENDERS[sender];
    if (sender === "agent") {
      who = typeof m.sender_name === "string" && m.sender_name ? "工作人员 " + m.sender_name : "工作人员";
      bubble.append(attrs(el("div", "bb-name", who), { "aria-hidden": "true" }));
    }
    bubble.append(el("span", "bb-sr", who + "："));
    var media = (m.attachments || []).filter(function (a) { return a && ATTACHMENT_URL.test(a.url || ""); });
    // a rating request's options are its quick replies (bot and agent ratings alike)
    var choices = m.quick_replies && m.quick_replies.length ? m.quick_replies : (m.rating && m.rating.options) || [];
    // an agent's rating request: its text is for text-only channels ("5 非常满意，4 满意…");
    // with buttons to tap, its prompt alone asks for the rating
    var text = m.text;
    if (m.rating && m.rating.segment === "agent" && m.rating.prompt && choices.length) text = m.rating.prompt;
    if ((sender === "bot" || sender === "agent") && m.html) {
      var rich = el("div", "bb-rich");
      rich.append(richHtml(m.html));
      bubble.append(rich);
    } else if (text || !media.length) {
      bubble.append(el("div", "bb-text", text));
    }
    media.forEach(function (a) { bubble.append(attachment(a)); });
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
    if (choices.length) {
      var prompt = m.rating ? m.rating.prompt : "可选操作";
      var group = attrs(el("div", "bb-choices" + (m.rating ? " bb-rating" : "")), { role: "group", "aria-label": prompt });
      // the agent rating's message text is its prompt: say it once
      if (m.rating && prompt.trim() !== (text || "").trim()) group.append(el("p", "bb-prompt", prompt));
      choices.forEach(function (q) {
        var b = attrs(el("button", "bb-choice", q.label), { type: "button", "data-payload": q.payload });
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
    if (sender === "citizen") {
      disableChoices();  // older choices are stale once the citizen moves on
      noteLeft(m);
    }
    if (sender !== "citizen" || humanMode()) showTyping(false);
    row.append(bubble);
    log.append(row);
    if (m.queue) applyQueue(m);
    scrollDown();
  }

  // in seq order, each once; a gap asks the server to replay it
  function newConversation(m, fromSeq) {
    if (state.conv) log.append(attrs(el("div", "bb-divider", "—— 新的会话 ——"), { role: "separator" }));
    state.conv = m.conversation_id;
    state.lastSeq = fromSeq;
    state.pending.clear();
    resetQueue();
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
      else if (f.type === "status") applyQueue(f.message);
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
    if (f.upload) state.limits = f.upload;
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
    if (!frame || !state.ws || state.ws.readyState !== 1) {
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
  input.addEventListener("paste", function (e) {
    // a screenshot pasted into the box is sent as a picture
    var files = e.clipboardData && e.clipboardData.files;
    if (files && files.length && /^image\//i.test(files[0].type)) {
      e.preventDefault();
      upload(files[0]);
    }
  });
  window.addEventListener("online", function () { if (state.started && !state.ws) { state.retry = 0; connect(); } });

  function mount() { document.body.append(host); }
  if (document.body) mount(); else document.addEventListener("DOMContentLoaded", mount);
})();
