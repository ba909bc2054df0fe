"""Read a student's uploaded .keras archive as data, never as code: config.json checked against an
allow-list, the model rebuilt from it, the weights read with h5py. `check_archive` needs no Keras
(the web's checks); `load_submission` runs them all.
Details: docs/DESIGN.md, "Students' .keras files as data (app/lab/safekeras.py)"."""

from __future__ import annotations

import inspect
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import h5py

from app.errors import InvalidInput
from app.lab.weightshapes import MERGES, TIED, TIED_OUTPUT, Graph, compare_shapes, layer_paths, sized_model

MEMBERS = {"config.json", "metadata.json", "model.weights.h5"}
MAX_ARCHIVE_BYTES = 64 * 2 ** 20
MAX_UNCOMPRESSED_BYTES = 256 * 2 ** 20
MAX_RATIO = 200
MAX_CONFIG_BYTES = 2 * 2 ** 20
MAX_DEPTH = 24
MAX_STRING = 256
MAX_LAYERS = 64
MAX_FAN_IN = 8  # inputs one merge layer may join
MAX_WEIGHT_BYTES = 128 * 2 ** 20

# The only layer classes that may be rebuilt: recurrent, dense, shaping and normalising layers.
LAYERS = ("InputLayer", "LSTM", "GRU", "SimpleRNN", "Bidirectional", "Dense", "Dropout", "SpatialDropout1D",
          "GaussianNoise", "Reshape", "Permute", "Flatten", "RepeatVector", "Rescaling", "Normalization",
          "LayerNormalization", "BatchNormalization", "Embedding", "Masking", "TimeDistributed",
          "GlobalAveragePooling1D", "GlobalMaxPooling1D", "Activation", "Softmax", "ReLU",
          "Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D",
          "Cropping2D", *MERGES)
# Layers a rule "recurrent layers only" refuses (convolutions and their pooling).
CONVOLUTIONAL = {"Conv1D", "Conv2D", "MaxPooling1D", "MaxPooling2D", "AveragePooling1D", "AveragePooling2D"}
# The layers that may join several branches (each called on a list of tensors): MERGES.
WRAPPERS = {"Bidirectional": ("layer", "backward_layer"), "TimeDistributed": ("layer",)}
# The text program's tied embeddings (training.layers.tied_embedding_layer): a language model may
# name this one class beyond keras.layers; the scoring child rebuilds it with the app's own class.
# TIED_OUTPUT is no class: the chain's step where the layer is called again, reversed.
TIED_REGISTERED = "lstmlab>TiedEmbedding"
TIED_LAYERS = (TIED, TIED_OUTPUT)
TIED_KEYS = {"name", "trainable", "dtype", "input_dim", "output_dim"}
INITIALIZERS = ("GlorotUniform", "GlorotNormal", "HeUniform", "HeNormal", "LecunUniform", "LecunNormal",
                "Orthogonal", "Zeros", "Ones", "Constant", "RandomNormal", "RandomUniform", "TruncatedNormal",
                "VarianceScaling", "Identity")
REGULARIZERS = ("L1", "L2", "L1L2")
ACTIVATIONS = {"linear", "relu", "sigmoid", "tanh", "softmax", "elu", "selu", "softplus", "softsign", "gelu",
               "swish", "silu", "hard_sigmoid", "leaky_relu", "relu6", "exponential", "log_softmax", None}
ACTIVATION_KEYS = {"activation", "recurrent_activation"}
DTYPES = {"float32", "float16", "bfloat16", "mixed_float16", "mixed_bfloat16", "int32", "int64", None}
# Keys every serialized layer may carry besides its constructor's parameters.
BASE_KEYS = {"name", "trainable", "dtype", "batch_input_shape", "batch_shape", "input_shape", "input_dim"}
OBJECT_KEYS = {"module", "class_name", "config", "registered_name", "shared_object_id", "build_config",
               "compile_config"}
# Constructor parameters that are Keras plumbing, never set from an archive.
PLUMBING = {"self", "kwargs", "args", "cell"}
# Keys a layer's get_config writes that its constructor takes through **kwargs.
KWARG_KEYS = {"LayerNormalization": {"rms_scaling"}}
# Each allowed layer's known config keys, read from the installed Keras's constructors and stored
# (`python -m app.lab.safekeras` rewrites it; a test compares it with Keras): web workers check
# an upload's keys without importing Keras.
LAYER_KEYS_FILE = Path(__file__).with_name("layer_keys.json")
LAYER_KEYS = {name: frozenset(keys) for name, keys in json.loads(LAYER_KEYS_FILE.read_text(encoding="utf-8")).items()}


@dataclass
class Submission:
    """A checked archive: the rebuilt model and its layer table."""
    model: object
    layers: list = field(default_factory=list)
    params: int = 0


def _refuse(msgid: str, **params):
    raise InvalidInput(msgid, **params)


def open_archive(path: Path, max_bytes: int = MAX_ARCHIVE_BYTES) -> dict:
    """The members of a .keras archive as bytes, after the zip's shape and sizes are checked."""
    path = Path(path)
    size = path.stat().st_size
    if size > max_bytes:
        raise InvalidInput("The file is %(size)s MB; the limit is %(limit)s MB.", status=413,
                           size=format(size / 2 ** 20, ".1f"), limit=format(max_bytes / 2 ** 20, "g"))
    with path.open("rb") as fh:
        head = fh.read(8)
    if head.startswith(b"\x89HDF"):
        _refuse("Legacy HDF5 (.h5) models are not accepted: save the model with model.save(\"model.keras\").")
    if not zipfile.is_zipfile(path):
        _refuse("This is not a .keras file (a .keras file is a zip archive).")
    try:
        with zipfile.ZipFile(path) as zf:
            infos = zf.infolist()
            if len(infos) > len(MEMBERS):
                _refuse("The archive holds %(count)s files; a .keras file holds at most %(limit)s.",
                        count=len(infos), limit=len(MEMBERS))
            total = 0
            for info in infos:
                name = info.filename
                pure = PurePosixPath(name.replace("\\", "/"))
                if pure.is_absolute() or ".." in pure.parts or ":" in name:
                    _refuse("The archive member %(name)s points outside the archive.", name=name[:MAX_STRING])
                if name not in MEMBERS:
                    _refuse("The archive member %(name)s is not part of a .keras file.", name=name[:MAX_STRING])
                total += info.file_size
                if total > MAX_UNCOMPRESSED_BYTES:
                    _refuse("The archive unpacks to more than %(limit)s MB.",
                            limit=format(MAX_UNCOMPRESSED_BYTES / 2 ** 20, "g"))
                if info.file_size > MAX_RATIO * max(info.compress_size, 1) and info.file_size > 2 ** 20:
                    _refuse("The archive member %(name)s is compressed %(ratio)s times: refused as a zip bomb.",
                            name=name, ratio=info.file_size // max(info.compress_size, 1))
            missing = {"config.json", "model.weights.h5"} - {i.filename for i in infos}
            if missing:
                _refuse("The archive has no %(name)s.", name=", ".join(sorted(missing)))
            members = {}
            for info in infos:
                limit = MAX_CONFIG_BYTES if info.filename.endswith(".json") else MAX_WEIGHT_BYTES
                if info.file_size > limit:
                    _refuse("The archive member %(name)s is larger than %(limit)s MB.", name=info.filename,
                            limit=format(limit / 2 ** 20, "g"))
                with zf.open(info) as member:
                    data = member.read(limit + 1)
                if len(data) > limit or len(data) != info.file_size:
                    _refuse("The archive member %(name)s is not the size it claims.", name=info.filename)
                members[info.filename] = data
            return members
    except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, EOFError) as exc:
        raise InvalidInput("The archive is damaged: %(detail)s", detail=str(exc)[:MAX_STRING]) from None


def parse_config(data: bytes) -> dict:
    """config.json as a dict, refusing non-JSON, oversized or too deeply nested text."""
    if len(data) > MAX_CONFIG_BYTES:
        _refuse("config.json is larger than %(limit)s MB.", limit=format(MAX_CONFIG_BYTES / 2 ** 20, "g"))
    depth = deepest = 0
    in_string = escaped = False
    for ch in data.decode("utf-8", errors="replace"):
        if in_string:
            escaped, in_string = (False, True) if escaped else (ch == "\\", ch != '"')
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    if deepest > MAX_DEPTH:
        _refuse("config.json is nested %(depth)s levels deep; the limit is %(limit)s.", depth=deepest, limit=MAX_DEPTH)
    try:
        config = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        _refuse("config.json is not valid JSON.")
    if not isinstance(config, dict):
        _refuse("config.json is not valid JSON.")
    return config


def _layer_class(name: str):
    import keras  # heavy: only the scoring child rebuilds a model
    return getattr(keras.layers, name)


def keras_layer_keys(class_name: str) -> set:
    """The config keys the installed Keras's constructors of `class_name` accept (imports Keras)."""
    cls = _layer_class(class_name)
    keys = set()
    for klass in cls.__mro__:
        if klass.__module__.startswith("keras") and "__init__" in vars(klass):
            keys |= set(inspect.signature(klass.__init__).parameters)
        if klass.__name__ == "Layer":
            break
    return (keys | BASE_KEYS | KWARG_KEYS.get(class_name, set())) - PLUMBING


def _check_object(obj, where: str, allowed: dict):
    """A serialized {module, class_name, config} object whose (module, class) is in `allowed`."""
    if not isinstance(obj, dict) or "class_name" not in obj:
        _refuse("%(where)s is not a Keras object description.", where=where)
    unknown = set(obj) - OBJECT_KEYS
    if unknown:
        _refuse("Unknown key %(key)s in %(where)s.", key=sorted(unknown)[0][:MAX_STRING], where=where)
    module, name = obj.get("module"), obj.get("class_name")
    if not isinstance(name, str) or not isinstance(module, str) or allowed.get(name) != module:
        _refuse("The class %(name)s (module %(module)s) in %(where)s is not allowed.",
                name=str(name)[:MAX_STRING], module=str(module)[:MAX_STRING], where=where)
    if obj.get("registered_name") not in (None, name):
        _refuse("The registered name %(name)s in %(where)s is not allowed (no custom objects).",
                name=str(obj.get("registered_name"))[:MAX_STRING], where=where)
    config = obj.get("config", {})
    if not isinstance(config, dict):
        _refuse("%(where)s is not a Keras object description.", where=where)
    return name, config


def _check_scalar(value, key: str, where: str):
    if isinstance(value, str) and len(value) > MAX_STRING:
        _refuse("The value of %(key)s in %(where)s is too long.", key=key, where=where)
    if isinstance(value, list):
        if len(value) > 16:
            _refuse("The value of %(key)s in %(where)s is too long.", key=key, where=where)
        for item in value:
            _check_scalar(item, key, where)
    elif value is not None and not isinstance(value, (bool, int, float, str)):
        _refuse("The value of %(key)s in %(where)s has a type that is not allowed.", key=key, where=where)


def _check_value(key: str, value, where: str):
    """Refuse a config value that is not an allowed dtype, initializer, regularizer, activation or
    bounded scalar (pure data: no Keras import)."""
    if key == "dtype" and isinstance(value, dict):
        _, cfg = _check_object(value, where, {"DTypePolicy": "keras", "FloatDTypePolicy": "keras"})
        value = cfg.get("name")
    if key == "dtype":
        if value not in DTYPES:
            _refuse("The dtype %(value)s in %(where)s is not allowed.", value=str(value)[:MAX_STRING], where=where)
        return
    if isinstance(value, dict):
        if key.endswith("_initializer"):
            _, cfg = _check_object(value, where, dict.fromkeys(INITIALIZERS, "keras.initializers"))
        elif key.endswith("_regularizer"):
            _, cfg = _check_object(value, where, dict.fromkeys(REGULARIZERS, "keras.regularizers"))
        else:
            _refuse("The value of %(key)s in %(where)s has a type that is not allowed.", key=key, where=where)
        for k, v in cfg.items():
            _check_scalar(v, k, where)
        return
    if key in ACTIVATION_KEYS and value not in ACTIVATIONS:
        _refuse("The activation %(value)s in %(where)s is not allowed.", value=str(value)[:MAX_STRING], where=where)
    _check_scalar(value, key, where)


def _build_value(key: str, value, where: str):
    """A constructor argument from a checked config value (dtype, initializer, regularizer or scalar)."""
    import keras  # heavy: only the scoring child rebuilds a model
    _check_value(key, value, where)
    if key == "dtype":
        return value.get("config", {}).get("name") if isinstance(value, dict) else value
    if isinstance(value, dict):
        name, cfg = value["class_name"], value.get("config", {})
        cls = getattr(keras.initializers if key.endswith("_initializer") else keras.regularizers, name)
        params = set(inspect.signature(cls.__init__).parameters) - PLUMBING
        for k in cfg:
            if k not in params:
                _refuse("Unknown key %(key)s in %(where)s.", key=str(k)[:MAX_STRING], where=f"{where}/{name}")
        return cls(**cfg)
    return value


def _layer_parts(obj, allowed_layers: set, where: str):
    """(class name, config, where) of a layer description whose class and keys are allowed."""
    if isinstance(obj, dict) and obj.get("class_name") in TIED_LAYERS and obj.get("class_name") in allowed_layers:
        return _tied_parts(obj, where)
    name, config = _check_object(obj, where, dict.fromkeys(allowed_layers, "keras.layers"))
    where = f"{where}/{config.get('name', name)}" if isinstance(config.get("name"), str) else f"{where}/{name}"
    keys = LAYER_KEYS.get(name, frozenset()) | BASE_KEYS
    for key in config:
        if key not in keys:
            _refuse("Unknown key %(key)s in layer %(where)s.", key=str(key)[:MAX_STRING], where=where)
    return name, config, where


def _tied_parts(obj: dict, where: str):
    """(class name, config, where) of the text program's TiedEmbedding (or the step that reads
    its matrix back, TIED_OUTPUT): a name the app rebuilds with its own class, whatever module the
    archive says it came from, with only its known keys."""
    unknown = set(obj) - OBJECT_KEYS
    name, config = obj["class_name"], obj.get("config", {})
    if unknown or not isinstance(config, dict) or not isinstance(obj.get("module", ""), (str, type(None))):
        _refuse("%(where)s is not a Keras object description.", where=where)
    if name == TIED and obj.get("registered_name") not in (None, TIED_REGISTERED):
        _refuse("The registered name %(name)s in %(where)s is not allowed (no custom objects).",
                name=str(obj.get("registered_name"))[:MAX_STRING], where=where)
    where = f"{where}/{str(config.get('name', name))[:MAX_STRING]}"
    for key in config:
        if key not in TIED_KEYS:
            _refuse("Unknown key %(key)s in layer %(where)s.", key=str(key)[:MAX_STRING], where=where)
    return name, config, where


def _inner_layers(wrapper: str, allowed_layers: set) -> set:
    """The classes a wrapper may wrap: no merge layer, no wrapper but a Bidirectional inside a
    TimeDistributed (what the bench's ReNet reading builds)."""
    return allowed_layers - {wrapper, "TimeDistributed"} - set(MERGES)


def check_layer(obj, allowed_layers: set, where: str = "config.json") -> str:
    """Refuse a layer description that is not allowed (pure data: no Keras import); its class name."""
    name, config, where = _layer_parts(obj, allowed_layers, where)
    for key, value in config.items():
        if key in WRAPPERS.get(name, ()):
            if value is not None:
                check_layer(value, _inner_layers(name, allowed_layers), where)
        else:
            _check_value(key, value, where)
    return name


def build_layer(obj, allowed_layers: set, where: str = "config.json"):
    """One checked layer description, rebuilt by calling its allowed keras.layers class."""
    name, config, where = _layer_parts(obj, allowed_layers, where)
    kwargs = {}
    for key, value in config.items():
        if key in WRAPPERS.get(name, ()):
            kwargs[key] = None if value is None else build_layer(value, _inner_layers(name, allowed_layers), where)
        else:
            kwargs[key] = _build_value(key, value, where)
    try:
        return _layer_class(name)(**kwargs)
    except (TypeError, ValueError) as exc:
        raise InvalidInput("The layer %(where)s cannot be rebuilt: %(detail)s", where=where,
                           detail=str(exc)[:MAX_STRING]) from None


def _tensor_ref(arg) -> tuple[str, int] | None:
    """(layer name, call index) of a serialized Keras tensor (a layer's only output), else None."""
    if not isinstance(arg, dict) or set(arg) - {"class_name", "config"} or arg.get("class_name") != "__keras_tensor__" \
            or not isinstance(arg.get("config"), dict) or set(arg["config"]) - TENSOR_KEYS \
            or any(arg["config"].get(k) not in (None, False) for k in ("sparse", "ragged")):
        return None
    history = arg["config"].get("keras_history")
    if (isinstance(history, list) and len(history) == 3 and isinstance(history[0], str)
            and all(isinstance(v, int) and not isinstance(v, bool) for v in history[1:]) and history[2] == 0):
        return history[0], history[1]
    return None


def _endpoint(value) -> str | None:
    """The layer name of a Functional config's input_layers / output_layers naming one tensor."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if isinstance(value, list) and len(value) == 3 and isinstance(value[0], str) and value[1:] == [0, 0]:
        return value[0]
    return None


# A serialized tensor's keys (sparse and ragged ones are refused).
TENSOR_KEYS = {"shape", "dtype", "keras_history", "sparse", "ragged"}
CALL_KWARGS = {"training": (None, True, False), "mask": (None, True, False)}
TIED_KWARGS = {"reverse": (True,)}


def _node_sources(node, name: str, merge: bool, kwargs_allowed: dict) -> list[tuple[str, int]]:
    """The tensors one inbound node calls its layer on (one, or a merge layer's list of 2 to
    MAX_FAN_IN), with keyword arguments among `kwargs_allowed` only; anything else is refused."""
    bad = "The layer %(name)s is called with arguments that are not accepted (config.json inbound_nodes)."
    if not isinstance(node, dict) or set(node) - {"args", "kwargs"}:
        _refuse(bad, name=name)
    args, kwargs = node.get("args"), node.get("kwargs", {})
    if not isinstance(args, list) or len(args) != 1 or not isinstance(kwargs, dict) \
            or any(k not in kwargs_allowed or v not in kwargs_allowed[k] for k, v in kwargs.items()):
        _refuse(bad, name=name)
    tensors = args[0] if merge else [args[0]]
    if merge and not isinstance(tensors, list):
        _refuse(bad, name=name)
    if isinstance(tensors, list) and merge and not 2 <= len(tensors) <= MAX_FAN_IN:
        _refuse("The merge layer %(name)s joins %(count)s inputs; it takes between 2 and %(limit)s.",
                name=name, count=len(tensors), limit=MAX_FAN_IN)
    refs = [_tensor_ref(t) for t in tensors]
    if None in refs:
        if not merge and isinstance(args[0], list):
            _refuse("The layer %(name)s takes one input; only merge layers (%(merges)s) join several.",
                    name=name, merges=", ".join(MERGES))
        _refuse(bad, name=name)
    return refs


def _step(graph: Graph, steps: dict, pending: dict, ref: tuple[str, int], reader: str) -> int:
    """The index of the step that gives tensor `ref` (layer name, call index) to layer `reader`:
    a layer before it, or the tied embeddings' second call (added as a TIED_OUTPUT step when first
    read); anything else is refused."""
    if ref in steps:
        return steps[ref]
    name, call = ref
    if call == 1 and name in pending:
        source, config = pending[name]
        reads = _step(graph, steps, {}, source, name)
        sizes = {k: config.get(k) for k in ("input_dim", "output_dim")}
        graph.append({"class_name": TIED_OUTPUT, "config": {"name": f"{name}_output"[:MAX_STRING], **sizes}})
        graph.inputs.append((reads,))
        steps[ref] = len(graph) - 1
        return steps[ref]
    _refuse("The layer %(name)s reads %(source)s, which is not a layer before it in the model.", name=reader,
            source=f"{name[:MAX_STRING]}[{call}]")


def functional_graph(config: dict, tied: bool = False) -> Graph:
    """A Functional model's config.json as a Graph: its layer descriptions in the order Keras saved
    them, each with the steps it reads. Accepted: one InputLayer first, every other layer called
    once on tensors of layers before it (merge layers on a list of 2 to MAX_FAN_IN), every step on
    the way to the one output, the last layer; anything else is refused, naming the layer. With
    `tied`, the text program's tied embeddings are the one layer called twice: its TiedEmbedding's
    second call, reverse=True, becomes a TIED_OUTPUT step before the first layer that reads it."""
    if config.get("module") != "keras.src.models.functional" or config.get("registered_name") not in (None, "Functional"):
        _refuse("The class %(name)s (module %(module)s) in %(where)s is not allowed.", name="Functional",
                module=str(config.get("module"))[:MAX_STRING], where="config.json")
    inner = config.get("config")
    if not isinstance(inner, dict):
        _refuse("%(where)s is not a Keras object description.", where="config.json")
    for key in inner:
        if key not in {"name", "trainable", "layers", "input_layers", "output_layers"}:
            _refuse("Unknown key %(key)s in %(where)s.", key=str(key)[:MAX_STRING], where="config.json/Functional")
    described = inner.get("layers")
    if not isinstance(described, list) or not described or len(described) > MAX_LAYERS:
        _refuse("The model must have between 1 and %(limit)s layers.", limit=MAX_LAYERS)
    _check_scalar(inner.get("name", "submission"), "name", "config.json")
    graph, steps, pending = Graph(), {}, {}  # steps: (layer name, call) -> index; pending: tied second calls
    for obj in described:
        if not isinstance(obj, dict):
            _refuse("%(where)s is not a Keras object description.", where="config.json")
        name, nodes, cls = obj.get("name"), obj.get("inbound_nodes"), obj.get("class_name")
        if not isinstance(name, str) or not isinstance(nodes, list):
            _refuse("%(where)s is not a Keras object description.", where="config.json")
        name = name[:MAX_STRING]
        if (name, 0) in steps:
            _refuse("Two layers are named %(name)s; each layer must have its own name.", name=name)
        if cls == TIED and not tied:
            _refuse("The class %(name)s (module %(module)s) in %(where)s is not allowed.", name=TIED,
                    module=str(obj.get("module"))[:MAX_STRING], where="config.json")
        if cls == "InputLayer" or not graph:
            if graph or nodes or cls != "InputLayer":
                _refuse("The model must have exactly one input, keras.Input(shape=...), first (layer %(name)s).",
                        name=name)
            reads = []
        else:
            if len(nodes) != 1 and not (cls == TIED and len(nodes) == 2):
                _refuse("The layer %(name)s is called %(count)s times; each layer may be called once "
                        "(shared layers are not accepted).", name=name, count=len(nodes))
            reads = [_step(graph, steps, pending, ref, name) for ref in _node_sources(nodes[0], name, cls in MERGES, CALL_KWARGS)]
            if len(nodes) == 2:
                config = obj.get("config")
                pending[name] = (_node_sources(nodes[1], name, False, TIED_KWARGS)[0],
                                 config if isinstance(config, dict) else {})
        graph.append({k: v for k, v in obj.items() if k not in ("name", "inbound_nodes")})
        graph.inputs.append(tuple(reads))
        steps[(name, 0)] = len(graph) - 1
    if _endpoint(inner.get("input_layers")) != described[0]["name"]:
        _refuse("The model must have exactly one input, keras.Input(shape=...), first (layer %(name)s).",
                name=str(described[0]["name"])[:MAX_STRING])
    last = str(described[-1]["name"])[:MAX_STRING]
    if _endpoint(inner.get("output_layers")) != described[-1]["name"]:
        _refuse("The model must have exactly one output, its last layer %(name)s (config.json output_layers).", name=last)
    read = {i for reads in graph.inputs for i in reads}
    names = {i: name if call == 0 else f"{name}[{call}]" for (name, call), i in steps.items()}
    for i in range(len(graph) - 1):
        if i not in read:
            _refuse("The model must have exactly one output: the layer %(name)s does not lead to %(last)s.",
                    name=names[i], last=last)
    for name in pending:
        if (name, 1) not in steps:
            _refuse("The model must have exactly one output: the layer %(name)s does not lead to %(last)s.",
                    name=name, last=last)
    return graph


def allowed_layers(recurrent_only: bool = False, tied: bool = False) -> set:
    """The layer classes a model may have: LAYERS, without convolutions under the rule "recurrent
    layers only", with the text program's tied embeddings for a language model (`tied`)."""
    return (set(LAYERS) - (CONVOLUTIONAL if recurrent_only else set())) | (set(TIED_LAYERS) if tied else set())


def check_model(config: dict, recurrent_only: bool = False, tied: bool = False) -> Graph:
    """Refuse a config.json that is not a Sequential model or a Functional one of one input and one
    output whose layers are joined only by merge layers (`functional_graph`; with `tied`, tied
    embeddings allowed), of allowed layers, keys and values (pure data: what a web worker checks
    before queueing); the layer descriptions as a Graph."""
    allowed = allowed_layers(recurrent_only, tied)
    for key in config:
        if key not in OBJECT_KEYS:
            _refuse("Unknown key %(key)s in %(where)s.", key=str(key)[:MAX_STRING], where="config.json")
    if config.get("class_name") == "Functional":
        graph = functional_graph(config, tied)
    else:
        _, model_config = _check_object(config, "config.json", {"Sequential": "keras"})
        for key in model_config:
            if key not in {"name", "trainable", "dtype", "layers", "build_input_shape"}:
                _refuse("Unknown key %(key)s in %(where)s.", key=str(key)[:MAX_STRING], where="config.json/Sequential")
        _check_scalar(model_config.get("name", "submission"), "name", "config.json")
        described = model_config.get("layers")
        if not isinstance(described, list) or not described or len(described) > MAX_LAYERS:
            _refuse("The model must have between 1 and %(limit)s layers.", limit=MAX_LAYERS)
        graph = Graph(described)
        graph.inputs = [()] + [(i,) for i in range(len(described) - 1)]
    if recurrent_only:
        for obj in graph:
            if isinstance(obj, dict) and obj.get("class_name") in CONVOLUTIONAL:
                _refuse("The layer %(name)s is not allowed for this data set: recurrent layers only, no convolutions.",
                        name=str(obj.get("class_name")))
    names = [check_layer(obj, allowed) for obj in graph]
    if names[0] != "InputLayer":
        _refuse("The model must begin with keras.Input(shape=...).")
    return graph


def _model_name(config: dict) -> str:
    name = config["config"].get("name", "submission") if isinstance(config.get("config"), dict) else "submission"
    return name if isinstance(name, str) else "submission"


def build_model(config: dict, recurrent_only: bool = False, tied_class=None) -> tuple:
    """(model, its layers in the order of config.json) of a checked config.json, rebuilt step by
    step: each allowed keras.layers class called with its checked arguments on the outputs of the
    steps it reads, in the checked graph's order; with `tied_class` (the app's own TiedEmbedding
    layer class), tied embeddings whose TIED_OUTPUT step calls that layer again, reversed."""
    import keras  # heavy: only the scoring child rebuilds a model
    graph = check_model(config, recurrent_only, tied=tied_class is not None)
    allowed = allowed_layers(recurrent_only)
    first = build_layer(graph[0], allowed)
    outputs, ordered, tied = [first.output], [first], None
    for obj, reads in zip(graph[1:], graph.inputs[1:]):
        tensors = [outputs[i] for i in reads]
        if obj["class_name"] == TIED:
            _, cfg, where = _tied_parts(obj, "config.json")
            tied = layer = tied_class(**{k: _build_value(k, v, where) for k, v in cfg.items()})
        elif obj["class_name"] == TIED_OUTPUT:
            outputs.append(tied(tensors[0], reverse=True))
            continue
        else:
            layer = build_layer(obj, allowed)
        outputs.append(layer(tensors if obj["class_name"] in MERGES else tensors[0]))
        ordered.append(layer)
    return keras.Model(first.output, outputs[-1], name=_model_name(config)), ordered


def _check_h5_links(group, where: str = ""):
    for key in group:
        link = group.get(key, getlink=True)
        if not isinstance(link, h5py.HardLink):
            _refuse("model.weights.h5 holds a link (%(name)s); only plain arrays are accepted.", name=f"{where}/{key}")
        item = group[key]
        if isinstance(item, h5py.Group):
            _check_h5_links(item, f"{where}/{key}")


def _datasets(fh, max_bytes: int) -> list:
    """Every dataset of an open model.weights.h5, after its links, dtype, storage and claimed size are checked."""
    _check_h5_links(fh)
    found, total = [], 0
    fh.visititems(lambda name, obj: found.append((name, obj)) if isinstance(obj, h5py.Dataset) else None)
    for name, ds in found:
        if ds.dtype.kind not in "fiub" or ds.dtype.fields or h5py.check_vlen_dtype(ds.dtype):
            _refuse("The weight %(name)s is not a plain numeric array.", name=name)
        if ds.external or ds.is_virtual:
            _refuse("The weight %(name)s is stored outside the file.", name=name)
        claimed = ds.dtype.itemsize * int(max(1, ds.size or 0))
        total += claimed
        if claimed > max_bytes or total > max_bytes:
            _refuse("The weight %(name)s claims %(size)s MB; the limit for all weights is %(limit)s MB.",
                    name=name, size=format(claimed / 2 ** 20, ".1f"), limit=format(max_bytes / 2 ** 20, "g"))
    return found


def _open_h5(data: bytes):
    try:
        return h5py.File(io.BytesIO(data), "r")
    except OSError:
        _refuse("model.weights.h5 is not an HDF5 file.")


def read_shapes(data: bytes, max_bytes: int = MAX_WEIGHT_BYTES) -> dict:
    """The shape of every dataset of model.weights.h5, keyed by path, after each is checked (no data read)."""
    with _open_h5(data) as fh:
        return {name: tuple(ds.shape) for name, ds in _datasets(fh, max_bytes)}


def read_weights(data: bytes, max_bytes: int = MAX_WEIGHT_BYTES) -> dict:
    """Every dataset of model.weights.h5 as a numpy array, keyed by path, after each is checked."""
    with _open_h5(data) as fh:
        return {name: ds[()] for name, ds in _datasets(fh, max_bytes)}


def _weight_order(layer, prefix: str):
    """The h5 dataset paths of a layer's variables, in the order Keras saves them."""
    if hasattr(layer, "forward_layer"):
        return (_weight_order(layer.forward_layer, f"{prefix}/forward_layer")
                + _weight_order(layer.backward_layer, f"{prefix}/backward_layer"))
    if hasattr(layer, "layer") and layer.__class__.__name__ == "TimeDistributed":
        return _weight_order(layer.layer, f"{prefix}/layer")
    cell = getattr(layer, "cell", None)
    if cell is not None:
        layer, prefix = cell, f"{prefix}/cell"
    # what Layer.save_own_variables writes: the layer's own variables, not those of its trackers
    own = list(layer._trainable_variables) + list(layer._non_trainable_variables)
    return [(f"{prefix}/vars/{i}", v) for i, v in enumerate(own)]


def assign_weights(layers: list, arrays: dict):
    """Set every variable of a model's `layers` (in the order Keras saved them) from its checked
    array; refuse missing, extra or misshapen weights."""
    expected = []
    for layer, path in zip(layers, layer_paths([layer.__class__.__name__ for layer in layers])):
        expected += _weight_order(layer, path)
    names = {n for n, _ in expected}
    # the optimizer's state is read and checked like any array, but a scored model does not need it
    extra = sorted(n for n in set(arrays) - names if not n.startswith("optimizer/"))
    if extra:
        _refuse("model.weights.h5 holds a weight the model does not have: %(name)s.", name=extra[0][:MAX_STRING])
    for name, variable in expected:
        if name not in arrays:
            _refuse("model.weights.h5 has no weight %(name)s.", name=name)
        if tuple(arrays[name].shape) != tuple(variable.shape):
            _refuse("The weight %(name)s has shape %(got)s; the layer expects %(want)s.", name=name,
                    got=str(tuple(arrays[name].shape)), want=str(tuple(variable.shape)))
    for name, variable in expected:
        variable.assign(arrays[name].astype(variable.dtype))


def layer_table(layers: list) -> list:
    """One row per layer of `layers`: name, class, output shape and parameter count."""
    return [{"name": layer.name, "class": layer.__class__.__name__,
             "output_shape": str(getattr(layer, "output", None) is not None and tuple(layer.output.shape)),
             "params": int(layer.count_params())} for layer in layers if layer.__class__.__name__ != "InputLayer"]


# A language model's layers: each step's output may depend on that step and the ones before it
# only (no Bidirectional, no convolution, no reshaping across steps), or it would read the very
# token it is asked to predict.
TEXT_LAYERS = {"InputLayer", "Embedding", "LSTM", "GRU", "SimpleRNN", "Dropout", "SpatialDropout1D", "GaussianNoise",
               "Dense", "Activation", "Softmax", "ReLU", "LayerNormalization", "Masking", *TIED_LAYERS}
SOFTMAX_LAYERS = {"Activation", "Softmax"}


def _softmax_last(obj: dict) -> bool:
    """Whether a layer description ends in a softmax over the last axis."""
    config = obj.get("config") or {}
    if obj["class_name"] == "Dense" or obj["class_name"] == "Activation":
        return config.get("activation") == "softmax"
    return obj["class_name"] == "Softmax" and config.get("axis", -1) in (-1, None)


def check_language_model(described: list[dict], vocab_size: int) -> None:
    """Refuse checked layer descriptions that are not a next-token model over `vocab_size` tokens:
    token ids of any length in, an Embedding of the vocabulary first, causal layers only (recurrent
    ones forwards, every step returned), one softmax over the vocabulary per step out."""
    for obj in described:
        name = obj["class_name"]
        config = obj.get("config") or {}
        where = str(config.get("name", name))[:MAX_STRING]
        if name not in TEXT_LAYERS:
            _refuse("The layer %(name)s (%(cls)s) is not allowed in a language model: each step may read only "
                    "that step and the ones before it (Embedding, LSTM, GRU, SimpleRNN, Dropout, Dense and "
                    "activations).", name=where, cls=name)
        if name in ("LSTM", "GRU", "SimpleRNN") and (config.get("go_backwards") or config.get("stateful")
                                                     or config.get("return_sequences") is not True):
            _refuse("The recurrent layer %(name)s must read forwards and return every step: "
                    "return_sequences=True, go_backwards=False, stateful=False.", name=where)
        if name == "LayerNormalization" and config.get("axis", -1) not in (-1, [-1], 2, [2]):
            _refuse("The layer %(name)s may normalise each step's features only (axis=-1).", name=where)
    shape = tuple((described[0].get("config") or {}).get("batch_shape") or ())
    if len(shape) != 2 or shape[1] is not None:
        _refuse("A language model must begin with keras.Input(shape=(None,), dtype=\"int32\"): token ids, "
                "sequences of any length.")
    if len(described) < 2 or described[1]["class_name"] not in ("Embedding", TIED):
        _refuse("A language model's first layer must be an Embedding of the vocabulary.")
    took = described[1]["config"].get("input_dim")
    if took != vocab_size:
        _refuse("The Embedding layer takes %(model)s tokens (input_dim); the vocabulary has %(vocab)s.",
                model=str(took)[:MAX_STRING], vocab=vocab_size)
    _, out = sized_model(described)
    if len(out) != 3:
        _refuse("The model must give one next-token distribution per step: its output has shape %(shape)s.",
                shape=str(out))
    if out[-1] != vocab_size:
        _refuse("The model's last layer gives %(model)s values per step; the vocabulary has %(vocab)s tokens.",
                model=out[-1], vocab=vocab_size)
    if not _softmax_last(described[-1]):
        _refuse("The model's last layer must be a softmax over the vocabulary (Dense(%(vocab)s, "
                "activation=\"softmax\")).", vocab=vocab_size)


def _check_params(params: int, max_params: int | None) -> None:
    if max_params is not None and params > max_params:
        _refuse("The model has %(params)s parameters; the limit for this data set is %(limit)s.",
                params=params, limit=max_params)


def check_archive(path: Path, max_bytes: int = MAX_ARCHIVE_BYTES, recurrent_only: bool = False,
                  max_params: int | None = None, vocab_size: int | None = None) -> dict:
    """The cheap checks of an upload, without Keras (a web worker's, before it queues the archive):
    the zip, config.json and its layers (with `vocab_size`, those of a language model over that
    vocabulary: `check_language_model`), each weight's shape against the one its layer's config
    implies (no weight data read). {"params", "layers": [class names]}."""
    members = open_archive(path, max_bytes)
    config = parse_config(members["config.json"])
    if "metadata.json" in members:
        parse_config(members["metadata.json"])
    described = check_model(config, recurrent_only, tied=vocab_size is not None)
    if vocab_size is not None:
        check_language_model(described, vocab_size)
    expected, _ = sized_model(described)
    shapes = read_shapes(members["model.weights.h5"])
    compare_shapes(expected, shapes)
    params = sum(math.prod(size) for _, _, _, size in expected)
    _check_params(params, max_params)
    return {"params": params, "layers": [obj["class_name"] for obj in described[1:] if obj["class_name"] != TIED_OUTPUT]}


def load_submission(path: Path, max_bytes: int = MAX_ARCHIVE_BYTES, recurrent_only: bool = False,
                    max_params: int | None = None, vocab_size: int | None = None, tied_class=None) -> Submission:
    """A .keras archive checked and rebuilt as data: never through keras.saving.load_model (with
    `vocab_size`, checked as a language model over that vocabulary first, its tied embeddings
    rebuilt with `tied_class`)."""
    members = open_archive(path, max_bytes)
    config = parse_config(members["config.json"])
    if "metadata.json" in members:
        parse_config(members["metadata.json"])
    described = check_model(config, recurrent_only, tied=tied_class is not None)
    if vocab_size is not None:
        check_language_model(described, vocab_size)
    sized_model(described)  # each layer's input shape, as the web checked it: a refusal names the layer
    arrays = read_weights(members["model.weights.h5"])
    model, layers = build_model(config, recurrent_only=recurrent_only,
                                tied_class=tied_class if vocab_size is not None else None)
    params = int(model.count_params())
    _check_params(params, max_params)
    assign_weights(layers, arrays)
    return Submission(model=model, layers=layer_table(layers), params=params)


def write_layer_keys() -> None:
    """Store every allowed layer's config keys, read from the installed Keras, in LAYER_KEYS_FILE."""
    keys = {name: sorted(keras_layer_keys(name)) for name in LAYERS}
    lines = [f" {json.dumps(name)}: {json.dumps(keys[name])}" for name in sorted(keys)]
    LAYER_KEYS_FILE.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


if __name__ == "__main__":
    write_layer_keys()
