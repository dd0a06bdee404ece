// keystile console: the only script. It refreshes the overview's live
// figures by fetching a server-rendered fragment (same origin, with the
// session cookie); nothing else needs JavaScript.
(function () {
  "use strict";
  var live = document.querySelector("[data-live]");
  if (!live) { return; }
  var url = live.getAttribute("data-live");
  var every = parseInt(live.getAttribute("data-every"), 10) || 2000;
  var busy = false;
  function tick() {
    if (busy || document.hidden) { return; }
    busy = true;
    fetch(url, { credentials: "same-origin", cache: "no-store", headers: { "Keystile-Live": "1" } })
      .then(function (r) {
        if (r.status === 401) { window.location.assign("/login"); return null; }
        if (!r.ok) { return null; }
        return r.text();
      })
      .then(function (html) { if (html !== null && html !== undefined) { live.innerHTML = html; } })
      .catch(function () { /* keep the last figures; try again on the next tick */ })
      .then(function () { busy = false; });
  }
  window.setInterval(tick, every);
})();
