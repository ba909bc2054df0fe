// A text run's page, live: on every finished epoch the server-rendered curves, table and sample
// lines are fetched again (the page itself) and swapped in; when the run ends the page reloads.
(function () {
  "use strict";
  var root = document.getElementById("text-run");
  if (!root || !window.EventSource || !root.dataset.eventsUrl) { return; }
  var ended = ["finished", "failed", "cancelled", "deleted"];
  if (ended.indexOf(root.dataset.status) >= 0) { return; }
  var epochs = document.querySelectorAll("#history-table tbody tr").length;

  function refresh() {
    fetch(root.dataset.runUrl, { headers: { "Accept": "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("text-live");
        var now = document.getElementById("text-live");
        if (fresh && now) { now.replaceWith(fresh); }
      });
  }

  var source = new EventSource(root.dataset.eventsUrl);
  source.addEventListener("progress", function (ev) {
    var p = JSON.parse(ev.data);
    var el = document.getElementById("epoch-now");
    if (el && p.epoch != null) { el.textContent = p.epoch; }
    var b = document.getElementById("batch-text");
    if (b && p.batches) { b.textContent = (p.batch || 0) + " / " + p.batches; }
    var eta = document.getElementById("eta");  // time left, as the image run page shows it
    if (eta && window.labDuration) { eta.textContent = window.labDuration(root, p.eta); }
  });
  source.addEventListener("epoch", function (ev) {
    var e = JSON.parse(ev.data);
    if (e.epoch > epochs) { epochs = e.epoch; refresh(); }
  });
  source.addEventListener("status", function (ev) {
    var s = JSON.parse(ev.data);
    if (s.status !== root.dataset.status && (ended.indexOf(s.status) >= 0 || s.status === "running")) {
      source.close();
      window.location.replace(root.dataset.runUrl);
    }
  });
})();
