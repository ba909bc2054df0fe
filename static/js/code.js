// The bench's Code panel: after each change of the form (debounced), the program of its values is
// fetched from the server (/lab/program.py, the one place programs are written) and shown; the
// .py and .ipynb links follow the same values. Without JavaScript the links and buttons still work.
(function () {
  "use strict";
  var panel = document.getElementById("code-panel");
  var form = panel && document.getElementById(panel.getAttribute("data-form") || "lab-form");
  if (!panel || !form || !window.fetch || !window.URLSearchParams) { return; }
  var view = document.getElementById("code-view");
  var error = document.getElementById("code-error");
  var py = document.getElementById("code-py");
  var notebook = document.getElementById("code-ipynb");
  var skip = ["csrf_token", "action", "preset", "nickname"];
  var timer = null;
  var seq = 0;

  var query = function () {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, key) {
      if (skip.indexOf(key) < 0) { params.append(key, value); }
    });
    params.set("lang", document.documentElement.lang || "vi");
    return params.toString();
  };
  var show = function (text, isError) {
    error.hidden = !isError;
    view.hidden = !!isError;
    if (isError) { error.textContent = text; } else { view.firstChild.textContent = text; }
  };
  var refresh = function () {
    var q = query();
    var mine = ++seq;
    py.href = panel.getAttribute("data-program-url") + "?" + q;
    notebook.href = panel.getAttribute("data-notebook-url") + "?" + q;
    // JSON for a refusal (the error's message in the page's language), the program's text otherwise
    fetch(py.href, { headers: { Accept: "text/x-python, application/json;q=0.9" } })
      .then(function (r) {
        return r.ok ? r.text().then(function (t) { return { program: t }; }) : r.json();
      })
      .then(function (body) {
        if (mine !== seq) { return; }
        if (typeof body.program === "string") { show(body.program, false); } else { show(body.error, true); }
        panel.setAttribute("data-shown", q);
      })
      .catch(function () { /* the links still download the program */ });
  };
  var schedule = function () {
    clearTimeout(timer);
    timer = setTimeout(refresh, 300);
  };
  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
}());
