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
