// Lab bench: the live estimate on /lab and the text benches, and a run's live page (server-sent events: progress bar,
// curves redrawn as training points arrive every few batches and as each epoch ends, elapsed time
// and ETA). Without JavaScript the same pages work with a "Check" submit and a periodic reload.
(function () {
  "use strict";

  // ------------------------------------------------------------------ the bench's live estimate
  var form = document.querySelector("form[data-estimate-url]");  // the image bench's or a text bench's
  var box = document.getElementById("estimate");
  // getAttribute: the form's field named "dataset" shadows the form's dataset property
  var estimateUrl = form && form.getAttribute("data-estimate-url");
  if (form && box && estimateUrl && window.fetch) {
    var timer = null;
    var seq = 0;
    var show = function (html, isError) {
      box.classList.toggle("bad", !!isError);
      box.textContent = "";
      var p = document.createElement("p");
      p.appendChild(html);
      box.appendChild(p);
    };
    var estimate = function () {
      var data = new FormData(form);
      var params = new URLSearchParams();
      data.forEach(function (value, key) {
        if (key !== "csrf_token" && key !== "action" && key !== "preset") { params.append(key, value); }
      });
      var mine = ++seq;
      fetch(estimateUrl + "?" + params.toString(), { headers: { Accept: "application/json" } })
        .then(function (r) { return r.json(); })
        .then(function (body) {
          if (mine !== seq) { return; }
          var frag = document.createDocumentFragment();
          if (body.error) {
            frag.appendChild(document.createTextNode(body.error));
            show(frag, true);
            return;
          }
          var strong = function (id, text) {
            var s = document.createElement("strong");
            s.id = id;
            s.textContent = text;
            return s;
          };
          frag.appendChild(document.createTextNode(box.dataset.labelParams + ": "));
          frag.appendChild(strong("est-params", body.params_text));
          frag.appendChild(document.createTextNode(" · " + box.dataset.labelTime + ": "));
          frag.appendChild(strong("est-time", body.eta_text));
          show(frag, false);
          if (body.vocab_text) {  // a text bench: what the parameter count was counted over
            var hint = document.createElement("p");
            hint.className = "hint";
            hint.id = "est-vocab";
            hint.textContent = body.vocab_text;
            box.appendChild(hint);
          }
          (body.warnings || []).forEach(function (text) {  // the server's "may learn little" check
            var w = document.createElement("p");
            w.className = "warning";
            w.setAttribute("role", "alert");
            w.textContent = text;
            box.appendChild(w);
          });
        })
        .catch(function () { /* the Check button still works */ });
    };
    var schedule = function () {
      clearTimeout(timer);
      timer = setTimeout(estimate, 250);
    };
    form.addEventListener("input", schedule);
    form.addEventListener("change", schedule);
    estimate();
  }

  // ------------------------------------------------------------------ a run's live page
  var root = document.getElementById("run");
  if (!root || !root.dataset.run || !window.EventSource) { return; }
  var run = JSON.parse(root.dataset.run);  // status, history, progress as the page was rendered
  var active = ["queued", "running", "interrupted"].indexOf(run.status) >= 0;
  if (!active) { return; }

  var SVGNS = "http://www.w3.org/2000/svg";
  var history = run.history.slice();
  var $ = function (id) { return document.getElementById(id); };

  var points = ((run.progress || {}).points || []).slice();
  var lang = document.documentElement.lang || undefined;
  var number = window.Intl ? new Intl.NumberFormat(lang) : { format: String };

  // The same geometry as app/lab/charts.py run_chart: x in epochs 0..E with a tick at each epoch's
  // end, y between round gridline values; training points every few batches, validation per epoch.
  function finite(v) { return typeof v === "number" && isFinite(v); }
  function niceTicks(lo, hi, count) {
    var span = hi - lo;
    if (span <= 0) { span = Math.abs(hi) || 1; lo -= span / 2; hi += span / 2; span = hi - lo; }
    var raw = span / count, power = Math.pow(10, Math.floor(Math.log10(raw)));
    var r = raw / power, step = power * (r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10);
    var out = [];
    for (var i = Math.floor(lo / step); i <= Math.ceil(hi / step); i++) { out.push(Number((i * step).toFixed(10))); }
    return out;
  }
  function el(name, attrs, text) {
    var e = document.createElementNS(SVGNS, name);
    Object.keys(attrs).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text != null) { e.textContent = text; }
    return e;
  }
  function draw(svgId) {
    var svg = $(svgId);
    if (!svg) { return; }
    var key = svg.dataset.key, w = Number(svg.dataset.width), h = Number(svg.dataset.height);
    var train = points.filter(function (p) { return finite(p.x) && finite(p[key]); })
      .map(function (p) { return [p.x, p[key]]; });
    if (!train.length) {
      train = history.filter(function (e) { return finite(e[key]); }).map(function (e) { return [e.epoch, e[key]]; });
    }
    var val = history.filter(function (e) { return finite(e["val_" + key]); })
      .map(function (e) { return [e.epoch, e["val_" + key]]; });
    var xs = train.concat(val).map(function (p) { return p[0]; });
    var epochs = Math.max(Number(svg.dataset.epochs) || 1, history.length, Math.ceil(Math.max.apply(null, xs.concat([1]))));
    var plot = svg.querySelector("g.plot");
    var grid = el("g", { "class": "grid" }), ticks = el("g", { "class": "xticks" }), lines = el("g", { "class": "lines" });
    var every = Math.max(1, Math.ceil(epochs / 10));
    for (var e = 1; e <= epochs; e++) {
      if (e % every && e !== epochs) { continue; }
      var x = (e * w / epochs).toFixed(1);
      ticks.appendChild(el("line", { x1: x, y1: h, x2: x, y2: h + 4 }));
      ticks.appendChild(el("text", { x: x, y: h + 14, "text-anchor": "middle" }, String(e)));
    }
    var values = train.concat(val).map(function (p) { return p[1]; });
    if (values.length) {
      var lo = Math.min.apply(null, values), hi = Math.max.apply(null, values);
      if (key === "accuracy") { lo = Math.max(0, lo); hi = Math.min(1, hi); }
      var t = niceTicks(lo, hi, 4);
      lo = t[0]; hi = t[t.length - 1];
      var span = (hi - lo) || 1;
      var y = function (v) { return (h - (v - lo) / span * h).toFixed(1); };
      t.forEach(function (v) {
        grid.appendChild(el("line", { x1: 0, y1: y(v), x2: w, y2: y(v) }));
        grid.appendChild(el("text", { x: -4, y: Number(y(v)) + 3, "text-anchor": "end" }, number.format(v)));
      });
      [train, val].forEach(function (pairs, i) {
        if (!pairs.length) { return; }
        var xy = pairs.map(function (p) { return [(p[0] * w / epochs).toFixed(1), y(p[1])]; });
        lines.appendChild(el("polyline", { "class": "series s" + i, points: xy.map(function (p) { return p.join(","); }).join(" ") }));
        if (i === 1 || pairs.length <= epochs) {  // dots where there are few points: the first shows before a line
          xy.forEach(function (p) { lines.appendChild(el("circle", { "class": "point s" + i, cx: p[0], cy: p[1], r: "2.5" })); });
        }
      });
    }
    plot.textContent = "";
    [grid, ticks, lines].forEach(function (g) { plot.appendChild(g); });
    svg.dataset.points = String(train.length);
  }
  function redraw() { draw("chart-loss"); draw("chart-accuracy"); }

  function fmt(v, d) { return typeof v === "number" ? v.toFixed(d) : "–"; }

  function addRow(e) {
    var body = document.querySelector("#history-table tbody");
    if (!body) { return; }
    var tr = document.createElement("tr");
    [[e.epoch, null], [e.loss, 4], [e.accuracy, 4], [e.val_loss, 4], [e.val_accuracy, 4], [e.seconds, 1]]
      .forEach(function (c) {
        var td = document.createElement("td");
        td.className = "num";
        td.textContent = c[1] === null ? String(c[0]) : fmt(c[0], c[1]);
        tr.appendChild(td);
      });
    body.appendChild(tr);
  }

  // The same wording as the server's duration() in the page's language (static/js/duration.js).
  function duration(s) { return window.labDuration(root, s); }

  // Elapsed time ticks locally between progress events.
  var elapsedAt = { value: run.elapsed, at: Date.now() };
  setInterval(function () {
    if (run.status === "running" && typeof elapsedAt.value === "number") {
      $("elapsed").textContent = duration(elapsedAt.value + (Date.now() - elapsedAt.at) / 1000);
    }
  }, 1000);

  var source = new EventSource(root.dataset.eventsUrl);
  source.addEventListener("progress", function (ev) {
    var p = JSON.parse(ev.data);
    if (p.epoch != null) { $("epoch-now").textContent = p.epoch; }
    if (p.epochs != null) {
      $("epoch-total").textContent = p.epochs;
      ["chart-loss", "chart-accuracy"].forEach(function (id) { if ($(id)) { $(id).dataset.epochs = String(p.epochs); } });
    }
    var bar = $("epoch-progress");
    if (p.batches) {
      bar.max = p.batches;
      bar.value = p.batch || 0;
      $("batch-text").textContent = (p.batch || 0) + " / " + p.batches;
    }
    if (typeof p.elapsed === "number") { elapsedAt = { value: p.elapsed, at: Date.now() }; }
    if ($("eta")) { $("eta").textContent = duration(p.eta); }
  });
  source.addEventListener("points", function (ev) {
    var last = points.length ? points[points.length - 1].x : -1;
    JSON.parse(ev.data).points.forEach(function (p) { if (p.x > last) { points.push(p); last = p.x; } });
    redraw();
  });
  source.addEventListener("epoch", function (ev) {
    var e = JSON.parse(ev.data);
    if (history.some(function (h) { return h.epoch === e.epoch; })) { return; }
    history.push(e);
    addRow(e);
    redraw();
    root.dataset.epochs = String(history.length);
  });
  source.addEventListener("status", function (ev) {
    var s = JSON.parse(ev.data);
    var label = run.labels[s.status] || s.status;
    var el = $("run-status");
    el.textContent = label;
    el.className = "status " + s.status;
    var q = $("queue-position");
    if (q && s.status !== "queued") { q.textContent = ""; }
    if (s.status === "running" && run.status !== "running") { elapsedAt = { value: 0, at: Date.now() }; }
    run.status = s.status;
    if (["finished", "failed", "cancelled", "deleted"].indexOf(s.status) >= 0) {
      source.close();
      window.location.replace(root.dataset.runUrl);  // the server renders the results
    }
  });
})();
