"""Submission routes: the page /lab/<dataset>/submit (a server-rendered form with its CSRF token,
no JavaScript needed), a submission's status page, and the JSON API POST /api/v1/submissions
(multipart) and GET /api/v1/submissions/<id>. Thin routes over app.lab.submissions.
"""

from __future__ import annotations

from flask import Blueprint, jsonify, redirect, render_template, request, url_for
from flask_babel import format_decimal

from app.errors import InvalidInput
from app.i18n import current_language
from app.instructor.settings import submission_rules
from app.lab import forgery, runs, submissions
from app.lab.textrecipes import TEXT_RANGES, text_datasets
from app.records import SUBMISSION_ACTIVE
from app.security import csrf
from app.tasks import TEXT
from app.text import SNIPPET, SPECIALS

bp = Blueprint("lab_submit", __name__)
api_bp = Blueprint("lab_submit_api", __name__)
api_bp.before_request(forgery.check_forgery)  # CSRF-exempt like /api/v1/runs, and reads the same cookies
UPLOAD_ENDPOINTS = ("lab_submit.submit_page", "lab_submit_api.create_submission")
FORM_SLACK = 2 ** 20  # the form's other fields and multipart boundaries


@bp.context_processor
def submit_helpers() -> dict:
    """Number formatting for the submission pages."""
    return {"num": format_decimal}


def raise_upload_limit() -> None:
    """The submission routes accept a .keras file, a notebook and a vocabulary instead of
    MAX_CONTENT_LENGTH (runs before the CSRF check reads the form)."""
    if request.endpoint in UPLOAD_ENDPOINTS and request.method == "POST":
        request.max_content_length = (submissions.max_upload_bytes() + submissions.MAX_NOTEBOOK_BYTES
                                      + submissions.MAX_VOCABULARY_BYTES + FORM_SLACK)


def find_spec(dataset: str):
    """The image or text data set `dataset`, or a bilingual 404."""
    return text_datasets().get(dataset) or runs.find_dataset(dataset)


def page_context(dataset: str) -> dict:
    """What the submit page shows: the data set, its rules in force and the server's file limit
    (a text data set: what its language model and vocabulary must be)."""
    spec = find_spec(dataset)
    text = spec.kind == TEXT
    markers = (SNIPPET,) if text and (spec.extra or {}).get("aux_text", "none") != "none" else ()
    return {"dataset": dataset, "dataset_title": spec.title(current_language()), "spec": spec, "text": text,
            "specials": ", ".join((*SPECIALS, *markers)), "default_seed": submissions.DEFAULT_SPLIT_SEED,
            "seed_range": TEXT_RANGES["seed"], "seed": submissions.DEFAULT_SPLIT_SEED,
            "rules": submission_rules(dataset), "max_mb": format(submissions.max_upload_bytes() / submissions.MB, "g")}


@bp.route("/lab/<dataset>/submit", methods=["GET", "POST"])
def submit_page(dataset: str):
    """Hand in a model trained elsewhere: nickname, .keras file, optional notebook."""
    context = page_context(dataset)
    error, status, nickname = None, 200, ""
    if request.method == "POST":
        nickname = request.form.get("nickname", "")
        context["seed"] = request.form.get("seed", context["seed"])
        try:
            record = submissions.submit({**request.form.to_dict(), "dataset": dataset}, request.files)
            return redirect(url_for("lab_submit.submission_page", submission_id=record.id), 303)
        except InvalidInput as exc:
            error, status = exc.message(current_language()), exc.status
    return render_template("lab/submit.html", error=error, nickname=nickname, **context), status


@bp.get("/lab/submissions/<submission_id>")
def submission_page(submission_id: str):
    """A submission: queued, scoring, then its result (accuracy, parameters, layers) or why it was refused."""
    record = submissions.find_submission(submission_id)
    spec = text_datasets().get(record.dataset) or runs.datasets().get(record.dataset)
    error = record.error["vi" if current_language() == "vi" else "en"] if record.error else None
    return render_template("lab/submission.html", sub=record, error=error, active=record.status in SUBMISSION_ACTIVE,
                           rules=submission_rules(record.dataset),
                           dataset_title=spec.title(current_language()) if spec else record.dataset)


@api_bp.post("/api/v1/submissions")
def create_submission():
    """Multipart (dataset, nickname, model, optional notebook; a text data set's also vocabulary and
    seed) -> 202 with the queued submission."""
    record = submissions.submit(request.form, request.files)
    body = record.to_dict()
    return jsonify(body), 202, {"Location": body["links"]["self"]}


@api_bp.get("/api/v1/submissions")
def list_submissions():
    """Submissions, newest first: `?dataset=`, `?mine=1`, `?limit=` (≤ 1000)."""
    limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 1000))
    found = submissions.list_submissions(dataset=request.args.get("dataset"),
                                         mine=request.args.get("mine") in ("1", "true"), limit=limit)
    return jsonify({"submissions": [s.to_dict() for s in found], "count": len(found)})


@api_bp.get("/api/v1/submissions/<submission_id>")
def get_submission(submission_id: str):
    """One submission: status, then accuracy, parameters and layer table, or the refusal."""
    return jsonify(submissions.find_submission(submission_id).to_dict())


def init_app(app) -> None:
    """Register the submission pages and API (the API without a form token, guarded by lab.forgery like /api/v1/runs)."""
    csrf.exempt(api_bp)
    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    app.before_request_funcs.setdefault(None, []).insert(0, raise_upload_limit)
