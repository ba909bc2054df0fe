"""Train an image task, read top to bottom: data, baseline, model, train, evaluate, save. The parts
live beside it: the tf.data pipeline (pipeline.py), group weights and figures (groups.py),
distillation (distill.py), finished models reused (finished.py), served-path checks (served.py)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import keras
import numpy as np

from app.cards import Card, Export
from app.tasks import TaskSpec
from training import export, fit
from training.build import BASELINE_RECIPE, make_baseline, make_image_classifier
from training.config import TrainConfig
from training.data import load_image_data
from training.dataset import QUICK_TEST, QUICK_TRAIN, ImageData, class_imbalance
from training.distill import distillation
from training.finished import load_warm_start
from training.fit import predict_probs
from training.groups import balance_weights, fairness_breakdown
from training.pipeline import make_dataset, training_loss


def train_image_task(spec: TaskSpec, config: TrainConfig, models_dir: Path, *, slug: str | None = None,
                     callbacks: list | None = None, work_dir: Path | None = None) -> Path:
    """The whole run for one image task; returns the folder the model was saved to.

    The command line and the lab bench both call this: `slug` names the folder under
    `models_dir` (default: the task's slug), `callbacks` are extra Keras callbacks (progress,
    cancel), `work_dir` holds checkpoints and the --resume backup (default: runs/<slug>/)."""
    # Data: the run's images, its seeded training/validation split, any group loss weights
    data = train_subset(load_image_data(spec, config.data), config)
    train, val = data.train_validation(config.seed)
    test = (data.x_test, data.y_test)
    weights, balanced = (balance_weights(data.train_groups(config.seed), config.balance, config.balance_power)
                         if config.balance else (None, None))
    print(f"[{spec.slug}] data {data.source}: train {len(train[1])}, validation {len(val[1])}, "
          f"test {len(test[1])}", flush=True)

    # Baseline: the lab's recipe on the same split (or the continued run's record of it)
    start = load_warm_start(spec, config.init_from)
    baseline = baseline_record(spec, config, train, val, test, start)

    # Distillation: the teachers' soft targets; validation labels one-hot to match the loss
    teach, distilled = distillation(spec, config, val, test)
    if distilled is not None:
        val = (val[0], np.eye(len(spec.classes))[val[1]])

    # Model: the task's classifier (from --init-from's weights), AdamW with warm-up and cosine decay
    epochs = 1 if config.quick else (config.epochs or spec.epochs)
    batch = config.batch_size or spec.batch_size
    lr = config.learning_rate or spec.learning_rate
    model, architecture, kw = make_model(spec, config, start)
    model.compile(make_optimizer(lr, int(np.ceil(len(train[1]) / batch)) * epochs),
                  training_loss(spec, soft=distilled is not None), metrics=["accuracy"])
    if config.verbose:
        model.summary()

    # Train: the best epoch by validation accuracy is kept (its averaged weights where asked)
    cutmix = float(config.cutmix if config.cutmix is not None else spec.extra.get("cutmix", 0.0))
    all_callbacks, average, paths = run_callbacks(model, spec, config, val, slug, callbacks, work_dir)
    history, run = fit.fit_best(model, make_dataset(*train, batch, spec, config.seed, True, weights, teach, cutmix),
                                make_dataset(*val, 512, spec, config.seed, False),
                                epochs, all_callbacks, config.verbose, paths)

    # Evaluate: test metrics, and per group where the data set records groups
    probs = predict_probs(model, test[0])
    metrics = fit.classification_metrics(test[1], probs, len(spec.classes))
    metrics.update(fairness_breakdown(data, probs.argmax(1)))
    print(f"[{spec.slug}] test accuracy {metrics['test_accuracy']:.4f}", flush=True)

    # Save: the card (checked before saving), then model, .tflite, card and plots in one atomic save
    card = {
        **fit.card_header(spec, model, architecture or spec.architecture, kw),
        "input": input_record(spec),
        "optimizer": fit.optimizer_record(batch, average, peak_learning_rate=lr,
                                          schedule="linear warm-up then cosine decay"),
        "training": {**run, **training_record(spec, config, cutmix, balanced, distilled)},
        "data": data_record(spec, data, train, val, test),
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
    out = fit.save_atomically(models_dir, slug or spec.slug,
                              lambda folder: write_model(folder, model, card, metrics, spec, data, config.int8))
    fit.finish_run(paths)
    print(f"[{spec.slug}] saved {out}", flush=True)
    return out


# The run's steps, in the order it takes them ----------------------------------------------------
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


def baseline_record(spec: TaskSpec, config: TrainConfig, train, val, test, start: dict | None) -> dict | None:
    """`train_baseline` for --baseline-epochs N > 0, else the continued run's baseline (or None)."""
    if config.baseline_epochs > 0:
        baseline = train_baseline(spec, train, val, test, 1 if config.quick else config.baseline_epochs,
                                  config.seed, config.verbose)
        print(f"[{spec.slug}] baseline test accuracy {baseline['test_accuracy']:.4f}", flush=True)
        return baseline
    return start["card"].baseline.to_json() if start and start["card"].baseline else None


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


def make_model(spec: TaskSpec, config: TrainConfig, start: dict | None) -> tuple:
    """(model, architecture, model kwargs): the run's classifier, seeded; a continued run keeps the
    finished model's architecture and kwargs (unless given) and starts from its weights."""
    keras.utils.set_random_seed(config.seed)
    kw = json.loads(config.model_kwargs) if config.model_kwargs else dict(spec.extra.get("model", {}))
    architecture = config.architecture
    if start:
        kw = start["card"].model_kwargs or kw if not config.model_kwargs else kw
        architecture = architecture or start["card"].architecture
    model = make_image_classifier(spec, architecture, **kw)
    if start:
        model.set_weights(start["model"].get_weights())  # raises if the architectures differ
    return model, architecture, kw


def make_optimizer(lr: float, steps: int):
    """AdamW over `steps` steps: a linear warm-up to `lr` over the first twentieth, then cosine decay."""
    schedule = keras.optimizers.schedules.CosineDecay(lr * 0.1, decay_steps=max(1, steps - steps // 20),
                                                      warmup_target=lr, warmup_steps=steps // 20,
                                                      alpha=0.01)
    return keras.optimizers.AdamW(schedule, weight_decay=1e-4, clipnorm=1.0)


def run_callbacks(model, spec: TaskSpec, config: TrainConfig, val, slug: str | None, callbacks: list | None,
                  work_dir: Path | None) -> tuple:
    """(callbacks, weight-average momentum, run paths): early stopping, checkpoints and the
    --resume backup, the caller's `callbacks`, and the weight average's swaps where the task asks."""
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
    return all_callbacks, average, paths


def input_record(spec: TaskSpec) -> dict:
    """The card's input block: what the model reads and how an upload becomes that."""
    return {"shape": list(spec.input_shape), "colour": spec.colour, "dtype": "uint8 (0-255)",
            "preprocess": spec.preprocess, "resize": spec.resize,
            "aspect_ratio_kept": spec.resize == "crop" or spec.preprocess != "plain",
            "time_steps": spec.input_shape[0], "features_per_step": spec.input_shape[1] * spec.input_shape[2]}


def training_record(spec: TaskSpec, config: TrainConfig, cutmix: float, balanced: dict | None,
                    distilled: dict | None) -> dict:
    """The card's training block after the fit's own record: seed, slice, augmentation, balance,
    distillation and early stopping."""
    return {"seed": config.seed, "quick": bool(config.quick),
            "subset": config.subset,
            "augmentation": {**{k: spec.extra[k] for k in ("augment", "flip", "jitter", "label_smoothing")
                                if k in spec.extra}, **({"cutmix": cutmix} if cutmix else {})},
            "balance": balanced,
            "distillation": distilled,
            "early_stopping": {"monitor": "val_accuracy", "patience": config.patience}}


def data_record(spec: TaskSpec, data: ImageData, train, val, test) -> dict:
    """The card's data block: source, licence, counts, class balance, split and skipped files."""
    return {"source": spec.data_source or data.source, "path": data.source, "licence": spec.licence,
            "counts": {"train": len(train[1]), "validation": len(val[1]), "test": len(test[1])},
            "class_counts_train": np.bincount(data.y_train, minlength=len(spec.classes)).tolist(),
            "class_imbalance": class_imbalance(data.y_train, data.y_test, spec.class_names),
            "split": data.split or None,
            "skipped_files": data.skipped}


def write_model(folder: Path, model, card: Card, metrics: dict, spec: TaskSpec, data: ImageData,
                int8: bool) -> None:
    """Write the model, its checked .tflite, the card and the plots into `folder` (the atomic save's)."""
    fit.save_without_optimizer(model, folder / "model.keras")
    # The .tflite the web app serves, checked against this model, lands in the same atomic save;
    # a failed export must not cost the trained model (the app then serves it with Keras).
    try:
        card.export = Export.parse(export.export_model(
            model, spec, folder, export.file_sha256(folder / "model.keras"), *export.sample_images(data.x_test),
            test=(data.x_test, data.y_test), int8=int8))
    except Exception as exc:  # noqa: BLE001 - converter errors have no common type
        card.export = Export(error=f"{exc.__class__.__name__}: {str(exc)[:300]}")
        print(f"[{spec.slug}] warning: model.tflite not written ({card.export.error}); "
              f"the app will serve this model with Keras. Retry: python -m training export {spec.slug}",
              flush=True)
    fit.write_card(folder, card)
    fit.plot_curves(whole_history(card), folder / "training_curves.png", spec.title_en)
    fit.plot_confusion(metrics["confusion_matrix"], spec.class_names, folder / "confusion_matrix.png",
                       f"{spec.title_en}: test accuracy {metrics['test_accuracy']:.2%}")


def whole_history(card: Card) -> dict:
    """Per-epoch curves across the continued runs and this one (for the training-curves plot)."""
    runs = [r.get("history") or {} for r in (card.warm_start.previous_runs if card.warm_start else [])]
    runs.append(card.history)
    keys = card.history.keys()
    return {k: [v for h in runs for v in h.get(k, [])] for k in keys}
