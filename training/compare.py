"""`python -m training compare-rnn [--quick]`: a SimpleRNN and an LSTM of the same size trained
alike on the adding problem and on MNIST rows, with the gradient reaching each time step: why
an LSTM, measured. Results in models/compare_rnn/.
Details: docs/DESIGN.md, "RNN against LSTM (training/compare.py)"."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from app.tasks import MNIST
from training import fit
from training.data import load_image_data

OUT_NAME = "compare_rnn"
RESULTS = "results.json"
PLOT = "comparison.png"
KINDS = ("simple_rnn", "lstm")
COLOURS = {"simple_rnn": "#d95f02", "lstm": "#1b5e9e"}  # the same as the page's (static/css/lstm.css)
ADD_TOLERANCE = 0.04
GRAD_BATCH = 256
# The learning rate is high enough for the LSTM to leave the adding problem's plateau (MSE ≈ 1/6,
# always answering the mean) within the epoch budget; lower rates left it stuck there.
FULL = {"units": 64, "add_steps": 100, "add_train": 10000, "add_test": 1000, "add_epochs": 20,
        "mnist_train": 10000, "mnist_test": 2000, "mnist_epochs": 5, "batch_size": 64,
        "learning_rate": 5e-3, "clipnorm": 1.0}
QUICK = {**FULL, "units": 8, "add_steps": 20, "add_train": 256, "add_test": 128, "add_epochs": 1,
         "mnist_train": 256, "mnist_test": 128, "mnist_epochs": 1, "batch_size": 64}


# ----------------------------------------------------------------------------- data
def adding_problem(n: int, steps: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """n sequences (steps, 2): value in [0, 1] and marker; target: the sum of the marked values."""
    values = rng.random((n, steps)).astype(np.float32)
    markers = np.zeros((n, steps), np.float32)
    first = rng.integers(0, max(1, steps // 10), n)
    second = rng.integers(steps // 2, steps, n)
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    x = np.stack([values, markers], axis=-1)
    y = (values * markers).sum(axis=1, keepdims=True)
    return x, y


def mnist_rows(data: str | None, n_train: int, n_test: int):
    """MNIST as sequences of 28 rows of 28 pixels in [0, 1] (a subset)."""
    d = load_image_data(MNIST, data).subset(n_train, n_test)
    h = MNIST.image_size[0]

    def rows(x):
        return (x.reshape(len(x), h, -1) / 255.0).astype(np.float32)

    return rows(d.x_train), d.y_train.astype(np.int64), rows(d.x_test), d.y_test.astype(np.int64), d.source


# ----------------------------------------------------------------------------- models
def make_recurrent(kind: str, steps: int, features: int, units: int, outputs: int):
    """Input → SimpleRNN or LSTM (`units`) → Dense: the only difference is the recurrent cell."""
    import keras  # heavy: the CLI imports this module for its parser; Keras loads only to run

    layer = {"simple_rnn": keras.layers.SimpleRNN, "lstm": keras.layers.LSTM}[kind]
    inputs = keras.Input((steps, features), name="sequence")
    x = layer(units, name=kind)(inputs)
    activation = "softmax" if outputs > 1 else None
    return keras.Model(inputs, keras.layers.Dense(outputs, activation=activation, name="out")(x), name=kind)


def close_enough(y_true, y_pred):
    """Adding problem accuracy: the share of answers within ADD_TOLERANCE."""
    from keras import ops  # heavy: Keras loads only when the comparison runs

    return ops.mean(ops.cast(ops.abs(y_true - y_pred) < ADD_TOLERANCE, "float32"))


def input_gradient_norms(model, loss_fn, x: np.ndarray, y: np.ndarray) -> list[float]:
    """Mean over the batch of ‖∂L/∂x_t‖ for every time step t (L: the loss of each sample)."""
    import tensorflow as tf  # heavy: TensorFlow loads only when the comparison runs

    x = tf.convert_to_tensor(x)
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(loss_fn(y, model(x, training=False)))  # sum: per-sample gradients
    grad = tape.gradient(loss, x).numpy()
    return [float(v) for v in np.linalg.norm(grad, axis=-1).mean(axis=0)]


def train_pair(name: str, x_train, y_train, x_test, y_test, outputs: int, cfg: dict, seed: int,
               verbose: int) -> dict:
    """Train a SimpleRNN and an LSTM the same way; curves, test metrics and gradient norms."""
    import keras  # heavy: Keras loads only when the comparison runs

    regression = outputs == 1
    loss_fn = keras.losses.MeanSquaredError(reduction=None) if regression else \
        keras.losses.SparseCategoricalCrossentropy(reduction=None)
    metric = close_enough if regression else "accuracy"
    gx, gy = x_test[:GRAD_BATCH], y_test[:GRAD_BATCH]
    models = {}
    for kind in KINDS:
        keras.utils.set_random_seed(seed)  # same initial randomness and batch order for both
        model = make_recurrent(kind, x_train.shape[1], x_train.shape[2], cfg["units"], outputs)
        model.compile(optimizer=keras.optimizers.Adam(cfg["learning_rate"], clipnorm=cfg["clipnorm"]),
                      loss="mse" if regression else "sparse_categorical_crossentropy", metrics=[metric],
                      jit_compile=False)
        grads = [input_gradient_norms(model, loss_fn, gx, gy)]
        record = keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs, m=model: grads.append(input_gradient_norms(m, loss_fn, gx, gy)))
        t0 = time.perf_counter()
        trained = model.fit(x_train, y_train, validation_data=(x_test, y_test), epochs=cfg[f"{name}_epochs"],
                            batch_size=cfg["batch_size"], callbacks=[record], verbose=verbose)
        seconds = time.perf_counter() - t0
        test_loss, test_metric = model.evaluate(x_test, y_test, batch_size=256, verbose=0)
        history = {key.replace("close_enough", "accuracy"): [float(v) for v in values]
                   for key, values in trained.history.items()}
        models[kind] = {"params": int(model.count_params()), "history": history, "test_loss": float(test_loss),
                        "test_accuracy": float(test_metric), "grad_norms": grads,
                        "train_seconds": round(seconds, 1)}
        print(f"{name} {kind}: test loss {test_loss:.4f}, accuracy {test_metric:.4f} ({seconds:.0f} s)", flush=True)
    return models


# ----------------------------------------------------------------------------- results
def plot_comparison(results: dict, out: Path) -> None:
    """comparison.png: per experiment, validation accuracy, loss, and gradient norm per time step."""
    from matplotlib.figure import Figure  # heavy: matplotlib loads only to draw

    experiments = results["experiments"]
    fig = Figure(figsize=(13, 3.6 * len(experiments)))
    axes = fig.subplots(len(experiments), 3, squeeze=False)
    for row, (key, exp) in zip(axes, experiments.items()):
        for kind, m in exp["models"].items():
            epochs = np.arange(1, len(m["history"]["loss"]) + 1)
            colour = COLOURS.get(kind)
            row[0].plot(epochs, m["history"]["val_accuracy"], "o-", color=colour, label=kind)
            row[1].plot(epochs, m["history"]["val_loss"], "o-", color=colour, label=kind)
            steps = np.arange(1, len(m["grad_norms"][-1]) + 1)
            row[2].semilogy(steps, m["grad_norms"][0], "--", color=colour, alpha=0.6, label=f"{kind} (untrained)")
            row[2].semilogy(steps, m["grad_norms"][-1], "-", color=colour, label=f"{kind} (trained)")
        for ax, ylabel in zip(row, ("validation accuracy", "validation loss", "‖∂L/∂x_t‖")):
            ax.set_xlabel("time step t" if ylabel.startswith("‖") else "epoch")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
        row[0].set_title(exp["title_en"])
    fig.tight_layout()
    fig.savefig(out, dpi=80)


def run(cfg: dict, data: str | None, seed: int, quick: bool, verbose: int) -> dict:
    """Both experiments; the results dictionary."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    steps = cfg["add_steps"]
    xa, ya = adding_problem(cfg["add_train"], steps, rng)
    xt, yt = adding_problem(cfg["add_test"], steps, rng)
    experiments = {"adding": {
        "title_en": f"Adding problem, {steps} steps", "title_vi": f"Bài toán cộng, {steps} bước",
        "steps": steps, "train": len(ya), "test": len(yt), "grad_batch": min(GRAD_BATCH, len(yt)),
        "tolerance": ADD_TOLERANCE,
        "constant_answer_mse": float(((yt - 1.0) ** 2).mean()),
        "models": train_pair("add", xa, ya, xt, yt, 1, cfg, seed, verbose)}}
    x_tr, y_tr, x_te, y_te, source = mnist_rows(data, cfg["mnist_train"], cfg["mnist_test"])
    experiments["mnist_rows"] = {
        "title_en": "MNIST read row by row, 28 steps", "title_vi": "MNIST đọc từng hàng, 28 bước",
        "steps": x_tr.shape[1], "train": len(y_tr), "test": len(y_te), "grad_batch": min(GRAD_BATCH, len(y_te)),
        "data_source": source,
        "models": train_pair("mnist", x_tr, y_tr, x_te, y_te, 10, cfg, seed, verbose)}
    return {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "quick": quick,
            "config": cfg, "seed": seed, "command": fit.command_line(), "git_commit": fit.git_commit(),
            "versions": fit.library_versions(), "seconds": round(time.perf_counter() - t0, 1),
            "experiments": experiments}


def main(args) -> int:
    """Entry point of `python -m training compare-rnn` (options from `training.cli.compare_parser`);
    returns the exit code."""
    results = run(QUICK if args.quick else FULL, args.data, args.seed, args.quick, args.verbose)

    def write(folder: Path) -> None:
        (folder / RESULTS).write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
        plot_comparison(results, folder / PLOT)

    out = fit.save_atomically(Path(args.models_dir), OUT_NAME, write)
    print(f"wrote {out / RESULTS} and {out / PLOT} in {results['seconds']:.0f} s")
    return 0
