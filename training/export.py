"""`python -m training export <slug> | --all`: models/<slug>/model.tflite for the serving workers.

The web app serves an image model with LiteRT when its `model.tflite` comes from the
`model.keras` next to it, so a worker never imports TensorFlow (185 MB per worker with every
shipped model instead of 1.75 GB, ready in under a second instead of 40-70 s of XLA compiling;
docs/BENCHMARKS.md). The conversion freezes the variables into constants (a `.tflite` that reads
variables fails at READ_VARIABLE) and keeps Keras's own LSTM graph (rebuilding the model to get
fused LSTM ops changed the outputs; unrolling the LSTMs made mnist slower, 1.6 ms against 1.1),
except that TimeDistributed layers are folded into one batched call (`fold_time_distributed`).
Each export is checked against Keras on real test images, and the card records the check:

    "export": {"format", "file", "bytes", "sha256" (of the .tflite), "source_sha256" (of the
               model.keras it was made from), "max_abs_diff", "argmax_agreement", "checked_on",
               "converter"}

`training.images` calls `export_model` inside the atomic save, so every new model ships with its
`.tflite`; `export --all` skips a model whose export is already current (use --force to redo).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import zipfile
from pathlib import Path

import numpy as np

from app.config import MODELS_DIR
from app.tasks import IMAGE, TaskSpec, discover_tasks

TFLITE = "model.tflite"
CHECK_IMAGES = 256
TOLERANCE = 1e-4  # largest probability difference accepted between LiteRT and Keras


class ExportError(Exception):
    """The converted model does not reproduce the Keras model."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (which model.keras a model.tflite was made from)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fold_time_distributed(model):
    """The same model (the same layer objects and weights) with every TimeDistributed(layer) run
    as one call of its inner layer over the time steps folded into the batch.

    Keras 3 traces TimeDistributed as one inner call per step and stacks them (a ReNet sweep
    becomes 16 separate BiLSTM loops); LiteRT ran that 4-5x slower than XLA (7.5 ms per cats_dogs
    image against 1.6 ms folded), and the folded graph also converts faster and smaller.
    """
    import keras

    if not any(isinstance(layer, keras.layers.TimeDistributed) for layer in model.layers):
        return model

    class Folded(keras.layers.Layer):
        def __init__(self, inner, **kw):
            super().__init__(**kw)
            self.inner = inner

        def call(self, x, mask=None, training=None):
            shape = tuple(x.shape)
            y = self.inner(keras.ops.reshape(x, (-1, *shape[2:])), training=training)
            return keras.ops.reshape(y, (-1, shape[1], *tuple(y.shape)[1:]))

    def fold(layer):
        if isinstance(layer, keras.layers.TimeDistributed):
            return Folded(layer.layer, name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=fold)


def convert(model) -> bytes:
    """The Keras image model as a TFLite flatbuffer: batch 1, float32 in, probabilities out."""
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    model = fold_time_distributed(model)

    @tf.function(input_signature=[tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)])
    def forward(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()


def sample_images(x_test: np.ndarray, n: int = CHECK_IMAGES) -> tuple[np.ndarray, str]:
    """Up to `n` of the test images (a fixed random choice) and how to describe them on the card."""
    idx = np.sort(np.random.default_rng(0).choice(len(x_test), min(n, len(x_test)), replace=False))
    return np.asarray(x_test[idx], np.float32), f"{len(idx)} test images"


def check_images(spec: TaskSpec, data: str | None, n: int = CHECK_IMAGES) -> tuple[np.ndarray, str]:
    """Up to `n` test images of the task from its local data (random pixels when it is absent:
    no download, so `export --all` stays quick offline)."""
    from training.data import DataError, load_image_data

    try:
        return sample_images(load_image_data(spec, data, download=False).x_test, n)
    except (DataError, OSError, ValueError):
        x = np.random.default_rng(0).integers(0, 256, (min(n, 32), *spec.input_shape))
        return x.astype(np.float32), f"{len(x)} random images (no data found)"


def export_model(model, spec: TaskSpec, folder: Path, source_sha256: str, images: np.ndarray,
                 checked_on: str) -> dict:
    """Write folder/model.tflite for `model` and return the card's `export` block; ExportError
    (and no file) unless LiteRT reproduces Keras on `images` within TOLERANCE."""
    import tensorflow as tf

    from app.modelstore import InterpreterPool  # the very code that serves it

    flatbuffer = convert(model)
    served = InterpreterPool(flatbuffer, 1)(images)
    reference = np.asarray(model.predict(images, batch_size=64, verbose=0))
    diff = float(np.max(np.abs(served - reference)))
    agreement = float(np.mean(served.argmax(1) == reference.argmax(1)))
    if not diff <= TOLERANCE:
        raise ExportError(f"{spec.slug}: LiteRT differs from Keras by {diff:.2e} (> {TOLERANCE:g})")
    tmp = Path(folder) / f".{TFLITE}.tmp-{os.getpid()}"
    tmp.write_bytes(flatbuffer)
    os.replace(tmp, Path(folder) / TFLITE)
    return {"format": "tflite", "file": TFLITE, "bytes": len(flatbuffer),
            "sha256": hashlib.sha256(flatbuffer).hexdigest(), "source_sha256": source_sha256,
            "max_abs_diff": diff, "argmax_agreement": agreement, "checked_on": checked_on,
            "converter": f"tensorflow {tf.__version__} TFLiteConverter (from_concrete_functions, frozen)"}


def export_folder(folder: Path, spec: TaskSpec, data: str | None = None, force: bool = False) -> dict | None:
    """Export models/<slug>/ in place and record it in its card; None when already current."""
    import keras

    from training import fit

    folder = Path(folder)
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    sha = file_sha256(folder / "model.keras")
    current = card.get("export") or {}
    if not force and current.get("source_sha256") == sha and (folder / TFLITE).is_file():
        return None
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    images, checked_on = check_images(spec, data)
    card["export"] = export_model(model, spec, folder, sha, images, checked_on)
    fit.write_card(folder, card)
    return card["export"]


def main(argv: list[str]) -> int:
    """`python -m training export <slug>... | --all [--models-dir DIR] [--data PATH] [--force]`."""
    p = argparse.ArgumentParser(prog="python -m training export")
    p.add_argument("slugs", nargs="*")
    p.add_argument("--all", action="store_true", help="every image task found in --models-dir")
    p.add_argument("--models-dir", default=os.environ.get("LSTMLAB_MODELS", str(MODELS_DIR)))
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"), help="data root for the check images")
    p.add_argument("--force", action="store_true", help="export even when the card says it is current")
    args = p.parse_args(argv)
    models_dir = Path(args.models_dir)
    tasks = discover_tasks(models_dir)
    if args.all == bool(args.slugs):
        p.error("name the tasks to export, or --all")
    slugs = [s for s, spec in tasks.items() if spec.kind == IMAGE and (models_dir / s / "model.keras").is_file()] \
        if args.all else args.slugs
    failed = 0
    for slug in slugs:
        spec = tasks.get(slug)
        if spec is None or spec.kind != IMAGE or not (models_dir / slug / "model.keras").is_file():
            print(f"{slug}: no trained image model in {models_dir / slug}", file=sys.stderr)
            failed += 1
            continue
        try:
            done = export_folder(models_dir / slug, spec, args.data, args.force)
        except ExportError as exc:
            print(f"error: {exc}; {TFLITE} not written", file=sys.stderr)
            failed += 1
            continue
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:  # a damaged model or card
            print(f"error: {slug}: {exc.__class__.__name__}: {exc}; {TFLITE} not written (the app serves "
                  f"this task with Keras, or shows it unavailable)", file=sys.stderr)
            failed += 1
            continue
        if done is None:
            print(f"{slug}: {TFLITE} is current", flush=True)
        else:
            print(f"{slug}: {TFLITE} {done['bytes'] / 1e6:.1f} MB, max |diff| {done['max_abs_diff']:.1e}, "
                  f"argmax agreement {done['argmax_agreement']:.2%} on {done['checked_on']}", flush=True)
    return 1 if failed else 0
