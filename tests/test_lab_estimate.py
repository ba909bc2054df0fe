"""The bench's first estimate: the calibrated default shown as a range until a run has been
measured on this server (or a speed configured), then the server's own single figure."""

from __future__ import annotations

import datetime as dt

import pytest

from app.lab import runs
from app.records import FINISHED, Run, db

FORM = {"dataset": "mnist", "reading": "rows", "cell": "lstm", "units": "64", "layers": "2", "dropout": "0.2",
        "epochs": "3", "batch_size": "128", "learning_rate": "0.001", "subset": "10000", "seed": "1"}


def test_a_fresh_server_shows_a_range_then_its_measured_figure(make_app, tiny_models_dir, tmp_path):
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                   LSTMLAB_DATABASE_URL="")
    client = app.test_client()
    body = client.get("/lab/estimate", query_string={**FORM, "lang": "en"}).get_json()
    low, high = body["seconds_range"]
    assert body["measured_runs"] == 0 and low < body["seconds"] < high
    assert body["eta_text"].endswith("(not yet measured on this server)") and " to " in body["eta_text"]
    vi = client.get("/lab/estimate", query_string={**FORM, "lang": "vi"}).get_json()["eta_text"]
    assert vi.startswith("từ ") and "chưa đo trên máy chủ này" in vi
    page = client.post("/lab?lang=en", data={**FORM, "action": "check"}).get_data(as_text=True)
    assert "not yet measured on this server" in page

    now = dt.datetime.now(dt.timezone.utc)
    with app.app_context():
        db.session.add(Run(dataset="mnist", recipe={"units": 64, "layers": 2}, settings={"epochs": 1, "subset": 10000},
                           owner="o" * 32, client="127.0.0.1", status=FINISHED, progress={}, metrics={},
                           history=[{"epoch": 1, "seconds": 12.0}], started_at=now - dt.timedelta(seconds=20),
                           finished_at=now))
        db.session.commit()
    body = client.get("/lab/estimate", query_string={**FORM, "lang": "en"}).get_json()
    assert body["measured_runs"] == 1 and body["seconds_range"] is None and "measured" not in body["eta_text"]
    assert body["seconds"] == pytest.approx(3 * 12.0 + 8.0)  # three epochs of the measured one, plus its overhead


def test_a_configured_speed_needs_no_range(make_app, tiny_models_dir, tmp_path):
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                   LSTMLAB_DATABASE_URL="", LAB_SECONDS_PER_UNIT=runs.DEFAULT_SECONDS_PER_UNIT)
    body = app.test_client().get("/lab/estimate", query_string={**FORM, "lang": "en"}).get_json()
    assert body["seconds_range"] is None and "measured" not in body["eta_text"]
