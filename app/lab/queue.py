"""The job queue: one Huey instance, SQLite file by default, Redis to scale out (same code).

`LSTMLAB_QUEUE_URL` empty: Huey's SQLite storage in `<instance>/queue.sqlite3` (nothing to
install; web and consumer share the file). `LSTMLAB_QUEUE_URL=redis://host:6379/0`: Huey's Redis
storage, so any number of machines can run `make worker` against it. The task is declared here,
its work is done by the handler the consumer registers (`handles`: app/lab/jobs.py), so web
workers enqueue without importing the consumer, training or TensorFlow.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from huey import Huey
from huey.storage import RedisStorage, SqliteStorage

from app.config import instance_dir

NAME = "lstmlab"
REDIS_SCHEMES = ("redis://", "rediss://", "unix://")


def storage_settings(url: str, instance: Path) -> tuple[type, dict]:
    """The Huey storage class and its keyword arguments for a queue URL ("" = SQLite file)."""
    if url.startswith(REDIS_SCHEMES):
        return RedisStorage, {"url": url}
    if url.startswith("sqlite:///"):
        return SqliteStorage, {"filename": url[len("sqlite:///"):]}
    if url:
        raise ValueError(f"LSTMLAB_QUEUE_URL={url!r}: expected redis://..., rediss://..., unix://... "
                         "or sqlite:///path (empty: a SQLite file in the instance folder)")
    instance.mkdir(parents=True, exist_ok=True)
    return SqliteStorage, {"filename": str(instance / "queue.sqlite3")}


# Built from the environment at import: the consumer process has no app until a task runs.
_configured = (os.environ.get("LSTMLAB_QUEUE_URL", ""), str(instance_dir()))
_storage_class, _storage_kwargs = storage_settings(_configured[0], Path(_configured[1]))
huey = Huey(NAME, results=False, storage_class=_storage_class, **_storage_kwargs)  # the run record is the result


def init_app(app) -> None:
    """Point the shared instance at the app's LSTMLAB_QUEUE_URL and instance folder (a process
    serves one app, tests build several)."""
    global _configured
    key = (app.config.get("LSTMLAB_QUEUE_URL", "") or "", str(Path(app.instance_path)))
    if key != _configured:
        huey.storage_class, huey.storage_kwargs = storage_settings(key[0], Path(key[1]))
        huey.storage = huey.create_storage()
        _configured = key


HANDLERS: dict[str, Callable[[str], str]] = {}  # task name -> the consumer's function


def handles(name: str):
    """Register the consumer's function for task `name` (a decorator; app/lab/jobs.py uses it)."""
    def register(fn):
        HANDLERS[name] = fn
        return fn
    return register


@huey.task()
def train_run(run_id: str) -> str:
    """Huey task: train lab-bench run `run_id` with the consumer's "train_run" handler."""
    return HANDLERS["train_run"](run_id)


def enqueue_run(run_id: str) -> str:
    """Put run `run_id` on the queue; returns the Huey task id."""
    task = train_run.s(run_id)
    huey.enqueue(task)
    return task.id


def pending_count() -> int:
    """Tasks waiting in the queue (not yet taken by a consumer)."""
    return huey.pending_count()


@huey.task()
def score_submission(submission_id: str) -> str:
    """Huey task: score a student's submitted model with the consumer's "score_submission" handler."""
    return HANDLERS["score_submission"](submission_id)


def enqueue_submission(submission_id: str) -> str:
    """Put submission `submission_id` on the queue; returns the Huey task id."""
    task = score_submission.s(submission_id)
    huey.enqueue(task)
    return task.id
