"""A saved image model checked against its card: its test metrics recomputed from the data, and
the test set sent as a user would upload it, through the app's own serving path (the card's
served figures and the task's one-click examples)."""

from __future__ import annotations

import json
from pathlib import Path

import keras
import numpy as np

from app.cards import Card
from app.errors import InvalidInput
from app.inference import classify_upload
from app.modelstore import Engines, load_entry
from app.tasks import TaskSpec
from training import export, fit
from training.data import load_image_data, resolve, to_png_bytes
from training.dataset import QUICK_TEST, QUICK_TRAIN, DataError, ImageData
from training.groups import fairness_breakdown
from training.photos import photo_set, recipe

PHOTO_SETS = {"fashion": "product_photos", "mnist": "digit_photos"}  # photo-like sets per recipe
EXAMPLES_DIR, EXAMPLES_INDEX = "examples", "examples.json"
EXAMPLES_RIGHT, EXAMPLES_WRONG = 7, 3


def evaluate_image_task(spec: TaskSpec, data_arg, models_dir: Path) -> dict:
    """Recompute the shipped model's test metrics from the data; compare with its card."""
    folder = Path(models_dir) / spec.slug
    card = Card.from_json(folder)
    model = keras.models.load_model(folder / "model.keras", compile=False)
    data = load_image_data(spec, data_arg)
    if card.training and card.training.quick:
        data = data.subset(QUICK_TRAIN, QUICK_TEST)  # the same slice the quick run tested on
    probs = fit.predict_probs(model, data.x_test)
    metrics = fit.classification_metrics(data.y_test, probs, len(spec.classes))
    return {"slug": spec.slug, "card_accuracy": card.metrics.test_accuracy,
            "measured_accuracy": metrics["test_accuracy"], "test_count": metrics["test_count"],
            "card_test_count": card.metrics.test_count,
            "difference": metrics["test_accuracy"] - card.metrics.test_accuracy}


def test_uploads(spec: TaskSpec, data_arg, data: ImageData):
    """(function index -> file bytes as a user would send test image `index`, description,
    file suffix): the stored JPEG bytes when the data set keeps them, else a PNG of the array."""
    path = resolve(spec, data_arg)
    if path.is_file() and path.suffix == ".npz":
        stored = np.load(path, allow_pickle=False)
        if "jpeg_test" in stored.files:
            buf, off = stored["jpeg_test"], stored["off_test"]
            return (lambda i: buf[off[i]: off[i + 1]].tobytes()), "stored JPEG bytes", ".jpg"
    return (lambda i: to_png_bytes(data.x_test[i])), "PNG of the test array", ".png"


def test_indices(data: ImageData, quick: bool) -> np.ndarray:
    """Positions of the evaluated test images: all, or the slice a --quick run tested on."""
    if not quick:
        return np.arange(len(data.y_test))
    n_train, n_test = len(data.y_train), len(data.y_test)
    positions = ImageData(np.arange(n_train), np.zeros(n_train), np.arange(n_test), data.y_test, "")
    return positions.subset(QUICK_TRAIN, QUICK_TEST).x_test


def served_predictions(entry, spec: TaskSpec, files) -> tuple[np.ndarray, int]:
    """Top class of each file through `app.inference.classify_upload` (the API's own function),
    -1 for a file the app refuses; and the number refused."""
    preds, refused = [], 0
    for data in files:
        try:
            preds.append(classify_upload(entry.predict, spec, data, k=1)[1]["top"][0]["index"])
        except InvalidInput:
            preds.append(-1)
            refused += 1
    return np.asarray(preds, dtype=np.int64), refused


def evaluate_served(spec: TaskSpec, data_arg, models_dir: Path, examples: bool = True) -> dict:
    """`measure_served`, then its figures on the card (and, with `examples`, the task's one-click
    examples written); returns the comparison with the card's array figure."""
    folder = Path(models_dir) / spec.slug
    measured = measure_served(spec, data_arg, models_dir)
    served, card = measured["served"], measured["card"]
    record_served(folder, served)
    if examples:
        write_examples(folder, *measured["examples"])
    photos = PHOTO_SETS.get(spec.preprocess)
    return {"slug": spec.slug, "card_accuracy": card.metrics.test_accuracy,
            "served_accuracy": served["correct"] / served["count"], "served_count": served["count"],
            "refused": served["refused"], "engine": served["engine"], "precision": served["precision"],
            **({photos: served[photos]["accuracy"]} if photos in served else {}),
            "difference": served["correct"] / served["count"] - card.metrics.test_accuracy}


def measure_served(spec: TaskSpec, data_arg, models_dir: Path, photos: bool = True) -> dict:
    """Every test image encoded as a user would send it, through the model store and the predict
    path the app serves (LiteRT, the card's int8/float32 choice), and the task's photo set unless
    `photos` is False. Writes nothing; returns {"served": the card's served block, "card",
    "examples": arguments of `write_examples`}."""
    folder = Path(models_dir) / spec.slug
    entry = load_entry(folder, spec, Engines())
    if not entry.available:
        raise DataError(f"{spec.slug}: the app cannot serve {folder} ({entry.error})")
    data = load_image_data(spec, data_arg)
    quick = bool(entry.card.training and entry.card.training.quick)
    index = test_indices(data, quick)
    upload, encoding, suffix = test_uploads(spec, data_arg, data)
    labels = data.y_test[index]
    preds, refused = served_predictions(entry, spec, (upload(int(i)) for i in index))
    served = {"count": int(len(index)), "correct": int((preds == labels).sum()), "refused": refused,
              "input": encoding, "engine": entry.engine, "precision": entry.precision,
              "model_sha256": export.file_sha256(folder / "model.keras"),
              "command": f"python -m training evaluate {spec.slug} --through-upload"}
    if len(index) == len(data.y_test):  # per-group figures where the data set records groups
        served.update(fairness_breakdown(data, preds))
    photo_key = PHOTO_SETS.get(spec.preprocess)
    if photo_key and photos and not quick:
        items = list(photo_set(data.x_test))
        photo_preds, photo_refused = served_predictions(entry, spec, (b for _, b in items))
        photo_labels = data.y_test[[i for i, _ in items]]
        served[photo_key] = {"accuracy": float((photo_preds == photo_labels).mean()), "count": len(items),
                          "refused": photo_refused, "recipe": recipe()}
    return {"served": served, "card": entry.card, "examples": (upload, index, labels, preds, suffix)}


def record_served(folder: Path, served: dict) -> None:
    """Put the served figures into the card's metrics (replacing earlier ones; the schema places
    them after test_count), leaving every other field as it was; written atomically."""
    card = Card.from_json(folder)
    card.metrics.record_served(served)
    card.write(folder)


def choose_examples(labels: np.ndarray, preds: np.ndarray, right: int = EXAMPLES_RIGHT,
                    wrong: int = EXAMPLES_WRONG) -> list[int]:
    """Positions of a fixed, varied set of test images: the first correctly served ones, taking
    the classes in turn, and the first wrongly served ones of different true classes, mixed."""
    classes = sorted(set(int(c) for c in labels))
    queues = {c: [int(i) for i in np.flatnonzero((labels == c) & (preds == labels))] for c in classes}
    chosen = []
    while len(chosen) < right and any(queues.values()):
        for c in classes:
            if queues[c] and len(chosen) < right:
                chosen.append(queues[c].pop(0))
    seen = set()
    for i in np.flatnonzero(preds != labels):
        if len(seen) < wrong and int(labels[i]) not in seen:
            seen.add(int(labels[i]))
            chosen.append(int(i))
    order = np.random.default_rng(0).permutation(len(chosen))
    return [chosen[k] for k in order]


def write_examples(folder: Path, upload, index: np.ndarray, labels: np.ndarray, preds: np.ndarray,
                   suffix: str) -> None:
    """models/<slug>/examples/: a few test files as a user would send them and an index with
    their true labels (the task page offers them as one-click examples); replaced atomically."""
    def write(tmp: Path) -> None:
        items = []
        for n, pos in enumerate(choose_examples(labels, preds), 1):
            name = f"{n:02d}{suffix}"
            (tmp / name).write_bytes(upload(int(index[pos])))
            items.append({"id": f"{n:02d}", "file": name, "label": int(labels[pos]), "test_index": int(index[pos])})
        (tmp / EXAMPLES_INDEX).write_text(json.dumps({"source": "test split", "examples": items}, indent=1),
                                          encoding="utf-8")

    fit.save_atomically(folder, EXAMPLES_DIR, write)
