"""Text runs on the bench (kieu, nyt_headlines): submitted through the runs API, trained by the
consumer's job with `train_text_task`, per-epoch perplexities and sample lines in the record."""

from __future__ import annotations

import pytest

from app.lab import jobs
from app.records import FINISHED, QUEUED, Run, db

TINY = {"embedding": 8, "units": 12, "dropout": 0.0, "tied": True, "min_count": 1}


def kieu_data_or_skip():
    """The Kiều verse file, or a clean skip."""
    from app.config import default_data_dir
    from app.tasks import BUILTIN_TASKS

    path = default_data_dir() / BUILTIN_TASKS["kieu"].data_path
    if not path.exists():
        pytest.skip(f"no data at {path}")
    return path


@pytest.fixture
def text_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app (records, SQLite queue) per test; text runs train as --quick (one epoch on a
    slice of the corpus)."""
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="", LAB_TEXT_QUICK=1)


def test_a_kieu_run_goes_through_the_queue_and_reports_every_epoch(text_app):
    """POST /api/v1/runs queues a text run; the consumer's job trains it with train_text_task and
    writes, per epoch, the training and validation perplexity and sample lines with the meter
    check; the finished record has the test perplexity beside the n-gram's."""
    kieu_data_or_skip()
    client = text_app.test_client()
    resp = client.post("/api/v1/runs", json={"dataset": "kieu", "recipe": TINY, "epochs": 2, "batch_size": 32,
                                             "learning_rate": 0.01, "seed": 3, "nickname": "tiny verse"})
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    with text_app.app_context():
        run = db.session.get(Run, run_id)
        assert run.status == QUEUED and run.recipe["tied"] is True and run.params > 0
        assert jobs.execute_run(text_app, run_id) == FINISHED
        db.session.expire_all()
        run = db.session.get(Run, run_id)
        history, metrics = run.history, run.metrics
    assert [e["epoch"] for e in history] == [1]
    for entry in history:
        assert entry["perplexity"] > 1 and entry["val_perplexity"] > 1 and "val_loss" in entry
        assert {s["temperature"] for s in entry["samples"]} == {0.7, 1.0}
        for sample in entry["samples"]:
            assert sample["lines"] and len(sample["meter"]) == len(sample["lines"])
    assert metrics["test_perplexity"] > 1 and metrics["ngram"]["test_perplexity"] > 1
    card = client.get(f"/api/v1/runs/{run_id}/card").get_json()
    assert card["run"]["id"] == run_id and card["model_kwargs"]["tied"] is True
    assert card["command"].startswith("python -m training kieu --epochs 2")
