"""The instructor's JSON API (data sets, publishing, unpublishing, the queue), behind
`Authorization: Bearer <token>` only: no cookie is read here.
Details: docs/DESIGN.md, "The instructor's JSON API (app/instructor/api.py)"."""

from __future__ import annotations

from flask import g, jsonify, request

from app.errors import InvalidInput
from app.instructor import corpora, datasets, publish, settings
from app.instructor.auth import STUDENT_COOKIES, instructor_for_token
from app.instructor.blueprints import api_bp
from app.lab.runs import find_run
from app.views.errors import respond


@api_bp.before_request
def require_token():
    """401 (with WWW-Authenticate) unless the request carries a valid bearer token (not revoked,
    not expired: an expired one is told so)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    try:
        user = instructor_for_token(token.strip()) if scheme.lower() == "bearer" else None
    except InvalidInput as expired:
        return unauthorized(expired)
    if user is None:
        if not header and any(request.cookies.get(c) for c in STUDENT_COOKIES):
            return respond(InvalidInput("Only instructors (with an API token) can use this address.", 403))
        return unauthorized(InvalidInput("A valid API token is required: Authorization: Bearer <token>.", 401))
    g.instructor = user


def unauthorized(error: InvalidInput):
    """The 401 answer with its WWW-Authenticate challenge."""
    response = respond(error)
    response.headers["WWW-Authenticate"] = 'Bearer realm="lstmlab"'
    return response


def json_body() -> dict:
    """The request's JSON object, or form fields; a bilingual 400 for anything else."""
    body = request.get_json(silent=True)
    if body is None:
        body = request.form.to_dict()
    if not isinstance(body, dict):
        raise InvalidInput("The body must be a JSON object.")
    return body


def truthy(value) -> bool:
    """A JSON or form flag."""
    return value is True or str(value).lower() in ("1", "true", "yes", "on")


@api_bp.post("/api/v1/datasets")
def create_dataset():
    """Upload, check, index and save a zip data set in one request: 201 with its record."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput("Send the zip as the multipart field 'file'.")
    form = request.form
    datasets.check_choices(form.get("slug", ""), form.get("title_en", ""), form.get("title_vi", ""),
                           form.get("image_size") or datasets.SIZES[2], form.get("colour") or "rgb")
    token, preview = datasets.stage_zip(upload.stream, upload.filename)
    try:
        record = datasets.save_dataset(token, form.get("slug", ""), form.get("title_en", ""), form.get("title_vi", ""),
                                       form.get("image_size"), form.get("colour"), created_by=g.instructor.name)
    except InvalidInput:
        datasets.discard(token)
        raise
    thumbs = {c["name"]: len(c["thumbs"]) for c in preview["classes"]}
    return jsonify({"dataset": record, "thumbnails": thumbs}), 201


@api_bp.post("/api/v1/corpora")
def create_corpus():
    """Upload, check, split and save a UTF-8 text corpus in one request: 201 with its record."""
    upload = request.files.get("file")
    if upload is None or not upload.filename:
        raise InvalidInput("Send the text file as the multipart field 'file'.")
    form = request.form
    datasets.check_names(form.get("slug", ""), form.get("title_en", ""), form.get("title_vi", ""))
    token, _preview = corpora.stage_corpus(upload.stream, upload.filename)
    try:
        record = corpora.save_corpus(token, form.get("slug", ""), form.get("title_en", ""), form.get("title_vi", ""),
                                     created_by=g.instructor.name)
    except InvalidInput:
        datasets.discard(token)
        raise
    return jsonify({"dataset": record}), 201


@api_bp.get("/api/v1/datasets")
def list_datasets():
    """Every instructor data set (image or text) with its classes or vocabulary, counts and split."""
    return jsonify({"datasets": datasets.summaries(r for r, _f in datasets.iter_datasets())})


@api_bp.delete("/api/v1/datasets/<slug>")
def delete_dataset(slug: str):
    """Delete a data set (409 while runs on it are queued or running)."""
    datasets.delete_dataset(slug)
    return jsonify({"deleted": slug})


@api_bp.post("/api/v1/runs/<run_id>/publish")
def publish_run(run_id: str):
    """Serve a finished run as task `slug` (409 when it exists, or when its test accuracy is not
    clearly above chance, unless "confirm": true)."""
    body = json_body()
    confirm = truthy(body.get("confirm"))
    result = publish.publish_run(find_run(run_id), str(body.get("slug", "")), str(body.get("title_en", "")),
                                 str(body.get("title_vi", "")), body.get("classes"), confirm=confirm,
                                 by=g.instructor.name, confirm_chance=confirm)
    return jsonify({"published": result["slug"], "replaced": result["replaced"], "run": run_id}), 201


@api_bp.delete("/api/v1/tasks/<slug>")
def unpublish_task(slug: str):
    """Stop serving task `slug` (kept in <instance>/replaced/); ?confirm=1 for a shipped task."""
    result = publish.unpublish(slug, confirm=truthy(request.args.get("confirm")))
    return jsonify({"unpublished": slug, "replaced": result["replaced"]})


@api_bp.post("/api/v1/queue/<action>")
def queue_action(action: str):
    """Pause or resume the queue."""
    if action not in ("pause", "resume"):
        raise InvalidInput("Unknown queue action: use pause or resume.", 404)
    settings.set_queue_paused(action == "pause")
    return jsonify({"paused": settings.queue_paused()})
