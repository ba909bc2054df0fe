"""The console's submissions page: per data set rules for students' submitted models (recurrent
layers only, a parameter limit, a file-size limit, a target accuracy shown on the leaderboard),
the latest submissions, and the class's results as CSV (one row per nickname: the best finished
run or scored submission). Behind the console's sign-in like every /instructor route.
"""

from __future__ import annotations

import math

from flask import flash, redirect, render_template, request, url_for
from flask_babel import format_decimal, gettext as _
from sqlalchemy import select

from app.csvfile import csv_download, csv_safe
from app.errors import InvalidInput
from app.instructor.blueprints import bp
from app.instructor.settings import set_submission_rules, submission_rules
from app.lab import submissions
from app.records import Submission, db
from app.tasks import TEXT

SUBMISSION_LIMIT = 200  # submissions listed on the page (newest first)


def parse_rules(form, text: bool = False) -> dict:
    """The rules from the console's form (`text`: a text data set's, whose target is a test
    perplexity to reach, at most, instead of an accuracy); InvalidInput (400) naming the field
    that is not valid."""
    def number(name: str, cast, low: float, high: float, msgid: str):
        raw = (form.get(name) or "").strip().replace(",", ".")
        if raw == "":
            return None
        try:  # ASCII only: int() and float() also take Unicode digits such as "٣"
            value = cast(raw) if raw.isascii() else None
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or not low <= value <= high:
            raise InvalidInput(msgid, low=format(low, "g"), high=format(high, "g"))
        return value

    server_mb = submissions.max_upload_bytes() / submissions.MB
    target = None if text else number("target_accuracy", float, 0.0, 100.0,
                                      "The target accuracy must be a percentage from %(low)s to %(high)s.")
    perplexity = number("target_perplexity", float, 1.0, 10.0 ** 9,
                        "The target perplexity must be a number from %(low)s to %(high)s.") if text else None
    return {"recurrent_only": form.get("recurrent_only") in ("1", "on", "true"),
            "max_params": number("max_params", int, 1, 10 ** 9,
                                 "The parameter limit must be a whole number from %(low)s to %(high)s."),
            "max_file_mb": number("max_file_mb", float, 0.01, server_mb,
                                  "The file-size limit must be from %(low)s to %(high)s MB."),
            "target_accuracy": None if target is None else round(target / 100.0, 6),
            "target_perplexity": perplexity}


@bp.get("/submissions")
def submissions_page():
    """Every data set's submission rules, the latest submissions and the results CSV."""
    specs = submissions.submission_datasets()
    latest = db.session.scalars(select(Submission).order_by(Submission.created_at.desc()).limit(SUBMISSION_LIMIT)).all()
    return render_template("instructor/submissions.html", num=format_decimal, datasets=[(slug, spec) for slug, spec in specs.items()],
                           rules={slug: submission_rules(slug) for slug in specs}, submissions=latest,
                           server_mb=format(submissions.max_upload_bytes() / submissions.MB, "g"))


@bp.post("/submissions/rules/<dataset>")
def edit_submission_rules(dataset: str):
    """Store one data set's submission rules."""
    spec = submissions.submission_datasets().get(dataset)
    if spec is None:
        raise InvalidInput("Unknown data set '%(name)s'.", 404, name=dataset[:40])
    set_submission_rules(dataset, parse_rules(request.form, text=spec.kind == TEXT))
    flash(_("Submission rules for %(name)s saved.", name=dataset))
    return redirect(url_for("instructor.submissions_page"), 303)


@bp.get("/results.csv")
def results_csv():
    """The class's results: one row per nickname (and data set), the best finished run or scored
    submission, with its accuracy, parameters, kind and time; `?dataset=` for one data set."""
    dataset = request.args.get("dataset") or None
    if dataset is not None and dataset not in submissions.submission_datasets():
        raise InvalidInput("Unknown data set '%(name)s'.", 404, name=dataset[:40])
    rows = [[csv_safe(row[0]), *row[1:]] for row in submissions.best_results(dataset)]
    return csv_download(f"lstmlab-results{'-' + dataset if dataset else ''}.csv", submissions.RESULT_COLUMNS, rows)
