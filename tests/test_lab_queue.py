"""The lab bench's queue end to end, with real processes: gunicorn serving the API, Huey
consumers (`python -m app.lab`) training, SQLite files in the instance folder by default, a real
redis-server for the scale-out. Runs are tiny (256 images, 8 units, 1 epoch, 500 test images)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from app.lab import queue as lab_queue


def read_events(session, url: str, seconds: float = 150) -> list[tuple[str, dict]]:
    """Read a run's server-sent events until the stream ends (the run ended)."""
    events, name = [], None
    deadline = time.monotonic() + seconds
    with session.get(url, stream=True, timeout=(5, 60)) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response.iter_lines(decode_unicode=True):
            if time.monotonic() > deadline:
                break
            if raw.startswith("event: "):
                name = raw[len("event: "):]
            elif raw.startswith("data: ") and name:
                events.append((name, json.loads(raw[len("data: "):])))
                name = None
    return events


def test_storage_from_queue_url(tmp_path):
    """Empty URL: Huey's SQLite file in the instance folder; redis:// switches storage; junk is refused."""
    from huey.storage import RedisStorage, SqliteStorage

    cls, kw = lab_queue.storage_settings("", tmp_path)
    assert cls is SqliteStorage and kw == {"filename": str(tmp_path / "queue.sqlite3")}
    cls, kw = lab_queue.storage_settings("redis://127.0.0.1:6379/3", tmp_path)
    assert cls is RedisStorage and kw == {"url": "redis://127.0.0.1:6379/3"}
    with pytest.raises(ValueError, match="LSTMLAB_QUEUE_URL"):
        lab_queue.storage_settings("amqp://nope", tmp_path)


@pytest.mark.slow
def test_end_to_end_sqlite_through_the_consumer_serve_starts(lab_stack, mnist_png):
    """gunicorn's hooks (make serve) start LSTMLAB_TRAIN_WORKERS consumers at lower priority; submit
    through the JSON API, watch the events, see the run finish on that consumer, classify with its
    own model; stopping the server stops the consumer. (One stack for both: a gunicorn boot and a
    consumer start-up less than two tests.)"""
    web = lab_stack.web(LSTMLAB_TRAIN_WORKERS="1")
    pids = lab_stack.wait_for(lambda: lab_stack.children(web.pid, b"app.lab"), 30, "no consumer started by gunicorn")
    assert len(pids) == 1
    lab_stack.wait_for(lambda: os.getpriority(os.PRIO_PROCESS, pids[0]) >= 10, 30, "the consumer was not niced")
    browser = lab_stack.session()
    response = lab_stack.submit(browser, nickname="e2e")
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["status"] == "queued" and body["queue_position"] == 1
    assert set(body["links"]) >= {"self", "events", "card", "predict"}
    assert "lab_owner" in browser.cookies

    events = read_events(browser, body["links"]["events"])
    names = [n for n, _ in events]
    assert "epoch" in names and names[-1] == "status", names
    statuses = [e["status"] for n, e in events if n == "status"]
    assert statuses[0] in ("queued", "running") and statuses[-1] == "finished", statuses
    epoch = next(e for n, e in events if n == "epoch")
    assert epoch["epoch"] == 1 and {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(epoch)

    run = lab_stack.run(body["id"])
    assert run["status"] == "finished" and run["attempts"] == 1 and run["error"] is None
    assert len(run["history"]) == 1 and run["metrics"]["test_count"] == 500
    assert 0.0 <= run["metrics"]["test_accuracy"] <= 1.0 and run["params"] > 0

    folder = lab_stack.instance / "runs" / body["id"]
    assert {"model.keras", "model.tflite", "card.json", "training_curves.png"} <= {p.name for p in folder.iterdir()}
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no half-written folder left
    card = json.loads((folder / "card.json").read_text())
    assert card["architecture"] == "recipe" and card["run"]["id"] == body["id"]
    assert card["command"].startswith("python -m training mnist --architecture recipe")

    png, _label = mnist_png(0)
    answer = browser.post(body["links"]["predict"], files={"file": ("digit.png", png, "image/png")}, timeout=30)
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["run"] == body["id"] and len(result["top"]) == 5
    probs = [t["probability"] for t in result["top"]]
    assert probs == sorted(probs, reverse=True) and 0.0 < sum(probs) <= 1.0 + 1e-5
    assert {"label_en", "label_vi", "index"} <= set(result["prediction"])
    assert lab_stack.session().get(body["links"]["card"], timeout=10).json()["run"]["id"] == body["id"]
    # the web workers served all of it without loading TensorFlow (LiteRT ships no libtensorflow)
    workers = lab_stack.children(lab_stack.web_proc.pid, b"gunicorn")
    assert workers
    for pid in workers:
        assert "libtensorflow_framework" not in Path(f"/proc/{pid}/maps").read_text()
    assert f"run {body['id']}: training mnist (attempt 1)" in lab_stack.log("web")  # trained by gunicorn's consumer
    lab_stack.stop(web, signal.SIGTERM)
    lab_stack.wait_for(lambda: not Path(f"/proc/{pids[0]}").exists() or
                       "Z" in Path(f"/proc/{pids[0]}/stat").read_text().split()[2], 40, "consumer left running")


@pytest.mark.slow
def test_redis_two_consumers(lab_stack):
    """Against a real redis-server, two consumers: four runs, each trained exactly once."""
    url = lab_stack.redis()
    lab_stack.env["LSTMLAB_QUEUE_URL"] = url
    lab_stack.web(FLASK_LAB_RUNS_PER_BROWSER="10", FLASK_LAB_RUNS_PER_CLIENT="10")
    lab_stack.consumer("consumer-1")
    lab_stack.consumer("consumer-2")
    browser = lab_stack.session()
    ids = []
    for i in range(4):
        response = lab_stack.submit(browser, nickname=f"r{i}", seed=i)
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    runs = [lab_stack.wait_status(run_id, ("finished", "failed"), seconds=240) for run_id in ids]
    assert [r["status"] for r in runs] == ["finished"] * 4, [r["error"] for r in runs]
    assert [r["attempts"] for r in runs] == [1, 1, 1, 1]
    for run in runs:
        assert [h["epoch"] for h in run["history"]] == [1]
        assert run["metrics"]["test_count"] == 500 and run["started_at"] <= run["finished_at"]
        assert (lab_stack.instance / "runs" / run["id"] / "model.tflite").is_file()
    # each run was executed by exactly one consumer: count the "training" lines across both logs
    logs = lab_stack.log("consumer-1") + lab_stack.log("consumer-2")
    for run_id in ids:
        assert logs.count(f"run {run_id}: training") == 1
    import redis as redis_client

    client = redis_client.Redis.from_url(url)
    assert client.llen("huey.redis.lstmlab") == 0  # nothing left in the queue
    listed = lab_stack.session().get(lab_stack.web_url + "/api/v1/runs?dataset=mnist", timeout=10).json()
    assert sorted(r["id"] for r in listed["runs"]) == sorted(ids)
