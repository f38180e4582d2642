// The identity console works without this script; it only spares double submissions, reloads
// the dashboard now and then and shows each time in the browser's own zone as a tooltip.
"use strict";
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("form[method=post]").forEach(function (form) {
    form.addEventListener("submit", function () {
      form.querySelectorAll("button[type=submit]").forEach(function (b) { b.disabled = true; });
    });
  });
  // A page marked data-refresh="N" (the dashboard) reloads every N seconds while it is shown
  // and no field has the focus.
  var live = document.querySelector("[data-refresh]");
  if (live) {
    var every = Math.max(5, parseInt(live.getAttribute("data-refresh"), 10) || 30) * 1000;
    setInterval(function () {
      var busy = document.activeElement && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
      if (document.visibilityState === "visible" && !busy) { location.reload(); }
    }, every);
  }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var at = new Date(t.getAttribute("datetime"));
    if (!isNaN(at.getTime())) { t.title = at.toLocaleString(); }
  });
});
