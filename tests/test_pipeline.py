"""The image pipeline: loaders, builders, a --quick run, the atomic save, `evaluate`.

Everything runs on tiny data generated here; the tests against the shipped models and
../shared/data skip cleanly where either is absent.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.config import ROOT
from app.imaging import bytes_to_array
from app.tasks import BUILTIN_TASKS
from training import data as data_module
from training import fit
from training.__main__ import main
from training.data import load_image_data, load_npz, read_idx
from training.dataset import DataError

MNIST = BUILTIN_TASKS["mnist"]
CIFAR10 = BUILTIN_TASKS["cifar10"]
FACES = BUILTIN_TASKS["faces_gender"]
# Every key a card must hold (the task holds the classes and the input spec).
CARD_KEYS = {"task", "input", "layers", "params_total", "optimizer", "training", "data", "metrics",
             "history", "baseline", "versions", "git_commit"}


@pytest.fixture(autouse=True)
def private_runs(tmp_path, monkeypatch):
    """Checkpoints and decode caches go to tmp_path, never to the project's runs/."""
    monkeypatch.setattr(fit, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(data_module, "CACHE_DIR", tmp_path / "runs" / "cache")


def jpeg(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def jpeg_npz(path: Path, size=32, n=(12, 6), meta: bool = False, corrupt: int | None = None) -> Path:
    """A JPEG-bytes npz as in ../shared/data (jpeg_s, off_s, y_s, class_names[, age_s, race_s])."""
    rng = np.random.default_rng(1)
    arrays = {"class_names": np.array(["a", "b"])}
    for split, count in zip(("train", "test"), n):
        blobs = [jpeg(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(count)]
        if corrupt is not None and split == "test":
            blobs[corrupt] = blobs[corrupt][:40]
        arrays[f"jpeg_{split}"] = np.frombuffer(b"".join(blobs), dtype=np.uint8)
        arrays[f"off_{split}"] = np.cumsum([0] + [len(b) for b in blobs]).astype(np.int64)
        arrays[f"y_{split}"] = (np.arange(count) % 2).astype(np.uint8)
        if meta:
            arrays[f"age_{split}"] = rng.integers(1, 90, count).astype(np.uint8)
            arrays[f"race_{split}"] = rng.integers(0, 5, count).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def write_idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    raw = header + arr.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)


# ----------------------------------------------------------------------------- loaders
def test_plain_npz(digits_npz, tmp_path):
    path = digits_npz(tmp_path / "mnist.npz")
    data = load_image_data(MNIST, path)
    assert data.x_train.shape == (64, 28, 28, 1) and data.x_test.shape == (32, 28, 28, 1)
    assert data.x_train.dtype == np.uint8 and data.y_train.dtype == np.int64
    raw = np.load(path)
    np.testing.assert_array_equal(data.x_train[..., 0], raw["x_train"])
    np.testing.assert_array_equal(data.y_test, raw["y_test"])
    # --data may also name the folder that holds mnist/mnist.npz
    (tmp_path / "mnist").mkdir()
    path.rename(tmp_path / "mnist" / "mnist.npz")
    assert load_image_data(MNIST, tmp_path).source.endswith("mnist/mnist.npz")


def test_jpeg_npz_decodes_through_the_serving_function(tmp_path):
    path = jpeg_npz(tmp_path / "c.npz")
    data = load_npz(path, CIFAR10)
    assert data.x_train.shape == (12, 32, 32, 3) and data.x_test.shape == (6, 32, 32, 3)
    raw = np.load(path)
    off = raw["off_test"]
    for i in range(len(off) - 1):
        blob = raw["jpeg_test"][off[i]: off[i + 1]].tobytes()
        np.testing.assert_array_equal(data.x_test[i], bytes_to_array(blob, CIFAR10))
    assert data.class_names == ["a", "b"]
    again = load_npz(path, CIFAR10)  # second load comes from the decode cache
    np.testing.assert_array_equal(again.x_train, data.x_train)
    assert list((data_module.CACHE_DIR).glob("cifar10-*.npy"))


def test_jpeg_npz_carries_age_and_race(tmp_path):
    data = load_npz(jpeg_npz(tmp_path / "f.npz", size=64, n=(4, 6), meta=True), FACES)
    assert set(data.test_meta) == {"age", "race"} and len(data.test_meta["age"]) == 6
    assert data.x_test.shape == (6,) + FACES.input_shape
    small = data.subset(2, 3)
    assert len(small.test_meta["race"]) == len(small.y_test) == 3
    assert set(data.train_meta) == {"age", "race"} and len(small.train_meta["age"]) == len(small.y_train) == 2


def test_train_groups_follow_the_training_split():
    from training.dataset import ImageData

    n = 50  # each image and its groups carry the image's index, so the two orders can be compared
    data = ImageData(np.arange(n), np.zeros(n), np.arange(4), np.zeros(4), "", train_meta={"race": np.arange(n) * 10})
    for seed in (1, 2):
        (x, _), (x_val, _) = data.train_validation(seed)
        assert len(x_val) == 5 and data.train_groups(seed)["race"].tolist() == (x * 10).tolist()


def test_balance_weights_count_rarer_groups_more():
    from training.groups import balance_weights

    race = np.array([0] * 8 + [1] * 2)
    age = np.array([30] * 6 + [5] * 2 + [30] * 2)  # cells: (0, 30-44) 6, (0, 0-12) 2, (1, 30-44) 2
    weights, record = balance_weights({"race": race, "age": age}, ["race", "age"], power=1.0)
    assert weights.mean() == pytest.approx(1.0)
    assert weights[:6].sum() == pytest.approx(weights[6:8].sum()) == pytest.approx(weights[8:].sum())
    assert record["cells"] == 3 and record["groups"] == ["race", "age"]
    tempered, _ = balance_weights({"race": race}, ["race"])  # power 0.5: 8 against 2 images, weights 1:2
    assert tempered[9] / tempered[0] == pytest.approx(2.0)
    with pytest.raises(DataError, match="records no age per training image"):
        balance_weights({"race": race}, ["age"])


def test_weighted_dataset_yields_image_label_weight(tmp_path):
    from training.pipeline import make_dataset

    x = np.zeros((6,) + FACES.input_shape, np.uint8)
    for train in (True, False):
        images, labels, weights = next(iter(make_dataset(x, np.arange(6) % 2, 4, FACES, 0, train,
                                                         np.arange(6, dtype=float))))
        assert images.shape == (4,) + FACES.input_shape and labels.shape == (4, 2)  # one-hot: label smoothing
        # each weight stays with its own image's label
        assert labels.numpy().argmax(1).tolist() == [int(w) % 2 for w in weights.numpy()]
    assert weights.numpy().tolist() == [0, 1, 2, 3]


def test_cutmix_pastes_a_box_of_another_image_and_mixes_the_labels_by_area():
    import dataclasses

    from training.pipeline import make_dataset

    plain = dataclasses.replace(CIFAR10, extra={})  # no shifts, flips or jitter: only CutMix changes pixels
    x = np.repeat(np.arange(1, 11, dtype=np.uint8)[:, None, None, None] * 20, 32, axis=1)
    x = np.repeat(np.repeat(x, 32, axis=2), 3, axis=3)  # image k is all 20·(k+1), class k
    y = np.arange(10)
    mixed = 0
    for epoch in range(3):
        for images, labels, weights in make_dataset(x, y, 10, plain, epoch, True, np.arange(10.0), cutmix=1.0):
            for image, label, weight in zip(images.numpy(), labels.numpy(), weights.numpy()):
                values, counts = np.unique(image, return_counts=True)
                assert set(values) <= set(x[:, 0, 0, 0]) and len(values) <= 2  # its own pixels and one box
                # each class's share of the label is its image's share of the pixels (Keras mixes by the
                # box's exact area; whole pixels cover it to within one row and one column)
                share = np.zeros(10)
                share[(values / 20 - 1).astype(int)] = counts / image.size
                assert np.allclose(label, share, atol=(32 + 32 + 1) / 1024) and label.sum() == pytest.approx(1)
                assert label[int(weight)] > 0 or len(values) == 1  # a weight stays with its image
                mixed += len(values) == 2
    assert mixed > 0
    assert (make_dataset(x, y, 10, plain, 0, False, cutmix=1.0).element_spec[1].shape[-1]) == 10  # one-hot
    unmixed = next(iter(make_dataset(x, y, 10, plain, 0, False, cutmix=1.0)))[0].numpy()
    assert (np.sort(unmixed.reshape(10, -1).max(1)) == x[:, 0, 0, 0]).all()  # validation is never mixed


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder(tmp_path, gz):
    rng = np.random.default_rng(2)
    parts = {"train-images-idx3-ubyte": rng.integers(0, 256, (20, 28, 28)),
             "train-labels-idx1-ubyte": rng.integers(0, 10, 20),
             "t10k-images-idx3-ubyte": rng.integers(0, 256, (8, 28, 28)),
             "t10k-labels-idx1-ubyte": rng.integers(0, 10, 8)}
    for name, arr in parts.items():
        write_idx(tmp_path / (name + (".gz" if gz else "")), arr, gz)
    data = load_image_data(MNIST.with_overrides(keras_dataset=""), tmp_path)
    assert data.x_train.shape == (20, 28, 28, 1) and data.x_test.shape == (8, 28, 28, 1)
    np.testing.assert_array_equal(data.x_test[..., 0], parts["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(data.y_train, parts["train-labels-idx1-ubyte"])


def _not_npz(tmp_path):
    p = tmp_path / "broken.npz"
    p.write_text("this is not a zip archive", encoding="utf-8")
    return p


def _wrong_keys(tmp_path):
    p = tmp_path / "keys.npz"
    np.savez(p, images=np.zeros((2, 28, 28), np.uint8))
    return p


def _wrong_size(tmp_path):
    p = tmp_path / "size.npz"
    z = np.zeros((2, 20, 20), np.uint8)
    np.savez(p, x_train=z, y_train=np.zeros(2), x_test=z, y_test=np.zeros(2))
    return p


def _corrupt_jpeg(tmp_path):
    return jpeg_npz(tmp_path / "bad.npz", corrupt=3)


@pytest.mark.parametrize("make, words", [
    (_not_npz, "not a readable .npz"),
    (_wrong_keys, "expected arrays"),
    (_wrong_size, "expects"),
    (_corrupt_jpeg, "image 3 of the test split"),
])
def test_malformed_file_names_path_and_problem(tmp_path, make, words):
    path = make(tmp_path)
    spec = CIFAR10 if make is _corrupt_jpeg else MNIST
    with pytest.raises(DataError) as info:
        load_image_data(spec, path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_malformed_idx_file(tmp_path):
    p = tmp_path / "train-images-idx3-ubyte"
    p.write_bytes(bytes([0, 0, 8, 3]) + (5).to_bytes(4, "big") * 3 + b"\0" * 10)
    with pytest.raises(DataError, match="header says"):
        read_idx(p)
    p.write_bytes(b"garbage!")
    with pytest.raises(DataError, match=re.escape(str(p))):
        read_idx(p)


def test_missing_data_names_the_path(tmp_path):
    offline = MNIST.with_overrides(keras_dataset="")  # no download attempt in a test
    with pytest.raises(DataError) as info:
        load_image_data(offline, tmp_path / "nowhere")
    assert "nowhere" in str(info.value) and "mnist.npz" in str(info.value)


def test_cli_reports_data_errors_without_traceback(tmp_path, capsys):
    code = main(["mnist", "--data", str(_not_npz(tmp_path)), "--models-dir", str(tmp_path / "m"),
                 "--quick"])
    err = capsys.readouterr().err
    assert code == 2 and "broken.npz" in err and "Traceback" not in err
    assert not (tmp_path / "m" / "mnist").exists()


# ----------------------------------------------------------------------------- builders
@pytest.mark.parametrize("architecture, kw", [("baseline", {}), ("rows_cols", {"units": 4}),
                                              ("renet", {"units": 4, "top_units": 4})])
@pytest.mark.parametrize("spec", [MNIST, CIFAR10], ids=["grey28", "rgb32"])
def test_builders_shapes_and_lstm_only(spec, architecture, kw):
    from training.build import make_image_classifier

    model = make_image_classifier(spec, architecture, **kw)
    assert model.input_shape == (None,) + spec.input_shape
    assert model.output_shape == (None, len(spec.classes))
    x = np.random.default_rng(0).integers(0, 256, (3,) + spec.input_shape).astype(np.float32)
    probs = np.asarray(model(x, training=False))
    assert probs.shape == (3, len(spec.classes))
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    kinds = {type(layer).__name__ for layer in model.layers}
    assert not any("Conv" in k for k in kinds)
    assert any(k in ("LSTM", "Bidirectional", "TimeDistributed") for k in kinds)


def test_unknown_architecture_is_refused():
    from training.build import make_image_classifier

    with pytest.raises(ValueError, match="unknown architecture"):
        make_image_classifier(MNIST, "transformer")


# ----------------------------------------------------------------------------- a --quick run
def test_a_failed_export_keeps_the_trained_model(digits_npz, tmp_path, monkeypatch, capsys):
    from training import export

    def broken(model):
        raise RuntimeError("converter crashed")

    monkeypatch.setattr(export, "convert", broken)
    models = tmp_path / "models"
    npz = digits_npz(tmp_path / "mnist.npz", n_train=64, n_test=16)
    assert main(["mnist", "--data", str(npz), "--models-dir", str(models), "--quick", "--baseline-epochs", "0",
                 "--verbose", "0", "--model-kwargs", '{"units": 4}']) == 0
    card = json.loads((models / "mnist" / "card.json").read_text(encoding="utf-8"))
    assert card["export"] == {"error": "RuntimeError: converter crashed"}
    assert (models / "mnist" / "model.keras").is_file() and not (models / "mnist" / "model.tflite").exists()
    assert "python -m training export mnist" in capsys.readouterr().out


QUICK_ARGS = ["--quick", "--verbose", "0", "--model-kwargs", '{"units": 8}']


@pytest.fixture(scope="module")
def quick_mnist(digits_npz, tmp_path_factory):
    """One quick MNIST run (96 training and 40 test images, baseline included), shared by the
    tests that read it: (its data file, its models folder). Tests copy it before changing it."""
    root = tmp_path_factory.mktemp("quick")
    npz = digits_npz(root / "mnist.npz", n_train=96, n_test=40)
    assert main(["mnist", "--data", str(npz), "--models-dir", str(root / "models"), "--baseline-epochs", "1",
                 *QUICK_ARGS]) == 0
    return npz, root / "models"


def test_quick_run_writes_loadable_model_card_and_plots(quick_mnist):
    import keras

    npz, models = quick_mnist
    folder = models / "mnist"
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert CARD_KEYS <= set(card)
    assert card["task"]["classes"][3] == {"en": "3", "vi": "3"} and card["input"]["shape"] == [28, 28, 1]
    assert sum(r["params"] for r in card["layers"]) == card["params_total"] > 0
    assert all(r["output_shape"] for r in card["layers"])
    assert card["training"]["epochs_run"] == 1 and len(card["training"]["seconds_per_epoch"]) == 1
    assert card["data"]["counts"]["test"] == 40 and card["data"]["source"]
    m = card["metrics"]
    assert m["test_count"] == 40 and len(m["per_class_accuracy"]) == 10
    assert np.asarray(m["confusion_matrix"]).shape == (10, 10)
    assert np.asarray(m["confusion_matrix"]).sum() == 40
    for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
        assert len(card["history"][key]) == 1
    assert 0 <= card["baseline"]["test_accuracy"] <= 1 and card["baseline"]["recipe"]
    assert {"keras", "tensorflow", "numpy"} <= set(card["versions"]) and card["git_commit"]
    from training.export import file_sha256  # the served .tflite ships in the same atomic save

    assert card["export"]["source_sha256"] == file_sha256(folder / "model.keras")
    assert card["export"]["bytes"] == (folder / "model.tflite").stat().st_size
    assert card["export"]["max_abs_diff"] <= 1e-4 and card["export"]["checked_on"] == "40 test images"
    for plot in ("training_curves.png", "confusion_matrix.png"):
        with Image.open(folder / plot) as im:
            assert im.size[0] > 100
    model = keras.models.load_model(folder / "model.keras", compile=False)
    x = np.load(npz)["x_test"][:40, :, :, None].astype(np.float32)
    pred = model.predict(x, verbose=0).argmax(1)
    # the card's accuracy is what the saved model scores on the same test images
    assert float((pred == np.load(npz)["y_test"][:40]).mean()) == pytest.approx(m["test_accuracy"])
    assert not list(models.glob(".mnist.*"))  # no temporary folder left behind
    assert main(["evaluate", "mnist", "--data", str(npz), "--models-dir", str(models)]) == 0


def test_init_from_continues_a_finished_model_and_keeps_its_history(quick_mnist, tmp_path, capsys):
    import keras

    npz, first = quick_mnist
    second = tmp_path / "second"
    common = ["--data", str(npz), *QUICK_ARGS]
    old = json.loads((first / "mnist" / "card.json").read_text(encoding="utf-8"))
    start = keras.models.load_model(first / "mnist" / "model.keras", compile=False)

    assert main(["mnist", "--models-dir", str(second), "--baseline-epochs", "0",
                 "--init-from", str(first / "mnist")] + common) == 0
    card = json.loads((second / "mnist" / "card.json").read_text(encoding="utf-8"))
    warm = card["warm_start"]
    assert warm["from"] == str(first / "mnist") and warm["epochs_total"] == 2
    assert warm["previous_runs"][0]["history"] == old["history"]
    assert warm["previous_runs"][0]["test_accuracy"] == old["metrics"]["test_accuracy"]
    assert card["baseline"] == old["baseline"]  # measured by the run it continues, on the same data
    # training went on from the old weights, not from a fresh initialisation
    moved = keras.models.load_model(second / "mnist" / "model.keras", compile=False)
    assert any(not np.array_equal(a, b) for a, b in zip(start.get_weights(), moved.get_weights()))
    # the saved file holds no optimizer state (Adam's moments would triple it)
    import h5py
    import zipfile

    with zipfile.ZipFile(second / "mnist" / "model.keras") as z, h5py.File(z.open("model.weights.h5")) as h5:
        assert "optimizer" not in h5 or not len(h5["optimizer"].get("vars", {}))

    # a model of another task is refused with a message, not a traceback
    cifar = tmp_path / "c" / "cifar10"
    cifar.mkdir(parents=True)
    (cifar / "card.json").write_text(json.dumps({"slug": "cifar10", "kind": "image", "task": CIFAR10.to_dict(),
                                                 "metrics": {"test_accuracy": 0.5}}), encoding="utf-8")
    (cifar / "model.keras").write_bytes((first / "mnist" / "model.keras").read_bytes())
    capsys.readouterr()
    assert main(["mnist", "--models-dir", str(second), "--init-from", str(cifar)] + common) == 2
    assert "for task 'cifar10', not 'mnist'" in capsys.readouterr().err
    assert main(["mnist", "--models-dir", str(second), "--init-from", str(tmp_path / "nope")] + common) == 2
    assert "expected a model folder" in capsys.readouterr().err
    assert main(["mnist", "--models-dir", str(second), "--balance", "race"] + common) == 2  # MNIST records none
    assert "records no race per training image" in capsys.readouterr().err


def test_a_second_run_into_the_same_folder_is_refused(tmp_path):
    rdir = tmp_path / "runs" / "mnist"
    _, first = fit.standard_callbacks("mnist", False, 2, "val_loss", "min", 0, rdir=rdir)
    (rdir / "history.csv").write_text("epoch,loss\n0,1.0\n", encoding="utf-8")
    with pytest.raises(DataError, match=f"in use by another training run \\(process {os.getpid()}\\)"):
        fit.standard_callbacks("mnist", False, 2, "val_loss", "min", 0, rdir=rdir)
    assert (rdir / "history.csv").read_text(encoding="utf-8") == "epoch,loss\n0,1.0\n"  # the first run's, kept
    fit.finish_run(first)  # released when the first run ends
    _, second = fit.standard_callbacks("mnist", False, 2, "val_loss", "min", 0, rdir=rdir)
    assert not (rdir / "history.csv").exists()
    fit.finish_run(second)


def test_teachers_distil_into_a_new_run_and_their_figures_are_recorded(quick_mnist, tmp_path, capsys):
    npz, first = quick_mnist
    teacher = first / "mnist"
    out = tmp_path / "student"
    assert main(["mnist", "--data", str(npz), "--models-dir", str(out), "--baseline-epochs", "0",
                 "--teachers", f"{teacher},{teacher}", "--distill-weight", "0.7", "--cutmix", "0.5",
                 *QUICK_ARGS]) == 0
    card = json.loads((out / "mnist" / "card.json").read_text(encoding="utf-8"))
    assert card["training"]["augmentation"]["cutmix"] == 0.5
    record = card["training"]["distillation"]
    assert record["weight"] == 0.7 and [t["folder"] for t in record["teachers"]] == [str(teacher)] * 2
    # an ensemble of one model twice is that model: its test figure is the teacher card's own
    old = json.loads((teacher / "card.json").read_text(encoding="utf-8"))["metrics"]["test_accuracy"]
    assert record["ensemble_test_accuracy"] == pytest.approx(old)
    assert record["teachers"][0]["test_accuracy"] == pytest.approx(old)
    assert 0 <= record["ensemble_validation_accuracy"] <= 1 and card["metrics"]["test_count"] == 40
    capsys.readouterr()
    assert main(["mnist", "--data", str(npz), "--models-dir", str(out), "--baseline-epochs", "0",
                 "--teachers", str(tmp_path / "nope"), *QUICK_ARGS]) == 2
    assert "--teachers" in capsys.readouterr().err
    assert main(["mnist", "--data", str(npz), "--models-dir", str(out), "--baseline-epochs", "0", "--seed", "7",
                 "--teachers", str(teacher), *QUICK_ARGS]) == 2
    assert "a teacher must share the run's training/validation split" in capsys.readouterr().err
    assert main(["mnist", "--data", str(npz), "--models-dir", str(tmp_path / "m"), "--baseline-epochs", "0",
                 "--teacher-mirror", *QUICK_ARGS]) == 2
    assert "give --teachers too" in capsys.readouterr().err


def _left_eyed_teacher(spec):
    """A stand-in teacher sure of class 1 when an image's left half is brighter than its right,
    of class 0 otherwise."""
    import keras
    from keras import ops

    def read(x):
        half = spec.input_shape[1] // 2
        left = ops.mean(ops.reshape(x[:, :, :half], (ops.shape(x)[0], -1)), axis=1)
        right = ops.mean(ops.reshape(x[:, :, half:], (ops.shape(x)[0], -1)), axis=1)
        return ops.one_hot(ops.cast(left > right, "int32"), len(spec.classes))

    inputs = keras.Input(spec.input_shape)
    return keras.Model(inputs, keras.layers.Lambda(read)(inputs))


def _stand_in_teacher(monkeypatch, distill, spec):
    """Make every --teachers folder load as the left-eyed stand-in (seed 42); returns it."""
    from types import SimpleNamespace

    card = SimpleNamespace(training=SimpleNamespace(seed=42))  # all teacher_targets reads of a card
    teacher = _left_eyed_teacher(spec)
    monkeypatch.setattr(distill, "load_finished", lambda spec_, folder, option: {
        "folder": Path(folder), "card": card, "model": teacher})
    return teacher


@pytest.mark.parametrize("spec", [CIFAR10, MNIST])
def test_teachers_read_each_training_image_as_augmented(spec, monkeypatch):
    from training import distill, pipeline

    teacher = _stand_in_teacher(monkeypatch, distill, spec)
    x = np.zeros((64, *spec.input_shape), np.uint8)
    x[:, :, : spec.input_shape[1] // 2] = 200  # every stored image is bright on the left: class 1
    y = np.arange(64) % len(spec.classes)
    teach, record = distill.teacher_targets(spec, ["t"], 0.75, 42, (x, y), (x, y))
    assert record["views"] == "augmented" and record["ensemble_test_accuracy"] == np.mean(y == 1)
    seen, targets = map(np.concatenate, zip(*[(a.numpy(), t.numpy()) for a, t in pipeline.make_dataset(
        x, y, 16, spec, 42, True, teach=teach)]))
    read = teacher.predict(seen, verbose=0).argmax(1)  # the teacher's reading of each view yielded
    # each target is 0.75 × the teacher's reading of the view yielded + 0.25 × a one-hot label
    soft = targets - 0.75 * np.eye(len(spec.classes))[read]
    assert np.allclose(soft.max(1), 0.25) and np.allclose(np.sort(soft, 1)[:, :-1], 0)
    assert (np.bincount(soft.argmax(1), minlength=10) == np.bincount(y, minlength=10)).all()  # each image's label
    # mirror images are read as mirrored (class 0) where the task flips, never otherwise
    assert (read == 0).any() == bool(spec.extra.get("flip")) and (read == 1).any()


def test_teachers_read_the_cutmix_image_and_the_label_part_is_mixed_by_area(monkeypatch):
    from training import distill, pipeline

    teacher = _stand_in_teacher(monkeypatch, distill, MNIST)
    x = np.zeros((64, *MNIST.input_shape), np.uint8)
    x[::2, :, :14] = 200  # even images bright on the left (class 1), odd ones dark: a pasted box can tip the reading
    y = np.arange(64) % 10
    teach, _ = distill.teacher_targets(MNIST, ["t"], 0.75, 42, (x, y), (x, y))
    seen, targets = map(np.concatenate, zip(*[(a.numpy(), t.numpy()) for a, t in pipeline.make_dataset(
        x, y, 16, MNIST, 42, True, teach=teach, cutmix=1.0)]))
    label = targets - 0.75 * teacher.predict(seen, verbose=0)  # the teacher read the pasted image
    assert np.allclose(label.sum(1), 0.25) and (label > -1e-6).all()
    assert ((label > 1e-6).sum(1) == 2).any()  # some labels are a mix of two images' classes


def test_mirrored_teachers_give_the_mean_of_each_view_and_its_mirror(monkeypatch):
    from training import distill, pipeline

    teacher = _stand_in_teacher(monkeypatch, distill, CIFAR10)
    x = np.zeros((32, *CIFAR10.input_shape), np.uint8)
    x[:, :, :16] = 200  # bright on the left (class 1); its mirror image is bright on the right (class 0)
    y = np.full(32, 7)
    teach, record = distill.teacher_targets(CIFAR10, ["t"], 0.6, 42, (x, y), (x, y), mirror=True)
    assert record["views"] == "augmented and mirrored" and record["teachers"][0]["validation_accuracy"] == 0.0
    targets = np.concatenate([t.numpy() for _, t in pipeline.make_dataset(x, y, 16, CIFAR10, 42, True, teach=teach)])
    want = np.zeros(10)
    want[[0, 1]], want[7] = 0.6 / 2, 0.4  # whichever view the student got, the teacher read both
    assert np.allclose(targets, want)
    with pytest.raises(distill.DataError, match="mirror"):  # digits are not read mirrored
        distill.teacher_targets(MNIST, ["t"], 0.6, 42, (x[:, :28, :28, :1], y), (x[:, :28, :28, :1], y), mirror=True)


# ----------------------------------------------------------------------------- atomic save
def test_failed_write_leaves_old_model_byte_identical(old_model, snapshot, tmp_path):
    models = tmp_path / "models"
    before = old_model(models, "mnist")

    def write(folder: Path) -> None:
        (folder / "model.keras").write_bytes(b"half a model")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        fit.save_atomically(models, "mnist", write)
    assert snapshot(models / "mnist") == before
    assert sorted(p.name for p in models.iterdir()) == ["mnist"]


def test_successful_save_replaces_and_interrupted_swap_recovers(old_model, snapshot, tmp_path):
    models = tmp_path / "models"
    old_model(models, "mnist")
    fit.save_atomically(models, "mnist", lambda f: (f / "card.json").write_text("{}", encoding="utf-8"))
    assert snapshot(models / "mnist") == {"card.json": b"{}"}
    # a kill between the two renames leaves only .mnist.old-<pid>: the next save restores it first
    (models / "mnist").rename(models / ".mnist.old-999")
    fit.recover_interrupted_save(models, "mnist")
    assert snapshot(models / "mnist") == {"card.json": b"{}"}


@pytest.mark.slow
def test_killed_run_leaves_old_model_and_resume_continues(digits_npz, old_model, snapshot, tmp_path):
    """A real training process killed with SIGKILL after its first epoch; then --resume."""
    models, runs = tmp_path / "models", tmp_path / "runs"
    npz = digits_npz(tmp_path / "mnist.npz", n_train=1000, n_test=50)
    before = old_model(models, "mnist")
    env = dict(os.environ, LSTMLAB_RUNS=str(runs), TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "training", "mnist", "--data", str(npz), "--models-dir", str(models),
           "--epochs", "2", "--batch-size", "16", "--baseline-epochs", "0", "--verbose", "2",
           "--model-kwargs", '{"units": 8}']
    log = open(tmp_path / "first.log", "w")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    marker = runs / "mnist" / "backup" / "training_metadata.json"
    deadline = time.monotonic() + 240
    while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    alive = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    assert alive and marker.exists(), (tmp_path / "first.log").read_text()
    assert snapshot(models / "mnist") == before  # the model in place is untouched
    assert not list(models.glob(".mnist.*"))
    done = subprocess.run(cmd + ["--resume"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Epoch 1/2" not in done.stdout and "Epoch 2/2" in done.stdout  # continued, not restarted
    card = json.loads((models / "mnist" / "card.json").read_text(encoding="utf-8"))
    assert card["training"]["epochs_run"] == 2 and len(card["history"]["val_accuracy"]) == 2


# ----------------------------------------------------------------------------- shipped models
@pytest.mark.slow
@pytest.mark.parametrize("slug", ["mnist", "fashion_mnist", "cifar10"])
def test_evaluate_reproduces_shipped_card(slug, shipped_evaluation):
    """`python -m training evaluate <slug>` on the full official test set, against the card."""
    result = shipped_evaluation(slug)
    assert result["test_count"] == result["card_test_count"]
    assert result["measured_accuracy"] == result["card_accuracy"]  # evaluation is deterministic


@pytest.mark.slow
def test_training_cli_imports_tensorflow_without_its_log_lines_unless_verbose():
    """TensorFlow's C++ start-up log (absl, oneDNN, CPU features) is dropped unless --verbose."""
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    script = ("import sys, training.__main__ as cli; cli.import_tensorflow(verbose=sys.argv[1] == 'verbose'); "
              "import tensorflow as tf; tf.constant(1.0) + 1; print('tensorflow' in sys.modules)")
    noise = ("absl::InitializeLog", "oneDNN", "cpu_feature_guard")
    for mode in ("quiet", "verbose"):
        run = subprocess.run([sys.executable, "-c", script, mode], cwd=Path(__file__).resolve().parent.parent,
                             env=env, capture_output=True, text=True, timeout=600)
        assert run.returncode == 0 and run.stdout.strip() == "True", run.stderr
        if mode == "quiet":
            assert not any(n in run.stderr for n in noise), run.stderr
        else:  # the log exists here, so the quiet run really dropped something
            assert any(n in run.stderr for n in noise), run.stderr
