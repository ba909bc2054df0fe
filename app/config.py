"""Configuration: defaults, overridden by FLASK_* environment variables, then by test_config."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS_DIR = ROOT / "models"


def default_data_dir() -> Path:
    """Where the data sets are: $LSTMLAB_DATA, else ./data if it holds data, else ../shared/data."""
    env = os.environ.get("LSTMLAB_DATA")
    if env:
        return Path(env)
    local = ROOT / "data"
    if any(p.is_dir() for p in local.glob("*")):
        return local
    return ROOT.parent / "shared" / "data"


class Config:
    """Defaults; `create_app` then applies `FLASK_`-prefixed environment variables."""

    SECRET_KEY = "dev-only-not-secret"
    MODELS_DIR = str(MODELS_DIR)
    MAX_CONTENT_LENGTH = 8 * 1024 * 1024  # uploads above 8 MB get 413
    DEFAULT_LANGUAGE = "vi"
    LANGUAGES = ("vi", "en")
    PREDICT_LITERT = True  # serve image models from their model.tflite (no TensorFlow in the worker)
    PREDICT_INT8 = True  # serve model.int8.tflite when its card says it passed the accuracy check
    LITERT_INTERPRETERS = 2  # LiteRT interpreters per image model (one per request running it)
    PREDICT_JIT = True  # the Keras fallback: XLA-compile each image model's predict function
    XLA_CACHE_DIR = str(ROOT / ".cache" / "xla")  # compiled models kept across restarts ("" = off)
