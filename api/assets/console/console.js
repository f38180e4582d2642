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
  // and no field has the focus, and only until no one has touched it (key, pointer, scroll)
  // for data-refresh-until-idle seconds: the console's idle expiry, which reloads would
  // otherwise defeat. The last touch outlives our own reloads in sessionStorage.
  var live = document.querySelector("[data-refresh]");
  if (live) {
    var every = Math.max(5, parseInt(live.getAttribute("data-refresh"), 10) || 30) * 1000;
    var idle = (parseInt(live.getAttribute("data-refresh-until-idle"), 10) || 0) * 1000;
    var store = null;
    try { store = window.sessionStorage; } catch (e) { store = null; }
    var touched = Date.now();
    if (store && store.getItem("console-reloaded") === "1") {
      touched = parseInt(store.getItem("console-touched"), 10) || 0;
    }
    var touch = function () {
      touched = Date.now();
      if (store) { store.setItem("console-touched", String(touched)); }
    };
    if (store) {
      store.removeItem("console-reloaded");
      store.setItem("console-touched", String(touched));
    }
    ["keydown", "pointerdown", "scroll"].forEach(function (kind) {
      window.addEventListener(kind, touch, { passive: true, capture: true });
    });
    var timer = setInterval(function () {
      if (Date.now() - touched >= idle) { clearInterval(timer); return; }
      var busy = document.activeElement && /^(INPUT|SELECT|TEXTAREA)$/.test(document.activeElement.tagName);
      if (document.visibilityState === "visible" && !busy) {
        if (store) { store.setItem("console-reloaded", "1"); }
        location.reload();
      }
    }, every);
  }
  document.querySelectorAll("time[datetime]").forEach(function (t) {
    var at = new Date(t.getAttribute("datetime"));
    if (!isNaN(at.getTime())) { t.title = at.toLocaleString(); }
  });
});
