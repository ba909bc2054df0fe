"""Faults of the lab bench, nothing lost: a killed consumer, a restarted web app, a crash and a
full disk inside training, a cancel; with real gunicorn and consumer processes (slow), plus the
record-level rules (stale runs swept, too many attempts) checked in-process (fast)."""

from __future__ import annotations

import datetime as dt
import signal
import time

import pytest

from app.lab import jobs
from app.lab import queue as lab_queue
from app.records import FAILED, INTERRUPTED, QUEUED, RUNNING, Run, db, utcnow


@pytest.fixture
def records_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app (records, SQLite queue) per test."""
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="", LAB_STALE_SECONDS=30)


def add_run(app, **fields) -> str:
    values = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "settings": {"epochs": 1},
              "owner": "o" * 32, "client": "127.0.0.1", "status": RUNNING, "progress": {}, "history": [],
              "metrics": {}, "queue_task_id": "t"}
    values.update(fields)
    with app.app_context():
        run = Run(**values)
        db.session.add(run)
        db.session.commit()
        return run.id


def test_sweep_marks_lost_runs_interrupted_and_requeues_them(records_app):
    """Dead consumer on this host, or no heartbeat for LAB_STALE_SECONDS: interrupted and queued
    again; a run with a fresh heartbeat is left alone; an orphaned queued record is queued."""
    import socket

    old = (utcnow() - dt.timedelta(seconds=120)).isoformat()
    dead = add_run(records_app, worker=f"{socket.gethostname()}:999999", progress={"updated_at": utcnow().isoformat()})
    silent = add_run(records_app, worker="other-host:1", progress={"updated_at": old})
    alive = add_run(records_app, worker="other-host:2", progress={"updated_at": utcnow().isoformat()})
    orphan = add_run(records_app, status=QUEUED, queue_task_id=None, created_at=utcnow() - dt.timedelta(seconds=120))
    with records_app.app_context():
        lab_queue.init_app(records_app)
        before = lab_queue.pending_count()
        requeued = jobs.sweep_stale(records_app)
        assert sorted(requeued) == sorted([dead, silent, orphan])
        assert lab_queue.pending_count() == before + 3
        status = {r.id: r.status for r in db.session.scalars(db.select(Run))}
    assert status[dead] == status[silent] == INTERRUPTED
    assert status[alive] == RUNNING and status[orphan] == QUEUED


def test_too_many_attempts_fail_with_a_reason(records_app):
    run_id = add_run(records_app, status=INTERRUPTED, attempts=3)
    with records_app.app_context():
        assert jobs.execute_run(records_app, run_id) == FAILED
        run = db.session.get(Run, run_id)
        assert run.status == FAILED and "interrupted 3 times" in run.error["en"] and run.error["vi"]
        assert run.finished_at is not None


@pytest.mark.parametrize("status", [QUEUED, INTERRUPTED])
def test_cancel_requested_while_waiting_is_never_trained(records_app, status):
    run_id = add_run(records_app, status=status, cancel_requested=True)
    with records_app.app_context():
        assert jobs.execute_run(records_app, run_id) == "cancelled"
        run = db.session.get(Run, run_id)
        assert run.status == "cancelled" and run.attempts == 0


def test_an_unreadable_checkpoint_is_not_resumed(tmp_path):
    """A kill while a checkpoint was being written leaves a truncated file: start over instead."""
    import h5py

    (tmp_path / "backup").mkdir()
    with h5py.File(tmp_path / "backup" / "latest.weights.h5", "w") as fh:
        fh["w"] = [1.0, 2.0]
    (tmp_path / "backup" / "training_metadata.json").write_text('{"epoch": 0}')
    assert jobs.checkpoint_readable(tmp_path)
    data = (tmp_path / "backup" / "latest.weights.h5").read_bytes()
    (tmp_path / "backup" / "latest.weights.h5").write_bytes(data[:96])
    assert not jobs.checkpoint_readable(tmp_path)


def test_failures_are_described_in_both_languages():
    import errno

    from training.dataset import DataError

    for exc, word in [(OSError(errno.ENOSPC, "No space left on device"), "disk is full"),
                      (DataError("mnist.npz: missing x_train"), "could not be read"),
                      (MemoryError(), "out of memory"), (ValueError("bad shape"), "ValueError: bad shape")]:
        reason = jobs.describe_failure(exc)
        assert word in reason.en and reason.vi and reason.vi != reason.en


def test_a_failure_is_stored_as_its_msgid_and_shown_in_either_language(lab_app):
    """A run's reason is a msgid and its fields in the record, rendered in the reader's language."""
    import errno

    from app.records import Run, db, reason_values

    with lab_app.app_context():
        run = Run(dataset="mnist", status="failed",
                  **reason_values(jobs.describe_failure(OSError(errno.ENOSPC, "No space left on device"))))
        db.session.add(run)
        db.session.commit()
        stored = db.session.get(Run, run.id)
        assert stored.error_msgid.startswith("The server's disk is full") and stored.error_params == {}
        assert stored.error["vi"].startswith("Ổ đĩa của máy chủ đã đầy") and "disk is full" in stored.error["en"]
        stored.clear_reason()
        assert stored.error is None


def test_reasons_written_before_msgids_keep_both_languages(make_app, tiny_models_dir, tmp_path):
    """The schema upgrade keeps an older failed run's English and Vietnamese texts, and the
    downgrade gives them back."""
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import text

    from app.records import MIGRATIONS_DIR, Run, db

    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_AUTO_UPGRADE="0")
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR), revision="0005_token_expiry")
        db.session.execute(text("INSERT INTO runs (id, dataset, recipe, settings, nickname, owner, client, status, "
                                "created_at, progress, history, metrics, cancel_requested, attempts, error_en, error_vi) "
                                "VALUES ('abc123abc123', 'mnist', '{}', '{}', '', '', '', 'failed', "
                                "'2026-01-01 00:00:00', '{}', '[]', '{}', 0, 1, 'It broke.', 'Nó hỏng.')"))
        db.session.commit()
        upgrade(directory=str(MIGRATIONS_DIR))
        assert db.session.get(Run, "abc123abc123").error == {"en": "It broke.", "vi": "Nó hỏng."}
        db.session.remove()
        downgrade(directory=str(MIGRATIONS_DIR), revision="0005_token_expiry")
        row = db.session.execute(text("SELECT error_en, error_vi FROM runs")).one()
        assert tuple(row) == ("It broke.", "Nó hỏng.")


@pytest.mark.slow
def test_killed_consumer_resumes_from_its_last_epoch_then_cancel_stops_within_a_batch(lab_stack):
    lab_stack.web(FLASK_LAB_RUNS_PER_BROWSER="5")
    lab_stack.env["LAB_PROGRESS_SECONDS"] = "0.25"  # progress at every cancel poll: epoch 2's window is seen
    first = lab_stack.consumer("consumer-1")
    browser = lab_stack.session()
    # 675 batches an epoch: epoch 2's first half lasts seconds even on an idle machine
    response = lab_stack.submit(browser, nickname="long", epochs=3, subset=6000, batch_size=8)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]

    def inside_second_epoch(run):  # epoch 1 checkpointed, and far from epoch 2's own checkpoint writes
        p = run["progress"]
        return len(run["history"]) == 1 and p.get("epoch") == 2 and 3 <= p.get("batch", 0) <= 0.5 * p["batches"]

    lab_stack.wait_for(lambda: inside_second_epoch(lab_stack.run(run_id)), 180, "never saw epoch 2 under way", first)
    lab_stack.stop(first, signal.SIGKILL)
    assert lab_stack.run(run_id)["status"] == "running"  # the record cannot know yet
    second = lab_stack.consumer("consumer-2")
    run = lab_stack.wait_status(run_id, ("finished", "failed"), seconds=240)
    assert run["status"] == "finished", run["error"]
    assert run["attempts"] == 2 and [h["epoch"] for h in run["history"]] == [1, 2, 3]
    log = lab_stack.log("consumer-2")
    assert f"run {run_id}: consumer" in log and "marked interrupted" in log  # the start-up sweep
    assert f"run {run_id}: training mnist (attempt 2, resumed)" in log
    assert not (lab_stack.instance / "checkpoints" / run_id).exists()  # cleaned once finished

    # Cancel: a run of many small batches stops at the next batch after the flag is seen
    response = lab_stack.submit(browser, nickname="cancel-me", epochs=2, subset=20000, batch_size=8)
    run_id = response.json()["id"]
    lab_stack.wait_for(lambda: lab_stack.run(run_id)["progress"].get("batch", 0) >= 5, 120,
                       "the run never started its batches", second)
    t0 = time.monotonic()
    answer = browser.post(f"{lab_stack.web_url}/api/v1/runs/{run_id}/cancel", timeout=10)
    assert answer.status_code == 202 and answer.json()["cancel_requested"] is True
    run = lab_stack.wait_status(run_id, ("cancelled", "finished", "failed"), seconds=30)
    waited = time.monotonic() - t0
    assert run["status"] == "cancelled" and run["history"] == [], run
    assert run["progress"]["batch"] < run["progress"]["batches"]  # stopped inside the first epoch
    assert waited < 5.0, waited
    assert not (lab_stack.instance / "runs" / run_id).exists()


@pytest.mark.slow
def test_web_restart_crash_and_full_disk_nothing_lost(lab_stack):
    """Runs queued before a web restart still run; a crash and a full disk fail their runs with
    a readable reason and the runs after them finish."""
    lab_stack.env.update(FLASK_LAB_RUNS_PER_BROWSER="5", FLASK_LAB_RUNS_PER_CLIENT="5")
    web = lab_stack.web("web-1")
    browser = lab_stack.session()
    ids = {name: lab_stack.submit(browser, nickname=name).json()["id"] for name in ("boom", "after-boom")}
    lab_stack.stop(web)  # restarted while both are queued
    lab_stack.web("web-2")
    ids["full"] = lab_stack.submit(browser, nickname="full").json()["id"]
    lab_stack.consumer(LAB_FAULT="crash@boom,disk_full@full")
    runs = {name: lab_stack.wait_status(run_id, ("finished", "failed", "cancelled"), seconds=300)
            for name, run_id in ids.items()}
    assert runs["boom"]["status"] == "failed" and "injected crash" in runs["boom"]["error"]["en"]
    assert runs["boom"]["error"]["vi"].startswith("Quá trình huấn luyện dừng vì lỗi")
    assert runs["after-boom"]["status"] == "finished" and runs["after-boom"]["attempts"] == 1
    assert runs["full"]["status"] == "failed" and "disk is full" in runs["full"]["error"]["en"]
    assert "Ổ đĩa" in runs["full"]["error"]["vi"]
    for name in ("boom", "full"):  # nothing half-written left behind
        assert not (lab_stack.instance / "runs" / ids[name]).exists()
        assert not (lab_stack.instance / "checkpoints" / ids[name]).exists()
    assert not [p for p in (lab_stack.instance / "runs").iterdir() if p.name.startswith(".")]
    # the consumer is still serving: one more run after the full disk finishes
    after = lab_stack.submit(browser, nickname="after-full").json()["id"]
    assert lab_stack.wait_status(after, ("finished", "failed"), seconds=300)["status"] == "finished"
