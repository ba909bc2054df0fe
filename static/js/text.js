// Text task page: stream the generated words as server-sent events from the JSON API.
// Without JavaScript (or without fetch streaming) the form posts and the page shows the whole text.
(function () {
  "use strict";
  var form = document.getElementById("generate-form");
  if (!form) { return; }
  var strategy = document.getElementById("strategy");
  // Example seeds are submit buttons (name="example"): the server generates from one without
  // JavaScript; here the click also puts it in the box, and the submit below streams it.
  document.querySelectorAll(".seed-example").forEach(function (b) {
    b.addEventListener("click", function () { form.seed.value = b.value; });
  });
  var rows = form.querySelectorAll("[data-for]");

  function showParams() {  // only the parameters the chosen strategy uses
    rows.forEach(function (row) {
      row.hidden = row.getAttribute("data-for").split(" ").indexOf(strategy.value) < 0;
    });
  }
  strategy.addEventListener("change", showParams);
  showParams();

  if (!window.fetch || !window.ReadableStream || !window.TextDecoder) { return; }
  var section = document.querySelector("section.result");
  var output = document.getElementById("output");
  var summary = document.getElementById("summary");
  var button = document.getElementById("generate-button");
  var t = section.dataset;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) { e.className = cls; }
    if (text !== undefined) { e.textContent = text; }
    return e;
  }

  function checkText(c) {
    var wrap = el("span", "check " + (c.ok ? "pass" : "fail"));
    wrap.appendChild(el("span", c.length_ok ? "pass" : "fail", c.syllables + "/" + c.expected + " " + t.i18nSyllables));
    wrap.appendChild(document.createTextNode(" · "));
    wrap.appendChild(el("span", c.tone_ok ? "pass" : "fail", t.i18nTones + ": " +
      (c.tone_ok ? t.i18nOk : t.i18nWrong + " (" + c.tone_errors.join(", ") + ")")));
    if (c.rhyme_ok !== null && c.rhyme_ok !== undefined) {
      wrap.appendChild(document.createTextNode(" · "));
      wrap.appendChild(el("span", c.rhyme_ok ? "pass" : "fail", t.i18nRhyme + ": " + c.rhyme.syllable + " ~ " +
        c.rhyme.other + " " + (c.rhyme_ok ? t.i18nOk : t.i18nWrong)));
      if (c.rhyme_ok) {  // exact (same vần) or near rhyme
        wrap.appendChild(document.createTextNode(" "));
        wrap.appendChild(el("span", c.rhyme.exact ? "rhyme-exact" : "rhyme-near",
          "(" + (c.rhyme.exact ? t.i18nExact : t.i18nNear) + ")"));
      }
    }
    if (c.relaxed && c.relaxed.length) {
      wrap.appendChild(document.createTextNode(" · "));
      wrap.appendChild(el("span", "relaxed", t.i18nRelaxed));
    }
    return wrap;
  }

  function params() {
    var data = {};
    new FormData(form).forEach(function (v, k) { if (v !== "") { data[k] = v; } });
    if (document.getElementById("meter")) { data.meter = document.getElementById("meter").checked; }
    return data;
  }

  function showError(message) {
    var box = document.getElementById("form-error") || el("div", "error");
    box.id = "form-error";
    box.setAttribute("role", "alert");
    box.textContent = t.i18nError + ": " + message;
    form.parentNode.insertBefore(box, form);
  }

  form.addEventListener("submit", function (e) {
    if (form.elements.trace && form.elements.trace.checked) { return; }  // the page shows the trace
    e.preventDefault();
    var old = document.getElementById("form-error");
    if (old) { old.remove(); }
    var verse = !!document.getElementById("meter");
    output.textContent = "";
    var top = section.getBoundingClientRect().top;  // below the form on a phone: bring it into view
    if (top < 0 || top > window.innerHeight - 80) { section.scrollIntoView({ block: "start" }); }
    summary.textContent = t.i18nGenerating;
    button.disabled = true;
    var list = verse ? output.appendChild(el("ol", "verse")) : null;
    var headline = verse ? null : output.appendChild(el("p", "headline", form.seed.value.trim()));
    var pending = null;

    function handle(ev) {
      if (ev.token !== undefined) {
        if (verse) {
          if (!pending) { pending = list.appendChild(el("li", "pending")); pending.appendChild(el("span", "line", "")); }
          var line = pending.firstChild;
          line.textContent = (line.textContent ? line.textContent + " " : "") + ev.token;
        } else {
          headline.textContent += " " + ev.token;
        }
      } else if (ev.line !== undefined) {
        var li = pending || list.appendChild(el("li"));
        pending = null;
        li.className = "";
        li.textContent = "";
        li.appendChild(el("span", "line", ev.line));
        li.appendChild(document.createTextNode(" "));
        li.appendChild(checkText(ev.check));
      } else if (ev.done) {
        if (!verse) { headline.textContent = ev.text; }
        summary.textContent = t.i18nSummary.replace("{n}", ev.tokens).replace("{s}", ev.seconds.toFixed(3)) +
          " · " + t.i18nSeed + " " + ev.random_seed;
      } else if (ev.error) {
        showError(ev.error);
      }
    }

    var url = form.dataset.streamUrl + "&lang=" + encodeURIComponent(document.documentElement.lang);
    fetch(url, { method: "POST", headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
                 body: JSON.stringify(params()) })
      .then(function (resp) {
        if (!resp.ok) {
          return resp.json().then(function (j) { throw new Error(j.error || resp.statusText); },
                                  function () { throw new Error(resp.status + " " + resp.statusText); });
        }
        var reader = resp.body.getReader();
        var decoder = new TextDecoder();
        var buffer = "";
        function pump() {
          return reader.read().then(function (r) {
            buffer += decoder.decode(r.value || new Uint8Array(), { stream: !r.done });
            var parts = buffer.split("\n\n");
            buffer = parts.pop();
            parts.forEach(function (part) {
              part.split("\n").forEach(function (line) {
                if (line.indexOf("data: ") === 0) { handle(JSON.parse(line.slice(6))); }
              });
            });
            if (!r.done) { return pump(); }
          });
        }
        return pump();
      })
      .catch(function (err) { summary.textContent = ""; showError(err.message); })
      .then(function () { button.disabled = false; });
  });
})();
