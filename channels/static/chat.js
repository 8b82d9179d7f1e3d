/* PowerDesk web chat: Rasa's socket.io protocol (session_request / user_uttered / bot_uttered).
 * Every customer and bot text is inserted with textContent, never as HTML. */
(function () {
  "use strict";

  var SESSION_KEY = "powerdesk.webchat.session_id";
  var messages = document.getElementById("messages");
  var form = document.getElementById("composer");
  var input = document.getElementById("input");
  var statusEl = document.getElementById("status");
  var typing = null;
  var pending = 0;

  function storedSessionId() {
    try { return window.localStorage.getItem(SESSION_KEY); } catch (e) { return null; }
  }

  function storeSessionId(id) {
    try { window.localStorage.setItem(SESSION_KEY, id); } catch (e) { /* private mode: per page */ }
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

  function send(message, shown) {
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
}());
