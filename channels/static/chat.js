/* PowerDesk web chat: Rasa's socket.io protocol (session_request / user_uttered / bot_uttered).
 * Every customer and bot text is inserted with textContent, never as HTML.
 *
 * The session id is a bearer secret (it owns the conversation and its bound 户号), kept in
 * localStorage so a reload continues the conversation. On a shared or kiosk browser that must
 * not last: the id is forgotten after IDLE_LIMIT_MS without a message from the customer (the
 * default of the server's idle expiry of web bindings, WEB_BINDING_IDLE_DAYS), and 「结束会话」
 * forgets it at once. */
(function () {
  "use strict";

  var SESSION_KEY = "powerdesk.webchat.session_id";
  var ACTIVE_KEY = "powerdesk.webchat.last_active";  // ms since the epoch, of the last message sent
  var IDLE_LIMIT_MS = 30 * 24 * 60 * 60 * 1000;
  // The unbind request as the assistant's intent payload (no guessing by the language model).
  var UNBIND_PAYLOAD = '/bind_account{"binding_option":"unbind"}';
  var UNBIND_TEXT = "解绑户号";
  var messages = document.getElementById("messages");
  var form = document.getElementById("composer");
  var input = document.getElementById("input");
  var statusEl = document.getElementById("status");
  var typing = null;
  var pending = 0;

  function idleTooLong() {
    try {
      var last = Number(window.localStorage.getItem(ACTIVE_KEY));
      return !(last > 0 && Date.now() - last < IDLE_LIMIT_MS);
    } catch (e) { return false; }
  }

  function storedSessionId() {
    try {
      var id = window.localStorage.getItem(SESSION_KEY);
      if (id && !idleTooLong()) { return id; }
      forgetSessionId();  // idle too long, or stored before the idle limit existed
    } catch (e) { /* private mode: per page */ }
    return null;
  }

  function markActive() {
    try { window.localStorage.setItem(ACTIVE_KEY, String(Date.now())); } catch (e) { /* per page */ }
  }

  function storeSessionId(id) {
    try {
      if (window.localStorage.getItem(SESSION_KEY) !== id) { markActive(); }
      window.localStorage.setItem(SESSION_KEY, id);
    } catch (e) { /* private mode: per page */ }
  }

  function forgetSessionId() {
    try {
      window.localStorage.removeItem(SESSION_KEY);
      window.localStorage.removeItem(ACTIVE_KEY);
    } catch (e) { /* private mode: per page */ }
  }

  var sessionId = storedSessionId();

  function scrollDown() { messages.scrollTop = messages.scrollHeight; }

  function setStatus(text, offline) {
    statusEl.textContent = text;
    statusEl.classList.toggle("offline", !!offline);
  }

  function bubble(kind, text) {
    var div = document.createElement("div");
    div.className = "msg " + kind;
    div.textContent = text;
    messages.insertBefore(div, typing);
    scrollDown();
    return div;
  }

  function showTyping(on) {
    if (on && !typing) {
      typing = document.createElement("div");
      typing.className = "typing";
      typing.textContent = "客服正在输入…";
      messages.appendChild(typing);
    } else if (!on && typing) {
      typing.remove();
      typing = null;
    }
    scrollDown();
  }

  function quickReplies(replies) {
    var box = document.createElement("div");
    box.className = "quick-replies";
    replies.forEach(function (reply) {
      var button = document.createElement("button");
      button.type = "button";
      button.textContent = String(reply.title || "");
      button.addEventListener("click", function () {
        Array.prototype.forEach.call(box.querySelectorAll("button"), function (b) { b.disabled = true; });
        send(String(reply.payload || reply.title || ""), String(reply.title || ""));
      });
      box.appendChild(button);
    });
    messages.insertBefore(box, typing);
    scrollDown();
  }

  function image(src) {
    if (!/^https?:\/\//i.test(src)) { return; }
    var div = document.createElement("div");
    div.className = "msg bot";
    var img = document.createElement("img");
    img.src = src;
    img.alt = "图片";
    div.appendChild(img);
    messages.insertBefore(div, typing);
    scrollDown();
  }

  var socket = io({ path: "/socket.io", reconnectionDelayMax: 5000 });

  socket.on("connect", function () {
    socket.emit("session_request", { session_id: sessionId });
  });

  // Online only once the gateway has confirmed the session: before that the page has no
  // conversation id yet (first visit), and a reload then would start another conversation.
  socket.on("session_confirm", function (data) {
    var id = data && typeof data === "object" ? data.session_id : data;
    if (typeof id === "string" && id) {
      sessionId = id;
      storeSessionId(id);
    }
    setStatus("在线");
  });

  socket.on("disconnect", function () {
    setStatus("连接已断开，正在重新连接…", true);
  });

  socket.io.on("reconnect_failed", function () {
    setStatus("无法连接客服，请刷新页面或拨打95598", true);
  });

  socket.on("bot_uttered", function (msg) {
    if (!msg || typeof msg !== "object") { return; }
    if (pending > 0) { pending -= 1; }
    if (typeof msg.text === "string" && msg.text) { bubble("bot", msg.text); }
    if (Array.isArray(msg.quick_replies) && msg.quick_replies.length) { quickReplies(msg.quick_replies); }
    if (msg.attachment && msg.attachment.type === "image" && msg.attachment.payload) {
      image(String(msg.attachment.payload.src || ""));
    }
    showTyping(false);
  });

  // A fresh conversation: the stored id is forgotten, the transcript cleared, and the gateway
  // issues a new session id (the socket leaves the old session's room).
  function endSession(note) {
    forgetSessionId();
    sessionId = null;
    pending = 0;
    showTyping(false);
    Array.prototype.forEach.call(messages.querySelectorAll(":scope > :not(.intro):not(.intro-replies)"),
      function (el) { el.remove(); });
    bubble("system", note);
    setStatus("正在开始新会话…");
    socket.emit("session_request", { session_id: null });
  }

  function send(message, shown) {
    markActive();
    bubble("user", shown);
    pending += 1;
    showTyping(true);
    // socket.io buffers this while disconnected and sends it after reconnecting; the session id
    // travels with it so the gateway keeps the conversation even before session_request.
    socket.emit("user_uttered", { message: message, session_id: sessionId });
  }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var text = input.value;
    input.value = "";
    send(text, text);
    input.focus();
  });

  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });

  Array.prototype.forEach.call(document.querySelectorAll(".intro-replies button"), function (b) {
    b.addEventListener("click", function () { send(b.getAttribute("data-text"), b.textContent); });
  });

  document.getElementById("unbind").addEventListener("click", function () {
    send(UNBIND_PAYLOAD, UNBIND_TEXT);
  });

  document.getElementById("end-session").addEventListener("click", function () {
    endSession("会话已结束，本页的对话记录已清除。");
  });

  // A page left open (a kiosk) ends its conversation once idle too long, too.
  window.setInterval(function () {
    if (sessionId && idleTooLong()) { endSession("会话因长时间未使用已结束。"); }
  }, 60 * 1000);
}());
