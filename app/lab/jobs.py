"""The consumer's side of the lab bench: the work behind the queue's "train_run" task
(`python -m app.lab`, started by gunicorn or `make worker`).

`train` claims the run (queued or interrupted -> running, one consumer only) and calls the same
`training.images.train_image_task` (image data sets) or `training.textgen.train_text_task`
(text data sets) as `python -m training`, into <instance>/runs/<id>/
atomically; Keras callbacks write progress (the heartbeat) and check for a cancel. `sweep_stale`
puts runs whose consumer died back in the queue; they resume from their last epoch.
"""

from __future__ import annotations

import datetime as dt
import errno
import functools
import json
import logging
import math
import os
import shlex
import shutil
import socket
import threading
import time
import traceback
from dataclasses import replace
from pathlib import Path

import h5py
from flask import Flask, current_app
from huey import crontab
from sqlalchemy import update

from app import create_app
from app.cards import Card
from app.config import Config
from app.errors import InvalidInput
from app.instructor.settings import queue_paused
from app.lab.queue import enqueue_run, handles, huey, train_run
from app.lab.recipes import available_datasets
from app.lab.textrecipes import text_datasets, training_argv
from app.records import (CANCELLED, FAILED, FINISHED, INTERRUPTED, QUEUED, RUNNING, Run, as_utc, db, reason_values,
                         utcnow)
from training.cli import text_parser
from training.config import TrainConfig
from training.dataset import DataError

log = logging.getLogger(__name__)
WORKER_ID = f"{socket.gethostname()}:{os.getpid()}"
HISTORY_KEYS = ("loss", "accuracy", "val_loss", "val_accuracy", "seconds")  # per-epoch figures kept in a record
POINTS_PER_EPOCH = 40  # training points streamed per epoch at most (one per window of batches)
POINTS_MAX = 600  # and per run: long runs get wider windows, so the record stays small


class RunCancelled(Exception):
    """Raised from the cancel callback: the owner or an instructor asked the run to stop."""


class InjectedFault(RuntimeError):
    """A crash injected by LAB_FAULT (the fault tests), raised inside training like a real one."""


# ----------------------------------------------------------------------------- the worker's app
@functools.cache
def worker_app() -> Flask:
    """The consumer's app, built by the web's own factory: the configuration and the records only
    (no models, no pages)."""
    return create_app(web=False)


def training_config(run: Run, resume: bool, test_subset: int) -> TrainConfig:
    """The TrainConfig `python -m training <dataset>` would build for this run's recipe and settings."""
    s = run.settings or {}
    config = TrainConfig(epochs=int(s.get("epochs") or 1), batch_size=int(s.get("batch_size") or 128),
                         learning_rate=float(s.get("learning_rate") or 1e-3), seed=int(s.get("seed") or 0),
                         subset=int(s.get("subset") or 0), test_subset=test_subset, architecture="recipe",
                         model_kwargs=json.dumps(run.recipe or {}, sort_keys=True), baseline_epochs=0, verbose=0,
                         resume=resume, int8=bool(int(current_app.config.get("LAB_EXPORT_INT8") or 0)))
    return replace(config, card_extra={"command": cli_command(run, config),
                                       "run": {"id": run.id, "nickname": run.nickname, "recipe": run.recipe,
                                               "settings": run.settings}})


def text_training_config(run: Run, resume: bool) -> TrainConfig:
    """The TrainConfig of the text run's own command line (`textrecipes.training_argv`), parsed by
    `python -m training`'s text parser."""
    argv = training_argv(run.dataset, run.recipe or {}, run.settings or {})
    args = text_parser(f"python -m training {run.dataset}").parse_args([*argv[1:], "--verbose", "0"])
    return TrainConfig.from_args(args, resume=resume, quick=bool(int(current_app.config.get("LAB_TEXT_QUICK") or 0)),
                                 card_extra={"command": "python -m training " + shlex.join(argv),
                                             "run": {"id": run.id, "nickname": run.nickname, "recipe": run.recipe,
                                                     "settings": run.settings}})


def cli_command(run: Run, config: TrainConfig) -> str:
    """The command line that trains the same recipe without the bench (for the card)."""
    parts = ["python -m training", run.dataset, "--architecture recipe", f"--model-kwargs '{config.model_kwargs}'",
             f"--epochs {config.epochs}", f"--batch-size {config.batch_size}",
             f"--learning-rate {config.learning_rate:g}", f"--seed {config.seed}", "--baseline-epochs 0"]
    if config.subset:
        parts.append(f"--subset {config.subset}")
    return " ".join(parts)


# ----------------------------------------------------------------------------- failures
def describe_failure(exc: BaseException) -> InvalidInput:
    """The reason a person can read for an exception raised by training."""
    name = exc.__class__.__name__
    detail = str(exc)[:400]
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InvalidInput("The server's disk is full: the run could not save its checkpoint or model. Nothing was "
                            "published. Ask the instructor to free some space, then run it again.", 507)
    if isinstance(exc, DataError):
        return InvalidInput("The data set could not be read: %(detail)s", detail=detail)
    if isinstance(exc, KeyError) and exc.args and isinstance(exc.args[0], str):
        return InvalidInput("Unknown data set: %(name)s.", 404, name=exc.args[0])
    if isinstance(exc, MemoryError):
        return InvalidInput("The server ran out of memory: use fewer units, layers or a smaller batch.", 507)
    return InvalidInput("Training stopped with an error (%(name)s: %(detail)s).", 500, name=name, detail=detail)


def fault_for(run: Run) -> str:
    """The fault LAB_FAULT injects into this run ("crash" or "disk_full"), or "" (fault tests:
    LAB_FAULT=<kind>@<nickname>[,<kind>@<nickname>...])."""
    for item in os.environ.get("LAB_FAULT", "").split(","):
        kind, _, nickname = item.strip().partition("@")
        if kind in ("crash", "disk_full") and nickname and nickname == run.nickname:
            return kind
    return ""


# ----------------------------------------------------------------------------- progress
class Reporter:
    """Writes a run's progress into its record: at each epoch's end (history too), and from a
    background thread every `interval` seconds (the heartbeat sweep_stale checks); polls the
    record's cancel flag every `poll` seconds for the per-batch cancel check."""

    def __init__(self, app: Flask, run_id: str, interval: float, history: list, poll: float = 0.25,
                 points: list | None = None):
        self.app, self.run_id, self.interval, self.poll = app, run_id, interval, poll
        self.history = list(history)
        done = len(self.history)  # a resumed run keeps the points of the epochs it finished
        self.progress: dict = {"phase": "starting", "epoch": 0, "epochs": 0, "batch": 0, "batches": 0,
                               "elapsed": 0.0, "eta": None,
                               "points": [p for p in points or [] if isinstance(p, dict) and p.get("x", 1e9) <= done]}
        self.lock = threading.Lock()
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.urgent = threading.Event()  # write at the next poll (the first batch: the page shows it at once)
        self.t0 = time.monotonic()
        self.train_t0: float | None = None
        self.thread = threading.Thread(target=self._loop, name=f"progress-{run_id}", daemon=True)

    def start(self) -> Reporter:
        """Start the heartbeat and cancel-poll thread."""
        self.thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread (idempotent)."""
        self.done.set()
        self.thread.join(timeout=5)

    def _loop(self) -> None:
        last_write = 0.0
        while not self.done.wait(self.poll):
            try:
                with self.app.app_context():
                    if db.session.scalar(db.select(Run.cancel_requested).where(Run.id == self.run_id)):
                        self.cancel.set()
                    if self.urgent.is_set() or time.monotonic() - last_write >= self.interval:
                        self.urgent.clear()
                        self.write()
                        last_write = time.monotonic()
                    db.session.remove()
            except Exception:  # noqa: BLE001 - a failed heartbeat must not kill the training thread
                log.exception("run %s: progress write failed", self.run_id)

    def update(self, **values) -> None:
        """Change the in-memory progress (written by the next heartbeat or epoch end)."""
        with self.lock:
            self.progress.update(values)
            p = self.progress
            p["elapsed"] = round(time.monotonic() - self.t0, 1)
            if self.train_t0 is not None and p.get("epochs") and p.get("batches"):
                done = (max(p["epoch"] - 1, 0) + p["batch"] / p["batches"]) / p["epochs"]
                spent = time.monotonic() - self.train_t0
                p["eta"] = round(spent / done - spent, 1) if done > 0.01 else None

    def write(self, history: bool = False) -> None:
        """Store progress (and the history when `history`) with the heartbeat time; needs an app context."""
        with self.lock:
            values = {"progress": {**self.progress, "updated_at": utcnow().isoformat(timespec="seconds")}}
            if history:
                values["history"] = list(self.history)
        db.session.execute(update(Run).where(Run.id == self.run_id).values(**values))
        db.session.commit()

    def add_point(self, point: dict) -> None:
        """Append one training point (x in epochs; loss and accuracy over its window of batches)."""
        with self.lock:
            self.progress["points"] = [*self.progress.get("points", []), point]

    def end_epoch(self, entry: dict) -> None:
        """Record one finished epoch (a resumed epoch replaces its earlier row)."""
        with self.lock:
            self.history = [h for h in self.history if h.get("epoch") != entry["epoch"]] + [entry]
            self.history.sort(key=lambda h: h["epoch"])
        self.update(batch=self.progress.get("batches", 0))
        with self.app.app_context():
            self.write(history=True)
            db.session.remove()

    def callback(self, fault: str = "", epoch_extra=None):
        """The Keras callback that feeds this reporter and raises RunCancelled within one batch;
        `epoch_extra(epoch)`, when given, adds its dict to each epoch's history row."""
        import keras  # heavy: the callback exists only where training runs

        reporter = self
        window = BatchWindow()

        class Progress(keras.callbacks.Callback):
            def on_train_begin(self, logs=None):
                reporter.train_t0 = time.monotonic()
                epochs, batches = int(self.params.get("epochs") or 0), int(self.params.get("steps") or 0)
                window.plan(epochs, batches)
                reporter.update(phase="training", epochs=epochs, batches=batches)

            def on_epoch_begin(self, epoch, logs=None):
                window.start(epoch)
                reporter.update(epoch=epoch + 1, batch=0)

            def on_train_batch_end(self, batch, logs=None):
                point = window.point(batch + 1, logs or {})
                if point is not None:
                    reporter.add_point(point)
                reporter.update(batch=batch + 1)
                if batch == 0 and reporter.progress.get("epoch") == 1:
                    reporter.urgent.set()
                if reporter.cancel.is_set():
                    raise RunCancelled()

            def on_epoch_end(self, epoch, logs=None):
                logs = logs or {}
                entry = {"epoch": epoch + 1}
                for key in HISTORY_KEYS:
                    if isinstance(logs.get(key), (int, float)):
                        entry[key] = round(float(logs[key]), 6)
                entry.update(epoch_extra(epoch) if epoch_extra else {})
                reporter.end_epoch(entry)
                if fault == "crash":
                    raise InjectedFault("injected crash after an epoch (LAB_FAULT)")
                if fault == "disk_full":
                    raise OSError(errno.ENOSPC, "No space left on device (injected by LAB_FAULT)")

            def on_train_end(self, logs=None):
                reporter.update(phase="testing")

        return Progress()


class BatchWindow:
    """Training points within epochs: every `stride` batches, the loss and accuracy of the batches
    since the previous point, worked out from the running means Keras reports after each batch
    (the mean over k batches times k, minus the same at the window's start)."""

    def __init__(self):
        self.stride, self.batches, self.epoch = 1, 0, 0
        self.start_at, self.sums = 0, {}

    def plan(self, epochs: int, batches: int) -> None:
        """Choose the window: at most POINTS_PER_EPOCH points an epoch and POINTS_MAX a run."""
        self.batches = batches
        self.stride = max(1, math.ceil(batches / POINTS_PER_EPOCH), math.ceil(epochs * batches / POINTS_MAX))

    def start(self, epoch: int) -> None:
        """A new epoch: Keras resets its running means."""
        self.epoch, self.start_at, self.sums = epoch, 0, {}

    def point(self, done: int, logs: dict) -> dict | None:
        """The point closing the window at batch `done` (1-based), or None inside a window."""
        if not self.batches or (done % self.stride and done != self.batches) or done <= self.start_at:
            return None
        point = {"x": round(self.epoch + done / self.batches, 4)}
        sums = {}
        for key in ("loss", "accuracy"):
            try:
                mean = float(logs[key])
            except (KeyError, TypeError, ValueError):
                continue
            if not math.isfinite(mean):
                continue
            sums[key] = mean * done
            point[key] = round((sums[key] - self.sums.get(key, 0.0)) / (done - self.start_at), 5)
        self.start_at, self.sums = done, sums
        return point if len(point) > 1 else None


# ----------------------------------------------------------------------------- the task
def claim(run_id: str) -> bool:
    """Atomically mark a queued or interrupted run as running on this consumer (False when it is
    taken, finished, cancelled, or its cancel was requested)."""
    result = db.session.execute(
        update(Run).where(Run.id == run_id, Run.status.in_((QUEUED, INTERRUPTED)), Run.cancel_requested.is_(False))
        .values(status=RUNNING, worker=WORKER_ID, attempts=Run.attempts + 1, started_at=utcnow(), finished_at=None,
                progress={"phase": "starting", "updated_at": utcnow().isoformat(timespec="seconds")}))
    db.session.commit()
    return result.rowcount == 1


def finish(run_id: str, status: str, **values) -> None:
    """Set a claimed run's final status (only while this consumer holds it)."""
    db.session.rollback()  # end any read transaction first: SQLite refuses to upgrade a stale snapshot
    db.session.execute(update(Run).where(Run.id == run_id, Run.status == RUNNING, Run.worker == WORKER_ID)
                       .values(status=status, finished_at=utcnow(), **values))
    db.session.commit()


def checkpoint_readable(work: Path) -> bool:
    """True when every weights file and metadata file of a run's checkpoint folder opens whole."""
    for path in work.rglob("*"):
        try:
            if path.suffix == ".h5":
                with h5py.File(path, "r") as fh:
                    fh.visit(lambda name: None)
            elif path.suffix == ".json":
                json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
    return True


def execute_run(app: Flask, run_id: str) -> str:
    """Train run `run_id` if this consumer can claim it; returns its final status (or why not)."""
    run = db.session.get(Run, run_id)
    if run is None:
        return "missing"
    work = Path(app.instance_path) / "checkpoints" / run_id  # the per-epoch backup a resumed run continues from
    if run.status in (QUEUED, INTERRUPTED) and run.cancel_requested:  # cancelled while its consumer was gone
        run.status, run.finished_at = CANCELLED, utcnow()
        db.session.commit()
        shutil.rmtree(work, ignore_errors=True)
        return CANCELLED
    earlier_points = (run.progress or {}).get("points")  # claim() starts a fresh progress record
    if not claim(run_id):
        return "skipped"
    db.session.expire_all()
    run = db.session.get(Run, run_id)
    if run.attempts > int(app.config["LAB_MAX_ATTEMPTS"]):
        finish(run_id, FAILED, **reason_values(InvalidInput("The run was interrupted %(count)s times; it was stopped.",
                                                            count=run.attempts - 1)))
        shutil.rmtree(work, ignore_errors=True)
        return FAILED
    resume = run.attempts > 1 and (work / "backup").is_dir()
    if resume and not checkpoint_readable(work):  # killed while writing it: nothing to resume from
        log.warning("run %s: its checkpoint is unreadable (a kill during the write); starting over", run_id)
        shutil.rmtree(work, ignore_errors=True)
        resume = False
    reporter = Reporter(app, run_id, float(app.config["LAB_PROGRESS_SECONDS"]), run.history if resume else [],
                        points=earlier_points if resume else None).start()
    t0 = time.monotonic()
    previous_seconds = run.seconds or 0.0

    def end(status: str, progress: dict | None = None, **values) -> str:
        reporter.stop()  # first: no heartbeat may overwrite the final progress
        finish(run_id, status, seconds=round(previous_seconds + time.monotonic() - t0, 1), **values,
               progress={**reporter.progress, **(progress or {}), "phase": status,
                         "updated_at": utcnow().isoformat(timespec="seconds")})
        shutil.rmtree(work, ignore_errors=True)
        return status

    try:
        texts = text_datasets()
        spec = texts.get(run.dataset) or available_datasets()[run.dataset]
        if run.dataset in texts:
            config = text_training_config(run, resume)
        else:
            config = training_config(run, resume, int(app.config.get("LAB_TEST_SUBSET") or 0))
        dataset, attempts, fault = run.dataset, run.attempts, fault_for(run)
        db.session.commit()  # no transaction stays open while it trains
        log.info("run %s: training %s (attempt %d%s)", run_id, dataset, attempts, ", resumed" if resume else "")
        runs_dir = Path(app.instance_path) / "runs"
        if dataset in texts:
            from training.textgen import train_text_task  # heavy: Keras loads in the consumer only

            reports: dict = {}  # epoch -> perplexities and sample lines, until its history row takes them
            folder = train_text_task(spec, config, runs_dir, [reporter.callback(fault, lambda e: reports.pop(e, {}))],
                                     slug=run_id, work_dir=work, epoch_report=reports.__setitem__)
        else:
            from training.images import train_image_task  # heavy: Keras loads in the consumer only

            folder = train_image_task(spec, config, runs_dir, slug=run_id, work_dir=work,
                                      callbacks=[reporter.callback(fault)])
        card = Card.from_json(folder)
        return end(FINISHED, {"eta": 0}, metrics=card.metrics.to_json(), params=card.params_total or 0,
                   history=merge_history(reporter.history, card.history or {}))
    except RunCancelled:
        return end(CANCELLED)
    except Exception as exc:  # noqa: BLE001 - any failure of one run must leave the consumer serving others
        log.error("run %s failed: %s", run_id, "".join(traceback.format_exception(exc))[-3000:])
        return end(FAILED, **reason_values(describe_failure(exc)))
    finally:
        reporter.stop()


def merge_history(rows: list[dict], card_history: dict) -> list[dict]:
    """One dict per epoch: the card's CSV history (complete across resumes) over the reporter's rows."""
    keys = [k for k in HISTORY_KEYS if k in card_history]
    n = max((len(card_history[k]) for k in keys), default=0)
    if not n:
        return rows
    by_epoch = {r["epoch"]: dict(r) for r in rows}
    for i in range(n):
        row = by_epoch.setdefault(i + 1, {"epoch": i + 1})
        for k in keys:
            if i < len(card_history[k]):
                row[k] = round(float(card_history[k][i]), 6)
    return [by_epoch[e] for e in sorted(by_epoch)]


def in_worker_app(task, item_id: str, work) -> str:
    """`work(app, item_id)` in the consumer's app; while the instructor holds the queue, `task` is
    scheduled again in a little while instead."""
    app = worker_app()
    with app.app_context():
        try:
            if queue_paused():
                task.schedule((item_id,), delay=10)
                return "paused"
            return work(app, item_id)
        finally:
            db.session.remove()


@handles("train_run")
def train(run_id: str) -> str:
    """The queue's "train_run" task: train one lab-bench run (see the module docstring)."""
    return in_worker_app(train_run, run_id, execute_run)


# ----------------------------------------------------------------------------- lost runs
def pid_alive(pid: int) -> bool:
    """True when process `pid` exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale(run: Run, stale_seconds: float, now) -> bool:
    """A running run whose consumer is gone: a dead pid on this host, or no heartbeat for a while."""
    host, _, pid = (run.worker or "").rpartition(":")
    if host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
        return True
    beat = (run.progress or {}).get("updated_at")
    try:
        last = dt.datetime.fromisoformat(beat) if beat else as_utc(run.started_at)
    except (TypeError, ValueError):
        last = as_utc(run.started_at)
    return last is None or (now - last).total_seconds() > stale_seconds


def sweep_stale(app: Flask) -> list[str]:
    """Mark runs whose consumer died as interrupted and queue them again (they resume from their
    last epoch); re-queue runs recorded as queued that never reached the queue. Returns their ids."""
    now = utcnow()
    requeue = []
    for run in db.session.scalars(db.select(Run).where(Run.status == RUNNING)).all():
        if not is_stale(run, float(app.config["LAB_STALE_SECONDS"]), now):
            continue
        result = db.session.execute(
            update(Run).where(Run.id == run.id, Run.status == RUNNING, Run.worker == run.worker)
            .values(status=INTERRUPTED, progress={**(run.progress or {}), "phase": "interrupted",
                                                  "updated_at": now.isoformat(timespec="seconds")}))
        db.session.commit()
        if result.rowcount == 1:
            log.warning("run %s: consumer %s is gone; marked interrupted and queued again", run.id, run.worker)
            requeue.append(run.id)
    orphans = db.session.scalars(db.select(Run).where(Run.status.in_((QUEUED, INTERRUPTED)),
                                                      Run.queue_task_id.is_(None))).all()
    for run in orphans:
        if (now - as_utc(run.created_at)).total_seconds() > float(app.config["LAB_STALE_SECONDS"]):
            requeue.append(run.id)
    for run_id in dict.fromkeys(requeue):
        db.session.execute(update(Run).where(Run.id == run_id).values(queue_task_id=enqueue_run(run_id)))
        db.session.commit()
    return requeue


@huey.on_startup()
def sweep_at_startup() -> None:
    """A consumer coming back first picks up the runs a killed consumer left behind."""
    app = worker_app()
    with app.app_context():
        try:
            sweep_stale(app)
        finally:
            db.session.remove()


@huey.periodic_task(crontab(minute="*"))
def sweep_every_minute() -> None:
    """Catch runs whose consumer died on another machine (no heartbeat for LAB_STALE_SECONDS)."""
    sweep_at_startup()


def lower_priority() -> None:
    """Drop this consumer's CPU priority by LAB_WORKER_NICE so the web stays responsive."""
    step = int(Config.from_environment().get("LAB_WORKER_NICE", Config.LAB_WORKER_NICE))
    if step > 0:
        try:
            os.nice(step)
        except OSError:
            log.warning("could not lower the consumer's CPU priority")
