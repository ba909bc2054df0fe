"""Languages: the current one per request, the gettext catalogues, locale-aware numbers.

Every user-facing text is an English gettext msgid (`_()` in templates, `gettext`/`InvalidInput`
in Python) translated in app/translations/<lang>/LC_MESSAGES/messages.po, compiled to .mo when
stale; English needs no catalogue, so a third language is one more .po file (`flask translate
init xx`). The language comes from `?lang=` (then remembered in a cookie), else the cookie, else
`DEFAULT_LANGUAGE` (Vietnamese).
"""

from __future__ import annotations

import copy
import functools
import os
from pathlib import Path
from urllib.parse import urlencode

import click
from babel import Locale
from babel.messages.catalog import Catalog
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po, write_po
from babel.numbers import parse_pattern
from babel.support import NullTranslations, Translations
from flask import Flask, current_app, request
from flask_babel import Babel, get_locale, gettext
from markupsafe import Markup

COOKIE = "lang"
TRANSLATIONS = Path(__file__).resolve().parent / "translations"
ROOT = TRANSLATIONS.parent.parent
DOMAIN = "messages"
# Calls whose first argument is a msgid, beyond Babel's defaults (_, gettext, ngettext, N_...).
KEYWORDS = {"InvalidInput": None, "refusal": None, "lazy_gettext": None, "_l": None}


def init_app(app: Flask) -> None:
    """Pick the language per request, remember a `?lang=` choice, give templates `_` and number filters."""
    compile_catalogues(TRANSLATIONS)
    Babel(app, locale_selector=current_language, default_translation_directories=str(TRANSLATIONS))
    app.after_request(_remember_language)
    app.jinja_env.globals.update(_=gettext_markup, gettext=gettext_markup, lang=current_language, lang_url=language_url)
    app.jinja_env.filters.update(number=format_number, percent=format_percent, scientific=format_scientific)
    app.cli.add_command(translate)


@functools.cache
def translations(lang: str) -> NullTranslations:
    """The compiled catalogue of `lang`, outside any request (English: the msgids themselves)."""
    compile_catalogues(TRANSLATIONS)
    return Translations.load(str(TRANSLATIONS), [lang], DOMAIN)


def translate_to(lang: str, msgid: str, **params) -> str:
    """`msgid` in `lang` with its `%(name)s` fields filled, outside any request too (a message
    given no fields is not %-formatted: gettext's python-format convention, as flask_babel's)."""
    text = translations(lang).ugettext(msgid)
    return text % params if params else text


def gettext_markup(msgid: str, **params) -> Markup:
    """Templates' `_`: the translation as markup, fields escaped and filled only when given (a
    message without fields may hold a plain %, and JavaScript's own %(s)s templates pass through)."""
    text = Markup(gettext(msgid))
    return text % params if params else text


def N_(msgid: str) -> str:
    """Mark `msgid` for extraction where it is defined; it is translated where it is shown."""
    return msgid


def format_number(value, digits: int | None = None) -> str:
    """`value` in the current locale's digits and separators (Vietnamese 1.234,5), `digits` decimals."""
    return _format(value, digits, kind="decimal")


def format_percent(value, digits: int = 1) -> str:
    """A fraction as the current locale writes a percentage (0.9934 -> vi 99,34%, en 99.34%)."""
    return _format(value, digits, kind="percent")


def format_scientific(value, digits: int = 2) -> str:
    """`value` in scientific notation with the current locale's decimal mark (vi 1,23E-5)."""
    return _format(value, digits, kind="scientific")


def _format(value, digits: int | None, kind: str) -> str:
    locale = get_locale() or Locale.parse(current_app.config["DEFAULT_LANGUAGE"])
    formats = {"decimal": locale.decimal_formats, "percent": locale.percent_formats,
               "scientific": locale.scientific_formats}[kind]
    pattern = parse_pattern(formats[None])
    if digits is not None:
        pattern = copy.copy(pattern)
        pattern.frac_prec = (digits, digits)
    return pattern.apply(value, locale)


def compile_catalogues(folder: Path) -> None:
    """Compile every `<lang>/LC_MESSAGES/messages.po` under `folder` whose `.mo` is missing or older."""
    for po in folder.glob("*/LC_MESSAGES/*.po"):
        mo = po.with_suffix(".mo")
        if mo.exists() and mo.stat().st_mtime >= po.stat().st_mtime:
            continue
        with po.open("rb") as fh:
            catalogue = read_po(fh)
        tmp = mo.with_suffix(f".mo.{os.getpid()}")
        with tmp.open("wb") as fh:
            write_mo(fh, catalogue)
        os.replace(tmp, mo)


def _remember_language(response):
    chosen = request.args.get("lang")
    if chosen in current_app.config["LANGUAGES"] and request.cookies.get(COOKIE) != chosen:
        response.set_cookie(COOKIE, chosen, max_age=365 * 24 * 3600, samesite="Lax", httponly=True)
    return response


def current_language() -> str:
    """The language of this request ("vi" or "en"): `?lang=`, else the cookie, else DEFAULT_LANGUAGE."""
    for value in (request.args.get("lang"), request.cookies.get(COOKIE)):
        if value in current_app.config["LANGUAGES"]:
            return value
    return current_app.config["DEFAULT_LANGUAGE"]


def language_url(lang: str) -> str:
    """The language switch: this page with `?lang=` set, as a query-only link ("?lang=en") that
    stays on this page whatever its path holds (a 404 for `/%5Cevil.example/x` must not link to
    `/\\evil.example`)."""
    return "?" + urlencode({**request.args.to_dict(), "lang": lang})


# ----------------------------------------------------------------------------- flask translate
def extract_catalogue():
    """Every msgid in app/ and templates/ (app/babel.cfg), as a Babel catalogue template."""
    with (ROOT / "app" / "babel.cfg").open() as fh:
        method_map, options_map = parse_mapping_cfg(fh)
    catalogue = Catalog(project="LSTM Lab")
    for filename, lineno, message, comments, context in extract_from_dir(
            str(ROOT), method_map, options_map, keywords={**DEFAULT_KEYWORDS, **KEYWORDS}):
        catalogue.add(message, None, [(filename, lineno)], auto_comments=comments, context=context)
    return catalogue


def _write_po(catalogue, path: Path) -> None:
    tmp = path.with_name(path.name + f".{os.getpid()}")
    with tmp.open("wb") as fh:
        write_po(fh, catalogue, width=0, no_location=True, omit_header=False)
    os.replace(tmp, path)


@click.group()
def translate() -> None:
    """Translation and localisation commands (gettext catalogues under app/translations)."""


@translate.command()
def extract() -> None:
    """Write every msgid of the code and templates to app/translations/messages.pot."""
    _write_po(extract_catalogue(), TRANSLATIONS / f"{DOMAIN}.pot")
    click.echo(f"wrote {TRANSLATIONS / f'{DOMAIN}.pot'}")


@translate.command()
def update() -> None:
    """Add new msgids to every language's messages.po (untranslated) and mark removed ones obsolete."""
    template = extract_catalogue()
    for po in sorted(TRANSLATIONS.glob(f"*/LC_MESSAGES/{DOMAIN}.po")):
        with po.open("rb") as fh:
            catalogue = read_po(fh)
        catalogue.update(template, no_fuzzy_matching=True)
        _write_po(catalogue, po)
        missing = sum(1 for m in catalogue if m.id and not m.string)
        click.echo(f"{po}: {len(template)} msgids, {missing} untranslated")


@translate.command()
@click.argument("lang")
def init(lang: str) -> None:
    """Start a new language: app/translations/LANG/LC_MESSAGES/messages.po from the code's msgids."""
    po = TRANSLATIONS / lang / "LC_MESSAGES" / f"{DOMAIN}.po"
    if po.exists():
        raise click.UsageError(f"{po} exists; use `flask translate update`")
    catalogue = extract_catalogue()
    catalogue.locale = Locale.parse(lang)
    po.parent.mkdir(parents=True, exist_ok=True)
    _write_po(catalogue, po)
    click.echo(f"wrote {po}; add {lang!r} to LANGUAGES")


@translate.command(name="compile")
def compile_command() -> None:
    """Compile every messages.po to messages.mo."""
    for mo in TRANSLATIONS.glob(f"*/LC_MESSAGES/{DOMAIN}.mo"):
        mo.unlink()
    compile_catalogues(TRANSLATIONS)
    click.echo("compiled " + ", ".join(sorted(p.parent.parent.name for p in TRANSLATIONS.glob("*/LC_MESSAGES/*.mo"))))
