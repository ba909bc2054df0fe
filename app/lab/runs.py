"""Runs as a service: submit, cancel, find, own, and load a finished run's model.

The web side only writes a new record and enqueues it, flips a cancel flag and otherwise reads
records; consumers train. A run belongs to the browser that started it (a random token in the
signed `lab_owner` cookie) or to an instructor. The API and the bench's pages both call this module.
"""

from __future__ import annotations

import json
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import current_app, g, request, send_from_directory, url_for
from flask_login import current_user
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import func, select, update

from app.errors import InvalidInput
from app.instructor.access import may_train
from app.instructor.auth import instructor_for_token
from app.lab import queue, recipes, textrecipes
from app.lab.naming import run_name
from app.lab.recipes import Throughput
from app.modelstore import get_store
from app.records import ACTIVE, CANCELLED, DONE, FINISHED, INTERRUPTED, QUEUED, RUNNING, Run, as_utc, db, utcnow
from app.tasks import IMAGE, TEXT, TaskSpec

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


def set_owner_cookie(response):
    """Hand a new owner token to the browser (HttpOnly, SameSite=Lax, signed): an after-request hook."""
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
    verdict = may_train()  # the instructor's access mode: closed, or a class code not entered
    if verdict is not True:
        raise verdict
    limits = recipes.current_limits()
    models_dir = Path(current_app.config["MODELS_DIR"])
    dataset = payload.get("dataset") if isinstance(payload, dict) else None
    if isinstance(dataset, str) and dataset in textrecipes.text_datasets():  # a list is no name (nor hashable)
        recipe, settings, params = validate_text_run(payload, limits, models_dir)
    else:
        datasets = recipes.available_datasets()
        recipe, settings = recipes.validate(payload, limits, datasets, throughput(), models_dir)
        params = recipes.param_count(datasets[payload["dataset"]], recipe)
    nickname = recipes.validate_nickname(payload.get("nickname"))
    owner, client = owner_token(create=True), client_address()
    check_limits(limits, owner, client)
    run = Run(dataset=payload["dataset"], recipe=recipe, settings=settings, nickname=nickname, owner=owner,
              client=client, status=QUEUED, params=params, progress={}, history=[], metrics={})
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


def validate_text_run(payload: dict, limits: recipes.Limits, models_dir: Path) -> tuple[dict, dict, int | None]:
    """(recipe, settings, parameters) of a text-run payload (textrecipes.validate_text, the
    parameters counted over the shipped model's vocabulary size, None without one; the time
    estimated at this server's text throughput)."""
    spec = textrecipes.text_datasets()[payload["dataset"]]
    vocab = textrecipes.vocabulary_size(spec, models_dir)
    recipe, settings = textrecipes.validate_text(payload, limits, vocab_size=vocab,
                                                 sequences=textrecipes.training_sequences(spec, models_dir),
                                                 figures=textrecipes.text_figures(spec, models_dir),
                                                 throughput=throughput(TEXT))
    params = textrecipes.text_param_count(textrecipes.TextRecipe(**recipe), vocab) if vocab else None
    return recipe, settings, params


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


def delete_run_record(run: Run) -> None:
    """Delete an ended run's record, files and loaded model (owner or instructor); 403 / 409 otherwise."""
    if not may_manage(run):
        raise recipes.refusal("Only the browser that started this run, or an instructor, may change it.", 403)
    if run.status not in DONE:
        raise recipes.refusal("Cancel run %(id)s before deleting it.", 409, id=run.id)
    folder, run_id = run_folder(run), run.id
    db.session.delete(run)
    db.session.commit()
    shutil.rmtree(folder, ignore_errors=True)
    get_store().forget_run(run_id)


# ----------------------------------------------------------------------------- a run's model
def run_folder(run: Run) -> Path:
    """<instance>/runs/<id>/: the run's model.keras, model.tflite, card.json and plots."""
    return Path(current_app.instance_path) / "runs" / run.id


DOWNLOADS = {"model.keras": "application/octet-stream", "model.tflite": "application/octet-stream",
             "card.json": "application/json"}


def download_file(run: Run, name: str) -> tuple[Path, str]:
    """(path, licence note) of a finished run's file for its owner or an instructor: 404 for an
    unknown name, an unfinished run or a missing file, 403 for anyone else."""
    if name not in DOWNLOADS or run.status != FINISHED or not (run_folder(run) / name).is_file():
        raise InvalidInput("This run has no such file to download.", 404)
    if not may_manage(run):
        raise InvalidInput("Only the browser that started this run, or an instructor, may download its files.", 403)

    try:
        data = json.loads((run_folder(run) / "card.json").read_text(encoding="utf-8")).get("data") or {}
    except (OSError, ValueError):  # an unreadable card still lets the owner take the model
        data = {}
    return run_folder(run) / name, provenance_note(data, datasets().get(run.dataset))


def provenance(data: dict, spec: TaskSpec | None = None) -> tuple[str, str]:
    """(data source, licence) of a model: its card's `data` block, else its task's ("" when unknown)."""
    return (str(data.get("source") or (spec.data_source if spec else "")),
            str(data.get("licence") or (spec.licence if spec else "")))


def provenance_note(data: dict, spec: TaskSpec | None = None) -> str:
    """A download's provenance line (the X-Provenance header): data source and licence."""
    source, licence = provenance(data, spec)
    return f"data: {source or 'unknown'}; licence: {licence or 'unknown'}"


def send_download(path: Path, download_name: str, note: str):
    """`path` (one of DOWNLOADS) as an attachment named `download_name`, its provenance in X-Provenance."""
    response = send_from_directory(path.parent, path.name, mimetype=DOWNLOADS[path.name], as_attachment=True,
                                   download_name=download_name)
    response.headers["X-Provenance"] = note.encode("ascii", "replace").decode()  # a header is ASCII
    return response


def run_entry(run: Run):
    """The finished run's model as the model store serves one (LiteRT over its own model.tflite,
    NumPy for text, never TensorFlow); None when its folder or card is missing."""
    return get_store().run_entry(run.id, run_folder(run))


def finished_entry(run: Run, kind: str | None = None):
    """The finished run's served model, or 409 (not finished) / 400 (not of `kind`, when given:
    IMAGE or TEXT) / 503 (its model cannot be loaded)."""
    if run.status != FINISHED:
        raise recipes.refusal("Run %(id)s has not finished: there is no model to show yet.", 409, id=run.id)
    entry = run_entry(run)
    if entry is not None and kind is not None and entry.spec.kind != kind:
        if kind == TEXT:
            raise recipes.refusal("Run %(id)s is an image run: it does not generate text.", id=run.id)
        raise recipes.refusal("Run %(id)s is a text run: it does not classify pictures.", id=run.id)
    if entry is None or not entry.available:
        raise recipes.refusal("The model of run %(id)s cannot be loaded.", 503, id=run.id)
    return entry


# ----------------------------------------------------------------------------- finding
def find_run(run_id: str) -> Run:
    """The run `run_id` or a bilingual 404."""
    run = db.session.get(Run, run_id) if isinstance(run_id, str) and len(run_id) <= 12 else None
    if run is None:
        raise recipes.refusal("There is no run %(id)s.", 404, id=str(run_id)[:12])
    return run


def list_runs(dataset: str | None = None, status: str | None = None, mine: bool = False,
              limit: int = 200) -> list[Run]:
    """Runs, newest first, of one data set / status / this browser when given."""
    query = select(Run)
    if dataset:
        query = query.where(Run.dataset == dataset)
    if status:
        query = query.where(Run.status == status)
    if mine:
        query = query.where(Run.owner == (owner_token(create=False) or "-"))
    return list(db.session.scalars(query.order_by(Run.created_at.desc()).limit(limit)))


def run_json(run: Run) -> dict:
    """A run as the API returns it, with its queue position."""
    return {"id": run.id, "name": run_name(run), **run.to_dict(), "links": run_links(run),
            "queue_position": queue_position(run)}


def run_links(run: Run) -> dict:
    """The run's API addresses: a text run's generate in place of an image run's predict."""
    links = run.links()
    if run.dataset in textrecipes.text_datasets():
        del links["predict"]
        links["generate"] = url_for("lab_api.generate_run", run_id=run.id, _external=True)
    return links


def leaderboard_runs(dataset: str) -> list[Run]:
    """Every run on a data set: finished ones by test accuracy (text: by test perplexity, lower
    first), then the others newest first."""
    found = list(db.session.scalars(select(Run).where(Run.dataset == dataset).order_by(Run.created_at.desc())))
    text = dataset in textrecipes.text_datasets()

    def key(run: Run):
        score = (run.metrics or {}).get("test_perplexity" if text else "test_accuracy")
        return (0, score if text else -score) if isinstance(score, (int, float)) else (1, 0)

    return sorted(found, key=key)


def datasets() -> dict[str, TaskSpec]:
    """The data sets a run may use on this server."""
    return recipes.available_datasets()


def find_dataset(slug: str) -> TaskSpec:
    """The data set `slug` or a bilingual 404."""
    spec = datasets().get(slug)
    if spec is None:
        raise recipes.refusal("Unknown data set '%(name)s'.", 404, name=slug[:40])
    return spec


def finished_runs(dataset: str | None = None, limit: int = 200, among=None) -> list[Run]:
    """Finished runs, newest first (of one data set, or of the data sets `among`, when given)."""
    query = select(Run).where(Run.status == FINISHED)
    if dataset:
        query = query.where(Run.dataset == dataset)
    if among is not None:
        query = query.where(Run.dataset.in_(list(among)))
    return list(db.session.scalars(query.order_by(Run.finished_at.desc()).limit(limit)))


@dataclass(frozen=True)
class Calibration:
    """The fallback speed of one kind of run until one has finished here: seconds per cost unit and
    outside the epochs (the median of the calibration runs), the fastest and slowest of them (the
    range the bench shows meanwhile) and the config keys that set a speed instead."""

    seconds_per_unit: float
    overhead_seconds: float
    rate_range: tuple[float, float]
    overhead_range: tuple[float, float]
    rate_key: str
    overhead_key: str


# Image runs, calibrated for this class of 2-core CPU through the queue on a fresh server
# (`python benchmarks/lab_estimate.py`; docs/BENCHMARKS.md "first estimate").
DEFAULT_SECONDS_PER_UNIT = 3.7e-4
DEFAULT_OVERHEAD_SECONDS = 6.9
IMAGE_CALIBRATION = Calibration(DEFAULT_SECONDS_PER_UNIT, DEFAULT_OVERHEAD_SECONDS, (3.49e-4, 3.93e-4), (5.9, 7.9),
                                "LAB_SECONDS_PER_UNIT", "LAB_OVERHEAD_SECONDS")
# Text runs, in `textrecipes.text_run_cost` units, the same way
# (`python benchmarks/lab_text_estimate.py`; docs/BENCHMARKS.md "text run-time estimate").
TEXT_CALIBRATION = Calibration(1.2e-3, 3.0, (6.0e-4, 2.74e-3), (0.0, 88.7),
                               "LAB_TEXT_SECONDS_PER_UNIT", "LAB_TEXT_OVERHEAD_SECONDS")


def throughput(kind: str = IMAGE) -> Throughput:
    """This server's training speed for image (or TEXT) runs, from its latest finished runs of that
    kind (the calibrated default before)."""
    models_dir = Path(current_app.config["MODELS_DIR"])
    if kind == TEXT:
        specs, calibration = textrecipes.text_datasets(), TEXT_CALIBRATION
        cost_of = textrecipes.text_cost(specs, models_dir)
    else:
        specs, calibration = datasets(), IMAGE_CALIBRATION
        cost_of = recipes.image_cost(specs, models_dir)
    runs = [{"dataset": r.dataset, "recipe": r.recipe, "settings": r.settings, "history": r.history,
             "started_at": as_utc(r.started_at), "finished_at": as_utc(r.finished_at)}
            for r in finished_runs(among=specs, limit=20)]
    default = Throughput(float(current_app.config.get(calibration.rate_key, calibration.seconds_per_unit)),
                         float(current_app.config.get(calibration.overhead_key, calibration.overhead_seconds)))
    return recipes.measure_throughput(runs, cost_of, default)


def estimate_range(seconds_at: Callable[[Throughput], float | None], tput: Throughput,
                   kind: str = IMAGE) -> tuple[float, float] | None:
    """(fastest, slowest) seconds of a run (`seconds_at(throughput)`) while the estimate is still
    the default of its kind (no run measured on this server, and no configured speed); None once
    it is measured or configured."""
    calibration = TEXT_CALIBRATION if kind == TEXT else IMAGE_CALIBRATION
    if tput.runs or current_app.config.get(calibration.rate_key) is not None:
        return None
    ends = [seconds_at(Throughput(rate, overhead))
            for rate, overhead in zip(calibration.rate_range, calibration.overhead_range)]
    return None if None in ends else (ends[0], ends[1])


def learning_warnings(dataset: str, settings: dict) -> list[InvalidInput]:
    """Why a run on `dataset` with `settings` may learn little (recipes.learning_warnings; none
    for text data sets)."""
    spec = datasets().get(dataset)
    if spec is None:
        return []
    return recipes.learning_warnings(spec, settings, recipes.training_size(spec, Path(current_app.config["MODELS_DIR"])))
