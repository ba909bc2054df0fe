"""gunicorn settings, from the environment (`make serve` uses this file): bind, workers, threads,
and the lab bench's training consumers, started and supervised by the master.
Details: docs/DESIGN.md, "gunicorn (gunicorn.conf.py)"."""

import importlib.util
import os
import signal
import subprocess
import sys
import threading
import time

bind = os.environ.get("LSTMLAB_BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
threads = int(os.environ.get("LSTMLAB_THREADS", "4"))
worker_class = "gthread"
preload_app = False
# Also bounds a worker's start: < 1 s with LiteRT, up to ~70 s when a model falls back to XLA.
timeout = int(os.environ.get("LSTMLAB_TIMEOUT", "120"))
graceful_timeout = 30
keepalive = 5
accesslog = os.environ.get("LSTMLAB_ACCESS_LOG") or None  # "-" for stdout
errorlog = "-"
loglevel = os.environ.get("LSTMLAB_LOG_LEVEL", "info")
raw_env = ["TF_CPP_MIN_LOG_LEVEL=2"]
# One TensorFlow / oneDNN / BLAS thread per worker (LSTMLAB_TF_THREADS, 0 = the libraries' own
# default of one per core): workers × request threads already fill the cores, and per-request
# thread pools on top of them halved throughput at saturation (docs/BENCHMARKS.md, "Load").
_tf_threads = os.environ.get("LSTMLAB_TF_THREADS", "1")
if _tf_threads != "0":
    raw_env += [f"{name}={_tf_threads}" for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                                      "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS")]

# The lab bench's training consumers (LSTMLAB_TRAIN_WORKERS, default 1; 0 = none, e.g. when
# `make worker` runs them elsewhere): started by the master once it is ready, stopped when it
# exits, each `python -m app.lab` at lower CPU priority (LAB_WORKER_NICE). Web workers never train.
# The master supervises them (a thread polling its children): no extra supervisor to install, and
# `make serve` stays one command.
_consumers = []
_stopping = threading.Event()


def when_ready(server):
    """Start the Huey consumers beside the web workers."""
    count = int(os.environ.get("LSTMLAB_TRAIN_WORKERS", "1"))
    if count > 0 and importlib.util.find_spec("keras") is None:  # a serving-only install cannot train
        server.log.info("lab bench: no training consumer started: the training libraries are not installed "
                        "(a serving-only install; run `make worker` where they are)")
        return
    def spawn():
        return subprocess.Popen([sys.executable, "-m", "app.lab"], start_new_session=True,
                                env={**os.environ, "LSTMLAB_MASTER_PID": str(os.getpid())})

    for _ in range(max(0, count)):
        _consumers.append(spawn())
    if count > 0:
        server.log.info("lab bench: %d training consumer(s) started: pids %s", count,
                        ", ".join(str(p.pid) for p in _consumers))
        threading.Thread(target=_supervise, args=(server, spawn), name="lab-supervisor", daemon=True).start()


def _supervise(server, spawn):
    """Restart a consumer that died (its first act is to sweep the run it left back into the
    queue), waiting 1 s, then twice as long after each quick death, up to 30 s."""
    delays = [1.0] * len(_consumers)
    while not _stopping.wait(1.0):
        for i, proc in enumerate(_consumers):
            if proc.poll() is None:
                continue
            lived = time.monotonic() - getattr(proc, "started", 0.0)
            delays[i] = 1.0 if lived > 60 else min(30.0, delays[i] * 2)
            server.log.warning("lab bench: consumer %d exited (%s); restarting it", proc.pid, proc.returncode)
            if _stopping.wait(delays[i] / 2):
                return
            _consumers[i] = spawn()
            _consumers[i].started = time.monotonic()


def on_exit(server):
    """Stop the consumers this master started (SIGINT: Huey's graceful stop lets a run checkpoint)."""
    _stopping.set()
    for proc in _consumers:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
    for proc in _consumers:
        try:
            proc.wait(timeout=graceful_timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
