// Seconds in words as the server's duration() writes them, in the page's language: the element
// given carries the msgstrs in data-fmt-s, data-fmt-m and data-fmt-h (run pages, image and text).
(function () {
  "use strict";
  function fill(fmt, values) {
    return fmt.replace(/%\((\w+)\)s/g, function (_, k) { return values[k]; });
  }
  function two(n) { return (n < 10 ? "0" : "") + n; }
  window.labDuration = function (el, s) {
    if (typeof s !== "number" || s < 0) { return "–"; }
    s = Math.round(s);
    if (s < 60) { return fill(el.dataset.fmtS, { s: s }); }
    if (s < 3600) { return fill(el.dataset.fmtM, { m: Math.floor(s / 60), s: two(s % 60) }); }
    return fill(el.dataset.fmtH, { h: Math.floor(s / 3600), m: two(Math.floor(s % 3600 / 60)) });
  };
})();
