"""The runs API (/api/v1/runs): thin JSON and server-sent-event routes over app.lab.runs.

Predictions come from the run's own model.tflite through the model store's LiteRT code: this
module never imports TensorFlow.
"""

from __future__ import annotations

import json
import time

from flask import Blueprint, Response, current_app, jsonify, request, stream_with_context

from app.cards import Card, CardError
from app.i18n import current_language
from app.lab import forgery, recipes, runs, texttry
from app.records import DONE, FINISHED, RUNNING, Run, db
from app.security import limited
from app.tasks import IMAGE
from app.views.api import generate_answer, predict_answer

bp = Blueprint("lab_api", __name__)

bp.after_app_request(runs.set_owner_cookie)
bp.before_request(forgery.check_forgery)  # the blueprint is CSRF-exempt, yet reads cookies


@bp.post("/api/v1/runs")
def create_run():
    """JSON recipe -> 202 with the queued run's id, status, queue position and links."""
    payload = request.get_json(silent=True)
    if payload is None and request.form:
        payload = request.form.to_dict()
    if not isinstance(payload, dict):
        raise recipes.refusal("The request must be a JSON object.")
    try:
        run = runs.submit_run(payload)
    except runs.QueueFull as exc:
        lang = current_language()
        return jsonify({"error": exc.message(lang), "error_en": exc.en, "error_vi": exc.vi, "status": 429,
                        "queue_position": exc.queue_position}), 429
    warnings = [{"en": w.en, "vi": w.vi, "message": w.message(current_language())}
                for w in runs.learning_warnings(run.dataset, run.settings)]
    body = {"id": run.id, "status": run.status, "queue_position": runs.queue_position(run), "links": runs.run_links(run),
            "warnings": warnings}
    return jsonify(body), 202, {"Location": body["links"]["self"]}


@bp.get("/api/v1/runs")
def list_runs():
    """Runs, newest first: `?dataset=` (the leaderboard), `?status=`, `?mine=1`, `?limit=` (≤ 1000)."""
    limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 1000))
    found = runs.list_runs(dataset=request.args.get("dataset"), status=request.args.get("status"),
                           mine=request.args.get("mine") in ("1", "true"), limit=limit)
    return jsonify({"runs": [runs.run_json(r) for r in found], "count": len(found)})


@bp.get("/api/v1/runs/<run_id>")
def get_run(run_id: str):
    """One run: status, progress, per-epoch history, metrics, error."""
    return jsonify(runs.run_json(runs.find_run(run_id)))


MODEL_FORMATS = {"keras": "model.keras", "tflite": "model.tflite"}


@bp.get("/api/v1/runs/<run_id>/model")
def run_model(run_id: str):
    """A finished run's model.keras (`?format=tflite`: model.tflite) for its owner or an instructor
    (cookie, session or Bearer token), as the page's download: provenance in X-Provenance."""
    name = MODEL_FORMATS.get(request.args.get("format", "keras"))
    if name is None:
        raise recipes.refusal("The model format must be keras or tflite.")
    path, note = runs.download_file(runs.find_run(run_id), name)
    return runs.send_download(path, f"lstmlab_{run_id}_{name}", note)


@bp.get("/api/v1/runs/<run_id>/card")
def run_card(run_id: str):
    """The finished run's card.json (the same card `python -m training` writes)."""
    run = runs.find_run(run_id)
    path = runs.run_folder(run) / "card.json"
    if run.status != FINISHED or not path.is_file():
        raise recipes.refusal("Run %(id)s has not finished: there is no model to show yet.", 409, id=run.id)
    try:
        return jsonify(Card.from_json(path).to_json())
    except CardError as exc:
        raise recipes.refusal("The model of run %(id)s cannot be loaded.", 503, id=run.id) from exc


@bp.post("/api/v1/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Cancel a waiting or running run (owner or instructor)."""
    run = runs.cancel_run_record(runs.find_run(run_id))
    return jsonify(runs.run_json(run)), 202


@bp.delete("/api/v1/runs/<run_id>")
def delete_run(run_id: str):
    """Delete an ended run's record and files (owner or instructor); 409 while it is active."""
    runs.delete_run_record(runs.find_run(run_id))
    return "", 204


@bp.post("/api/v1/runs/<run_id>/predict")
def predict_run(run_id: str):
    """Multipart `file` -> top-k classes from the run's own model (the task predict's answer)."""
    run = runs.find_run(run_id)
    return jsonify({"run": run.id, **predict_answer(runs.finished_entry(run, IMAGE))})


@bp.post("/api/v1/runs/<run_id>/generate")
@limited(*texttry.RUN_GENERATE)
def generate_run(run_id: str):
    """A text run's generation from its own model: the task generate's answer (JSON, or
    server-sent events with `?stream=1`)."""
    run = runs.find_run(run_id)
    return generate_answer(texttry.text_entry(run), run=run.id)


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def status_event(run: Run) -> dict:
    """The `status` event: status, queue position, error, and the metrics once finished."""
    return {"id": run.id, "status": run.status, "queue_position": runs.queue_position(run), "error": run.error,
            "metrics": run.metrics if run.status == FINISHED else None, "params": run.params, "seconds": run.seconds}


@bp.get("/api/v1/runs/<run_id>/events")
def run_events(run_id: str):
    """Server-sent events read from the record: `status` on every change, `epoch` per finished
    epoch (all earlier ones first), `points` with the training points written since the last
    event (every few batches), `progress` within an epoch; ends when the run ends."""
    run = runs.find_run(run_id)
    poll = float(current_app.config["LAB_SSE_POLL"])
    lifetime = float(current_app.config["LAB_SSE_SECONDS"])

    def stream():
        last_status, epochs_sent, points_sent, last_progress = None, 0, 0, None
        t_end, t_beat = time.monotonic() + lifetime, time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            current = db.session.get(Run, run.id, populate_existing=True)
            if current is None:
                yield sse("status", {"id": run.id, "status": "deleted"})
                return
            status = (current.status, runs.queue_position(current))
            history = current.history or []
            for entry in history[epochs_sent:]:
                yield sse("epoch", entry)
            epochs_sent = len(history)
            progress = dict(current.progress or {})
            points = progress.pop("points", None) or []
            if len(points) < points_sent:  # a resumed run starts again from its last finished epoch
                points_sent = 0
            if points[points_sent:]:
                yield sse("points", {"points": points[points_sent:]})
                points_sent = len(points)
            if progress != last_progress and current.status == RUNNING:
                yield sse("progress", progress)
                last_progress = progress
            if status != last_status:
                yield sse("status", status_event(current))
                last_status = status
            db.session.rollback()  # end the read transaction: the next poll sees the consumer's writes
            if current.status in DONE or time.monotonic() > t_end:
                return
            if time.monotonic() - t_beat > 15:
                yield ": keep-alive\n\n"
                t_beat = time.monotonic()
            time.sleep(poll)

    return Response(stream_with_context(stream()), mimetype="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
