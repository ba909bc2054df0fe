"""Keras layers and loading shared by the text training runs and the tests (serving reads the
saved files without Keras: `app.textmodel`, `app.trace`)."""

from __future__ import annotations

from pathlib import Path

_TIED = None


def tied_embedding_layer():
    """The `TiedEmbedding` Keras layer class (defined and registered on first use, so importing
    this module does not import Keras): an Embedding whose matrix, transposed, also gives the
    output logits when called with reverse=True (weight tying: fewer parameters, and on small
    corpora a better language model)."""
    global _TIED
    if _TIED is None:
        import keras

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

        _TIED = TiedEmbedding
    return _TIED


def load_keras_text_model(path: Path):
    """keras.saving.load_model for a text model (registers the custom layer first)."""
    import keras

    tied_embedding_layer()
    return keras.saving.load_model(path, compile=False)
