"""The lab bench's pages without JavaScript: the form (Check, presets, refusals in the page's
language, Train), a run's page (queued, cancelled, finished with its results), its model card and
try-it page over the run's own model, the leaderboard with overlaid curves, and its CSV."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest

from app.inference import array_to_png
from app.lab import recipes
from app.lab.recipes import Recipe
from app.tasks import MNIST

FORM = {"dataset": "mnist", "reading": "rows", "cell": "lstm", "units": "64", "layers": "2", "dropout": "0.2",
        "epochs": "1", "batch_size": "128", "learning_rate": "0.001", "subset": "1000", "seed": "1", "nickname": "Lan"}


@pytest.fixture
def client(lab_app):
    return lab_app.test_client()


def run_record(app, run_id):
    from app.records import Run, db

    with app.app_context():
        run = db.session.get(Run, run_id)
        db.session.expunge(run)
        return run


def digit_png() -> bytes:
    """A white vertical stroke on black, 28×28 (a '1' as MNIST stores it)."""
    pixels = np.zeros((28, 28, 1), np.uint8)
    pixels[4:24, 13:16] = 255
    return array_to_png(pixels)


# ----------------------------------------------------------------------------- the bench form
def test_bench_page_has_the_form_and_the_header_link(client):
    page = client.get("/lab?lang=en").get_data(as_text=True)
    assert 'href="/lab"' in page  # the header link
    for name in ("dataset", "reading", "cell", "units", "layers", "bidirectional", "dropout", "epochs",
                 "batch_size", "learning_rate", "subset", "seed", "nickname", "csrf_token"):
        assert f'name="{name}"' in page, name
    assert 'id="presets-table"' in page and 'id="preset-fast"' in page
    assert 'value="64"' in page  # the lab's recipe by default


def test_image_task_page_links_to_the_bench(client):
    page = client.get("/tasks/mnist?lang=en").get_data(as_text=True)
    assert 'href="/lab?dataset=mnist"' in page


def test_check_shows_parameters_and_time_without_javascript(client):
    response = client.post("/lab?lang=en", data={**FORM, "action": "check"})
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    params = recipes.param_count(MNIST, Recipe())
    assert re.search(r'id="est-params">' + re.escape(f"{params:,}") + "<", page)
    assert re.search(r'id="est-time">\d+ (s|min)', page)
    assert 'value="Lan"' in page  # the form keeps what was typed


@pytest.mark.parametrize("lang, words", [("en", "units must be between 4 and 512"), ("vi", "đơn vị")])
def test_refusal_in_the_pages_language(client, lang, words):
    response = client.post(f"/lab?lang={lang}", data={**FORM, "units": "0", "action": "check"})
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'role="alert"' in page and words in page


def test_preset_button_fills_the_form(client):
    page = client.post("/lab?lang=en", data={**FORM, "preset": "fast"}).get_data(as_text=True)
    recipe, settings = recipes.preset("fast", MNIST)
    assert f'id="f-units" name="units" value="{recipe.units}"' in page
    assert f'id="f-epochs" name="epochs" value="{settings.epochs}"' in page


def test_estimate_json_is_live_and_bilingual(client):
    body = client.get("/lab/estimate", query_string=FORM).get_json()
    assert body["params"] == recipes.param_count(MNIST, Recipe()) and body["seconds"] > 0
    bad = client.get("/lab/estimate", query_string={**FORM, "epochs": "999", "lang": "en"})
    assert bad.status_code == 400
    assert bad.get_json()["error_vi"] != bad.get_json()["error_en"]


def test_train_queues_a_run_and_its_page_shows_the_queue(lab_app, client):
    response = client.post("/lab?lang=en", data={**FORM, "action": "submit"})
    assert response.status_code == 303
    run_id = response.headers["Location"].rsplit("/", 1)[-1]
    run = run_record(lab_app, run_id)
    assert run.status == "queued" and run.nickname == "Lan" and run.recipe["units"] == 64
    assert run.params == recipes.param_count(MNIST, Recipe())
    page = client.get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert "position 1 in the queue" in page or "in the queue" in page
    assert 'id="cancel-button"' in page  # this browser owns it
    assert 'http-equiv="refresh"' in page  # no-JS pages reload while the run is active
    assert f'data-events-url="/api/v1/runs/{run_id}/events"' in page
    other = lab_app.test_client().get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert 'id="cancel-button"' not in other  # someone else's browser
    # my runs are listed on the bench
    assert f"/lab/runs/{run_id}" in client.get("/lab").get_data(as_text=True)
    # cancel without JavaScript (owner only)
    assert lab_app.test_client().post(f"/lab/runs/{run_id}/cancel").status_code == 403
    assert client.post(f"/lab/runs/{run_id}/cancel").status_code == 303
    assert run_record(lab_app, run_id).status == "cancelled"
    page = client.get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert 'id="cancel-button"' not in page and 'http-equiv="refresh"' not in page


def test_run_again_prefills_the_form(client, finished_run):
    run_id = finished_run(recipe={"reading": "rows_cols", "cell": "gru", "units": 24, "layers": 1,
                                  "bidirectional": True, "dropout": 0.1}, nickname="Minh")
    page = client.get(f"/lab?again={run_id}&lang=en").get_data(as_text=True)
    assert 'id="f-units" name="units" value="24"' in page
    assert re.search(r'id="f-reading-rows_cols" name="reading" value="rows_cols"\s+checked', page)
    assert re.search(r'<option value="gru"\s+selected', page)
    assert re.search(r'id="f-bidirectional" name="bidirectional" value="1"\s+checked', page)


# ----------------------------------------------------------------------------- a finished run
def test_finished_run_page_shows_the_results(client, finished_run):
    run_id = finished_run()
    page = client.get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert 'id="test-accuracy"' in page and "per-class" in page.lower()
    assert page.count("<polyline") == 4  # loss and accuracy, training and validation
    assert page.count('<circle class="point') == 12  # a dot per epoch on each
    assert f'href="/lab/runs/{run_id}/try"' in page and f'href="/lab/runs/{run_id}/card"' in page
    assert f'href="/lab?again={run_id}"' in page
    assert 'class="confusion"' in page and 'http-equiv="refresh"' not in page


def test_card_page_is_the_shipped_card_template(client, finished_run):
    run_id = finished_run()
    page = client.get(f"/lab/runs/{run_id}/card?lang=en").get_data(as_text=True)
    assert 'id="layers"' in page and 'id="metrics"' in page and 'id="run-note"' in page
    assert f'href="/lab/runs/{run_id}/try"' in page
    assert f'src="/lab/runs/{run_id}/plots/training_curves.png"' in page
    plot = client.get(f"/lab/runs/{run_id}/plots/training_curves.png")
    assert plot.status_code == 200 and plot.mimetype == "image/png"
    assert client.get(f"/lab/runs/{run_id}/plots/card.json").status_code == 404


def test_try_page_classifies_with_the_runs_model_without_javascript(client, finished_run):
    run_id = finished_run()
    page = client.get(f"/lab/runs/{run_id}/try?lang=en").get_data(as_text=True)
    assert f'action="/lab/runs/{run_id}/try#result"' in page and 'id="run-note"' in page
    response = client.post(f"/lab/runs/{run_id}/try?lang=en",
                           data={"file": (io.BytesIO(digit_png()), "one.png"), "trace": "1"},
                           content_type="multipart/form-data")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert 'id="answer"' in page and page.count('<meter min="0" max="1"') == 5
    assert 'id="lstm-input"' in page


def test_try_page_refuses_bad_uploads_in_the_pages_language(client, finished_run):
    run_id = finished_run()
    response = client.post(f"/lab/runs/{run_id}/try?lang=vi", data={"file": (io.BytesIO(b"not an image"), "x.png")},
                           content_type="multipart/form-data")
    assert response.status_code == 400 and 'role="alert"' in response.get_data(as_text=True)


def test_unfinished_or_unknown_runs(client, finished_run):
    run_id = finished_run(status="running", finished_at=None)
    assert client.get(f"/lab/runs/{run_id}/try").status_code == 409
    assert client.get(f"/lab/runs/{run_id}/card").status_code == 200  # the card so far (test_lab_card_so_far.py)
    missing = client.get("/lab/runs/000000000000?lang=en")
    assert missing.status_code == 404 and "000000000000" in missing.get_data(as_text=True)
    assert client.get("/lab/imagenet").status_code == 404


# ----------------------------------------------------------------------------- measured presets
def test_presets_table_reads_measured_results_from_finished_runs(lab_app, client, finished_run):
    recipe, settings = recipes.preset("fast", MNIST)
    from dataclasses import asdict

    run_id = finished_run(recipe=asdict(recipe), settings=asdict(settings),
                          metrics={"test_accuracy": 0.9912, "per_class_accuracy": [0.99] * 10})
    page = client.get("/lab?dataset=mnist&lang=en").get_data(as_text=True)
    row = re.search(r'<tr id="preset-fast">(.*?)</tr>', page, re.S).group(1)
    assert "99.12%" in row and f"/lab/runs/{run_id}" in row
    shipped = re.search(r'<tr id="preset-shipped">(.*?)</tr>', page, re.S).group(1)
    assert "not run yet" in shipped and "served model" in shipped  # the shipped card's own figures


# ----------------------------------------------------------------------------- leaderboard
def test_leaderboard_overlays_ticked_runs_and_downloads_csv(client, finished_run):
    a = finished_run(nickname="=HYPERLINK(1)", metrics={"test_accuracy": 0.5})
    b = finished_run(nickname="Bảo", metrics={"test_accuracy": 0.75},
                     history=[{"epoch": i, "val_loss": 1.0 / i, "val_accuracy": 0.7 + i / 10, "seconds": 5.0} for i in (1, 2)])
    page = client.get("/lab/mnist?lang=en").get_data(as_text=True)
    assert page.index(f'id="row-{b}"') < page.index(f'id="row-{a}"')  # best first
    assert 'id="overlay-accuracy"' not in page
    page = client.get(f"/lab/mnist?lang=en&compare={a}&compare={b}").get_data(as_text=True)
    overlay = re.search(r'<svg[^>]*id="overlay-accuracy".*?</svg>', page, re.S).group(0)
    assert overlay.count("<polyline") == 2
    ends = [pts.split()[-1].split(",")[0] for pts in re.findall(r'<polyline[^>]*points="([^"]+)"', overlay)]
    assert ends == ["300.0", "150.0"]  # epoch 2 of 2 sits under epoch 2 of 3, not at the right edge
    assert re.search(rf'id="c-{a}"\s+checked', page)
    response = client.get("/lab/mnist.csv")
    assert response.mimetype == "text/csv" and "attachment" in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    by_id = {r["id"]: r for r in rows}
    assert by_id[b]["nickname"] == "Bảo" and by_id[b]["test_accuracy"] == "0.75"
    assert by_id[a]["nickname"].startswith("'=")  # no formula for a spreadsheet to run
    assert by_id[a]["epochs_run"] == "3" and by_id[b]["epochs_run"] == "2" and by_id[a]["units"] == "64"


def test_forms_need_the_csrf_token(make_app, tiny_models_dir, tmp_path):
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path), WTF_CSRF_ENABLED=True)
    client = app.test_client()
    assert client.post("/lab", data={**FORM, "action": "check"}).status_code == 400
    page = client.get("/lab").get_data(as_text=True)
    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    assert client.post("/lab", data={**FORM, "action": "check", "csrf_token": token}).status_code == 200


def test_api_docs_document_the_runs_api(client):
    page = client.get("/docs/api?lang=en").get_data(as_text=True)
    assert 'id="runs"' in page
    for route in ("POST /api/v1/runs", "/api/v1/runs?dataset=mnist", "/events", "/predict", "/cancel"):
        assert route in page, route
    assert "curl -c lab.txt" in page and "cats_dogs | cifar10 | faces_gender | fashion_mnist | mnist" in page


def test_api_trace_of_a_run_reads_the_runs_own_weights(lab_app, finished_run):
    """The gate trace of a run's prediction is computed from the run's model, not models/mnist/."""
    run_id = finished_run()
    client = lab_app.test_client()
    answer = client.post(f"/api/v1/runs/{run_id}/predict?trace=1",
                         data={"file": (io.BytesIO(digit_png()), "one.png")}, content_type="multipart/form-data")
    assert answer.status_code == 200
    trace = answer.get_json()["trace"]
    assert trace["difference_from_served"] < 1e-3  # the traced weights reproduce the served answer
    assert str(lab_app.instance_path) in "".join(lab_app.extensions["lstm_tracers"])


def test_closed_bench_refuses_in_the_pages_language_with_the_join_link(make_app, tiny_models_dir, tmp_path):
    from app.instructor import access

    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path))
    with app.app_context():
        access.set_access_mode("code")
    client = app.test_client()
    response = client.post("/lab?lang=vi", data={**FORM, "action": "submit"})
    page = response.get_data(as_text=True)
    assert response.status_code == 403
    assert "mã lớp" in page and 'href="/lab/join"' in page
    from app.records import Run, db

    with app.app_context():
        assert db.session.query(Run).count() == 0  # nothing queued
