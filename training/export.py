"""`python -m training export <slug> | --all`: models/<slug>/model.tflite (and the checked int8
model.int8.tflite) for the serving workers, each checked against Keras on real test images.
Details: docs/DESIGN.md, "The LiteRT export (training/export.py)"."""

from __future__ import annotations

import functools
import hashlib
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from app.cards import Card, Export, write_atomically
from app.lstm_cell import cell_problem
from app.modelstore import InterpreterPool  # the very code that serves it
from app.tasks import IMAGE, TaskSpec, discover_tasks
from training.data import load_image_data
from training.dataset import DataError

TFLITE = "model.tflite"
INT8_TFLITE = "model.int8.tflite"
CHECK_IMAGES = 256
TOLERANCE = 1e-4  # largest probability difference accepted between LiteRT and Keras
INT8_MAX_DROP = 0.001  # int8 test accuracy may be at most 0.1 percentage point below float32's
INT8_MIN_AGREEMENT = 0.99  # and it must give float32's class on at least 99% of the test images
INT8_RULE = (f"test accuracy at most {INT8_MAX_DROP:.1%} below float32 and float32's class on at least "
             f"{INT8_MIN_AGREEMENT:.0%} of the test images")


class ExportError(Exception):
    """The converted model does not reproduce the Keras model."""


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file (which model.keras a model.tflite was made from)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def fold_time_distributed(model, inner=None):
    """The same model (the same layer objects and weights) with every TimeDistributed(layer) run
    as one call of its inner layer (or of `inner(layer)`) over the time steps folded into the batch.

    Keras 3 traces TimeDistributed as one inner call per step and stacks them (a ReNet sweep
    becomes one BiLSTM loop per row of patches), which LiteRT runs far slower than the folded
    graph; the folded graph also converts faster and smaller.
    """
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
            return Folded(inner(layer.layer) if inner else layer.layer, name=layer.name)
        return layer

    return keras.models.clone_model(model, clone_function=fold)


def _directions(layer) -> list | None:
    """The LSTM layers of an LSTM or a Bidirectional(LSTM) that `lockstep_layer` can run: the
    cell `app.lstm_cell` computes (`cell_problem`), with a bias, and outputs that are a sequence
    or the last step."""
    if isinstance(layer, keras.layers.Bidirectional):
        if layer.merge_mode != "concat" or layer.return_state:
            return None
        rnns = [layer.forward_layer, layer.backward_layer]
    elif isinstance(layer, keras.layers.LSTM) and not layer.go_backwards:  # alone, Keras returns it reversed
        rnns = [layer]
    else:
        return None
    supported = (isinstance(r, keras.layers.LSTM) and r.cell.use_bias and cell_problem(r.get_config()) is None
                 for r in rnns)
    return rnns if all(supported) else None


def lockstep_layer(layer):
    """`layer` as the same LSTM unrolled, its directions advancing one step together (one batched
    matmul per step for both directions of a Bidirectional), with the weights as constants; any
    other layer unchanged.

    Keras's LSTM becomes a While loop that LiteRT runs several times slower per step than
    straight-line ops that XNNPACK covers; unrolled one direction at a time it is slower still
    (thousands of small ops). In lockstep the input projection is one matmul over all steps and
    each step is a dozen ops for both directions (docs/BENCHMARKS.md compares the exports)."""
    rnns = _directions(layer)
    if rnns is None:
        return layer
    weights = [[keras.ops.convert_to_numpy(w) for w in (r.cell.kernel, r.cell.recurrent_kernel, r.cell.bias)]
               for r in rnns]
    return _lockstep_class()(weights, [r.go_backwards for r in rnns], rnns[0].return_sequences, name=layer.name)


@functools.cache
def _lockstep_class():
    class Lockstep(keras.layers.Layer):
        def __init__(self, weights, backwards, sequences, **kw):
            super().__init__(**kw)
            self.backwards, self.sequences = backwards, sequences
            self.kernel = np.concatenate([k for k, _, _ in weights], axis=1)  # (features, directions*4*units)
            self.bias = np.concatenate([b for _, _, b in weights])
            self.recurrent = np.stack([r for _, r, _ in weights])  # (directions, units, 4*units)
            self.units = self.recurrent.shape[1]

        def flip(self, x, axis):  # reverse the time axis of the directions that run backwards
            parts = tf.unstack(x, axis=1)
            return tf.stack([tf.reverse(p, [axis]) if back else p for p, back in zip(parts, self.backwards)], 1)

        def call(self, x, mask=None, training=None):
            d, u = len(self.backwards), self.units
            _, t, n = x.shape
            xw = tf.reshape(tf.matmul(tf.reshape(x, (-1, n)), self.kernel) + self.bias, (-1, t, d, 4 * u))
            xw = tf.transpose(xw, (1, 2, 0, 3))  # (time, directions, batch, 4*units)
            if any(self.backwards):
                xw = self.flip(xw, 0)
            steps = tf.unstack(xw)
            h = c = tf.zeros_like(steps[0][..., :u])
            hs = []
            for z in steps:  # Keras's LSTM cell: gates i, f, c, o
                i, f, g, o = tf.split(z + tf.matmul(h, self.recurrent), 4, axis=-1)
                c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
                h = tf.sigmoid(o) * tf.tanh(c)
                hs.append(h)
            if not self.sequences:
                return tf.reshape(tf.transpose(h, (1, 0, 2)), (-1, d * u))
            seq = tf.stack(hs)  # (time, directions, batch, units)
            if any(self.backwards):  # Bidirectional returns the backward outputs in input order
                seq = self.flip(seq, 0)
            return tf.reshape(tf.transpose(seq, (2, 0, 1, 3)), (-1, t, d * u))

    return Lockstep


def serving_graph(model):
    """The model as exported: TimeDistributed folded into the batch, LSTMs in lockstep."""
    folded = fold_time_distributed(model, inner=lockstep_layer)
    if not any(_directions(layer) for layer in folded.layers):
        return folded
    return keras.models.clone_model(folded, clone_function=lockstep_layer)


def convert(model, int8: bool = False) -> bytes:
    """The Keras image model as a TFLite flatbuffer: batch 1, float32 in, probabilities out; with
    `int8`, its weights stored as int8 (the converter's dynamic-range quantization)."""
    model = serving_graph(model)

    @tf.function(input_signature=[tf.TensorSpec((1, *model.input_shape[1:]), tf.float32)])
    def forward(x):
        return model(x, training=False)

    frozen = convert_variables_to_constants_v2(forward.get_concrete_function())
    converter = tf.lite.TFLiteConverter.from_concrete_functions([frozen])
    if int8:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter.convert()


def int8_verdict(float_probs: np.ndarray, int8_probs: np.ndarray, labels: np.ndarray) -> dict:
    """Whether the int8 model may be served instead of the float32 one, from both models'
    probabilities on the labelled test images (INT8_RULE)."""
    labels = np.asarray(labels).reshape(-1)
    ours, theirs = int8_probs.argmax(1), float_probs.argmax(1)
    accuracy, float_accuracy = float(np.mean(ours == labels)), float(np.mean(theirs == labels))
    agreement = float(np.mean(ours == theirs))
    return {"accepted": bool(float_accuracy - accuracy <= INT8_MAX_DROP + 1e-9 and agreement >= INT8_MIN_AGREEMENT),
            "rule": INT8_RULE, "test_count": int(len(labels)), "test_accuracy": accuracy,
            "float_test_accuracy": float_accuracy, "agreement": agreement,
            "max_abs_diff": float(np.max(np.abs(int8_probs - float_probs)))}


def export_int8(model, folder: Path, float_predict, test: tuple[np.ndarray, np.ndarray] | None) -> dict:
    """Write folder/model.int8.tflite when it passes `int8_verdict` on `test` (images, labels)
    against `float_predict` (the float32 export's InterpreterPool), and return the card's
    `export.int8` block; otherwise remove any older int8 file."""
    stale = Path(folder) / INT8_TFLITE
    if test is None or not len(test[1]):
        stale.unlink(missing_ok=True)
        return {"accepted": False, "rule": INT8_RULE, "why": "no labelled test images to check it on"}
    x, y = test
    flatbuffer = convert(model, int8=True)
    block = int8_verdict(float_predict(x), InterpreterPool(flatbuffer, 1)(x), y)
    if not block["accepted"]:
        stale.unlink(missing_ok=True)
        return block
    write_atomically(stale, flatbuffer)
    return {**block, "file": INT8_TFLITE, "bytes": len(flatbuffer), "sha256": hashlib.sha256(flatbuffer).hexdigest()}


def sample_images(x_test: np.ndarray, n: int = CHECK_IMAGES) -> tuple[np.ndarray, str, bool]:
    """Up to `n` of the test images (a fixed random choice), how to describe them on the card, and
    False (they are not random pixels)."""
    idx = np.sort(np.random.default_rng(0).choice(len(x_test), min(n, len(x_test)), replace=False))
    return np.asarray(x_test[idx], np.float32), f"{len(idx)} test images", False


def labelled_test_set(spec: TaskSpec, data: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    """The task's labelled test images from its local data; None when there is none (no download,
    so `export --all` stays quick offline)."""
    try:
        loaded = load_image_data(spec, data, download=False)
    except (DataError, OSError, ValueError):
        return None
    return loaded.x_test, loaded.y_test


def check_images(spec: TaskSpec, test: tuple[np.ndarray, np.ndarray] | None,
                 n: int = CHECK_IMAGES) -> tuple[np.ndarray, str, bool]:
    """Up to `n` of the test images (random pixels when there are none), as `sample_images`."""
    if test is not None and len(test[0]):
        return sample_images(test[0], n)
    x = np.random.default_rng(0).integers(0, 256, (min(n, 32), *spec.input_shape))
    return x.astype(np.float32), f"{len(x)} random images (no data found)", True


def export_model(model, spec: TaskSpec, folder: Path, source_sha256: str, images: np.ndarray,
                 checked_on: str, checked_random: bool = False, test: tuple[np.ndarray, np.ndarray] | None = None,
                 int8: bool = True) -> dict:
    """Write folder/model.tflite for `model` (and model.int8.tflite when `int8` and it passes on
    `test`) and return the card's `export` block; ExportError (and no file) unless LiteRT
    reproduces Keras on `images` within TOLERANCE."""
    flatbuffer = convert(model)
    pool = InterpreterPool(flatbuffer, 1)
    served = pool(images)
    reference = np.asarray(model.predict(images, batch_size=64, verbose=0))
    diff = float(np.max(np.abs(served - reference)))
    agreement = float(np.mean(served.argmax(1) == reference.argmax(1)))
    if not diff <= TOLERANCE:
        raise ExportError(f"{spec.slug}: LiteRT differs from Keras by {diff:.2e} (> {TOLERANCE:g})")
    write_atomically(Path(folder) / TFLITE, flatbuffer)
    return {"format": "tflite", "file": TFLITE, "bytes": len(flatbuffer),
            "sha256": hashlib.sha256(flatbuffer).hexdigest(), "source_sha256": source_sha256,
            "max_abs_diff": diff, "argmax_agreement": agreement, "checked_on": checked_on,
            "checked_count": len(images), "checked_random": checked_random,
            "converter": f"tensorflow {tf.__version__} TFLiteConverter (from_concrete_functions, frozen)",
            "graph": graph_changes(model), "int8": export_int8(model, folder, pool, test) if int8 else
            {"accepted": False, "rule": INT8_RULE, "why": "not requested (a lab bench run serves float32)"}}


def int8_summary(block: dict) -> str:
    """One line on the int8 export for the command's output."""
    if "test_accuracy" not in block:
        return f"{INT8_TFLITE} not made ({block.get('why')})"
    verdict = f"written, {block['bytes'] / 1e6:.1f} MB" if block["accepted"] else f"rejected ({block['rule']})"
    return (f"{INT8_TFLITE} {verdict}: test accuracy {block['test_accuracy']:.2%} vs float32 "
            f"{block['float_test_accuracy']:.2%}, same class on {block['agreement']:.2%} of {block['test_count']:,}")


def graph_changes(model) -> str:
    """What `serving_graph` does to `model`, for the card (weights are never changed)."""
    layers = [getattr(layer, "layer", layer) for layer in model.layers]
    folded = sum(isinstance(layer, keras.layers.TimeDistributed) for layer in model.layers)
    lockstep = sum(_directions(layer) is not None for layer in layers)
    done = ([f"{folded} TimeDistributed folded into the batch"] if folded else []) + \
        ([f"{lockstep} LSTM layers unrolled, directions in lockstep"] if lockstep else [])
    return "; ".join(done) + "; float32 weights unchanged" if done else "as traced by Keras; float32 weights unchanged"


def export_folder(folder: Path, spec: TaskSpec, data: str | None = None, force: bool = False) -> dict | None:
    """Export models/<slug>/ in place and record it in its card; None when already current."""
    folder = Path(folder)
    card = Card.from_json(folder)
    sha = file_sha256(folder / "model.keras")
    if not force and card.export and card.export.source_sha256 == sha and (folder / TFLITE).is_file():
        return None
    model = keras.saving.load_model(folder / "model.keras", compile=False)
    test = labelled_test_set(spec, data)
    card.export = Export.parse(export_model(model, spec, folder, sha, *check_images(spec, test), test=test))
    card.write(folder)
    return card.export.to_json()


def main(args) -> int:
    """`python -m training export <slug>... | --all [--models-dir DIR] [--data PATH] [--force]`
    (options from `training.cli.export_parser`)."""
    models_dir = Path(args.models_dir)
    tasks = discover_tasks(models_dir)
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
                  f"argmax agreement {done['argmax_agreement']:.2%} on {done['checked_on']}; "
                  f"{int8_summary(done['int8'])}", flush=True)
    return 1 if failed else 0
