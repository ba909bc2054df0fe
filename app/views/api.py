"""The JSON API (/api/v1/...) and the health probes (/healthz, /readyz).

Errors are JSON {"error", "error_en", "error_vi", "status"} (see views/errors.py); `?lang=`
or the language cookie picks the language of "error" and "label".
"""

from __future__ import annotations

import json

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context, url_for

from app.config import split_words
from app.decoding import generate, generate_stream, validate_request
from app.errors import InvalidInput
from app.i18n import current_language
from app.inference import TOP_K, classify_upload, png_data_url
from app.modelstore import Entry, get_store
from app.security import limited
from app.tasks import IMAGE, TEXT
from app.views.limits import GENERATE, TRACE
from app.views.lstm import image_trace_json, text_trace_json, wants_trace
from app.views.pages import find_entry, read_upload

bp = Blueprint("api", __name__)


def describe(entry: Entry) -> dict:
    """A task as the API lists it."""
    spec, lang = entry.spec, current_language()
    key, value = entry.metric()
    out = {"slug": spec.slug, "kind": spec.kind, "title": spec.title(lang), "title_en": spec.title_en,
           "title_vi": spec.title_vi, "summary": spec.summary(lang), **entry.status_dict(),
           "metric": {"name": key, "value": value},
           "page": url_for("pages.task", slug=spec.slug, _external=True),
           "card": url_for("pages.card", slug=spec.slug, _external=True)}
    if spec.kind == IMAGE:
        out["input_shape"] = list(spec.input_shape)
        out["classes"] = [{"en": c.en, "vi": c.vi} for c in spec.classes]
        out["predict"] = url_for("api.predict", slug=spec.slug, _external=True)
    else:
        out["generate"] = url_for("api.generate_text", slug=spec.slug, _external=True)
    return out


@bp.get("/api/v1/tasks")
def tasks():
    """Every task with its status (unavailable ones carry the command that trains them)."""
    return jsonify({"tasks": [describe(e) for e in get_store()]})


def ready_entry(slug: str, kind: str) -> Entry:
    """The loaded task `slug` of `kind`, or a bilingual 404 / 400 / 503."""
    entry = find_entry(slug)
    if entry.spec.kind != kind:
        if kind == IMAGE:
            raise InvalidInput("'%(slug)s' is not an image task.", 400, slug=slug)
        raise InvalidInput("'%(slug)s' is not a text task.", 400, slug=slug)
    if not entry.available:
        raise InvalidInput("This task's model is not available.", 503)
    return entry


@bp.post("/api/v1/tasks/<slug>/predict")
@limited(TRACE)
def predict(slug: str):
    """Multipart field `file` -> top-k classes with probabilities (`?k=`, `?image=1` for the
    preprocessed picture as a data URL)."""
    return jsonify(predict_answer(ready_entry(slug, IMAGE)))


def predict_answer(entry: Entry) -> dict:
    """The predict answer for the request's uploaded `file` over a loaded image model (a task's,
    or a lab-bench run's)."""
    k = request.args.get("k", TOP_K, type=int)
    array, result = classify_upload(entry.predict, entry.spec, read_upload(), k=max(1, min(k, len(entry.spec.classes))))
    lang = current_language()
    for item in result["top"]:
        item["label"] = item["label_vi"] if lang == "vi" else item["label_en"]
    body = {"task": entry.spec.slug, "prediction": result["top"][0], **result, "input_shape": list(array.shape)}
    if request.args.get("image") in ("1", "true"):
        body["image"] = png_data_url(array)
    if wants_trace(request.args.get("trace") or request.form.get("trace")):
        body["trace"] = image_trace_json(entry, array)
    return body


@bp.post("/api/v1/tasks/<slug>/generate")
@limited(*GENERATE)
def generate_text(slug: str):
    """JSON parameters -> generated text as JSON, or as server-sent events with `?stream=1`
    (or `Accept: text/event-stream`): one `data: {...}` event per token/line, then the summary."""
    return generate_answer(ready_entry(slug, TEXT), task=slug)


def generate_answer(entry: Entry, **label):
    """The generate answer for the request's parameters over a loaded text model (a task's, or a
    lab-bench run's): server-sent events when asked for, else JSON starting with `label`."""
    params = json_body()
    if params is None:
        if not request.form:
            raise InvalidInput("The request body must be valid JSON.")
        params = request.form.to_dict()
    req = validate_request(entry.spec, params)
    if request.args.get("stream") in ("1", "true") or request.accept_mimetypes.best == "text/event-stream":
        return Response(stream_with_context(sse(entry, req)), mimetype="text/event-stream",
                        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    path = [] if wants_trace(params.get("trace")) else None
    result = generate(entry.text_model, req, path)
    if path is not None:
        result["trace"] = text_trace_json(entry.text_model, path)
    return jsonify({**label, **result})


def json_body():
    """The request's JSON, None when there is none; a 400 for JSON Python can parse but not
    serve back (nested thousands deep, or unpaired UTF-16 surrogates that no UTF-8 reply can hold)."""
    try:
        body = request.get_json(silent=True)
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except (RecursionError, UnicodeEncodeError):
        raise InvalidInput("The request body must be valid JSON.") from None
    return body


def sse(entry: Entry, req):
    """The generation events as server-sent events."""
    for event in generate_stream(entry.text_model, req):
        yield "data: " + json.dumps(event, ensure_ascii=False) + "\n\n"


@bp.get("/healthz")
def healthz():
    """Liveness: the process answers."""
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz():
    """Readiness: 200 once model loading has finished and a task is ready (every task of
    REQUIRED_TASKS, when set), with each task's status (ready, missing or error + the command
    that trains it); 503 otherwise, so a load balancer sends no traffic to an empty server."""
    status = get_store().status()
    ready = [s for s, t in status["tasks"].items() if t["status"] == "ready"]
    required = split_words(current_app.config.get("REQUIRED_TASKS"))
    serving = all(s in ready for s in required) if required else bool(ready)
    body = {"ready": bool(status["loaded"] and serving), "ready_tasks": ready,
            "unavailable_tasks": sorted(set(status["tasks"]) - set(ready)), **status}
    if required:
        body["required_tasks"] = required
    return jsonify(body), 200 if body["ready"] else 503
