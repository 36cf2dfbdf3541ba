// The chat room page: messages arrive over the WebSocket, the form posts with
// fetch to a plain sync view, the activity feed is an EventSource (SSE).
(() => {
  "use strict";

  const page = document.querySelector("main.room");
  if (!page) return;

  const messages = document.getElementById("messages");
  const empty = document.getElementById("empty");
  const feed = document.getElementById("activity");
  const form = document.getElementById("message-form");
  const author = document.getElementById("author");
  const text = document.getElementById("text");
  const formError = document.getElementById("form-error");
  const template = document.getElementById("message-template");
  const shown = new Set(); // uids of the messages on the page: history and live never repeat
  const announced = new Set(); // uids of the joins and leaves in the feed: socket or SSE, once
  const FEED_LIMIT = 100;

  // -- small helpers -----------------------------------------------------------

  function hue(name) {
    let h = 0;
    for (const ch of name) h = (h * 31 + ch.codePointAt(0)) % 360;
    return h;
  }

  function paintAvatar(el) {
    el.style.setProperty("--hue", hue(el.dataset.name || "?"));
  }

  function clock(iso, seconds) {
    const date = new Date(iso);
    if (Number.isNaN(date.getTime())) return "";
    const options = { hour: "2-digit", minute: "2-digit", hourCycle: "h23" };
    if (seconds) options.second = "2-digit";
    return date.toLocaleTimeString([], options);
  }

  function setStatus(id, state) {
    document.getElementById(id).dataset.state = state;
  }

  function atBottom() {
    return messages.scrollHeight - messages.scrollTop - messages.clientHeight < 40;
  }

  // -- chat log ----------------------------------------------------------------

  function addMessage(message, source) {
    if (!message.uid || shown.has(message.uid)) return;
    shown.add(message.uid);
    const stick = atBottom();
    const item = template.content.firstElementChild.cloneNode(true);
    item.dataset.uid = message.uid;
    item.dataset.source = source;
    const avatar = item.querySelector(".avatar");
    avatar.dataset.name = message.author;
    avatar.textContent = (message.author || "?").slice(0, 1).toUpperCase();
    paintAvatar(avatar);
    item.querySelector(".author").textContent = message.author;
    const time = item.querySelector("time");
    time.dateTime = message.sent_at;
    time.textContent = clock(message.sent_at);
    item.querySelector(".via").textContent = `via ${message.via}`;
    item.querySelector(".text").textContent = message.text;
    messages.append(item);
    empty.hidden = true;
    if (stick || source === "socket") messages.scrollTop = messages.scrollHeight;
  }

  for (const item of messages.querySelectorAll(".message")) {
    shown.add(item.dataset.uid);
    paintAvatar(item.querySelector(".avatar"));
    const time = item.querySelector("time");
    time.textContent = clock(time.dateTime) || time.textContent;
  }
  messages.scrollTop = messages.scrollHeight;

  // -- the WebSocket (Channels consumer in group chat.<room>) ------------------

  // The consumer announces a join under the name in the URL; with no name yet the
  // page only listens, and choosing a name reconnects so that the room sees who joined.
  let retry = 0;
  let socket = null;
  let socketName = "";
  function connectSocket() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    socketName = author.value.trim();
    const name = encodeURIComponent(socketName);
    socket = new WebSocket(`${scheme}://${location.host}${page.dataset.socketPath}?name=${name}`);
    setStatus("socket-status", "connecting");
    socket.addEventListener("open", () => {
      retry = 0;
      setStatus("socket-status", "open");
    });
    socket.addEventListener("message", (event) => {
      const data = JSON.parse(event.data);
      if (data.type === "chat.message") addMessage(data, "socket");
      // Your own join reaches your socket even before your feed is subscribed.
      if (data.type === "chat.presence") addActivity(data, "", "socket");
    });
    socket.addEventListener("close", (event) => {
      if (event.target !== socket) return; // replaced after a change of name
      setStatus("socket-status", "closed");
      const delay = Math.min(500 * 2 ** retry++, 10000);
      setTimeout(connectSocket, delay);
    });
  }

  function rename() {
    const name = author.value.trim();
    localStorage.setItem("chat.author", name);
    if (name === socketName || !socket) return;
    const old = socket;
    connectSocket();
    old.close();
  }

  // -- the activity feed (EventSource on the SSE view) -------------------------

  function describe(data) {
    const line = document.createElement("span");
    line.className = "what";
    const who = document.createElement("b");
    who.textContent = data.author || "someone";
    line.append(who);
    if (data.type === "chat.message") {
      const quote = document.createElement("q");
      quote.textContent = data.text.length > 80 ? `${data.text.slice(0, 79)}…` : data.text;
      quote.title = data.text;
      line.append(" posted ", quote);
    } else if (data.type === "chat.presence") {
      line.append(` ${data.action} the room`);
    } else if (data.type === "reset") {
      line.append(" could not resume; some events were missed");
    } else {
      line.append(" sent an event");
    }
    return line;
  }

  function addActivity(data, id, source) {
    if (data.type === "chat.presence" && data.uid) {
      if (announced.has(data.uid)) return;
      announced.add(data.uid);
    }
    const item = document.createElement("li");
    item.className = "feed-item";
    item.dataset.kind = (data.type || "event").replace("chat.", "");
    item.dataset.source = source;
    const time = document.createElement("time");
    time.dateTime = data.sent_at || "";
    time.textContent = clock(data.sent_at, true);
    const body = document.createElement("div");
    const meta = document.createElement("span");
    meta.className = "feed-meta";
    meta.textContent = data.via ? `via ${data.via}` : "";
    if (id) {
      const eventId = document.createElement("code");
      eventId.textContent = id;
      eventId.title = "event id: the browser resumes after it (Last-Event-ID)";
      meta.append(data.via ? " · id " : "id ", eventId);
    }
    body.append(describe(data), meta);
    item.append(time, body);
    feed.prepend(item);
    while (feed.children.length > FEED_LIMIT) feed.lastElementChild.remove();
  }

  function connectFeed() {
    const source = new EventSource(page.dataset.eventsUrl);
    source.addEventListener("open", () => setStatus("feed-status", "open"));
    source.addEventListener("error", () => {
      // The browser reconnects by itself and sends Last-Event-ID.
      setStatus("feed-status", source.readyState === EventSource.CLOSED ? "closed" : "connecting");
    });
    source.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        data = { text: event.data };
      }
      addActivity(data, event.lastEventId, "sse");
    });
    // Sent when the stream could not resume where the browser left off.
    source.addEventListener("reset", () => {
      const reset = { type: "reset", author: "The feed", sent_at: new Date().toISOString() };
      addActivity(reset, "", "sse");
    });
  }

  // -- the form: fetch POST to the sync view -----------------------------------

  author.value = localStorage.getItem("chat.author") || "";
  author.addEventListener("change", rename);

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    if (!text.value.trim()) return;
    formError.hidden = true;
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.action, { method: "POST", body: new FormData(form) });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        const errors = Object.values(body.errors || {}).flat().map((e) => e.message);
        throw new Error(errors.join(" ") || `${response.status} ${response.statusText}`);
      }
      text.value = "";
    } catch (error) {
      formError.textContent = `Not sent: ${error.message}`;
      formError.hidden = false;
    } finally {
      button.disabled = false;
      text.focus();
    }
  });

  connectSocket();
  connectFeed();
  (author.value ? text : author).focus();
})();
