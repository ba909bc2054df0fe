"""A run's live curves: training points every few batches from the Keras callback into the run's
progress record, served by the API and the events stream, drawn with epoch ticks, round gridlines
and titled axes; and the leaderboard's per-epoch history CSV. In-process (a tiny Keras fit)."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest

from app.lab import jobs
from app.lab.charts import nice_ticks, run_chart
from app.records import FINISHED, Run, db
from test_lab_faults import add_run, records_app  # noqa: F401 - a fixture


def test_a_window_is_the_mean_of_its_batches_from_keras_running_means():
    window = jobs.BatchWindow()
    window.plan(epochs=1, batches=6)
    assert window.stride == 1
    window.plan(epochs=2, batches=400)  # at most POINTS_PER_EPOCH points an epoch
    assert window.stride == 10
    window.plan(epochs=1, batches=6)
    window.stride = 2
    window.start(0)
    losses, hits = [3.0, 1.0, 2.0, 2.0, 0.5, 0.5], [0, 1, 1, 1, 1, 0]
    points = []
    for k in range(1, 7):  # Keras reports the mean over the epoch's batches so far
        logs = {"loss": np.float32(np.mean(losses[:k])), "accuracy": float(np.mean(hits[:k]))}
        point = window.point(k, logs)
        if point:
            points.append(point)
    assert [p["x"] for p in points] == [pytest.approx(1 / 3, abs=1e-4), pytest.approx(2 / 3, abs=1e-4), 1.0]
    assert [p["loss"] for p in points] == [pytest.approx(2.0), pytest.approx(2.0), pytest.approx(0.5)]
    assert [p["accuracy"] for p in points] == [pytest.approx(0.5), pytest.approx(1.0), pytest.approx(0.5)]


def test_gridlines_are_round_values_covering_the_data():
    assert nice_ticks(0.13, 0.97) == [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0.31, 2.3) == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5]
    ticks = nice_ticks(0.5, 0.5)  # a single value still gets a span
    assert ticks[0] < 0.5 < ticks[-1]
    chart = run_chart("accuracy", [{"x": 0.5, "accuracy": 0.3}, {"x": 1.0, "accuracy": 0.6}],
                      [{"epoch": 1, "accuracy": 0.45, "val_accuracy": 0.7}], epochs=12)
    assert [t["label"] for t in chart["xticks"]] == [2, 4, 6, 8, 10, 12]  # at most 10 labelled epochs
    assert len(chart["grid"]) >= 3 and chart["lines"][0]["points"][-1].startswith("25.0,")  # epoch 1 of 12


def test_points_stream_from_the_callback_to_the_api_the_events_and_the_page(records_app):
    """A real (tiny) Keras fit with the run's callback: more than two points per epoch reach the
    record, the API and the events stream; the run page draws them with titled axes."""
    import keras

    run_id = add_run(records_app, settings={"epochs": 2})
    reporter = jobs.Reporter(records_app, run_id, interval=60, history=[])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(160, 4)).astype("float32")
    y = (x[:, 0] > 0).astype("int32")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, batch_size=8, epochs=2, verbose=0, callbacks=[reporter.callback()])  # 20 batches an epoch

    client = records_app.test_client()
    body = client.get(f"/api/v1/runs/{run_id}").get_json()
    points = body["progress"]["points"]
    assert len(points) == 40 and len(body["history"]) == 2
    xs = [p["x"] for p in points]
    assert xs == sorted(xs) and xs[0] == pytest.approx(0.05) and xs[-1] == 2.0
    assert all(0 <= p["accuracy"] <= 1 and p["loss"] > 0 for p in points)

    page = client.get(f"/lab/runs/{run_id}?lang=vi").get_data(as_text=True)
    svg = re.search(r'<svg[^>]*id="chart-loss".*?</svg>', page, re.S).group(0)
    line = re.search(r'<polyline class="series s0" points="([^"]+)"', svg).group(1)
    assert len(line.split()) == 40
    assert "Epoch" in svg and "Mất mát" in svg  # both axes titled, in the page's language
    assert len(re.findall(r"<line x1=\"0\"", svg)) >= 3  # gridlines
    assert re.findall(r'text-anchor="middle">(\d+)</text>', svg) == ["1", "2"]  # a tick per epoch
    assert 'Độ chính xác' in re.search(r'<svg[^>]*id="chart-accuracy".*?</svg>', page, re.S).group(0)

    with records_app.app_context():
        db.session.get(Run, run_id).status = FINISHED
        db.session.commit()
    stream = client.get(f"/api/v1/runs/{run_id}/events").get_data(as_text=True)
    sent = [line for line in stream.splitlines() if line.startswith("data: {\"points\"")]
    assert stream.count("event: points") == 1 and sent and sent[0].count('"x"') == 40
    assert stream.count("event: epoch") == 2


def test_leaderboard_offers_the_per_epoch_history_csv(lab_app, finished_run):
    a = finished_run(nickname="+cmd", metrics={"test_accuracy": 0.5})
    client = lab_app.test_client()
    page = client.get("/lab/mnist?lang=en").get_data(as_text=True)
    assert 'id="history-csv-link" href="/lab/mnist/history.csv"' in page and 'id="csv-link"' in page
    response = client.get("/lab/mnist/history.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert "lstmlab-mnist-history.csv" in response.headers["Content-Disposition"]
    rows = [r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True))) if r["id"] == a]
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["loss"] == "0.5" and rows[1]["val_accuracy"] == "0.8" and rows[0]["nickname"] == "'+cmd"
    assert client.get("/lab/no_such_set/history.csv").status_code == 404
