"""The text bench's run-time estimate (app/lab/textrecipes.py's cost model, the text throughput of
app/lab/runs.py): monotone in what makes a run longer, measured from finished text runs, shown on
the text form and enforced as the image bench's is (`Limits.max_seconds`, the instructor's too)."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import asdict, replace

import pytest

from app.lab import queue as lab_queue
from app.lab import recipes, runs, textrecipes
from app.lab.recipes import Limits, Throughput
from app.lab.textrecipes import TextFigures, TextRecipe, TextSettings, text_run_cost, text_estimate_seconds
from app.records import FINISHED, Run, db
from app.tasks import BUILTIN_TASKS
from helpers.instructor import INSTRUCTOR_PASSWORD

KIEU = TextFigures(((325, 20784),), (41, 2622), 1572, verse=True)
NYT = TextFigures(((6647, 53995), (7324, 151756)), (831, 6841), 4324, weight_average=True)
SLOW = Throughput(seconds_per_unit=1.0, overhead_seconds=0.0)
FORM = {"dataset": "kieu", "embedding": "64", "cell": "lstm", "units": "128", "layers": "1", "dropout": "0.3",
        "tied": "1", "projection": "0", "sequence_length": "64", "min_count": "2", "epochs": "5",
        "batch_size": "16", "learning_rate": "0.003", "seed": "42"}
BIG = {"dataset": "kieu", "recipe": {"units": 256, "layers": 2}, "epochs": 30, "batch_size": 8}
LIMIT = 120  # the test app's LAB_MAX_SECONDS


def seconds(recipe: TextRecipe = TextRecipe(), settings: TextSettings = TextSettings(),
            figures: TextFigures = KIEU) -> float:
    return text_estimate_seconds(recipe, settings, figures, Throughput(1e-3, 5.0))


# ----------------------------------------------------------------------------- the cost model
@pytest.mark.parametrize("field, small, large", [
    ("embedding", 16, 256), ("units", 32, 512), ("layers", 1, 3), ("projection", 0, 256),
])
def test_a_larger_network_costs_more(field, small, large):
    assert seconds(TextRecipe(**{field: small})) < seconds(TextRecipe(**{field: large}))


def test_the_cells_cost_in_the_order_of_their_gates():
    assert seconds(TextRecipe(cell="simple_rnn")) < seconds(TextRecipe(cell="gru")) < seconds(TextRecipe(cell="lstm"))


def test_each_cell_costs_its_measured_share_of_an_lstm_in_text_and_image_plans():
    """CELL_COST orders the cells as `benchmarks/lab_text_estimate.py --cell-cost` measured them
    (per unit of plan a SimpleRNN layer is the cheapest, then a GRU, an LSTM the reference), and the
    image plans carry the cell into the same `plan_cost`."""
    assert recipes.CELL_COST["simple_rnn"] < recipes.CELL_COST["gru"] < recipes.CELL_COST["lstm"] == 1.0
    lstm = recipes.Layer("rnn", 1000, 10**6, 10, "lstm")
    for cell in recipes.CELLS:
        assert recipes.plan_cost([replace(lstm, cell=cell)], 16) == pytest.approx(
            recipes.CELL_COST[cell] * recipes.plan_cost([lstm], 16))
    mnist = BUILTIN_TASKS["mnist"]
    for cell in recipes.CELLS:
        for plan in (textrecipes.text_plan(TextRecipe(cell=cell, layers=2), 100, 8),
                     recipes.layer_plan(mnist, recipes.Recipe(cell=cell, layers=2))):
            assert [layer.cell for layer in plan if layer.steps] == [cell, cell]


def test_the_end_pays_the_corpus_loading_and_the_ngram_grid():
    """A larger vocabulary (the n-gram scores whole-vocabulary distributions) or auxiliary text (a
    second grid, on more text) cost more after the epochs; the LSTM's cell does not change them."""
    end = text_run_cost(TextRecipe(), TextSettings(), KIEU).end
    assert end > textrecipes.ngram_units(KIEU) > 0
    assert textrecipes.ngram_units(KIEU) < textrecipes.ngram_units(replace(KIEU, vocabulary=8000))
    with_aux = replace(KIEU, parts=KIEU.parts + ((325, 20784),))
    assert textrecipes.ngram_units(replace(KIEU, parts=((650, 41568),))) < textrecipes.ngram_units(with_aux)
    assert text_run_cost(TextRecipe(), TextSettings(), with_aux).end > end
    prose = replace(KIEU, verse=False)  # without the meter rates, which do depend on the model
    assert text_run_cost(TextRecipe(cell="gru"), TextSettings(), prose).end == pytest.approx(
        text_run_cost(TextRecipe(), TextSettings(), prose).end, rel=0.05)


def test_more_epochs_vocabulary_or_text_cost_more_and_larger_batches_less():
    assert seconds(settings=TextSettings(epochs=2)) < seconds(settings=TextSettings(epochs=4))
    assert seconds(figures=KIEU) < seconds(figures=replace(KIEU, vocabulary=8000))
    assert seconds(figures=KIEU) < seconds(figures=replace(KIEU, parts=((650, 41568),)))
    assert seconds(figures=replace(NYT, weight_average=False)) < seconds(figures=NYT)
    assert seconds(settings=TextSettings(batch_size=128)) < seconds(settings=TextSettings(batch_size=16))


def test_shorter_training_sequences_never_cost_less():
    """Cutting the verse blocks into shorter pieces keeps the tokens but makes more batches."""
    costs = [seconds(TextRecipe(sequence_length=n)) for n in (8, 16, 32, 64, 128)]
    assert costs == sorted(costs, reverse=True) and costs[0] > costs[-1]


def test_the_estimate_is_its_epochs_at_the_throughput_plus_the_overhead():
    cost = text_run_cost(TextRecipe(), TextSettings(), KIEU)
    assert cost.epoch > 0 and cost.between > 0 and cost.end > 0
    t = Throughput(2e-3, 7.0)
    assert text_estimate_seconds(TextRecipe(), TextSettings(epochs=3), KIEU, t) == pytest.approx(
        (3 * (cost.epoch + cost.between) + cost.end) * 2e-3 + 7.0)
    prose = replace(KIEU, verse=False)  # no meter rates at the end
    assert text_run_cost(TextRecipe(), TextSettings(), prose).end < cost.end


def test_the_plan_counts_the_parameters_keras_counts():
    """text_param_count is the plan's sum (its Keras check is test_lab_text.py's)."""
    recipe = TextRecipe(embedding=16, units=32, projection=8)
    plan = textrecipes.text_plan(recipe, 100, steps=10)
    assert sum(layer.params for layer in plan) == textrecipes.text_param_count(recipe, 100)
    assert [layer.name for layer in plan] == ["embedding", "lstm_1", "projection", "softmax"]


def test_the_mirrored_constants_are_the_training_sides():
    from training import textsamples

    assert (textrecipes.REPORT_BATCH, textrecipes.REPORT_SEQUENCES) == (textsamples.REPORT_BATCH,
                                                                         textsamples.REPORT_SEQUENCES)
    assert textrecipes.SAMPLE_ROWS == len(textsamples.SAMPLE_SEEDS["words"]) * len(textsamples.SAMPLE_TEMPERATURES)
    from training import ngram

    assert (textrecipes.NGRAM_ORDERS, textrecipes.NGRAM_DISCOUNTS) == (ngram.NGRAM_ORDERS, ngram.NGRAM_DISCOUNTS)


def test_the_figures_come_from_the_shipped_card_or_the_corpus_record(tmp_path):
    (tmp_path / "kieu").mkdir()
    card = {"vocabulary": {"size": 1572}, "data": {"counts": {"train": 325, "validation": 41, "train_tokens": 20784}}}
    (tmp_path / "kieu" / "card.json").write_text(json.dumps(card), encoding="utf-8")
    assert textrecipes.text_figures(BUILTIN_TASKS["kieu"], tmp_path) == KIEU
    assert textrecipes.text_figures(BUILTIN_TASKS["kieu"], tmp_path / "nowhere") is None
    corpus = replace(BUILTIN_TASKS["kieu"], slug="poems", extra={
        "counts": {"train": 80, "val": 10, "test": 10}, "tokens": {"train": 800, "validation": 90, "test": 95},
        "vocabulary_size": 300})
    assert textrecipes.text_figures(corpus, tmp_path) == TextFigures(((80, 800),), (10, 90), 300, verse=True)
    words = replace(corpus, tokenizer="words")
    assert textrecipes.text_figures(words, tmp_path) == TextFigures(((80, 800),), (10, 90), 300)
    assert textrecipes.text_figures(replace(corpus, extra={**corpus.extra, "tokens": {}}), tmp_path) is None


# ----------------------------------------------------------------------------- measured throughput
def finished(dataset: str, recipe: dict, settings: dict, epoch_seconds: list[float], wall: float) -> dict:
    t0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.timezone.utc)
    return {"dataset": dataset, "recipe": recipe, "settings": settings,
            "history": [{"epoch": i + 1, "seconds": s} for i, s in enumerate(epoch_seconds)],
            "started_at": t0, "finished_at": t0 + dt.timedelta(seconds=wall)}


def test_the_throughput_is_the_median_of_finished_text_runs(tmp_path):
    (tmp_path / "kieu").mkdir()
    card = {"vocabulary": {"size": 1572}, "data": {"counts": {"train": 325, "validation": 41, "train_tokens": 20784}}}
    (tmp_path / "kieu" / "card.json").write_text(json.dumps(card), encoding="utf-8")
    cost_of = textrecipes.text_cost(textrecipes.text_datasets(), tmp_path)
    recipe, settings = asdict(TextRecipe()), asdict(TextSettings(epochs=2))
    cost = text_run_cost(TextRecipe(), TextSettings(epochs=2), KIEU)
    rate = 1e-3
    outside = cost.outside(2) * rate

    def took(speed: float) -> dict:  # a run at `speed` times the rate, with 9 s of fixed overhead
        return finished("kieu", recipe, settings, [cost.epoch * rate * speed] * 2,
                        (2 * cost.epoch + cost.outside(2)) * rate * speed + 9.0)

    run = [took(1), took(3), took(2)]
    image_run = finished("mnist", {}, {"epochs": 1, "subset": 1000}, [1.0], 2.0)
    got = recipes.measure_throughput([*run, image_run, {**run[0], "history": []}], cost_of, Throughput(1.0, 99.0))
    assert got.runs == 3 and got.seconds_per_unit == pytest.approx(2 * rate)
    assert got.overhead_seconds == pytest.approx(9.0)
    # the estimate of the middle run from the three is what it took
    assert text_estimate_seconds(TextRecipe(), TextSettings(epochs=2), KIEU, got) == pytest.approx(
        (2 * cost.epoch * rate + outside) * 2 + 9.0)


# ----------------------------------------------------------------------------- the bench
@pytest.fixture
def estimate_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app whose tiny Kiều model's card carries the shipped card's counts (so its runs
    have an estimate), with its own records and queue."""
    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    path = models / "kieu" / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    card["data"] = {"counts": {"train": 325, "validation": 41, "train_tokens": 20784}}
    path.write_text(json.dumps(card), encoding="utf-8")
    (tmp_path / "server").mkdir()
    return make_app(models, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="", LSTMLAB_DATABASE_URL="",
                    DATASET_SERVER_ROOT=str(tmp_path / "server"), LAB_MAX_SECONDS=LIMIT)


def records_and_queue(app) -> tuple[int, int]:
    with app.app_context():
        lab_queue.init_app(app)
        return db.session.query(Run).count(), lab_queue.pending_count()


def test_the_text_form_shows_a_range_then_the_measured_figure(estimate_app):
    client = estimate_app.test_client()
    body = client.get("/lab/estimate", query_string={**FORM, "lang": "en"}).get_json()
    low, high = body["seconds_range"]
    assert body["measured_runs"] == 0 and low < body["seconds"] < high and body["params"] > 0
    assert body["eta_text"].endswith("(not yet measured on this server)") and body["vocab_text"]
    vi = client.get("/lab/estimate", query_string={**FORM, "lang": "vi"}).get_json()["eta_text"]
    assert vi.startswith("từ ") and "chưa đo trên máy chủ này" in vi
    page = client.post("/lab/kieu?lang=en", data={**FORM, "action": "check"}).get_data(as_text=True)
    assert 'id="est-time"' in page and "not yet measured on this server" in page
    assert 'data-estimate-url="/lab/estimate"' in client.get("/lab/kieu").get_data(as_text=True)

    with estimate_app.app_context():
        db.session.add(Run(dataset="kieu", recipe={"units": 128, "tied": True}, settings={"epochs": 2, "batch_size": 16},
                           owner="o" * 32, client="127.0.0.1", status=FINISHED, progress={}, metrics={},
                           history=[{"epoch": 1, "seconds": 3.0}, {"epoch": 2, "seconds": 3.0}],
                           started_at=dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=20),
                           finished_at=dt.datetime.now(dt.timezone.utc)))
        db.session.commit()
        assert runs.throughput().runs == 0  # a text run does not measure the image bench's speed
    body = client.get("/lab/estimate", query_string={**FORM, "lang": "en"}).get_json()
    assert body["measured_runs"] == 1 and body["seconds_range"] is None and "measured" not in body["eta_text"]


def test_an_unknown_corpus_size_has_no_estimate_and_no_time_limit(estimate_app):
    path = estimate_app.config["MODELS_DIR"] + "/nyt_headlines"  # the tiny card: no counts
    assert "counts" not in json.loads(open(f"{path}/card.json", encoding="utf-8").read()).get("data", {})
    body = estimate_app.test_client().get("/lab/estimate", query_string={
        **FORM, "dataset": "nyt_headlines", "epochs": "30", "lang": "en"}).get_json()
    assert body["seconds"] is None and body["eta_text"] == "unknown"


def estimated(app, payload: dict) -> float:
    """The seconds the app estimates for a text payload (its limits aside)."""
    with app.app_context():
        figures = textrecipes.text_figures(textrecipes.text_datasets()["kieu"], app.config["MODELS_DIR"])
        recipe, settings = textrecipes.validate_text(payload, Limits())
        return text_estimate_seconds(recipe, settings, figures, runs.throughput("text"))


def test_an_over_limit_text_run_is_a_bilingual_400_on_the_api_and_the_form(estimate_app):
    assert estimated(estimate_app, BIG) > LIMIT
    client = estimate_app.test_client()
    before = records_and_queue(estimate_app)
    resp = client.post("/api/v1/runs?lang=en", json=BIG)
    body = resp.get_json()
    assert resp.status_code == 400 and f"the limit is {LIMIT // 60} minutes" in body["error_en"]
    assert "phút" in body["error_vi"] and body["error_vi"] != body["error_en"]
    form = {**FORM, "units": "256", "layers": "2", "epochs": "30", "batch_size": "8"}
    resp = client.post("/lab/kieu?lang=vi", data={**form, "action": "submit"})
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="form-error"' in page and "phút" in page and 'value="256"' in page
    check = client.get("/lab/estimate", query_string={**form, "lang": "en"})
    assert check.status_code == 400 and "minutes" in check.get_json()["error"]
    assert records_and_queue(estimate_app) == before
    small = client.post("/api/v1/runs", json={"dataset": "kieu", "preset": "lab", "epochs": 2})
    assert small.status_code == 202, small.get_json()
    assert records_and_queue(estimate_app) == (before[0] + 1, before[1] + 1)


def test_the_instructors_time_limit_applies_to_text_runs(estimate_app, add_instructor):
    """The console's max_seconds (the stored limits every data set's runs are checked against)
    refuses a text run over it, and lets it through once raised."""
    add_instructor(estimate_app)
    teacher = estimate_app.test_client()
    assert teacher.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302
    payload = {"dataset": "kieu", "preset": "fast", "epochs": 10}
    took = estimated(estimate_app, payload)
    assert 2 < took < LIMIT
    student = estimate_app.test_client()
    before = records_and_queue(estimate_app)
    assert teacher.post("/instructor/limits", data={"max_seconds": str(int(took // 2))}).status_code in (302, 303)
    resp = student.post("/api/v1/runs?lang=en", json=payload)
    assert resp.status_code == 400 and "the limit is 1 minutes" in resp.get_json()["error_en"]
    assert records_and_queue(estimate_app) == before
    assert teacher.post("/instructor/limits", data={"max_seconds": str(int(took) + 60)}).status_code in (302, 303)
    assert student.post("/api/v1/runs", json=payload).status_code == 202


def test_a_text_run_page_shows_the_time_left_while_it_trains(estimate_app):
    with estimate_app.app_context():
        run = Run(dataset="kieu", recipe={}, settings={"epochs": 5}, owner="o" * 32, client="127.0.0.1",
                  status="running", progress={"epoch": 2, "epochs": 5, "batch": 3, "batches": 21, "eta": 75.0},
                  metrics={}, history=[], started_at=dt.datetime.now(dt.timezone.utc))
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    page = estimate_app.test_client().get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert "Time left (estimate)" in page and '<strong id="eta">1 min 15 s</strong>' in page
    assert "js/duration.js" in page and 'data-fmt-m="%(m)s min %(s)s s"' in page
