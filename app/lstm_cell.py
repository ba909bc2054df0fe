"""The LSTM cell written from its equations: once in NumPy, once as a small Keras layer.

At time step t, with input x_t, previous hidden state h_{t-1} and previous cell state c_{t-1}:

    i_t = σ(x_t W_i + h_{t-1} U_i + b_i)          input gate: how much of the candidate to add
    f_t = σ(x_t W_f + h_{t-1} U_f + b_f)          forget gate: how much of the old cell to keep
    g_t = tanh(x_t W_c + h_{t-1} U_c + b_c)       candidate: the new content
    o_t = σ(x_t W_o + h_{t-1} U_o + b_o)          output gate: how much of the cell to show
    c_t = f_t ⊙ c_{t-1} + i_t ⊙ g_t               cell state: the long-term memory
    h_t = o_t ⊙ tanh(c_t)                         hidden state: the output of the step

σ is the logistic sigmoid, ⊙ the element-wise product, h_0 = c_0 = 0. The cell state is updated
by a sum, not by a matrix product, so the gradient along c flows back through time multiplied
only by f_t: when the forget gate stays near 1, memory (and the gradient) survives many steps.

Keras stores the four gates side by side in one fused kernel W (input_dim, 4·units), one
recurrent kernel U (units, 4·units) and one bias b (4·units,), in the order i, f, c, o
(`keras.layers.LSTMCell.call` splits them in that order); `split_gates` follows it.

A bidirectional layer runs a second LSTM over the reversed sequence and concatenates the two
hidden states; with `return_sequences` the backward outputs are flipped back so that position t
holds both directions' state for time step t.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

GATE_ORDER = ("i", "f", "c", "o")  # Keras's order inside the fused kernel
TRACE_KEYS = ("i", "f", "g", "o", "c", "h")  # what `lstm_sequence(record=True)` records per step


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function, written with tanh so that it never overflows."""
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


def split_gates(z: np.ndarray, units: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pre-activations (..., 4·units) -> i, f, g, o after their activations (Keras order i, f, c, o)."""
    return (sigmoid(z[..., :units]), sigmoid(z[..., units:2 * units]),
            np.tanh(z[..., 2 * units:3 * units]), sigmoid(z[..., 3 * units:]))


@dataclass(frozen=True)
class LSTMWeights:
    """One direction's weights: kernel W (D, 4U), recurrent kernel U (U, 4U), bias b (4U,)."""

    kernel: np.ndarray
    recurrent_kernel: np.ndarray
    bias: np.ndarray

    @property
    def units(self) -> int:
        """Size of the hidden and cell states."""
        return self.recurrent_kernel.shape[0]

    @classmethod
    def from_list(cls, weights: list, dtype=np.float32) -> LSTMWeights:
        """From `keras.layers.LSTM.get_weights()` ([W, U, b]; a zero bias when use_bias=False)."""
        kernel, recurrent = (np.asarray(w, dtype) for w in weights[:2])
        bias = np.asarray(weights[2], dtype) if len(weights) > 2 else np.zeros(kernel.shape[1], dtype)
        if kernel.shape[1] != 4 * recurrent.shape[0] or recurrent.shape[1] != kernel.shape[1]:
            raise ValueError(f"not LSTM weights: kernel {kernel.shape}, recurrent {recurrent.shape}")
        return cls(kernel, recurrent, bias)


def lstm_step(x_proj: np.ndarray, h: np.ndarray, c: np.ndarray, w: LSTMWeights):
    """One time step from the input projection x_t W + b: returns (i, f, g, o, c_t, h_t)."""
    z = x_proj + h @ w.recurrent_kernel
    i, f, g, o = split_gates(z, w.units)
    c = f * c + i * g
    h = o * np.tanh(c)
    return i, f, g, o, c, h


def _half_sigmoid_scale(units: int, dtype) -> np.ndarray:
    """0.5 on the i, f, o columns, 1 on the candidate's: σ(z) = (tanh(z/2) + 1)/2, so one tanh
    over the scaled pre-activations gives all four gates."""
    scale = np.full(4 * units, 0.5, dtype)
    scale[2 * units:3 * units] = 1.0
    return scale


def _scan(proj: np.ndarray, recurrent: np.ndarray, keep_sequence: bool, record: bool):
    """The time loop for K independent LSTMs of U units at once (the two directions of a
    bidirectional layer run side by side: half the Python steps).

    proj (K, B, T, 4U) holds x_t W + b already scaled by `_half_sigmoid_scale`, recurrent
    (K, U, 4U) the equally scaled U. Returns the last h (K, B, U), every h (K, B, T, U) or None,
    and with `record` the activated gates (K, B, T, 4U) and cell states (K, B, T, U).
    """
    k, batch, steps, four_u = proj.shape
    n = four_u // 4
    h = np.zeros((k, batch, n), proj.dtype)
    c = np.zeros_like(h)
    hs = np.empty((k, batch, steps, n), proj.dtype) if keep_sequence or record else None
    acts = np.empty_like(proj) if record else None
    cs = np.empty((k, batch, steps, n), proj.dtype) if record else None
    for t in range(steps):
        a = np.tanh(proj[:, :, t] + h @ recurrent)  # tanh(z/2) for i, f, o; tanh(z) = g
        gates = 0.5 * a + 0.5  # σ(z) for i, f, o (the candidate's slot is not used)
        c = gates[..., n:2 * n] * c + gates[..., :n] * a[..., 2 * n:3 * n]
        h = gates[..., 3 * n:] * np.tanh(c)
        if hs is not None:
            hs[:, :, t] = h
        if record:
            acts[:, :, t] = gates
            acts[:, :, t, 2 * n:3 * n] = a[..., 2 * n:3 * n]
            cs[:, :, t] = c
    return h, hs, acts, cs


def _split_record(acts: np.ndarray, cs: np.ndarray, hs: np.ndarray) -> dict:
    n = cs.shape[-1]
    return {"i": acts[..., :n], "f": acts[..., n:2 * n], "g": acts[..., 2 * n:3 * n], "o": acts[..., 3 * n:],
            "c": cs, "h": hs}


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
    sequence is in that reversed order. Each step is `lstm_step`, computed with one tanh.
    """
    x = _check(x, w)
    if go_backwards:
        x = x[:, ::-1]
    scale = _half_sigmoid_scale(w.units, w.kernel.dtype)
    # One matrix product for every step's input projection, then only h @ U inside the loop.
    proj = (x @ w.kernel + w.bias) * scale
    h, hs, acts, cs = _scan(proj[None], (w.recurrent_kernel * scale)[None], return_sequences, record)
    rec = {k: v[0] for k, v in _split_record(acts, cs, hs).items()} if record else None
    return (hs[0] if return_sequences else h[0]), rec


def bidirectional_sequence(x: np.ndarray, forward: LSTMWeights, backward: LSTMWeights,
                           return_sequences: bool = False, record: bool = False):
    """`keras.layers.Bidirectional(LSTM(...))` with merge_mode="concat".

    Returns the output (..., 2U) and, with `record`, {"forward": rec, "backward": rec} where the
    backward record is flipped into the input's time order (step t is image row / word t).
    """
    x = _check(x, forward)
    scale = _half_sigmoid_scale(forward.units, forward.kernel.dtype)
    proj = np.stack([x @ forward.kernel + forward.bias, (x @ backward.kernel + backward.bias)[:, ::-1]]) * scale
    recurrent = np.stack([forward.recurrent_kernel, backward.recurrent_kernel]) * scale
    h, hs, acts, cs = _scan(proj, recurrent, return_sequences, record)
    if return_sequences:
        out = np.concatenate([hs[0], hs[1][:, ::-1]], axis=-1)
    else:
        out = np.concatenate([h[0], h[1]], axis=-1)
    if not record:
        return out, None
    rec = _split_record(acts, cs, hs)
    return out, {"forward": {k: v[0] for k, v in rec.items()},
                 "backward": {k: v[1][:, ::-1] for k, v in rec.items()}}


# ----------------------------------------------------------------------------- the Keras layer
def _keras_layer_class():
    """Defined lazily so that importing this module does not import Keras (the app's NumPy path)."""
    import keras
    from keras import ops

    @keras.saving.register_keras_serializable(package="lstmlab")
    class LSTMFromScratch(keras.layers.Layer):
        """An LSTM layer whose cell is the equations of this module's docstring in `keras.ops`.

        Same weights, shapes and gate order (i, f, c, o) as `keras.layers.LSTM`, so
        `set_weights(lstm.get_weights())` makes the two layers compute the same function; it also
        has the attributes `keras.layers.Bidirectional` needs (go_backwards, return_sequences,
        return_state, stateful), so it can be wrapped like an LSTM.
        """

        def __init__(self, units: int, return_sequences: bool = False, go_backwards: bool = False, **kwargs):
            super().__init__(**kwargs)
            self.units = int(units)
            self.return_sequences = return_sequences
            self.go_backwards = go_backwards
            self.return_state = False
            self.stateful = False

        def build(self, input_shape):
            dim, n = input_shape[-1], self.units
            self.kernel = self.add_weight(shape=(dim, 4 * n), initializer="glorot_uniform", name="kernel")
            self.recurrent_kernel = self.add_weight(shape=(n, 4 * n), initializer="orthogonal",
                                                    name="recurrent_kernel")
            # Forget-gate bias starts at 1 (unit_forget_bias, as in Keras): remember by default.
            self.bias = self.add_weight(
                shape=(4 * n,), name="bias",
                initializer=lambda shape, dtype=None: ops.concatenate(
                    [ops.zeros((n,)), ops.ones((n,)), ops.zeros((2 * n,))]))

        def call(self, inputs, initial_state=None):
            if initial_state is not None:  # Bidirectional passes the argument; only zeros are supported
                raise ValueError("LSTMFromScratch starts from h = c = 0; initial_state is not supported")
            n = self.units
            x = ops.flip(inputs, axis=1) if self.go_backwards else inputs
            proj = ops.matmul(x, self.kernel) + self.bias  # every step's x_t W + b at once
            batch = ops.shape(inputs)[0]
            state = (ops.zeros((batch, n), dtype=self.compute_dtype), ops.zeros((batch, n), dtype=self.compute_dtype))

            def step(carry, z_x):
                h, c = carry
                z = z_x + ops.matmul(h, self.recurrent_kernel)
                i = ops.sigmoid(z[:, :n])
                f = ops.sigmoid(z[:, n:2 * n])
                g = ops.tanh(z[:, 2 * n:3 * n])
                o = ops.sigmoid(z[:, 3 * n:])
                c = f * c + i * g
                h = o * ops.tanh(c)
                return (h, c), (h, c)  # TensorFlow's scan wants ys shaped like the carry

            (h, _), (hs, _) = ops.scan(step, state, ops.moveaxis(proj, 1, 0))
            return ops.moveaxis(hs, 0, 1) if self.return_sequences else h

        def compute_output_shape(self, input_shape):
            if self.return_sequences:
                return (input_shape[0], input_shape[1], self.units)
            return (input_shape[0], self.units)

        def get_config(self):
            return {**super().get_config(), "units": self.units, "return_sequences": self.return_sequences,
                    "go_backwards": self.go_backwards}

    return LSTMFromScratch


_LAYER = None


def __getattr__(name: str):
    """`from app.lstm_cell import LSTMFromScratch` builds the Keras class on first use."""
    global _LAYER
    if name == "LSTMFromScratch":
        if _LAYER is None:
            _LAYER = _keras_layer_class()
        return _LAYER
    raise AttributeError(name)
