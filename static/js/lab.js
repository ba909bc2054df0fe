// Lab bench: the live estimate on /lab, and a run's live page (server-sent events: progress bar,
// curves redrawn as each epoch ends, elapsed time and ETA). Without JavaScript the same pages
// work with a "Check" submit and a periodic reload.
(function () {
  "use strict";

  // ------------------------------------------------------------------ the bench's live estimate
  var form = document.getElementById("lab-form");
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

  function sig3(v) { return String(Number(v.toPrecision(3))); }

  // The same drawing as app/views/lstm.py curve_svg: one y scale for every series, x spread evenly.
  function draw(svgId, keys) {
    var svg = $(svgId);
    if (!svg) { return; }
    var w = Number(svg.dataset.width), h = Number(svg.dataset.height);
    var series = keys.map(function (k) {
      return history.map(function (e) { return e[k]; }).filter(function (v) { return typeof v === "number" && isFinite(v); });
    });
    var all = [].concat.apply([], series);
    var lines = svg.querySelector("g.lines");
    var ticks = svg.querySelector("g.ticks");
    lines.textContent = "";
    ticks.textContent = "";
    if (!all.length) { return; }
    var lo = Math.min.apply(null, all), hi = Math.max.apply(null, all);
    var span = (hi - lo) || 1;
    var n = 0;
    series.forEach(function (vals, i) {
      if (!vals.length) { return; }
      n = Math.max(n, vals.length);
      var xy = vals.map(function (v, j) {
        var x = vals.length > 1 ? j * w / (vals.length - 1) : w / 2;
        return [x.toFixed(1), (h - (v - lo) / span * h).toFixed(1)];
      });
      var pl = document.createElementNS(SVGNS, "polyline");
      pl.setAttribute("class", "series s" + i);
      pl.setAttribute("points", xy.map(function (p) { return p.join(","); }).join(" "));
      lines.appendChild(pl);
      xy.forEach(function (p) {  // a dot per epoch: the first epoch shows before there is a line
        var c = document.createElementNS(SVGNS, "circle");
        c.setAttribute("class", "point s" + i);
        c.setAttribute("cx", p[0]);
        c.setAttribute("cy", p[1]);
        c.setAttribute("r", "2.5");
        lines.appendChild(c);
      });
    });
    [[-4, 4, "end", sig3(hi)], [-4, h, "end", sig3(lo)], [0, h + 14, "start", "1"], [w, h + 14, "end", String(n)]]
      .forEach(function (t) {
        var el = document.createElementNS(SVGNS, "text");
        el.setAttribute("x", t[0]);
        el.setAttribute("y", t[1]);
        el.setAttribute("text-anchor", t[2]);
        el.textContent = t[3];
        ticks.appendChild(el);
      });
  }

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

  // The same wording as the server's duration() in the page's language (data-fmt-* hold its msgstrs).
  function fill(fmt, values) {
    return fmt.replace(/%\((\w+)\)s/g, function (_, k) { return values[k]; });
  }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  function duration(s) {
    if (typeof s !== "number" || s < 0) { return "–"; }
    s = Math.round(s);
    if (s < 60) { return fill(root.dataset.fmtS, { s: s }); }
    if (s < 3600) { return fill(root.dataset.fmtM, { m: Math.floor(s / 60), s: two(s % 60) }); }
    return fill(root.dataset.fmtH, { h: Math.floor(s / 3600), m: two(Math.floor(s % 3600 / 60)) });
  }

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
    if (p.epochs != null) { $("epoch-total").textContent = p.epochs; }
    var bar = $("epoch-progress");
    if (p.batches) {
      bar.max = p.batches;
      bar.value = p.batch || 0;
      $("batch-text").textContent = (p.batch || 0) + " / " + p.batches;
    }
    if (typeof p.elapsed === "number") { elapsedAt = { value: p.elapsed, at: Date.now() }; }
    if ($("eta")) { $("eta").textContent = duration(p.eta); }
  });
  source.addEventListener("epoch", function (ev) {
    var e = JSON.parse(ev.data);
    if (history.some(function (h) { return h.epoch === e.epoch; })) { return; }
    history.push(e);
    addRow(e);
    draw("chart-loss", ["loss", "val_loss"]);
    draw("chart-accuracy", ["accuracy", "val_accuracy"]);
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
