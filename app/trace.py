"""Trace a served prediction: every LSTM gate (i, f, o, g) and state (c, h) at every time step
(a GRU's gates z, r, its candidate g and h; a SimpleRNN's h), from the text model's own run or
from a NumPy replay of an image model's graph (`Tracer`, LSTMs only).
Details: docs/DESIGN.md, "Gate traces (app/trace.py)"."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from app.cells import LSTMStep
from app.lstm_cell import LSTMWeights, bidirectional_sequence, lstm_sequence, lstm_weights, read_keras_file, sigmoid

ROWS, COLUMNS, PATCH_ROWS, WORDS = "rows", "columns", "patch_rows", "words"
SHOWN = LSTMStep.SHOWN  # an LSTM's display order: keep, add, candidate, show, cell, hidden
MAX_WORDS = 60  # a text trace shows the last MAX_WORDS tokens the model read


@dataclass
class LayerTrace:
    """One recurrent layer (one direction) over one input: (T, U) arrays per recorded quantity."""

    name: str
    direction: str  # "forward", "backward" (time order already restored) or "" (unidirectional)
    values: dict[str, np.ndarray]
    axis: str = ""  # ROWS, COLUMNS, PATCH_ROWS or WORDS: what one time step is
    shown: tuple[str, ...] = SHOWN  # the recorded quantities, in display order (the cell's `SHOWN`)

    @property
    def steps(self) -> int:
        """Number of time steps."""
        return self.values["h"].shape[0]

    @property
    def units(self) -> int:
        """Number of units."""
        return self.values["h"].shape[1]

    def to_dict(self, decimals: int = 3) -> dict:
        """JSON-ready: names, shapes and every value rounded to `decimals`."""
        return {"layer": self.name, "direction": self.direction, "axis": self.axis, "steps": self.steps,
                "units": self.units,
                "values": {k: _rounded(self.values[k], decimals) for k in self.shown}}


@dataclass
class Trace:
    """Every recurrent layer's record, and the traced output (an image model's probabilities;
    None for text, whose trace is recorded by the served model itself)."""

    output: np.ndarray | None
    layers: list[LayerTrace] = field(default_factory=list)

    def to_dict(self, decimals: int = 3) -> dict:
        """JSON-ready trace (the API's `"trace": true`)."""
        shown = self.layers[0].shown if self.layers else SHOWN
        body = {"gates": list(shown), "layers": [lt.to_dict(decimals) for lt in self.layers]}
        return body if self.output is None else {"output": _rounded(self.output, 6), **body}


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
            "tanh": np.tanh, "sigmoid": sigmoid, "softmax": softmax}.get(name)


def _record(name: str, direction: str, rec: dict) -> LayerTrace:
    return LayerTrace(name, direction, {k: v[0] for k, v in rec.items()})


def _bidirectional(cfg: dict, weights: list) -> tuple[LSTMWeights, LSTMWeights, bool]:
    """(forward, backward, return_sequences) of a Bidirectional(LSTM) merged by concatenation."""
    fw, bw = cfg["layer"], cfg.get("backward_layer") or cfg["layer"]
    if fw["class_name"] != "LSTM" or bw["class_name"] != "LSTM" or cfg.get("merge_mode") != "concat" \
            or ("backward_layer" in cfg and not bw["config"].get("go_backwards")):
        raise ValueError(f"{cfg['name']}: only Bidirectional(LSTM) merged by concatenation is traced")
    half = len(weights) // 2  # forward layer's weights, then the backward layer's
    return (lstm_weights(fw["config"], weights[:half]), lstm_weights(bw["config"], weights[half:]),
            bool(fw["config"].get("return_sequences")))


def _numpy_layer(kind: str, cfg: dict, weights: list) -> Fn:
    """The NumPy function computing one layer at inference, from its class name, config and
    weights (as saved in model.keras); ValueError for a layer the tracer does not know."""
    name = cfg["name"]
    weights = [np.asarray(w, np.float32) for w in weights]
    if kind == "LSTM":
        w, seq, back = lstm_weights(cfg, weights), bool(cfg.get("return_sequences")), bool(cfg.get("go_backwards"))

        def lstm(xs, recs):
            out, rec = lstm_sequence(xs[0], w, seq, back, record=True)
            recs.append(_record(name, "backward" if back else "", rec))
            return out

        return lstm
    if kind == "Bidirectional":
        fw, bw, seq = _bidirectional(cfg, weights)

        def bilstm(xs, recs):
            out, rec = bidirectional_sequence(xs[0], fw, bw, seq, record=True)
            for direction in ("forward", "backward"):
                recs.append(_record(name, direction, rec[direction]))
            return out

        return bilstm
    if kind == "TimeDistributed" and cfg["layer"]["class_name"] == "Bidirectional":
        fw, bw, seq = _bidirectional(cfg["layer"]["config"], weights)

        def sweep(xs, recs):  # ReNet: one sequence per patch row; run, not recorded
            x = xs[0]
            out, _ = bidirectional_sequence(x.reshape((-1, *x.shape[2:])), fw, bw, seq)
            return out.reshape((*x.shape[:2], *out.shape[1:]))

        return sweep
    if kind in ("InputLayer", "Dropout", "SpatialDropout1D", "GaussianNoise"):
        return lambda xs, recs: xs[0]
    if kind == "Rescaling":
        scale, offset = np.float32(cfg["scale"]), np.float32(cfg["offset"])
        return lambda xs, recs: xs[0] * scale + offset
    if kind == "Reshape":
        target = tuple(cfg["target_shape"])
        return lambda xs, recs: xs[0].reshape((xs[0].shape[0], *target))
    if kind == "Permute":
        perm = (0, *cfg["dims"])
        return lambda xs, recs: np.ascontiguousarray(xs[0].transpose(perm))
    if kind == "Flatten":
        return lambda xs, recs: xs[0].reshape((xs[0].shape[0], -1))
    if kind == "Concatenate":
        axis = cfg["axis"]
        return lambda xs, recs: np.concatenate(xs, axis=axis)
    if kind == "Activation" and _activation(cfg["activation"]) is not None:
        act = _activation(cfg["activation"])
        return lambda xs, recs: act(xs[0])
    if kind == "Dense" and _activation(cfg["activation"]) is not None:
        kernel, bias = weights[0], (weights[1] if len(weights) > 1 else 0.0)
        act = _activation(cfg["activation"])
        return lambda xs, recs: act(xs[0] @ kernel + bias)
    if kind == "LayerNormalization" and cfg["axis"] in (-1, [-1]) and not cfg.get("rms_scaling"):
        values = iter(weights)
        gamma = next(values) if cfg["scale"] else np.float32(1)
        beta = next(values) if cfg["center"] else np.float32(0)
        eps = np.float32(cfg["epsilon"])

        def layer_norm(xs, recs):
            x = xs[0]
            mean = x.mean(axis=-1, keepdims=True)
            var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
            return (x - mean) / np.sqrt(var + eps) * gamma + beta

        return layer_norm
    if kind in ("LSTM", "GRU", "SimpleRNN", "RNN", "Bidirectional"):
        raise ValueError(f"{name}: only LSTM layers with default settings can be traced")
    raise ValueError(f"{name}: {kind} layers are not traced")


def _tensor_refs(arg) -> list[tuple]:
    """The (layer, node, tensor) each Keras tensor in a saved call's arguments comes from."""
    if isinstance(arg, dict) and arg.get("class_name") == "__keras_tensor__":
        return [tuple(arg["config"]["keras_history"])]
    if isinstance(arg, (list, tuple)):
        return [ref for item in arg for ref in _tensor_refs(item)]
    return []


def _endpoints(spec: list) -> list[tuple]:
    """A saved config's input_layers / output_layers: one [name, node, tensor] or a list of them."""
    return [tuple(spec)] if spec and isinstance(spec[0], str) else [tuple(s) for s in spec]


# ----------------------------------------------------------------------------- the tracer
class Tracer:
    """A Keras functional model compiled into NumPy steps that record the LSTM gates.

    Built from the model's config and weights (`app.lstm_cell.read_keras_file`, or `model_graph`
    of a live Keras model): serving a trace never needs Keras or TensorFlow."""

    def __init__(self, config: dict, weights: dict, axes: Callable[[LayerTrace], str] | None = None):
        pending: list[tuple[Fn, list[tuple], tuple]] = []
        for layer in config["layers"]:
            if layer["class_name"] == "InputLayer":
                continue
            cfg = layer["config"]
            for k, node in enumerate(layer.get("inbound_nodes") or []):  # a shared layer has several
                fn = _numpy_layer(layer["class_name"], cfg, weights.get(cfg["name"], []))
                pending.append((fn, _tensor_refs(node.get("args", [])), (cfg["name"], k, 0)))
        self.input_ids = _endpoints(config["input_layers"])
        # Run order: each call once all its inputs exist.
        self.steps: list[tuple[Fn, list[tuple], tuple]] = []
        ready = set(self.input_ids)
        while pending:
            step = next((st for st in pending if all(ref in ready for ref in st[1])), None)
            if step is None:
                raise ValueError(f"{config.get('name')}: the saved graph has inputs no layer produces")
            pending.remove(step)
            self.steps.append(step)
            ready.add(step[2])
        self.output_id = _endpoints(config["output_layers"])[0]
        self.axes = axes or (lambda lt: "")

    def __call__(self, x: np.ndarray) -> Trace:
        """Trace a batch (the records keep its first sample)."""
        values = {self.input_ids[0]: np.asarray(x, np.float32)}
        records: list[LayerTrace] = []
        for fn, ins, out in self.steps:
            values[out] = fn([values[i] for i in ins], records)
        for lt in records:
            lt.axis = self.axes(lt)
        return Trace(values[self.output_id], records)


def model_graph(model) -> tuple[dict, dict]:
    """(config, {layer name: weights}) of a live Keras functional model, as `read_keras_file`
    reads them from its saved file."""
    return model.get_config(), {layer.name: layer.get_weights() for layer in model.layers}


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
    """The tracer of an image task's Keras model (input: uint8-range pixels (H, W, C), as served)."""
    return Tracer(*model_graph(model), image_axes(spec))


def trace_image(tracer: Tracer, array: np.ndarray) -> Trace:
    """Trace one preprocessed image (H, W, C), as `app.inference.classify` receives it."""
    return tracer(np.asarray(array, np.float32)[None])


def served_difference(trace: Trace, served: np.ndarray) -> float:
    """Largest absolute difference between an image trace's output and the served model's
    probabilities for the same image."""
    return float(np.abs(trace.output[0] - np.asarray(served).reshape(trace.output[0].shape)).max())


def word_trace(model, path: list, last: int = MAX_WORDS) -> tuple[Trace, list[int]]:
    """The trace of a text generation from the gates its model recorded (`app.decoding.generate`'s
    `path`), over the last `last` tokens read: the trace and those tokens' ids."""
    path = path[-last:]
    layers = [LayerTrace(layer.name, "", {key: np.stack([entry[1][k][n] for entry in path])
                                          for n, key in enumerate(layer.RECORDS)}, WORDS, layer.SHOWN)
              for k, layer in enumerate(model.layers)]
    return Trace(None, layers), [entry[0] for entry in path]


# ----------------------------------------------------------------------------- per-app cache
_LOCK = threading.Lock()


def load_tracer(folder: Path, spec) -> Tracer:
    """Build the tracer of an image model's models/<slug>/model.keras (the file the model store
    serves), reading the file directly: no Keras, no TensorFlow in the serving worker."""
    config, weights = read_keras_file(Path(folder) / "model.keras")
    return Tracer(config, weights, image_axes(spec))


def get_tracer(app, entry) -> Tracer:
    """The tracer of a served image task, built on its first trace and kept for the app's lifetime."""
    cache = app.extensions.setdefault("lstm_tracers", {})
    folder = entry.folder or Path(app.config["MODELS_DIR"]) / entry.slug
    with _LOCK:
        if str(folder) not in cache:
            cache[str(folder)] = load_tracer(Path(folder), entry.spec)
        return cache[str(folder)]
