/* PowerDesk agents' console: login, the live waiting list, claim / transfer / close, the chat
 * pane with canned replies, and the supervisor's charts (Chart.js).
 *
 * Safe by construction: no inline script (the page's CSP forbids it), every text from the server
 * (customer text above all) is inserted with textContent, never as HTML. Every state-changing
 * request carries the session's CSRF token in the X-CSRF-Token header. A 401 from the API means
 * the session is gone: back to the login form. A 403 is shown as a notice (another queue's
 * conversation, or a page for supervisors only). */
(function () {
  "use strict";

  var API = "/console/api";
  var LOGIN_PATH = "/console/login";  // outside the API: it needs no session
  var CSRF_HEADER = "X-CSRF-Token";
  var LIVE_PATH = API + "/live";
  var STATS_REFRESH_MS = 15000;
  var LIST_REFRESH_MS = 30000;  // a safety net: the live channel normally drives the lists

  var CHANNELS = { web: "网页", wechat: "微信", sms: "短信" };
  var CUSTOMER_TYPES = { residential: "居民", commercial: "商业", enterprise: "政企" };
  var STATES = { waiting: "排队中", active: "服务中", rating: "待评价", closed: "已结束" };
  var SENDERS = { customer: "客户", agent: "坐席", bot: "智能客服", system: "系统" };
  var TICKET_KINDS = { repair: "报修", complaint: "投诉" };
  var ITEM_STATES = {
    received: "已受理", dispatched: "已派单", processing: "处理中", in_progress: "办理中"
  };
  var REASONS = {
    request_human: "客户要求转人工", fallback: "连续未识别", urgent_fault: "紧急故障",
    severe_complaint: "严重投诉", enterprise_service: "政企客户服务", manager: "客户经理服务"
  };

  // Why a reply did not go out (the delivery result's reason), for the agent.
  var DELIVERY_REASONS = {
    outside_window: "微信客服消息仅能在客户48小时内有互动时发送", over_limit: "已达微信客服消息条数上限",
    not_following: "客户已取消关注公众号", refuses_messages: "客户拒收消息", opted_out: "客户已退订",
    rate_limited: "发送过于频繁，已暂缓发送", throttled: "渠道限流，稍后重试", timeout: "发送超时",
    no_channel: "该渠道未启用", invalid_user: "客户号码或账号无效", invalid_openid: "客户账号无效",
    expired: "消息已过期", redis_unavailable: "系统繁忙", error: "渠道异常"
  };

  var BAD_REQUESTS = {
    bad_conversation: "会话ID格式不正确（例如 web:…、wechat:openid、sms:手机号）",
    bad_text: "回复内容为空或过长（最多2000字）", bad_queue: "队列名称无效", unknown_agent: "坐席不存在",
    bad_day: "日期无效"
  };

  var state = {
    user: null,           // {name, role, queues}
    csrf: "",
    clockSkewMs: 0,       // server time - browser time
    waiting: [],
    mine: [],
    current: null,        // cid shown in the chat pane
    currentInfo: null,
    seenMessageIds: {},   // ids of messages shown in the pane
    unread: {},           // cids of my conversations with customer messages not seen yet
    live: null,
    liveRetryMs: 1000,
    refreshTimer: null,
    listTimer: null,
    statsTimer: null,
    charts: {},
    agents: [],
    queues: []
  };

  function $(id) { return document.getElementById(id); }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) { node.className = className; }
    if (text !== undefined && text !== null) { node.textContent = String(text); }
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  function nowSeconds() { return (Date.now() + state.clockSkewMs) / 1000; }

  function duration(seconds) {
    seconds = Math.max(0, Math.floor(seconds));
    var h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
    var mm = (m < 10 ? "0" : "") + m, ss = (s < 10 ? "0" : "") + s;
    return h > 0 ? h + ":" + mm + ":" + ss : mm + ":" + ss;
  }

  function clockTime(seconds) {
    var d = new Date(seconds * 1000);
    return d.toLocaleTimeString("zh-CN", { hour12: false });
  }

  function label(map, key) { return map[key] || String(key || "未知"); }

  function queueLabel(queue) {
    if (queue === "general") { return "普通"; }
    if (queue === "vip") { return "VIP"; }
    if (typeof queue === "string" && queue.indexOf("manager:") === 0) {
      return "客户经理 " + queue.slice("manager:".length);
    }
    return String(queue || "");
  }

  // ---- notices -----------------------------------------------------------------------------

  var noticeTimer = null;
  function notice(text, kind) {
    var box = $("notice");
    box.textContent = text;
    box.className = "notice " + (kind || "error");
    box.hidden = false;
    if (noticeTimer) { window.clearTimeout(noticeTimer); }
    noticeTimer = window.setTimeout(function () { box.hidden = true; }, 6000);
  }

  // ---- API ---------------------------------------------------------------------------------

  function ApiError(status, body) {
    this.status = status;
    this.body = body || {};
  }

  function request(method, path, body, absolute) {
    var headers = { "Accept": "application/json" };
    var init = { method: method, headers: headers, credentials: "same-origin", cache: "no-store" };
    if (method !== "GET") {
      headers[CSRF_HEADER] = state.csrf;
      if (body !== undefined) {
        headers["Content-Type"] = "application/json";
        init.body = JSON.stringify(body);
      }
    }
    return fetch(absolute ? path : API + path, init).then(function (response) {
      return response.text().then(function (text) {
        var data = {};
        if (text) {
          try { data = JSON.parse(text); } catch (e) { data = { error: text }; }
        }
        if (response.ok) { return data; }
        throw new ApiError(response.status, data);
      });
    });
  }

  /** The common handling of a failed request: 401 → login; 403 → notice; others → notice. */
  function failed(error) {
    if (!(error instanceof ApiError)) {
      notice("网络异常，请稍后重试");
      return;
    }
    if (error.status === 401) {
      showLogin("登录已过期，请重新登录");
    } else if (error.status === 403) {
      notice("无权进行此操作（不属于您的队列或权限不足）");
    } else if (error.status === 409) {
      notice("该会话已被其他坐席接入或状态已变化");
      refreshLists();
    } else if (error.status === 404) {
      notice("会话不存在或已结束");
      refreshLists();
    } else if (error.status === 429) {
      notice("操作过于频繁，请稍后再试");
    } else if (error.status === 400) {
      notice(BAD_REQUESTS[error.body.error] || "请求无效，请检查后重试");
    } else {
      notice("系统繁忙，请稍后重试");
    }
  }

  function conversationPath(cid, action) {
    return "/conversations/" + encodeURIComponent(cid) + (action ? "/" + action : "");
  }

  // ---- login -------------------------------------------------------------------------------

  function showLogin(message) {
    stopAll();
    state.user = null;
    state.csrf = "";
    $("app-view").hidden = true;
    $("login-view").hidden = false;
    $("login-error").textContent = message || "";
    $("login-password").value = "";
    $("login-username").focus();
  }

  function adoptSession(data) {
    state.user = data.user || null;
    state.csrf = data.csrf_token || data.csrf || "";
    if (typeof data.now === "number") { state.clockSkewMs = data.now * 1000 - Date.now(); }
  }

  $("login-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var button = $("login-submit");
    button.disabled = true;
    $("login-error").textContent = "";
    request("POST", LOGIN_PATH, { username: $("login-username").value, password: $("login-password").value },
            true)
      .then(function (data) {
        adoptSession(data);
        $("login-password").value = "";
        start();
      })
      .catch(function (error) {
        var text = "登录失败，请稍后重试";
        if (error instanceof ApiError && (error.status === 401 || error.status === 400)) {
          text = "用户名或密码错误";
        } else if (error instanceof ApiError && error.status === 429) {
          text = "登录尝试过多，请稍后再试";
        }
        $("login-error").textContent = text;
      })
      .then(function () { button.disabled = false; });
  });

  $("logout").addEventListener("click", function () {
    request("POST", "/logout").catch(function () { /* gone anyway */ })
      .then(function () { showLogin("您已退出登录"); });
  });

  // ---- start / stop ------------------------------------------------------------------------

  function start() {
    var user = state.user || {};
    $("login-view").hidden = true;
    $("app-view").hidden = false;
    $("whoami").textContent = (user.display_name || user.name || "") + "（" +
      (user.role === "supervisor" ? "主管" : "坐席") + "）";
    $("tab-supervisor").hidden = user.role !== "supervisor";
    showTab("work");
    loadReferenceData();
    refreshLists();
    connectLive();
    state.refreshTimer = window.setInterval(tick, 1000);
    state.listTimer = window.setInterval(refreshLists, LIST_REFRESH_MS);
  }

  function stopAll() {
    if (state.live) {
      state.live.onclose = null;
      state.live.close();
      state.live = null;
    }
    [state.refreshTimer, state.listTimer, state.statsTimer].forEach(function (t) {
      if (t) { window.clearInterval(t); }
    });
    state.refreshTimer = state.listTimer = state.statsTimer = null;
    state.current = null;
    state.currentInfo = null;
    state.unread = {};
    document.title = TITLE;
    showChat(null);
  }

  function loadReferenceData() {
    request("GET", "/canned").then(function (data) {
      var items = Array.isArray(data) ? data : (data.canned || data.replies || []);
      var select = $("canned"), groups = {};
      while (select.options.length > 1) { select.remove(1); }
      Array.prototype.forEach.call(select.querySelectorAll("optgroup"), function (g) { g.remove(); });
      items.forEach(function (item) {
        var text = typeof item === "string" ? item : item.text;
        var option = el("option", null, typeof item === "string" ? item : (item.title || item.text));
        option.value = text;
        var category = typeof item === "string" ? "" : (item.category || "");
        if (!category) { select.appendChild(option); return; }
        if (!groups[category]) {
          groups[category] = el("optgroup");
          groups[category].label = category;
          select.appendChild(groups[category]);
        }
        groups[category].appendChild(option);
      });
    }).catch(function () { /* canned replies are optional */ });
    request("GET", "/queues").then(function (data) {
      state.queues = (Array.isArray(data) ? data : (data.queues || [])).map(function (q) {
        return typeof q === "string" ? q : q.queue || q.name;
      });
      state.agents = Array.isArray(data.agents) ? data.agents : [];
      fillTransferPickers();
    }).catch(function () {
      state.queues = (state.user && state.user.queues) || [];
      fillTransferPickers();
    });
  }

  function fillTransferPickers() {
    var queues = $("transfer-queue"), agents = $("transfer-agent");
    while (queues.options.length > 1) { queues.remove(1); }
    while (agents.options.length > 1) { agents.remove(1); }
    state.queues.forEach(function (q) {
      var option = el("option", null, queueLabel(q));
      option.value = q;
      queues.appendChild(option);
    });
    state.agents.forEach(function (a) {
      var name = typeof a === "string" ? a : a.name;
      if (!name || (state.user && name === state.user.name)) { return; }
      var option = el("option", null, typeof a === "string" ? a : (a.display_name || a.name));
      option.value = name;
      agents.appendChild(option);
    });
  }

  // ---- tabs --------------------------------------------------------------------------------

  function showTab(name) {
    $("work-view").hidden = name !== "work";
    $("supervisor-view").hidden = name !== "supervisor";
    $("tab-work").classList.toggle("active", name === "work");
    $("tab-supervisor").classList.toggle("active", name === "supervisor");
    if (state.statsTimer) { window.clearInterval(state.statsTimer); state.statsTimer = null; }
    if (name === "supervisor") {
      loadStats();
      state.statsTimer = window.setInterval(loadStats, STATS_REFRESH_MS);
    }
  }

  $("tab-work").addEventListener("click", function () { showTab("work"); refreshLists(); });
  $("tab-supervisor").addEventListener("click", function () { showTab("supervisor"); });

  // ---- lists -------------------------------------------------------------------------------

  var listsInFlight = false, listsAgain = false;

  function conversationsOf(data) {
    return Array.isArray(data) ? data : (data.conversations || data.items || []);
  }

  function refreshLists() {
    if (!state.user) { return; }
    if (listsInFlight) { listsAgain = true; return; }
    listsInFlight = true;
    Promise.all([request("GET", "/conversations?state=waiting"),
                 request("GET", "/conversations?state=active&mine=1")])
      .then(function (results) {
        if (typeof results[0].now === "number") {
          state.clockSkewMs = results[0].now * 1000 - Date.now();
        }
        state.waiting = conversationsOf(results[0]);
        state.mine = conversationsOf(results[1]).filter(function (c) {
          return !state.user || !c.agent || c.agent === state.user.name;
        });
        renderLists();
        if (state.current) { refreshCurrentInfo(); }
      })
      .catch(failed)
      .then(function () {
        listsInFlight = false;
        if (listsAgain) { listsAgain = false; refreshLists(); }
      });
  }

  var TITLE = document.title;

  function renderLists() {
    renderList($("waiting-list"), state.waiting, $("waiting-empty"), $("waiting-count"), true);
    renderList($("mine-list"), state.mine, $("mine-empty"), $("mine-count"), false);
    // Seen from another tab too: how many customers wait.
    document.title = state.waiting.length ? "(" + state.waiting.length + ") " + TITLE : TITLE;
  }

  function renderList(list, items, empty, count, waiting) {
    clear(list);
    count.textContent = String(items.length);
    empty.hidden = items.length > 0;
    items.forEach(function (c) { list.appendChild(listItem(c, waiting)); });
  }

  function listItem(c, waiting) {
    var li = el("li", "conv" + (c.cid === state.current ? " selected" : "") +
      (!waiting && state.unread[c.cid] ? " unread" : ""));
    li.setAttribute("data-cid", c.cid);
    li.tabIndex = 0;
    var top = el("div", "conv-top");
    top.appendChild(el("span", "channel ch-" + (c.channel || "web"), label(CHANNELS, c.channel)));
    top.appendChild(el("span", "ctype ct-" + (c.customer_type || ""), label(CUSTOMER_TYPES, c.customer_type)));
    top.appendChild(el("span", "account", c.account_masked || c.account || "未绑定户号"));
    var since = el("span", "since");
    since.setAttribute("data-since", String(waiting ? c.created_at : (c.claimed_at || c.created_at)));
    since.textContent = duration(nowSeconds() - (waiting ? c.created_at : (c.claimed_at || c.created_at)));
    top.appendChild(since);
    li.appendChild(top);
    var meta = el("div", "conv-meta");
    meta.appendChild(el("span", "queue", queueLabel(c.queue)));
    meta.appendChild(el("span", "reason", label(REASONS, c.reason)));
    li.appendChild(meta);
    var last = (c.assistant_messages || []).slice(-3);
    if (last.length) {
      var ul = el("ul", "conv-last");
      last.forEach(function (m) {
        ul.appendChild(el("li", "sender-" + (m.sender || ""), label(SENDERS, m.sender) + "：" + (m.text || "")));
      });
      li.appendChild(ul);
    }
    var open = (c.open_tickets || []).length + (c.open_applications || []).length;
    if (open) { li.appendChild(el("div", "conv-open", "未办结工单/申请 " + open + " 件")); }
    li.addEventListener("click", function () { openConversation(c.cid); });
    li.addEventListener("keydown", function (event) {
      if (event.key === "Enter") { openConversation(c.cid); }
    });
    return li;
  }

  function tick() {
    var now = nowSeconds();
    Array.prototype.forEach.call(document.querySelectorAll("[data-since]"), function (node) {
      var since = Number(node.getAttribute("data-since"));
      if (since > 0) { node.textContent = duration(now - since); }
    });
  }

  // ---- chat pane ---------------------------------------------------------------------------

  function findConversation(cid) {
    return state.waiting.concat(state.mine).filter(function (c) { return c.cid === cid; })[0] || null;
  }

  function openConversation(cid) {
    state.current = cid;
    delete state.unread[cid];
    state.seenMessageIds = {};
    clear($("chat-transcript"));
    showChat(findConversation(cid));
    renderLists();
    request("GET", conversationPath(cid)).then(function (data) {
      if (state.current !== cid) { return; }
      var info = data.conversation || data;
      showChat(info);
      (data.messages || info.messages || []).forEach(addMessage);
    }).catch(failed);
  }

  function refreshCurrentInfo() {
    var info = findConversation(state.current);
    if (info) { showChat(Object.assign({}, state.currentInfo || {}, info)); }
  }

  function showChat(info) {
    state.currentInfo = info;
    $("chat-placeholder").hidden = !!info;
    $("chat-body").hidden = !info;
    if (!info) { clear($("chat-transcript")); return; }
    $("chat-title").textContent = label(CHANNELS, info.channel) + "客户 " +
      (info.account_masked || info.account || "（未绑定户号）");
    var facts = $("chat-facts");
    clear(facts);
    [["状态", label(STATES, info.state)], ["队列", queueLabel(info.queue)],
     ["客户类型", label(CUSTOMER_TYPES, info.customer_type)], ["转人工原因", label(REASONS, info.reason)],
     ["坐席", info.agent || "—"]].forEach(function (pair) {
      facts.appendChild(el("dt", null, pair[0]));
      facts.appendChild(el("dd", null, pair[1]));
    });
    var mineActive = info.state === "active" && state.user && info.agent === state.user.name;
    $("claim").hidden = info.state !== "waiting";
    $("transfer-open").hidden = !(info.state === "waiting" || mineActive);
    $("close").hidden = !mineActive;
    $("composer").hidden = !mineActive;
    var items = $("open-items");
    clear(items);
    (info.open_tickets || []).forEach(function (t) {
      items.appendChild(el("li", null, "工单 " + (t.ticket_id || "") + " " + label(TICKET_KINDS, t.kind) +
        (t.category ? "·" + t.category : "") + "（" + label(ITEM_STATES, t.status) + "）" +
        (t.promised_by ? " 承诺时限 " + t.promised_by : "")));
    });
    (info.open_applications || []).forEach(function (a) {
      items.appendChild(el("li", null, "申请 " + (a.application_number || "") + " " + (a.business_type || "") +
        "（" + label(ITEM_STATES, a.status) + (a.current_stage ? "，" + a.current_stage : "") + "）"));
    });
    if (!items.firstChild) { items.appendChild(el("li", "muted", "无")); }
    if ((info.unavailable || []).length) { items.appendChild(el("li", "muted", "部分信息暂时无法查询")); }
    showHistory(info.assistant_messages || []);
  }

  /** The conversation with the assistant before the hand-off, above the transcript. */
  function showHistory(history) {
    var box = $("chat-history");
    clear(box);
    box.hidden = history.length === 0;
    if (!history.length) { return; }
    box.appendChild(el("h3", null, "与智能客服的对话"));
    history.forEach(function (m) {
      var row = el("div", "msg " + (m.sender === "customer" ? "customer" : "bot"));
      row.appendChild(el("div", "msg-head", label(SENDERS, m.sender) + (m.at ? " · " + clockTime(Number(m.at)) : "")));
      row.appendChild(el("div", "msg-text", m.text || ""));
      box.appendChild(row);
    });
  }

  function addMessage(m) {
    if (!m) { return; }
    var key = m.id || (m.sender + "|" + m.at + "|" + m.text);
    if (state.seenMessageIds[key]) { return; }
    state.seenMessageIds[key] = true;
    var box = $("chat-transcript");
    var row = el("div", "msg " + (m.sender || "system"));
    var head = el("div", "msg-head", label(SENDERS, m.sender) + (m.agent && m.sender === "agent" ? " " + m.agent : "") +
      (m.at ? " · " + clockTime(Number(m.at)) : ""));
    row.appendChild(head);
    row.appendChild(el("div", "msg-text", m.text || ""));
    box.appendChild(row);
    $("chat-messages").scrollTop = $("chat-messages").scrollHeight;
  }

  function act(action, body, done) {
    var cid = state.current;
    if (!cid) { return; }
    request("POST", conversationPath(cid, action), body).then(function (data) {
      if (done) { done(data); }
      refreshLists();
      if (state.current === cid) {
        request("GET", conversationPath(cid)).then(function (fresh) {
          if (state.current === cid) { showChat(fresh.conversation || fresh); }
        }).catch(failed);
      }
    }).catch(failed);
  }

  $("claim").addEventListener("click", function () {
    act("claim", undefined, function () { notice("已接入会话", "ok"); });
  });

  // Closing takes two clicks (no window.confirm: a modal dialog blocks the live updates).
  var closeArmed = null;
  function disarmClose() {
    if (closeArmed) { window.clearTimeout(closeArmed); closeArmed = null; }
    $("close").textContent = "结束会话";
  }
  $("close").addEventListener("click", function () {
    if (!closeArmed) {
      $("close").textContent = "确认结束？";
      closeArmed = window.setTimeout(disarmClose, 5000);
      return;
    }
    disarmClose();
    act("close", undefined, function () { notice("会话已结束，已邀请客户评价", "ok"); });
  });

  $("transfer-open").addEventListener("click", function () { $("transfer-form").hidden = false; });
  $("transfer-cancel").addEventListener("click", function () { $("transfer-form").hidden = true; });
  $("transfer-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var queue = $("transfer-queue").value, agent = $("transfer-agent").value;
    if (!queue && !agent) { notice("请选择要转接的队列或坐席"); return; }
    var body = {};
    if (queue) { body.queue = queue; }
    if (agent) { body.agent = agent; }
    act("transfer", body, function () {
      $("transfer-form").hidden = true;
      notice("已转接", "ok");
      state.current = null;
      showChat(null);
    });
  });

  $("canned").addEventListener("change", function () {
    var value = $("canned").value;
    if (value) {
      var reply = $("reply");
      reply.value = reply.value ? reply.value + value : value;
      reply.focus();
    }
    $("canned").value = "";
  });

  $("composer").addEventListener("submit", function (event) {
    event.preventDefault();
    var reply = $("reply"), text = reply.value.trim(), cid = state.current;
    if (!text || !cid) { return; }
    $("send").disabled = true;
    request("POST", conversationPath(cid, "messages"), { text: text }).then(function (data) {
      reply.value = "";
      var delivery = (data && data.delivery) || {};
      if (data && data.ok === false) {
        notice("消息未能送达客户（" + (DELIVERY_REASONS[delivery.reason] || delivery.reason || "渠道异常") + "）");
      } else if (delivery.status === "queued") {
        notice(cid.indexOf("web:") === 0 ? "客户暂时离线，消息将在其上线后送达" : "消息已排队，稍后送达", "ok");
      }
    }).catch(failed).then(function () { $("send").disabled = false; reply.focus(); });
  });

  $("reply").addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });

  $("takeover-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var cid = $("takeover-cid").value.trim();
    if (!cid) { return; }
    request("POST", conversationPath(cid, "take_over"), {}).then(function () {
      $("takeover-cid").value = "";
      notice("已接管会话", "ok");
      refreshLists();
      openConversation(cid);
    }).catch(failed);
  });

  // ---- live channel ------------------------------------------------------------------------

  function setLive(online) {
    var status = $("live-status");
    status.textContent = online ? "实时在线" : "实时连接中…";
    status.classList.toggle("offline", !online);
  }

  function connectLive() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + LIVE_PATH);
    state.live = socket;
    socket.onopen = function () {
      state.liveRetryMs = 1000;
      setLive(true);
      refreshLists();  // whatever happened while the socket was down
    };
    socket.onmessage = function (event) {
      var data;
      try { data = JSON.parse(event.data); } catch (e) { return; }
      onLiveEvent(data);
    };
    socket.onclose = function (event) {
      setLive(false);
      if (state.live !== socket) { return; }
      state.live = null;
      if (event.code === 4401 || event.code === 1008) {
        showLogin("登录已过期，请重新登录");
        return;
      }
      // Unclear why it closed: the session may have expired (the API says so with a 401), or
      // the gateway restarts (try again, less and less often).
      function retry() {
        window.setTimeout(function () { if (state.user && !state.live) { connectLive(); } }, state.liveRetryMs);
        state.liveRetryMs = Math.min(state.liveRetryMs * 2, 15000);
      }
      request("GET", "/me").then(retry).catch(function (error) {
        if (error instanceof ApiError && error.status === 401) { failed(error); } else { retry(); }
      });
    };
  }

  // Events come in bursts (many hand-offs at once): the lists reload at most once a second.
  var refreshSoon = null, lastRefresh = 0;
  function scheduleRefresh() {
    if (refreshSoon) { return; }
    var wait = Math.max(150, lastRefresh + 1000 - Date.now());
    refreshSoon = window.setTimeout(function () {
      refreshSoon = null;
      lastRefresh = Date.now();
      refreshLists();
    }, wait);
  }

  function onLiveEvent(event) {
    var events = Array.isArray(event) ? event : (Array.isArray(event.events) ? event.events : [event]);
    events.forEach(function (e) {
      if (!e || typeof e !== "object") { return; }
      if (e.type === "message") {
        if (e.cid === state.current) {
          addMessage({ id: e.msg_id || e.id, sender: e.sender, text: e.text, at: e.at, agent: e.agent });
        } else if (e.sender === "customer" && isMine(e.cid)) {
          markUnread(e.cid);
        }
      } else if (e.type === "error") {
        notice(e.text || e.message || "操作失败");
      } else if (e.type && e.type !== "ack" && e.type !== "hello" && e.type !== "pong") {
        scheduleRefresh();  // requested, claimed, transferred, closed, rated, …
        if (!$("supervisor-view").hidden) { scheduleStats(); }
      }
    });
  }

  function isMine(cid) { return state.mine.some(function (c) { return c.cid === cid; }); }

  // Messages do not change the lists (they show the conversation with the assistant, before the
  // hand-off): a customer message to a conversation of mine not open in the pane only marks it.
  function markUnread(cid) {
    state.unread[cid] = true;
    var item = document.querySelector('#mine-list li[data-cid="' + cssEscape(cid) + '"]');
    if (item) { item.classList.add("unread"); }
  }

  var statsSoon = null;
  function scheduleStats() {
    if (statsSoon) { return; }
    statsSoon = window.setTimeout(function () { statsSoon = null; loadStats(); }, 1000);
  }

  function cssEscape(value) {
    return window.CSS && window.CSS.escape ? window.CSS.escape(value) : String(value).replace(/["\\]/g, "\\$&");
  }

  // ---- supervisor --------------------------------------------------------------------------

  var PALETTE = ["#d4380d", "#fa8c16", "#fadb14", "#73d13d", "#08979c"];  // ratings 1..5

  function loadStats() {
    var day = statsDayChosen ? $("stats-day").value : "";  // else today, whatever day it is now
    request("GET", "/stats" + (day ? "?day=" + encodeURIComponent(day) : "")).then(renderStats).catch(failed);
  }

  var statsDayChosen = false;
  $("stats-day").addEventListener("change", function () {
    statsDayChosen = !!$("stats-day").value;
    loadStats();
  });
  $("stats-form").addEventListener("submit", function (event) { event.preventDefault(); loadStats(); });

  function chart(id, config) {
    if (typeof window.Chart !== "function") { return null; }
    var existing = state.charts[id];
    if (existing) {
      existing.data = config.data;
      existing.update();
      return existing;
    }
    config.options = Object.assign({ responsive: true, maintainAspectRatio: false, animation: false },
      config.options || {});
    state.charts[id] = new window.Chart($(id), config);
    return state.charts[id];
  }

  function ratingsChart(id, ratings) {
    var names = Object.keys(ratings || {}).sort();
    var labels = names.map(function (n) {
      var r = ratings[n];
      return (id === "chart-queue-ratings" ? queueLabel(n) : n) + "（均分 " +
        (r.count ? Number(r.average).toFixed(2) : "—") + "，" + (r.count || 0) + " 条）";
    });
    var datasets = [0, 1, 2, 3, 4].map(function (i) {
      return {
        label: (i + 1) + " 分", backgroundColor: PALETTE[i],
        data: names.map(function (n) { return ((ratings[n].distribution || [])[i]) || 0; })
      };
    });
    chart(id, {
      type: "bar", data: { labels: labels, datasets: datasets },
      options: { indexAxis: "y", scales: { x: { stacked: true, beginAtZero: true, ticks: { precision: 0 } },
                                           y: { stacked: true } } }
    });
  }

  /** The store's figures as lists: queues {name: {...}} → [{queue, ...}], per_hour, and each
   * ratings distribution {"1": n, ...} → [n1..n5]. */
  function normalised(stats) {
    var queues = stats.queues || [];
    if (!Array.isArray(queues)) {
      queues = Object.keys(queues).sort().map(function (name) {
        return Object.assign({ queue: name }, queues[name]);
      });
    }
    queues.forEach(function (q) {
      if (q.longest_wait_seconds === undefined) { q.longest_wait_seconds = q.oldest_wait_seconds || 0; }
    });
    var ratings = stats.ratings || {};
    ["agents", "queues"].forEach(function (group) {
      var entries = ratings[group] || {};
      Object.keys(entries).forEach(function (name) {
        var d = entries[name].distribution || [];
        if (!Array.isArray(d)) { entries[name].distribution = [1, 2, 3, 4, 5].map(function (s) { return d[s] || 0; }); }
      });
    });
    return { queues: queues, hourly: stats.per_hour || stats.handoffs_per_hour || [], ratings: ratings,
             containment: stats.containment || {} };
  }

  function renderStats(raw) {
    var stats = normalised(raw);
    var queues = stats.queues;
    var waiting = queues.reduce(function (sum, q) { return sum + (q.waiting || 0); }, 0);
    var longest = queues.reduce(function (m, q) { return Math.max(m, q.longest_wait_seconds || 0); }, 0);
    var hourly = stats.hourly;
    var containment = stats.containment;
    $("fig-waiting").textContent = String(waiting);
    $("fig-longest").textContent = duration(longest);
    $("fig-handoffs").textContent = String(hourly.reduce(function (a, b) { return a + b; }, 0));
    $("fig-containment").textContent = typeof containment.rate === "number"
      ? (containment.rate * 100).toFixed(1) + "%" : "—";

    chart("chart-queues", {
      type: "bar",
      data: {
        labels: queues.map(function (q) { return queueLabel(q.queue); }),
        datasets: [
          { label: "排队人数", backgroundColor: "#00857e", yAxisID: "y",
            data: queues.map(function (q) { return q.waiting || 0; }) },
          { label: "最长等待（秒）", backgroundColor: "#fa8c16", yAxisID: "y1",
            data: queues.map(function (q) { return Math.round(q.longest_wait_seconds || 0); }) },
          { label: "平均等待（秒）", backgroundColor: "#ffd591", yAxisID: "y1",
            data: queues.map(function (q) { return Math.round(q.average_wait_seconds || 0); }) }
        ]
      },
      options: { scales: { y: { beginAtZero: true, position: "left", ticks: { precision: 0 } },
                           y1: { beginAtZero: true, position: "right", grid: { drawOnChartArea: false } } } }
    });
    chart("chart-hourly", {
      type: "bar",
      data: {
        labels: hourly.map(function (_, h) { return h + "时"; }),
        datasets: [{ label: "转人工会话", backgroundColor: "#1677ff", data: hourly }]
      },
      options: { scales: { y: { beginAtZero: true, ticks: { precision: 0 } } } }
    });
    var ratings = stats.ratings;
    ratingsChart("chart-agents", ratings.agents || {});
    ratingsChart("chart-queue-ratings", ratings.queues || {});
    var handed = containment.handed_off || 0, total = containment.conversations || 0;
    chart("chart-containment", {
      type: "doughnut",
      data: {
        labels: ["机器人独立解决", "转人工"],
        datasets: [{ data: [Math.max(0, total - handed), handed], backgroundColor: ["#08979c", "#fa8c16"] }]
      }
    });
    if (raw.day && !statsDayChosen) { $("stats-day").value = raw.day; }
    $("stats-updated").textContent = (raw.day ? raw.day + " 的数据，" : "") + "更新于 " + new Date().toLocaleTimeString("zh-CN", { hour12: false });
  }

  // ---- boot --------------------------------------------------------------------------------

  request("GET", "/me").then(function (data) {
    adoptSession(data);
    start();
  }).catch(function (error) {
    showLogin(error instanceof ApiError && error.status === 401 ? "" : "无法连接服务器，请稍后重试");
  });
}());
