"""gunicorn settings, from the environment (`make serve` uses this file).

LSTMLAB_BIND (default 127.0.0.1:8000), WEB_CONCURRENCY (workers, default 2), LSTMLAB_THREADS
(threads per worker, default 4: a streamed text holds one thread, not a whole worker).
No `preload_app`: TensorFlow is not fork-safe, so each worker loads the models after forking.
"""

import os

bind = os.environ.get("LSTMLAB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("LSTMLAB_THREADS", "4"))
worker_class = "gthread"
preload_app = False
timeout = int(os.environ.get("LSTMLAB_TIMEOUT", "120"))  # loading and compiling the models at start
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("LSTMLAB_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"
loglevel = os.environ.get("LSTMLAB_LOG_LEVEL", "info")
raw_env = ["TF_CPP_MIN_LOG_LEVEL=2"]
