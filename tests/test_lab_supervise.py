"""The queue survives its own processes: every way a run ends removes its checkpoint folder."""

from __future__ import annotations

import pytest

from app.lab import jobs
from app.records import CANCELLED, FAILED, INTERRUPTED, QUEUED, Run, db


@pytest.fixture
def records_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app (records, SQLite queue) per test."""
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="")


def add_interrupted_run(app, **fields) -> str:
    """An interrupted run record with a checkpoint folder left by its earlier attempts."""
    values = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "settings": {"epochs": 1},
              "owner": "o" * 32, "client": "127.0.0.1", "status": INTERRUPTED, "progress": {}, "history": [],
              "metrics": {}, "queue_task_id": "t", **fields}
    with app.app_context():
        run = Run(**values)
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    backup = jobs.Path(app.instance_path) / "checkpoints" / run_id / "backup"
    backup.mkdir(parents=True)
    (backup / "training_metadata.json").write_text("{}")
    return run_id


@pytest.mark.parametrize("fields, status", [({"attempts": 3}, FAILED),
                                            ({"cancel_requested": True}, CANCELLED),
                                            ({"cancel_requested": True, "status": QUEUED}, CANCELLED)])
def test_every_early_end_removes_the_checkpoint_folder(records_app, fields, status):
    run_id = add_interrupted_run(records_app, **fields)
    with records_app.app_context():
        assert jobs.execute_run(records_app, run_id) == status
    assert not (jobs.Path(records_app.instance_path) / "checkpoints" / run_id).exists()
