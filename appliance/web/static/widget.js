// The chat widget: post messages, keep the signed conversation token, poll for replies.
(function () {
  "use strict";
  var chat = document.getElementById("chat");
  if (!chat) return;
  var endpoint = chat.dataset.endpoint;
  var storeKey = "appliance-widget-" + chat.dataset.key;
  var list = document.getElementById("messages");
  var form = document.getElementById("widget-form");
  var errorBox = document.getElementById("widget-error");
  var lastId = 0;
  var token = null;
  var timer = null;
  try { token = window.localStorage.getItem(storeKey); } catch (e) { token = null; }

  function show(direction, body, id) {
    var li = document.createElement("li");
    li.className = "msg msg-" + direction;
    if (id) li.dataset.id = id;
    var div = document.createElement("div");
    div.className = "body";
    div.textContent = body;  // never innerHTML: bodies are untrusted text
    li.appendChild(div);
    list.appendChild(li);
    list.scrollTop = list.scrollHeight;
  }

  function poll() {
    if (!token) return;
    fetch(endpoint + "?token=" + encodeURIComponent(token) + "&after=" + lastId, {headers: {"Accept": "application/json"}})
      .then(function (r) {
        if (r.status === 403 || r.status === 404) { forget(); return null; }
        return r.ok ? r.json() : null;
      })
      .then(function (data) {
        if (!data) return;
        data.items.forEach(function (m) {
          if (m.id > lastId) { lastId = m.id; if (!document.querySelector('[data-id="' + m.id + '"]')) show(m.direction, m.body, m.id); }
        });
      })
      .catch(function () { /* offline for a moment: the next poll retries */ });
  }

  function forget() {
    token = null;
    try { window.localStorage.removeItem(storeKey); } catch (e) { /* private mode */ }
  }

  function start() {
    document.getElementById("who").hidden = !!token;
    if (token && !timer) { poll(); timer = window.setInterval(poll, 3000); }
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    errorBox.textContent = "";
    var payload = {body: form.elements["body"].value};
    if (token) { payload.token = token; } else {
      if (form.elements["name"].value.trim()) payload.name = form.elements["name"].value.trim();
      if (form.elements["email"].value.trim()) payload.email = form.elements["email"].value.trim();
    }
    fetch(endpoint, {method: "POST", headers: {"Content-Type": "application/json", "Accept": "application/json"},
                     body: JSON.stringify(payload)})
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); })
      .then(function (res) {
        if (!res.ok) { errorBox.textContent = res.data.message || "Could not send; try again."; return; }
        token = res.data.token;
        try { window.localStorage.setItem(storeKey, token); } catch (e) { /* private mode: this tab only */ }
        form.elements["body"].value = "";
        start();
        poll();
      })
      .catch(function () { errorBox.textContent = "No connection; try again."; });
  });
  start();
})();
