// The chat widget: post messages and files, keep the signed conversation token, and hear
// of replies from an event stream (polling every few seconds stays as the fallback).
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
  var source = null;
  try { token = window.localStorage.getItem(storeKey); } catch (e) { token = null; }

  function show(direction, body, id, files) {
    var li = document.createElement("li");
    li.className = "msg msg-" + direction;
    if (id) li.dataset.id = id;
    var div = document.createElement("div");
    div.className = "body";
    div.textContent = body;  // never innerHTML: bodies are untrusted text
    li.appendChild(div);
    (files || []).forEach(function (f) {
      var a = document.createElement("a");
      a.className = "file";
      a.href = f.url + "?token=" + encodeURIComponent(token);
      a.setAttribute("download", "");
      a.textContent = f.filename;
      li.appendChild(a);
    });
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
          if (m.id > lastId) {
            lastId = m.id;
            if (!document.querySelector('[data-id="' + m.id + '"]')) show(m.direction, m.body, m.id, m.files);
          }
        });
      })
      .catch(function () { /* offline for a moment: the next poll retries */ });
  }

  function forget() {
    token = null;
    if (source) { source.close(); source = null; }
    try { window.localStorage.removeItem(storeKey); } catch (e) { /* private mode */ }
  }

  function listen() {
    // A reply arrives within a poll interval of the stream's frame; with the stream
    // open the timer only backs it up, so it runs slower.
    if (source || !window.EventSource || !chat.dataset.events) return false;
    source = new EventSource(chat.dataset.events + "?token=" + encodeURIComponent(token));
    source.addEventListener("message", poll);
    source.addEventListener("open", function () { chat.dataset.liveState = "open"; poll(); });
    return true;
  }

  function start() {
    document.getElementById("who").hidden = !!token;
    if (token && !timer) {
      poll();
      timer = window.setInterval(poll, listen() ? 15000 : 3000);
    }
  }

  function sent(res) {
    if (!res.ok) { errorBox.textContent = res.data.message || "Could not send; try again."; return; }
    token = res.data.token;
    try { window.localStorage.setItem(storeKey, token); } catch (e) { /* private mode: this tab only */ }
    form.reset();
    start();
    poll();
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    errorBox.textContent = "";
    var picked = form.elements["file"] && form.elements["file"].files.length;
    var request;
    if (picked) {
      var data = new FormData(form);
      if (token) data.append("token", token);
      request = fetch(chat.dataset.files, {method: "POST", headers: {"Accept": "application/json"}, body: data});
    } else {
      if (!form.elements["body"].value.trim()) { errorBox.textContent = "Type a message or attach a file."; return; }
      var payload = {body: form.elements["body"].value};
      if (token) { payload.token = token; } else {
        if (form.elements["name"].value.trim()) payload.name = form.elements["name"].value.trim();
        if (form.elements["email"].value.trim()) payload.email = form.elements["email"].value.trim();
      }
      request = fetch(endpoint, {method: "POST", headers: {"Content-Type": "application/json", "Accept": "application/json"},
                                 body: JSON.stringify(payload)});
    }
    request
      .then(function (r) { return r.json().then(function (data) { return {ok: r.ok, data: data}; }); })
      .then(sent)
      .catch(function () { errorBox.textContent = "No connection; try again."; });
  });
  start();
})();
