"""Train and evaluate an image task: data, model, train, evaluate, save (read top to bottom)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from app.cards import Card, Export
from app.errors import InvalidInput
from app.inference import classify_upload
from app.modelstore import Engines, load_entry
from app.tasks import TaskSpec
from training import export, fit
from training.config import TrainConfig
from training.build import BASELINE_RECIPE, make_baseline, make_image_classifier
from training.data import load_image_data, resolve, to_png_bytes
from training.dataset import DataError, ImageData, class_imbalance
from training.photos import photo_set, recipe

QUICK_TRAIN, QUICK_TEST = 512, 256


def make_dataset(x, y, batch_size: int, spec: TaskSpec, seed: int, train: bool, weights=None, teach=None,
                 cutmix: float = 0.0):
    """tf.data pipeline; random shifts (and mirror images where the task allows) when training;
    (image, label, weight) elements when `weights` (one per image) are given (a weight stays
    with its image); `cutmix` > 0 pastes a box of another image of the batch into each training
    image and mixes the one-hot labels by area (Keras' CutMix, that factor); `teach(images,
    labels)` replaces each batch's labels with distillation targets computed on the images as
    the model will see them (after augmentation and CutMix)."""
    ds = tf.data.Dataset.from_tensor_slices((x, y) if weights is None else (x, y, weights.astype(np.float32)))
    if (spec.extra.get("label_smoothing") or teach or cutmix) and np.ndim(y) == 1:  # these need one-hot labels
        n = len(spec.classes)
        ds = ds.map(lambda a, b, *w: (a, tf.one_hot(tf.cast(b, tf.int32), n), *w))
    if train:
        ds = ds.shuffle(min(len(y), 20000), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size)
    if train:
        shift = float(spec.extra.get("augment", 0.0))
        aug = []
        if spec.extra.get("flip"):
            aug.append(keras.layers.RandomFlip("horizontal", seed=seed))
        if shift:
            aug.append(keras.layers.RandomTranslation(shift, shift, fill_mode="constant", seed=seed))
        jitter = float(spec.extra.get("jitter", 0.0))
        if jitter:
            aug.append(keras.layers.RandomBrightness(jitter, value_range=(0, 255), seed=seed))
            aug.append(keras.layers.RandomContrast(jitter, value_range=(0, 255), seed=seed))
        if aug:
            pipeline = keras.Sequential(aug)
            ds = ds.map(lambda a, b, *w: (pipeline(tf.cast(a, tf.float32), training=True), b, *w),
                        num_parallel_calls=tf.data.AUTOTUNE)
        if cutmix:
            mix = keras.layers.CutMix(factor=cutmix, seed=seed)

            def paste(a, b, *w):
                out = mix({"images": tf.cast(a, tf.float32), "labels": b}, training=True)
                return (out["images"], out["labels"], *w)

            ds = ds.map(paste, num_parallel_calls=tf.data.AUTOTUNE)
    if teach:
        ds = ds.map(lambda a, b, *w: (a, teach(tf.cast(a, tf.float32), b), *w), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def training_loss(spec: TaskSpec, soft: bool = False):
    """Cross-entropy, with label smoothing when the task asks for it (one-hot targets then, or
    the `soft` targets of distillation)."""
    smoothing = float(spec.extra.get("label_smoothing", 0.0))
    if smoothing or soft:
        return keras.losses.CategoricalCrossentropy(label_smoothing=smoothing)
    return "sparse_categorical_crossentropy"


def predict_probs(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for a whole array, in batches."""
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)


def train_baseline(spec: TaskSpec, train, val, test, epochs: int, seed: int, verbose: int) -> dict:
    """Train the lab's recipe (bugs fixed) in the same run and report its test accuracy."""
    keras.utils.set_random_seed(seed)
    model = make_baseline(spec)
    model.compile(keras.optimizers.Adam(1e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    t0 = time.perf_counter()
    model.fit(train[0].astype(np.float32), train[1], validation_data=(val[0].astype(np.float32), val[1]),
              epochs=epochs, batch_size=128, verbose=verbose)
    acc = float((predict_probs(model, test[0]).argmax(1) == test[1]).mean())
    return {"recipe": BASELINE_RECIPE, "epochs": epochs, "optimizer": "Adam(1e-3)",
            "params": int(model.count_params()), "test_accuracy": acc,
            "seconds": round(time.perf_counter() - t0, 1)}


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion correct/n."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def group_accuracy(y_true, pred, groups: np.ndarray, names: dict) -> dict:
    """Accuracy within each group (e.g. race or age band), with the group's size and the
    accuracy's 95% Wilson interval."""
    out = {}
    for g, name in names.items():
        mask = groups == g
        if mask.any():
            n, correct = int(mask.sum()), int((pred[mask] == y_true[mask]).sum())
            out[name] = {"n": n, "accuracy": correct / n, "ci95": list(wilson_interval(correct, n))}
    return out


def accuracy_gap(groups: dict, draws: int = 20000) -> dict:
    """The gap between the most and the least accurate group, with its 95% interval (Newcombe's
    hybrid score interval for a difference of two independent proportions), and the gap that a
    model equally accurate in every group (at the pooled accuracy) would exceed one time in twenty
    with groups of these sizes (`draws` binomial draws, a fixed seed): what chance alone shows."""
    best = max(groups, key=lambda k: groups[k]["accuracy"])
    worst = min(groups, key=lambda k: groups[k]["accuracy"])
    (p1, (l1, u1)), (p2, (l2, u2)) = ((groups[k]["accuracy"], groups[k]["ci95"]) for k in (best, worst))
    gap = p1 - p2
    n = np.array([g["n"] for g in groups.values()])
    pooled = sum(g["n"] * g["accuracy"] for g in groups.values()) / n.sum()
    chance = np.random.default_rng(0).binomial(n, pooled, size=(draws, len(n))) / n
    return {"most_accurate": best, "least_accurate": worst, "gap": gap,
            "ci95": [float(gap - np.hypot(p1 - l1, u2 - p2)), float(gap + np.hypot(u1 - p1, p2 - l2))],
            "equal_accuracy_p95": float(np.quantile(chance.max(1) - chance.min(1), 0.95))}


RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others", 255: "missing"}
AGE_BANDS = [(0, 12, "0-12"), (13, 19, "13-19"), (20, 29, "20-29"), (30, 44, "30-44"),
             (45, 59, "45-59"), (60, 200, "60+")]


def age_bands(age: np.ndarray) -> np.ndarray:
    """The index into AGE_BANDS of each age (-1 outside them)."""
    age = age.astype(int)
    band = np.full(len(age), -1)
    for i, (lo, hi, _) in enumerate(AGE_BANDS):
        band[(age >= lo) & (age <= hi)] = i
    return band


def fairness_breakdown(data: ImageData, pred: np.ndarray) -> dict:
    """Per-race and per-age-band accuracy where the data set records them (UTKFace)."""
    out = {}
    if "race" in data.test_meta:
        out["accuracy_by_race"] = group_accuracy(data.y_test, pred, data.test_meta["race"], RACES)
        out["race_gap"] = accuracy_gap({k: v for k, v in out["accuracy_by_race"].items() if k != "missing"})
    if "age" in data.test_meta:
        out["accuracy_by_age"] = group_accuracy(data.y_test, pred, age_bands(data.test_meta["age"]),
                                                dict(enumerate(n for _, _, n in AGE_BANDS)))
    return out


def balance_weights(groups: dict, keys: list[str], power: float = 0.5) -> tuple[np.ndarray, dict]:
    """A loss weight per training image from the groups the data set records (`groups`, e.g.
    race and age, ages taken in AGE_BANDS): the size of the image's cell (its combination of the
    `keys` groups, counted as at least 1% of the images, so that a handful of images is not weighted
    by the hundred) to the power -`power`, scaled to a mean of 1: images of rarer groups count more
    (power 1 gives every cell of 1% or more the same total weight). Returns the weights and the
    card's record of them."""
    missing = [k for k in keys if k not in groups]
    if missing:
        raise DataError(f"--balance {','.join(keys)}: this data set records no {', '.join(missing)} per "
                        f"training image (it records: {', '.join(sorted(groups)) or 'none'})")
    columns = [age_bands(groups[k]) if k == "age" else groups[k].astype(int) for k in keys]
    _, cell, size = np.unique(np.stack(columns, 1), axis=0, return_inverse=True, return_counts=True)
    weights = np.maximum(size[cell.reshape(-1)], len(cell) / 100) ** -power
    weights /= weights.mean()
    return weights, {"groups": keys, "power": power, "cells": len(size),
                     "weight_range": [round(float(weights.min()), 3), round(float(weights.max()), 3)]}


def load_finished(spec: TaskSpec, folder, option: str) -> dict:
    """A finished model of `spec`'s task (its folder, card and Keras model); `option` names the
    flag that asked for it in the error."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    try:
        card = Card.from_json(folder)
        model = keras.models.load_model(folder / "model.keras", compile=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{option} {folder}: expected a model folder with model.keras and "
                        f"card.json ({exc})") from exc
    if card.slug != spec.slug:
        raise DataError(f"{option} {folder}: that model is for task {card.slug!r}, not {spec.slug!r}")
    if card.training is None or card.metrics.test_accuracy is None:
        raise DataError(f"{option} {folder}: its card has no training record or test accuracy")
    return {"folder": folder, "card": card, "model": model}


def load_warm_start(spec: TaskSpec, folder) -> dict | None:
    """The finished model (and its card) a run continues from with --init-from, or None."""
    if not folder:
        return None
    start = load_finished(spec, folder, "--init-from")
    print(f"[{spec.slug}] starting from {start['folder']} (test accuracy {start['card'].metrics.test_accuracy:.4f} "
          f"after {start['card'].training.epochs_run} epochs)", flush=True)
    return start


def teacher_targets(spec: TaskSpec, folders: list[str], weight: float, seed: int, val, test,
                    mirror: bool = False) -> tuple:
    """Knowledge distillation from an ensemble of finished models of the task. Returns `teach`
    for `make_dataset`: each training batch's target becomes `weight` × the teachers' mean class
    probabilities on the batch as augmented (the view the student reads, so a shifted or
    mirrored image gets the teachers' reading of that view) + (1 - `weight`) × its one-hot label;
    and the card's record: each teacher's and the ensemble's validation and test accuracy on
    this run's split. With `mirror` (tasks that train on mirror images) each teacher reads every
    view and its mirror image and gives their mean: a stronger ensemble for the same teachers, at
    twice their cost per batch; the record's figures are then of that mean too."""
    if mirror and not spec.extra.get("flip"):
        raise DataError(f"{spec.slug}: --teacher-mirror needs a task that trains on mirror images")

    teachers = [load_finished(spec, f, "--teachers") for f in folders]
    for t in teachers:  # another seed's validation images were that teacher's training images
        if t["card"].training.seed != seed:
            raise DataError(f"--teachers {t['folder']}: trained with --seed {t['card'].training.seed}, this run "
                            f"uses {seed}; a teacher must share the run's training/validation split")
    record = {"weight": weight, "views": "augmented and mirrored" if mirror else "augmented", "teachers": []}
    mean = {}
    for t in teachers:
        probs = {name: (predict_probs(t["model"], x) + predict_probs(t["model"], x[:, :, ::-1])) / 2 if mirror
                 else predict_probs(t["model"], x) for name, x in (("val", val[0]), ("test", test[0]))}
        for name, p in probs.items():
            mean[name] = mean.get(name, 0) + p / len(teachers)
        record["teachers"].append({"folder": str(t["folder"]),
                                   "validation_accuracy": float((probs["val"].argmax(1) == val[1]).mean()),
                                   "test_accuracy": float((probs["test"].argmax(1) == test[1]).mean())})
    record["ensemble_validation_accuracy"] = float((mean["val"].argmax(1) == val[1]).mean())
    record["ensemble_test_accuracy"] = float((mean["test"].argmax(1) == test[1]).mean())
    print(f"[{spec.slug}] distilling {len(teachers)} teachers: ensemble validation accuracy "
          f"{record['ensemble_validation_accuracy']:.4f}", flush=True)
    models = [t["model"] for t in teachers]

    def read(model, images):
        if not mirror:
            return model(images, training=False)
        return (model(images, training=False) + model(tf.reverse(images, axis=[2]), training=False)) / 2

    def teach(images, onehot):
        probs = tf.add_n([read(m, images) for m in models]) / len(models)
        return weight * probs + (1 - weight) * tf.cast(onehot, probs.dtype)

    return teach, record


def whole_history(card: Card) -> dict:
    """Per-epoch curves across the continued runs and this one (for the training-curves plot)."""
    runs = [r.get("history") or {} for r in (card.warm_start.previous_runs if card.warm_start else [])]
    runs.append(card.history)
    keys = card.history.keys()
    return {k: [v for h in runs for v in h.get(k, [])] for k in keys}


def train_subset(data: ImageData, config: TrainConfig) -> ImageData:
    """The images a run trains and tests on: --quick's tiny slice, else `config.subset` training
    images (0: all) and `config.test_subset` test images (0: the whole test split)."""
    if config.quick:
        return data.subset(QUICK_TRAIN, QUICK_TEST)
    n_train, n_test = config.subset, config.test_subset
    if not (0 < n_train < len(data.y_train) or 0 < n_test < len(data.y_test)):
        return data
    return data.subset(min(n_train or len(data.y_train), len(data.y_train)),
                       min(n_test or len(data.y_test), len(data.y_test)))


def train_image_task(spec: TaskSpec, config: TrainConfig, models_dir: Path, *, slug: str | None = None,
                     callbacks: list | None = None, work_dir: Path | None = None) -> Path:
    """The whole run for one image task; returns the folder the model was saved to.

    The command line and the lab bench both call this: `slug` names the folder under
    `models_dir` (default: the task's slug), `callbacks` are extra Keras callbacks (progress,
    cancel), `work_dir` holds checkpoints and the --resume backup (default: runs/<slug>/)."""
    # Data --------------------------------------------------------------------------------
    data = train_subset(load_image_data(spec, config.data), config)
    epochs = 1 if config.quick else (config.epochs or spec.epochs)
    train, val = data.train_validation(config.seed)
    weights, balanced = (balance_weights(data.train_groups(config.seed), config.balance, config.balance_power)
                         if config.balance else (None, None))
    test = (data.x_test, data.y_test)
    batch = config.batch_size or spec.batch_size
    cutmix = float(config.cutmix if config.cutmix is not None else spec.extra.get("cutmix", 0.0))
    print(f"[{spec.slug}] data {data.source}: train {len(train[1])}, validation {len(val[1])}, "
          f"test {len(test[1])}", flush=True)

    # Baseline (the lab's recipe) ------------------------------------------------------------
    start = load_warm_start(spec, config.init_from)
    if config.baseline_epochs > 0:
        baseline = train_baseline(spec, train, val, test, 1 if config.quick else config.baseline_epochs,
                                  config.seed, config.verbose)
        print(f"[{spec.slug}] baseline test accuracy {baseline['test_accuracy']:.4f}", flush=True)
    else:  # the continued run's, on the same data
        baseline = start["card"].baseline.to_json() if start and start["card"].baseline else None

    teach, distilled = None, None
    if config.teacher_mirror and not config.teachers:
        raise DataError("--teacher-mirror changes how teachers read: give --teachers too")
    if config.teachers:  # soft training targets; validation labels one-hot to match the loss
        teach, distilled = teacher_targets(spec, config.teachers, config.distill_weight, config.seed, val, test,
                                           mirror=config.teacher_mirror)
        val = (val[0], np.eye(len(spec.classes))[val[1]])

    # Model ---------------------------------------------------------------------------------
    keras.utils.set_random_seed(config.seed)
    kw = json.loads(config.model_kwargs) if config.model_kwargs else dict(spec.extra.get("model", {}))
    architecture = config.architecture
    if start:
        kw = start["card"].model_kwargs or kw if not config.model_kwargs else kw
        architecture = architecture or start["card"].architecture
    model = make_image_classifier(spec, architecture, **kw)
    if start:
        model.set_weights(start["model"].get_weights())  # raises if the architectures differ
    steps = int(np.ceil(len(train[1]) / batch)) * epochs
    lr = config.learning_rate or spec.learning_rate
    schedule = keras.optimizers.schedules.CosineDecay(lr * 0.1, decay_steps=max(1, steps - steps // 20),
                                                      warmup_target=lr, warmup_steps=steps // 20,
                                                      alpha=0.01)
    optimizer = keras.optimizers.AdamW(schedule, weight_decay=1e-4, clipnorm=1.0)
    model.compile(optimizer, training_loss(spec, soft=distilled is not None), metrics=["accuracy"])
    if config.verbose:
        model.summary()

    # Train ---------------------------------------------------------------------------------
    standard, paths = fit.standard_callbacks(slug or spec.slug, config.resume, config.patience,
                                             "val_accuracy", "max", config.verbose, rdir=work_dir)
    # extra callbacks see each epoch before the backup marks it done (fit.standard_callbacks)
    all_callbacks = standard[:-1] + list(callbacks or []) + standard[-1:]
    average = fit.weight_average(spec, config.weight_average)
    if average:  # the averaged weights are validated, checkpointed and shown to the extra callbacks
        val_ds = make_dataset(*val, 512, spec, config.seed, False)
        swap_in, swap_out = fit.weight_average_callbacks(model, average, lambda m: {
            f"val_{k}": v for k, v in m.evaluate(val_ds, verbose=0, return_dict=True).items()})
        all_callbacks = [swap_in, *all_callbacks[:-1], swap_out, all_callbacks[-1]]
    history, run = fit.fit_best(model, make_dataset(*train, batch, spec, config.seed, True, weights, teach, cutmix),
                                make_dataset(*val, 512, spec, config.seed, False),
                                epochs, all_callbacks, config.verbose, paths)

    # Evaluate ------------------------------------------------------------------------------
    probs = predict_probs(model, test[0])
    metrics = fit.classification_metrics(test[1], probs, len(spec.classes))
    metrics.update(fairness_breakdown(data, probs.argmax(1)))
    print(f"[{spec.slug}] test accuracy {metrics['test_accuracy']:.4f}", flush=True)

    card = {
        **fit.card_header(spec, model, architecture or spec.architecture, kw),
        "input": {"shape": list(spec.input_shape), "colour": spec.colour, "dtype": "uint8 (0-255)",
                  "preprocess": spec.preprocess, "resize": spec.resize,
                  "aspect_ratio_kept": spec.resize == "crop" or spec.preprocess != "plain",
                  "time_steps": spec.input_shape[0], "features_per_step": spec.input_shape[1] * spec.input_shape[2]},
        "optimizer": fit.optimizer_record(batch, average, peak_learning_rate=lr,
                                          schedule="linear warm-up then cosine decay"),
        "training": {**run, "seed": config.seed, "quick": bool(config.quick),
                     "subset": config.subset,
                     "augmentation": {**{k: spec.extra[k] for k in ("augment", "flip", "jitter", "label_smoothing")
                                         if k in spec.extra}, **({"cutmix": cutmix} if cutmix else {})},
                     "balance": balanced,
                     "distillation": distilled,
                     "early_stopping": {"monitor": "val_accuracy", "patience": config.patience}},
        "data": {"source": spec.data_source or data.source, "path": data.source, "licence": spec.licence,
                 "counts": {"train": len(train[1]), "validation": len(val[1]), "test": len(test[1])},
                 "class_counts_train": np.bincount(data.y_train, minlength=len(spec.classes)).tolist(),
                 "class_imbalance": class_imbalance(data.y_train, data.y_test, spec.class_names),
                 "split": data.split or None,
                 "skipped_files": data.skipped},
        "metrics": metrics,
        "history": history,
        "baseline": baseline,
        "versions": fit.library_versions(),
        "git_commit": fit.git_commit(),
        "command": fit.command_line(),
    }
    if start:
        card["warm_start"] = fit.warm_start_record(start, card["training"]["epochs_run"])
    card |= {key: spec.extra[key] for key in ("intended_use", "limitations") if key in spec.extra}
    card = Card.from_json({**card, **config.card_extra})  # CardError now, not after saving

    def write(folder: Path) -> None:
        fit.save_without_optimizer(model, folder / "model.keras")
        # The .tflite the web app serves, checked against this model, lands in the same atomic save;
        # a failed export must not cost the trained model (the app then serves it with Keras).
        try:
            card.export = Export.parse(export.export_model(
                model, spec, folder, export.file_sha256(folder / "model.keras"), *export.sample_images(data.x_test),
                test=(data.x_test, data.y_test), int8=config.int8))
        except Exception as exc:  # noqa: BLE001 - converter errors have no common type
            card.export = Export(error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
            print(f"[{spec.slug}] warning: model.tflite not written ({card.export.error}); "
                  f"the app will serve this model with Keras. Retry: python -m training export {spec.slug}",
                  flush=True)
        fit.write_card(folder, card)
        fit.plot_curves(whole_history(card), folder / "training_curves.png", spec.title_en)
        fit.plot_confusion(metrics["confusion_matrix"], spec.class_names, folder / "confusion_matrix.png",
                           f"{spec.title_en}: test accuracy {metrics['test_accuracy']:.2%}")

    out = fit.save_atomically(models_dir, slug or spec.slug, write)
    fit.finish_run(paths)
    print(f"[{spec.slug}] saved {out}", flush=True)
    return out


def evaluate_image_task(spec: TaskSpec, data_arg, models_dir: Path) -> dict:
    """Recompute the shipped model's test metrics from the data; compare with its card."""
    folder = Path(models_dir) / spec.slug
    card = Card.from_json(folder)
    model = keras.models.load_model(folder / "model.keras", compile=False)
    data = load_image_data(spec, data_arg)
    if card.training and card.training.quick:
        data = data.subset(QUICK_TRAIN, QUICK_TEST)  # the same slice the quick run tested on
    probs = predict_probs(model, data.x_test)
    metrics = fit.classification_metrics(data.y_test, probs, len(spec.classes))
    return {"slug": spec.slug, "card_accuracy": card.metrics.test_accuracy,
            "measured_accuracy": metrics["test_accuracy"], "test_count": metrics["test_count"],
            "card_test_count": card.metrics.test_count,
            "difference": metrics["test_accuracy"] - card.metrics.test_accuracy}


# Served accuracy: the test set as a user would upload it, through the app's own path ------------
PHOTO_SETS = {"fashion": "product_photos", "mnist": "digit_photos"}  # photo-like sets per recipe
EXAMPLES_DIR, EXAMPLES_INDEX = "examples", "examples.json"
EXAMPLES_RIGHT, EXAMPLES_WRONG = 7, 3


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
