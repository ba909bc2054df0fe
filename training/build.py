"""Model builders, one per kind of task. Every image model is LSTM-only: no convolutions.

Each image model takes uint8-range pixels (height, width, channels) and rescales them itself,
so serving feeds the model exactly what `app.imaging.image_to_array` returns.
"""

from __future__ import annotations

import keras
from keras import layers

from app.tasks import TaskSpec

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
