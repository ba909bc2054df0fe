"""The lab bench's pages: the bench (/lab), a run's live page, its model card and try-it page, and
a data set's leaderboard (with CSV). Every form works without JavaScript; static/js/lab.js adds the
live estimate, the server-sent events of a running run and curves drawn as each epoch ends.

The pages only read run records and call the run service (app/lab/runs.py) to submit,
cancel and classify, so a page and the JSON API always answer the same way.
"""

from __future__ import annotations

import contextlib
from dataclasses import asdict
from pathlib import Path

from flask import (Blueprint, abort, current_app, jsonify, redirect, render_template, request, send_from_directory,
                   url_for)
from flask_babel import format_decimal, gettext as _, lazy_gettext
from sqlalchemy import select

from app.cards import Training
from app.csvfile import csv_download, csv_safe
from app.errors import InvalidInput
from app.i18n import current_language, format_number, format_percent
from app.instructor.access import needs_class_code
from app.instructor.settings import submission_rules
from app.lab import cardsofar, naming, program, recipes, runs, submissions, textprogram, textrecipes, texttry, textviews
from app.lab.charts import chart, column, run_charts_live
from app.lab.recipes import PRESET_NAMES, RANGES, Recipe, RunSettings
from app.lab.testsplit import test_split_text
from app.modelstore import PLOTS, get_store
from app.records import ACTIVE, FINISHED, Run, as_utc, db, iso, utcnow
from app.security import limited
from app.tasks import IMAGE, TEXT, TaskSpec
from app.views.pages import image_page, scalar_metrics
from app.wording import CELL_NAMES, STATUS_LABELS, duration, estimate_words, recipe_text, settings_text

bp = Blueprint("lab", __name__)

READING_LABELS = {"rows": lazy_gettext("Rows: one image row per time step (the lab's model)"),
                  "rows_cols": lazy_gettext("Rows and columns: one LSTM reads rows, another reads columns"),
                  "patches": lazy_gettext("Patch grid: sweeps along rows and columns of patches (ReNet)")}
CELL_LABELS = CELL_NAMES
PRESET_LABELS = {"lab": lazy_gettext("The lab's recipe"), "shipped": lazy_gettext("The shipped recipe"),
                 "fast": lazy_gettext("Fast (tuned for this server)")}
CSV_COLUMNS = ("id", "nickname", "dataset", "status", "reading", "cell", "units", "layers", "bidirectional",
               "dropout", "epochs", "batch_size", "learning_rate", "subset", "seed", "params", "epochs_run",
               "training_seconds", "test_accuracy", "created_at", "finished_at", "kind", "submitted_layers")
DEFAULT_DATASET = "mnist"


# ----------------------------------------------------------------------------- helpers
def fmt(value, digits: int = 4) -> str:
    """A number with `digits` decimals ("–" for none)."""
    return format_number(value, digits) if isinstance(value, (int, float)) and not isinstance(value, bool) else "–"


@bp.context_processor
def lab_helpers() -> dict:
    """Formatting helpers for the lab's templates."""
    return {"duration": duration, "fmt": fmt, "num": format_decimal, "text_benches": textviews.text_dataset_links}


@bp.app_context_processor
def run_name_helper() -> dict:
    """`run_name(run)` for every template (the bench, the leaderboards, the instructor console)."""
    return {"run_name": naming.run_name}


@bp.app_context_processor
def lab_docs_helper() -> dict:
    """`lab_docs()` for /docs/api's runs section: the data sets, ranges and limits in force."""
    def lab_docs() -> dict:
        return {"datasets": sorted(runs.datasets()), "ranges": RANGES, "limits": recipes.current_limits()}

    return {"lab_docs": lab_docs}


# ----------------------------------------------------------------------------- the bench
def form_from(recipe: dict, settings: dict, dataset: str, nickname: str = "") -> dict:
    """The bench form's values from a recipe and settings."""
    return {"dataset": dataset, "nickname": nickname, **{**asdict(Recipe()), **recipe},
            **{**asdict(RunSettings()), **settings}}


def payload_from_form(form) -> dict:
    """The API's payload from the bench's form fields (a missing checkbox is False)."""
    recipe = {k: form.get(k) for k in ("reading", "cell", "units", "layers", "dropout") if form.get(k) is not None}
    recipe["bidirectional"] = form.get("bidirectional") in ("1", "on", "true")
    payload = {"dataset": form.get("dataset"), "recipe": recipe, "nickname": form.get("nickname", "")}
    payload.update({k: form.get(k) for k in asdict(RunSettings()) if form.get(k) not in (None, "")})
    return payload


def estimate(payload: dict) -> dict:
    """{"params", "params_text", "seconds", "eta_text", "seconds_range", "measured_runs", "warnings"}
    for a valid payload (a range until a run has been measured on this server; warnings when it may
    learn little from so little); InvalidInput otherwise."""
    specs = runs.datasets()
    models_dir = Path(current_app.config["MODELS_DIR"])
    tput = runs.throughput()
    recipe, settings = recipes.validate(payload, recipes.current_limits(), specs, tput, models_dir)
    spec = specs[payload["dataset"]]
    params = recipes.param_count(spec, recipe)
    size = recipes.training_size(spec, models_dir)
    seconds = recipes.estimate_seconds(spec, recipe, settings, tput, size)
    span = runs.estimate_range(lambda t: recipes.estimate_seconds(spec, recipe, settings, t, size), tput)
    warnings = [w.message(current_language()) for w in recipes.learning_warnings(spec, settings, size)]
    return {"params": params, "params_text": format_decimal(params), "seconds": seconds,
            "eta_text": estimate_words(seconds, span), "seconds_range": list(span) if span else None,
            "measured_runs": tput.runs, "warnings": warnings}


def scaled_preset(name: str, spec: TaskSpec) -> tuple[Recipe, RunSettings]:
    """The preset `name` scaled to the data set's size and this server's epoch limit."""
    return recipes.preset(name, spec, recipes.training_size(spec, Path(current_app.config["MODELS_DIR"])),
                          recipes.current_limits().max_epochs)


def preset_rows(slug: str, spec: TaskSpec) -> list[dict]:
    """Each preset for the data set with the best finished run of exactly its recipe and settings."""
    finished = runs.finished_runs(slug)
    rows = []
    for name in PRESET_NAMES:
        recipe, settings = scaled_preset(name, spec)
        r, s = asdict(recipe), asdict(settings)
        same = [run for run in finished if {**asdict(Recipe()), **(run.recipe or {})} == r
                and {**asdict(RunSettings()), **(run.settings or {})} == s
                and isinstance((run.metrics or {}).get("test_accuracy"), (int, float))]
        best = max(same, key=lambda run: run.metrics["test_accuracy"], default=None)
        rows.append({"name": name, "card": shipped_card_figures(slug) if name == "shipped" else None, "label": PRESET_LABELS[name], "recipe_text": recipe_text(r) + " · " + settings_text(s),
                     "params": recipes.param_count(spec, recipe), "runs": len(same),
                     "best": None if best is None else {
                         "id": best.id, "test_accuracy": best.metrics["test_accuracy"], "train_seconds": epoch_seconds(best),
                         "total_seconds": (as_utc(best.finished_at) - as_utc(best.created_at)).total_seconds()}})
    return rows


def epoch_seconds(run: Run) -> float | None:
    """Seconds the run spent in its epochs (training and validation), from its history."""
    seconds = [e.get("seconds") for e in run.history or [] if isinstance(e, dict)]
    if seconds and all(isinstance(x, (int, float)) for x in seconds):
        return float(sum(seconds))
    return run.seconds


def shipped_card_figures(slug: str) -> dict | None:
    """The served model's own figures from its card (trained by `python -m training`, not the bench)."""
    try:
        card = get_store().get(slug).card
    except KeyError:
        return None
    if card is None or card.metrics.test_accuracy is None:
        return None
    training = card.training or Training()
    return {"test_accuracy": card.metrics.test_accuracy, "train_seconds": training.seconds_total,
            "epochs": training.epochs_run}


@bp.route("/lab", methods=["GET", "POST"])
def bench():
    """The bench: choose a data set and recipe, Check (parameters, time) and Train."""
    specs = runs.datasets()
    status, error, check, join_url = 200, None, None, None
    if request.method == "POST":
        form = {k: v for k, v in request.form.items() if k != "csrf_token"}
        form["bidirectional"] = form.get("bidirectional") in ("1", "on", "true")
        slug = form.get("dataset") if form.get("dataset") in specs else DEFAULT_DATASET
        name = request.form.get("preset")
        try:
            if name:
                chosen = scaled_preset(name, specs[slug])
                form = form_from(*(asdict(x) for x in chosen), slug, form.get("nickname", ""))
            else:
                payload = payload_from_form(request.form)
                if request.form.get("action") == "submit":
                    run = runs.submit_run(payload)
                    return redirect(url_for("lab.run_page", run_id=run.id), 303)
                check = estimate(payload)
        except InvalidInput as exc:
            error, status = exc.message(current_language()), exc.status
            if status == 403:  # the access mode refused: a class code may be needed
                join_url = url_for("access.join")
    else:
        form = initial_form(specs)
        slug = form["dataset"]
    spec = specs.get(slug) or specs[DEFAULT_DATASET]
    limits = recipes.current_limits()
    size = recipes.training_size(spec, Path(current_app.config["MODELS_DIR"]))
    subset_hint = (_("%(n)s training images in this data set (a tenth of them is held out for validation).",
                     n=format_decimal(size)) if size else None)
    context = {"form": form, "datasets": [(s, sp.title(current_language())) for s, sp in specs.items()],
               "readings": list(READING_LABELS.items()), "cells": list(CELL_LABELS.items()),
               "preset_labels": list(PRESET_LABELS.items()), "ranges": RANGES, "limits": limits,
               "check": check, "error": error, "presets": preset_rows(spec.slug, spec),
               "dataset_title": spec.title(current_language()), "subset_hint": subset_hint,
               "my_runs": my_runs(), "join_url": join_url, "join_form": needs_class_code(),
               "code": code_panel(form)}
    return render_template("lab/bench.html", **context), status


def initial_form(specs: dict[str, TaskSpec]) -> dict:
    """The form on GET: a run's recipe (?again=<id>), a preset (?preset=&dataset=), or the lab's recipe."""
    slug = request.args.get("dataset") if request.args.get("dataset") in specs else DEFAULT_DATASET
    again = request.args.get("again")
    if again:
        run = runs.find_run(again)
        return form_from(run.recipe or {}, run.settings or {}, run.dataset if run.dataset in specs else slug,
                         run.nickname or "")
    name = request.args.get("preset") if request.args.get("preset") in PRESET_NAMES else "lab"
    return form_from(*(asdict(x) for x in scaled_preset(name, specs[slug])), slug)


@bp.get("/lab/estimate", endpoint="estimate")
def estimate_json():
    """The parameter count and estimated time of the form's recipe (the image bench's, or the text
    bench's when its data set is a text one), as JSON (lab.js, live)."""
    slug = request.args.get("dataset")
    try:
        if isinstance(slug, str) and slug in textrecipes.text_datasets():
            return jsonify(textviews.check_text(textviews.text_payload(slug, request.args)))
        return jsonify(estimate(payload_from_form(request.args)))
    except InvalidInput as exc:
        return jsonify({"error": exc.message(current_language()), "error_en": exc.en, "error_vi": exc.vi,
                        "status": exc.status}), exc.status


# ----------------------------------------------------------------------------- the engine's side
def my_runs(limit: int = 10) -> list[Run]:
    """This browser's latest runs."""
    owner = runs.owner_token(create=False)
    if not owner:
        return []
    return list(db.session.scalars(select(Run).where(Run.owner == owner).order_by(Run.created_at.desc()).limit(limit)))


# ----------------------------------------------------------------------------- a run
@bp.get("/lab/runs/<run_id>")
def run_page(run_id: str):
    """A run: live progress and curves while it trains; results and links when it has finished."""
    run = runs.find_run(run_id)
    if run.dataset in textrecipes.text_datasets():
        return textviews.text_run_page(run, run_downloads(run, {}))
    spec = runs.datasets().get(run.dataset)
    history = [e for e in (run.history or []) if isinstance(e, dict)]
    started = as_utc(run.started_at)
    end = as_utc(run.finished_at) or utcnow()
    elapsed = (end - started).total_seconds() if started else None
    error = None
    if run.error:
        error = run.error["vi" if current_language() == "vi" else "en"]

    def class_label(i: int) -> str:
        return spec.label(i, current_language()) if spec and i < len(spec.classes) else str(i)

    run_json = {"id": run.id, "status": run.status, "history": history, "progress": run.progress or {},
                "elapsed": elapsed, "labels": {k: str(v) for k, v in STATUS_LABELS.items()}}
    return render_template(
        "lab/run.html", run=run, history=history, elapsed=elapsed, error=error, run_json=run_json,
        charts=run_charts_live(run.progress, history, (run.progress or {}).get("epochs") or (run.settings or {}).get("epochs")),
        series=[("train", _("training, every few batches")), ("validation", _("validation, at each epoch's end"))],
        dataset_title=spec.title(current_language()) if spec else run.dataset, class_label=class_label,
        queue_position=runs.queue_position(run), can_cancel=run.status in ACTIVE and runs.may_manage(run),
        downloads=run_downloads(run, {}), test_split_text=lambda n: test_split_text(spec, int(n)),
        events_url=url_for("lab_api.run_events", run_id=run.id))


@bp.post("/lab/runs/<run_id>/cancel")
def cancel(run_id: str):
    """Cancel from the run page (owner or instructor): the same engine call as the API's cancel."""
    run = runs.cancel_run_record(runs.find_run(run_id))
    return redirect(url_for("lab.run_page", run_id=run.id), 303)


@bp.get("/lab/runs/<run_id>/card")
def run_card(run_id: str):
    """The run's model card: the same card.html the shipped models have, over the run's card.json;
    before the run has finished, the card so far (app/lab/cardsofar.py)."""
    run = runs.find_run(run_id)
    if run.status != FINISHED:
        return cardsofar.card_so_far(run)
    entry = runs.finished_entry(run)
    plots = {name: url_for("lab.run_plot", run_id=run.id, name=name) for name in entry.plots}
    card = entry.card.to_json()
    return render_template("card.html", entry=entry, card=card, scalars=scalar_metrics(entry.card),
                           try_url=url_for("lab.try_run", run_id=run.id), plot_urls=plots,
                           downloads=run_downloads(run, card.get("data") or {}),
                           run_note=_("Lab bench run %(id)s", id=run.id))


def run_downloads(run: Run, data: dict) -> dict:
    """A run's program links (None where the program cannot reproduce its data set), its files
    (owner or instructor, once finished) and the data's provenance, for card.html and run.html."""
    spec = runs.datasets().get(run.dataset)
    links = None
    if run.dataset in textrecipes.text_datasets():
        links = {ext: url_for("lab.run_program", run_id=run.id, ext=ext) for ext in ("py", "ipynb")}
    elif spec is not None:
        with contextlib.suppress(InvalidInput):  # an instructor's folder of images: no program to link
            program.check_supported(spec)
            links = {ext: url_for("lab.run_program", run_id=run.id, ext=ext) for ext in ("py", "ipynb")}
    files = [(n, url_for("lab.run_download", run_id=run.id, name=n)) for n in runs.DOWNLOADS
             if run.status == FINISHED and runs.may_manage(run) and (runs.run_folder(run) / n).is_file()]
    return {"program": links, "files": files, "provenance": runs.provenance(data, spec)}


@bp.get("/lab/runs/<run_id>/plots/<name>")
def run_plot(run_id: str, name: str):
    """The run's two plots (no other file of its folder can be reached)."""
    run = runs.find_run(run_id)
    folder = runs.run_folder(run)
    if name not in PLOTS or not (folder / name).is_file():
        abort(404)
    return send_from_directory(folder, name, mimetype="image/png", max_age=60)


@bp.route("/lab/runs/<run_id>/try", methods=["GET", "POST"])
@limited(*texttry.TRY_PAGE)
def try_run(run_id: str):
    """The task page over the run's own model: an image run's (upload, drag, paste, draw; top-5;
    gate trace) or a text run's (every decoding strategy, streamed; the meter check for verse)."""
    run = runs.find_run(run_id)
    if run.dataset in textrecipes.text_datasets():
        return texttry.try_text_page(run)
    entry = runs.finished_entry(run, IMAGE)
    return image_page(entry, action=url_for("lab.try_run", run_id=run.id),
                      card_url=url_for("lab.run_card", run_id=run.id),
                      run_note=_("Lab bench run %(id)s", id=run.id))


# ----------------------------------------------------------------------------- programs
def program_response(source: str, name: str, ext: str):
    """A program's source as a .py download, or (ext "ipynb") as a Jupyter notebook."""
    if ext == "ipynb":
        source, mimetype = program.program_notebook(source), "application/x-ipynb+json"
    else:
        mimetype = "text/x-python"
    response = current_app.response_class(source, mimetype=mimetype)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{ext}"'
    return response


@bp.get("/lab/runs/<run_id>/program.py", defaults={"ext": "py"})
@bp.get("/lab/runs/<run_id>/program.ipynb", defaults={"ext": "ipynb"})
def run_program(run_id: str, ext: str):
    """The run's recipe and settings as a standalone Keras program, comments in the page's language."""
    run = runs.find_run(run_id)
    texts = textrecipes.text_datasets()
    if run.dataset in texts:
        source = textprogram.run_text_program(texts[run.dataset], run.recipe, run.settings, _)
    else:
        source = program.run_program(runs.find_dataset(run.dataset), run.recipe, run.settings, _)
    return program_response(source, f"lstmlab_{run.dataset}_{run.id}", ext)


@bp.get("/lab/runs/<run_id>/download/<name>")
def run_download(run_id: str, name: str):
    """A finished run's model.keras, model.tflite or card.json, with its data provenance in a header."""
    path, note = runs.download_file(runs.find_run(run_id), name)
    return runs.send_download(path, f"lstmlab_{run_id}_{name}", note)


def served_task(slug: str):
    """The served task `slug` (its model store entry) or a bilingual 404."""
    try:
        return get_store().get(slug)
    except KeyError:
        raise InvalidInput("There is no task '%(slug)s'.", 404, slug=slug) from None


@bp.get("/tasks/<slug>/program.py", defaults={"ext": "py"})
@bp.get("/tasks/<slug>/program.ipynb", defaults={"ext": "ipynb"})
def task_program(slug: str, ext: str):
    """The program that trains a shipped task's served model (a bilingual 404 where it cannot)."""
    entry = served_task(slug)
    if entry.spec.kind != TEXT:
        program.check_supported(entry.spec)  # no program for its data: said before whether a model is served
    if entry.card is None:
        raise InvalidInput("This task's model is not available.", 404)
    return program_response(served_program(entry.spec, entry.card.to_json(), _), f"lstmlab_{slug}", ext)


def served_program(spec: TaskSpec, card: dict, translate=str) -> str:
    """The program that trains a served task's model: a text task's or an image task's."""
    if spec.kind == TEXT:
        return textprogram.shipped_text_program(spec, card, translate)
    return program.shipped_program(spec, card, translate, percent=lambda v: format_percent(v, 2))


@bp.get("/tasks/<slug>/download/<name>")
def task_download(slug: str, name: str):
    """A shipped task's model.keras, model.tflite or card.json (public, as its page), with provenance."""
    entry = served_task(slug)
    path = Path(get_store().models_dir) / entry.slug / name
    if name not in runs.DOWNLOADS or entry.card is None or not path.is_file():
        raise InvalidInput("This task has no such file to download.", 404)
    return runs.send_download(path, f"lstmlab_{slug}_{name}", runs.provenance_note(entry.card.to_json().get("data") or {},
                                                                                   entry.spec))


@bp.app_context_processor
def card_downloads_helper() -> dict:
    """`task_downloads(entry)` for card.html: a shipped task's program (or why none, or what it
    leaves out: a distilled model's teachers) and files."""
    def task_downloads(entry) -> dict:
        card = entry.card.to_json() if entry.card else {}
        try:
            served_program(entry.spec, card)
            refusal = None
        except InvalidInput as exc:
            refusal = exc.message(current_language())
        folder = Path(get_store().models_dir) / entry.slug
        return {"program": None if refusal else {ext: url_for("lab.task_program", slug=entry.slug, ext=ext)
                                                 for ext in ("py", "ipynb")},
                "refusal": refusal,
                "caveat": None if refusal or entry.spec.kind == TEXT else program.distillation_note(
                    card, _, lambda v: format_percent(v, 2)),
                "files": [(n, url_for("lab.task_download", slug=entry.slug, name=n)) for n in runs.DOWNLOADS
                          if (folder / n).is_file()],
                "provenance": runs.provenance(card.get("data") or {}, entry.spec)}

    return {"task_downloads": task_downloads}


def form_source(fields) -> tuple[str, str]:
    """(program source, data set slug) of the bench form's `fields`, validated as a submission is."""
    payload = payload_from_form(fields)
    specs = runs.datasets()
    recipe, settings = recipes.validate(payload, recipes.current_limits(), specs, None,
                                        Path(current_app.config["MODELS_DIR"]))
    return program.run_program(specs[payload["dataset"]], recipe, settings, _), payload["dataset"]


PROGRAM_FIELDS = ("dataset", "reading", "cell", "units", "layers", "dropout", *asdict(RunSettings()))


def code_panel(form: dict) -> dict:
    """The bench's Code panel: the form's program (or why there is none) and its download query."""
    query = {k: str(form[k]) for k in PROGRAM_FIELDS if form.get(k) not in (None, "")}
    if form.get("bidirectional") in (True, "1", "on", "true"):
        query["bidirectional"] = "on"
    query["lang"] = current_language()
    try:
        return {"source": form_source(query)[0], "error": None, "query": query}
    except InvalidInput as exc:
        return {"source": None, "error": exc.message(current_language()), "query": query}


@bp.get("/lab/program.py", endpoint="form_program", defaults={"ext": "py"})
@bp.get("/lab/program.ipynb", endpoint="form_program", defaults={"ext": "ipynb"})
def form_program(ext: str):
    """The program of the bench form's current values (a preset, or any recipe; the live Code panel)."""
    source, dataset = form_source(request.args)
    return program_response(source, f"lstmlab_{dataset}", ext)


@bp.get("/lab/<dataset>/program.py", endpoint="text_form_program", defaults={"ext": "py"})
@bp.get("/lab/<dataset>/program.ipynb", endpoint="text_form_program", defaults={"ext": "ipynb"})
def text_form_program(dataset: str, ext: str):
    """The program of the text bench form's values (the live Code panel on /lab/<dataset>)."""
    return program_response(textviews.text_form_source(dataset, request.args), f"lstmlab_{dataset}", ext)


# ----------------------------------------------------------------------------- leaderboard
@bp.get("/lab/<dataset>")
def leaderboard(dataset: str):
    """Every run on a data set side by side; ticked runs' curves overlaid (a text data set: its
    bench, with its runs by test perplexity)."""
    if dataset in textrecipes.text_datasets():
        return textviews.text_bench(dataset)
    spec = runs.find_dataset(dataset)
    board = runs.leaderboard_runs(dataset)
    by_id = {r.id: r for r in board}
    compared = [i for i in dict.fromkeys(request.args.getlist("compare")) if i in by_id][:12]
    charts = {key: chart({i: column(by_id[i].history, key) for i in compared}, shared_x=True)
              for key in ("val_accuracy", "val_loss")} if compared else {}
    series = [(i, by_id[i].nickname or i) for i in compared]
    return render_template("lab/leaderboard.html", dataset=dataset, dataset_title=spec.title(current_language()),
                           runs=board, rows=submissions.leaderboard_rows(dataset, board), compared=compared,
                           charts=charts, series=series, target=submission_rules(dataset)["target_accuracy"])


@bp.post("/lab/<dataset>")
def text_bench(dataset: str):
    """The text bench's form: a preset, Check or Train."""
    if dataset not in textrecipes.text_datasets():
        abort(405)
    return textviews.text_bench(dataset)


@bp.get("/lab/<dataset>.csv")
def leaderboard_csv(dataset: str):
    """The leaderboard as CSV in its order: one row per run and per submitted model (kind "submitted",
    with the columns its leaderboard row shows); a text data set's with its perplexities."""
    if dataset in textrecipes.text_datasets():
        return textviews.text_leaderboard_csv(dataset)
    runs.find_dataset(dataset)
    rows = []
    for row in submissions.leaderboard_rows(dataset, runs.leaderboard_runs(dataset)):
        item, acc = row["item"], (row["item"].metrics or {}).get("test_accuracy")
        acc = "" if not isinstance(acc, (int, float)) else round(acc, 4)
        if row["kind"] == "submission":  # what its leaderboard row shows: no recipe, epochs or training time
            layers = ", ".join(csv_safe(str(layer.get("class", ""))) for layer in item.layers or [])
            rows.append([item.id, csv_safe(item.nickname or ""), item.dataset, item.status, *[""] * 11,
                         item.params or "", "", "", "" if row["accuracy"] is None else round(row["accuracy"], 4),
                         iso(item.created_at) or "", iso(item.finished_at) or "",
                         "submitted", layers])
            continue
        r = {**asdict(Recipe()), **(item.recipe or {})}
        s = {**asdict(RunSettings()), **(item.settings or {})}
        rows.append([item.id, csv_safe(item.nickname or ""), item.dataset, item.status, r["reading"], r["cell"],
                     r["units"], r["layers"], r["bidirectional"], r["dropout"], s["epochs"], s["batch_size"],
                     s["learning_rate"], s["subset"], s["seed"], item.params or "", len(item.history or []),
                     "" if item.seconds is None else round(item.seconds, 1), acc,
                     iso(item.created_at) or "", iso(item.finished_at) or "", "run", ""])
    return csv_download(f"lstmlab-{dataset}-runs.csv", CSV_COLUMNS, rows)


HISTORY_CSV_COLUMNS = ("id", "nickname", "dataset", "status", "epoch", "loss", "accuracy", "val_loss", "val_accuracy",
                       "seconds")


@bp.get("/lab/<dataset>/history.csv")
def history_csv(dataset: str):
    """Every run's per-epoch history on a data set as CSV (one row per run and epoch, leaderboard order;
    a text data set's with its perplexities)."""
    if dataset in textrecipes.text_datasets():
        return textviews.text_history_csv(dataset)
    runs.find_dataset(dataset)
    rows = [[run.id, csv_safe(run.nickname or ""), run.dataset, run.status, e.get("epoch"),
             *("" if e.get(k) is None else e.get(k) for k in HISTORY_CSV_COLUMNS[5:])]
            for run in runs.leaderboard_runs(dataset) for e in run.history or [] if isinstance(e, dict)]
    return csv_download(f"lstmlab-{dataset}-history.csv", HISTORY_CSV_COLUMNS, rows)
