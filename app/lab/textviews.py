"""The lab bench's pages for text data sets (kieu, nyt_headlines): the text bench at
/lab/<dataset> (recipe form, presets, the runs by test perplexity) and a text run's live page
(perplexity curves, sample lines after every epoch, for verse with the meter check).

Called by the routes in app/lab/views.py; like them it only reads records and calls the run
service (app/lab/runs.py), so the page and POST /api/v1/runs answer the same way.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from flask import current_app, redirect, render_template, request, url_for
from flask_babel import format_decimal, gettext as _, lazy_gettext

from app.csvfile import csv_download, csv_safe
from app.errors import InvalidInput
from app.i18n import current_language
from app.instructor.access import needs_class_code
from app.instructor.settings import submission_rules
from app.lab import recipes, runs, submissions, textprogram, textrecipes
from app.lab.charts import run_chart
from app.lab.textrecipes import TEXT_PRESET_NAMES, TEXT_RANGES, TextRecipe, TextSettings
from app.records import ACTIVE, FINISHED, Run, as_utc, iso, utcnow
from app.tasks import TEXT, TaskSpec
from app.wording import CELL_NAMES, estimate_words, figure

TEXT_PRESET_LABELS = {"lab": lazy_gettext("The lab's recipe"), "shipped": lazy_gettext("The shipped recipe"),
                      "fast": lazy_gettext("Fast (tuned for this server)")}
RECIPE_FIELDS = tuple(f for f in asdict(TextRecipe()) if f != "tied")


def text_recipe_text(recipe: dict | None) -> str:
    """A text recipe in one line of words: "embedding 64 · LSTM, 128 units × 1 layers · dropout 0,3 · tied ..."."""
    r = {**asdict(TextRecipe()), **(recipe or {})}
    parts = [_("embedding %(n)s", n=r["embedding"]),
             _("%(cell)s, %(units)s units × %(layers)s layers", cell=CELL_NAMES.get(r["cell"], r["cell"]),
               units=r["units"], layers=r["layers"]),
             _("dropout %(d)s", d=figure(r["dropout"]))]
    if r["tied"]:
        parts.append(_("tied embeddings"))
    elif r.get("projection"):
        parts.append(_("projection to %(n)s", n=r["projection"]))
    parts.append(_("sequences of %(n)s tokens", n=r["sequence_length"]))
    parts.append(_("tokens seen fewer than %(n)s times are <unk>", n=r["min_count"]))
    return " · ".join(parts)


def text_settings_text(settings: dict | None) -> str:
    """Text training settings in one line of words (epochs, batch, learning rate, seed)."""
    s = {**asdict(TextSettings()), **(settings or {})}
    return _("%(epochs)s epochs, batch %(batch)s, learning rate %(lr)s, seed %(seed)s", epochs=s["epochs"],
             batch=s["batch_size"], lr=figure(s["learning_rate"]), seed=s["seed"])


def text_form(recipe: dict, settings: dict, nickname: str = "") -> dict:
    """The text bench form's values from a recipe and settings."""
    return {"nickname": nickname, **asdict(TextRecipe()), **recipe, **asdict(TextSettings()), **settings}


def text_payload(slug: str, form) -> dict:
    """The API's payload from the text bench's form fields (a missing checkbox is False)."""
    recipe = {k: form.get(k) for k in RECIPE_FIELDS if form.get(k) not in (None, "")}
    recipe["tied"] = form.get("tied") in ("1", "on", "true")
    payload = {"dataset": slug, "recipe": recipe, "nickname": form.get("nickname", "")}
    payload.update({k: form.get(k) for k in asdict(TextSettings()) if form.get(k) not in (None, "")})
    return payload


def check_text(payload: dict) -> dict:
    """{"params", "params_text", "vocab_text", "seconds", "eta_text", "seconds_range",
    "measured_runs", "warnings"} for a valid text payload (the time a range until a text run has
    been measured on this server; unknown without the data set's figures); InvalidInput otherwise
    (over a limit included, as on Train)."""
    spec = textrecipes.text_datasets()[payload["dataset"]]
    limits = recipes.current_limits()
    models_dir = Path(current_app.config["MODELS_DIR"])
    vocab = textrecipes.vocabulary_size(spec, models_dir)
    figures = textrecipes.text_figures(spec, models_dir)
    tput = runs.throughput(TEXT)
    recipe, settings = textrecipes.validate_text(payload, limits, vocab_size=vocab,
                                                 sequences=textrecipes.training_sequences(spec, models_dir),
                                                 figures=figures, throughput=tput)
    seconds = span = None
    if figures is not None:
        seconds = textrecipes.text_estimate_seconds(recipe, settings, figures, tput)
        span = runs.estimate_range(lambda t: textrecipes.text_estimate_seconds(recipe, settings, figures, t), tput, TEXT)
    timing = {"seconds": seconds, "eta_text": estimate_words(seconds, span),
              "seconds_range": list(span) if span else None, "measured_runs": tput.runs, "warnings": []}
    if not vocab:
        return {"params": None, "params_text": _("unknown"), "vocab_text": "", **timing}
    params = textrecipes.text_param_count(TextRecipe(**recipe), vocab)
    return {"params": params, "params_text": format_decimal(params),
            "vocab_text": _("counted over the shipped model's vocabulary of %(n)s tokens; the run builds its own "
                            "from the training split with your cut-off", n=format_decimal(vocab)), **timing}


def text_form_source(slug: str, fields) -> str:
    """The standalone program of the text bench form's `fields` for data set `slug`, validated as a
    submission is (unknown data set: 404; bad field: 400)."""
    spec = textrecipes.text_datasets().get(slug)
    if spec is None:
        raise InvalidInput("There is no text data set %(slug)s.", 404, slug=str(slug)[:40])
    models_dir = Path(current_app.config["MODELS_DIR"])
    vocab = textrecipes.vocabulary_size(spec, models_dir)
    payload = text_payload(slug, fields)
    if fields.get("preset"):  # ?preset=fast: the preset, under the fields given with it
        payload["preset"] = fields["preset"]
        if fields.get("tied") is None:
            payload["recipe"].pop("tied")
    recipe, settings = textrecipes.validate_text(payload, recipes.current_limits(), vocab_size=vocab,
                                                 sequences=textrecipes.training_sequences(spec, models_dir))
    return textprogram.render_text_program(spec, TextRecipe(**recipe), TextSettings(**settings), _)


def text_code_panel(slug: str, form: dict) -> dict:
    """The text bench's Code panel (templates/lab/code_panel.html): the form's program, or why
    there is none, its download query and the URLs the panel's script fetches."""
    query = {k: str(form[k]) for k in (*RECIPE_FIELDS, *asdict(TextSettings())) if form.get(k) not in (None, "")}
    if form.get("tied") in (True, "1", "on", "true"):
        query["tied"] = "1"
    query["lang"] = current_language()
    panel = {"query": query, "form_id": "text-form", "endpoint": "lab.text_form_program", "args": {"dataset": slug}}
    try:
        return panel | {"source": text_form_source(slug, query), "error": None}
    except InvalidInput as exc:
        return panel | {"source": None, "error": exc.message(current_language())}


def board_rows(slug: str) -> list[dict]:
    """The runs and submitted models on a text data set, lowest test perplexity first (then the
    others newest first), each run with its n-gram's: {"kind", "item", "test", "ngram", "validation"}."""
    rows = []
    for row in submissions.leaderboard_rows(slug, runs.leaderboard_runs(slug), text=True):
        m = row["item"].metrics or {}
        rows.append({"kind": row["kind"], "item": row["item"], "test": row["perplexity"],
                     "ngram": (m.get("ngram") or {}).get("test_perplexity"),
                     "validation": m.get("validation_perplexity")})
    return rows


SETUP_FIELDS = (*asdict(TextRecipe()), *asdict(TextSettings()))
TEXT_CSV_COLUMNS = ("id", "nickname", "dataset", "status", *SETUP_FIELDS, "params",
                    "epochs_run", "training_seconds", "validation_perplexity", "test_perplexity",
                    "ngram_test_perplexity", "perplexity_below_ngram", "test_top1_accuracy", "test_unk_rate",
                    "test_tokens", "created_at", "finished_at", "kind", "submitted_layers")
SUBMISSION_SETUP = ("seed", "min_count")  # what a submitted model states or implies of its setup


def text_leaderboard_csv(slug: str):
    """A text data set's leaderboard as CSV in the page's order (lowest test perplexity first): one
    row per run, with its perplexities beside its n-gram's, and per submitted model (kind
    "submitted": its split seed, vocabulary cut-off, layers and test figures; no recipe or training)."""
    rows = []
    for row in board_rows(slug):
        item, m = row["item"], row["item"].metrics or {}
        figures = [m.get("validation_perplexity"), m.get("test_perplexity"), (m.get("ngram") or {}).get("test_perplexity"),
                   m.get("perplexity_below_ngram"), m.get("test_top1_accuracy"), m.get("test_unk_rate"),
                   m.get("test_tokens")]
        figures = [round(v, 4) if isinstance(v, (int, float)) and not isinstance(v, bool) else "" for v in figures]
        head = [item.id, csv_safe(item.nickname or ""), item.dataset, item.status]
        if row["kind"] == "submission":
            layers = ", ".join(csv_safe(str(layer.get("class", ""))) for layer in item.layers or [])
            rows.append([*head, *(m.get(k, "") if k in SUBMISSION_SETUP else "" for k in SETUP_FIELDS),
                         item.params or "", "", "", *figures, iso(item.created_at) or "", iso(item.finished_at) or "",
                         "submitted", layers])
            continue
        given = {**asdict(TextRecipe()), **asdict(TextSettings()), **(item.recipe or {}), **(item.settings or {})}
        rows.append([*head, *(given[k] for k in SETUP_FIELDS), item.params or "",
                     len(item.history or []), "" if item.seconds is None else round(item.seconds, 1), *figures,
                     iso(item.created_at) or "", iso(item.finished_at) or "", "run", ""])
    return csv_download(f"lstmlab-{slug}-runs.csv", TEXT_CSV_COLUMNS, rows)


TEXT_HISTORY_COLUMNS = ("id", "nickname", "dataset", "status", "epoch", "loss", "val_loss", "perplexity",
                        "val_perplexity", "accuracy", "val_accuracy", "seconds")


def text_history_csv(slug: str):
    """Every run's per-epoch history on a text data set as CSV (one row per run and epoch, in the
    leaderboard's order): losses, training and validation perplexity, next-token accuracy, seconds."""
    rows = [[run.id, csv_safe(run.nickname or ""), run.dataset, run.status, e.get("epoch"),
             *("" if e.get(k) is None else e.get(k) for k in TEXT_HISTORY_COLUMNS[5:])]
            for run in runs.leaderboard_runs(slug) for e in run.history or [] if isinstance(e, dict)]
    return csv_download(f"lstmlab-{slug}-history.csv", TEXT_HISTORY_COLUMNS, rows)


def text_bench(slug: str):
    """GET or POST /lab/<slug> for a text data set: the form (a preset, ?again=<run>, or the
    posted values), Check (parameters) and Train (a queued run, then its page)."""
    spec = textrecipes.text_datasets()[slug]
    limits = recipes.current_limits()
    models_dir = Path(current_app.config["MODELS_DIR"])
    status, error, check, join_url = 200, None, None, None
    if request.method == "POST":
        form = {k: v for k, v in request.form.items() if k != "csrf_token"}
        form["tied"] = form.get("tied") in ("1", "on", "true")
        try:
            if request.form.get("preset"):
                recipe, settings = textrecipes.limited_preset(request.form["preset"], spec, limits,
                                                              textrecipes.training_sequences(spec, models_dir))
                form = text_form(asdict(recipe), asdict(settings), form.get("nickname", ""))
            else:
                payload = text_payload(slug, request.form)
                if request.form.get("action") == "submit":
                    run = runs.submit_run(payload)
                    return redirect(url_for("lab.run_page", run_id=run.id), 303)
                check = check_text(payload)
        except InvalidInput as exc:
            error, status = exc.message(current_language()), exc.status
            if status == 403:  # the access mode refused: a class code may be needed
                join_url = url_for("access.join")
    else:
        form = initial_text_form(slug, spec, limits)
    context = {"form": form, "slug": slug, "dataset_title": spec.title(current_language()), "spec": spec,
               "cells": list(CELL_NAMES.items()), "preset_labels": list(TEXT_PRESET_LABELS.items()),
               "ranges": TEXT_RANGES, "limits": limits, "check": check, "error": error, "join_url": join_url,
               "join_form": needs_class_code(), "rows": board_rows(slug), "text_datasets": text_dataset_links(),
               "recipe_words": text_recipe_text, "settings_words": text_settings_text,
               "code": text_code_panel(slug, form), "target_perplexity": submission_rules(slug)["target_perplexity"]}
    return render_template("lab/text_bench.html", **context), status


def text_dataset_links() -> list[tuple[str, str]]:
    """(slug, title) of every text data set, for the bench's links."""
    return [(s, spec.title(current_language())) for s, spec in textrecipes.text_datasets().items()]


def initial_text_form(slug: str, spec: TaskSpec, limits: recipes.Limits) -> dict:
    """The form on GET: a run's recipe (?again=<id>), a preset (?preset=), or the fast preset."""
    again = request.args.get("again")
    if again:
        run = runs.find_run(again)
        if run.dataset == slug:
            return text_form(run.recipe or {}, run.settings or {}, run.nickname or "")
    name = request.args.get("preset") if request.args.get("preset") in TEXT_PRESET_NAMES else "fast"
    sequences = textrecipes.training_sequences(spec, Path(current_app.config["MODELS_DIR"]))
    recipe, settings = textrecipes.limited_preset(name, spec, limits, sequences)
    return text_form(asdict(recipe), asdict(settings))


def text_run_page(run: Run, downloads: dict):
    """A text run's page: progress, perplexity curves, sample lines per epoch (newest first, with
    the meter check for verse), and once finished the test perplexity beside the n-gram's and
    the owner's `downloads` (views.run_downloads)."""
    spec = textrecipes.text_datasets()[run.dataset]
    history = [e for e in (run.history or []) if isinstance(e, dict)]
    started = as_utc(run.started_at)
    elapsed = ((as_utc(run.finished_at) or utcnow()) - started).total_seconds() if started else None
    error = run.error["vi" if current_language() == "vi" else "en"] if run.error else None
    epochs = (run.progress or {}).get("epochs") or (run.settings or {}).get("epochs")
    m = run.metrics or {}
    ngram = (m.get("ngram") or {}).get("test_perplexity")
    result = None
    if run.status == FINISHED and isinstance(m.get("test_perplexity"), (int, float)):
        result = {"test": m["test_perplexity"], "ngram": ngram, "validation": m.get("validation_perplexity"),
                  "gain": m.get("perplexity_below_ngram"), "tokens": m.get("test_tokens"),
                  "unk_rate": m.get("test_unk_rate"), "top1": m.get("test_top1_accuracy"),
                  "meter": (m.get("meter") or {}).get("unconstrained")}
    sampled = [e for e in reversed(history) if e.get("samples")]
    return render_template(
        "lab/text_run.html", run=run, history=history, sampled=sampled, elapsed=elapsed, error=error,
        chart=run_chart("perplexity", [], history, epochs), epochs=epochs, result=result,
        series=[("train", _("training split")), ("validation", _("validation split"))],
        dataset_title=spec.title(current_language()), verse=spec.tokenizer == "syllables",
        queue_position=runs.queue_position(run), can_cancel=run.status in ACTIVE and runs.may_manage(run),
        active=run.status in ACTIVE, events_url=url_for("lab_api.run_events", run_id=run.id),
        recipe_words=text_recipe_text, settings_words=text_settings_text, downloads=downloads)
