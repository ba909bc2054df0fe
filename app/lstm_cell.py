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


def lstm_sequence(x: np.ndarray, w: LSTMWeights, return_sequences: bool = False, go_backwards: bool = False,
                  record: bool = False):
    """Run an LSTM over x (batch, T, D) like `keras.layers.LSTM` (default activations, no mask).

    Returns the output ((batch, T, U) with `return_sequences`, else the last h (batch, U)) and,
    with `record`, a dict of TRACE_KEYS -> (batch, T, U) arrays in processing order (else None).
    With `go_backwards` the sequence is read from its last step, and, as in Keras, the returned
    sequence is in that reversed order.
    """
    x = np.asarray(x, dtype=w.kernel.dtype)
    if x.ndim != 3:
        raise ValueError(f"expected (batch, time, features), got shape {x.shape}")
    if go_backwards:
        x = x[:, ::-1]
    batch, steps, _ = x.shape
    # One matrix product for every step's input projection, then only h @ U inside the loop.
    proj = x @ w.kernel + w.bias
    h = np.zeros((batch, w.units), w.kernel.dtype)
    c = np.zeros_like(h)
    hs = np.empty((batch, steps, w.units), w.kernel.dtype) if return_sequences or record else None
    rec = {k: np.empty((batch, steps, w.units), w.kernel.dtype) for k in TRACE_KEYS} if record else None
    for t in range(steps):
        i, f, g, o, c, h = lstm_step(proj[:, t], h, c, w)
        if hs is not None:
            hs[:, t] = h
        if rec is not None:
            for key, value in zip(TRACE_KEYS, (i, f, g, o, c, h)):
                rec[key][:, t] = value
    return (hs if return_sequences else h), rec


def bidirectional_sequence(x: np.ndarray, forward: LSTMWeights, backward: LSTMWeights,
                           return_sequences: bool = False, record: bool = False):
    """`keras.layers.Bidirectional(LSTM(...))` with merge_mode="concat".

    Returns the output (..., 2U) and, with `record`, {"forward": rec, "backward": rec} where the
    backward record is flipped into the input's time order (step t is image row / word t).
    """
    y, rec_f = lstm_sequence(x, forward, return_sequences, record=record)
    y_rev, rec_b = lstm_sequence(x, backward, return_sequences, go_backwards=True, record=record)
    if return_sequences:
        y_rev = y_rev[:, ::-1]
    out = np.concatenate([y, y_rev], axis=-1)
    if not record:
        return out, None
    return out, {"forward": rec_f, "backward": {k: v[:, ::-1] for k, v in rec_b.items()}}


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
