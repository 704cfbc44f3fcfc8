/*
 * 坐席工作台 and 班组监控 in the browser: lists, transcript, replies and live updates.
 *
 * Safety: everything from the server (citizens' text above all) is put into the page with
 * textContent or as attribute values of elements built here; nothing is ever parsed as HTML,
 * except the supervisor board, which is our own server-escaped page read through DOMParser
 * (an inert document: no script runs) and moved into place.
 * Every POST carries the session's CSRF token (meta csrf-token) in X-CSRF-Token.
 * Live updates come over /console/workspace/socket; the API stays the truth, so after any
 * event the affected list or transcript is simply read again.
 */
(function () {
  "use strict";

  var CSRF = (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  var SENDERS = { citizen: "群众", bot: "小申", agent: "坐席", system: "系统" };
  var STATUS = { online: "在线", busy: "忙碌", away: "离开" };
  var STATES = { waiting: "排队中", assigned: "接待中", message: "留言", closed: "已结束",
    cancelled: "已取消", transferred: "已转办", overflowed: "已溢出" };
  var CHANNELS = { web: "网页", app: "随申办", wechat: "微信", alipay: "支付宝", kiosk: "自助终端" };
  var STATUS_KEY = "bangban.ws.status";

  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function byId(id) { return document.getElementById(id); }

  function call(method, path, body, isForm) {
    var init = { method: method, credentials: "same-origin", headers: { "Accept": "application/json" } };
    if (method !== "GET") init.headers["X-CSRF-Token"] = CSRF;
    if (body !== undefined) {
      if (isForm) init.body = body;
      else { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
    }
    return fetch(path, init).then(function (resp) {
      if (resp.status === 401) { location.href = "/console/login?next=" + encodeURIComponent(location.pathname + location.search); }
      return resp.json().catch(function () { return {}; }).then(function (data) {
        return { ok: resp.ok, status: resp.status, body: data };
      });
    }, function () {
      return { ok: false, status: 0, body: { message: "网络连接失败，请稍后重试" } };
    });
  }

  function waited(since) {
    var s = Math.max(0, Math.round((Date.now() - since) / 1000));
    var m = Math.floor(s / 60);
    return m ? m + "分" + String(s % 60).padStart(2, "0") + "秒" : s + "秒";
  }

  // times as the agents live them: Beijing time, whatever the workstation's zone
  var HHMM = new Intl.DateTimeFormat("zh-CN", { timeZone: "Asia/Shanghai", hour: "2-digit", minute: "2-digit", hour12: false });
  function clock(iso) {
    var d = new Date(iso);
    return isNaN(d) ? "" : HHMM.format(d);
  }

  function debounce(fn, ms) {
    var timer = null;
    return function () { clearTimeout(timer); timer = setTimeout(fn, ms); };
  }

  // -- the socket, shared by both pages ------------------------------------------------------

  function connect(handlers) {
    var conn = byId("ws-conn");
    var ws = null, delay = 1000, stopped = false;
    function open() {
      var scheme = location.protocol === "https:" ? "wss://" : "ws://";
      ws = new WebSocket(scheme + location.host + "/console/workspace/socket");
      ws.onopen = function () { delay = 1000; if (conn) conn.textContent = ""; };
      ws.onmessage = function (msg) {
        var frame;
        try { frame = JSON.parse(msg.data); } catch (e) { return; }
        var fn = handlers[frame.type];
        if (fn) fn(frame);
      };
      ws.onclose = function (ev) {
        if (ev.code === 4401) { location.href = "/console/login"; return; }
        if (stopped) return;
        if (conn) conn.textContent = "实时连接已断开，正在重新连接…";
        setTimeout(open, delay);
        delay = Math.min(delay * 2, 15000);
        if (handlers.lost) handlers.lost();
      };
    }
    open();
    window.addEventListener("pagehide", function () { stopped = true; if (ws) ws.close(); });
    return { send: function (obj) {
      if (ws && ws.readyState === 1) { ws.send(JSON.stringify(obj)); return true; }
      return false;
    } };
  }

  // -- 坐席工作台 ------------------------------------------------------------------------------

  function workspace(root) {
    var me = root.dataset.user;
    var maxLen = Number(root.dataset.max) || 2000;
    var lists = { mine: byId("ws-mine"), breaches: byId("ws-breaches"), waiting: byId("ws-waiting"), messages: byId("ws-messages") };
    var logBox = byId("ws-log"), alertBox = byId("ws-alert"), text = byId("ws-text");
    var replyForm = byId("ws-reply"), actions = byId("ws-actions"), summary = byId("ws-summary");
    var state = { board: null, selected: null, handoff: null, seqs: {}, last: 0, unread: {}, fresh: {},
      breached: {}, pending: [], asked: [], draft: { auto: "", edited: false } };
    var baseTitle = document.title;

    function showAlert(message) {
      alertBox.textContent = message || "";
      alertBox.hidden = !message;
    }

    function cue() {
      var n = 0;
      Object.keys(state.unread).forEach(function (k) { n += state.unread[k]; });
      n += Object.keys(state.fresh).length;
      document.title = n ? "（" + n + "）新消息 · " + baseTitle : baseTitle;
    }

    // the lists
    function item(h, key) {
      var li = el("li", "ws-item");
      var btn = el("button", "ws-pick");
      btn.type = "button";
      btn.dataset.handoff = h.id;
      if (h.id === state.selected) btn.setAttribute("aria-current", "true");
      if (state.fresh[h.id]) li.classList.add("ws-new");
      if (h.sla_breached || state.breached[h.id] || key === "breaches") li.classList.add("ws-late");
      var title = el("span", "ws-item-title", h.matter_name || "未识别事项");
      var meta = el("span", "ws-item-meta", [h.unit_name, CHANNELS[h.channel] || h.channel, STATES[h.state] || h.state].join(" · "));
      // the line: how long the citizen has waited, or, once an agent serves them (我的会话, and
      // served ones among 超时提醒), how long they have been served
      var served = h.state === "assigned" && h.assigned_at;
      var since = el("span", "ws-since");
      since.dataset.since = String(Date.parse(served ? h.assigned_at : h.requested_at));
      since.dataset.label = served ? "已接待 " : "已等待 ";
      since.textContent = since.dataset.label + waited(Number(since.dataset.since));
      btn.append(title, meta, since);
      var unread = state.unread[h.id] || 0;
      if (unread) {
        var badge = el("span", "ws-badge", unread);
        badge.setAttribute("aria-label", unread + "条未读");
        btn.append(badge);
      }
      if (state.fresh[h.id]) btn.append(el("span", "ws-tag", "新分配"));
      btn.addEventListener("click", function () { select(h.id); });
      li.append(btn);
      return li;
    }

    function renderBoard() {
      Object.keys(lists).forEach(function (key) {
        var ul = lists[key];
        var items = (state.board && state.board[key]) || [];
        ul.replaceChildren();
        if (!items.length) { ul.append(el("li", "ws-empty", ul.dataset.empty)); return; }
        items.forEach(function (h) { ul.append(item(h, key)); });
      });
      cue();
    }

    function loadBoard() {
      return call("GET", "/console/api/board").then(function (r) {
        if (!r.ok) { showAlert(r.body.message); return; }
        state.board = r.body;
        (r.body.breaches || []).forEach(function (h) { state.breached[h.id] = true; });
        renderBoard();
      });
    }
    var refreshBoard = debounce(loadBoard, 250);

    // the transcript
    function messageNode(m) {
      var node = el("div", "ws-msg ws-from-" + (SENDERS[m.sender] ? m.sender : "system"));
      node.dataset.seq = String(m.seq);
      var who = m.sender === "agent" && m.sender_name ? "坐席 " + m.sender_name : (SENDERS[m.sender] || "系统");
      var head = el("div", "ws-msg-head");
      head.append(el("span", "ws-who", who), el("time", "ws-time", clock(m.created_at)));
      node.append(head);
      if (m.text) node.append(el("p", "ws-text", m.text));
      (m.attachments || []).forEach(function (a) {
        if (!/^\/console\/api\/attachments\/a[0-9a-f]+$/.test(a.url)) return;
        if (a.kind === "image") {
          var link = el("a", "ws-media");
          link.href = a.url; link.target = "_blank"; link.rel = "noopener";
          var img = el("img");
          img.src = a.url; img.alt = a.name || "图片"; img.loading = "lazy";
          link.append(img);
          node.append(link);
        } else if (a.kind === "voice") {
          var audio = el("audio", "ws-media");
          audio.controls = true; audio.preload = "none"; audio.src = a.url;
          var dl = el("a", "ws-download", "下载语音");
          dl.href = a.url; dl.download = a.name || "voice";
          node.append(audio, dl);
        }
      });
      (m.links || []).forEach(function (l) {
        if (!/^https?:\/\//.test(l.url)) return;
        var a = el("a", "ws-link", l.title);
        a.href = l.url; a.target = "_blank"; a.rel = "noopener noreferrer";
        node.append(a);
      });
      if (m.sender === "agent" && m.id && m.text) node.append(proposeButton(m));
      return node;
    }

    // the citizen's question before message ``seq``: their last line that does more than steer
    function questionBefore(seq) {
      for (var i = state.asked.length - 1; i >= 0; i--) {
        if (state.asked[i].seq < seq) return state.asked[i].text;
      }
      return "";
    }

    // 纳入知识库: the agent sees the question the answer will be filed under (the citizen's
    // question, as the transcript has it) and may correct it before it goes to KB operators
    function proposeButton(m) {
      var wrap = el("div", "ws-propose-box");
      var propose = el("button", "ws-propose", "纳入知识库");
      propose.type = "button";
      propose.setAttribute("aria-expanded", "false");
      wrap.append(propose);
      if (m.proposed) {  // filed before (this page was reloaded since): not offered again
        propose.textContent = "已提交知识库候选";
        propose.disabled = true;
        return wrap;
      }
      var form = null;
      // closing puts focus back where the agent was (the button, or the reply box once the
      // button is spent) and takes the form's own alert with it
      function closeForm() {
        if (form) form.remove();
        form = null;
        propose.setAttribute("aria-expanded", "false");
        showAlert("");
        (propose.disabled ? text : propose).focus();
      }
      propose.addEventListener("click", function () {
        if (!state.selected) return;
        if (form) { form.querySelector("textarea").focus(); return; }
        form = el("form", "ws-propose-form");
        var label = el("label", null, "对应的问题");
        var question = el("textarea");
        question.rows = 2; question.maxLength = 2000; question.required = true;
        question.value = questionBefore(m.seq);
        label.append(question);
        var hint = el("p", "ws-propose-hint", "请确认或修改群众的问题，它将与这条答复一起提交知识库审核。");
        var bar = el("div", "ws-propose-bar");
        var submit = el("button", null, "提交候选");
        submit.type = "submit";
        var cancel = el("button", "ws-secondary", "取消");
        cancel.type = "button";
        cancel.addEventListener("click", closeForm);
        bar.append(submit, cancel);
        form.append(label, hint, bar);
        form.addEventListener("keydown", function (ev) {
          if (ev.key === "Escape") { ev.preventDefault(); closeForm(); }
        });
        form.addEventListener("submit", function (ev) {
          ev.preventDefault();
          var value = question.value.trim();
          if (!value) { showAlert("请填写这条答复对应的问题"); question.focus(); return; }
          submit.disabled = true;
          var id = state.selected;
          call("POST", "/console/api/handoffs/" + encodeURIComponent(id) + "/propose", { message_id: m.id, question: value }).then(function (r) {
            submit.disabled = false;
            if (r.ok) {
              propose.textContent = "已提交知识库候选";
              propose.disabled = true;
              closeForm();
              return;
            }
            if (r.status === 409) { propose.disabled = true; closeForm(); }
            showAlert(r.body.message || "提交失败");
          });
        });
        wrap.append(form);
        propose.setAttribute("aria-expanded", "true");
        question.focus();
      });
      return wrap;
    }

    function addMessages(msgs) {
      var nearBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 80;
      msgs.forEach(function (m) {
        if (state.seqs[m.seq]) return;
        state.seqs[m.seq] = true;
        state.last = Math.max(state.last, m.seq);
        // what the citizen asked: not the lines that only steer (the server marks 转人工, a
        // menu number or the department they tapped, a rating …)
        if (m.sender === "citizen" && m.text && m.text.trim() && !m.steering) {
          state.asked.push({ seq: m.seq, text: m.text.trim() });
        }
        logBox.append(messageNode(m));
      });
      if (nearBottom || msgs.length > 20) logBox.scrollTop = logBox.scrollHeight;
    }

    function renderHandoff(h) {
      state.handoff = h;
      byId("ws-title").textContent = (h.matter_name || "未识别事项") + " · " + (STATES[h.state] || h.state);
      var facts = [h.unit_name, CHANNELS[h.channel] || h.channel, "发起于 " + clock(h.requested_at)];
      if (h.agent_name) facts.push("坐席 " + h.agent_name);
      if (h.note) facts.push("说明：" + h.note);
      byId("ws-facts").textContent = facts.join(" · ");
      controls(h);
    }

    // the reply box for the agent holding it; 结案 / 转办 / 派单 only on a conversation they can
    // manage; 接待这条留言 only on a 留言; nothing at all while none is selected (h null)
    function controls(h) {
      var manage = !!(h && h.can_manage), claim = !!(h && h.can_claim);
      replyForm.hidden = !(h && h.mine);
      actions.hidden = !(manage || claim);
      byId("ws-claim").hidden = !claim;
      ["ws-close", "ws-transfer", "ws-dispatch-box"].forEach(function (id) { byId(id).hidden = !manage; });
    }

    function loadTranscript(full) {
      var id = state.selected;
      if (!id) return Promise.resolve();
      var after = full ? 0 : state.last;
      return call("GET", "/console/api/handoffs/" + encodeURIComponent(id) + "?after=" + after).then(function (r) {
        if (id !== state.selected) return;
        if (!r.ok) { showAlert(r.body.message); return; }
        renderHandoff(r.body.handoff);
        addMessages(r.body.messages || []);
        refreshDraft();
      });
    }

    // the 派单 summary: what the citizen asked, without what they typed or tapped to steer the
    // conversation (转人工, a menu number, 取消排队, a rating …); it follows their newer lines
    // until the agent edits it
    function refreshDraft() {
      if (state.draft.edited) return;
      var value = state.asked.map(function (a) { return a.text; }).join("\n")
        .slice(0, summary.maxLength > 0 ? summary.maxLength : undefined);
      if (summary.value !== value) summary.value = value;
      state.draft.auto = value;
    }
    summary.addEventListener("input", function () {
      state.draft.edited = summary.value !== state.draft.auto;
    });

    function select(id) {
      if (!id) return Promise.resolve();
      if (state.selected !== id) {
        state.selected = id; state.seqs = {}; state.last = 0; state.pending = [];
        state.handoff = null; state.asked = []; state.draft = { auto: "", edited: false };
        controls(null);  // until this conversation's rights are known
        summary.value = ""; byId("ws-contact").value = "";
        logBox.replaceChildren(); showAlert(""); byId("ws-pending").textContent = "";
        if (history.replaceState) history.replaceState(null, "", "?h=" + encodeURIComponent(id));
      }
      delete state.unread[id];
      delete state.fresh[id];
      renderBoard();
      return loadTranscript(true);
    }

    // replying
    function insert(value) {
      if (replyForm.hidden) { showAlert("请先选择一个您接待中的会话，再插入内容。"); return; }
      var current = text.value;
      text.value = (current ? current.replace(/\s+$/, "") + "\n" : "") + value;
      if (text.value.length > maxLen) text.value = text.value.slice(0, maxLen);
      text.focus();
    }

    replyForm.addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!state.selected || replyForm.hidden) return;
      var value = text.value;
      if (!value.trim() && !state.pending.length) return;
      var send = byId("ws-send");
      send.disabled = true;
      call("POST", "/console/api/handoffs/" + encodeURIComponent(state.selected) + "/send",
        { text: value, attachments: state.pending.map(function (p) { return p.id; }) }).then(function (r) {
        send.disabled = false;
        if (!r.ok) {
          // keep the text: the agent rewords it (a banned phrase is selected for them)
          showAlert(r.body.message || "发送失败");
          if (r.body.error === "banned_phrase" && typeof r.body.start === "number") {
            text.focus();
            text.setSelectionRange(r.body.start, r.body.end);
          }
          return;
        }
        showAlert("");
        text.value = "";
        state.pending = [];
        byId("ws-pending").textContent = "";
        addMessages([r.body.message]);
        text.focus();
      });
    });
    text.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" && (ev.ctrlKey || ev.metaKey)) { ev.preventDefault(); replyForm.requestSubmit(); }
    });

    byId("ws-file").addEventListener("change", function (ev) {
      var file = ev.target.files && ev.target.files[0];
      ev.target.value = "";
      if (!file) return;
      if (!state.selected || replyForm.hidden) { showAlert("请先选择一个您接待中的会话，再发送图片或语音。"); return; }
      var form = new FormData();
      form.append("file", file, file.name);
      byId("ws-pending").textContent = "正在上传…";
      call("POST", "/console/api/handoffs/" + encodeURIComponent(state.selected) + "/upload", form, true).then(function (r) {
        if (!r.ok) { byId("ws-pending").textContent = ""; showAlert(r.body.message || "上传失败"); return; }
        state.pending = [r.body];
        var what = r.body.attachment.kind === "voice" ? "语音" : "图片";
        byId("ws-pending").textContent = "已添加" + what + "：" + r.body.attachment.name + "（点“发送”发出）";
      });
    });

    // acting on the conversation
    function act(action, body, done) {
      var h = state.handoff;
      var allowed = h && state.selected && h.id === state.selected &&
        (action === "claim" ? h.can_claim : h.can_manage);
      if (!allowed) {
        controls(h && h.id === state.selected ? h : null);
        showAlert(state.selected ? "这个会话当前不能执行此操作" : "请先从左侧选择一个会话");
        return Promise.resolve();
      }
      return call("POST", "/console/api/handoffs/" + encodeURIComponent(state.selected) + "/" + action, body).then(function (r) {
        if (!r.ok) { showAlert(r.body.message || "操作失败"); return; }
        showAlert("");
        if (done) done(r.body);
        loadBoard();
        if (action === "transfer") { renderHandoff(Object.assign({}, state.handoff, { mine: false, can_manage: false, can_claim: false, state: "transferred" })); return; }
        loadTranscript(false);
      });
    }
    byId("ws-claim").addEventListener("submit", function (ev) { ev.preventDefault(); act("claim", {}); });
    byId("ws-close").addEventListener("submit", function (ev) {
      ev.preventDefault();
      act("close", { resolution: byId("ws-resolution").value, note: byId("ws-close-note").value || null },
        function () { byId("ws-close-note").value = ""; });
    });
    byId("ws-transfer").addEventListener("submit", function (ev) {
      ev.preventDefault();
      if (!byId("ws-unit").value) { showAlert("请选择转办单位"); return; }
      act("transfer", { unit: byId("ws-unit").value, note: byId("ws-transfer-note").value || null },
        function () { byId("ws-transfer-note").value = ""; });
    });
    byId("ws-dispatch").addEventListener("submit", function (ev) {
      ev.preventDefault();
      act("dispatch", { summary: byId("ws-summary").value, contact: byId("ws-contact").value || null },
        function (body) { showAlert(""); byId("ws-facts").textContent += " · 已派单 " + body.ticket.id; });
    });

    // knowledge and canned replies
    byId("ws-kb").addEventListener("submit", function (ev) {
      ev.preventDefault();
      var q = byId("ws-kb-q").value.trim();
      var out = byId("ws-kb-hits");
      if (!q) return;
      call("GET", "/console/api/kb/search?q=" + encodeURIComponent(q)).then(function (r) {
        out.replaceChildren();
        if (!r.ok) { out.append(el("li", "ws-empty", r.body.message)); return; }
        if (!r.body.hits.length) { out.append(el("li", "ws-empty", "没有找到相关知识")); return; }
        r.body.hits.forEach(function (hit) {
          var li = el("li", "ws-kb-hit");
          li.append(el("strong", null, hit.title), el("span", "ws-item-meta", hit.entry_id),
            el("p", "ws-kb-text", hit.text.length > 140 ? hit.text.slice(0, 140) + "…" : hit.text));
          var btn = el("button", "ws-insert", "插入答复");
          btn.type = "button";
          btn.addEventListener("click", function () { insert(hit.text); });
          li.append(btn);
          out.append(li);
        });
      });
    });
    Array.prototype.forEach.call(document.querySelectorAll(".ws-canned .ws-insert"), function (btn) {
      btn.addEventListener("click", function () { insert(btn.dataset.text); });
    });

    // presence and live events
    var statusLabel = byId("ws-status");
    var socket = connect({
      hello: function () {
        var wanted = sessionStorage.getItem(STATUS_KEY);
        if (wanted && root.dataset.agent) socket.send({ type: "presence", status: wanted });
        loadBoard();
        if (state.selected) loadTranscript(false);
      },
      presence: function (f) {
        if (statusLabel) statusLabel.textContent = STATUS[f.status] || f.status;
        Array.prototype.forEach.call(document.querySelectorAll(".ws-presence button"), function (b) {
          b.setAttribute("aria-pressed", String(b.dataset.status === f.status));
        });
      },
      error: function (f) { showAlert(f.message); },
      event: function (f) { onEvent(f.event); },
      lost: function () { if (statusLabel) statusLabel.textContent = "连接中断"; }
    });
    Array.prototype.forEach.call(document.querySelectorAll(".ws-presence button"), function (b) {
      b.addEventListener("click", function () {
        sessionStorage.setItem(STATUS_KEY, b.dataset.status);
        if (!socket.send({ type: "presence", status: b.dataset.status })) showAlert("实时连接未就绪，请稍后再试");
      });
    });

    function onEvent(e) {
      var current = state.selected && (e.handoff === state.selected || e["new"] === state.selected);
      if (e.type === "citizen_message" || e.type === "agent_message") {
        if (current) loadTranscript(false);
        else if (e.type === "citizen_message" && e.agent === me) {
          state.unread[e.handoff] = (state.unread[e.handoff] || 0) + 1;
          renderBoard();
        }
        return;
      }
      if (e.type === "channel_window_closed" || e.type === "channel_send_failed") {
        // a platform channel (WeChat …) could not deliver: tell the agent serving that citizen
        var mine = state.board && (state.board.mine || []).some(function (h) {
          return h.conversation_id === e.conversation;
        });
        if (mine) showAlert(e.type === "channel_window_closed"
          ? "该群众的平台会话窗口已关闭（超过48小时或已达消息条数上限），消息无法送达；可等待群众再次来信，或派单12345。"
          : "消息未能通过平台发送给该群众（多次重试失败），请稍后重试或改用其他方式联系。");
        return;
      }
      if (e.type === "assigned" && e.agent === me && !current) state.fresh[e.handoff] = true;
      if (e.type === "sla_breach") state.breached[e.handoff] = true;
      if (current) loadTranscript(false);
      refreshBoard();
    }

    setInterval(function () {
      Array.prototype.forEach.call(document.querySelectorAll(".ws-since"), function (s) {
        s.textContent = s.dataset.label + waited(Number(s.dataset.since));
      });
    }, 1000);

    var wanted = new URLSearchParams(location.search).get("h");
    loadBoard().then(function () { if (wanted) select(wanted); });
  }

  // -- 班组监控 --------------------------------------------------------------------------------

  function supervisor() {
    function reload() {
      fetch(location.pathname, { credentials: "same-origin" }).then(function (resp) {
        if (!resp.ok) return null;
        return resp.text();
      }).then(function (html) {
        if (!html) return;
        // our own server-rendered, escaped page, parsed inert and moved into place
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("sv-board");
        var old = byId("sv-board");
        if (fresh && old) old.replaceWith(document.adoptNode(fresh));
      });
    }
    var refresh = debounce(reload, 500);
    connect({ event: refresh, hello: refresh, error: function () {} });
    setInterval(reload, 30000);
    setInterval(function () {
      Array.prototype.forEach.call(document.querySelectorAll(".sv-waited"), function (c) {
        c.textContent = waited(Number(c.dataset.since) * 1000);
      });
    }, 1000);
  }

  var root = byId("ws");
  if (root) workspace(root);
  else if (byId("sv")) supervisor();
})();
