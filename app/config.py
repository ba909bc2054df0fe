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
    BABEL_DEFAULT_TIMEZONE = "Asia/Ho_Chi_Minh"  # times on pages (FLASK_BABEL_DEFAULT_TIMEZONE to change)
    PREDICT_LITERT = True  # serve image models from their model.tflite (no TensorFlow in the worker)
    PREDICT_INT8 = True  # serve model.int8.tflite when its card says it passed the accuracy check
    LITERT_INTERPRETERS = 2  # LiteRT interpreters per image model (one per request running it)
    PREDICT_JIT = True  # the Keras fallback: XLA-compile each image model's predict function
    XLA_CACHE_DIR = str(ROOT / ".cache" / "xla")  # compiled models kept across restarts ("" = off), made 0700
    REQUIRED_TASKS: tuple[str, ...] = ()  # /readyz is 503 until these are ready (else: until one is)
    ALLOW_SHARED_MODELS = False  # serve from a group- or world-writable models folder
    HTTPS = False  # Secure cookies and HSTS on every response (also per request when it came over https)
    TRUSTED_PROXIES = 0  # proxies in front that set X-Forwarded-For/-Proto (werkzeug's ProxyFix)
    WTF_CSRF_TIME_LIMIT = 4 * 3600  # a form left open through a lesson still submits
    RATELIMIT_STORAGE_URI = "memory://"  # per worker; a redis:// URL makes one budget for all


def environment_settings(env=None) -> dict:
    """The LSTMLAB_* deployment settings of the environment, as config keys (read when an app is
    created, so FLASK_* variables and test_config still override them)."""
    env = os.environ if env is None else env
    out: dict = {}
    if env.get("LSTMLAB_REQUIRED_TASKS"):
        out["REQUIRED_TASKS"] = tuple(split_words(env["LSTMLAB_REQUIRED_TASKS"]))
    if env.get("LSTMLAB_TRUSTED_HOSTS"):
        out["TRUSTED_HOSTS"] = split_words(env["LSTMLAB_TRUSTED_HOSTS"])
    for name, key in (("LSTMLAB_ALLOW_SHARED_MODELS", "ALLOW_SHARED_MODELS"), ("LSTMLAB_HTTPS", "HTTPS")):
        if name in env:
            out[key] = env[name].strip().lower() in ("1", "true", "yes", "on")
    if env.get("LSTMLAB_TRUSTED_PROXIES"):
        out["TRUSTED_PROXIES"] = int(env["LSTMLAB_TRUSTED_PROXIES"])
    queue = env.get("LSTMLAB_QUEUE_URL", "")
    storage = env.get("LSTMLAB_LIMITER_STORAGE") or (queue if queue.startswith(("redis://", "rediss://")) else "")
    if storage:
        out["RATELIMIT_STORAGE_URI"] = storage
    return out


def split_words(value) -> list[str]:
    """A comma-separated setting ("mnist, kieu") as a list; a list or tuple is kept as it is."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [w.strip() for w in str(value or "").split(",") if w.strip()]


def instance_dir() -> Path:
    """The instance folder (runtime files: records, queue, runs): $LSTMLAB_INSTANCE, else ./instance."""
    return Path(os.environ.get("LSTMLAB_INSTANCE") or ROOT / "instance").resolve()


class LabEngineConfig:
    """The lab bench's queue, records and workers (README, "Lab bench: queue, workers, scale-out").

    Read from the environment under their own names (a consumer on another machine needs the same
    two URLs as the web); FLASK_-prefixed variables and test_config override them as usual."""

    LSTMLAB_QUEUE_URL = os.environ.get("LSTMLAB_QUEUE_URL", "")  # "" = Huey's SQLite file in the instance folder
    LSTMLAB_DATABASE_URL = os.environ.get("LSTMLAB_DATABASE_URL", "")  # "" = SQLite file in the instance folder
    LSTMLAB_TRAIN_WORKERS = int(os.environ.get("LSTMLAB_TRAIN_WORKERS", "1"))  # consumers `make serve` starts
    LSTMLAB_AUTO_UPGRADE = os.environ.get("LSTMLAB_AUTO_UPGRADE", "1")  # migrate the schema at start-up
    LAB_WORKER_NICE = int(os.environ.get("LAB_WORKER_NICE", "10"))  # consumers' CPU priority drop
    LAB_PROGRESS_SECONDS = float(os.environ.get("LAB_PROGRESS_SECONDS", "2"))  # progress write within an epoch
    LAB_STALE_SECONDS = float(os.environ.get("LAB_STALE_SECONDS", "60"))  # no heartbeat this long: interrupted
    LAB_MAX_ATTEMPTS = int(os.environ.get("LAB_MAX_ATTEMPTS", "3"))  # starts of one run before it is failed
    LAB_SSE_SECONDS = float(os.environ.get("LAB_SSE_SECONDS", "600"))  # one events stream's longest life
    LAB_SSE_POLL = float(os.environ.get("LAB_SSE_POLL", "0.5"))  # how often an events stream reads the record
    LAB_TEST_SUBSET = int(os.environ.get("LAB_TEST_SUBSET", "0"))  # test images per run (0: the official split)
    LAB_TEXT_QUICK = int(os.environ.get("LAB_TEXT_QUICK", "0"))  # text runs as --quick: a slice of the corpus (tests)
    LAB_EXPORT_INT8 = int(os.environ.get("LAB_EXPORT_INT8", "0"))  # also export and check int8 (slower runs)
