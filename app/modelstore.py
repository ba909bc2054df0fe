"""Load every task's model once per worker, before serving, with one compiled predict function per
model (LiteRT from model.tflite, else XLA over Keras; text in NumPy); a task whose files are
missing or damaged is kept as unavailable with the command that trains it.
Details: docs/DESIGN.md, "The model store (app/modelstore.py)"."""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import queue
import re
import stat
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from flask import Flask, current_app

from app.cards import Card, CardError
from app.errors import InsecureConfiguration, InvalidInput
from app.tasks import BUILTIN_TASKS, IMAGE, SLUG_RE, TEXT, TaskSpec, discover_tasks
from app.textmodel import load_text_model

log = logging.getLogger(__name__)

READY, MISSING, ERROR = "ready", "missing", "error"
EXTENSION = "modelstore"
# An absolute path (not a URL, not a fraction): what the pages and the API must not show.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/\\-])/(?:[^\s'\"/()<>,;:]+/)*([^\s'\"/()<>,;:]+)/?")


@dataclass
class Entry:
    """One task as served: its spec, card, status and (when ready) its loaded model."""

    spec: TaskSpec
    status: str = MISSING
    folder: Path | None = None  # where its model.keras, card and plots are (models/<slug>/ or a lab run's)
    card: Card | None = None  # the card as the pages show it (absolute paths hidden)
    predict: Callable[[np.ndarray], np.ndarray] | None = None  # image tasks
    engine: str = ""  # "litert" | "xla" | "tf" (image), "numpy" (text)
    precision: str = ""  # image tasks: of the weights served, "int8" (litert) or "float32"
    text_model: Any = None  # text tasks: app.textmodel.TextModel
    error: str = ""
    reason: InvalidInput | None = None  # why, in any language, when the card does not fit the schema
    load_seconds: float = 0.0
    plots: list[str] = field(default_factory=list)
    fix_command: str = ""  # set when another command than training makes the task servable

    @property
    def slug(self) -> str:
        """The task's slug."""
        return self.spec.slug

    @property
    def available(self) -> bool:
        """True when the model is loaded and can answer requests."""
        return self.status == READY

    @property
    def command(self) -> str:
        """The command that makes this task servable: its export when set, else its training."""
        if self.fix_command:
            return self.fix_command
        card_command = self.card.command if self.card else None
        if self.spec.slug not in BUILTIN_TASKS and card_command:
            return card_command
        return f"python -m training {self.spec.slug}"

    def metric(self) -> tuple[str, float | None]:
        """The headline figure for the home page: ("test_accuracy" | "test_perplexity", value)."""
        key = "test_perplexity" if self.spec.kind == TEXT else "test_accuracy"
        return key, getattr(self.card.metrics, key) if self.card else None

    def status_dict(self) -> dict:
        """JSON-ready status (for /readyz and /api/v1/tasks)."""
        out = {"status": self.status, "kind": self.spec.kind, "load_seconds": round(self.load_seconds, 3)}
        if self.engine:
            out["engine"] = self.engine
        if self.precision:
            out["precision"] = self.precision
        if not self.available:
            out["error"] = self.error
            if self.reason:
                out["error_en"], out["error_vi"] = self.reason.en, self.reason.vi
            out["command"] = self.command
        return out


PLOTS = ("training_curves.png", "confusion_matrix.png")


@dataclass(frozen=True)
class Engines:
    """How image models are served (the app's PREDICT_* and LITERT_INTERPRETERS settings)."""

    jit: bool = True  # the Keras fallback is XLA-compiled
    litert: bool = True  # serve model.tflite when it is current
    interpreters: int = 2  # LiteRT interpreters per model
    int8: bool = True  # serve model.int8.tflite when its card accepted it
    keras: bool = True  # run model.keras with Keras when there is no current .tflite

    @classmethod
    def from_config(cls, config) -> Engines:
        return cls(jit=bool(config.get("PREDICT_JIT", True)), litert=bool(config.get("PREDICT_LITERT", True)),
                   interpreters=int(config.get("LITERT_INTERPRETERS", 2)), int8=bool(config.get("PREDICT_INT8", True)))


class ModelStore:
    """Every task of `models_dir`, loaded once, and the most recently asked lab runs' models."""

    RUNS_KEPT = 8  # finished lab runs' models kept loaded per web worker

    def __init__(self, models_dir: Path, engines: Engines = Engines()):
        self.models_dir = Path(models_dir)
        self.engines = engines
        self.entries: dict[str, Entry] = {}
        self.loaded = False
        self.seconds = 0.0
        self._runs: OrderedDict[str, tuple[int, Entry]] = OrderedDict()  # run id -> (card mtime, entry)
        self._runs_lock = threading.Lock()

    def run_entry(self, run_id: str, folder: Path) -> Entry | None:
        """A lab run's model from its own folder, served without TensorFlow (LiteRT for images,
        NumPy for text), reloaded when its card changes; None when the folder has no card."""
        try:
            stamp = (folder / "card.json").stat().st_mtime_ns
        except OSError:
            return None
        with self._runs_lock:  # a request for a loaded run costs one stat, not a card read
            cached = self._runs.get(run_id)
            if cached and cached[0] == stamp:
                self._runs.move_to_end(run_id)
                return cached[1]
        try:
            spec = Card.from_json(folder / "card.json").spec
        except (OSError, ValueError, KeyError, TypeError, CardError):
            return None
        entry = load_entry(folder, spec, replace(self.engines, keras=False))
        with self._runs_lock:
            self._runs[run_id] = (stamp, entry)
            while len(self._runs) > self.RUNS_KEPT:
                self._runs.popitem(last=False)
        return entry

    def forget_run(self, run_id: str) -> None:
        """Drop a deleted run's loaded model."""
        with self._runs_lock:
            self._runs.pop(run_id, None)

    def load(self) -> ModelStore:
        """Load every discovered task; failures are recorded per task, never raised."""
        t0 = time.perf_counter()
        for slug, spec in servable_tasks(self.models_dir).items():
            self.entries[slug] = load_entry(self.models_dir / slug, spec, self.engines)
        self.seconds = time.perf_counter() - t0
        self.loaded = True
        ready = [s for s, e in self.entries.items() if e.available]
        log.info("models loaded in %.1f s: %s ready, %d unavailable", self.seconds, ready,
                 len(self.entries) - len(ready))
        return self

    def get(self, slug: str) -> Entry:
        """The entry for `slug`; KeyError for an unknown task."""
        return self.entries[slug]

    def __iter__(self):
        return iter(self.entries.values())

    def status(self) -> dict:
        """Loading state and per-task status."""
        return {"loaded": self.loaded, "seconds": round(self.seconds, 3),
                "tasks": {slug: e.status_dict() for slug, e in self.entries.items()}}


def load_entry(folder: Path, spec: TaskSpec, engines: Engines = Engines()) -> Entry:
    """Load one task folder into an Entry (status MISSING or ERROR instead of raising)."""
    entry = Entry(spec, folder=Path(folder))
    t0 = time.perf_counter()
    card_path, model_path = folder / "card.json", folder / "model.keras"
    if not card_path.is_file() or not model_path.is_file():
        entry.error = "model not trained yet" if not model_path.is_file() else "card.json is missing"
        return entry
    try:
        card = Card.from_json(card_path)
        entry.card = public_card(card)  # only a sound card reaches the pages
        if spec.kind == IMAGE:
            pool = litert_predict(folder, card, spec, engines.interpreters, engines.int8) if engines.litert else None
            if pool is not None:
                entry.predict, entry.engine, entry.precision = pool, "litert", pool.precision
            elif not engines.keras:
                entry.status, entry.error = ERROR, "model.tflite is missing or stale"
                return entry
            elif importlib.util.find_spec("keras") is None:  # a serving-only install: no fallback
                entry.status, entry.fix_command = ERROR, f"python -m training export {spec.slug}"
                entry.error = "no current model.tflite, and Keras is not installed to run model.keras"
                return entry
            else:
                import keras  # heavy: Keras loads only when a model has no current .tflite

                entry.predict = compile_predict(keras.saving.load_model(model_path, compile=False), spec, engines.jit)
                entry.engine, entry.precision = ("xla" if engines.jit else "tf"), "float32"
        elif spec.kind == TEXT:
            entry.text_model = load_text_model(folder, spec)
            entry.engine = "numpy"
        else:
            raise ValueError(f"unknown task kind {spec.kind!r}")
    except Exception as exc:  # noqa: BLE001 - any failure to load one model must not stop the others
        log.warning("task %s unavailable: %s: %s", spec.slug, exc.__class__.__name__, exc)
        if isinstance(exc, CardError):
            entry.reason = InvalidInput("Its card.json does not fit the card schema (%(fields)s).", 503,
                                        fields=", ".join(exc.fields))
        entry.status, entry.error = ERROR, hide_paths(f"{exc.__class__.__name__}: {str(exc)[:300]}")
        return entry
    entry.plots = [p for p in PLOTS if (folder / p).is_file()]
    entry.status = READY
    entry.load_seconds = time.perf_counter() - t0
    return entry


def hide_paths(text: str) -> str:
    """`text` with every absolute path cut to its last part: the server's (or an instructor's)
    folders are logged, never shown."""
    return ABSOLUTE_PATH.sub(lambda m: m.group(1), text)


def public_card(card: Card) -> Card:
    """The card as the pages and the API show it: the data block's and the command's absolute
    paths (an instructor's --data-dir) cut to their base names."""
    shown = card.to_json()
    if "data" in shown:
        shown["data"] = {k: hide_paths(v) if isinstance(v, str) else v for k, v in shown["data"].items()}
    if "command" in shown:
        shown["command"] = hide_paths(shown["command"])
    return Card.from_json(shown)


def check_permissions(models_dir: Path) -> None:
    """`InsecureConfiguration` when the models folder, a task folder or a file in one is writable
    by its group or by anyone: whoever can write there chooses what the server loads and runs."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return
    paths = [models_dir]
    for folder in sorted(models_dir.iterdir()):
        if folder.is_dir() and not folder.name.startswith("."):
            paths += [folder, *sorted(p for p in folder.iterdir() if not p.name.startswith("."))]
    shared = [p for p in paths if p.stat().st_mode & (stat.S_IWGRP | stat.S_IWOTH)]
    if shared:
        raise InsecureConfiguration(
            f"refusing to load models from a folder others can write to: {', '.join(map(str, shared[:5]))}"
            f"{' ...' if len(shared) > 5 else ''} is group- or world-writable (fix: chmod -R go-w "
            f"{models_dir}; or set LSTMLAB_ALLOW_SHARED_MODELS=1 if that is intended)")


def private_folder(path: Path) -> bool:
    """Create `path` (mode 0700) or make it 0700 when we own it; False when it belongs to someone
    else (a shared cache another user could fill with compiled code)."""
    path = Path(path)
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.stat()
    if info.st_uid != os.getuid():
        return False
    if info.st_mode & 0o077:
        path.chmod(0o700)
    return True


def current_tflite(folder: Path, card: Card, int8: bool = True) -> tuple[bytes, str] | None:
    """(flatbuffer, "int8" | "float32") to serve, or None. Only exports of the model.keras on disk
    count, and only files whose sha256 is the card's (a damaged copy is not served). The int8
    export (`training.export.export_int8`) comes first when `int8` and its card says it passed
    the accuracy check on the test set; float32 model.tflite otherwise."""
    export = card.export
    if export is None or not export.source_sha256:
        return None
    if _sha256((folder / "model.keras").read_bytes()) != export.source_sha256:
        log.warning("task %s: model.tflite is older than model.keras (run: python -m training export %s)",
                    folder.name, folder.name)
        return None
    files = [("model.tflite", export.sha256, "float32")]
    if int8 and export.int8 and export.int8.served_file:
        files.insert(0, (export.int8.served_file, export.int8.sha256, "int8"))
    for name, sha, precision in files:
        path = folder / name
        if not path.is_file():
            continue
        flatbuffer = path.read_bytes()
        if sha and _sha256(flatbuffer) != sha:
            log.warning("task %s: %s does not match its card's sha256", folder.name, name)
            continue
        return flatbuffer, precision
    return None


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class InterpreterPool:
    """LiteRT interpreters of one model, each used by one request thread at a time (an interpreter
    is not thread-safe; several let the worker's threads run the model in parallel)."""

    def __init__(self, flatbuffer: bytes, size: int, precision: str = "float32"):
        from ai_edge_litert.interpreter import Interpreter  # heavy: loads only when LiteRT serves a model

        self.precision = precision  # of the weights: "float32" or "int8" (shown on the pages)
        self.free: queue.LifoQueue = queue.LifoQueue()
        for _ in range(max(1, size)):
            interp = Interpreter(model_content=flatbuffer, num_threads=1)
            interp.allocate_tensors()
            self.input, self.output = interp.get_input_details()[0], interp.get_output_details()[0]
            interp.set_tensor(self.input["index"], np.zeros(self.input["shape"], np.float32))
            interp.invoke()  # warm-up: the first invoke prepares the kernels
            self.free.put(interp)
        self.classes = int(self.output["shape"][-1])

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        """(N, H, W, C) float32 -> (N, classes) probabilities, one image per invoke (batch 1 model)."""
        batch = np.asarray(batch, dtype=np.float32)
        out = np.empty((len(batch), self.classes), np.float32)
        interp = self.free.get()
        try:
            for k in range(len(batch)):
                interp.set_tensor(self.input["index"], batch[k:k + 1])
                interp.invoke()
                out[k] = interp.get_tensor(self.output["index"])[0]
        finally:
            self.free.put(interp)
        return out


def litert_predict(folder: Path, card: Card, spec: TaskSpec, size: int = 2, int8: bool = True) -> InterpreterPool | None:
    """The LiteRT predict function of an image task (its int8 export when `int8` and the card
    accepted it), warmed up; None (the caller falls back to Keras) when there is no current
    model.tflite, LiteRT is missing or the file does not load."""
    found = current_tflite(folder, card, int8)
    if found is None:
        return None
    flatbuffer, precision = found
    try:
        pool = InterpreterPool(flatbuffer, size, precision)
        expected = (1, *spec.input_shape)
        if tuple(pool.input["shape"]) != expected:
            raise ValueError(f"model.tflite input {tuple(pool.input['shape'])} is not {expected}")
        probs = pool(np.zeros((1, *spec.input_shape), np.float32))
        if probs.shape[1:] != (len(spec.classes),):
            raise ValueError(f"model.tflite output {probs.shape[1:]} does not match {len(spec.classes)} classes")
    except (ImportError, ValueError, RuntimeError) as exc:
        log.warning("task %s: model.tflite not used (%s: %s); falling back to Keras", spec.slug,
                    exc.__class__.__name__, exc)
        return None
    return pool


def compile_predict(model, spec: TaskSpec, jit: bool = True) -> Callable[[np.ndarray], np.ndarray]:
    """One compiled function (None, H, W, C) float32 -> probabilities, traced and warmed up now."""
    import tensorflow as tf  # heavy: TensorFlow loads only for the XLA engine

    shape = tuple(spec.input_shape)
    if tuple(model.input_shape[1:]) != shape:
        raise ValueError(f"model input {model.input_shape[1:]} does not match the task's {shape}")

    @tf.function(input_signature=[tf.TensorSpec((None, *shape), tf.float32)], jit_compile=jit)
    def forward(x):
        return model(x, training=False)

    def predict(batch: np.ndarray) -> np.ndarray:
        return forward(np.asarray(batch, dtype=np.float32)).numpy()

    probs = predict(np.zeros((1, *shape), np.float32))  # trace and compile before the first request
    if probs.shape != (1, len(spec.classes)):
        raise ValueError(f"model output {probs.shape[1:]} does not match {len(spec.classes)} classes")
    return predict


def init_app(app: Flask) -> None:
    """Load the models of `app.config["MODELS_DIR"]` into `app.extensions`."""
    if not app.config.get("ALLOW_SHARED_MODELS"):
        check_permissions(Path(app.config["MODELS_DIR"]))
    cache = app.config.get("XLA_CACHE_DIR")
    if cache and "tf_xla_persistent_cache_directory" not in os.environ.get("TF_XLA_FLAGS", ""):
        # XLA keeps compiled models on disk: the second worker and every restart skip the compile.
        # Compiled code is loaded from there, so the folder is private (0700, ours) or not used.
        if private_folder(Path(cache)):
            os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "") +
                                          f" --tf_xla_persistent_cache_directory={cache}").strip()
        else:
            log.warning("XLA cache %s belongs to another user: not used", cache)
    store = ModelStore(Path(app.config["MODELS_DIR"]), Engines.from_config(app.config))
    app.extensions[EXTENSION] = store.load()
    watch_models(app, store)


def get_store() -> ModelStore:
    """The current app's model store."""
    return current_app.extensions[EXTENSION]


# ----------------------------------------------------------------------------- hot reload
# A task published, replaced or unpublished by the instructor console appears, changes or goes
# in every worker without a restart: at most every MODELS_RELOAD_SECONDS a request first stats
# models/*/card.json (a few stat calls), and only the folders whose card changed are (re)loaded.
WATCHER = "modelstore_watch"


def servable_tasks(models_dir: Path) -> dict[str, TaskSpec]:
    """The discovered tasks whose card names its own folder under the slug rule; the others are
    skipped and logged (a card that names another task, or a path, would make the pages read
    files outside its own folder)."""
    tasks = {}
    for slug, spec in discover_tasks(models_dir).items():
        if spec.slug != slug or not SLUG_RE.match(slug):
            log.warning("models/%s skipped: its card.json declares task %r (the slug must be the "
                        "folder's name: lowercase letters, digits, underscores)", slug, spec.slug)
            continue
        tasks[slug] = spec
    return tasks


@dataclass
class Watch:
    """What one worker last saw of models/*/card.json, and when it looked."""

    interval: float
    signature: dict[str, tuple[int, int, int]]
    checked: float = field(default_factory=time.monotonic)
    lock: threading.Lock = field(default_factory=threading.Lock)


def card_signature(models_dir: Path) -> dict[str, tuple[int, int, int]]:
    """slug -> (mtime ns, size, inode) of every models/<slug>/card.json (hidden folders skipped)."""
    out = {}
    for path in Path(models_dir).glob("*/card.json"):
        if path.parent.name.startswith("."):
            continue
        try:
            st = path.stat()
        except OSError:
            continue
        out[path.parent.name] = (st.st_mtime_ns, st.st_size, st.st_ino)
    return out


def refresh_store(store: ModelStore, watch: Watch, now: float | None = None) -> list[str]:
    """Reload the tasks whose card appeared, changed or vanished since the last look (at most
    every `watch.interval` seconds, one thread at a time); returns their slugs."""
    now = time.monotonic() if now is None else now
    if now - watch.checked < watch.interval or not watch.lock.acquire(blocking=False):
        return []
    try:
        watch.checked = now
        signature = card_signature(store.models_dir)
        if signature == watch.signature:
            return []
        changed = sorted(s for s in set(signature) | set(watch.signature) if signature.get(s) != watch.signature.get(s))
        specs = servable_tasks(store.models_dir)
        entries = dict(store.entries)
        for slug in changed:
            if slug in specs:
                entries[slug] = load_entry(store.models_dir / slug, specs[slug], store.engines)
            else:
                entries.pop(slug, None)
        store.entries = entries  # one assignment: a request sees the old set or the new one
        watch.signature = signature
        log.info("models reloaded: %s", changed)
        return changed
    finally:
        watch.lock.release()


def watch_models(app: Flask, store: ModelStore) -> None:
    """Check for new, changed and removed cards before requests (MODELS_RELOAD_SECONDS; < 0: never)."""
    interval = float(app.config["MODELS_RELOAD_SECONDS"])
    if interval < 0:
        return
    app.extensions[WATCHER] = Watch(interval, card_signature(store.models_dir))

    def refresh_before_request() -> None:
        refresh_store(current_app.extensions[EXTENSION], current_app.extensions[WATCHER])

    app.before_request(refresh_before_request)
