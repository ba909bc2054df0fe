"""Keras layers of the lab and loading a text model in Keras, for training runs, benchmarks and
tests (serving reads the saved files without Keras: `app.textmodel`, `app.trace`). Each class is
defined and registered on first use, so importing this module does not import Keras."""

from __future__ import annotations

import functools
from pathlib import Path

import keras
from keras import ops


@functools.cache
def lstm_from_scratch_layer():
    """The `LSTMFromScratch` Keras layer class: the LSTM cell's equations written in `keras.ops`."""
    @keras.saving.register_keras_serializable(package="lstmlab")
    class LSTMFromScratch(keras.layers.Layer):
        """An LSTM layer whose cell is the equations of `app.lstm_cell` in `keras.ops`.

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


@functools.cache
def tied_embedding_layer():
    """The `TiedEmbedding` Keras layer class: an Embedding whose matrix, transposed, also gives the
    output logits when called with reverse=True (weight tying: fewer parameters, and on small
    corpora a better language model)."""
    @keras.saving.register_keras_serializable(package="lstmlab")
    class TiedEmbedding(keras.layers.Layer):
        def __init__(self, input_dim, output_dim, **kw):
            super().__init__(**kw)
            self.input_dim, self.output_dim = int(input_dim), int(output_dim)

        def build(self, input_shape=None):
            self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim), name="embeddings",
                                              initializer=keras.initializers.RandomUniform(-0.05, 0.05))
            self.output_bias = self.add_weight(shape=(self.input_dim,), initializer="zeros", name="output_bias")

        def call(self, inputs, reverse=False):
            if reverse:
                return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.output_bias
            return keras.ops.take(self.embeddings, keras.ops.cast(inputs, "int32"), axis=0)

        def compute_output_spec(self, inputs, reverse=False):
            last = self.input_dim if reverse else self.output_dim
            shape = tuple(inputs.shape[:-1]) if reverse else tuple(inputs.shape)
            return keras.KerasTensor(shape + (last,), dtype=self.compute_dtype)

        def get_config(self):
            return super().get_config() | {"input_dim": self.input_dim, "output_dim": self.output_dim}

    return TiedEmbedding


def load_keras_text_model(path: Path):
    """keras.saving.load_model for a text model (registers the custom layer first)."""
    tied_embedding_layer()
    return keras.saving.load_model(path, compile=False)
