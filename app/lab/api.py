"""The runs API (/api/v1/runs) and the engine calls the bench's pages share with it.

The web side only writes a new record and enqueues it (`submit_run`), flips a cancel flag
(`cancel_run_record`) and otherwise reads records; consumers train. A run belongs to the browser
that started it: a random token in the signed `lab_owner` cookie (no account, no personal data);
only its owner or an instructor may cancel or delete it. Limits: the recipe's own
(`recipes.validate`, 400), then queued runs per browser, per client address and in the whole
queue (429 with the queue position to expect). Predictions come from the run's own model.tflite
through the model store's LiteRT code: this module never imports TensorFlow.
"""

from __future__ import annotations

import json
import secrets
import shutil
import threading
import time
from collections import OrderedDict
from pathlib import Path

from flask import Blueprint, Response, current_app, g, jsonify, request, stream_with_context
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, update

from app.cards import Card, CardError
from app.errors import InvalidInput
from app.i18n import current_language
from app.instructor.access import may_train
from app.instructor.auth import instructor_for_token
from app.lab import queue, recipes
from app.records import (ACTIVE, CANCELLED, DONE, FINISHED, INTERRUPTED, QUEUED, RUNNING, Run, db, utcnow)

bp = Blueprint("lab_api", __name__)

OWNER_COOKIE = "lab_owner"
OWNER_MAX_AGE = 365 * 24 * 3600
WAITING = (QUEUED, INTERRUPTED)  # in the queue, not yet (or no longer) on a consumer


class QueueFull(InvalidInput):
    """A 429 refusal that carries the queue position a run submitted now would get."""

    def __init__(self, msgid: str, queue_position: int, **params):
        super().__init__(msgid, 429, **params)
        self.queue_position = queue_position


# ----------------------------------------------------------------------------- ownership
def _serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.secret_key, salt="lab-owner")


def owner_token(create: bool = False) -> str | None:
    """This browser's owner token from its signed cookie; a new one (set on the response) when
    `create` and there is none or it was tampered with."""
    if "lab_owner" in g:
        return g.lab_owner
    try:
        token = _serializer().loads(request.cookies.get(OWNER_COOKIE, ""))
    except BadSignature:  # no cookie, or one not signed by this server
        token = None
    if not isinstance(token, str) or len(token) != 32:
        token = None
    if token is None and create:
        token = secrets.token_hex(16)
        g.lab_owner_new = True
    if token is not None:
        g.lab_owner = token
    return token


@bp.after_app_request
def set_owner_cookie(response):
    """Hand a new owner token to the browser (HttpOnly, SameSite=Lax, signed)."""
    if g.get("lab_owner_new"):
        response.set_cookie(OWNER_COOKIE, _serializer().dumps(g.lab_owner), max_age=OWNER_MAX_AGE, httponly=True,
                            samesite="Lax", secure=request.is_secure)
    return response


def is_instructor() -> bool:
    """True for a signed-in instructor (Flask-Login session) or a valid instructor Bearer token."""
    if current_user.is_authenticated:
        return True
    header = request.headers.get("Authorization", "")
    return header.startswith("Bearer ") and instructor_for_token(header[len("Bearer "):].strip()) is not None


def may_manage(run: Run) -> bool:
    """The run's owner (by cookie) or an instructor."""
    owner = owner_token(create=False)
    return bool(owner and secrets.compare_digest(owner, run.owner or "")) or is_instructor()


# ----------------------------------------------------------------------------- submitting
def client_address() -> str:
    """The client's address as the server sees it (behind a proxy: configure ProxyFix)."""
    return (request.remote_addr or "unknown")[:64]


def waiting_count(*conditions) -> int:
    """Active runs (queued, running, interrupted) matching `conditions`."""
    return db.session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(ACTIVE), *conditions)) or 0


def queue_position(run: Run) -> int | None:
    """1 + the runs waiting before this one; None once it has left the queue."""
    if run.status not in WAITING:
        return None
    return 1 + (db.session.scalar(select(func.count()).select_from(Run).where(
        Run.status.in_(WAITING), Run.created_at < run.created_at)) or 0)


def check_limits(limits: recipes.Limits, owner: str, client: str) -> None:
    """429 (QueueFull) when this browser, this address or the whole queue has too many runs."""
    expected = 1 + (db.session.scalar(select(func.count()).select_from(Run).where(Run.status.in_(WAITING))) or 0)
    checks = [
        (Run.owner == owner, limits.runs_per_browser,
         "This browser already has %(n)s runs waiting or training; wait until one ends."),
        (Run.client == client, limits.runs_per_client,
         "Your network address already has %(n)s runs waiting or training; wait until one ends."),
    ]
    for condition, limit, msgid in checks:
        if limit and waiting_count(condition) >= limit:
            raise QueueFull(msgid, expected, n=limit)
    if limits.queue_length and expected - 1 >= limits.queue_length:
        raise QueueFull("The queue is full (%(n)s runs waiting); try again when it is shorter.", expected,
                        n=limits.queue_length)


def submit_run(payload) -> Run:
    """Validate `payload` (the API's JSON or the bench's form), check the limits, write a queued
    record and enqueue it; InvalidInput (400/403) or QueueFull (429) with nothing queued."""
    from app.lab.views import throughput  # the bench's pages import this module

    verdict = may_train()  # the instructor's access mode: closed, or a class code not entered
    if verdict is not True:
        raise verdict
    limits = recipes.current_limits()
    models_dir = Path(current_app.config["MODELS_DIR"])
    datasets = recipes.available_datasets()
    recipe, settings = recipes.validate(payload, limits, datasets, throughput(), models_dir)
    nickname = recipes.validate_nickname(payload.get("nickname"))
    owner, client = owner_token(create=True), client_address()
    check_limits(limits, owner, client)
    run = Run(dataset=payload["dataset"], recipe=recipe, settings=settings, nickname=nickname, owner=owner,
              client=client, status=QUEUED, params=recipes.param_count(datasets[payload["dataset"]], recipe),
              progress={}, history=[], metrics={})
    db.session.add(run)
    db.session.commit()
    try:
        task_id = queue.enqueue_run(run.id)
    except Exception:  # the queue is down: nothing may stay recorded as queued
        db.session.delete(run)
        db.session.commit()
        raise
    run.queue_task_id = task_id
    db.session.commit()
    return run


def cancel_run_record(run: Run) -> Run:
    """Cancel `run` for its owner or an instructor: a waiting run is cancelled at once, a running
    one gets its cancel flag (its consumer stops within one batch); 403 / 409 otherwise."""
    if not may_manage(run):
        raise recipes.refusal("Only the browser that started this run, or an instructor, may change it.", 403)
    if run.status in DONE:
        raise recipes.refusal("Run %(id)s has already ended (%(state)s).", 409, id=run.id, state=run.status)
    db.session.execute(update(Run).where(Run.id == run.id, Run.status.in_(WAITING))
                       .values(status=CANCELLED, cancel_requested=True, finished_at=utcnow()))
    db.session.execute(update(Run).where(Run.id == run.id, Run.status == RUNNING).values(cancel_requested=True))
    db.session.commit()
    db.session.refresh(run)
    return run


# ----------------------------------------------------------------------------- a run's model
_models: OrderedDict = OrderedDict()
_models_lock = threading.Lock()
MODELS_KEPT = 8  # finished runs' LiteRT models kept loaded per web worker


def run_folder(run: Run) -> Path:
    """<instance>/runs/<id>/: the run's model.keras, model.tflite, card.json and plots."""
    return Path(current_app.instance_path) / "runs" / run.id


def run_entry(run: Run):
    """The finished run's model as the model store serves one (LiteRT over its own model.tflite,
    never TensorFlow); None when its folder or card is missing."""
    from app.modelstore import ERROR, PLOTS, READY, Entry, litert_predict

    folder = run_folder(run)
    card_path = folder / "card.json"
    try:
        stamp = card_path.stat().st_mtime_ns
    except OSError:
        return None
    with _models_lock:
        cached = _models.get(run.id)
        if cached and cached[0] == stamp:
            _models.move_to_end(run.id)
            return cached[1]
    try:
        card = Card.from_json(card_path)
        spec = card.spec
        entry = Entry(spec, card=card)
        entry.folder = folder  # app.trace.get_tracer reads this run's weights, not models/<task>/
        pool = litert_predict(folder, card, spec, int(current_app.config.get("LITERT_INTERPRETERS", 2)),
                              bool(current_app.config.get("PREDICT_INT8", True)))
        if pool is None:
            entry.status, entry.error = ERROR, "model.tflite is missing or stale"
        else:
            entry.status, entry.predict, entry.engine, entry.precision = READY, pool, "litert", pool.precision
        entry.plots = [p for p in PLOTS if (folder / p).is_file()]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        current_app.logger.warning("run %s: model not loaded (%s)", run.id, exc)
        return None
    with _models_lock:
        _models[run.id] = (stamp, entry)
        while len(_models) > MODELS_KEPT:
            _models.popitem(last=False)
    return entry


def finished_entry(run: Run):
    """The finished run's served model, or 409 (not finished) / 503 (its model cannot be loaded)."""
    if run.status != FINISHED:
        raise recipes.refusal("Run %(id)s has not finished: there is no model to show yet.", 409, id=run.id)
    entry = run_entry(run)
    if entry is None or not entry.available:
        raise recipes.refusal("The model of run %(id)s cannot be loaded.", 503, id=run.id)
    return entry


# ----------------------------------------------------------------------------- routes
def find_run(run_id: str) -> Run:
    """The run `run_id` or a bilingual 404."""
    run = db.session.get(Run, run_id) if isinstance(run_id, str) and len(run_id) <= 12 else None
    if run is None:
        raise recipes.refusal("There is no run %(id)s.", 404, id=str(run_id)[:12])
    return run


def run_json(run: Run) -> dict:
    """A run as the API returns it, with its queue position."""
    return {**run.to_dict(), "queue_position": queue_position(run)}


@bp.post("/api/v1/runs")
def create_run():
    """JSON recipe -> 202 with the queued run's id, status, queue position and links."""
    payload = request.get_json(silent=True)
    if payload is None and request.form:
        payload = request.form.to_dict()
    if not isinstance(payload, dict):
        raise recipes.refusal("The request must be a JSON object.")
    try:
        run = submit_run(payload)
    except QueueFull as exc:
        lang = current_language()
        return jsonify({"error": exc.message(lang), "error_en": exc.en, "error_vi": exc.vi, "status": 429,
                        "queue_position": exc.queue_position}), 429
    body = {"id": run.id, "status": run.status, "queue_position": queue_position(run), "links": run.links()}
    return jsonify(body), 202, {"Location": body["links"]["self"]}


@bp.get("/api/v1/runs")
def list_runs():
    """Runs, newest first: `?dataset=` (the leaderboard), `?status=`, `?mine=1`, `?limit=` (≤ 1000)."""
    query = select(Run)
    dataset = request.args.get("dataset")
    if dataset:
        query = query.where(Run.dataset == dataset)
    status = request.args.get("status")
    if status:
        query = query.where(Run.status == status)
    if request.args.get("mine") in ("1", "true"):
        query = query.where(Run.owner == (owner_token(create=False) or "-"))
    limit = max(1, min(request.args.get("limit", 200, type=int) or 200, 1000))
    runs = db.session.scalars(query.order_by(Run.created_at.desc()).limit(limit)).all()
    return jsonify({"runs": [run_json(r) for r in runs], "count": len(runs)})


@bp.get("/api/v1/runs/<run_id>")
def get_run(run_id: str):
    """One run: status, progress, per-epoch history, metrics, error."""
    return jsonify(run_json(find_run(run_id)))


@bp.get("/api/v1/runs/<run_id>/card")
def run_card(run_id: str):
    """The finished run's card.json (the same card `python -m training` writes)."""
    run = find_run(run_id)
    path = run_folder(run) / "card.json"
    if run.status != FINISHED or not path.is_file():
        raise recipes.refusal("Run %(id)s has not finished: there is no model to show yet.", 409, id=run.id)
    try:
        return jsonify(Card.from_json(path).to_json())
    except CardError as exc:
        raise recipes.refusal("The model of run %(id)s cannot be loaded.", 503, id=run.id) from exc


@bp.post("/api/v1/runs/<run_id>/cancel")
def cancel_run(run_id: str):
    """Cancel a waiting or running run (owner or instructor)."""
    run = cancel_run_record(find_run(run_id))
    return jsonify(run_json(run)), 202


@bp.delete("/api/v1/runs/<run_id>")
def delete_run(run_id: str):
    """Delete an ended run's record and files (owner or instructor); 409 while it is active."""
    run = find_run(run_id)
    if not may_manage(run):
        raise recipes.refusal("Only the browser that started this run, or an instructor, may change it.", 403)
    if run.status not in DONE:
        raise recipes.refusal("Cancel run %(id)s before deleting it.", 409, id=run.id)
    folder = run_folder(run)
    db.session.delete(run)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)
    with _models_lock:
        _models.pop(run_id, None)
    return "", 204


@bp.post("/api/v1/runs/<run_id>/predict")
def predict_run(run_id: str):
    """Multipart `file` -> top-k classes from the run's own model (the task predict's answer)."""
    from app.views.api import predict_answer

    run = find_run(run_id)
    return jsonify({"run": run.id, **predict_answer(finished_entry(run))})


def sse(event: str, data: dict) -> str:
    """One server-sent event."""
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def status_event(run: Run) -> dict:
    """The `status` event: status, queue position, error, and the metrics once finished."""
    return {"id": run.id, "status": run.status, "queue_position": queue_position(run), "error": run.error,
            "metrics": run.metrics if run.status == FINISHED else None, "params": run.params, "seconds": run.seconds}


@bp.get("/api/v1/runs/<run_id>/events")
def run_events(run_id: str):
    """Server-sent events read from the record: `status` on every change, `epoch` per finished
    epoch (all earlier ones first), `progress` within an epoch; ends when the run ends."""
    run = find_run(run_id)
    poll = float(current_app.config.get("LAB_SSE_POLL", 0.5))
    lifetime = float(current_app.config.get("LAB_SSE_SECONDS", 600))

    def stream():
        last_status, epochs_sent, last_progress = None, 0, None
        t_end, t_beat = time.monotonic() + lifetime, time.monotonic()
        yield "retry: 2000\n\n"
        while True:
            current = db.session.get(Run, run.id, populate_existing=True)
            if current is None:
                yield sse("status", {"id": run.id, "status": "deleted"})
                return
            status = (current.status, queue_position(current))
            history = current.history or []
            for entry in history[epochs_sent:]:
                yield sse("epoch", entry)
            epochs_sent = len(history)
            progress = current.progress or {}
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
