"""A run's card page before the run has finished: the card so far (recipe, settings, epochs
done, the latest figures, the curves so far), marked in the page's language, with 200; a
finished run's card is unchanged."""

from __future__ import annotations

import re

import pytest


@pytest.fixture
def client(lab_app):
    return lab_app.test_client()


TWO_OF_FIVE = {"status": "running", "finished_at": None, "settings": {"epochs": 5, "batch_size": 128,
                                                                      "learning_rate": 0.001, "subset": 0, "seed": 1},
               "progress": {"phase": "training", "epoch": 3, "epochs": 5, "batch": 4, "batches": 10,
                            "points": [{"x": 2.2, "loss": 0.41, "accuracy": 0.86}, {"x": 2.4, "loss": 0.39, "accuracy": 0.87}]},
               "history": [{"epoch": 1, "loss": 0.9, "accuracy": 0.7, "val_loss": 0.8, "val_accuracy": 0.75, "seconds": 4.0},
                           {"epoch": 2, "loss": 0.5, "accuracy": 0.84, "val_loss": 0.45, "val_accuracy": 0.8523,
                            "seconds": 4.0}]}


@pytest.mark.parametrize(("lang", "marker", "latest"), [("en", "Training, epoch 3 of 5", "0.8523"),
                                                       ("vi", "Đang huấn luyện, epoch 3 trên 5", "0,8523")])
def test_a_training_runs_card_shows_what_is_known_so_far(client, finished_run, lang, marker, latest):
    run_id = finished_run(**TWO_OF_FIVE)
    response = client.get(f"/lab/runs/{run_id}/card?lang={lang}")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert re.search(r'id="card-state-text">' + re.escape(marker) + "<", page)
    assert 'id="card-recipe">' in page and 'id="card-settings">' in page
    assert re.search(r'id="card-epochs">2 (of|trên) 5<', page)
    table = re.search(r'<table class="metrics" id="card-latest">(.*?)</table>', page, re.S).group(1)
    assert latest in table and ("Validation accuracy" if lang == "en" else "Độ chính xác kiểm định") in table
    curves = re.findall(r'<svg class="chart lab run-chart" id="chart-(loss|accuracy)"', page)
    assert curves == ["loss", "accuracy"]
    loss_chart = page[page.index('id="chart-loss"'):page.index('id="chart-accuracy"')]
    assert loss_chart.count("<polyline") == 2  # the streamed training points and the validation epochs
    assert f'href="/lab/runs/{run_id}"' in page and f"/lab/runs/{run_id}/try" not in page  # no model to try yet


def test_a_queued_or_failed_runs_card_says_so(client, finished_run):
    queued = finished_run(status="queued", started_at=None, finished_at=None, history=[], progress={})
    page = client.get(f"/lab/runs/{queued}/card?lang=vi").get_data(as_text=True)
    assert "Đang chờ trong hàng đợi: chưa chạy epoch nào (dự kiến 3)." in page
    assert "Chưa có epoch nào xong" in page
    failed = finished_run(status="failed")
    response = client.get(f"/lab/runs/{failed}/card?lang=en")
    assert response.status_code == 200
    assert "Ended (failed) after epoch 3 of 3, without a model." in response.get_data(as_text=True)


def test_a_training_text_runs_card_shows_its_perplexity_so_far(client, finished_text_run):
    run_id = finished_text_run(status="running", finished_at=None,
                               progress={"phase": "training", "epoch": 2, "epochs": 2, "batch": 1, "batches": 3},
                               history=[{"epoch": 1, "loss": 5.0, "perplexity": 400.0, "val_loss": 5.5,
                                         "val_perplexity": 450.25, "seconds": 10.0}])
    response = client.get(f"/lab/runs/{run_id}/card?lang=en")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and "Training, epoch 2 of 2" in page
    assert "Validation perplexity" in page and "450.2" in page and 'id="chart-perplexity"' in page
    assert "embedding 8" in page


def test_a_finished_runs_card_is_unchanged(client, finished_run):
    run_id = finished_run()
    page = client.get(f"/lab/runs/{run_id}/card?lang=en").get_data(as_text=True)
    assert 'id="run-note"' in page and 'id="card-state"' not in page and 'id="metrics"' in page
