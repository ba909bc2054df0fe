"""Serving speed of the web app, each figure against a baseline measured in the same run.

    python benchmarks/serve.py [--requests 2000] [--seconds 20] [--write]

1. Model time per image (in-process, models/mnist and every other shipped image model): the
   model store's compiled predict function (tf.function, XLA) against `model.predict` on the
   same single sample; p50 over repeated calls, and the ratio.
2. HTTP classify over loopback: gunicorn as `make serve` starts it (gunicorn.conf.py, free
   127.0.0.1 port), MNIST, a 28×28 PNG, closed-loop clients; bounded by --requests and
   --seconds. Reported: requests/s, p50/p99, errors; the baseline is one client at a time.
3. Memory and cold start: each worker's RSS with every shipped model loaded, and the seconds from
   starting gunicorn to /readyz answering 200 (first start with an empty XLA cache, then a
   restart that finds it).
With --write the results replace the serving section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import os
import platform
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import numpy as np  # noqa: E402

from load import children, free_port, multipart, rss_mb, start_server, training_running  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- serving:start -->", "<!-- serving:end -->"


def model_times(models_dir: Path, repeats: int) -> list[dict]:
    """Compiled predict vs model.predict, one sample, per shipped image model."""
    import keras

    from app.modelstore import compile_predict
    from app.tasks import IMAGE, discover_tasks

    rows = []
    for slug, spec in discover_tasks(models_dir).items():
        path = models_dir / slug / "model.keras"
        if spec.kind != IMAGE or not path.is_file():
            continue
        model = keras.saving.load_model(path, compile=False)
        fast = compile_predict(model, spec)
        x = np.random.default_rng(0).integers(0, 256, (1, *spec.input_shape)).astype(np.float32)
        np.testing.assert_allclose(fast(x), model.predict(x, verbose=0), atol=1e-4)

        def p50(fn, n):
            times = []
            for _ in range(n):
                t0 = time.perf_counter()
                fn()
                times.append(time.perf_counter() - t0)
            return float(np.median(times)) * 1000

        compiled = p50(lambda: fast(x), repeats)
        predict = p50(lambda: model.predict(x, verbose=0), max(10, repeats // 20))
        rows.append({"slug": slug, "compiled_ms": compiled, "predict_ms": predict, "ratio": predict / compiled})
        print(f"{slug}: compiled {compiled:.3f} ms, predict {predict:.1f} ms, ×{predict / compiled:.0f}", flush=True)
    return rows


def wait_ready(proc, port: int, deadline: float) -> float:
    """Seconds until /readyz answers 200 on every worker (polled until two answers in a row)."""
    t0 = time.monotonic()
    ok = 0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("gunicorn exited early")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            ok = ok + 1 if conn.getresponse().status == 200 else 0
        except OSError:
            ok = 0
        if ok >= 4:  # several answers: both workers have loaded
            return time.monotonic() - t0
        time.sleep(0.1)
    raise SystemExit("gunicorn did not become ready in time")


def png_digit() -> bytes:
    from PIL import Image, ImageDraw

    img = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(img).line((14, 4, 14, 23), fill=255, width=3)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def load_phase(port: int, clients: int, requests: int, seconds: float) -> dict:
    """Closed-loop classify requests; returns requests/s, p50, p99, errors."""
    body, ctype = multipart(png_digit())
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    budget = [requests]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        while time.monotonic() < stop:
            with lock:
                if budget[0] <= 0:
                    return
                budget[0] -= 1
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/api/v1/tasks/mnist/predict", body, {"Content-Type": ctype})
                resp = conn.getresponse()
                resp.read()
                good = resp.status == 200
            except OSError:
                good = False
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            dt_ = time.perf_counter() - t0
            with lock:
                latencies.append(dt_)
                errors[0] += not good

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    lat = np.array(latencies) * 1000
    return {"clients": clients, "requests": len(lat), "rps": len(lat) / elapsed, "p50": float(np.percentile(lat, 50)),
            "p99": float(np.percentile(lat, 99)), "errors": errors[0]}


def http_phase(args) -> dict:
    """Start gunicorn (cold XLA cache, then warm), measure cold start, RSS and classify load."""
    out = {}
    cache = Path(tempfile.mkdtemp(prefix="lstmlab-xla-"))
    try:
        for label in ("cold_cache", "warm_cache"):
            port = free_port()
            log = Path(tempfile.gettempdir()) / f"lstmlab-serve-{port}.log"
            t0 = time.monotonic()
            proc = start_server(port, log, {"FLASK_XLA_CACHE_DIR": str(cache)})
            try:
                out[f"start_{label}"] = wait_ready(proc, port, t0 + 300) + 0.0
                workers = children(proc.pid)
                out["rss_mb"] = [round(rss_mb(p), 1) for p in workers]
                if label == "warm_cache":
                    out["baseline"] = load_phase(port, 1, args.requests // 4, args.seconds / 2)
                    out["load"] = load_phase(port, args.clients, args.requests, args.seconds)
            finally:
                os.killpg(proc.pid, 15)
                proc.wait(30)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    return out


def write(rows: list[dict], web: dict, args) -> None:
    busy = training_running()
    when = dt.date.today().isoformat()
    lines = [START, "## Serving (benchmarks/serve.py)", "",
             f"Measured {when} on this {os.cpu_count()}-core machine ({platform.machine()}), loopback only"
             + (f", **while the training queue was running `{busy}` on the same cores**" if busy else "")
             + ", so absolute numbers are pessimistic; each ratio compares figures from the same run.", "",
             "Model time per image (one sample, p50):", "",
             "| model | compiled predict (ms) | `model.predict` (ms) | × faster |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {r['slug']} | {r['compiled_ms']:.3f} | {r['predict_ms']:.1f} | {r['ratio']:.0f}× |" for r in rows]
    b, lo = web["baseline"], web["load"]
    lines += ["", f"HTTP classify, MNIST, 28×28 PNG, gunicorn as `make serve` runs it (workers={os.environ.get('WEB_CONCURRENCY', '2')}):", "",
              "| phase | clients | requests | req/s | p50 (ms) | p99 (ms) | errors |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
              f"| one at a time (baseline) | 1 | {b['requests']} | {b['rps']:.0f} | {b['p50']:.2f} | {b['p99']:.2f} | {b['errors']} |",
              f"| saturation | {lo['clients']} | {lo['requests']} | {lo['rps']:.0f} | {lo['p50']:.2f} | {lo['p99']:.2f} | {lo['errors']} |",
              "", f"Worker RSS with every shipped model loaded: {', '.join(f'{m:.0f} MB' for m in web['rss_mb'])}. "
              f"Cold start (gunicorn start to /readyz 200 on both workers): {web['start_cold_cache']:.1f} s with an "
              f"empty XLA cache, {web['start_warm_cache']:.1f} s when restarted with the cache.", END]
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Benchmarks\n"
    block = "\n".join(lines)
    if START in text:
        text = text[: text.index(START)] + block + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


def main(argv=None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--repeats", type=int, default=500)
    p.add_argument("--requests", type=int, default=4000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--write", action="store_true")
    args = p.parse_args(argv)
    web = http_phase(args)
    print(web, flush=True)
    rows = model_times(Path(args.models_dir), args.repeats)
    if args.write:
        write(rows, web, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
