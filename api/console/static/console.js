// careflow console: deadline countdowns and the self-refreshing flow list. No libraries.
(function () {
  "use strict";

  function humanize(ms) {
    var late = ms < 0, s = Math.floor(Math.abs(ms) / 1000);
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    var text = d > 0 ? d + "d " + h + "h " + m + "m" : h > 0 ? h + "h " + m + "m " + sec + "s" : m + "m " + sec + "s";
    return late ? "overdue by " + text : "in " + text;
  }

  function tick() {
    var now = Date.now();
    document.querySelectorAll("time.countdown").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (isNaN(at)) return;
      if (!el.dataset.label) el.dataset.label = el.textContent;
      var left = at - now;
      el.textContent = el.classList.contains("bare") ? humanize(left) : el.dataset.label + " (" + humanize(left) + ")";
      el.classList.toggle("late", left < 0);
      el.classList.toggle("soon", left >= 0 && left < 86400000);
    });
    document.querySelectorAll("time.since").forEach(function (el) {
      var at = Date.parse(el.getAttribute("datetime"));
      if (!isNaN(at)) el.textContent = humanize(at - now).replace("overdue by ", "") + " ago";
    });
  }

  function refreshTable() {
    var box = document.getElementById("flow-table");
    if (!box || !box.dataset.refresh || document.hidden) return;
    fetch(box.dataset.refresh, { headers: { "X-Console-Fragment": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (r.status === 401) { window.location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html !== null && html !== undefined) { box.innerHTML = html; tick(); }
      })
      .catch(function () { /* offline for a moment: try again at the next tick */ });
  }

  // Filters apply as soon as one is changed.
  var filters = document.getElementById("filters");
  if (filters) {
    filters.querySelectorAll("select").forEach(function (sel) {
      sel.addEventListener("change", function () { filters.submit(); });
    });
  }

  tick();
  setInterval(tick, 1000);
  setInterval(refreshTable, 10000);
})();
