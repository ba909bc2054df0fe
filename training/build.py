"""Model builders, one per kind of task: image classifiers (LSTM-only: no convolutions) and the
word/syllable generator of the text tasks.

Each image model takes uint8-range pixels (height, width, channels) and rescales them itself,
so serving feeds the model exactly what `app.imaging.image_to_array` returns.
"""

from __future__ import annotations

import keras
from keras import layers, ops

from app.tasks import TaskSpec
from training.layers import tied_embedding_layer

BASELINE_RECIPE = (
    "The lab's recipe: LSTM(64, return_sequences) → Dropout(0.2) → LSTM(64) → Dense(32, relu) → "
    "Dropout(0.2) → Dense(classes, softmax); rows as time steps; Adam; labels left as integers "
    "(the lab divided them by 255) and pixels scaled to [0, 1]."
)


def _rows(x, spec: TaskSpec):
    """(H, W, C) pixels -> (H, W*C) sequence: each image row is one time step."""
    h, w, c = spec.input_shape
    return layers.Reshape((h, w * c), name="rows")(x)


def make_baseline(spec: TaskSpec) -> keras.Model:
    """The seed lab's row-wise LSTM, kept as the named baseline, with its bugs fixed."""
    inputs = keras.Input(spec.input_shape, name="pixels")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    x = _rows(x, spec)
    x = layers.LSTM(64, return_sequences=True, name="lstm_1")(x)
    x = layers.Dropout(0.2)(x)
    x = layers.LSTM(64, name="lstm_2")(x)
    x = layers.Dense(32, activation="relu")(x)
    x = layers.Dropout(0.2)(x)
    outputs = layers.Dense(len(spec.classes), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{spec.slug}_baseline")


def _bi(units: int, name: str, seq: bool = True):
    return layers.Bidirectional(layers.LSTM(units, return_sequences=seq), name=name)


def make_rows_cols(spec: TaskSpec, units: int = 128) -> keras.Model:
    """Two stacked bidirectional LSTMs read the rows, two more read the columns; the two
    summaries are joined (a one-level ReNet sweep). Wins over rows alone on digits and clothes."""
    h, w, c = spec.input_shape
    inputs = keras.Input(spec.input_shape, name="pixels")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    rows = _rows(x, spec)
    rows = layers.LayerNormalization(name="rows_norm")(rows)
    r = _bi(units, "rows_bilstm_1")(rows)
    r = _bi(units, "rows_bilstm_2", seq=False)(r)
    cols = layers.Permute((2, 1, 3), name="transpose")(x)
    cols = layers.Reshape((w, h * c), name="cols")(cols)
    cols = layers.LayerNormalization(name="cols_norm")(cols)
    k = _bi(units, "cols_bilstm_1")(cols)
    k = _bi(units, "cols_bilstm_2", seq=False)(k)
    z = layers.Concatenate(name="join")([r, k])
    z = layers.Dropout(0.3)(z)
    z = layers.Dense(128, activation="relu", name="dense")(z)
    z = layers.Dropout(0.3)(z)
    outputs = layers.Dense(len(spec.classes), activation="softmax", name="probs")(z)
    return keras.Model(inputs, outputs, name=f"{spec.slug}_rows_cols")


def default_patch(h: int, w: int) -> int:
    """The patch side (at least 2, dividing both sides) whose grid is closest to 8 patches a side."""
    sides = [p for p in range(2, min(h, w) + 1) if h % p == 0 and w % p == 0] or [1]
    return min(sides, key=lambda p: (abs(h / p - 8), p))


def make_renet(spec: TaskSpec, units: int = 64, patch: int | None = None, top_units: int = 128) -> keras.Model:
    """ReNet (Visin et al. 2015) with LSTMs: cut the image into patches, sweep a bidirectional
    LSTM along every row of patches, then another down every column, then read the resulting
    feature map row by row with a final bidirectional LSTM.

    The default grid is the one closest to 8×8 (`patch` = side // 8 when it divides the side):
    serving time is mostly the number of sequential steps, and a coarser grid has fewer
    (docs/BENCHMARKS.md compares the grids)."""
    h, w, c = spec.input_shape
    patch = patch or default_patch(h, w)
    gh, gw = h // patch, w // patch
    inputs = keras.Input(spec.input_shape, name="pixels")
    x = layers.Rescaling(1 / 255, name="scale")(inputs)
    # (H, W, C) -> (gh, patch, gw, patch, C) -> (gh, gw, patch*patch*C)
    x = layers.Reshape((gh, patch, gw, patch * c), name="cut")(x)
    x = layers.Permute((1, 3, 2, 4), name="gather")(x)
    x = layers.Reshape((gh, gw, patch * patch * c), name="patches")(x)
    x = layers.LayerNormalization(name="patch_norm")(x)
    x = layers.TimeDistributed(_bi(units, "bilstm"), name="sweep_rows")(x)  # along each row
    x = layers.Permute((2, 1, 3), name="to_cols")(x)
    x = layers.TimeDistributed(_bi(units, "bilstm"), name="sweep_cols")(x)  # down each column
    x = layers.Permute((2, 1, 3), name="to_rows")(x)
    x = layers.LayerNormalization(name="map_norm")(x)
    x = layers.Reshape((gh, gw * 2 * units), name="map_rows")(x)
    x = layers.Dropout(0.2)(x)
    x = _bi(top_units, "read_rows", seq=False)(x)
    x = layers.Dropout(0.3)(x)
    x = layers.Dense(128, activation="relu", name="dense")(x)
    x = layers.Dropout(0.3)(x)
    outputs = layers.Dense(len(spec.classes), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name=f"{spec.slug}_renet")


RECIPE_CELLS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}
RECIPE_HEAD_UNITS = 32  # the seed notebook's Dense(32, relu) before the classes


def _recurrent(cell: str, units: int, bidirectional: bool, seq: bool, name: str):
    """One recurrent layer of a recipe: the chosen cell, optionally bidirectional."""
    try:
        rnn = RECIPE_CELLS[cell](units, return_sequences=seq, name=f"{name}_{cell}")
    except KeyError:
        raise ValueError(f"unknown cell {cell!r}; choose from {sorted(RECIPE_CELLS)}") from None
    return layers.Bidirectional(rnn, name=name) if bidirectional else rnn


def _stack(x, prefix: str, cell: str, units: int, n: int, bidirectional: bool, dropout: float):
    """`n` recurrent layers over a sequence, the last one returning only its final state."""
    for i in range(n):
        x = _recurrent(cell, units, bidirectional, i < n - 1, f"{prefix}_{i + 1}")(x)
        if dropout and i < n - 1:
            x = layers.Dropout(dropout, name=f"{prefix}_dropout_{i + 1}")(x)
    return x


def make_recipe_model(spec: TaskSpec, reading: str = "rows", cell: str = "lstm", units: int = 64,
                      layers: int = 2, bidirectional: bool = False, dropout: float = 0.2) -> keras.Model:
    """The lab bench's model from a student's recipe (app/lab/recipes.py counts its parameters):
    `reading` rows (each image row a time step), rows_cols (rows and columns, joined) or patches
    (an 8×8 grid of patches swept along rows then down columns, then read row by row: ReNet);
    `layers` stacked `cell` layers (lstm, gru, simple_rnn) of `units`, bidirectional or not;
    dropout between the recurrent layers and before the classes; Dense(32, relu) head."""
    n_layers = int(layers)
    h, w, c = spec.input_shape
    inputs = keras.Input(spec.input_shape, name="pixels")
    x = keras.layers.Rescaling(1 / 255, name="scale")(inputs)
    if reading == "rows":
        z = _stack(_rows(x, spec), "rows", cell, units, n_layers, bidirectional, dropout)
    elif reading == "rows_cols":
        r = _stack(_rows(x, spec), "rows", cell, units, n_layers, bidirectional, dropout)
        cols = keras.layers.Reshape((w, h * c), name="cols")(keras.layers.Permute((2, 1, 3), name="transpose")(x))
        k = _stack(cols, "cols", cell, units, n_layers, bidirectional, dropout)
        z = keras.layers.Concatenate(name="join")([r, k])
    elif reading == "patches":
        patch = max(1, min(h, w) // 8)
        gh, gw = h // patch, w // patch
        if (gh * patch, gw * patch) != (h, w):  # e.g. 28 = 9×3 + 1: drop the last row/column of pixels
            x = keras.layers.Cropping2D(((0, h - gh * patch), (0, w - gw * patch)), name="crop")(x)
        x = keras.layers.Reshape((gh, patch, gw, patch * c), name="cut")(x)
        x = keras.layers.Permute((1, 3, 2, 4), name="gather")(x)
        x = keras.layers.Reshape((gh, gw, patch * patch * c), name="patches")(x)
        x = keras.layers.TimeDistributed(_recurrent(cell, units, bidirectional, True, "sweep"), name="sweep_rows")(x)
        x = keras.layers.Permute((2, 1, 3), name="to_cols")(x)
        x = keras.layers.TimeDistributed(_recurrent(cell, units, bidirectional, True, "sweep"), name="sweep_cols")(x)
        x = keras.layers.Permute((2, 1, 3), name="to_rows")(x)
        width = units * (2 if bidirectional else 1)
        x = keras.layers.Reshape((gh, gw * width), name="map_rows")(x)
        if dropout:
            x = keras.layers.Dropout(dropout, name="map_dropout")(x)
        z = _stack(x, "read_rows", cell, units, n_layers, bidirectional, dropout)
    else:
        raise ValueError(f"unknown reading {reading!r}; choose rows, rows_cols or patches")
    z = keras.layers.Dense(RECIPE_HEAD_UNITS, activation="relu", name="dense")(z)
    if dropout:
        z = keras.layers.Dropout(dropout, name="dense_dropout")(z)
    outputs = keras.layers.Dense(len(spec.classes), activation="softmax", name="probs")(z)
    return keras.Model(inputs, outputs, name=f"{spec.slug}_{reading}_{cell}")


IMAGE_BUILDERS = {"baseline": make_baseline, "rows_cols": make_rows_cols, "renet": make_renet,
                  "recipe": make_recipe_model}


def make_image_classifier(spec: TaskSpec, architecture: str | None = None, **kw) -> keras.Model:
    """The image model for `spec` (its own architecture unless one is named)."""
    name = architecture or spec.architecture or "rows_cols"
    try:
        builder = IMAGE_BUILDERS[name]
    except KeyError:
        raise ValueError(f"unknown architecture {name!r}; choose from {sorted(IMAGE_BUILDERS)}") from None
    return builder(spec, **kw)


# ----------------------------------------------------------------------------- text
TINY_MODEL = {"embedding": 8, "units": 16, "dropout": 0.0, "projection": 0}


class WeightDropCell(layers.LSTMCell):
    """An LSTM cell that uses a dropped copy of its recurrent kernel when `WeightDropLSTM` sets one."""

    def __init__(self, units, weight_drop=0.0, **kw):
        super().__init__(units, implementation=2, **kw)
        self.weight_drop = float(weight_drop)
        self.seed_generator = keras.random.SeedGenerator(kw.get("seed"))
        object.__setattr__(self, "_dropped", None)

    def call(self, inputs, states, training=False):
        h_tm1, c_tm1 = states
        kernel = self._dropped if (training and self._dropped is not None) else self.recurrent_kernel
        z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, kernel) + self.bias
        c, o = self._compute_carry_and_output_fused(ops.split(z, 4, axis=1), c_tm1)
        h = o * self.activation(c)
        return h, [h, c]


@keras.saving.register_keras_serializable(package="lstmlab")
class WeightDropLSTM(layers.RNN):
    """AWD-LSTM's weight drop (Merity et al. 2017): an LSTM whose recurrent kernel, while training,
    is multiplied by one Bernoulli mask per batch (DropConnect on the hidden-to-hidden weights, the
    same mask at every step). Its weights are a plain LSTM's [kernel, recurrent_kernel, bias] and at
    inference it is a plain LSTM, so the saved model uses `keras.layers.LSTM` (`plain_twin`) and
    serving is unchanged."""

    def __init__(self, units, weight_drop=0.0, **kw):
        super().__init__(WeightDropCell(units, weight_drop), **kw)
        self.units, self.weight_drop = int(units), float(weight_drop)

    def inner_loop(self, sequences, initial_state, mask, training=False):
        cell = self.cell
        if training and cell.weight_drop > 0:
            dropped = keras.random.dropout(cell.recurrent_kernel, cell.weight_drop, seed=cell.seed_generator)
            object.__setattr__(cell, "_dropped", dropped)
        try:
            return super().inner_loop(sequences, initial_state, mask=mask, training=training)
        finally:
            object.__setattr__(cell, "_dropped", None)

    def get_config(self):
        cfg = {k: v for k, v in super().get_config().items() if k != "cell"}
        return cfg | {"units": self.units, "weight_drop": self.weight_drop}


def plain_twin(model, vocab_size: int, kwargs: dict, name: str):
    """The inference model of a training model made with `weight_drop`: the same stack with a
    plain LSTM, carrying the trained weights (what is saved and served)."""
    if not kwargs.get("weight_drop"):
        return model
    twin = make_word_lstm(vocab_size, name=name, **(kwargs | {"weight_drop": 0.0}))
    twin.set_weights(model.get_weights())
    return twin


def make_word_lstm(vocab_size: int, embedding: int = 128, units: int = 256, dropout: float = 0.4,
                   projection: int = 128, tied: bool = False, recurrent_dropout: float = 0.0,
                   word_dropout: float = 0.0, locked: bool = False, weight_drop: float = 0.0,
                   cell: str = "lstm", rnn_layers: int = 1, name: str = "word_lstm"):
    """Embedding → Dropout → LSTM (every step) → Dropout → [Dense projection] → Dense softmax.

    The lab's reference is Embedding(10) → LSTM(100) → Dropout(0.1) → Dense(softmax); this is
    wider, with more dropout (small corpora), and a linear projection that keeps the output
    layer (the largest) small. With `tied` the output layer is the embedding matrix transposed
    (projection = embedding width), which halves the parameters and regularises.
    `word_dropout` drops whole words (every unit of a token's embedding) and `locked` drops the
    same units at every step of a sequence (SpatialDropout1D, AWD-LSTM's variational dropout);
    both are Dropout layers, which serving skips. `weight_drop` trains a `WeightDropLSTM`
    (DropConnect on the recurrent kernel); save its `plain_twin`. `cell` ("lstm", "gru",
    "simple_rnn") and `rnn_layers` stack that many recurrent layers, dropout between them (the first
    keeps the name "lstm" when it is one, so one-layer LSTM models are unchanged).
    """
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    if tied:
        emb = tied_embedding_layer()(vocab_size, embedding, name="embedding")
    else:
        emb = layers.Embedding(vocab_size, embedding, name="embedding")
    x = emb(tokens)
    if word_dropout:
        x = layers.Dropout(word_dropout, noise_shape=(None, None, 1), name="word_dropout")(x)
    drop = layers.SpatialDropout1D if locked else layers.Dropout
    x = drop(dropout, name="embedding_dropout")(x)
    rnn = {"lstm": layers.LSTM, "gru": layers.GRU, "simple_rnn": layers.SimpleRNN}[cell]
    for k in range(rnn_layers):
        layer_name = cell if k == 0 else f"{cell}_{k + 1}"
        if k:
            x = drop(dropout, name=f"{cell}_{k}_dropout")(x)
        if weight_drop and cell == "lstm":
            x = WeightDropLSTM(units, weight_drop, return_sequences=True, name=layer_name)(x)
        else:
            x = rnn(units, return_sequences=True, recurrent_dropout=recurrent_dropout, name=layer_name)(x)
    x = drop(dropout, name=f"{cell}_dropout")(x)
    if tied:
        x = layers.Dense(embedding, name="projection")(x)
        x = layers.Dropout(dropout / 2, name="projection_dropout")(x)
        probs = layers.Activation("softmax", name="next_token")(emb(x, reverse=True))
    else:
        if projection:
            x = layers.Dense(projection, name="projection")(x)
        probs = layers.Dense(vocab_size, activation="softmax", name="next_token")(x)
    return keras.Model(tokens, probs, name=name)
