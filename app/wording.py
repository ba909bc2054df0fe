"""Words and times as the reader's language writes them: run statuses, served-task states, the
lab's limits, recipes and training settings in words, and stored times in the configured time zone
(`BABEL_DEFAULT_TIMEZONE`, Asia/Ho_Chi_Minh by default) with a relative time beside them.

Templates reach these through the globals `init_app` registers (`status_label`, `state_label`,
`limit_label`, `recipe_text`, `settings_text`, `when`), so every page says them the same way.
"""

from __future__ import annotations

import datetime as dt

from flask import Flask
from flask_babel import format_datetime, format_decimal, format_timedelta, gettext as _, lazy_gettext
from markupsafe import Markup, escape

STATUS_LABELS = {"queued": lazy_gettext("queued"), "running": lazy_gettext("running"),
                 "finished": lazy_gettext("finished"), "failed": lazy_gettext("failed"),
                 "cancelled": lazy_gettext("cancelled"), "interrupted": lazy_gettext("interrupted"),
                 # a submitted model's
                 "scoring": lazy_gettext("scoring"), "scored": lazy_gettext("scored"), "refused": lazy_gettext("refused")}
# app.modelstore's states of a served task
STATE_LABELS = {"ready": lazy_gettext("ready"), "missing": lazy_gettext("not trained yet"),
                "error": lazy_gettext("could not be loaded")}
LIMIT_LABELS = {"max_epochs": lazy_gettext("Epochs per run, at most"),
                "max_subset": lazy_gettext("Training images per run, at most (0: all)"),
                "max_params": lazy_gettext("Parameters per model, at most"),
                "max_seconds": lazy_gettext("Estimated seconds per run, at most"),
                "runs_per_browser": lazy_gettext("Runs waiting per browser"),
                "runs_per_client": lazy_gettext("Runs waiting per network address"),
                "queue_length": lazy_gettext("Runs waiting in the whole queue")}
# the reading orders in a few words (the bench's radio buttons explain them at length)
READING_WORDS = {"rows": lazy_gettext("reads rows"), "rows_cols": lazy_gettext("reads rows and columns"),
                 "patches": lazy_gettext("reads a patch grid")}
CELL_NAMES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}
# a learning rate or dropout as written (0.0005 stays 0,0005, not rounded to 0)
FIGURE = "#,##0.########"


def init_app(app: Flask) -> None:
    """Give every template the wording helpers."""
    app.jinja_env.globals.update(status_label=status_label, state_label=state_label, limit_label=limit_label,
                                 recipe_text=recipe_text, settings_text=settings_text, when=when)


def status_label(status: str | None) -> str:
    """A run's status in the reader's language (an unknown one as stored)."""
    return str(STATUS_LABELS.get(status, status or ""))


def state_label(state: str | None) -> str:
    """A served task's state (ready, not trained yet, could not be loaded)."""
    return str(STATE_LABELS.get(state, state or ""))


def limit_label(name: str) -> str:
    """The lab bench limit `name` in words."""
    return str(LIMIT_LABELS.get(name, name))


def duration(seconds) -> str:
    """Seconds as "1 min 05 s" / "42 s" ("–" when unknown)."""
    if not isinstance(seconds, (int, float)) or seconds < 0:
        return "–"
    s = int(round(seconds))
    if s < 60:
        return _("%(s)s s", s=s)
    if s < 3600:
        return _("%(m)s min %(s)s s", m=s // 60, s=f"{s % 60:02d}")
    return _("%(h)s h %(m)s min", h=s // 3600, m=f"{s % 3600 // 60:02d}")


def estimate_words(seconds: float | None, span: tuple[float, float] | None) -> str:
    """A run's estimated time: "2 min 10 s", a range while no run has been measured on this
    server (`span`), or "unknown"."""
    if seconds is None:
        return _("unknown")
    if span is not None and duration(span[0]) != duration(span[1]):
        return _("%(low)s to %(high)s (not yet measured on this server)", low=duration(span[0]), high=duration(span[1]))
    return duration(seconds)


def figure(value) -> str:
    """A number in the reader's locale with every decimal it has (0.001 -> vi 0,001)."""
    return format_decimal(value, format=FIGURE) if isinstance(value, (int, float)) else str(value)


def recipe_text(recipe: dict | None) -> str:
    """A recipe in one line of words: "reads rows · LSTM, 64 units × 2 layers · bidirectional · dropout 0,2"."""
    r = recipe or {}
    parts = [str(READING_WORDS.get(r.get("reading", "rows"), r.get("reading", "")))]
    parts.append(_("%(cell)s, %(units)s units × %(layers)s layers", cell=CELL_NAMES.get(r.get("cell", "lstm"), r.get("cell")),
                   units=r.get("units", ""), layers=r.get("layers", "")))
    if r.get("bidirectional"):
        parts.append(_("bidirectional"))
    if r.get("dropout") is not None:
        parts.append(_("dropout %(d)s", d=figure(r["dropout"])))
    return " · ".join(parts)


def settings_text(settings: dict | None) -> str:
    """Training settings in one line of words (epochs, batch, learning rate, images, seed)."""
    s = {"epochs": "", "batch_size": "", "learning_rate": "", "subset": 0, "seed": "", **(settings or {})}
    subset = _("all images") if not s["subset"] else _("%(n)s images", n=format_decimal(s["subset"]))
    return _("%(epochs)s epochs, batch %(batch)s, learning rate %(lr)s, %(subset)s, seed %(seed)s",
             epochs=s["epochs"], batch=s["batch_size"], lr=figure(s["learning_rate"]), subset=subset, seed=s["seed"])


def when(value: dt.datetime | str | None, now: dt.datetime | None = None) -> Markup:
    """A stored time (a datetime or ISO text) as `<time>`: date and time in the configured zone,
    then how long ago ("3 phút trước"); the ISO form stays in the datetime attribute. Empty for None."""
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value)
        except ValueError:
            return Markup("")
    if value is None:
        return Markup("")
    if value.tzinfo is None:  # SQLite hands datetimes back naive; they were stored in UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    ago = format_timedelta(value - now, add_direction=True, threshold=1)
    return Markup('<time datetime="{iso}">{at} ({ago})</time>').format(
        iso=value.isoformat(timespec="seconds"), at=escape(format_datetime(value, "short")), ago=ago)
