"""Students' submitted language models for a text data set, end to end: a model trained outside
the app with plain Keras, and the text program's own output as it is, are submitted with their
vocab.json, scored by the consumer's handler on the bench's test split, and their leaderboard
perplexity is the bench's; models that are not next-token models over the data set's vocabulary
are bilingual 400s with nothing left behind, a vocabulary that is not the data set's is refused
naming where it differs, and the text leaderboard and CSVs list them marked "submitted"."""

from __future__ import annotations

import csv
import io
import json
import math
import types

import numpy as np
import pytest

from app.lab import scorer, textprogram
from app.lab import queue as lab_queue
from app.lab.textrecipes import TextRecipe, TextSettings
from app.records import Run, Submission, db
from app.tasks import BUILTIN_TASKS
from test_lab_submissions import _config, rewrite
from test_lab_submit import instance_files, signed_in_client
from test_lab_text_program import tiny_corpora

keras = pytest.importorskip("keras")
KIEU = BUILTIN_TASKS["kieu"]
SEED = 42  # the program's and the bench's default split seed


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """The tiny verse and headline corpora, laid out as the bench and the program read them."""
    return tiny_corpora(tmp_path_factory.mktemp("text-data"))


@pytest.fixture
def text_app(make_app, tiny_models_dir, tmp_path, corpora, monkeypatch):
    """A fresh app (records, SQLite queue, instance folder) reading the tiny corpora."""
    monkeypatch.setenv("LSTMLAB_DATA", str(corpora))
    scorer.text_split.cache_clear()
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="")


def split_arrays(corpora, seed: int = SEED, min_count: int = 2):
    """(vocabulary, (x, y) of the training split, (x, y) of the test split) as the bench builds them."""
    from app.text import Vocabulary
    from training.textdata import load_text_data, to_arrays

    data = load_text_data(KIEU, str(corpora), seed)
    vocab = Vocabulary.build(data.train, KIEU.tokenizer, min_count=min_count, display=data.display)
    return vocab, to_arrays(data.train, vocab), to_arrays(data.test, vocab)


def language_model(vocab_size: int, *middle, embedding: int = 8, seed: int = 5):
    """A Sequential next-token model: Embedding, the `middle` layers, Dense softmax over the vocabulary."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab_size, embedding),
                             *middle, keras.layers.Dense(vocab_size, activation="softmax")])


@pytest.fixture(scope="module")
def student(tmp_path_factory, corpora):
    """A tiny LSTM language model trained with plain Keras on the training split, saved with its vocab.json."""
    vocab, (x, y), test = split_arrays(corpora)
    model = language_model(len(vocab), keras.layers.LSTM(12, return_sequences=True), keras.layers.Dropout(0.1))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, sample_weight=(y != 0).astype("float32"), epochs=3, batch_size=2, verbose=0)
    folder = tmp_path_factory.mktemp("student-lm")
    model.save(folder / "model.keras")
    (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
    return types.SimpleNamespace(model=model, vocab=vocab, test=test, path=folder / "model.keras",
                                 vocab_json=vocab.to_json().encode(), folder=folder, corpora=corpora)


def post(client, model, vocab, dataset="kieu", nickname="Kiều", **fields):
    """POST /api/v1/submissions with a model and a vocabulary (paths or bytes; None leaves one out)."""
    form = {"dataset": dataset, "nickname": nickname, **fields}
    for name, value, filename in (("model", model, "model.keras"), ("vocabulary", vocab, "vocab.json")):
        if value is not None:
            form[name] = (io.BytesIO(value if isinstance(value, bytes) else value.read_bytes()), filename)
    return client.post("/api/v1/submissions", data=form, content_type="multipart/form-data")


def score(app, submission_id: str) -> str:
    """Dequeue the submission's task and run the consumer's handler on it; its final status."""
    with app.app_context():
        lab_queue.init_app(app)
        task = lab_queue.huey.dequeue()
        assert task.name == "score_submission" and task.args == (submission_id,)
        return scorer.execute_submission(app, submission_id)


def numpy_perplexity(model, x, y) -> float:
    """e to the mean negative log-likelihood of the non-padding targets, from model.predict."""
    probs = model.predict(x, verbose=0)
    keep = y != 0
    return math.exp(-np.log(np.take_along_axis(probs, y[..., None], axis=-1)[..., 0][keep]).mean())


def test_a_language_model_trained_outside_is_scored_with_the_bench_perplexity(text_app, student):
    """API -> queued; the consumer checks the vocabulary token for token and scores the test
    perplexity as the bench does; it equals `lm_metrics` and model.predict on the same weights,
    and the text leaderboard lists it marked submitted with its layer table and parameters."""
    from training.textgen import lm_metrics

    client = text_app.test_client()
    response = post(client, student.path, student.vocab_json)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["params"] == student.model.count_params()
    assert [layer["class"] for layer in body["layers"]] == ["Embedding", "LSTM", "Dropout", "Dense"]
    assert body["metrics"] == {"seed": SEED, "vocabulary_size": len(student.vocab)}
    assert score(text_app, body["id"]) == "scored"
    scored = client.get(f"/api/v1/submissions/{body['id']}").get_json()
    assert scored["status"] == "scored" and scored["error"] is None, scored
    m = scored["metrics"]
    bench = lm_metrics(student.model, *student.test)
    assert m["test_perplexity"] == pytest.approx(bench["perplexity"], rel=1e-4)
    assert m["test_perplexity"] == pytest.approx(numpy_perplexity(student.model, *student.test), rel=1e-4)
    assert m["test_tokens"] == bench["tokens"] == int((student.test[1] != 0).sum())
    assert m["test_top1_accuracy"] == pytest.approx(bench["top1_accuracy"])
    assert (m["seed"], m["vocabulary_size"]) == (SEED, len(student.vocab))
    # the lowest cut-off that gives this vocabulary (the test syllables are each seen several times)
    assert split_arrays(student.corpora, min_count=m["min_count"])[0].tokens == student.vocab.tokens
    assert [row["params"] for row in scored["layers"]] == [layer.count_params() for layer in student.model.layers]

    board = client.get("/lab/kieu?lang=en").get_data(as_text=True)
    row = board[board.index(f'id="row-{body["id"]}"'):]
    row = row[:row.index("</table></div>")]  # the row, its layer table, and any rows after it (none)
    assert "submitted" in row and "Kiều" in row and "LSTM" in row and 'class="layers"' in row
    assert f"{m['test_perplexity']:.1f}" in row and f"{student.model.count_params():,}" in row
    assert "nộp bài" in client.get("/lab/kieu?lang=vi").get_data(as_text=True)
    page = client.get(f"/lab/submissions/{body['id']}?lang=vi").get_data(as_text=True)
    assert 'id="test-perplexity"' in page and 'id="layer-table"' in page and "&lt;unk&gt;" in page


PROGRAM_RECIPES = {
    "gru stack": TextRecipe(embedding=8, cell="gru", units=10, layers=2, dropout=0.1, tied=False, projection=6,
                            sequence_length=16, min_count=1),
    "tied (the fast preset's shape)": TextRecipe(embedding=8, cell="lstm", units=10, layers=1, dropout=0.3, tied=True,
                                                 sequence_length=64, min_count=2),
}


@pytest.mark.parametrize("case", list(PROGRAM_RECIPES))
def test_the_text_programs_output_is_submitted_as_it_is(text_app, tmp_path, corpora, monkeypatch, case):
    """The bench's standalone program (a GRU stack with a projection; an LSTM with tied
    embeddings, the program's own TiedEmbedding layer rebuilt with the app's), run as a script on
    the corpus, writes model.keras and vocab.json; submitted unchanged they score the perplexity
    the program's own function gives on its test split."""
    recipe = PROGRAM_RECIPES[case]
    source = textprogram.render_text_program(KIEU, recipe, TextSettings(epochs=1, batch_size=4, seed=SEED))
    monkeypatch.setenv("PROGRAM_EPOCHS", "1")
    monkeypatch.chdir(tmp_path)
    scope = {"__name__": "__main__"}
    exec(compile(source, "program.py", "exec"), scope)
    expected = scope["perplexity"](scope["served"], scope["x_test"], scope["y_test"])
    client = text_app.test_client()
    response = post(client, tmp_path / "model.keras", tmp_path / "vocab.json", seed=str(SEED))
    assert response.status_code == 202, response.get_json()
    assert score(text_app, response.get_json()["id"]) == "scored"
    m = client.get(f"/api/v1/submissions/{response.get_json()['id']}").get_json()["metrics"]
    assert m["test_perplexity"] == pytest.approx(expected, rel=1e-4)
    assert m["min_count"] <= recipe.min_count and m["vocabulary_size"] == scope["VOCAB_SIZE"]


def causal_breakers(vocab_size: int) -> dict:
    """name -> (model, word the refusal names): models that would read the token they predict, or
    are no next-token model over the vocabulary."""
    lstm = keras.layers.LSTM
    wrong_out = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab_size, 4),
                                  lstm(4, return_sequences=True), keras.layers.Dense(vocab_size + 3, activation="softmax")])
    no_softmax = keras.Sequential([keras.Input((None,), dtype="int32"), keras.layers.Embedding(vocab_size, 4),
                                   lstm(4, return_sequences=True), keras.layers.Dense(vocab_size)])
    fixed = keras.Sequential([keras.Input((12,), dtype="int32"), keras.layers.Embedding(vocab_size, 4),
                              lstm(4, return_sequences=True), keras.layers.Dense(vocab_size, activation="softmax")])
    return {
        "embedding size": (language_model(vocab_size + 1, lstm(4, return_sequences=True)), f"{vocab_size + 1} tokens"),
        "output width": (wrong_out, f"{vocab_size + 3} values"),
        "bidirectional": (language_model(vocab_size, keras.layers.Bidirectional(lstm(4, return_sequences=True))),
                          "Bidirectional"),
        "backwards": (language_model(vocab_size, lstm(4, return_sequences=True, go_backwards=True)), "go_backwards"),
        "last step only": (language_model(vocab_size, lstm(4)), "return_sequences"),
        "convolution": (language_model(vocab_size, keras.layers.Conv1D(4, 3, padding="same")), "Conv1D"),
        "no softmax": (no_softmax, "softmax"),
        "fixed length": (fixed, "shape=(None,)"),
    }


def test_models_that_are_not_next_token_models_are_bilingual_400s_with_nothing_left(text_app, student, tmp_path):
    """Each refusal is a 400 in both languages naming what is wrong (both sizes for a size
    mismatch), with no record, nothing queued and nothing left in the instance folder; so are a
    missing, broken or foreign vocabulary, a bad seed, and tied embeddings under another
    registered name, reversed anywhere but before the softmax, or handed to an image data set."""
    client = text_app.test_client()
    assert client.get("/lab/kieu/submit").status_code == 200
    before = instance_files(text_app)
    size = len(student.vocab)
    cases = {}
    for case, (model, named) in causal_breakers(size).items():
        model.save(tmp_path / f"{case}.keras")
        cases[case] = ((tmp_path / f"{case}.keras").read_bytes(), student.vocab_json, {}, named)
    vocab = json.loads(student.vocab_json)
    cases["no vocabulary"] = (student.path.read_bytes(), None, {}, "vocab.json")
    cases["vocabulary not json"] = (student.path.read_bytes(), b"{tokens", {}, "vocab.json")
    cases["no specials"] = (student.path.read_bytes(), json.dumps({"tokens": vocab["tokens"][3:]}).encode(), {}, "<pad>")
    cases["tokenizer"] = (student.path.read_bytes(), json.dumps(vocab | {"tokenizer": "words"}).encode(), {}, "syllables")
    cases["seed"] = (student.path.read_bytes(), student.vocab_json, {"seed": "-4"}, "seed")
    tied = textprogram.render_text_program(KIEU, TextRecipe(embedding=6, units=6, tied=True, min_count=2),
                                           TextSettings(epochs=1))
    scope = {"__name__": "tied_program"}
    head = tied[:tied.index("keras.utils.set_random_seed(SEED)\nmodel = build_model")]
    exec(compile(head, "tied.py", "exec"), scope)  # the data and the model, nothing trained
    scope["build_model"]().save(tmp_path / "tied.keras")
    tied_config = _config(tmp_path / "tied.keras")
    renamed = json.loads(json.dumps(tied_config))
    renamed["config"]["layers"][1]["registered_name"] = "builtins>exec"
    cases["tied, another name"] = (rewrite(tmp_path / "tied.keras", tmp_path / "renamed.keras", config=renamed)
                                   .read_bytes(), student.vocab_json, {}, "builtins>exec")
    early = json.loads(json.dumps(tied_config))
    second = early["config"]["layers"][1]["inbound_nodes"][1]["args"][0]["config"]["keras_history"]
    second[0] = "lstm"  # the matrix read back from the LSTM's output, before the projection
    cases["tied, reversed early"] = (rewrite(tmp_path / "tied.keras", tmp_path / "early.keras", config=early)
                                     .read_bytes(), student.vocab_json, {}, "does not lead to")
    with text_app.app_context():
        lab_queue.init_app(text_app)
        pending = lab_queue.pending_count()
    for case, (model, vocab_json, fields, named) in cases.items():
        body = post(client, model, vocab_json, **fields).get_json()
        assert body["status"] == 400, (case, body)
        assert named in body["error_en"] and body["error_vi"] != body["error_en"], (case, body)
    image = post(client, tmp_path / "tied.keras", None, dataset="mnist").get_json()
    assert image["status"] == 400 and "TiedEmbedding" in image["error_en"]
    embedding = post(client, (tmp_path / "embedding size.keras").read_bytes(), student.vocab_json).get_json()
    assert str(size) in embedding["error_en"] and str(size + 1) in embedding["error_vi"]
    assert instance_files(text_app) == before
    with text_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Submission)) == 0
        assert lab_queue.pending_count() == pending


def test_a_vocabulary_that_is_not_the_data_sets_is_refused_where_it_differs(text_app, student, corpora):
    """Two tokens swapped, or the right vocabulary stated for another split seed: the consumer
    refuses it in both languages naming the id, the seed and the cut-off; nothing is scored."""
    tokens = list(student.vocab.tokens)
    tokens[4], tokens[5] = tokens[5], tokens[4]
    swapped = json.dumps({"tokens": tokens, "tokenizer": "syllables"}).encode()
    client = text_app.test_client()
    body = post(client, student.path, swapped).get_json()
    assert score(text_app, body["id"]) == "refused"
    refused = client.get(f"/api/v1/submissions/{body['id']}").get_json()
    assert "at id 4" in refused["error"]["en"] and "seed 42" in refused["error"]["en"] and refused["error"]["vi"]
    assert "test_perplexity" not in refused["metrics"]
    other = post(client, student.path, student.vocab_json, seed="7").get_json()
    assert score(text_app, other["id"]) == "refused"
    assert "seed 7" in client.get(f"/api/v1/submissions/{other['id']}").get_json()["error"]["en"]


def test_instructor_rules_apply_to_text_submissions(text_app, student, add_instructor):
    """The parameter limit and the file-size limit refuse at submit time, as for images."""
    teacher = signed_in_client(text_app, add_instructor)
    assert teacher.post("/instructor/submissions/rules/kieu", data={"max_params": "500"}).status_code == 303
    client = text_app.test_client()
    too_big = post(client, student.path, student.vocab_json).get_json()
    assert too_big["status"] == 400 and "limit for this data set is 500" in too_big["error_en"], too_big
    teacher.post("/instructor/submissions/rules/kieu", data={"max_params": "500", "max_file_mb": "0.01"})
    too_large = post(client, student.path, student.vocab_json).get_json()
    assert too_large["status"] == 400 and "this data set's rule" in too_large["error_en"]
    page = client.get("/lab/kieu/submit?lang=vi").get_data(as_text=True)
    assert 'id="rule-params"' in page and 'name="vocabulary"' in page and 'name="seed"' in page


def test_a_text_data_sets_target_is_a_perplexity_shown_wherever_students_look(text_app, add_instructor):
    """The console's target for a text data set is a test perplexity (at most); it is checked, and
    shown on the submit page, the text leaderboard and a scored submission's page (reached or not)."""
    from app.records import SCORED, utcnow

    teacher = signed_in_client(text_app, add_instructor)
    console = teacher.get("/instructor/submissions?lang=en").get_data(as_text=True)
    kieu_row = console.split('id="rules-kieu"', 1)[0].rsplit("<tr>", 1)[1]
    assert 'name="target_perplexity"' in kieu_row and 'name="target_accuracy"' not in kieu_row
    mnist_row = console.split('id="rules-mnist"', 1)[0].rsplit("<tr>", 1)[1]
    assert 'name="target_accuracy"' in mnist_row
    for bad in ("0", "abc", "1e99", "٣"):
        refused = teacher.post("/instructor/submissions/rules/kieu?lang=vi", data={"target_perplexity": bad})
        assert refused.status_code == 400 and "perplexity" in refused.get_data(as_text=True), bad
    assert teacher.post("/instructor/submissions/rules/kieu", data={"target_perplexity": "90"}).status_code == 303
    with text_app.app_context():
        from app.instructor.settings import submission_rules

        assert submission_rules("kieu")["target_perplexity"] == 90.0 and submission_rules("kieu")["target_accuracy"] is None
        db.session.add_all([
            Submission(id=f"t0000000000{i}", dataset="kieu", nickname="An", status=SCORED, params=700, finished_at=utcnow(),
                       layers=[{"class": "Embedding"}, {"class": "LSTM"}, {"class": "Dense"}],
                       metrics={"test_perplexity": ppl, "test_top1_accuracy": 0.25, "seed": 42, "min_count": 2})
            for i, ppl in ((1, 60.25), (2, 95.0))])
        db.session.commit()
    client = text_app.test_client()
    assert 'id="rule-target"' in client.get("/lab/kieu/submit?lang=en").get_data(as_text=True)
    bench = client.get("/lab/kieu?lang=vi").get_data(as_text=True)
    assert 'id="target-perplexity"' in bench and "90,0" in bench.split('id="target-perplexity"', 1)[1][:300]
    assert 'id="target-met"' in client.get("/lab/submissions/t00000000001?lang=en").get_data(as_text=True)
    assert 'id="target-missed"' in client.get("/lab/submissions/t00000000002?lang=en").get_data(as_text=True)


def test_the_text_csvs_list_submissions_by_perplexity(text_app, add_instructor):
    """The text leaderboard CSV has the page's rows in its order, a scored submission kind
    "submitted" with its seed, cut-off, layers and perplexity; the class results CSV keeps each
    nickname's lowest perplexity, run or submission."""
    from app.records import FINISHED, SCORED, utcnow

    with text_app.app_context():
        run = Run(dataset="kieu", nickname="An", status=FINISHED, params=900, finished_at=utcnow(),
                  metrics={"test_perplexity": 80.5, "test_top1_accuracy": 0.2, "test_accuracy": 0.2})
        db.session.add_all([
            run,
            Submission(id="t00000000001", dataset="kieu", nickname="An", status=SCORED, params=700, finished_at=utcnow(),
                       layers=[{"class": "Embedding"}, {"class": "LSTM"}, {"class": "Dense"}],
                       metrics={"test_perplexity": 60.25, "test_top1_accuracy": 0.25, "seed": 42, "min_count": 2}),
            Submission(id="t00000000002", dataset="kieu", nickname="Bình", status=SCORED, params=500, finished_at=utcnow(),
                       layers=[{"class": "Embedding"}, {"class": "GRU"}, {"class": "Dense"}],
                       metrics={"test_perplexity": 95.0, "test_top1_accuracy": 0.3, "seed": 7, "min_count": 1})])
        db.session.commit()
        run_id = run.id
    client = text_app.test_client()
    rows = list(csv.DictReader(io.StringIO(client.get("/lab/kieu.csv").get_data(as_text=True))))
    page = client.get("/lab/kieu?lang=en").get_data(as_text=True)
    assert [r["id"] for r in rows] == ["t00000000001", run_id, "t00000000002"]
    assert [r["id"] for r in rows] == [i for i in re_rows(page) if i in {r["id"] for r in rows}]
    sub, ran, _ = rows
    assert (sub["kind"], sub["test_perplexity"], sub["seed"], sub["min_count"], sub["submitted_layers"],
            sub["units"], sub["epochs_run"]) == ("submitted", "60.25", "42", "2", "Embedding, LSTM, Dense", "", "")
    assert (ran["kind"], ran["test_perplexity"], ran["submitted_layers"]) == ("run", "80.5", "")
    teacher = signed_in_client(text_app, add_instructor)
    results = list(csv.DictReader(io.StringIO(teacher.get("/instructor/results.csv?dataset=kieu").get_data(as_text=True))))
    best = {r["nickname"]: r for r in results}
    assert (best["An"]["kind"], best["An"]["id"], best["An"]["test_perplexity"], best["An"]["test_accuracy"]) == (
        "submission", "t00000000001", "60.25", "0.25")
    assert (best["Bình"]["test_perplexity"], best["Bình"]["params"]) == ("95.0", "500")


def re_rows(page: str) -> list[str]:
    """The ids of a leaderboard page's rows, in its order."""
    import re

    return re.findall(r'<tr id="row-([^"]+)"', page)
