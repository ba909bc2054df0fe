"""The weight shapes the web computes from a config.json (no Keras) equal those real Keras models
save, for every allowed layer class and the options that change a weight's shape."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from app.lab import safekeras, weightshapes

keras = pytest.importorskip("keras")
L = keras.layers
MODELS = ("recurrent", "bidirectional", "text", "image", "normalised", "channels_first", "merged")


def _models():
    """(name, input shape, layers): together they use every class of safekeras.LAYERS."""
    return [
        ("recurrent", (6, 5), [L.Masking(), L.LSTM(4, return_sequences=True), L.GRU(3, return_sequences=True),
                               L.GRU(3, reset_after=False, return_sequences=True), L.SimpleRNN(2, return_sequences=True),
                               L.LSTM(3, use_bias=False, return_sequences=True), L.GRU(2, use_bias=False), L.Dense(2)]),
        ("bidirectional", (None, 4), [L.Bidirectional(L.LSTM(3, return_sequences=True)),
                                      L.Bidirectional(L.GRU(2, return_sequences=True), merge_mode="sum"),
                                      L.Bidirectional(L.SimpleRNN(2, return_sequences=True),
                                                      backward_layer=L.SimpleRNN(2, return_sequences=True, go_backwards=True)),
                                      L.Bidirectional(L.LSTM(2), merge_mode="ave"), L.Dense(3, use_bias=False)]),
        ("text", (7,), [L.Embedding(20, 6, mask_zero=True), L.SpatialDropout1D(0.1), L.LSTM(4, return_sequences=True),
                        L.TimeDistributed(L.Dense(3)), L.GlobalAveragePooling1D(), L.RepeatVector(3),
                        L.GlobalMaxPooling1D(keepdims=True), L.Flatten(), L.Dense(2, activation="softmax")]),
        ("image", (16, 14, 1), [L.Rescaling(1 / 255), L.Normalization(), L.Conv2D(4, 3, padding="same", strides=2),
                                L.MaxPooling2D(), L.Conv2D(6, (2, 3), groups=2, dilation_rate=1),
                                L.AveragePooling2D(pool_size=(1, 2), padding="same"), L.BatchNormalization(),
                                L.Reshape((-1, 6)), L.Permute((2, 1)), L.Conv1D(3, 2, padding="causal"),
                                L.MaxPooling1D(2, strides=1), L.Conv1D(4, 2, dilation_rate=2, use_bias=False),
                                L.AveragePooling1D(2), L.Flatten(), L.Dense(4), L.Activation("relu"), L.ReLU(),
                                L.Dropout(0.2), L.GaussianNoise(0.1), L.Dense(3), L.Softmax()]),
        ("normalised", (5, 6), [L.LayerNormalization(), L.LayerNormalization(axis=[1, 2], center=False),
                                L.LayerNormalization(scale=False), L.BatchNormalization(center=False, scale=False),
                                L.BatchNormalization(axis=1), L.Normalization(axis=(1, 2)),
                                L.Normalization(mean=0.5, variance=2.0), L.Reshape((5, 2, 3)), L.TimeDistributed(L.LSTM(2)),
                                L.Dense(2)]),
        ("channels_first", (3, 9), [L.Conv1D(4, 3, data_format="channels_first"),
                                    L.MaxPooling1D(data_format="channels_first"),
                                    L.GlobalAveragePooling1D(data_format="channels_first"), L.Dense(2)]),
    ]


def _merged_model():
    """A Functional model whose branches every merge layer joins (the shapes a DAG passes on)."""
    inputs = keras.Input((10, 9, 2))
    x = L.Cropping2D(((1, 1), (0, 1)))(inputs)
    rows = L.Reshape((8, 16))(x)
    cols = L.Reshape((8, 16))(L.Permute((2, 1, 3))(x))
    seq = L.Concatenate(axis=1)([rows, cols])
    swept = L.TimeDistributed(L.Bidirectional(L.GRU(3, return_sequences=True)))(L.Reshape((4, 4, 16))(seq))
    a, b = L.LSTM(4)(seq), L.Dense(4)(L.Flatten()(swept))
    joined = [L.Add()([a, b]), L.Average()([a, b, a]), L.Multiply()([a, b]), L.Subtract()([a, b]),
              L.Maximum()([a, b]), L.Minimum()([a, b])]
    return keras.Model(inputs, L.Dense(2)(L.Concatenate()(joined)))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """Every model of _models() saved with model.save: name -> path."""
    folder = tmp_path_factory.mktemp("shapes")
    paths = {}
    for name, shape, layers in _models():
        model = keras.Sequential([keras.Input(shape), *layers])
        model.save(folder / f"{name}.keras")
        paths[name] = folder / f"{name}.keras"
    _merged_model().save(folder / "merged.keras")
    paths["merged"] = folder / "merged.keras"
    assert tuple(paths) == MODELS
    return paths


def _archive(path):
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("config.json")), safekeras.read_shapes(zf.read("model.weights.h5"))


def test_every_allowed_layer_class_is_covered(saved):
    used = {obj["class_name"] for path in saved.values() for obj in _walk(_archive(path)[0]["config"]["layers"])}
    assert used == set(safekeras.LAYERS)


def _walk(layers):
    for obj in layers:
        yield obj
        yield from _walk([v for k, v in obj["config"].items() if k in ("layer", "backward_layer") and v])


@pytest.mark.parametrize("name", MODELS)
def test_the_computed_shapes_are_those_keras_saves(saved, name):
    config, shapes = _archive(saved[name])
    expected = weightshapes.expected_weights(safekeras.check_model(config))
    assert {path: size for path, _, _, size in expected} == shapes
    assert len(expected) == len(shapes)
    found = safekeras.check_archive(saved[name])
    assert found["params"] == sum(math.prod(size) for size in shapes.values())


def test_the_web_check_imports_neither_keras_nor_tensorflow(saved):
    """check_archive in a fresh interpreter: the shapes are checked with h5py alone."""
    code = ("import sys; from app.lab import safekeras; safekeras.check_archive(sys.argv[1]); "
            "print(sorted(m for m in ('keras', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(saved["image"])], capture_output=True, text=True,
                         check=True, timeout=60, cwd=Path(__file__).parents[1])
    assert out.stdout.strip() == "[]"
