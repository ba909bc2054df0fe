"""The three recurrent cells the bench trains (LSTM, GRU, SimpleRNN) as layers that the served text
model steps one token at a time in NumPy: the GRU's and SimpleRNN's equations here (the LSTM's in
app/lstm_cell.py), each layer read from a saved Keras layer's config and weights.
Details: docs/DESIGN.md, "Served text models (app/textmodel.py)"."""

from __future__ import annotations

import numpy as np

from app.lstm_cell import TRACE_KEYS, LSTMWeights, lstm_step, lstm_weights, sigmoid

# One layer's state: arrays (rows, units), the output h first: (h, c) for an LSTM, (h,) otherwise.
State = tuple[np.ndarray, ...]


class StepLayer:
    """One recurrent layer of a served text model.

    `project(x)` is the part of a step that does not depend on the state (x W + input bias: for
    the first layer it is looked up per token); `step(x_proj, state)` does the rest and returns
    the new state and what the step recorded (`RECORDS`, arrays (rows, units)). `SHOWN` is the
    order in which a trace displays the records."""

    CELL = ""
    STATES = 1  # arrays in the state
    RECORDS: tuple[str, ...] = ("h",)
    SHOWN: tuple[str, ...] = ("h",)

    def __init__(self, name: str, kernel: np.ndarray, input_bias: np.ndarray, units: int):
        self.name, self.kernel, self.input_bias, self.units = name, kernel, input_bias, units

    def project(self, x: np.ndarray) -> np.ndarray:
        """x W + b: the input's share of the step."""
        return x @ self.kernel + self.input_bias

    def zero_state(self, batch: int) -> State:
        """The state before the first token: zeros."""
        return tuple(np.zeros((batch, self.units), np.float32) for _ in range(self.STATES))

    def step(self, x_proj: np.ndarray, state: State) -> tuple[State, tuple]:
        """One step from the input projection: (new state, records)."""
        raise NotImplementedError


class LSTMStep(StepLayer):
    """An LSTM layer: state (h, c); records the gates i, f, g, o and c, h (`app.lstm_cell.lstm_step`)."""

    CELL, STATES, RECORDS, SHOWN = "lstm", 2, TRACE_KEYS, ("f", "i", "g", "o", "c", "h")

    def __init__(self, name: str, w: LSTMWeights):
        super().__init__(name, w.kernel, w.bias, w.units)
        self.weights = w

    def step(self, x_proj, state):
        h, c = state
        values = lstm_step(x_proj, h, c, self.weights)
        return (values[5], values[4]), values


class GRUStep(StepLayer):
    """A Keras 3 GRU layer (reset_after=True: bias (2, 3U), input then recurrent; gate order z, r, h):
    z = σ(x W_z + b_z + h U_z + b'_z), r likewise, g = tanh(x W_g + b_g + r ⊙ (h U_g + b'_g)),
    h_t = z ⊙ h + (1 − z) ⊙ g. Records the update gate z, the reset gate r, the candidate g and h."""

    CELL, RECORDS, SHOWN = "gru", ("z", "r", "g", "h"), ("z", "r", "g", "h")

    def __init__(self, name: str, weights: list):
        kernel, recurrent = (np.asarray(w, np.float32) for w in weights[:2])
        units = recurrent.shape[0]
        if kernel.shape[1] != 3 * units or recurrent.shape[1] != 3 * units:
            raise ValueError(f"{name}: not GRU weights: kernel {kernel.shape}, recurrent {recurrent.shape}")
        bias = np.asarray(weights[2], np.float32) if len(weights) > 2 else np.zeros((2, 3 * units), np.float32)
        if bias.shape != (2, 3 * units):
            raise ValueError(f"{name}: GRU bias {bias.shape}: only reset_after=True GRUs (bias (2, 3·units)) are served")
        # b'_z and b'_r are only ever added to the input's share: they join the input bias (so the
        # first layer's token table holds them); b'_g stays apart, as r multiplies it.
        input_bias = bias[0] + np.concatenate([bias[1][:2 * units], np.zeros(units, np.float32)])
        super().__init__(name, kernel, input_bias, units)
        self.recurrent_kernel, self.candidate_bias = recurrent, bias[1][2 * units:]

    def step(self, x_proj, state):
        (h,) = state
        u = self.units
        inner = h @ self.recurrent_kernel
        zr = sigmoid(x_proj[..., :2 * u] + inner[..., :2 * u])  # both gates in one pass
        z, r = zr[..., :u], zr[..., u:]
        g = np.tanh(x_proj[..., 2 * u:] + r * (inner[..., 2 * u:] + self.candidate_bias))
        h = g + z * (h - g)  # = z ⊙ h + (1 − z) ⊙ g
        return (h,), (z, r, g, h)


class SimpleRNNStep(StepLayer):
    """A SimpleRNN layer: h_t = tanh(x W + b + h U). No gates: records h only."""

    CELL = "simple_rnn"

    def __init__(self, name: str, weights: list):
        kernel, recurrent = (np.asarray(w, np.float32) for w in weights[:2])
        units = recurrent.shape[0]
        if kernel.shape[1] != units or recurrent.shape != (units, units):
            raise ValueError(f"{name}: not SimpleRNN weights: kernel {kernel.shape}, recurrent {recurrent.shape}")
        bias = np.asarray(weights[2], np.float32) if len(weights) > 2 else np.zeros(units, np.float32)
        super().__init__(name, kernel, bias, units)
        self.recurrent_kernel = recurrent

    def step(self, x_proj, state):
        h = np.tanh(x_proj + state[0] @ self.recurrent_kernel)
        return (h,), (h,)


RECURRENT = ("LSTM", "GRU", "SimpleRNN")  # the Keras layers `step_layer` reads


def step_layer(kind: str, cfg: dict, weights: list) -> StepLayer:
    """The step layer of a saved Keras LSTM, GRU or SimpleRNN layer (class name, config, weights);
    ValueError for settings the NumPy step does not compute."""
    name = cfg.get("name", kind)
    if cfg.get("go_backwards") or cfg.get("stateful") or cfg.get("return_state"):
        raise ValueError(f"{name}: a served text model reads forwards, from a zero state, without returned state")
    if kind == "LSTM":
        return LSTMStep(name, lstm_weights(cfg, weights))
    if cfg.get("activation") != "tanh" or (kind == "GRU" and cfg.get("recurrent_activation") != "sigmoid"):
        raise ValueError(f"{name}: the NumPy step supports the default {kind} activations only")
    if kind == "GRU":
        if not cfg.get("reset_after", True):
            raise ValueError(f"{name}: only reset_after=True GRUs (Keras 3's default) are served")
        return GRUStep(name, weights)
    if kind == "SimpleRNN":
        return SimpleRNNStep(name, weights)
    raise ValueError(f"{name}: {kind} is not a recurrent layer the served step runs")


def stack_rows(states: list[list[State]]) -> list[State]:
    """One batched model state (a State per layer) from several, row after row."""
    return [tuple(np.concatenate(arrays) for arrays in zip(*layer)) for layer in zip(*states)]


def state_row(state: list[State], row: int) -> list[State]:
    """Row `row` of a batched model state, as a one-row state."""
    return [tuple(a[row:row + 1] for a in layer) for layer in state]
