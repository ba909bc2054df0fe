"""Read a saved Keras 3 model (`.keras` zip: config.json + model.weights.h5) without Keras.

The serving workers run the text models and the gate traces in NumPy, so they need each layer's
class, config and weights, and nothing else: reading them with h5py keeps TensorFlow (its memory
and its import time) out of the web app.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from pathlib import Path

import numpy as np


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
    import h5py

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
