"""Text runs on the bench (kieu, nyt_headlines): submitted through the runs API or the text bench
page, trained by the consumer's job with `train_text_task`, per-epoch perplexities and sample
lines in the record and on the run page, the leaderboard by test perplexity."""

from __future__ import annotations

import re

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


@pytest.fixture(scope="module")
def text_app(make_app, tiny_models_dir, tmp_path_factory):
    """A fresh app (records, SQLite queue) for this module; text runs train as --quick (one
    epoch on a slice of the corpus)."""
    import shutil

    instance = tmp_path_factory.mktemp("text-instance")
    models = instance / "models"  # a private copy: a test publishes into it
    shutil.copytree(tiny_models_dir, models)
    return make_app(models, INSTANCE_PATH=str(instance), LSTMLAB_QUEUE_URL="", MODELS_RELOAD_SECONDS=0,
                    LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}", LAB_TEXT_QUICK=1)


@pytest.fixture(scope="module")
def trained(text_app):
    """(run id, the API's 202 body) of a tiny Kiều run submitted by POST /api/v1/runs and trained
    in-process by the consumer's job."""
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
    return run_id


def test_a_kieu_run_goes_through_the_queue_and_reports_every_epoch(text_app, trained):
    """The job trains with train_text_task and writes, per epoch, the training and validation
    perplexity and sample lines with the meter check; the finished record has the test
    perplexity beside the n-gram's; the card carries the run and its command line."""
    with text_app.app_context():
        run = db.session.get(Run, trained)
        history, metrics = run.history, run.metrics
    assert [e["epoch"] for e in history] == [1]
    for entry in history:
        assert entry["perplexity"] > 1 and entry["val_perplexity"] > 1 and "val_loss" in entry
        assert {s["temperature"] for s in entry["samples"]} == {0.7, 1.0}
        for sample in entry["samples"]:
            assert sample["lines"] and len(sample["meter"]) == len(sample["lines"])
    assert metrics["test_perplexity"] > 1 and metrics["ngram"]["test_perplexity"] > 1
    card = text_app.test_client().get(f"/api/v1/runs/{trained}/card").get_json()
    assert card["run"]["id"] == trained and card["model_kwargs"]["tied"] is True
    assert card["command"].startswith("python -m training kieu --epochs 2")


def test_the_run_page_shows_curves_samples_meter_and_the_ngram(text_app, trained):
    with text_app.app_context():
        run = db.session.get(Run, trained)
        sample, metrics = run.history[0]["samples"][0], run.metrics
    page = text_app.test_client().get(f"/lab/runs/{trained}?lang=en").get_data(as_text=True)
    assert 'id="chart-perplexity"' in page and "<polyline" in page
    assert sample["lines"][0].split()[0] in page and 'class="check' in page
    assert 'id="run-downloads"' not in page  # another browser's run: no files
    bare = page.replace(",", "")  # thousands separators
    assert f"{metrics['test_perplexity']:.1f}" in bare and f"{metrics['ngram']['test_perplexity']:.1f}" in bare
    vi = text_app.test_client().get(f"/lab/runs/{trained}?lang=vi").get_data(as_text=True)
    assert "Độ bối rối (perplexity) trên tập kiểm tra" in vi and "Độ bối rối sau mỗi epoch" in vi


def test_the_text_bench_lists_runs_by_test_perplexity(text_app, trained):
    from app.records import FINISHED as DONE_OK

    with text_app.app_context():
        base = db.session.get(Run, trained)
        for ppl, name in ((50.0, "better"), (5000.0, "worse")):
            db.session.add(Run(dataset="kieu", recipe=base.recipe, settings=base.settings, nickname=name,
                               owner="o" * 32, client="x", status=DONE_OK, progress={}, history=[],
                               metrics={"test_perplexity": ppl, "ngram": {"test_perplexity": 235.3}}))
        db.session.commit()
    page = text_app.test_client().get("/lab/kieu").get_data(as_text=True)
    order = [m for m in re.findall(r">(better|worse|tiny verse) · [^<#]+ #\d+</a>", page)]  # the runs' names
    assert order == ["better", "tiny verse", "worse"]
    assert 'id="text-form"' in page and 'name="sequence_length"' in page and 'name="min_count"' in page


@pytest.mark.parametrize("preset", ["lab", "shipped", "fast"])
def test_a_preset_fills_the_text_form(text_app, preset):
    from app.lab.recipes import current_limits
    from app.lab.textrecipes import limited_preset, training_sequences
    from app.tasks import BUILTIN_TASKS

    client = text_app.test_client()
    page = client.post("/lab/nyt_headlines", data={"preset": preset}).get_data(as_text=True)
    spec = BUILTIN_TASKS["nyt_headlines"]
    with text_app.app_context():
        recipe, settings = limited_preset(preset, spec, current_limits(),
                                          training_sequences(spec, text_app.config["MODELS_DIR"]))
    assert f'name="units" value="{recipe.units}"' in page and f'name="epochs" value="{settings.epochs}"' in page


def test_train_from_the_text_bench_queues_a_run_and_redirects_to_it(text_app):
    client = text_app.test_client()
    form = {"action": "submit", "embedding": "8", "cell": "gru", "units": "8", "layers": "2", "dropout": "0.1",
            "sequence_length": "16", "min_count": "2", "epochs": "1", "batch_size": "16", "learning_rate": "0.003",
            "seed": "1", "nickname": "form run"}
    resp = client.post("/lab/nyt_headlines", data=form)
    assert resp.status_code == 303
    run_id = resp.headers["Location"].rsplit("/", 1)[1]
    with text_app.app_context():
        run = db.session.get(Run, run_id)
        assert run.status == QUEUED and run.recipe["cell"] == "gru" and run.recipe["layers"] == 2
        assert run.recipe["tied"] is False and run.recipe["sequence_length"] == 16
    page = client.get(f"/lab/runs/{run_id}").get_data(as_text=True)
    assert "form run" in page and 'id="cancel-button"' in page
    assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 202


def test_an_instructor_publishes_a_text_run_and_it_is_served(text_app, trained, add_instructor):
    """The publish form takes a text run (no class names; its test perplexity beside the n-gram's)
    and the model store serves it as a text task at once, generating verse."""
    from helpers.instructor import INSTRUCTOR_PASSWORD

    add_instructor(text_app)
    client = text_app.test_client()
    assert client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302
    run_page = client.get(f"/lab/runs/{trained}?lang=en").get_data(as_text=True)
    assert 'id="run-downloads"' in run_page and "<code>model.keras</code>" in run_page  # an instructor's files
    form = client.get(f"/instructor/runs/{trained}/publish?lang=en").get_data(as_text=True)
    assert 'id="test-perplexity"' in form and 'name="classes"' not in form
    resp = client.post(f"/instructor/runs/{trained}/publish?lang=en",
                       data={"slug": "my_kieu", "title_en": "My Kiều", "title_vi": "Kiều của tôi"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:800]
    tasks = {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}
    assert tasks["my_kieu"]["status"] == "ready" and tasks["my_kieu"]["title_vi"] == "Kiều của tôi"
    answer = client.post("/api/v1/tasks/my_kieu/generate", json={"seed": "Trăm năm", "strategy": "temperature"})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["text"].lower().startswith("trăm năm")


@pytest.mark.parametrize("cell, gates", [("gru", ["z", "r", "g", "h"]), ("simple_rnn", ["h"])])
def test_an_instructor_publishes_a_gru_or_simple_rnn_text_run_and_it_is_served(text_app, add_instructor,
                                                                             tiny_cell_model, cell, gates):
    """A finished GRU or SimpleRNN text run publishes like an LSTM's: the model store loads it as a
    text task (the NumPy step of its cell), which generates verse under the meter, traced."""
    from helpers.instructor import INSTRUCTOR_PASSWORD
    from helpers.lab import add_finished_run

    run_id = add_finished_run(text_app, {
        "dataset": "kieu", "status": FINISHED, "owner": "someone-else", "client": "127.0.0.1", "settings": {},
        "recipe": {"embedding": 8, "cell": cell, "units": 16, "layers": 2, "dropout": 0.0, "tied": False},
        "metrics": {"test_perplexity": 210.5, "ngram": {"test_perplexity": 235.3}}}, tiny_cell_model(cell))
    name = add_instructor(text_app, "t" + cell.replace("_", ""))
    client = text_app.test_client()
    assert client.post("/instructor/login", data={"name": name, "password": INSTRUCTOR_PASSWORD}).status_code == 302
    slug = f"kieu_{cell}"
    resp = client.post(f"/instructor/runs/{run_id}/publish?lang=en",
                       data={"slug": slug, "title_en": f"Kiều, {cell}", "title_vi": f"Kiều, {cell}"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:800]
    tasks = {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}
    assert tasks[slug]["status"] == "ready"
    answer = client.post(f"/api/v1/tasks/{slug}/generate", json={"seed": "Trăm năm", "strategy": "beam", "trace": True})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    body = answer.get_json()
    assert body["text"].lower().startswith("trăm năm") and all(c["ok"] for c in body["checks"])
    assert body["trace"]["gates"] == gates and len(body["trace"]["layers"]) == 2


# ----------------------------------------------------------------------------- bad input
def count_runs(app) -> int:
    with app.app_context():
        return db.session.query(Run).count()


@pytest.mark.parametrize("payload, words", [
    ({"dataset": "kieu", "recipe": {"min_count": 10**9}}, "vocabulary cut-off"),
    ({"dataset": "kieu", "recipe": {"sequence_length": 10**6}}, "sequence length"),
    ({"dataset": "kieu", "recipe": {"vocabulary": 10**9}}, "vocabulary"),
    ({"dataset": "kieu", "recipe": {"embedding": 10**9}}, "embedding size"),
    ({"dataset": "kieu", "recipe": {"units": "1e9"}}, "units"),
    ({"dataset": "kieu", "recipe": {"layers": True}}, "layers"),
    ({"dataset": "kieu", "recipe": ["lstm"]}, "object"),
    ({"dataset": "kieu", "preset": "enormous"}, "enormous"),
    ({"dataset": "kieu", "batch_size": -1}, "batch size"),
    ({"dataset": "kieu", "recipe": {"units": 1024, "embedding": 512, "layers": 3}}, "parameters"),
])
def test_absurd_text_recipes_are_bilingual_400s_and_queue_nothing(text_app, payload, words):
    before = count_runs(text_app)
    resp = text_app.test_client().post("/api/v1/runs?lang=en", json=payload)
    body = resp.get_json()
    assert resp.status_code == 400 and words in body["error_en"] and body["error_vi"] != body["error_en"]
    assert count_runs(text_app) == before


@pytest.mark.parametrize("body, content_type", [
    (b"", "application/json"),
    (b"\x89PNG\r\n\x1a\n\x00\x00\xff\xfe", "application/json"),
    (b"\xff\xfe{\x00\"\x00", "application/json; charset=utf-16"),
])
def test_empty_binary_or_non_utf8_bodies_are_400s(text_app, body, content_type):
    before = count_runs(text_app)
    resp = text_app.test_client().post("/api/v1/runs?lang=en", data=body, content_type=content_type)
    assert resp.status_code == 400 and resp.get_json()["error_vi"]
    assert count_runs(text_app) == before


def test_the_text_bench_form_refuses_absurd_values_and_keeps_them(text_app):
    before = count_runs(text_app)
    form = {"action": "submit", "sequence_length": "1000000", "min_count": "1000000000", "units": "%FF\x00"}
    resp = text_app.test_client().post("/lab/kieu?lang=en", data=form)
    page = resp.get_data(as_text=True)
    assert resp.status_code == 400 and 'id="form-error"' in page and 'value="1000000"' in page
    assert count_runs(text_app) == before


@pytest.mark.parametrize("corpus, words", [
    (b"", "no verse lines"),
    (b"\x00\x01\x02binary\x00", "binary"),
    ("Trăm năm trong cõi người ta\n".encode("utf-16"), "not UTF-8"),
    ("Trăm năm trong cõi người ta\n".encode("cp1258", errors="replace"), "not UTF-8"),
    ("Trăm năm trong cõi người ta,\n".encode(), "at least 3"),
])
def test_a_bad_corpus_fails_the_run_plainly_and_writes_nothing(text_app, tmp_path, monkeypatch, corpus, words):
    """A corpus that is empty, binary, not UTF-8 or one line: the run fails with a bilingual
    reason, no model folder and no checkpoint stay behind."""
    from pathlib import Path

    from app.records import FAILED
    from app.tasks import BUILTIN_TASKS

    path = tmp_path / BUILTIN_TASKS["kieu"].data_path
    path.parent.mkdir(parents=True)
    path.write_bytes(corpus)
    monkeypatch.setenv("LSTMLAB_DATA", str(tmp_path))
    resp = text_app.test_client().post("/api/v1/runs", json={"dataset": "kieu", "recipe": TINY, "epochs": 1})
    run_id = resp.get_json()["id"]
    with text_app.app_context():
        assert jobs.execute_run(text_app, run_id) == FAILED
        run = db.session.get(Run, run_id)
        assert words in run.error["en"] and run.error["vi"].startswith("Không đọc được bộ dữ liệu")
    instance = Path(text_app.instance_path)
    assert not (instance / "runs" / run_id).exists() and not (instance / "checkpoints" / run_id).exists()
