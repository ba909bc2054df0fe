"""The job queue: one Huey instance, SQLite file by default, Redis to scale out (same code).

`LSTMLAB_QUEUE_URL` empty: Huey's SQLite storage in `<instance>/queue.sqlite3` (nothing to
install; web and consumer share the file). `LSTMLAB_QUEUE_URL=redis://host:6379/0`: Huey's Redis
storage, so any number of machines can run `make worker` against it. The consumer entry point is
`huey_consumer app.lab.jobs.huey` (jobs.py imports this instance and defines the tasks on it).
This module never imports TensorFlow: web workers enqueue through it.
"""

from __future__ import annotations

import os
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


def make_huey(url: str, instance: Path) -> Huey:
    """A Huey instance for `url` (results are not stored: the run record is the result)."""
    storage_class, kwargs = storage_settings(url, instance)
    return Huey(NAME, results=False, storage_class=storage_class, **kwargs)


# Built from the environment at import: the consumer process has no app until a task runs.
huey = make_huey(os.environ.get("LSTMLAB_QUEUE_URL", ""), instance_dir())
_configured: tuple[str, str] = (os.environ.get("LSTMLAB_QUEUE_URL", ""), str(instance_dir()))


def configure(url: str, instance: Path) -> Huey:
    """Point the shared instance at another storage (create_app does this from its config; a
    process serves one app, tests build several)."""
    global _configured
    key = (url or "", str(Path(instance)))
    if key != _configured:
        storage_class, kwargs = storage_settings(url or "", Path(instance))
        huey.storage_class, huey.storage_kwargs = storage_class, kwargs
        huey.storage = huey.create_storage()
        _configured = key
    return huey


def init_app(app) -> None:
    """Configure the queue from the app's LSTMLAB_QUEUE_URL and instance folder."""
    configure(app.config.get("LSTMLAB_QUEUE_URL", ""), Path(app.instance_path))


def enqueue_run(run_id: str) -> str:
    """Put run `run_id` on the queue; returns the Huey task id."""
    from app.lab.jobs import train_run  # defines the task; imports no TensorFlow

    task = train_run.s(run_id)
    huey.enqueue(task)
    return task.id


def pending_count() -> int:
    """Tasks waiting in the queue (not yet taken by a consumer)."""
    return huey.pending_count()
