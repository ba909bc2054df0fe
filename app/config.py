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
    """Every setting's default. `Config.from_environment()` reads the deployment's LSTMLAB_* and
    LAB_* variables when an app is created; `create_app` then applies FLASK_* variables and its
    test_config over both."""

    # serving
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
    MODELS_RELOAD_SECONDS = 2.0  # how often a worker looks for new, changed or removed cards
    ALLOW_SHARED_MODELS = False  # serve from a group- or world-writable models folder

    # security
    HTTPS = False  # Secure cookies and HSTS on every response (also per request when it came over https)
    TRUSTED_PROXIES = 0  # proxies in front that set X-Forwarded-For/-Proto (werkzeug's ProxyFix)
    WTF_CSRF_TIME_LIMIT = 4 * 3600  # a form left open through a lesson still submits
    RATELIMIT_STORAGE_URI = "memory://"  # per worker; a redis:// URL makes one budget for all
    # A refused request uses none of the budget (a fixed window would count it: one heavy request
    # refused twice would lock its client out for the rest of the minute).
    RATELIMIT_STRATEGY = "sliding-window-counter"
    RATELIMIT_IN_MEMORY_FALLBACK_ENABLED = True  # Redis down: per worker
    RATELIMIT_HEADERS_ENABLED = True
    RATELIMIT_GENERATE = "30 per minute"  # Flask-Limiter rate strings, per client
    # Work units (tokens generated × beams): the largest request (20 Kiều couplets, beam width 16)
    # still fits, once a minute.
    RATELIMIT_GENERATE_WORK = "6000 per minute"
    RATELIMIT_TRACE = "20 per minute"  # a gate trace costs many plain predictions
    RATELIMIT_LOGIN = "10 per minute"  # sign-in tries per address, right or wrong

    # the instructor console
    INSTRUCTOR_SESSION_HOURS = 8  # a sign-in lasts at most this long
    INSTRUCTOR_IDLE_MINUTES = 60  # ... and ends after this long without a request
    LOGIN_FREE_TRIES = 5  # wrong passwords in a row (per name and address) that cost no wait
    LOGIN_DELAY_MAX_SECONDS = 60  # the longest wait between tries (it doubles from 1 s up to this)
    API_TOKEN_DAYS = 90  # how long a new API token lasts unless its creator chooses
    API_TOKEN_MAX_DAYS = 365  # the longest a token may be made to last
    DATASET_MAX_UPLOAD_BYTES = 512 * 1024 * 1024  # one zip upload (the request body)
    DATASET_MAX_TOTAL_BYTES = 2 * 1024 * 1024 * 1024  # all files of a data set, uncompressed
    DATASET_MAX_RATIO = 100  # uncompressed / compressed, per file and for the whole archive
    DATASET_MAX_FILES = 50_000  # entries in one archive or folder
    DATASET_MAX_FILE_BYTES = 20 * 1024 * 1024  # one image file
    DATASET_MAX_CLASSES = 200
    DATASET_SERVER_ROOT = ""  # folders under this root may be imported ("" = option off)
    CORPUS_MAX_BYTES = 20 * 1024 * 1024  # one text corpus (a .txt upload or server file); its preview runs in the request

    # the lab bench's queue, records and consumers (README, "Lab bench: queue, workers, scale-out");
    # read from the environment under their own names: a consumer on another machine needs the
    # same two URLs as the web
    LSTMLAB_QUEUE_URL = ""  # "" = Huey's SQLite file in the instance folder
    LSTMLAB_DATABASE_URL = ""  # "" = SQLite file in the instance folder
    LSTMLAB_TRAIN_WORKERS = 1  # consumers `make serve` starts
    LSTMLAB_AUTO_UPGRADE = "1"  # migrate the schema at start-up
    LAB_WORKER_NICE = 10  # consumers' CPU priority drop
    LAB_PROGRESS_SECONDS = 2.0  # progress write within an epoch
    LAB_STALE_SECONDS = 60.0  # no heartbeat this long: interrupted
    LAB_MAX_ATTEMPTS = 3  # starts of one run before it is failed
    LAB_SSE_SECONDS = 600.0  # one events stream's longest life
    LAB_SSE_POLL = 0.5  # how often an events stream reads the record
    LAB_TEST_SUBSET = 0  # test images per run (0: the official split)
    LAB_TEXT_QUICK = 0  # text runs as --quick: a slice of the corpus (tests)
    LAB_EXPORT_INT8 = 0  # also export and check int8 (slower runs)

    @classmethod
    def from_environment(cls, env=None) -> dict:
        """The settings the environment sets, as config keys (read when an app is created, so a
        test's environment counts)."""
        env = os.environ if env is None else env
        out: dict = {}
        for name in ("LSTMLAB_QUEUE_URL", "LSTMLAB_DATABASE_URL", "LSTMLAB_AUTO_UPGRADE"):
            if name in env:
                out[name] = env[name]
        for name, kind in (("LSTMLAB_TRAIN_WORKERS", int), ("LAB_WORKER_NICE", int), ("LAB_PROGRESS_SECONDS", float),
                           ("LAB_STALE_SECONDS", float), ("LAB_MAX_ATTEMPTS", int), ("LAB_SSE_SECONDS", float),
                           ("LAB_SSE_POLL", float), ("LAB_TEST_SUBSET", int), ("LAB_TEXT_QUICK", int),
                           ("LAB_EXPORT_INT8", int)):
            if env.get(name):
                out[name] = kind(env[name])
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
