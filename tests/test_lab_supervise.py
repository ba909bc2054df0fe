"""The queue survives its own processes: every way a run ends removes its checkpoint folder; a consumer
started by a master dies with it; never more consumers than configured on one instance folder."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from app.lab import jobs
from app.records import CANCELLED, FAILED, INTERRUPTED, QUEUED, Run, db

ROOT = Path(__file__).resolve().parents[1]


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


def consumer_env(instance, **extra) -> dict:
    """The environment of a `python -m app.lab` against its own instance folder."""
    return {**os.environ, "LSTMLAB_INSTANCE": str(instance), "LSTMLAB_QUEUE_URL": "", "LSTMLAB_DATABASE_URL": "",
            "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def test_a_consumer_beyond_the_configured_count_refuses_to_start(tmp_path):
    """With LSTMLAB_TRAIN_WORKERS=1 and the one slot held, a second consumer exits cleanly."""
    instance = tmp_path / "instance"
    instance.mkdir()
    with open(instance / "consumer-0.lock", "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = subprocess.run([sys.executable, "-m", "app.lab"], env=consumer_env(instance, LSTMLAB_TRAIN_WORKERS="1"),
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    assert "slot(s)" in done.stderr and "not starting another" in done.stderr


PARENT = """
import os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-m", "app.lab"], start_new_session=True,
                         env={**os.environ, "LSTMLAB_MASTER_PID": str(os.getpid())})
print(child.pid, flush=True)
time.sleep(600)
"""


def test_a_consumer_dies_with_its_master(tmp_path):
    """kill -9 of the process that started the consumer (as the gunicorn master does): it exits."""
    parent = subprocess.Popen([sys.executable, "-c", PARENT], env=consumer_env(tmp_path / "instance"), cwd=ROOT,
                              stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    try:
        time.sleep(1.0)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and jobs.pid_alive(child) and not reaped(child):
            time.sleep(0.2)
        assert not jobs.pid_alive(child) or reaped(child)
    finally:
        if jobs.pid_alive(child) and not reaped(child):
            os.kill(child, signal.SIGKILL)


def reaped(pid: int) -> bool:
    """True when `pid` is a zombie (exited, not yet collected by its new parent)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True


def test_gunicorn_restarts_a_killed_consumer_twice(lab_stack):
    """kill -9 of the consumer under a real gunicorn: a new one is started, both times."""
    web = lab_stack.web(LSTMLAB_TRAIN_WORKERS="1")
    for _ in range(2):
        pids = lab_stack.wait_for(lambda: lab_stack.children(web.pid, b"app.lab"), 30, "no consumer running")
        os.kill(pids[0], signal.SIGKILL)
        lab_stack.wait_for(lambda: [p for p in lab_stack.children(web.pid, b"app.lab") if p not in pids], 30,
                           "the killed consumer was not restarted")


@pytest.mark.slow
def test_a_run_whose_consumer_is_killed_twice_is_requeued_and_finishes(lab_stack):
    """kill -9 of the consumer training a run, twice, each time inside an epoch after a checkpoint:
    the restarted consumer's start-up sweep finds the dead pid and queues the run again within 30 s,
    and the run finally finishes, resumed from its checkpoint (epochs 1, 2, 3 once each)."""
    lab_stack.env["LAB_PROGRESS_SECONDS"] = "0.25"  # progress at every cancel poll: the epoch window is seen
    web = lab_stack.web(LSTMLAB_TRAIN_WORKERS="1", FLASK_LAB_RUNS_PER_BROWSER="5")
    response = lab_stack.submit(lab_stack.session(), nickname="twice", epochs=3, subset=3000, batch_size=16)
    assert response.status_code == 202, response.text
    run_id = response.json()["id"]
    requeue_seconds = []
    for done in (1, 2):
        def inside_next_epoch(run, done=done):  # `done` epochs checkpointed, far from the next one's writes
            p = run["progress"]
            return (run["status"] == "running" and len(run["history"]) == done and p.get("epoch") == done + 1
                    and 3 <= p.get("batch", 0) <= 0.5 * p["batches"])

        lab_stack.wait_for(lambda: inside_next_epoch(lab_stack.run(run_id)), 120, f"never saw epoch {done + 1} under way")
        attempts = lab_stack.run(run_id)["attempts"]
        pids = lab_stack.children(web.pid, b"app.lab")
        assert len(pids) == 1
        os.kill(pids[0], signal.SIGKILL)
        killed = time.monotonic()

        def requeued(attempts=attempts):
            run = lab_stack.run(run_id)
            return run["status"] in ("interrupted", "queued") or (run["status"] == "running" and run["attempts"] > attempts)

        lab_stack.wait_for(requeued, 30, f"kill {done}: the run was not queued again")
        requeue_seconds.append(time.monotonic() - killed)
    run = lab_stack.wait_status(run_id, ("finished", "failed"), seconds=120)
    print(f"kill -> requeue: {', '.join(f'{s:.1f} s' for s in requeue_seconds)}")
    assert run["status"] == "finished", run["error"]
    assert run["attempts"] == 3 and [h["epoch"] for h in run["history"]] == [1, 2, 3]
    log = lab_stack.log("web")  # gunicorn's consumers write to its output
    assert f"run {run_id}: training mnist (attempt 2, resumed)" in log
    assert f"run {run_id}: training mnist (attempt 3, resumed)" in log
    assert not (lab_stack.instance / "checkpoints" / run_id).exists()
    assert all(s < 30 for s in requeue_seconds)
