"""Fit, evaluate, write the card and plots, save atomically.

A run writes everything into a hidden temporary folder beside `models/<slug>/` and swaps it in
only when it is complete, so a run that fails or is killed never damages the model in place.
Checkpoints, the Keras backup used by --resume, and logs live in `runs/<slug>/` (git-ignored).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from app.cards import Card
from app.config import ROOT
from app.tasks import TEXT, TaskSpec
from training.dataset import DataError

RUNS_DIR = Path(os.environ.get("LSTMLAB_RUNS") or ROOT / "runs")  # tests point this at tmp_path


# ----------------------------------------------------------------------------- atomic save
def recover_interrupted_save(models_dir: Path, slug: str) -> None:
    """Finish or undo a swap that a kill interrupted between its two renames."""
    final = Path(models_dir) / slug
    for old in sorted(Path(models_dir).glob(f".{slug}.old-*")):
        if not final.exists():
            old.rename(final)
        else:
            shutil.rmtree(old, ignore_errors=True)


def save_atomically(models_dir: Path, slug: str, write) -> Path:
    """Call `write(tmp_dir)` to fill a fresh folder, then swap it in as `models_dir/slug`.

    If `write` raises (a crash, a full disk) the temporary folder is removed and the model in
    place is untouched. The swap is two renames on one file system; `recover_interrupted_save`
    repairs the tiny window between them.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(models_dir, slug)
    tmp = models_dir / f".{slug}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():  # make the bytes durable before the rename publishes them
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    final = models_dir / slug
    old = models_dir / f".{slug}.old-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


# ----------------------------------------------------------------------------- card helpers
def layer_table(model) -> list[dict]:
    """The rows `model.summary()` prints: layer name, type, output shape, parameters."""
    rows = []
    for layer in model.layers:
        try:
            shape = [None if d is None else int(d) for d in layer.output.shape]
        except (AttributeError, ValueError):
            shape = None
        rows.append({"name": layer.name, "type": layer.__class__.__name__,
                     "output_shape": shape, "params": int(layer.count_params())})
    return rows


def library_versions() -> dict:
    """Versions of the libraries that shaped the model."""
    import keras  # heavy: the CLI imports this module; TensorFlow loads only to train
    import PIL
    import tensorflow as tf

    return {"python": platform.python_version(), "keras": keras.__version__,
            "tensorflow": tf.__version__, "numpy": np.__version__, "pillow": PIL.__version__}


def git_commit() -> str:
    """The code version the model was trained from ('+dirty' when uncommitted changes exist)."""
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "app", "training"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return (sha or "unknown") + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def predict_probs(model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Class probabilities for a whole array, in batches."""
    return model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)


def classification_metrics(y_true: np.ndarray, probs: np.ndarray, n_classes: int) -> dict:
    """Accuracy, top-5 accuracy, per-class accuracy and the confusion matrix."""
    y_true = np.asarray(y_true).astype(np.int64)
    pred = probs.argmax(axis=1)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(confusion, (y_true, pred), 1)
    per_class = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    k = min(5, n_classes)
    top_k = np.argsort(-probs, axis=1)[:, :k]
    return {
        "test_accuracy": float((pred == y_true).mean()),
        "test_top5_accuracy": float((top_k == y_true[:, None]).any(axis=1).mean()),
        "test_count": int(len(y_true)),
        "per_class_accuracy": [float(a) for a in per_class],
        "confusion_matrix": confusion.tolist(),
    }


def read_history(csv_path: Path) -> dict:
    """Per-epoch metrics from the CSVLogger file (complete across --resume runs)."""
    import pandas as pd  # heavy: pandas loads only to write a history

    if not csv_path.is_file():
        return {}
    df = pd.read_csv(csv_path).drop_duplicates("epoch", keep="last").sort_values("epoch")
    return {c: [float(v) for v in df[c]] for c in df.columns if c != "epoch"}


def plot_curves(history: dict, out: Path, title: str) -> None:
    """training_curves.png: loss and the main metric, train against validation."""
    from matplotlib.figure import Figure  # no pyplot: no GUI backend, no global figure list

    metric = "accuracy" if "accuracy" in history else next(
        (k for k in history if not k.startswith(("val_", "loss", "learning_rate"))), None)
    fig = Figure(figsize=(10, 3.6))
    axes = fig.subplots(1, 2 if metric else 1, squeeze=False)
    for ax, key in zip(axes[0], ["loss", metric]):
        if not key or key not in history:
            continue
        epochs = np.arange(1, len(history[key]) + 1)
        ax.plot(epochs, history[key], "o-", label="train")
        if f"val_{key}" in history:
            ax.plot(epochs, history[f"val_{key}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def plot_confusion(confusion: list[list[int]], names: list[str], out: Path, title: str) -> None:
    """confusion_matrix.png with counts in each cell."""
    from matplotlib.figure import Figure  # heavy: matplotlib loads only to draw the figure

    cm = np.asarray(confusion)
    n = len(names)
    fig = Figure(figsize=(1.2 + 0.55 * n, 1.0 + 0.5 * n))
    ax = fig.subplots()
    ax.imshow(cm, cmap="Blues")
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    thresh = cm.max() / 2 if cm.size else 0
    for i in range(n):
        for j in range(n):
            ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > thresh else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=90)


def card_header(spec: TaskSpec, model, architecture: str, model_kwargs: dict) -> dict:
    """The fields every trained model's card opens with: its task, when, and the model's layers."""
    return {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(),
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "architecture": architecture, "model_kwargs": model_kwargs, "layers": layer_table(model),
            "params_total": int(model.count_params())}


def optimizer_record(batch: int, average: float, **schedule) -> dict:
    """The card's optimizer block: AdamW (weight decay 1e-4, clip norm 1.0) with `schedule`, the
    batch size, and the weight average (EMA momentum) when there is one."""
    return {"name": "AdamW", **schedule, "weight_decay": 1e-4, "clipnorm": 1.0, "batch_size": batch,
            "weight_average": ({"kind": "exponential moving average of the weights, validated and checkpointed "
                                        "in place of the raw weights", "momentum": average} if average else None)}


def warm_start_record(start: dict, epochs_now: int) -> dict:
    """The card's warm_start block for a run continuing `start` (--init-from): every earlier run,
    enough to retrace every epoch (a text run's also its model, text and perplexities)."""
    prev: Card = start["card"]
    text, m, t = prev.kind == TEXT, prev.metrics, prev.training
    run = {"created": prev.created, "git_commit": prev.git_commit, "command": prev.command, "optimizer": prev.optimizer,
           **({"model_kwargs": prev.model_kwargs, "trained_on": t.extra.get("trained_on")} if text else {}),
           "epochs_run": t.epochs_run, "seconds_total": t.seconds_total,
           **({"validation_perplexity": m.validation_perplexity, "test_perplexity": m.test_perplexity} if text else {}),
           "test_accuracy": m.test_accuracy, "history": prev.history}
    earlier = [*(prev.warm_start.previous_runs if prev.warm_start else []), run]
    return {"from": str(start["folder"]), "previous_runs": earlier,
            "epochs_total": sum(r["epochs_run"] for r in earlier) + epochs_now}


def write_card(folder: Path, card: dict | Card) -> Card:
    """folder/card.json through the card schema (CardError, and nothing written, when a field is
    missing or of the wrong type), written atomically; returns the card."""
    card = card if isinstance(card, Card) else Card.from_json(card)
    card.write(folder)
    return card


def command_line() -> str:
    """The command that produced this run, for the card's 'reproduce' line."""
    return "python -m training " + " ".join(sys.argv[1:])


def epoch_timer():
    """A Keras callback that records each epoch's seconds in its `seconds` list and the epoch's logs."""
    import keras  # heavy: Keras loads only to train

    class EpochTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._t)
            if logs is not None:
                logs["seconds"] = self.seconds[-1]

    return EpochTimer()


def standard_callbacks(slug: str, resume: bool, patience: int, monitor: str, mode: str, verbose: int,
                       rdir: Path | None = None):
    """Backup for --resume, best-weights checkpoint, early stopping, CSV history, timer (files in
    `rdir`, default runs/<slug>/: never committed)."""
    import keras  # heavy: Keras loads only to train

    rdir = Path(rdir) if rdir else RUNS_DIR / slug
    rdir.mkdir(parents=True, exist_ok=True)
    lock = hold_run_folder(rdir)
    backup = rdir / "backup"
    history_csv = rdir / "history.csv"
    best = rdir / "best.weights.h5"
    if not resume:
        shutil.rmtree(backup, ignore_errors=True)
        for f in (history_csv, best):
            f.unlink(missing_ok=True)
    timer = epoch_timer()
    # The backup goes last: it marks an epoch as done, so the epoch's history row and best
    # checkpoint must already be on disk when a kill lands just after it.
    callbacks = [
        timer,
        keras.callbacks.CSVLogger(str(history_csv), append=True),
        keras.callbacks.ModelCheckpoint(str(best), monitor=monitor, mode=mode, save_best_only=True,
                                        save_weights_only=True, verbose=0),
        keras.callbacks.EarlyStopping(monitor=monitor, mode=mode, patience=patience, verbose=verbose),
        keras.callbacks.BackupAndRestore(str(backup), save_freq="epoch", delete_checkpoint=False),
    ]
    return callbacks, {"backup": backup, "history_csv": history_csv, "best": best, "timer": timer, "lock": lock}


def hold_run_folder(rdir: Path):
    """An exclusive lock on a run's folder, held by the returned open file until `finish_run`
    (or the process's end): a second run into the same folder is refused before it can delete
    the first one's checkpoints and history."""
    fh = open(rdir / ".lock", "a+", encoding="utf-8")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise DataError(f"{rdir} is in use by another training run (process {holder}); wait for it to end, "
                        f"or give this run its own folder with LSTMLAB_RUNS=<folder>") from None
    fh.truncate(0)
    fh.write(str(os.getpid()))
    fh.flush()
    return fh


def fit_best(model, train, validation, epochs: int, callbacks: list, verbose: int, paths: dict,
             digits: int = 1) -> tuple[dict, dict]:
    """`model.fit`, then the best checkpoint's weights loaded (`paths` of `standard_callbacks`);
    returns the history across --resume runs and the card's record of the epochs and their seconds."""
    t0 = time.perf_counter()
    model.fit(train, validation_data=validation, epochs=epochs, callbacks=callbacks, verbose=verbose)
    seconds_total = time.perf_counter() - t0
    if paths["best"].is_file():
        model.load_weights(paths["best"])
    history = read_history(paths["history_csv"])
    seconds = history.pop("seconds", paths["timer"].seconds)
    return history, {"epochs_requested": epochs, "epochs_run": len(history.get("loss", [])),
                     "seconds_per_epoch": [round(s, digits) for s in seconds], "seconds_total": round(seconds_total, 1)}


def weight_average(spec: TaskSpec, momentum: float | None) -> float:
    """The momentum of the run's weight average: `momentum` (--weight-average), else the task's (0: none)."""
    return float(momentum if momentum is not None else spec.extra.get("weight_average", 0.0))


def weight_average_callbacks(model, momentum: float, validate) -> tuple:
    """Two Keras callbacks keeping an exponential moving average of the trainable weights
    (Polyak averaging): after every batch avg = m·avg + (1-m)·w, starting from the first
    batch's weights.

    At each epoch's end the first (put it before the checkpoint, early-stopping and LR
    callbacks) swaps the averaged weights in and replaces the logs' entries by `validate(model)`
    (a dict such as {"val_loss": ...}), keeping each replaced figure as <name>_raw, so the best
    checkpoint is an averaged model chosen on validation; the second (put it after them) swaps
    the raw weights back for the next epoch. The average restarts from the current weights on
    --resume.
    """
    import keras  # heavy: Keras loads only to train

    weights = model.trainable_weights
    state = {"avg": None, "raw": None}

    class SwapIn(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            now = [keras.ops.convert_to_numpy(w) for w in weights]
            if state["avg"] is None:
                state["avg"] = now
            else:
                for a, w in zip(state["avg"], now):
                    a *= momentum
                    a += (1.0 - momentum) * w

        def on_epoch_end(self, epoch, logs=None):
            if state["avg"] is None or logs is None:
                return
            state["raw"] = [keras.ops.convert_to_numpy(w) for w in weights]
            for w, a in zip(weights, state["avg"]):
                w.assign(a)
            for name, value in validate(model).items():
                logs[f"{name}_raw"] = logs.get(name)
                logs[name] = value

    class SwapOut(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if state["raw"] is not None:
                for w, r in zip(weights, state["raw"]):
                    w.assign(r)
                state["raw"] = None

    return SwapIn(), SwapOut()


def save_without_optimizer(model, path: Path) -> None:
    """Save an uncompiled copy: the optimizer's moment estimates would triple the file's size
    and serving never needs them (resuming uses the runs/ backup instead). clone_model and
    model_from_json both carry the compile state over in Keras 3; from_config does not."""
    clean = type(model).from_config(model.get_config())
    clean.set_weights(model.get_weights())
    clean.save(path)


def finish_run(paths: dict) -> None:
    """After a complete, saved run the backup is no longer needed (a new run starts fresh); the
    run's folder is released."""
    shutil.rmtree(paths["backup"], ignore_errors=True)
    paths["lock"].close()
