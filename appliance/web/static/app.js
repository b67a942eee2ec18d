// Small progressive enhancements; every page works without them.
(function () {
  "use strict";
  document.documentElement.classList.add("js");
  // Selects and checkboxes that submit their form on change (filters, org switcher).
  document.addEventListener("change", function (ev) {
    var el = ev.target;
    if (el.hasAttribute && el.hasAttribute("data-autosubmit") && el.form) el.form.submit();
    // Canned answers: fill the reply box, keeping what was typed.
    if (el.dataset && el.dataset.fill && el.value) {
      var box = document.getElementById(el.dataset.fill);
      if (box) {
        var start = box.selectionStart || box.value.length, end = box.selectionEnd || box.value.length;
        box.value = box.value.slice(0, start) + el.value + box.value.slice(end);
        box.focus();
        box.selectionStart = box.selectionEnd = start + el.value.length;
      }
      el.value = "";
    }
  });
  // Destructive buttons ask first.
  document.addEventListener("submit", function (ev) {
    var msg = ev.target.getAttribute && ev.target.getAttribute("data-confirm");
    if (msg && !window.confirm(msg)) ev.preventDefault();
  });
  // A table wider than a phone scrolls inside its box; keyboard users reach it by Tab then arrows.
  function keyboardScroll() {
    document.querySelectorAll(".table-scroll, table.list, pre").forEach(function (el) {
      var style = window.getComputedStyle(el);
      var scrolls = /auto|scroll/.test(style.overflowX) && el.scrollWidth > el.clientWidth + 1;
      if (scrolls && !el.hasAttribute("tabindex")) el.setAttribute("tabindex", "0");
      else if (!scrolls && el.getAttribute("tabindex") === "0") el.removeAttribute("tabindex");
    });
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", keyboardScroll);
  else keyboardScroll();
  window.addEventListener("resize", keyboardScroll);
})();
// Live updates: a page with data-live-stream listens to its Server-Sent Events stream and,
// on a change, reloads its own URL and swaps in the [data-live] parts (the reply box and
// anything being typed stay untouched). Without EventSource the page simply stays as it is.
(function () {
  "use strict";
  var host = document.querySelector("[data-live-stream]");
  if (!host || !window.EventSource || !window.fetch || !window.DOMParser) return;
  var pending = null, lastInput = Date.now();

  function refresh() {
    pending = null;
    fetch(window.location.href, {headers: {"Accept": "text/html"}, credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var fresh = new DOMParser().parseFromString(html, "text/html");
        // Follow the thread only when the agent was reading its end, not scrolled back.
        var atBottom = window.innerHeight + window.scrollY >= document.body.scrollHeight - 80;
        document.querySelectorAll("[data-live]").forEach(function (el) {
          var twin = fresh.querySelector('[data-live="' + el.dataset.live + '"]');
          if (!twin) return;
          el.innerHTML = twin.innerHTML;  // server-rendered, escaped markup of our own origin
          if (el.dataset.live === "thread" && atBottom) window.scrollTo(0, document.body.scrollHeight);
        });
      })
      .catch(function () { /* offline for a moment: the next event refreshes */ });
  }

  function changed() { if (!pending) pending = window.setTimeout(refresh, 100); }

  var source = new EventSource(host.dataset.liveStream);
  ["message", "status", "assignment", "delivery"].forEach(function (kind) { source.addEventListener(kind, changed); });
  source.addEventListener("open", function () { host.dataset.liveState = "open"; });
  source.addEventListener("error", function () { host.dataset.liveState = "reconnecting"; });

  // Presence: the stream says the page is open; this says someone is at it.
  ["keydown", "mousedown", "mousemove", "scroll", "touchstart"].forEach(function (type) {
    document.addEventListener(type, function () { lastInput = Date.now(); }, {passive: true});
  });
  var csrf = document.querySelector('input[name="csrf_token"]');
  if (host.dataset.presence && csrf) {
    window.setInterval(function () {
      if (Date.now() - lastInput > 60000) return;
      fetch(host.dataset.presence, {method: "POST", credentials: "same-origin",
                                    headers: {"X-CSRFToken": csrf.value, "Accept": "application/json"}})
        .catch(function () { /* the next beat retries */ });
    }, 30000);
  }
})();
