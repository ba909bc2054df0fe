"""The /instructor pages: the run console (every run, cancel / delete / re-queue, queue pause,
lab limits, access mode and class codes), data sets (upload or server folder, preview, save,
CSV of their runs), publishing and unpublishing, and a printable report of one run.

Every route here is behind `auth.require_instructor` (the blueprint's before_request); every
form posts its CSRF token (Flask-WTF's CSRFProtect covers the whole app).
"""

from __future__ import annotations

import functools

import shutil
from dataclasses import fields
from pathlib import Path

from flask import current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user
from sqlalchemy import select

from app.csvfile import csv_download, csv_safe
from app.errors import InvalidInput
from app.instructor import access, corpora, datasets, publish, settings
from app.instructor.auth import is_local_path
from app.instructor.blueprints import bp
from app.lab.charts import run_charts
from app.lab.queue import enqueue_run
from app.lab.recipes import WHOLE_NUMBER_RE, Limits, available_datasets, current_limits
from app.lab.runs import cancel_run_record, find_run
from app.lab.textrecipes import text_datasets
from app.modelstore import get_store
from app.records import ACTIVE, CANCELLED, FAILED, INTERRUPTED, QUEUED, RUNNING, Run, db, iso
from app.tasks import BUILTIN_TASKS, TEXT

STATUSES = ("queued", "running", "finished", "failed", "cancelled", "interrupted")
REQUEUEABLE = (FAILED, CANCELLED, INTERRUPTED)
RUN_LIMIT = 500  # runs listed on the console (newest first)


def back(default: str = "instructor.console"):
    """303 to the page the form came from (a path on this site), else `default`."""
    target = request.form.get("back", "")
    if is_local_path(target) and target.startswith("/instructor/"):
        return redirect(target, 303)
    return redirect(url_for(default), 303)


def refused_in(page, where: str):
    """Decorate a form's view: its InvalidInput answers `page(error, where)` (the page the form is
    on, the refusal beside the form `where`, at the refusal's status) instead of a bare error page."""
    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            try:
                return view(*args, **kwargs)
            except InvalidInput as exc:
                return page(exc, where)
        return wrapper
    return decorate


# ----------------------------------------------------------------------------- the console
@bp.get("/")
def console(error: InvalidInput | None = None, panel: str = ""):
    """Every run (filter by status and data set), the queue, the limits and who may train; after a
    refused setting, the same page with the refusal in the panel `panel`, at its status."""
    status, dataset = request.args.get("status", ""), request.args.get("dataset", "")
    query = select(Run).order_by(Run.created_at.desc()).limit(RUN_LIMIT)
    if status in STATUSES:
        query = query.where(Run.status == status)
    if dataset:
        query = query.where(Run.dataset == dataset)
    runs = db.session.scalars(query).all()
    counts = dict(db.session.execute(select(Run.status, db.func.count()).group_by(Run.status)).all())
    limits = current_limits()
    return render_template(
        "instructor/console.html", runs=runs, counts=counts, status=status, dataset=dataset, statuses=STATUSES,
        paused=settings.queue_paused(), limits=[(f.name, getattr(limits, f.name)) for f in fields(limits)],
        mode=access.access_mode(), modes=access.MODES, code=access.current_code(),
        datasets=db.session.scalars(select(Run.dataset).distinct().order_by(Run.dataset)).all(), iso=iso,
        requeueable=REQUEUEABLE, active=ACTIVE, error=error, error_panel=panel), error.status if error else 200


@bp.post("/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Ask a queued or running run to stop (the engine's own cancel)."""
    run = find_run(run_id)
    if run.status not in ACTIVE:
        raise InvalidInput("This run is not queued or running.", 409)
    cancel_run_record(run)
    flash(_("Run %(id)s: cancel requested.", id=run.id))
    return back()


@bp.post("/runs/<run_id>/delete")
def delete_run(run_id: str):
    """Delete a run that is not running: its record, model files and checkpoints."""
    run = find_run(run_id)
    if run.status == RUNNING:
        raise InvalidInput("Cancel the run before deleting it.", 409)
    instance = Path(current_app.instance_path)
    for folder in (instance / "runs" / run.id, instance / "checkpoints" / run.id):
        shutil.rmtree(folder, ignore_errors=True)
    db.session.delete(run)
    db.session.commit()
    flash(_("Run %(id)s deleted.", id=run_id))
    return back()


@bp.post("/runs/<run_id>/requeue")
def requeue_run(run_id: str):
    """Put a failed, cancelled or interrupted run back on the queue, from scratch."""
    run = find_run(run_id)
    if run.status not in REQUEUEABLE:
        raise InvalidInput("Only a failed, cancelled or interrupted run can be queued again.", 409)
    run.status, run.cancel_requested = QUEUED, False
    run.clear_reason()
    run.started_at = run.finished_at = None
    run.progress, run.attempts = {}, 0
    db.session.commit()
    run.queue_task_id = enqueue_run(run.id)
    db.session.commit()
    flash(_("Run %(id)s queued again.", id=run.id))
    return back()


@bp.post("/queue/<action>")
def queue_action(action: str):
    """Pause or resume the queue (consumers check before starting a run)."""
    if action not in ("pause", "resume"):
        raise InvalidInput("Unknown queue action.", 404)
    settings.set_queue_paused(action == "pause")
    flash(_("The queue is paused: running runs finish, no new run starts.") if action == "pause"
          else _("The queue is running again."))
    return back()


@bp.post("/limits")
@refused_in(console, "limits-panel")
def edit_limits():
    """Store the lab bench's limits (whole numbers, none negative)."""
    values = {}
    for f in fields(Limits):
        raw = request.form.get(f.name, "").strip()
        if raw == "":
            continue
        # ASCII digits only: int() takes Unicode digits such as "٣" and fails on 5,000-digit text
        value = int(raw) if WHOLE_NUMBER_RE.fullmatch(raw) else -1
        if value < 0 or value > 10**9:
            raise InvalidInput("%(name)s: give a whole number, 0 or more.", name=f.name)
        values[f.name] = value
    settings.set_limit_overrides(values)
    flash(_("Limits saved."))
    return back()


@bp.post("/access")
@refused_in(console, "access-panel")
def edit_access():
    """Choose open / class code / closed; rotate or revoke the class code."""
    action = request.form.get("action", "mode")
    if action == "rotate":
        try:
            hours = float(request.form.get("hours", "24"))
        except ValueError:
            hours = -1
        code = access.new_class_code(hours)
        flash(_("New class code: %(code)s (older codes no longer work).", code=code.code))
    elif action == "revoke":
        access.revoke_codes()
        flash(_("Every class code is revoked."))
    else:
        access.set_access_mode(request.form.get("mode", ""))
        flash(_("Access mode saved."))
    return back()


# ----------------------------------------------------------------------------- data sets
@bp.get("/datasets")
def dataset_list(error: InvalidInput | None = None, form_id: str = ""):
    """The saved data sets, the upload forms and (when configured) the server-folder forms; after a
    refused upload (`refused_in`), the same page with the refusal beside the form `form_id`."""
    page = render_template("instructor/datasets.html", records=[r for r, _f in datasets.iter_datasets()],
                           server_root=current_app.config.get("DATASET_SERVER_ROOT") or "",
                           max_mb=int(current_app.config["DATASET_MAX_UPLOAD_BYTES"]) // 2**20,
                           corpus_mb=corpora.max_bytes() // 2**20, error=error, error_form=form_id)
    return page, error.status if error else 200


def uploaded_file(missing_msgid: str):
    """The request's uploaded `file`, or InvalidInput(`missing_msgid`) when none was chosen."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput(missing_msgid)
    return upload


def to_preview(token: str):
    """303 to a staged upload's preview."""
    return redirect(url_for("instructor.dataset_preview", token=token), 303)


@bp.post("/datasets/upload")
@refused_in(dataset_list, "upload-form")
def dataset_upload():
    """A zip of class folders -> a staged preview."""
    upload = uploaded_file("Choose a .zip file of class folders.")
    return to_preview(datasets.stage_zip(upload.stream, upload.filename)[0])


@bp.post("/datasets/folder")
@refused_in(dataset_list, "folder-form")
def dataset_folder():
    """A folder under DATASET_SERVER_ROOT -> a staged preview."""
    return to_preview(datasets.stage_folder(request.form.get("folder", ""))[0])


@bp.post("/datasets/corpus")
@refused_in(dataset_list, "corpus-form")
def corpus_upload():
    """A UTF-8 .txt corpus, one verse or headline per line -> a staged preview."""
    upload = uploaded_file("Choose a .txt file, one verse or headline per line.")
    return to_preview(corpora.stage_corpus(upload.stream, upload.filename)[0])


@bp.post("/datasets/corpus/file")
@refused_in(dataset_list, "corpus-file-form")
def corpus_file():
    """A text file under DATASET_SERVER_ROOT -> a staged preview."""
    return to_preview(corpora.stage_corpus_file(request.form.get("file", ""))[0])


@bp.route("/datasets/preview/<token>", methods=["GET", "POST"])
def dataset_preview(token: str):
    """Counts, skipped files, imbalance and thumbnails (a text corpus: lines per split, vocabulary
    and unknown words); the form that saves the data set."""
    preview = datasets.read_preview(token)
    text = preview.get("kind") == TEXT
    error, status, form = None, 200, request.form
    if request.method == "POST":
        try:
            if text:
                record = corpora.save_corpus(token, form.get("slug", ""), form.get("title_en", ""),
                                             form.get("title_vi", ""), created_by=current_user.name)
            else:
                record = datasets.save_dataset(token, form.get("slug", ""), form.get("title_en", ""),
                                               form.get("title_vi", ""), form.get("image_size"), form.get("colour"),
                                               created_by=current_user.name)
        except InvalidInput as exc:
            error, status = exc, exc.status
        else:
            flash(_("Data set %(slug)s saved: it is on the lab bench now.", slug=record["slug"]))
            return redirect(url_for("instructor.dataset_detail", slug=record["slug"]), 303)
    return render_template("instructor/corpus_preview.html" if text else "instructor/preview.html", token=token,
                           preview=preview, error=error, form=form, sizes=datasets.SIZES), status


@bp.post("/datasets/preview/<token>/discard")
def dataset_discard(token: str):
    """Throw a staged upload away."""
    datasets.discard(token)
    flash(_("Upload discarded."))
    return redirect(url_for("instructor.dataset_list"), 303)


@bp.get("/datasets/<slug>")
def dataset_detail(slug: str):
    """A saved data set: its split, counts per class and source, and its runs."""
    record, _folder = datasets.get_dataset(slug)
    runs = db.session.scalars(select(Run).where(Run.dataset == slug).order_by(Run.created_at.desc())).all()
    return render_template("instructor/dataset.html", record=record, runs=runs, iso=iso)


@bp.post("/datasets/<slug>/delete")
def dataset_delete(slug: str):
    """Delete a data set no run is waiting for or using (its finished runs stay listed)."""
    datasets.delete_dataset(slug)
    flash(_("Data set %(slug)s deleted.", slug=slug))
    return redirect(url_for("instructor.dataset_list"), 303)


CSV_FIELDS = ("id", "nickname", "dataset", "status", "created_at", "started_at", "finished_at", "seconds",
              "epochs", "batch_size", "learning_rate", "subset", "seed", "reading", "cell", "units", "layers",
              "bidirectional", "dropout", "embedding", "tied", "sequence_length", "min_count", "params", "test_accuracy",
              "test_perplexity", "ngram_test_perplexity", "published_slug")


@bp.get("/datasets/<slug>/runs.csv")
def dataset_csv(slug: str):
    """Every run of data set `slug` (any status) as CSV, newest first (image and text recipes' columns)."""
    runs = db.session.scalars(select(Run).where(Run.dataset == slug).order_by(Run.created_at.desc())).all()
    rows = []
    for run in runs:
        s, r, m = run.settings or {}, run.recipe or {}, run.metrics or {}
        row = {"id": run.id, "nickname": csv_safe(run.nickname or ""), "dataset": run.dataset, "status": run.status,
               "created_at": iso(run.created_at) or "", "started_at": iso(run.started_at) or "",
               "finished_at": iso(run.finished_at) or "", "seconds": run.seconds if run.seconds is not None else "",
               "params": run.params if run.params is not None else "", "test_accuracy": m.get("test_accuracy", ""),
               "test_perplexity": m.get("test_perplexity", ""),  # a text corpus' runs
               "ngram_test_perplexity": (m.get("ngram") or {}).get("test_perplexity", ""),
               "published_slug": run.published_slug or "", **{k: s.get(k, "") for k in
                                                               ("epochs", "batch_size", "learning_rate", "subset", "seed")},
               **{k: r.get(k, "") for k in ("reading", "cell", "units", "layers", "bidirectional", "dropout",
                                            "embedding", "tied", "sequence_length", "min_count")}}
        rows.append([row[k] for k in CSV_FIELDS])
    return csv_download(f"lstmlab-{slug}-all-runs.csv", CSV_FIELDS, rows)


# ----------------------------------------------------------------------------- one run
@bp.get("/runs/<run_id>/report")
def run_report(run_id: str):
    """A printable page: recipe, settings and seed, curves, confusion matrix, test accuracy."""
    run = find_run(run_id)
    return render_template("instructor/report.html", run=run, charts=run_charts(run.history or []), iso=iso,
                           metrics=run.metrics or {}, classes=run_classes(run))


def run_classes(run: Run) -> list[str]:
    """The class names of a run's data set (for its confusion matrix), or numbers."""
    spec = available_datasets().get(run.dataset)
    if spec is not None:
        return spec.class_names
    matrix = (run.metrics or {}).get("confusion_matrix") or []
    return [str(i) for i in range(len(matrix))]


@bp.route("/runs/<run_id>/publish", methods=["GET", "POST"])
def publish_form(run_id: str):
    """Publish a finished run as a served task (slug, titles, class names; confirm to replace)."""
    run = find_run(run_id)
    classes = run_classes(run)
    form = request.form if request.method == "POST" else publish_defaults(run, classes)
    error, status, needs_confirm = None, 200, False
    names = publish.run_class_names(run)
    figures = publish.run_held_out(run, len(names) or len(classes))
    if request.method == "POST":
        try:
            result = publish.publish_run(run, form.get("slug", ""), form.get("title_en", ""), form.get("title_vi", ""),
                                         form.get("classes", ""), confirm=form.get("confirm") == "yes",
                                         by=current_user.name, confirm_chance=form.get("confirm_chance") == "yes")
        except InvalidInput as exc:
            error, status = exc, exc.status
            needs_confirm = exc.status == 409 and publish.task_exists(form.get("slug", ""))
        else:
            flash(_("Published as %(slug)s: it is served now, without a restart.", slug=result["slug"]))
            if result["replaced"]:
                flash(_("The previous model is kept in %(path)s.", path=result["replaced"]))
            return redirect(url_for("instructor.tasks"), 303)
    text = run.dataset in text_datasets()
    return render_template("instructor/publish.html", run=run, form=form, error=error, needs_confirm=needs_confirm,
                           n_classes=len(classes), figures=figures, names=names, text=text,
                           text_figures=publish.text_figures(run) if text else None), status


def publish_defaults(run: Run, classes: list[str]) -> dict:
    """The publish form's first values: the task published before, else the data set's name and titles."""
    titles = {}
    if run.dataset not in BUILTIN_TASKS:
        try:
            record, _folder = datasets.get_dataset(run.dataset)
            titles = {"title_en": record["title_en"], "title_vi": record["title_vi"]}
        except InvalidInput:
            pass
    slug = run.published_slug or ("" if run.dataset in BUILTIN_TASKS else run.dataset)
    return {"slug": slug, "classes": "\n".join(classes), **titles}


@bp.get("/tasks")
def tasks():
    """The served tasks, with unpublish buttons."""
    return render_template("instructor/tasks.html", entries=list(get_store()), builtin=BUILTIN_TASKS)


@bp.post("/tasks/<slug>/unpublish")
def unpublish_task(slug: str):
    """Stop serving a task (its folder is kept in <instance>/replaced/)."""
    result = publish.unpublish(slug, confirm=request.form.get("confirm") == "yes")
    flash(_("%(slug)s is no longer served; its model is kept in %(path)s.", slug=slug, path=result["replaced"]))
    return redirect(url_for("instructor.tasks"), 303)
