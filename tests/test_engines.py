"""Serving engines: image models from model.tflite (LiteRT), text and gate traces from weights read
with h5py; the Keras fallback; `python -m training export`; and no TensorFlow in a serving process."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from app.cards import Card, Export, Metrics
from app.config import MODELS_DIR, default_data_dir
from app.tasks import BUILTIN_TASKS, IMAGE, TEXT

ROOT = Path(__file__).resolve().parent.parent


def keras_probs(folder: Path, x: np.ndarray) -> np.ndarray:
    import keras

    model = keras.saving.load_model(Path(folder) / "model.keras", compile=False)
    return keras.ops.convert_to_numpy(model(x, training=False))


# ----------------------------------------------------------------------------- engines in the app
def test_each_task_reports_its_engine(client):
    ready = client.get("/readyz").get_json()["tasks"]
    assert ready["mnist"]["engine"] == "litert"
    listed = {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}
    assert listed["mnist"]["engine"] == "litert"
    if ready["kieu"]["status"] == "ready":
        assert ready["kieu"]["engine"] == listed["nyt_headlines"]["engine"] == "numpy"
    assert "engine" not in ready["cifar10"]  # missing: no engine


def test_litert_predictions_equal_keras(app, tiny_models_dir):
    from app.modelstore import get_store

    x = np.random.default_rng(1).integers(0, 256, (5, 28, 28, 1)).astype(np.float32)
    with app.app_context():
        entry = get_store().get("mnist")
        got = entry.predict(x)
    assert entry.engine == "litert"
    np.testing.assert_allclose(got, keras_probs(Path(tiny_models_dir) / "mnist", x), atol=1e-5)


def test_litert_predict_is_safe_from_many_threads(app):
    from app.modelstore import get_store

    with app.app_context():
        predict = get_store().get("mnist").predict
    images = np.random.default_rng(2).integers(0, 256, (16, 28, 28, 1)).astype(np.float32)
    expected = predict(images)
    wrong, errors = [], []

    def run(k: int):
        try:
            for i in range(40):
                j = (k * 7 + i) % len(images)
                if not np.array_equal(predict(images[j:j + 1])[0], expected[j]):
                    wrong.append((k, j))
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(repr(exc))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and not wrong


@pytest.fixture
def copies(tiny_models_dir, tmp_path):
    """models/ with two copies of the tiny mnist model (as mnist and fashion_mnist)."""
    for slug in ("mnist", "fashion_mnist"):
        shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / slug)
    return tmp_path


def statuses(client) -> dict:
    return client.get("/readyz").get_json()["tasks"]


@pytest.mark.parametrize("damage", ["random bytes", "truncated", "bytes changed in the weights"])
def test_a_damaged_tflite_falls_back_to_keras_for_that_task_only(png_digit, make_app, copies, damage):
    path = copies / "fashion_mnist" / "model.tflite"
    data = path.read_bytes()
    path.write_bytes({"random bytes": np.random.default_rng(0).bytes(len(data)),
                      "truncated": data[: len(data) // 2],
                      "bytes changed in the weights": data[:-5000] + bytes(5000)}[damage])
    client = make_app(copies).test_client()
    tasks = statuses(client)
    assert tasks["mnist"]["engine"] == "litert"
    assert tasks["fashion_mnist"]["status"] == "ready" and tasks["fashion_mnist"]["engine"] == "xla"
    for slug in ("mnist", "fashion_mnist"):
        resp = client.post(f"/api/v1/tasks/{slug}/predict", data={"file": (io.BytesIO(png_digit()), "d.png")})
        assert resp.status_code == 200


def test_a_tflite_older_than_its_model_is_not_served(make_app, copies):
    card_path = copies / "mnist" / "card.json"
    card = json.loads(card_path.read_text(encoding="utf-8"))
    card["export"]["source_sha256"] = "0" * 64  # as if model.keras had been retrained since
    card_path.write_text(json.dumps(card), encoding="utf-8")
    (copies / "fashion_mnist" / "model.tflite").unlink()
    tasks = statuses(make_app(copies).test_client())
    assert tasks["mnist"]["engine"] == tasks["fashion_mnist"]["engine"] == "xla"


@pytest.mark.parametrize("config, engine", [({"PREDICT_LITERT": False}, "xla"),
                                            ({"PREDICT_LITERT": False, "PREDICT_JIT": False}, "tf")])
def test_the_keras_engine_can_be_forced(make_app, copies, config, engine):
    app = make_app(copies, **config)
    assert statuses(app.test_client())["mnist"]["engine"] == engine
    from app.modelstore import get_store

    x = np.random.default_rng(3).integers(0, 256, (2, 28, 28, 1)).astype(np.float32)
    with app.app_context():
        got = get_store().get("mnist").predict(x)
    np.testing.assert_allclose(got, keras_probs(copies / "mnist", x), atol=1e-5)


# ----------------------------------------------------------------------------- lab runs' models
def test_lab_runs_load_through_the_store_never_through_keras(tiny_run_folder, tmp_path):
    """A run's model comes from its own folder through the store's one loader: cached until its
    card changes, the oldest dropped past RUNS_KEPT, and no Keras fallback in a web worker."""
    import os

    from app.modelstore import ERROR, ModelStore

    store = ModelStore(tmp_path / "models")
    folders = []
    for i in range(store.RUNS_KEPT + 1):
        folders.append(tmp_path / "runs" / f"run{i}")
        shutil.copytree(tiny_run_folder, folders[-1])
    first = store.run_entry("run0", folders[0])
    assert first.available and first.engine == "litert" and first.folder == folders[0]
    assert store.run_entry("run0", folders[0]) is first
    card = folders[0] / "card.json"
    os.utime(card, ns=(card.stat().st_atime_ns, card.stat().st_mtime_ns + 10**9))
    reloaded = store.run_entry("run0", folders[0])
    assert reloaded is not first and reloaded.available

    (folders[1] / "model.tflite").unlink()
    stale = store.run_entry("run1", folders[1])
    assert stale.status == ERROR and stale.engine == "" and stale.predict is None

    for i in range(2, store.RUNS_KEPT + 1):
        store.run_entry(f"run{i}", folders[i])
    assert "run0" not in store._runs and len(store._runs) == store.RUNS_KEPT
    store.forget_run("run1")
    assert "run1" not in store._runs
    assert store.run_entry("gone", tmp_path / "runs" / "gone") is None


# ----------------------------------------------------------------------------- no TensorFlow
NO_TF_SCRIPT = """
import io, json, sys
from PIL import Image, ImageDraw
from app import create_app
app = create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": sys.argv[1]})
client = app.test_client()
img = Image.new("L", (28, 28), 255); ImageDraw.Draw(img).line((14, 4, 14, 23), fill=0, width=3)
buf = io.BytesIO(); img.save(buf, "PNG")
tasks = client.get("/readyz").get_json()["tasks"]
codes = [client.get(url).status_code for url in ("/", "/lstm", "/lstm/why", "/tasks/mnist", "/tasks/mnist/card")]
for trace in ("", "?trace=1"):
    resp = client.post("/api/v1/tasks/mnist/predict" + trace, data={"file": (io.BytesIO(buf.getvalue()), "d.png")})
    codes.append(resp.status_code if not trace or resp.get_json()["trace"]["layers"] else "no trace")
    for slug in ("kieu", "nyt_headlines"):
        if tasks[slug]["status"] == "ready":
            resp = client.post(f"/api/v1/tasks/{slug}/generate", json={"seed": "trăm năm", "length": 2, "trace": bool(trace)})
            codes.append(resp.status_code if not trace or resp.get_json()["trace"]["layers"] else "no trace")
print(json.dumps({"codes": codes, "engines": {s: t.get("engine") for s, t in tasks.items()},
                  "imported": sorted(m for m in ("tensorflow", "keras", "tf_keras") if m in sys.modules)}))
"""


@pytest.mark.slow
def test_serving_and_tracing_never_import_tensorflow(tiny_models_dir):
    out = subprocess.run([sys.executable, "-c", NO_TF_SCRIPT, str(tiny_models_dir)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["engines"]["mnist"] == "litert"
    assert result["codes"] and set(result["codes"]) == {200}
    assert result["imported"] == []


# ----------------------------------------------------------------------------- shipped models
SHIPPED_IMAGES = [s for s, spec in BUILTIN_TASKS.items() if spec.kind == IMAGE]


@pytest.mark.slow
@pytest.mark.parametrize("slug", SHIPPED_IMAGES)
def test_shipped_tflite_and_trace_equal_keras_on_real_test_images(slug):
    from app.modelstore import litert_predict
    from training.data import load_image_data
    from training.export import sample_images

    spec, folder = BUILTIN_TASKS[slug], MODELS_DIR / slug
    data_file = default_data_dir() / spec.data_path
    if not data_file.is_file():
        pytest.skip(f"no data at {data_file}")
    if not (folder / "model.tflite").is_file():
        pytest.skip(f"{slug}: no model.tflite (python -m training export {slug})")
    card = Card.from_json(folder)
    predict = litert_predict(folder, card, spec, 1, int8=False)
    assert predict is not None and predict.precision == "float32", \
        "model.tflite is not current: run python -m training export --all"
    data = load_image_data(spec)
    x = sample_images(data.x_test, 128)[0]
    expected = keras_probs(folder, x)
    np.testing.assert_allclose(predict(x), expected, atol=1e-4)
    quantized = card.export.int8  # the int8 file served instead: its card figures reproduce
    served = litert_predict(folder, card, spec, 1)
    assert served.precision == ("int8" if quantized.accepted else "float32")
    if quantized.accepted:
        labels = data.y_test.reshape(-1)
        got, full = served(data.x_test).argmax(1), predict(data.x_test).argmax(1)
        assert quantized.test_count == len(labels)
        assert np.mean(got == labels) == pytest.approx(quantized.test_accuracy, abs=1e-9)
        assert np.mean(full == labels) == pytest.approx(quantized.float_test_accuracy, abs=1e-9)
        assert np.mean(got == full) == pytest.approx(quantized.agreement, abs=1e-9) and quantized.agreement >= 0.99
    from app.trace import load_tracer  # the gate trace, also read from the file without Keras

    np.testing.assert_allclose(load_tracer(folder, spec)(x[:2]).output, expected[:2], atol=1e-4)


@pytest.mark.parametrize("slug", [s for s, spec in BUILTIN_TASKS.items() if spec.kind == TEXT])
def test_shipped_text_model_equals_keras(slug):
    """Every layer's weights read with h5py are Keras's, and the served NumPy model's
    log-probabilities are the Keras model's (float32: 1e-5, relative 1e-6 for improbable tokens)."""
    import keras

    from app.lstm_cell import read_keras_file
    from app.text import EOL_ID, clean_words
    from app.textmodel import load_text_model
    from training.layers import load_keras_text_model

    path = MODELS_DIR / slug / "model.keras"
    if not path.is_file():
        pytest.skip(f"{slug} model not trained yet")
    model = load_keras_text_model(path)
    _, ours = read_keras_file(path)
    for layer in model.layers:
        theirs = layer.get_weights()
        assert len(ours.get(layer.name, [])) == len(theirs), layer.name
        assert all(np.array_equal(x, y) for x, y in zip(ours.get(layer.name, []), theirs)), layer.name
    served = load_text_model(path.parent, BUILTIN_TASKS[slug])
    text = "Trăm năm trong cõi người ta chữ tài chữ mệnh khéo là ghét nhau" if slug == "kieu" else \
        "the new president says the economy is strong"
    ids = [EOL_ID] + served.vocab.encode(clean_words(text))
    want = keras.ops.convert_to_numpy(model(np.array([ids]), training=False))[0]
    got = served.sequence_log_probs(ids)
    np.testing.assert_allclose(np.exp(got), want, atol=1e-6)
    np.testing.assert_allclose(got, np.log(want), atol=1e-5, rtol=1e-6)


# ----------------------------------------------------------------------------- the export command
def test_export_command_skips_current_models_and_redoes_stale_ones(tiny_models_dir, tmp_path, capsys):
    import keras

    from training.__main__ import main

    shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / "models" / "mnist")
    models, no_data = tmp_path / "models", tmp_path / "no_data"
    no_data.mkdir()
    assert main(["export", "--all", "--models-dir", str(models), "--data", str(no_data)]) == 0
    assert "mnist: model.tflite is current" in capsys.readouterr().out
    model = keras.saving.load_model(models / "mnist" / "model.keras", compile=False)
    model.set_weights([w * 0.5 for w in model.get_weights()])  # a retrained model
    model.save(models / "mnist" / "model.keras")
    assert main(["export", "mnist", "--models-dir", str(models), "--data", str(no_data)]) == 0
    card = json.loads((models / "mnist" / "card.json").read_text(encoding="utf-8"))
    from training.export import file_sha256

    assert card["export"]["source_sha256"] == file_sha256(models / "mnist" / "model.keras")
    assert card["export"]["max_abs_diff"] <= 1e-4 and card["export"]["argmax_agreement"] == 1.0
    assert card["export"]["checked_on"].endswith("random images (no data found)")
    assert card["export"]["int8"]["why"] == "no labelled test images to check it on"  # no labels, no int8
    assert not (models / "mnist" / "model.int8.tflite").exists()
    assert main(["export", "cifar10", "--models-dir", str(models)]) == 1  # nothing to export
    assert "no trained image model" in capsys.readouterr().err
    shutil.copytree(models / "mnist", models / "fashion_mnist")  # a damaged model does not stop --all
    (models / "fashion_mnist" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    assert main(["export", "--all", "--models-dir", str(models), "--data", str(no_data)]) == 1
    out = capsys.readouterr()
    assert "error: fashion_mnist:" in out.err and "mnist: model.tflite is current" in out.out


def test_renet_export_folds_time_distributed_and_equals_keras(tmp_path):
    import keras

    from training.build import make_image_classifier
    from training.export import export_model, fold_time_distributed

    spec = BUILTIN_TASKS["cats_dogs"]
    keras.utils.set_random_seed(0)
    model = make_image_classifier(spec, "renet", units=4, top_units=8)
    rng = np.random.default_rng(0)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in model.get_weights()])
    folded = fold_time_distributed(model)
    assert not any(isinstance(layer, keras.layers.TimeDistributed) for layer in folded.layers)
    x = rng.integers(0, 256, (6, *spec.input_shape)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(folded(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-6)
    block = export_model(model, spec, tmp_path, "0" * 64, x, "6 random images")  # raises unless LiteRT = Keras
    assert block["max_abs_diff"] <= 1e-4 and (tmp_path / "model.tflite").stat().st_size == block["bytes"]


def test_int8_rule_accepts_only_a_close_enough_model():
    from training.export import int8_verdict

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 10, 2000)
    float_probs = np.eye(10)[labels] * 0.8 + 0.02  # right on every image
    same = int8_verdict(float_probs, float_probs + 0.001, labels)
    assert same["accepted"] and same["test_accuracy"] == same["agreement"] == 1.0 and same["test_count"] == 2000
    two_wrong = float_probs.copy()
    two_wrong[:2] = np.roll(two_wrong[:2], 1, axis=1)  # 0.1 pp lower: still accepted
    assert int8_verdict(float_probs, two_wrong, labels)["accepted"]
    three_wrong = float_probs.copy()
    three_wrong[:3] = np.roll(three_wrong[:3], 1, axis=1)  # 0.15 pp lower: refused
    verdict = int8_verdict(float_probs, three_wrong, labels)
    assert not verdict["accepted"] and verdict["test_accuracy"] == pytest.approx(0.9985)
    # as accurate overall but another class on 2% of the images: refused
    float_half = float_probs.copy()
    float_half[:40] = np.roll(float_half[:40], 1, axis=1)  # float32 wrong on 40 images
    swapped = float_probs.copy()
    swapped[40:80] = np.roll(swapped[40:80], 1, axis=1)  # int8 wrong on 40 others
    verdict = int8_verdict(float_half, swapped, labels)
    assert verdict["test_accuracy"] == verdict["float_test_accuracy"] and verdict["agreement"] == pytest.approx(0.96)
    assert not verdict["accepted"]


def test_int8_export_is_written_only_when_it_passes_and_served_only_then(tmp_path, monkeypatch):
    import keras

    from app.modelstore import current_tflite, litert_predict
    from training import export
    from training.build import make_image_classifier

    spec = BUILTIN_TASKS["mnist"]
    keras.utils.set_random_seed(0)
    model = make_image_classifier(spec, "rows_cols", units=4)
    model.save(tmp_path / "model.keras")
    sha = export.file_sha256(tmp_path / "model.keras")
    x = np.random.default_rng(0).integers(0, 256, (40, *spec.input_shape)).astype(np.float32)
    y = keras.ops.convert_to_numpy(model(x)).argmax(1)  # labels the float model gets right

    def card_with(block):
        return Card(slug=spec.slug, kind=spec.kind, task=spec.to_dict(), metrics=Metrics(), export=Export.parse(block))

    no_labels = export.export_model(model, spec, tmp_path, sha, x[:8], "8 images")  # no test set: no int8
    assert no_labels["int8"] == {"accepted": False, "rule": export.INT8_RULE, "why": "no labelled test images to check it on"}
    assert not (tmp_path / export.INT8_TFLITE).exists()
    assert current_tflite(tmp_path, card_with(no_labels))[1] == "float32"

    monkeypatch.setattr(export, "INT8_MIN_AGREEMENT", 0.0)  # any int8 model passes
    monkeypatch.setattr(export, "INT8_MAX_DROP", 1.0)
    passed = export.export_model(model, spec, tmp_path, sha, x[:8], "8 images", test=(x, y))
    block = passed["int8"]
    assert block["accepted"] and block["test_count"] == 40 and block["float_test_accuracy"] == 1.0
    assert (tmp_path / export.INT8_TFLITE).stat().st_size == block["bytes"] < passed["bytes"]
    served = litert_predict(tmp_path, card_with(passed), spec, 1)
    assert served.precision == "int8" and served(x).shape == (40, 10)
    assert litert_predict(tmp_path, card_with(passed), spec, 1, int8=False).precision == "float32"
    (tmp_path / export.INT8_TFLITE).write_bytes(b"damaged")  # a file that is not the card's: float32
    assert current_tflite(tmp_path, card_with(passed))[1] == "float32"

    monkeypatch.setattr(export, "INT8_MIN_AGREEMENT", 1.01)  # no int8 model passes
    failed = export.export_model(model, spec, tmp_path, sha, x[:8], "8 images", test=(x, y))
    assert not failed["int8"]["accepted"] and "file" not in failed["int8"]
    assert not (tmp_path / export.INT8_TFLITE).exists()  # the older int8 file is gone with its approval
    assert current_tflite(tmp_path, card_with({**failed, "int8": block}))[1] == "float32"  # even if a card says so


def test_the_card_page_says_which_weights_are_served(client):
    page = client.get("/tasks/mnist/card?lang=en").get_data(as_text=True)
    assert 'id="serving"' in page and "<code>litert</code>" in page and "<code>float32</code>" in page
    status = client.get("/readyz").get_json()["tasks"]["mnist"]
    assert status["precision"] == "float32"  # the tiny test model has no int8 export
    vi = client.get("/tasks/mnist/card?lang=vi").get_data(as_text=True)
    assert "Cách máy chủ chạy mô hình" in vi


@pytest.mark.parametrize("wrap", ["bidirectional", "bidirectional_last", "lstm", "lstm_last"])
def test_lockstep_lstm_equals_keras_and_exports_without_while_loops(tmp_path, wrap):
    import keras

    from ai_edge_litert.interpreter import Interpreter

    from training.export import convert, lockstep_layer

    sequences = not wrap.endswith("_last")
    rnn = keras.layers.LSTM(5, return_sequences=sequences)
    layer = keras.layers.Bidirectional(rnn) if wrap.startswith("bi") else rnn
    inputs = keras.Input((7, 3))
    model = keras.Model(inputs, keras.layers.Dense(4, activation="softmax")(
        keras.layers.Flatten()(layer(inputs)) if sequences else layer(inputs)))
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(scale=0.8, size=w.shape).astype(np.float32) for w in model.get_weights()])
    x = rng.normal(size=(3, 7, 3)).astype(np.float32)
    expected = keras.ops.convert_to_numpy(layer(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(lockstep_layer(layer)(x)), expected, atol=1e-5)
    interp = Interpreter(model_content=convert(model))
    assert "WHILE" not in {op["op_name"] for op in interp._get_ops_details()}
    interp.allocate_tensors()
    interp.set_tensor(interp.get_input_details()[0]["index"], x[:1])
    interp.invoke()
    np.testing.assert_allclose(interp.get_tensor(interp.get_output_details()[0]["index"]),
                               keras.ops.convert_to_numpy(model(x[:1])), atol=1e-5)


def test_lockstep_leaves_other_recurrent_layers_to_keras():
    import keras

    from training.export import lockstep_layer

    for layer in (keras.layers.GRU(4), keras.layers.LSTM(4, activation="relu"), keras.layers.LSTM(4, go_backwards=True),
                  keras.layers.LSTM(4, recurrent_activation="hard_sigmoid"), keras.layers.LSTM(4, use_bias=False),
                  keras.layers.Bidirectional(keras.layers.LSTM(4), merge_mode="sum")):
        assert lockstep_layer(layer) is layer


def test_export_asks_the_numpy_cell_which_lstms_it_computes(monkeypatch):
    """The export's lockstep graph runs exactly the LSTMs `app.lstm_cell.cell_problem` accepts."""
    import keras

    from training import export

    layer = keras.layers.LSTM(4, return_sequences=True)
    layer.build((1, 5, 3))
    assert export.lockstep_layer(layer) is not layer
    monkeypatch.setattr(export, "cell_problem", lambda cfg: "refused by the cell")
    assert export.lockstep_layer(layer) is layer
