"""The LSTM cell written from its equations in NumPy, and `read_keras_file`, which reads a saved
Keras model's layers and weights with h5py: what the app runs for text serving, gate traces and
the export's check, without TensorFlow.
Details: docs/DESIGN.md, "The LSTM cell (app/lstm_cell.py)"."""

from __future__ import annotations

import functools
import io
import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

TRACE_KEYS = ("i", "f", "g", "o", "c", "h")  # what `lstm_sequence(record=True)` records per step


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, written with tanh so that it never overflows."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def split_gates(z: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pre-activations (..., 4·units) -> i, f, g, o after their activations (Keras order i, f, c, o).

    One tanh over all four: σ(z) = (tanh(z/2) + 1)/2, so the i, f, o columns are halved first
    (halving is exact in floating point: the gates equal `sigmoid` of their columns bit for bit)."""
    a = np.tanh(z * _half_sigmoid_scale(units, z.dtype))
    gates = 0.5 * a + 0.5
    return gates[..., :units], gates[..., units:2 * units], a[..., 2 * units:3 * units], gates[..., 3 * units:]


@functools.cache
def _half_sigmoid_scale(units: int, dtype) -> np.ndarray:
    """0.5 on the i, f, o columns, 1 on the candidate's."""
    scale = np.full(4 * units, 0.5, dtype)
    scale[2 * units:3 * units] = 1.0
    scale.flags.writeable = False
    return scale


@dataclass(frozen=True)
class LSTMWeights:
    """One direction's weights: kernel W (D, 4U), recurrent kernel U (U, 4U), bias b (4U,)."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray

    @property
    def units(self) -> int:
        """Size of the hidden and cell states."""
        return self.recurrent_kernel.shape[-2]

    @classmethod
    def from_list(cls, weights: list, dtype=np.float32) -> LSTMWeights:
        """From `keras.layers.LSTM.get_weights()` ([W, U, b]; a zero bias when use_bias=False)."""
        kernel, recurrent = (np.asarray(w, dtype) for w in weights[:2])
        bias = np.asarray(weights[2], dtype) if len(weights) > 2 else np.zeros(kernel.shape[1], dtype)
        if kernel.shape[1] != 4 * recurrent.shape[0] or recurrent.shape[1] != kernel.shape[1]:
            raise ValueError(f"not LSTM weights: kernel {kernel.shape}, recurrent {recurrent.shape}")
        return cls(kernel, recurrent, bias)


def cell_problem(cfg: dict) -> str | None:
    """Why the NumPy cell cannot run the Keras LSTM layer with this config (None when it can): it
    computes the default activations (tanh, sigmoid gates) from h = c = 0, without returned state."""
    if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
        return "the NumPy cell supports the default LSTM activations only"
    if cfg.get("stateful") or cfg.get("return_state"):
        return "stateful / return_state LSTMs are not supported"
    return None


def lstm_weights(cfg: dict, weights: list) -> LSTMWeights:
    """The weights of a Keras LSTM layer (its config and `get_weights()`), or ValueError when
    `cell_problem` refuses the layer."""
    problem = cell_problem(cfg)
    if problem:
        raise ValueError(f"{cfg.get('name', 'LSTM')}: {problem}")
    return LSTMWeights.from_list(weights)


def lstm_step(x_proj: np.ndarray, h: np.ndarray, c: np.ndarray, w: LSTMWeights):
    """One time step from the input projection x_t W + b: returns (i, f, g, o, c_t, h_t).

    Works on stacked independent LSTMs too: with a recurrent kernel (K, U, 4U), h and c are
    (K, B, U) and x_proj (K, B, 4U)."""
    z = x_proj + h @ w.recurrent_kernel
    i, f, g, o = split_gates(z, w.units)
    c = f * c + i * g
    h = o * np.tanh(c)
    return i, f, g, o, c, h


def _scan(proj: np.ndarray, w: LSTMWeights, keep_sequence: bool, record: bool):
    """The time loop (`lstm_step` at every step) for K independent LSTMs at once (the two
    directions of a bidirectional layer run side by side: half the Python steps).

    proj (K, B, T, 4U) holds x_t W + b, w the recurrent kernels stacked (K, U, 4U). Returns the
    last h (K, B, U), every h (K, B, T, U) or None, and with `record` a dict of TRACE_KEYS ->
    (K, B, T, U) arrays (else None).
    """
    k, batch, steps, four_u = proj.shape
    h = np.zeros((k, batch, four_u // 4), proj.dtype)
    c = np.zeros_like(h)
    recs = [np.empty((k, batch, steps, h.shape[-1]), proj.dtype) for _ in TRACE_KEYS] if record else None
    hs = recs[-1] if record else np.empty_like(proj[..., :h.shape[-1]]) if keep_sequence else None
    for t in range(steps):
        values = lstm_step(proj[:, :, t], h, c, w)
        c, h = values[4], values[5]
        if record:
            for array, value in zip(recs, values):
                array[:, :, t] = value
        elif hs is not None:
            hs[:, :, t] = h
    return h, hs, (dict(zip(TRACE_KEYS, recs)) if record else None)


def _check(x: np.ndarray, w: LSTMWeights) -> np.ndarray:
    x = np.asarray(x, dtype=w.kernel.dtype)
    if x.ndim != 3 or x.shape[-1] != w.kernel.shape[0]:
        raise ValueError(f"expected (batch, time, {w.kernel.shape[0]}), got shape {x.shape}")
    return x


def lstm_sequence(x: np.ndarray, w: LSTMWeights, return_sequences: bool = False, go_backwards: bool = False,
                  record: bool = False):
    """Run an LSTM over x (batch, T, D) like `keras.layers.LSTM` (default activations, no mask).

    Returns the output ((batch, T, U) with `return_sequences`, else the last h (batch, U)) and,
    with `record`, a dict of TRACE_KEYS -> (batch, T, U) arrays in processing order (else None).
    With `go_backwards` the sequence is read from its last step, and, as in Keras, the returned
    sequence is in that reversed order. Each step is `lstm_step`.
    """
    x = _check(x, w)
    if go_backwards:
        x = x[:, ::-1]
    # One matrix product for every step's input projection, then only h @ U inside the loop.
    proj = x @ w.kernel + w.bias
    stacked = LSTMWeights(w.kernel[None], w.recurrent_kernel[None], w.bias[None])
    h, hs, rec = _scan(proj[None], stacked, return_sequences, record)
    rec = {k: v[0] for k, v in rec.items()} if record else None
    return (hs[0] if return_sequences else h[0]), rec


def bidirectional_sequence(x: np.ndarray, forward: LSTMWeights, backward: LSTMWeights,
                           return_sequences: bool = False, record: bool = False):
    """`keras.layers.Bidirectional(LSTM(...))` with merge_mode="concat".

    Returns the output (..., 2U) and, with `record`, {"forward": rec, "backward": rec} where the
    backward record is flipped into the input's time order (step t is image row / word t).
    """
    x = _check(x, forward)
    proj = np.stack([x @ forward.kernel + forward.bias, (x @ backward.kernel + backward.bias)[:, ::-1]])
    stacked = LSTMWeights(*(np.stack([getattr(forward, a), getattr(backward, a)])
                            for a in ("kernel", "recurrent_kernel", "bias")))
    h, hs, rec = _scan(proj, stacked, return_sequences, record)
    out = np.concatenate([hs[0], hs[1][:, ::-1]] if return_sequences else [h[0], h[1]], axis=-1)
    if not record:
        return out, None
    return out, {"forward": {k: v[0] for k, v in rec.items()},
                 "backward": {k: v[1][:, ::-1] for k, v in rec.items()}}


# ----------------------------------------------------------------------------- saved Keras files
def _snake_case(name: str) -> str:
    """keras.src.utils.naming.to_snake_case: how Keras names a layer's weights group."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def _weight_order(name: str) -> tuple:
    """vars/<i> in creation order; a Bidirectional's forward layer before its backward layer."""
    where, index = name.rsplit("/", 1)
    return "backward" in where, where, int(index)


def read_keras_file(path: Path) -> tuple[dict, dict[str, list[np.ndarray]]]:
    """(the functional model's config, {layer name: weights in `get_weights()` order}) of a saved
    model, read from the .keras zip (config.json and model.weights.h5) with h5py: no Keras.

    Keras stores a layer's variables under layers/<snake_case class name>[_<n>]/..., numbered in
    the order of `model.layers`; a wrapper's under its inner layers' paths.
    """
    with zipfile.ZipFile(path) as zf:
        config = json.loads(zf.read("config.json"))["config"]
        weights_file = h5py.File(io.BytesIO(zf.read("model.weights.h5")), "r")
    weights: dict[str, list[np.ndarray]] = {}
    with weights_file:
        seen: dict[str, int] = {}
        for layer in config["layers"]:
            if layer["class_name"] == "InputLayer":
                continue
            base = _snake_case(layer["class_name"])
            key = f"layers/{base}" if base not in seen else f"layers/{base}_{seen[base]}"
            seen[base] = seen.get(base, 0) + 1
            datasets: list[str] = []
            if key in weights_file:
                weights_file[key].visititems(
                    lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
            weights[layer["config"]["name"]] = [np.asarray(weights_file[key][n])
                                                for n in sorted(datasets, key=_weight_order)]
    return config, weights


def keras_file_layers(path: Path) -> list[tuple[str, dict, list[np.ndarray]]]:
    """[(class name, config, weights)] of every layer of a saved functional model, in order."""
    config, weights = read_keras_file(path)
    return [(layer["class_name"], layer["config"], weights[layer["config"]["name"]])
            for layer in config["layers"] if layer["class_name"] != "InputLayer"]
