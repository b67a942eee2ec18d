// Keyboard shortcuts for the inbox and the conversation page; every action also has a
// visible control. Keys never fire while typing in a field (Esc leaves the field first),
// nor with Ctrl/Alt/Meta, so browser and screen-reader shortcuts keep working.
//   inbox:        j / k  next / previous row (Enter opens it),  /  search
//   conversation: r  reply box,  n  next conversation,  e  resolve
(function () {
  "use strict";

  function typing(el) {
    if (!el || !el.tagName) return false;
    var tag = el.tagName.toLowerCase();
    return tag === "input" || tag === "textarea" || tag === "select" || el.isContentEditable;
  }

  function moveRow(step) {
    var links = Array.prototype.slice.call(document.querySelectorAll("[data-row] [data-open]"));
    if (!links.length) return;
    var at = links.indexOf(document.activeElement);
    var next = at < 0 ? (step > 0 ? 0 : links.length - 1) : Math.min(links.length - 1, Math.max(0, at + step));
    links.forEach(function (a) { a.closest("[data-row]").classList.remove("ibx-current"); });
    links[next].focus();
    links[next].closest("[data-row]").classList.add("ibx-current");
  }

  var actions = {
    "j": function () { moveRow(1); return true; },
    "k": function () { moveRow(-1); return true; },
    "/": function () {
      var box = document.getElementById("inbox-search");
      if (!box) return false;
      box.focus();
      box.select();
      return true;
    },
    "r": function () {
      var box = document.getElementById("reply-body");
      if (!box) return false;
      box.focus();
      return true;
    },
    "n": function () {
      var link = document.getElementById("next-conversation");
      if (!link) return false;
      window.location.assign(link.href);
      return true;
    },
    "e": function () {
      var form = document.getElementById("resolve-form");
      if (!form) return false;
      if (form.requestSubmit) form.requestSubmit(); else form.submit();
      return true;
    }
  };

  document.addEventListener("keydown", function (ev) {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey) return;
    if (typing(ev.target)) {
      // Esc hands the keyboard back to the page (the text typed stays).
      if (ev.key === "Escape" && ev.target.tagName.toLowerCase() !== "select") ev.target.blur();
      return;
    }
    var action = actions[ev.key];
    if (action && action()) ev.preventDefault();
  });
})();
