"""Languages: every text in the gettext catalogue, translated, and numbers written per locale."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask import render_template_string

from app import i18n
from app.errors import InvalidInput
from app.i18n import extract_catalogue, translate_to, translations

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
# Visible words that are the same in every language (names, units, symbols).
UNTRANSLATED = {"API", "LSTM", "SimpleRNN", "JSON", "float32", "int8", "n", "k", "p", "ms", "curl", "GET", "POST",
                "c", "h", "f", "i", "g", "o", "x", "t", "W", "U", "b", "σ", "tanh", "Dense", "softmax",
                # units, abbreviations and metric keys of the lab bench and instructor pages
                "s", "px", "bi", "ep", "seed", "epoch", "loss", "accuracy", "val_loss", "val_accuracy", "ABCD-2345"}


def test_every_msgid_in_app_and_templates_has_a_vietnamese_translation():
    catalogue = extract_catalogue()
    msgids = [m.id for m in catalogue if m.id]
    assert len(msgids) > 150  # the extractor read the templates and the Python code
    assert any(isinstance(m, tuple) for m in msgids)  # ngettext's (singular, plural) pairs are read too
    vi = translations("vi")
    missing = [m[1] for m in msgids if isinstance(m, tuple) and vi.ungettext(*m, 2) == m[1]]
    msgids = [m for m in msgids if isinstance(m, str)]
    missing += [m for m in msgids if vi.ugettext(m) == m and not set(re.sub(r"%\(\w+\)s", "", m)) <= set(" -%.:(),0123456789·×")
               and m not in UNTRANSLATED and m not in SAME_IN_VIETNAMESE]
    assert not missing, f"{len(missing)} msgids without a Vietnamese msgstr: {missing[:10]}"


# msgids whose Vietnamese text is the English one on purpose (technical names, units).
SAME_IN_VIETNAMESE = {"Top-k", "Top-p (nucleus)", "API", "ms", "k", "p", "Dropout", "dropout %(d)s", "Epoch"}


def test_placeholders_are_the_same_in_both_languages():
    vi = translations("vi")
    fields = lambda text: sorted(re.findall(r"%\((\w+)\)[sd]", text))  # noqa: E731
    for message in extract_catalogue():
        if isinstance(message.id, tuple):  # each count's form has the plural's fields
            singular, plural = message.id
            assert all(fields(vi.ungettext(singular, plural, n)) == fields(plural) for n in (1, 2)), plural
        elif message.id:
            assert fields(vi.ugettext(message.id)) == fields(message.id), message.id


def test_the_catalogue_passes_babels_checks():
    """What `pybabel compile` checks (python-format placeholders, plural forms) finds nothing: a
    literal "20% of" reads to Babel as the placeholder "% o"."""
    from babel.messages.pofile import read_po

    po = Path(i18n.__file__).resolve().parent / "translations" / "vi" / "LC_MESSAGES" / "messages.po"
    with po.open("rb") as f:
        catalog = read_po(f)
    problems = [(message.id, [str(e) for e in errors]) for message, errors in catalog.check()]
    assert not problems, problems


class _VisibleText(HTMLParser):
    """Text nodes and visible attributes of a template whose Jinja parts were blanked out."""

    HIDDEN = {"code", "pre", "script", "style", "kbd", "samp", "var", "math"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.depth, self.found = 0, []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("alt", "title", "aria-label", "placeholder") and value:
                self.found.append(value)
        if tag in self.HIDDEN:
            self.depth += 1

    def handle_endtag(self, tag):
        if tag in self.HIDDEN and self.depth:
            self.depth -= 1

    def handle_data(self, data):
        if not self.depth:
            self.found.append(data)


def untranslated_text(source: str) -> list[str]:
    """Words a template shows that are outside `{{ }}`/`{% %}` (so outside `_()`) and not allow-listed."""
    source = re.sub(r"\{#.*?#\}", " ", source, flags=re.S)
    source = re.sub(r"\{%.*?%\}", " ", source, flags=re.S)
    source = re.sub(r"\{\{.*?\}\}", " ", source, flags=re.S)
    parser = _VisibleText()
    parser.feed(source)
    bad = []
    for text in parser.found:
        words = [w for w in re.findall(r"[^\W\d_][\w\-₀-₉]*", text) if w not in UNTRANSLATED]
        if words:
            bad.append(" ".join(text.split()))
    return bad


def test_no_template_shows_text_outside_the_catalogue():
    offenders = {}
    for path in sorted(TEMPLATES.rglob("*.html")):
        found = untranslated_text(path.read_text(encoding="utf-8"))
        if found:
            offenders[str(path.relative_to(ROOT))] = found
    assert not offenders


def test_the_checker_catches_bare_text_and_attributes():
    assert untranslated_text('<p>{{ _("Hello") }}</p>') == []
    assert untranslated_text("<p>Hello</p>") == ["Hello"]
    assert untranslated_text('<img alt="A cat">') == ["A cat"]
    assert untranslated_text("<pre><code>curl -X POST</code></pre><p>API · LSTM 42</p>") == []


@pytest.mark.parametrize(("lang", "percent", "number", "count", "scientific"),
                         [("vi", "99,34%", "1.234,5", "10.000", "1,23E-5"), ("en", "99.34%", "1,234.5", "10,000", "1.23E-5")])
def test_numbers_and_percentages_follow_the_locale(app, lang, percent, number, count, scientific):
    with app.test_request_context(f"/?lang={lang}"):
        app.preprocess_request()
        assert render_template_string("{{ 0.99337|percent(2) }}") == percent
        assert render_template_string("{{ 1234.5|number(1) }}") == number
        assert render_template_string("{{ 10000|number }}") == count
        assert render_template_string("{{ 0.0000123|scientific(2) }}") == scientific


@pytest.mark.parametrize("lang", ["vi", "en"])
def test_pages_write_accuracy_with_the_locale_decimal_mark(client, lang):
    home = client.get(f"/?lang={lang}").get_data(as_text=True)
    card = client.get(f"/tasks/mnist/card?lang={lang}").get_data(as_text=True)
    mark, other = (",", ".") if lang == "vi" else (".", ",")
    for html in (home, card):
        assert re.search(rf"\d{re.escape(mark)}\d\d%", html)
        assert not re.search(rf">\s*\d+{re.escape(other)}\d\d%", html)


def test_bad_input_carries_both_languages_without_a_request():
    err = InvalidInput("The image is too large (%(width)s×%(height)s pixels); the limit is %(mp)s megapixels. "
                       "Make it smaller and try again.", 413, width=9000, height=9000, mp=8)
    assert err.en == "The image is too large (9000×9000 pixels); the limit is 8 megapixels. Make it smaller and try again."
    assert err.vi == "Ảnh quá lớn (9000×9000 điểm ảnh); giới hạn là 8 triệu điểm ảnh. Hãy thu nhỏ ảnh rồi thử lại."
    assert err.status == 413 and str(err) == err.en and err.message("vi") == err.vi


def test_a_third_language_is_a_file(app, tmp_path, monkeypatch):
    shutil.copytree(i18n.TRANSLATIONS, tmp_path / "translations", ignore=shutil.ignore_patterns("*.mo", "*.pot"))
    monkeypatch.setattr(i18n, "TRANSLATIONS", tmp_path / "translations")
    runner = app.test_cli_runner()
    assert runner.invoke(args=["translate", "extract"]).exit_code == 0
    assert (tmp_path / "translations/messages.pot").stat().st_size > 1000
    result = runner.invoke(args=["translate", "init", "fr"])
    assert result.exit_code == 0, result.output
    po = tmp_path / "translations/fr/LC_MESSAGES/messages.po"
    po.write_text(po.read_text(encoding="utf-8").replace('msgid "Tasks"\nmsgstr ""', 'msgid "Tasks"\nmsgstr "Tâches"'),
                  encoding="utf-8")
    assert runner.invoke(args=["translate", "update"]).exit_code == 0
    assert runner.invoke(args=["translate", "compile"]).exit_code == 0
    assert (tmp_path / "translations/fr/LC_MESSAGES/messages.mo").is_file()
    from babel.support import Translations

    assert Translations.load(str(tmp_path / "translations"), ["fr"]).ugettext("Tasks") == "Tâches"
    assert translate_to("vi", "Tasks") == "Các bài toán"


# ----------------------------------------------------------------------------- rendered vi pages
# Raw words a Vietnamese page must never show: the limits' field names, the run statuses and the
# model store's states in English, the reading orders' keys and the recipe shorthand.
RAW_WORDS = {"max_epochs", "max_subset", "max_params", "max_seconds", "runs_per_browser", "runs_per_client",
             "queue_length", "queued", "running", "finished", "failed", "cancelled", "interrupted", "ready",
             "missing", "broken", "rows", "rows_cols", "patches", "ep", "simple_rnn"}
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
# 0.001 or 2.5 where Vietnamese writes 0,001 and 2,5 (1.234 is a Vietnamese thousand)
POINT_DECIMAL = re.compile(r"(?<![\d.,])(?:0\.\d+|\d+\.(?:\d{1,2}|\d{4,}))(?![\d.])")


def visible_text(html: str) -> str:
    """The text a reader sees on a rendered page (no scripts, styles, code, nor the header's language
    switch; nor chart ticks, which the chart tests check)."""
    parser = _VisibleText()
    parser.feed(re.sub(r"<header.*?</header>|<svg.*?</svg>", " ", html, flags=re.S))
    return " ".join(" ".join(parser.found).split())


def raw_text(html: str) -> list[str]:
    """Raw keys, English statuses, ISO times and point decimals a Vietnamese page shows."""
    text = visible_text(html)
    found = [w for w in re.findall(r"[A-Za-z_]+", text) if w in RAW_WORDS]
    return found + ISO_TIME.findall(text) + POINT_DECIMAL.findall(text)


def test_the_raw_text_checker_catches_keys_statuses_times_and_decimals():
    assert raw_text("<p>max_epochs 30 · queued · 2026-12-06T12:38:51+00:00 · 0.001</p>") == [
        "max_epochs", "queued", "2026-12-06T12:38", "0.001"]
    assert raw_text("<p>Số epoch tối đa 30 · đang chờ · 6 thg 12, 2026 · 0,001 · 1.234</p><script>x='queued'</script>") == []


@pytest.fixture
def runs_in_every_status(instructor_app, finished_lab_run):
    """Beside the finished run: one run in each other status, on the same data set."""
    import datetime as dt

    from app.records import Run, db

    now = dt.datetime.now(dt.timezone.utc)
    ids = {}
    with instructor_app.app_context():
        for status in ("queued", "running", "failed", "cancelled", "interrupted"):
            run = Run(dataset="shapes", nickname="Bình", status=status, created_at=now - dt.timedelta(minutes=3),
                      started_at=None if status == "queued" else now - dt.timedelta(minutes=2),
                      recipe={"reading": "rows_cols", "cell": "lstm", "units": 8, "layers": 1, "dropout": 0.2},
                      settings={"epochs": 2, "batch_size": 8, "learning_rate": 0.001, "seed": 3}, owner="o")
            db.session.add(run)
            db.session.commit()
            ids[status] = run.id
    ids["finished"] = finished_lab_run
    return ids


def test_vietnamese_pages_show_no_raw_key_english_status_or_iso_time(signed_in, runs_in_every_status):
    pages = ["/lab", "/lab/mnist", "/instructor/", "/instructor/tasks", "/instructor/datasets",
             f"/instructor/runs/{runs_in_every_status['finished']}/report"]
    pages += [f"/lab/runs/{run_id}" for run_id in runs_in_every_status.values()]
    pages += [f"/instructor/?status={s}" for s in runs_in_every_status]
    offenders = {}
    for path in pages:
        response = signed_in.get(path + ("&" if "?" in path else "?") + "lang=vi")
        assert response.status_code == 200, path
        found = raw_text(response.get_data(as_text=True))
        if found:
            offenders[path] = sorted(set(found))
    assert not offenders, offenders
    console = visible_text(signed_in.get("/instructor/?lang=vi").get_data(as_text=True))
    assert "đang chờ: 1" in console and "Số epoch tối đa mỗi lượt chạy" in console
    assert "3 phút trước" in console  # the runs were created three minutes ago
    assert "đọc theo hàng và cột · LSTM, 8 đơn vị × 1 lớp · dropout 0,2" in console
    assert "tốc độ học 0,001" in console


@pytest.mark.parametrize(("lang", "zone", "shown"), [("vi", None, "19:38 6/12/26 (3 phút trước)"),
                                                     ("en", None, "12/6/26, 7:38\u202fPM (3 minutes ago)"),
                                                     ("vi", "UTC", "12:38 6/12/26 (3 phút trước)")])
def test_times_are_shown_in_the_configured_zone_with_how_long_ago(make_app, tiny_models_dir, lang, zone, shown):
    import datetime as dt

    from app.wording import when

    app = make_app(tiny_models_dir, **({"BABEL_DEFAULT_TIMEZONE": zone} if zone else {}))
    stored = dt.datetime(2026, 12, 6, 12, 38, 51)  # naive, as SQLite hands it back: UTC
    with app.test_request_context(f"/?lang={lang}"):
        html = str(when(stored, now=stored.replace(tzinfo=dt.timezone.utc) + dt.timedelta(minutes=3)))
        assert html == f'<time datetime="2026-12-06T12:38:51+00:00">{shown}</time>'
        assert when("2026-12-06T12:38:51Z") != "" and when(None) == "" and when("not a time") == ""
