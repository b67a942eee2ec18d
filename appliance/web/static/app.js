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
})();
