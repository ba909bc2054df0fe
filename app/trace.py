"""Trace a served prediction: what every LSTM gate did at every time step.

`Tracer` walks the shipped Keras model's graph once, when it is built, and turns every layer into
a NumPy function holding that layer's own weights. Running it on an input reproduces the model's
output (tests check it equals `model(x)` to 1e-5) and, on the way, records for each LSTM (and each
direction of a bidirectional LSTM), per time step and per unit: the input gate i, forget gate f,
output gate o, the candidate g, the cell state c and the hidden state h (see app/lstm_cell.py).

Layers handled in NumPy: InputLayer, Rescaling, Reshape, Permute, Flatten, LayerNormalization,
Dropout (a no-op at inference), Dense, Concatenate, Embedding, LSTM, Bidirectional(LSTM) and
TimeDistributed(Bidirectional(LSTM)); any other layer is called through Keras (slower, same result).
Architectures: baseline (LSTM → LSTM over the image rows), rows_cols (bidirectional LSTMs over the
rows and over the columns: every one is traced), the text model (Embedding → LSTM → Dense, one time
step per word) and ReNet, where the two patch sweeps (a TimeDistributed BiLSTM along every row of
patches, then down every column) run in NumPy but are not recorded (one sequence per patch row
or column: too many to show); the final BiLSTM that reads the feature map one patch row per time
step is traced. Masking (Embedding mask_zero) is not supported: traced inputs carry no padding.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from app.lstm_cell import LSTMWeights, bidirectional_sequence, lstm_sequence

ROWS, COLUMNS, PATCH_ROWS, WORDS = "rows", "columns", "patch_rows", "words"
SHOWN = ("f", "i", "g", "o", "c", "h")  # display order: keep, add, candidate, show, cell, hidden


@dataclass
class LayerTrace:
    """One recurrent layer (one direction) over one input: (T, U) arrays per recorded quantity."""

    name: str
    direction: str  # "forward", "backward" (time order already restored) or "" (unidirectional)
    values: dict[str, np.ndarray]
    axis: str = ""  # ROWS, COLUMNS, PATCH_ROWS or WORDS: what one time step is
    returns_sequences: bool = True

    @property
    def steps(self) -> int:
        """Number of time steps."""
        return self.values["h"].shape[0]

    @property
    def units(self) -> int:
        """Number of LSTM units."""
        return self.values["h"].shape[1]

    @property
    def label(self) -> str:
        """Layer name with its direction, e.g. "rows_bilstm_1 (forward)"."""
        return f"{self.name} ({self.direction})" if self.direction else self.name

    def to_dict(self, decimals: int = 3) -> dict:
        """JSON-ready: names, shapes and every value rounded to `decimals`."""
        return {"layer": self.name, "direction": self.direction, "axis": self.axis, "steps": self.steps,
                "units": self.units,
                "values": {k: _rounded(self.values[k], decimals) for k in SHOWN}}


@dataclass
class Trace:
    """The traced output (probabilities) and every recurrent layer's record."""

    output: np.ndarray
    layers: list[LayerTrace] = field(default_factory=list)

    def to_dict(self, decimals: int = 3) -> dict:
        """JSON-ready trace (the API's `"trace": true`)."""
        return {"output": _rounded(self.output, 6), "gates": list(SHOWN),
                "layers": [lt.to_dict(decimals) for lt in self.layers]}


def _rounded(values: np.ndarray, decimals: int) -> list:
    """Nested lists of short floats (float32 rounded in float64, so 0.123 prints as 0.123)."""
    return np.round(np.asarray(values, np.float64), decimals).tolist()


# ----------------------------------------------------------------------------- NumPy layers
Fn = Callable[[list, list], np.ndarray]  # (input arrays, records to append to) -> output


def _activation(name: str) -> Callable[[np.ndarray], np.ndarray] | None:
    def softmax(x):
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    return {"linear": lambda x: x, None: lambda x: x, "relu": lambda x: np.maximum(x, 0),
            "tanh": np.tanh, "sigmoid": lambda x: 0.5 * (np.tanh(0.5 * x) + 1.0), "softmax": softmax}.get(name)


def _lstm_weights(layer) -> LSTMWeights:
    cfg = layer.get_config()
    if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
        raise ValueError(f"{layer.name}: the NumPy cell supports the default LSTM activations only")
    if cfg.get("stateful") or cfg.get("return_state"):
        raise ValueError(f"{layer.name}: stateful / return_state LSTMs are not traced")
    return LSTMWeights.from_list(layer.get_weights())


def _record(name: str, direction: str, rec: dict, returns_sequences: bool) -> LayerTrace:
    return LayerTrace(name, direction, {k: v[0] for k, v in rec.items()}, returns_sequences=returns_sequences)


def _numpy_layer(layer) -> Fn:
    """The NumPy function computing `layer` at inference (Keras's own call for other layers)."""
    import keras

    L = keras.layers
    cfg = layer.get_config()
    if isinstance(layer, L.LSTM):
        w, seq, back = _lstm_weights(layer), layer.return_sequences, layer.go_backwards

        def lstm(xs, recs):
            out, rec = lstm_sequence(xs[0], w, seq, back, record=True)
            recs.append(_record(layer.name, "backward" if back else "", rec, seq))
            return out

        return lstm
    if isinstance(layer, L.Bidirectional) and isinstance(layer.forward_layer, L.LSTM) \
            and layer.merge_mode == "concat" and layer.backward_layer.go_backwards:
        fw, bw = _lstm_weights(layer.forward_layer), _lstm_weights(layer.backward_layer)
        seq = layer.return_sequences

        def bilstm(xs, recs):
            out, rec = bidirectional_sequence(xs[0], fw, bw, seq, record=True)
            for direction in ("forward", "backward"):
                recs.append(_record(layer.name, direction, rec[direction], seq))
            return out

        return bilstm
    if isinstance(layer, L.TimeDistributed) and isinstance(layer.layer, L.Bidirectional) \
            and isinstance(layer.layer.forward_layer, L.LSTM) and layer.layer.merge_mode == "concat":
        inner = layer.layer
        fw, bw = _lstm_weights(inner.forward_layer), _lstm_weights(inner.backward_layer)

        def sweep(xs, recs):  # ReNet: one sequence per patch row; run, not recorded
            x = xs[0]
            out, _ = bidirectional_sequence(x.reshape((-1, *x.shape[2:])), fw, bw, inner.return_sequences)
            return out.reshape((*x.shape[:2], *out.shape[1:]))

        return sweep
    if isinstance(layer, L.InputLayer) or isinstance(layer, (L.Dropout, L.SpatialDropout1D, L.GaussianNoise)):
        return lambda xs, recs: xs[0]
    if isinstance(layer, L.Rescaling):
        scale, offset = np.float32(cfg["scale"]), np.float32(cfg["offset"])
        return lambda xs, recs: xs[0] * scale + offset
    if isinstance(layer, L.Reshape):
        target = tuple(cfg["target_shape"])
        return lambda xs, recs: xs[0].reshape((xs[0].shape[0], *target))
    if isinstance(layer, L.Permute):
        perm = (0, *cfg["dims"])
        return lambda xs, recs: np.ascontiguousarray(xs[0].transpose(perm))
    if isinstance(layer, L.Flatten):
        return lambda xs, recs: xs[0].reshape((xs[0].shape[0], -1))
    if isinstance(layer, L.Concatenate):
        axis = cfg["axis"]
        return lambda xs, recs: np.concatenate(xs, axis=axis)
    if isinstance(layer, L.Embedding) and not cfg.get("mask_zero"):
        table = np.asarray(layer.get_weights()[0], np.float32)
        return lambda xs, recs: table[np.asarray(xs[0], np.int64)]
    if isinstance(layer, L.Dense) and _activation(cfg["activation"]) is not None:
        weights = [np.asarray(v, np.float32) for v in layer.get_weights()]
        kernel, bias = weights[0], (weights[1] if len(weights) > 1 else 0.0)
        act = _activation(cfg["activation"])
        return lambda xs, recs: act(xs[0] @ kernel + bias)
    if isinstance(layer, L.LayerNormalization) and cfg["axis"] in (-1, [-1]) and not cfg.get("rms_scaling"):
        weights = iter(np.asarray(v, np.float32) for v in layer.get_weights())
        gamma = next(weights) if cfg["scale"] else np.float32(1)
        beta = next(weights) if cfg["center"] else np.float32(0)
        eps = np.float32(cfg["epsilon"])

        def layer_norm(xs, recs):
            x = xs[0]
            mean = x.mean(axis=-1, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
            return (x - mean) / np.sqrt(var + eps) * gamma + beta

        return layer_norm
    if isinstance(layer, (L.LSTM, L.GRU, L.SimpleRNN, L.RNN, L.Bidirectional)):
        raise ValueError(f"{layer.name}: only LSTM layers with default settings can be traced")

    def through_keras(xs, recs):
        return np.asarray(layer(xs if len(xs) > 1 else xs[0], training=False))

    return through_keras


# ----------------------------------------------------------------------------- the tracer
class Tracer:
    """A Keras functional model compiled into NumPy steps that record the LSTM gates."""

    def __init__(self, model, axes: Callable[[LayerTrace], str] | None = None):
        nodes = model._nodes_by_depth  # Keras's own topological order of the functional graph
        self.steps: list[tuple[Fn, list[int], list[int]]] = []
        for depth in sorted(nodes, reverse=True):
            for node in nodes[depth]:
                if node.is_input or not node.operation:
                    continue
                self.steps.append((_numpy_layer(node.operation), [id(t) for t in node.input_tensors],
                                   [id(t) for t in node.outputs]))
        self.input_ids = [id(t) for t in model.inputs]
        self.output_id = id(model.outputs[0])
        self.axes = axes or (lambda lt: "")
        self.name = model.name

    def __call__(self, x: np.ndarray) -> Trace:
        """Trace a batch (the records keep its first sample)."""
        values = {self.input_ids[0]: np.asarray(x, np.float32 if np.asarray(x).dtype.kind == "f" else np.int64)}
        records: list[LayerTrace] = []
        for fn, ins, outs in self.steps:
            y = fn([values[i] for i in ins], records)
            values[outs[0]] = y
        for lt in records:
            lt.axis = self.axes(lt)
        return Trace(values[self.output_id], records)


def image_axes(spec) -> Callable[[LayerTrace], str]:
    """What one time step of an image model's LSTM is: an image row, a column or a patch row."""
    height, width = spec.image_size

    def axis(lt: LayerTrace) -> str:
        if "col" in lt.name and lt.steps == width:
            return COLUMNS
        if lt.steps == height:
            return ROWS
        return PATCH_ROWS

    return axis


def image_tracer(model, spec) -> Tracer:
    """The tracer of an image task's model (input: uint8-range pixels (H, W, C), as served)."""
    return Tracer(model, image_axes(spec))


def text_tracer(model) -> Tracer:
    """The tracer of a text model (input: token ids (1, T)); every time step is a word."""
    return Tracer(model, lambda lt: WORDS)


def trace_image(tracer: Tracer, array: np.ndarray) -> Trace:
    """Trace one preprocessed image (H, W, C), as `app.inference.classify` receives it."""
    return tracer(np.asarray(array, np.float32)[None])


def trace_tokens(tracer: Tracer, ids: list[int]) -> Trace:
    """Trace one token sequence; the output is the next-token distribution after each token."""
    return tracer(np.asarray(ids, np.int64)[None])


# ----------------------------------------------------------------------------- per-app cache
_LOCK = threading.Lock()


def load_tracer(folder: Path, spec) -> Tracer:
    """Build the tracer of models/<slug>/model.keras (the file the model store serves)."""
    import keras

    model = keras.saving.load_model(Path(folder) / "model.keras", compile=False)
    return text_tracer(model) if spec.kind == "text" else image_tracer(model, spec)


def get_tracer(app, entry) -> Tracer:
    """The tracer of a served task, built on its first trace and kept for the app's lifetime."""
    cache = app.extensions.setdefault("lstm_tracers", {})
    with _LOCK:
        if entry.slug not in cache:
            cache[entry.slug] = load_tracer(Path(app.config["MODELS_DIR"]) / entry.slug, entry.spec)
        return cache[entry.slug]
