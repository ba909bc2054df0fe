"""The weights a checked model description implies, computed without Keras: each allowed layer's
variables (name and shape) from its config and the shape of its input, in the order and at the
model.weights.h5 paths Keras saves them. A web worker compares them with the archive's datasets
(their shapes only) before it queues an upload; the consumer still checks the rebuilt model."""

from __future__ import annotations

import math
import re

from app.errors import InvalidInput

MAX_NAME = 256
# Layers that pass their input's shape on and own no weights.
IDENTITY = {"Dropout", "SpatialDropout1D", "GaussianNoise", "Masking", "Activation", "Softmax", "ReLU", "Rescaling"}
RECURRENT = {"LSTM": 4, "GRU": 3, "SimpleRNN": 1}  # gates per unit
CONVOLUTION = {"Conv1D": 1, "Conv2D": 2}  # spatial rank
POOLING = {"MaxPooling1D": 1, "AveragePooling1D": 1, "MaxPooling2D": 2, "AveragePooling2D": 2}
GLOBAL_POOLING = {"GlobalAveragePooling1D", "GlobalMaxPooling1D"}
# The text program's tied embeddings, and the step where its matrix, transposed, gives the logits
# (no Keras class: app.lab.safekeras.functional_graph names that second call so).
TIED, TIED_OUTPUT = "TiedEmbedding", "TiedEmbeddingOutput"
# Layers that join several branches, each called on a list of tensors; they own no weights.
MERGES = ("Concatenate", "Add", "Average", "Multiply", "Subtract", "Maximum", "Minimum")


class Graph(list):
    """A model's checked layer descriptions in the order Keras saves them (an InputLayer first);
    `inputs[i]` holds the indices of the steps layer i reads (none for the input, several for a
    merge layer), each before i."""

    def __init__(self, described=()):
        super().__init__(described)
        self.inputs: list[tuple[int, ...]] = []


def h5_name(class_name: str) -> str:
    """The snake-cased name Keras gives a layer of `class_name` in model.weights.h5 (before numbering)."""
    return re.sub("([a-z])([A-Z])", r"\1_\2", re.sub("(.)([A-Z][a-z]+)", r"\1_\2", class_name)).lower()


def layer_paths(class_names: list[str]) -> list[str]:
    """The h5 group of each layer of a model, numbered on repeats as Keras numbers them."""
    used, paths = {}, []
    for class_name in class_names:
        name = h5_name(class_name)
        used[name] = used.get(name, -1) + 1
        paths.append(f"layers/{name}" + (f"_{used[name]}" if used[name] else ""))
    return paths


class _Layer:
    """One layer description being sized: its class, config and name, and where its weights go."""

    def __init__(self, obj: dict, path: str):
        self.cls, self.config, self.path = obj["class_name"], obj.get("config") or {}, path
        self.name = str(self.config.get("name", self.cls))[:MAX_NAME]

    def get(self, key: str, default):
        value = self.config.get(key, default)
        return default if value is None and default is not None else value

    def refuse_value(self, key: str):
        raise InvalidInput("The value of %(key)s in %(where)s has a type that is not allowed.", key=key,
                           where=f"config.json/{self.name}")

    def count(self, key: str, default=None, minimum: int = 1) -> int:
        """A config value that must be a whole number at least `minimum`."""
        value = self.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            self.refuse_value(key)
        return value

    def counts(self, key: str, rank: int, default=None) -> tuple:
        """A config value that is one whole number or `rank` of them (kernel, stride, pool sizes)."""
        value = self.get(key, default)
        value = [value] * rank if isinstance(value, int) and not isinstance(value, bool) else value
        if (not isinstance(value, list) or len(value) != rank
                or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
            self.refuse_value(key)
        return tuple(value)

    def choice(self, key: str, default, allowed: tuple):
        value = self.get(key, default)
        if value not in allowed:
            self.refuse_value(key)
        return value

    def flag(self, key: str, default: bool) -> bool:
        return bool(self.choice(key, default, (True, False)))

    def cannot_take(self, shape: tuple):
        raise InvalidInput("The layer %(layer)s cannot take an input of shape %(shape)s.", layer=self.name,
                           shape=_shown(shape))

    def known(self, shape: tuple, axis: int) -> int:
        """The size of `shape` along `axis`, refused when unknown (None) or the axis does not exist."""
        if not -len(shape) < axis < len(shape) or axis == 0 or shape[axis] is None:
            self.cannot_take(shape)
        return shape[axis]


def _shown(shape) -> str:
    return str(tuple(shape))


def _rank(layer: _Layer, shape: tuple, rank: int) -> None:
    if len(shape) != rank:
        layer.cannot_take(shape)


def _axes(layer: _Layer, shape: tuple, key: str, default) -> tuple:
    """A normalisation layer's axis (one int or a list) as positive axes of `shape`, batch excluded."""
    value = layer.get(key, default)
    value = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(value, list) or any(isinstance(a, bool) or not isinstance(a, int) for a in value):
        layer.refuse_value(key)
    axes = tuple(a + len(shape) if a < 0 else a for a in value)
    if any(not 0 < a < len(shape) for a in axes):
        layer.cannot_take(shape)
    return axes


def _recurrent(layer: _Layer, shape: tuple, weights: list) -> tuple:
    _rank(layer, shape, 3)
    units = layer.count("units")
    gates = RECURRENT[layer.cls] * units
    weights += [(f"{layer.path}/cell/vars/0", "kernel", (layer.known(shape, 2), gates)),
                (f"{layer.path}/cell/vars/1", "recurrent_kernel", (units, gates))]
    if layer.flag("use_bias", True):
        reset_after = layer.cls == "GRU" and layer.flag("reset_after", True)
        weights.append((f"{layer.path}/cell/vars/2", "bias", (2, gates) if reset_after else (gates,)))
    if layer.flag("return_state", False):
        raise InvalidInput("The layer %(layer)s returns several tensors; each layer of the model may pass on only one.",
                           layer=layer.name)
    return (shape[0], shape[1], units) if layer.flag("return_sequences", False) else (shape[0], units)


def _bidirectional(layer: _Layer, shape: tuple, weights: list) -> tuple:
    forward = layer.get("layer", None)
    backward = layer.get("backward_layer", None) or forward
    outputs = []
    for obj, part in ((forward, "forward_layer"), (backward, "backward_layer")):
        if not isinstance(obj, dict) or obj.get("class_name") not in RECURRENT:
            layer.refuse_value("layer" if part == "forward_layer" else "backward_layer")
        outputs.append(_recurrent(_Layer(obj, f"{layer.path}/{part}"), shape, weights))
    if outputs[0] != outputs[1]:  # Keras sizes the merged output from the forward layer alone
        layer.refuse_value("backward_layer")
    merge = layer.choice("merge_mode", "concat", ("concat", "sum", "mul", "ave", None))
    if merge is None:
        raise InvalidInput("The layer %(layer)s returns several tensors; each layer of the model may pass on only one.",
                           layer=layer.name)
    return outputs[0][:-1] + (2 * outputs[0][-1] if merge == "concat" else outputs[0][-1],)


def _dense(layer: _Layer, shape: tuple, weights: list) -> tuple:
    if len(shape) < 2:
        layer.cannot_take(shape)
    units = layer.count("units")
    weights.append((f"{layer.path}/vars/0", "kernel", (layer.known(shape, -1), units)))
    if layer.flag("use_bias", True):
        weights.append((f"{layer.path}/vars/1", "bias", (units,)))
    return shape[:-1] + (units,)


def _normalization(layer: _Layer, shape: tuple, weights: list) -> tuple:
    if layer.cls == "BatchNormalization":
        axes = _axes(layer, shape, "axis", -1)
        if len(axes) != 1:
            layer.refuse_value("axis")
        names = ([n for n, key in (("gamma", "scale"), ("beta", "center")) if layer.flag(key, True)]
                 + ["moving_mean", "moving_variance"])  # renorm's clipping dict is refused by the value check
    elif layer.cls == "LayerNormalization":
        axes, rms = _axes(layer, shape, "axis", -1), layer.flag("rms_scaling", False)
        names = ((["gamma"] if layer.flag("scale", True) or rms else [])
                 + (["beta"] if layer.flag("center", True) and not rms else []))
    else:  # Normalization: adapted statistics, unless the config gives them
        axes = tuple(sorted(set(_axes(layer, shape, "axis", -1))))
        names = ["mean", "variance"] if layer.get("mean", None) is None else []
    size = tuple(layer.known(shape, a) for a in axes)
    weights += [(f"{layer.path}/vars/{i}", name, size) for i, name in enumerate(names)]
    if names and layer.cls == "Normalization":
        weights.append((f"{layer.path}/vars/2", "count", ()))
    return shape


def _spatial(layer: _Layer, shape: tuple, rank: int) -> tuple[bool, tuple, int]:
    """(channels_last, spatial sizes, channels) of a convolution's or pooling's input."""
    _rank(layer, shape, rank + 2)
    last = layer.choice("data_format", "channels_last", ("channels_last", "channels_first")) == "channels_last"
    return last, (shape[1:-1] if last else shape[2:]), (shape[-1] if last else shape[1])


def _window(layer: _Layer, spatial: tuple, size: tuple, strides: tuple, dilation: tuple, padding: str) -> tuple:
    """The spatial sizes after a sliding window (Keras's conv and pooling output-shape rules)."""
    out = []
    for n, k, s, d in zip(spatial, size, strides, dilation):
        if n is None:
            out.append(None)
        elif padding == "valid":
            length = (n - d * (k - 1) - 1) // s + 1
            if length <= 0:
                layer.cannot_take((None,) + tuple(spatial))
            out.append(length)
        else:
            out.append((n - 1) // s + 1)
    return tuple(out)


def _convolution(layer: _Layer, shape: tuple, weights: list) -> tuple:
    rank = CONVOLUTION[layer.cls]
    last, spatial, channels = _spatial(layer, shape, rank)
    filters, groups = layer.count("filters"), layer.count("groups", 1)
    channels = layer.known(shape, -1 if last else 1)
    if channels % groups or filters % groups:
        layer.refuse_value("groups")
    size = layer.counts("kernel_size", rank)
    padding = layer.choice("padding", "valid", ("valid", "same", "causal") if rank == 1 else ("valid", "same"))
    strides, dilation = layer.counts("strides", rank, 1), layer.counts("dilation_rate", rank, 1)
    weights.append((f"{layer.path}/vars/0", "kernel", size + (channels // groups, filters)))
    if layer.flag("use_bias", True):
        weights.append((f"{layer.path}/vars/1", "bias", (filters,)))
    out = _window(layer, spatial, size, strides, dilation, padding)
    return (shape[0],) + (out + (filters,) if last else (filters,) + out)


def _pooling(layer: _Layer, shape: tuple) -> tuple:
    rank = POOLING[layer.cls]
    last, spatial, channels = _spatial(layer, shape, rank)
    size = layer.counts("pool_size", rank, 2)
    strides = layer.counts("strides", rank, list(size))
    out = _window(layer, spatial, size, strides, (1,) * rank, layer.choice("padding", "valid", ("valid", "same")))
    return (shape[0],) + (out + (channels,) if last else (channels,) + out)


def _reshape(layer: _Layer, shape: tuple) -> tuple:
    target = layer.get("target_shape", None)
    if (not isinstance(target, list) or not target
            or any(isinstance(v, bool) or not isinstance(v, int) or v == 0 or v < -1 for v in target)
            or target.count(-1) > 1):
        layer.refuse_value("target_shape")
    total = math.prod(layer.known(shape, a) for a in range(1, len(shape)))
    rest = math.prod(v for v in target if v != -1)
    if total % rest or (-1 not in target and total != rest):
        layer.cannot_take(shape)
    return (shape[0],) + tuple(total // rest if v == -1 else v for v in target)


def _permute(layer: _Layer, shape: tuple) -> tuple:
    dims = layer.get("dims", None)
    if not isinstance(dims, list) or sorted(dims) != list(range(1, len(shape))):
        layer.cannot_take(shape)
    return (shape[0],) + tuple(shape[d] for d in dims)


def _flatten(layer: _Layer, shape: tuple) -> tuple:
    sizes = shape[1:]
    return (shape[0], None if None in sizes else math.prod(sizes))


def _global_pooling(layer: _Layer, shape: tuple) -> tuple:
    _rank(layer, shape, 3)
    last = layer.choice("data_format", "channels_last", ("channels_last", "channels_first")) == "channels_last"
    channels = shape[2] if last else shape[1]
    if layer.flag("keepdims", False):
        return (shape[0], 1, channels) if last else (shape[0], channels, 1)
    return (shape[0], channels)


def _cropping(layer: _Layer, shape: tuple) -> tuple:
    last, spatial, channels = _spatial(layer, shape, 2)
    crops = layer.get("cropping", None)
    if (not isinstance(crops, list) or len(crops) != 2
            or any(not isinstance(c, list) or len(c) != 2 or any(isinstance(v, bool) or not isinstance(v, int)
                                                               or v < 0 for v in c) for c in crops)):
        layer.refuse_value("cropping")
    out = tuple(None if n is None else n - a - b for n, (a, b) in zip(spatial, crops))
    if any(n is not None and n < 1 for n in out):
        layer.cannot_take(shape)
    return (shape[0],) + (out + (channels,) if last else (channels,) + out)


def _merged(layer: _Layer, shapes: list[tuple]) -> tuple:
    """The output shape of a merge layer over inputs of `shapes` (Concatenate along its axis,
    the others element-wise over equal shapes)."""
    cannot = InvalidInput("The layer %(layer)s cannot join inputs of shapes %(shapes)s.", layer=layer.name,
                          shapes=", ".join(_shown(s) for s in shapes))
    rank = len(shapes[0])
    if len(shapes) < 2 or any(len(s) != rank for s in shapes) or (layer.cls == "Subtract" and len(shapes) != 2):
        raise cannot
    if layer.cls != "Concatenate":
        if any(s != shapes[0] for s in shapes):
            raise cannot
        return shapes[0]
    axis = layer.get("axis", -1)
    if isinstance(axis, bool) or not isinstance(axis, int) or not -rank < axis < rank or axis % rank == 0:
        layer.refuse_value("axis")
    axis %= rank
    if any(s[:axis] + s[axis + 1:] != shapes[0][:axis] + shapes[0][axis + 1:] for s in shapes):
        raise cannot
    sizes = [s[axis] for s in shapes]
    return shapes[0][:axis] + (None if None in sizes else sum(sizes),) + shapes[0][axis + 1:]


def _embedding(layer: _Layer, shape: tuple, weights: list) -> tuple:
    weights.append((f"{layer.path}/vars/0", "embeddings", (layer.count("input_dim"), layer.count("output_dim"))))
    return shape + (layer.config["output_dim"],)


def _tied(layer: _Layer, shape: tuple, weights: list) -> tuple:
    vocab, width = layer.count("input_dim"), layer.count("output_dim")
    weights += [(f"{layer.path}/vars/0", "embeddings", (vocab, width)), (f"{layer.path}/vars/1", "output_bias", (vocab,))]
    return shape + (width,)


def _tied_output(layer: _Layer, shape: tuple, weights: list) -> tuple:
    if len(shape) < 2 or layer.known(shape, -1) != layer.count("output_dim"):
        layer.cannot_take(shape)
    return shape[:-1] + (layer.count("input_dim"),)


def _time_distributed(layer: _Layer, shape: tuple, weights: list) -> tuple:
    if len(shape) < 3:
        layer.cannot_take(shape)
    inner = layer.get("layer", None)
    if not isinstance(inner, dict) or "class_name" not in inner:
        layer.refuse_value("layer")
    out = _sized(_Layer(inner, f"{layer.path}/layer"), (shape[0],) + shape[2:], weights)
    return (shape[0], shape[1]) + out[1:]


def _sized(layer: _Layer, shape: tuple, weights: list) -> tuple:
    """Append the layer's (path, weight name, shape) to `weights`; the shape of its output."""
    cls = layer.cls
    if cls in IDENTITY:
        return shape
    if cls in RECURRENT:
        return _recurrent(layer, shape, weights)
    if cls in CONVOLUTION:
        return _convolution(layer, shape, weights)
    if cls in POOLING:
        return _pooling(layer, shape)
    if cls in GLOBAL_POOLING:
        return _global_pooling(layer, shape)
    if cls in ("BatchNormalization", "LayerNormalization", "Normalization"):
        return _normalization(layer, shape, weights)
    if cls == "RepeatVector":
        _rank(layer, shape, 2)
        return (shape[0], layer.count("n"), shape[1])
    sizers = {"Dense": _dense, "Bidirectional": _bidirectional, "Embedding": _embedding,
              "TimeDistributed": _time_distributed, TIED: _tied, TIED_OUTPUT: _tied_output}
    if cls in sizers:
        return sizers[cls](layer, shape, weights)
    shapers = {"Reshape": _reshape, "Permute": _permute, "Flatten": _flatten, "Cropping2D": _cropping}
    if cls in shapers:
        return shapers[cls](layer, shape)
    raise InvalidInput("The class %(name)s (module %(module)s) in %(where)s is not allowed.", name=cls[:MAX_NAME],
                       module="keras.layers", where="config.json")


def input_shape(obj: dict) -> tuple:
    """The batch shape of a model's InputLayer description (batch axis None)."""
    config = obj.get("config") or {}
    shape = config.get("batch_shape", config.get("batch_input_shape"))
    if shape is None and isinstance(config.get("shape"), list):
        shape = [None] + config["shape"]
    if (not isinstance(shape, list) or len(shape) < 2
            or any(v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1) for v in shape[1:])):
        raise InvalidInput("The model must begin with keras.Input(shape=...).")
    return (None,) + tuple(shape[1:])


def sized_model(described: list[dict]) -> tuple[list[tuple[str, str, str, tuple]], tuple]:
    """(weights, output shape) of the model these checked layer descriptions (an InputLayer first;
    a Graph, or a plain list read as one chain) make: each weight's (h5 path, layer name, weight
    name, shape) in the order Keras saves them, and the batch shape of the last step's output."""
    inputs = getattr(described, "inputs", None) or [()] + [(i,) for i in range(len(described) - 1)]
    shapes = [input_shape(described[0])]
    found = []
    for obj, reads, path in zip(described[1:], inputs[1:], layer_paths([obj["class_name"] for obj in described[1:]])):
        layer, weights = _Layer(obj, path), []
        if layer.cls in MERGES:
            shapes.append(_merged(layer, [shapes[i] for i in reads]))
        elif len(reads) != 1:
            raise InvalidInput("The layer %(name)s takes one input; only merge layers (%(merges)s) join several.",
                               name=layer.name, merges=", ".join(MERGES))
        else:
            shapes.append(_sized(layer, shapes[reads[0]], weights))
        found += [(p, layer.name, weight, size) for p, weight, size in weights]
    return found, shapes[-1]


def expected_weights(described: list[dict]) -> list[tuple[str, str, str, tuple]]:
    """(h5 path, layer name, weight name, shape) of every weight of the model these checked layer
    descriptions (an InputLayer first) make, in the order Keras saves them."""
    return sized_model(described)[0]


def compare_shapes(expected: list[tuple[str, str, str, tuple]], shapes: dict) -> None:
    """Refuse datasets `shapes` (path -> shape) that are missing, extra or of another shape than expected."""
    paths = {path for path, *_ in expected}
    # the optimizer's state is checked as an array, but a scored model does not need it
    extra = sorted(p for p in shapes if p not in paths and not p.startswith("optimizer/"))
    if extra:
        raise InvalidInput("model.weights.h5 holds a weight the model does not have: %(name)s.", name=extra[0][:MAX_NAME])
    for path, layer, weight, size in expected:
        if path not in shapes:
            raise InvalidInput("model.weights.h5 has no weight %(weight)s (%(path)s) of the layer %(layer)s.",
                               weight=weight, path=path, layer=layer)
        if tuple(shapes[path]) != tuple(size):
            raise InvalidInput("The layer %(layer)s: its weight %(weight)s (%(path)s) has shape %(found)s; "
                               "the layer expects %(expected)s.", layer=layer, weight=weight, path=path,
                               found=_shown(shapes[path]), expected=_shown(size))
