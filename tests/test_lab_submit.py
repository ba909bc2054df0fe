"""Students' submitted models end to end: a model trained outside the app with plain Keras is
submitted through the API, scored by the consumer's handler on the test split bench runs use, and
its leaderboard figure equals `model.evaluate`; hostile archives get their 400 from the HTTP route
with nothing left behind; the instructor's rules refuse at submit time; the class's results CSV."""

from __future__ import annotations

import csv
import io
import json
import re
import types

import numpy as np
import pytest

from app.lab import program, safekeras, scorer
from app.lab import queue as lab_queue
from app.lab.recipes import Recipe, RunSettings
from app.records import Run, Submission, db
from app.tasks import BUILTIN_TASKS
from helpers.instructor import INSTRUCTOR_PASSWORD
from helpers.lab import mnist_data_or_skip
from test_lab_submissions import _config, hostile_configs, rewrite

keras = pytest.importorskip("keras")
TEST_SUBSET = 300  # the bench's LAB_TEST_SUBSET for these apps: runs and submissions share the split


def train_outside(path, images: int, units: int, epochs: int, batch_size: int, seed: int):
    """An MNIST-shaped LSTM reading rows, trained with plain Keras on the first `images` training
    images (no app code), saved to `path`; returns the model."""
    with np.load(mnist_data_or_skip()) as data:
        x, y = data["x_train"][:images].reshape(-1, 28, 28, 1).astype("float32"), data["y_train"][:images]
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Rescaling(1 / 255),
                              keras.layers.Reshape((28, 28)), keras.layers.LSTM(units),
                              keras.layers.Dense(10, activation="softmax")])
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0)
    model.save(path)
    return model


@pytest.fixture(scope="module")
def student(tmp_path_factory):
    """A model trained outside the app on 2,000 images for three epochs."""
    folder = tmp_path_factory.mktemp("student")
    model = train_outside(folder / "model.keras", 2000, 24, 3, 64, 7)
    return types.SimpleNamespace(path=folder / "model.keras", model=model, folder=folder)


@pytest.fixture
def sub_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app (records, SQLite queue, instance folder) per test."""
    return make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL="", LAB_TEST_SUBSET=TEST_SUBSET)


def post(client, path, nickname="An", dataset="mnist", notebook=None, name="model.keras"):
    """POST /api/v1/submissions with the file at `path` (or bytes)."""
    data = path if isinstance(path, bytes) else path.read_bytes()
    form = {"dataset": dataset, "nickname": nickname, "model": (io.BytesIO(data), name)}
    if notebook is not None:
        form["notebook"] = (io.BytesIO(notebook), "work.ipynb")
    return client.post("/api/v1/submissions", data=form, content_type="multipart/form-data")


def instance_files(app) -> set[str]:
    """Every file and folder of the instance folder but the record and queue databases."""
    from pathlib import Path

    root = Path(app.instance_path)
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if ".sqlite3" not in p.name}


def test_a_model_trained_outside_is_scored_like_evaluate(sub_app, student):
    """API -> queued record and a Huey task; the consumer's handler scores it through the served
    preprocessing on the bench's test split; the figure equals model.evaluate on the same weights."""
    from app.tasks import MNIST
    from training.data import load_image_data
    from training.images import train_subset

    client = sub_app.test_client()
    notebook = json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}).encode()
    response = post(client, student.path, notebook=notebook)
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert body["status"] == "queued" and body["params"] == student.model.count_params() and body["notebook"]
    assert [layer["class"] for layer in body["layers"]] == ["Rescaling", "Reshape", "LSTM", "Dense"]
    with sub_app.app_context():
        lab_queue.init_app(sub_app)
        task = lab_queue.huey.dequeue()
        assert task.name == "score_submission" and task.args == (body["id"],)
        assert scorer.execute_submission(sub_app, body["id"]) == "scored"
        assert scorer.execute_submission(sub_app, body["id"]) == "skipped"  # claimed once only
    scored = client.get(f"/api/v1/submissions/{body['id']}").get_json()
    assert scored["status"] == "scored" and scored["error"] is None, scored
    listed = client.get("/api/v1/submissions?dataset=mnist&mine=1").get_json()
    assert listed["count"] == 1 and listed["submissions"][0] == scored
    assert sub_app.test_client().get("/api/v1/submissions?mine=1").get_json()["count"] == 0  # another browser

    split = train_subset(load_image_data(MNIST), types.SimpleNamespace(quick=False, subset=0, test_subset=TEST_SUBSET))
    _, expected = student.model.evaluate(split.x_test.astype("float32"), split.y_test, verbose=0)
    assert scored["metrics"]["test_count"] == TEST_SUBSET and scored["metrics"]["refused_inputs"] == 0
    assert scored["metrics"]["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert scored["params"] == student.model.count_params()
    assert [row["params"] for row in scored["layers"]] == [0, 0, student.model.layers[2].count_params(), 250]

    board = client.get("/lab/mnist?lang=en").get_data(as_text=True)
    row = board[board.index(f'id="row-{body["id"]}"'):]
    row = row[:row.index("</tr>\n")]
    assert "submitted" in row and "An" in row and "LSTM" in row
    assert f"{100 * scored['metrics']['test_accuracy']:.2f}%" in row
    vi = client.get("/lab/mnist?lang=vi").get_data(as_text=True)
    assert "nộp bài" in vi
    page = client.get(f"/lab/submissions/{body['id']}?lang=en").get_data(as_text=True)
    assert 'id="layer-table"' in page and f"{100 * scored['metrics']['test_accuracy']:.2f}%" in page


def test_the_submit_page_works_without_javascript(sub_app, student):
    """The form posts multipart with its CSRF token; a refusal re-renders it with the reason."""
    sub_app.config["WTF_CSRF_ENABLED"] = True
    try:
        client = sub_app.test_client()
        page = client.get("/lab/mnist/submit?lang=en").get_data(as_text=True)
        assert 'enctype="multipart/form-data"' in page and 'name="csrf_token"' in page
        token = page.split('name="csrf_token" value="')[1].split('"')[0]
        form = {"csrf_token": token, "nickname": "Bình", "model": (io.BytesIO(student.path.read_bytes()), "m.keras")}
        response = client.post("/lab/mnist/submit", data=form, content_type="multipart/form-data")
        assert response.status_code == 303 and "/lab/submissions/" in response.headers["Location"]
        status = client.get(response.headers["Location"] + "?lang=vi").get_data(as_text=True)
        assert "đang chờ" in status or "chờ" in status
        bad = client.post("/lab/mnist/submit?lang=en", data={"csrf_token": token, "model": (io.BytesIO(b"x" * 50), "m.keras")},
                          content_type="multipart/form-data")
        assert bad.status_code == 400 and "not a .keras file" in bad.get_data(as_text=True)
        forged = client.post("/lab/mnist/submit", data={"model": (io.BytesIO(b"x"), "m.keras")},
                             content_type="multipart/form-data")
        assert forged.status_code == 400
    finally:
        sub_app.config["WTF_CSRF_ENABLED"] = False


def hostile_archives(student, tmp_path) -> dict:
    """name -> (archive bytes, word the refusal names): every CVE class, a bomb, a traversal, a
    500 MB weight claim, a wrong weight shape, a non-zip and a legacy .h5."""
    import h5py

    marker = tmp_path / "marker"
    out = {}
    for case, (config, named) in hostile_configs(_config(student.path), marker).items():
        out[case] = (rewrite(student.path, tmp_path / f"{case}.keras", config=config).read_bytes(), named)
    out["zip bomb"] = (rewrite(student.path, tmp_path / "bomb.keras",
                               members={"metadata.json": b" " * (50 * 2 ** 20)}).read_bytes(), "zip bomb")
    out["path traversal"] = (rewrite(student.path, tmp_path / "trav.keras",
                                     members={"../../escape.py": b"x"}).read_bytes(), "")
    claim = tmp_path / "claim.h5"
    with h5py.File(claim, "w") as fh:
        fh.create_dataset("layers/dense/vars/0", shape=(500 * 2 ** 20 // 4,), dtype="float32", chunks=True,
                          compression="gzip")
    out["500 MB claim"] = (rewrite(student.path, tmp_path / "claim.keras",
                                   members={"model.weights.h5": claim.read_bytes()}).read_bytes(), "500.0 MB")
    out["wrong shape"] = (reshaped_weight(student.path, tmp_path / "shape.keras", "layers/dense/vars/1", (11,))
                          .read_bytes(), "(10,)")
    out["not a zip"] = (b"import os\nos.system('touch marker')\n", "zip")
    student.model.save_weights(tmp_path / "legacy.weights.h5")
    out["legacy h5"] = ((tmp_path / "legacy.weights.h5").read_bytes(), "HDF5")
    return out


def test_hostile_archives_are_refused_by_the_route_with_nothing_left(sub_app, student, tmp_path):
    """Every hostile archive: a bilingual 400 naming what was refused, no marker file, no record,
    nothing queued, nothing left in the instance folder."""
    client = sub_app.test_client()
    assert client.get("/lab/mnist/submit").status_code == 200  # the app's own folders exist from here on
    before = instance_files(sub_app)
    with sub_app.app_context():
        lab_queue.init_app(sub_app)
        pending = lab_queue.pending_count()
    for case, (data, named) in hostile_archives(student, tmp_path).items():
        response = post(client, data, name="evil.keras")
        body = response.get_json()
        assert response.status_code == 400, (case, body)
        assert named in body["error_en"] and body["error_vi"] != body["error_en"], (case, body)
    assert not (tmp_path / "marker").exists() and not (tmp_path.parent / "escape.py").exists()
    assert instance_files(sub_app) == before
    with sub_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Submission)) == 0
        assert lab_queue.pending_count() == pending


def reshaped_weight(src, dst, name: str, shape: tuple):
    """A copy of archive `src` whose model.weights.h5 dataset `name` has `shape` (zeros), all else kept."""
    import zipfile

    import h5py

    with zipfile.ZipFile(src) as zf:
        weights = dst.with_suffix(".h5")
        weights.write_bytes(zf.read("model.weights.h5"))
    with h5py.File(weights, "r+") as fh:
        del fh[name]
        fh.create_dataset(name, data=np.zeros(shape, "float32"))
    return rewrite(src, dst, members={"model.weights.h5": weights.read_bytes()})


def test_a_wrong_weight_shape_is_refused_at_upload_naming_it(sub_app, student, tmp_path):
    """One weight of another shape: a bilingual 400 from the web (no Keras there) naming the layer,
    the weight and both shapes, with nothing recorded or kept."""
    data = reshaped_weight(student.path, tmp_path / "shape.keras", "layers/lstm/cell/vars/1", (24, 95)).read_bytes()
    client = sub_app.test_client()
    response = post(client, data)
    body = response.get_json()
    assert response.status_code == 400, body
    for text in (body["error_en"], body["error_vi"]):
        assert "lstm" in text and "recurrent_kernel" in text and "(24, 96)" in text and "(24, 95)" in text, text
    assert body["error_vi"] != body["error_en"]
    page = client.post("/lab/mnist/submit?lang=en", data={"nickname": "An", "model": (io.BytesIO(data), "m.keras")},
                       content_type="multipart/form-data")
    assert page.status_code == 400 and "recurrent_kernel" in page.get_data(as_text=True)
    with sub_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Submission)) == 0
    assert not (tmp_path / "instance" / "submissions").exists() or not any((tmp_path / "instance" / "submissions").iterdir())


def signed_in_client(app, add_instructor):
    """A test client signed in as an instructor of `app`."""
    add_instructor(app)
    client = app.test_client()
    response = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.status_code == 302
    return client


def test_instructor_rules_refuse_at_submit_time(sub_app, student, tmp_path, add_instructor):
    """LSTM-only refuses a Conv2D, the parameter and file-size limits refuse bigger models, each a
    bilingual 400 naming the rule; the target shows on the leaderboard; bad rule values are a 400."""
    teacher = signed_in_client(sub_app, add_instructor)
    response = teacher.post("/instructor/submissions/rules/mnist",
                            data={"recurrent_only": "1", "max_params": "5000", "target_accuracy": "90"})
    assert response.status_code == 303
    conv = keras.Sequential([keras.Input((28, 28, 1)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                             keras.layers.Dense(10, activation="softmax")])
    conv.save(tmp_path / "conv.keras")
    client = sub_app.test_client()
    before = instance_files(sub_app)
    refused = post(client, tmp_path / "conv.keras").get_json()
    assert refused["status"] == 400 and "Conv2D" in refused["error_en"] and "recurrent layers only" in refused["error_en"]
    too_big = post(client, student.path).get_json()
    assert too_big["status"] == 400 and "limit for this data set is 5000" in too_big["error_en"], too_big
    teacher.post("/instructor/submissions/rules/mnist", data={"max_file_mb": "0.02"})
    too_large = post(client, student.path).get_json()
    assert too_large["status"] == 400 and "this data set's rule" in too_large["error_en"] and too_large["error_vi"]
    assert instance_files(sub_app) == before
    teacher.post("/instructor/submissions/rules/mnist", data={"target_accuracy": "92.5"})
    assert "92.5%" in client.get("/lab/mnist?lang=en").get_data(as_text=True)
    for field, value in (("max_params", "-3"), ("target_accuracy", "120"), ("max_file_mb", "nan")):
        bad = teacher.post("/instructor/submissions/rules/mnist", data={field: value}, headers={"Accept": "application/json"})
        assert bad.status_code == 400 and bad.get_json()["error_vi"], (field, bad.get_data(as_text=True)[:300])
    assert teacher.post("/instructor/submissions/rules/nope", data={}).status_code == 404
    assert sub_app.test_client().post("/instructor/submissions/rules/mnist", data={}).status_code in (302, 401, 403)


def test_bad_forms_are_bilingual_400s(sub_app, student):
    """No file, an unknown data set, a notebook that is not one, a long nickname, too many waiting
    for one browser or one address: never a 500, and only accepted submissions keep a folder."""
    client = sub_app.test_client()
    no_file = client.post("/api/v1/submissions", data={"dataset": "mnist"}, content_type="multipart/form-data")
    assert no_file.status_code == 400 and ".keras" in no_file.get_json()["error_en"]
    assert post(client, student.path, dataset="nope").status_code == 404
    bad_nb = post(client, student.path, notebook=b"{not json")
    assert bad_nb.status_code == 400 and "notebook" in bad_nb.get_json()["error_en"]
    assert post(client, student.path, nickname="x" * 80).status_code == 400
    sub_app.config.update(LAB_RUNS_PER_BROWSER=1, LAB_RUNS_PER_CLIENT=2)
    try:
        assert post(client, student.path).status_code == 202
        again = post(client, student.path).get_json()  # the same browser, one still waiting
        assert again["status"] == 429 and "This browser" in again["error_en"]
        assert post(sub_app.test_client(), student.path).status_code == 202  # another browser, same address
        third = post(sub_app.test_client(), student.path).get_json()
        assert third["status"] == 429 and "network address" in third["error_en"] and third["error_vi"]
    finally:
        sub_app.config.update(LAB_RUNS_PER_BROWSER=None, LAB_RUNS_PER_CLIENT=None)
    assert client.get("/api/v1/submissions/doesnotexist").status_code == 404
    assert client.get("/lab/submissions/zzz").status_code == 404
    with sub_app.app_context():
        kept = {s.id for s in db.session.scalars(db.select(Submission))}
    assert {p.split("/")[1] for p in instance_files(sub_app) if p.startswith("submissions/")} == kept  # refusals kept nothing


def test_the_results_csv_has_each_nicknames_best(sub_app, add_instructor):
    """One row per nickname and data set: the best of its finished runs and scored submissions."""
    from app.records import FINISHED, SCORED, utcnow

    with sub_app.app_context():
        db.session.add_all([
            Run(dataset="mnist", nickname="An", status=FINISHED, metrics={"test_accuracy": 0.91}, params=1000,
                finished_at=utcnow()),
            Run(dataset="mnist", nickname="An", status=FINISHED, metrics={"test_accuracy": 0.95}, params=2000,
                finished_at=utcnow()),
            Run(dataset="mnist", nickname="Bình", status="failed", metrics={"test_accuracy": 0.99}),
            Submission(id="s00000000001", dataset="mnist", nickname="An", status=SCORED, params=300,
                       metrics={"test_accuracy": 0.93}, finished_at=utcnow()),
            Submission(id="s00000000002", dataset="mnist", nickname="Bình", status=SCORED, params=400,
                       metrics={"test_accuracy": 0.97}, finished_at=utcnow()),
            Submission(id="s00000000003", dataset="mnist", nickname="=cmd", status=SCORED, params=1,
                       metrics={"test_accuracy": 0.5}, finished_at=utcnow())])
        db.session.commit()
    teacher = signed_in_client(sub_app, add_instructor)
    response = teacher.get("/instructor/results.csv?dataset=mnist")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["nickname", "dataset", "test_accuracy", "params", "kind", "id", "time", "test_perplexity"]
    body = {r[0]: r for r in rows[1:]}
    assert len(rows) == 4 and set(body) == {"An", "Bình", "'=cmd"}
    assert body["An"][1:5] == ["mnist", "0.95", "2000", "run"]
    assert body["Bình"][1:6] == ["mnist", "0.97", "400", "submission", "s00000000002"]
    assert sub_app.test_client().get("/instructor/results.csv").status_code in (302, 401, 403)
    page = teacher.get("/instructor/submissions?lang=vi").get_data(as_text=True)
    assert "s00000000002" in page and "results.csv" in page


def test_the_public_leaderboard_csv_lists_submissions_as_the_page_does(sub_app):
    """/lab/<dataset>.csv: submitted models among the runs, in the page's order, kind "submitted",
    with the columns their leaderboard row shows (nickname, layers, parameters, accuracy once scored,
    status) and none it leaves out (recipe, epochs, training time, file name, owner)."""
    import re

    from app.records import FINISHED, QUEUED, SCORED, utcnow

    with sub_app.app_context():
        run = Run(dataset="mnist", nickname="An", status=FINISHED, metrics={"test_accuracy": 0.91}, params=1000,
                  recipe={"units": 32}, history=[{"epoch": 1}], seconds=12.0, finished_at=utcnow())
        db.session.add_all([
            run,
            Submission(id="s00000000001", dataset="mnist", nickname="=Bình", status=SCORED, params=300,
                       layers=[{"class": "LSTM", "name": "lstm"}, {"class": "Dense", "name": "dense"}],
                       metrics={"test_accuracy": 0.95}, filename="secret-name.keras", owner="owner-token",
                       finished_at=utcnow()),
            Submission(id="s00000000002", dataset="mnist", nickname="", status=QUEUED, params=200,
                       layers=[{"class": "GRU"}], metrics={"test_accuracy": 0.99}),
            Submission(id="s00000000003", dataset="fashion_mnist", nickname="Other", status=SCORED, params=1,
                       metrics={"test_accuracy": 0.5})])
        db.session.commit()
        run_id = run.id
    client = sub_app.test_client()
    text = client.get("/lab/mnist.csv").get_data(as_text=True)
    rows = list(csv.DictReader(io.StringIO(text)))
    page = client.get("/lab/mnist?lang=en").get_data(as_text=True)
    assert [r["id"] for r in rows] == re.findall(r'<tr id="row-([^"]+)"', page)  # the page's rows, its order
    assert [r["id"] for r in rows] == ["s00000000001", run_id, "s00000000002"]
    scored, ran, queued = rows
    assert (scored["kind"], scored["nickname"], scored["status"], scored["params"], scored["test_accuracy"],
            scored["submitted_layers"]) == ("submitted", "'=Bình", "scored", "300", "0.95", "LSTM, Dense")
    assert all(scored[k] == "" for k in ("reading", "cell", "units", "epochs", "epochs_run", "training_seconds"))
    assert scored["finished_at"] and scored["created_at"]
    assert (queued["kind"], queued["test_accuracy"], queued["submitted_layers"]) == ("submitted", "", "GRU")
    assert (ran["kind"], ran["units"], ran["epochs_run"], ran["submitted_layers"]) == ("run", "32", "1", "")
    assert "secret-name" not in text and "owner-token" not in text and "s00000000003" not in text


def test_the_layer_key_table_is_the_installed_keras():
    """layer_keys.json (what web workers check keys against) equals the installed Keras's constructors."""
    for name in safekeras.LAYERS:
        assert safekeras.LAYER_KEYS[name] == frozenset(safekeras.keras_layer_keys(name)), name


def test_the_static_check_refuses_what_the_rebuild_refuses(student, tmp_path):
    """check_archive (no Keras) counts the same parameters as Keras and refuses unknown keys."""
    found = safekeras.check_archive(student.path)
    assert found["params"] == student.model.count_params()
    config = _config(student.path)
    config["config"]["layers"][-1]["config"]["surprise"] = 1
    with pytest.raises(safekeras.InvalidInput, match="surprise"):
        safekeras.check_archive(rewrite(student.path, tmp_path / "k.keras", config=config))


@pytest.mark.slow
def test_through_gunicorn_and_a_consumer_the_figure_is_evaluate(lab_stack, student, tmp_path):
    """Real processes: gunicorn takes the upload, a `python -m app.lab` consumer scores it; the
    figure equals model.evaluate on the bench's test split; a hostile archive gets its 400 from
    gunicorn, with no marker written and the consumer alive."""
    import requests

    from app.tasks import MNIST
    from training.data import load_image_data
    from training.images import train_subset

    consumer = lab_stack.consumer(LAB_WORKER_NICE="0")  # first: it loads TensorFlow while gunicorn boots
    lab_stack.web()
    url = lab_stack.web_url + "/api/v1/submissions"

    def send(data: bytes, nickname: str):
        return requests.post(url, data={"dataset": "mnist", "nickname": nickname},
                             files={"model": ("model.keras", data)}, timeout=30)

    marker = tmp_path / "marker"
    config, _ = hostile_configs(_config(student.path), marker)["lambda"]
    evil = send(rewrite(student.path, tmp_path / "evil.keras", config=config).read_bytes(), "evil")
    assert evil.status_code == 400 and "Lambda" in evil.json()["error_en"]
    good = send(student.path.read_bytes(), "outside")
    assert good.status_code == 202, good.text

    def final(sub_id):
        body = requests.get(f"{url}/{sub_id}", timeout=10).json()
        return body if body["status"] in ("scored", "refused") else None

    scored = lab_stack.wait_for(lambda: final(good.json()["id"]), 120, "the submission was never scored", consumer)
    assert scored["status"] == "scored", scored
    split = train_subset(load_image_data(MNIST), types.SimpleNamespace(quick=False, subset=0, test_subset=500))
    _, expected = student.model.evaluate(split.x_test.astype("float32"), split.y_test, verbose=0)
    assert scored["metrics"]["test_count"] == 500
    assert scored["metrics"]["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert consumer.poll() is None and not marker.exists()
    board = requests.get(lab_stack.web_url + "/lab/mnist?lang=en", timeout=10).text
    assert f'id="row-{scored["id"]}" class="submitted"' in board
    assert f"{100 * scored['metrics']['test_accuracy']:.2f}%" in board
    print(f"leaderboard {scored['metrics']['test_accuracy']:.6f} vs evaluate {expected:.6f}")


def test_a_submission_left_scoring_by_a_dead_consumer_ends_refused(sub_app):
    """A dead consumer's pid on this host, or scoring past the wall limit: refused with a reason in
    both languages, never queued again; one being scored by a live consumer is left alone."""
    import datetime as dt
    import os
    import socket

    from app.records import SCORING, utcnow

    now = utcnow()
    with sub_app.app_context():
        db.session.add_all([
            Submission(id="dead00000001", dataset="mnist", status=SCORING, worker=f"{socket.gethostname()}:999999",
                       started_at=now),
            Submission(id="late00000001", dataset="mnist", status=SCORING, worker="other-host:1",
                       started_at=now - dt.timedelta(hours=1)),
            Submission(id="live00000001", dataset="mnist", status=SCORING, worker=f"{socket.gethostname()}:{os.getppid()}",
                       started_at=now)])
        db.session.commit()
        assert sorted(scorer.sweep_stale_submissions()) == ["dead00000001", "late00000001"]
        status = {s.id: (s.status, s.error) for s in db.session.scalars(db.select(Submission))}
    assert status["live00000001"] == (SCORING, None)
    assert status["dead00000001"][0] == "refused" and "submit the model again" in status["dead00000001"][1]["en"]
    assert status["late00000001"][1]["vi"] != status["late00000001"][1]["en"]


# One recipe per reading order of the bench's programs, and a card per shipped program (small units).
PROGRAMS = {"rows": Recipe("rows", "gru", 6, 2, False, 0.2), "rows_cols": Recipe("rows_cols", "lstm", 4, 2, True, 0.2),
            "patches": Recipe("patches", "simple_rnn", 4, 1, True, 0.2),
            "shipped rows_cols": {"architecture": "rows_cols", "model_kwargs": {"units": 4}},
            "shipped renet": {"architecture": "renet", "model_kwargs": {"units": 3, "top_units": 4, "patch": 4}}}


def program_model(kind: str, tmp_path, monkeypatch):
    """The model the downloaded program of `kind` builds (its data and model sections run as a
    student's notebook runs them), trained briefly with plain Keras on MNIST images."""
    from test_lab_program import data_and_model, tiny_mnist

    mnist, made = BUILTIN_TASKS["mnist"], PROGRAMS[kind]
    source = (program.shipped_program(mnist, made) if isinstance(made, dict)
              else program.render_program(mnist, made, RunSettings(epochs=1, seed=3)))
    scope = {"__name__": "__main__"}
    with monkeypatch.context() as env:  # the program reads a tiny copy; the scorer, the real test split
        env.setenv("LSTMLAB_DATA", str(tiny_mnist(tmp_path / "data")))
        env.setenv("PROGRAM_SUBSET", "100")
        exec(compile(data_and_model(source), "program.py", "exec"), scope)
    model = scope["model"]
    with np.load(mnist_data_or_skip()) as data:
        x, y = data["x_train"][:256].reshape(-1, 28, 28, 1).astype("float32"), data["y_train"][:256]
    keras.utils.set_random_seed(5)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x, y, epochs=1, batch_size=64, verbose=0)
    return model


@pytest.mark.parametrize("kind", list(PROGRAMS))
def test_every_programs_model_is_submitted_and_scored_like_evaluate(sub_app, tmp_path, monkeypatch, kind):
    """The model each program reading order and shipped program builds (two branches joined for
    rows_cols, a ReNet sweep for patches and renet), saved with model.save: accepted by the API,
    scored by the consumer, its leaderboard figure equal to model.evaluate on the same weights."""
    from app.tasks import MNIST
    from training.data import load_image_data
    from training.images import train_subset

    model = program_model(kind, tmp_path, monkeypatch)
    model.save(tmp_path / "model.keras")
    client = sub_app.test_client()
    response = post(client, tmp_path / "model.keras")
    body = response.get_json()
    assert response.status_code == 202, body
    assert body["params"] == model.count_params()
    assert [row["class"] for row in body["layers"]] == [layer.__class__.__name__ for layer in model.layers[1:]]
    with sub_app.app_context():
        assert scorer.execute_submission(sub_app, body["id"]) == "scored"
    scored = client.get(f"/api/v1/submissions/{body['id']}").get_json()
    assert scored["status"] == "scored", scored
    split = train_subset(load_image_data(MNIST), types.SimpleNamespace(quick=False, subset=0, test_subset=TEST_SUBSET))
    _, expected = model.evaluate(split.x_test.astype("float32"), split.y_test, verbose=0)
    assert scored["metrics"]["test_accuracy"] == pytest.approx(expected, abs=1e-6)
    assert [row["params"] for row in scored["layers"]] == [layer.count_params() for layer in model.layers[1:]]
    assert ("Concatenate" in [row["class"] for row in body["layers"]]) == kind.endswith("rows_cols")


@pytest.fixture(scope="module")
def branching(tmp_path_factory):
    """A small rows-and-columns model (two LSTMs joined by Concatenate) saved with plain Keras."""
    layers = keras.layers
    inputs = keras.Input((28, 28, 1), name="pixels")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    rows = layers.LSTM(4, name="rows_lstm")(layers.Reshape((28, 28), name="rows")(x))
    cols = layers.LSTM(4, name="cols_lstm")(layers.Reshape((28, 28), name="cols")(layers.Permute((2, 1, 3), name="transpose")(x)))
    joined = layers.Concatenate(name="join")([rows, cols])
    model = keras.Model(inputs, layers.Dense(10, activation="softmax", name="probs")(joined))
    path = tmp_path_factory.mktemp("branching") / "model.keras"
    model.save(path)
    return path


def _tensor(name: str, node: int = 0) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": [None, 4], "dtype": "float32",
                                                         "keras_history": [name, node, 0]}}


def hostile_graphs(config: dict) -> dict:
    """(config.json, what its refusal names) per hostile graph built from a branching model's config."""
    def copy():
        return json.loads(json.dumps(config))

    def layer(cfg, name):
        return next(obj for obj in cfg["config"]["layers"] if obj["name"] == name)

    out = {}
    cycle = copy()  # transpose reads join, which reads transpose (through cols)
    layer(cycle, "transpose")["inbound_nodes"][0]["args"] = [_tensor("join")]
    out["cycle"] = (cycle, "join[0]")
    two_in = copy()
    second = json.loads(json.dumps(two_in["config"]["layers"][0]))
    second["name"] = second["config"]["name"] = "pixels_2"
    two_in["config"]["layers"].insert(1, second)
    layer(two_in, "join")["inbound_nodes"][0]["args"][0].append(_tensor("pixels_2"))
    two_in["config"]["input_layers"] = [["pixels", 0, 0], ["pixels_2", 0, 0]]
    out["two inputs"] = (two_in, "pixels_2")
    two_out = copy()
    two_out["config"]["output_layers"] = [["probs", 0, 0], ["join", 0, 0]]
    out["two outputs"] = (two_out, "one output")
    dangling = copy()
    layer(dangling, "join")["inbound_nodes"][0]["args"][0][1] = _tensor("rows_lstm")
    out["a branch leading nowhere"] = (dangling, "cols_lstm")
    key = copy()
    layer(key, "join")["config"]["function"] = "exec"
    out["merge with an unknown key"] = (key, "function")
    missing = copy()
    layer(missing, "join")["inbound_nodes"][0]["args"][0][1] = _tensor("ghost")
    out["missing layer"] = (missing, "ghost")
    huge = copy()
    huge["config"]["layers"][1:1] = [{"class_name": "Dropout", "name": f"d{i}", "inbound_nodes": []} for i in range(10_000)]
    out["10,000 nodes"] = (huge, "64")
    fan = copy()
    layer(fan, "join")["inbound_nodes"][0]["args"][0] = [_tensor("rows_lstm")] * 5_000
    out["fan-in bomb"] = (fan, "5000")
    lam = copy()
    after_rows = [obj["name"] for obj in lam["config"]["layers"]].index("rows") + 1
    lam["config"]["layers"].insert(after_rows, {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
                                       "name": "evil", "inbound_nodes": [{"args": [_tensor("rows")], "kwargs": {}}],
                                       "config": {"name": "evil", "function": {"class_name": "__lambda__", "config": {}}}})
    layer(lam, "rows_lstm")["inbound_nodes"][0]["args"] = [_tensor("evil")]
    out["Lambda inside a branch"] = (lam, "Lambda")
    shared = copy()
    rows_lstm = layer(shared, "rows_lstm")
    rows_lstm["inbound_nodes"].append(rows_lstm["inbound_nodes"][0])
    out["shared layer"] = (shared, "rows_lstm")
    kwargs = copy()
    layer(kwargs, "join")["inbound_nodes"][0]["kwargs"] = {"function": "exec"}
    out["unknown call argument"] = (kwargs, "join")
    several = copy()
    layer(several, "probs")["inbound_nodes"][0]["args"] = [[_tensor("rows_lstm"), _tensor("cols_lstm")]]
    out["two inputs to a Dense"] = (several, "probs")
    shapes = copy()
    layer(shapes, "join").update(class_name="Add")
    layer(shapes, "join")["config"].pop("axis")
    layer(shapes, "cols_lstm")["config"]["units"] = 5  # Add of 4 and 5 features
    out["merge of unequal shapes"] = (shapes, "join")
    return out


def test_hostile_graphs_are_refused_by_the_route_with_nothing_left(sub_app, branching, tmp_path):
    """Every hostile graph: a bilingual 400 from the web naming the layer or key, the consumer's
    rebuild refusing it too, no record, nothing queued, nothing left in the instance folder."""
    client = sub_app.test_client()
    assert client.get("/lab/mnist/submit").status_code == 200
    before = instance_files(sub_app)
    with sub_app.app_context():
        lab_queue.init_app(sub_app)
        pending = lab_queue.pending_count()
    for case, (config, named) in hostile_graphs(_config(branching)).items():
        path = rewrite(branching, tmp_path / "evil.keras", config=config)
        response = post(client, path, name="evil.keras")
        body = response.get_json()
        assert response.status_code == 400, (case, body)
        assert named in body["error_en"] and body["error_vi"] != body["error_en"], (case, body)
        with pytest.raises(safekeras.InvalidInput, match=re.escape(named)):
            safekeras.load_submission(path)
    assert instance_files(sub_app) == before
    with sub_app.app_context():
        assert db.session.scalar(db.select(db.func.count()).select_from(Submission)) == 0
        assert lab_queue.pending_count() == pending
