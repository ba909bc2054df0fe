"""Serving speed of the web app, each figure against a baseline measured in the same run.

    python benchmarks/serve.py [--requests 4000] [--seconds 20] [--write]

1. Model time per image (in-process, every shipped image model): the served engine (LiteRT over
   models/<slug>/model.int8.tflite when its card accepted it, else model.tflite) against
   `model.predict` on the same single sample, against LiteRT over the float32 model.tflite, and
   against the previous engine (the XLA-compiled tf.function the app falls back to); p50 over
   repeated calls of the very function a request calls.
2. HTTP classify over loopback: gunicorn as `make serve` starts it (gunicorn.conf.py, free
   127.0.0.1 port), MNIST, a 28×28 PNG, closed-loop clients; bounded by --requests and
   --seconds. Reported: requests/s, p50/p99, errors; the baseline is one client at a time.
3. Memory and cold start: each worker's RSS with every shipped model loaded, and the seconds from
   starting gunicorn to /readyz answering 200 on both workers.
Parts 2 and 3 run twice: as served (LiteRT) and with FLASK_PREDICT_LITERT=0 (the XLA fallback,
empty XLA cache). With --write the results replace the serving section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import io
import json
import os
import platform
import shutil
import subprocess
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

from load import children, free_port, machine_busy, multipart, rss_mb, start_server  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
START, END = "<!-- serving:start -->", "<!-- serving:end -->"


def p50_ms(fn, n: int) -> float:
    """Median wall time of `fn()` over `n` calls, in milliseconds."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times)) * 1000


def model_times(models_dir: Path, repeats: int) -> list[dict]:
    """Served engine (LiteRT) vs the XLA tf.function vs model.predict, one sample, per image model.
    Every LiteRT time is taken first, before TensorFlow runs anything in this process (its thread
    pools keep spinning after work and would slow what is timed next)."""
    from app.cards import Card
    from app.modelstore import compile_predict, litert_predict
    from app.tasks import IMAGE, discover_tasks

    rows, runs = [], []
    for slug, spec in discover_tasks(models_dir).items():
        folder = models_dir / slug
        if spec.kind != IMAGE or not (folder / "model.keras").is_file():
            continue
        card = Card.from_json(folder)
        served, full = litert_predict(folder, card, spec, 1), litert_predict(folder, card, spec, 1, int8=False)
        if served is None or full is None:
            print(f"{slug}: no current model.tflite (python -m training export {slug}); skipped", flush=True)
            continue
        x = np.random.default_rng(0).integers(0, 256, (1, *spec.input_shape)).astype(np.float32)
        rows.append({"slug": slug, "precision": served.precision, "litert_ms": p50_ms(lambda: served(x), repeats),
                     "float_ms": p50_ms(lambda: full(x), repeats)})
        runs.append((folder, spec, x, served(x), full(x)))
    import keras

    for row, (folder, spec, x, served_out, full_out) in zip(rows, runs):
        model = keras.saving.load_model(folder / "model.keras", compile=False)
        xla = compile_predict(model, spec, jit=True)
        reference = model.predict(x, verbose=0)
        np.testing.assert_allclose(full_out, reference, atol=1e-4)
        np.testing.assert_allclose(xla(x), reference, atol=1e-4)
        np.testing.assert_allclose(served_out, reference, atol=0.2)  # int8 weights: close, not equal
        row.update(xla_ms=p50_ms(lambda: xla(x), repeats),
                   predict_ms=p50_ms(lambda: model.predict(x, verbose=0), max(10, repeats // 20)))
        row["ratio"], row["xla_ratio"] = row["predict_ms"] / row["litert_ms"], row["xla_ms"] / row["litert_ms"]
        row["float_ratio"] = row["float_ms"] / row["litert_ms"]
        print(f"{row['slug']}: litert {row['precision']} {row['litert_ms']:.3f} ms (float32 {row['float_ms']:.3f}), "
              f"xla {row['xla_ms']:.3f} ms, predict {row['predict_ms']:.1f} ms, ×{row['ratio']:.0f} vs predict, "
              f"×{row['xla_ratio']:.1f} vs xla", flush=True)
    return rows


def tensorflow_mapped(pid: int) -> bool:
    """Whether TensorFlow's shared library is mapped into process `pid` (imported)."""
    try:
        return "libtensorflow" in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


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


def http_phase(args, engine: str, python: str = sys.executable, load: bool = True) -> dict:
    """Start gunicorn from the installation of `python` with `engine` ("litert": as served; "xla":
    FLASK_PREDICT_LITERT=0, empty XLA cache); measure cold start, worker RSS and (with `load`)
    classify load."""
    cache = Path(tempfile.mkdtemp(prefix="lstmlab-xla-"))
    env = {"FLASK_XLA_CACHE_DIR": str(cache)}
    if engine == "xla":
        env["FLASK_PREDICT_LITERT"] = "0"
    port = free_port()
    log = Path(tempfile.gettempdir()) / f"lstmlab-serve-{port}.log"
    try:
        t0 = time.monotonic()
        proc = start_server(port, log, env, python)
        try:
            out = {"engine": engine, "start": wait_ready(proc, port, t0 + 600)}
            out["rss_mb"] = [round(rss_mb(p), 1) for p in children(proc.pid)]
            out["tensorflow_loaded"] = any(tensorflow_mapped(p) for p in children(proc.pid))
            if load:
                out["baseline"] = load_phase(port, 1, args.requests // 4, args.seconds / 2)
                out["load"] = load_phase(port, args.clients, args.requests, args.seconds)
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(30)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    print(out, flush=True)
    return out


def goals(rows: list[dict], lite: dict) -> list[tuple[str, bool, str]]:
    """(goal, met, measured) for each serving goal."""
    def per_model(ok, fmt):
        met, missed = [fmt(r) for r in rows if ok(r)], [fmt(r) for r in rows if not ok(r)]
        return all(ok(r) for r in rows), "; ".join(
            ([f"met by {', '.join(met)}"] if met else []) + ([f"missed by {', '.join(missed)}"] if missed else []))

    load = lite["load"]
    return [("model time ≤ 0.3 ms per image, p50",
             *per_model(lambda r: r["litert_ms"] <= 0.3, lambda r: f"{r['slug']} {r['litert_ms']:.2f} ms")),
            ("≥ 150× faster than `model.predict` on one sample",
             *per_model(lambda r: r["ratio"] >= 150, lambda r: f"{r['slug']} {r['ratio']:.0f}×")),
            ("worker RSS ≤ 350 MB", max(lite["rss_mb"]) <= 350, f"{max(lite['rss_mb']):.0f} MB"),
            ("cold start ≤ 5 s", lite["start"] <= 5, f"{lite['start']:.1f} s"),
            ("HTTP ≥ 400 req/s at 8 clients with 0 errors", load["rps"] >= 400 and load["errors"] == 0,
             f"{load['rps']:.0f} req/s, {load['errors']} errors"),
            ("HTTP p99 ≤ 50 ms at 8 clients", load["p99"] <= 50, f"{load['p99']:.0f} ms")]


def write(rows: list[dict], web: dict, busy: str) -> None:
    """Replace the serving section of docs/BENCHMARKS.md with this run's figures."""
    when = dt.date.today().isoformat()
    lite, xla = web["litert"], web["xla"]
    lines = [START, "## Serving (benchmarks/serve.py)", "",
             f"Measured {when} on this {os.cpu_count()}-core machine ({platform.machine()}), loopback only"
             + (f", **while a training run (`python -m training {busy}`) was using the same cores**, so absolute "
                "numbers are pessimistic" if busy else ", no training run on the machine")
             + "; each ratio compares figures from the same run.",
             "Served engine: LiteRT over each model's `model.int8.tflite` when its card accepted it (test "
             "accuracy at most 0.1 pp below float32, same class on ≥ 99% of the test images; the figures "
             "are on each card), else `model.tflite` (`python -m training export`); the previous engine, XLA "
             "over the Keras model, is what the app falls back to (`FLASK_PREDICT_LITERT=0`, or no current "
             "`.tflite`). Each time is of the function a request calls (copy in, invoke, copy out).", "",
             "Model time per image (one sample, p50):", "",
             "| model | served weights | LiteRT, served (ms) | LiteRT float32 (ms) | XLA tf.function (ms) | "
             "`model.predict` (ms) | × faster than `model.predict` | × faster than float32 | × faster than XLA |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['slug']} | {r['precision']} | {r['litert_ms']:.3f} | {r['float_ms']:.3f} | {r['xla_ms']:.3f} | "
              f"{r['predict_ms']:.1f} | {r['ratio']:.0f}× | {r['float_ratio']:.2f}× | {r['xla_ratio']:.2f}× |"
              for r in rows]
    lines += ["", f"HTTP classify, MNIST, 28×28 PNG, gunicorn as `make serve` runs it "
              f"(workers={os.environ.get('WEB_CONCURRENCY', '2')}, 4 threads each):", "",
              "| engine | phase | clients | requests | req/s | p50 (ms) | p99 (ms) | errors |",
              "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for run in (lite, xla):
        for phase, b in (("one at a time (baseline)", run["baseline"]), ("saturation", run["load"])):
            lines.append(f"| {run['engine']} | {phase} | {b['clients']} | {b['requests']} | {b['rps']:.0f} | "
                         f"{b['p50']:.2f} | {b['p99']:.2f} | {b['errors']} |")
    lite_rss, xla_rss = max(lite["rss_mb"]), max(xla["rss_mb"])
    lines += ["", "Worker memory and cold start (gunicorn start to /readyz 200 on both workers), every shipped model loaded:", "",
              "| engine | worker RSS (MB) | cold start (s) | TensorFlow in the workers |", "| --- | ---: | ---: | --- |",
              f"| LiteRT (served) | {', '.join(f'{m:.0f}' for m in lite['rss_mb'])} | {lite['start']:.1f} | "
              f"{'yes' if lite['tensorflow_loaded'] else 'no'} |",
              f"| XLA (fallback, empty XLA cache) | {', '.join(f'{m:.0f}' for m in xla['rss_mb'])} | {xla['start']:.1f} | "
              f"{'yes' if xla['tensorflow_loaded'] else 'no'} |",
              f"| XLA ÷ LiteRT | {xla_rss / lite_rss:.1f}× | {xla['start'] / lite['start']:.1f}× | |"]
    if "serving" in web:  # the same app started from the serving-only install (no TensorFlow installed)
        lean = web["serving"]
        lines += [f"| LiteRT, full install: median of {lean['starts']} cold starts | "
                  f"{', '.join(f'{m:.0f}' for m in lean['full_rss_mb'])} | {lean['full_start']:.2f} | no |",
                  f"| LiteRT, serving-only install (TensorFlow installed: "
                  f"{'yes' if lean['tensorflow_installed'] else 'no'}): median of {lean['starts']}, alternated | "
                  f"{', '.join(f'{m:.0f}' for m in lean['rss_mb'])} | {lean['start']:.2f} | "
                  f"{'yes' if lean['tensorflow_loaded'] else 'no'} |",
                  f"| serving-only ÷ full install | {max(lean['rss_mb']) / max(lean['full_rss_mb']):.2f}× | "
                  f"{lean['start'] / lean['full_start']:.2f}× | |"]
    lines += ["", "Against the serving goals (served engine, this run):", ""]
    lines += [f"- {goal}: {'met' if ok else '**not met**'} ({value})" for goal, ok, value in goals(rows, lite)]
    lines.append(END)
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
    p.add_argument("--json", default=None, help="also save the raw results to this file")
    p.add_argument("--starts", type=int, default=5, help="cold starts of each install with --serving-python")
    p.add_argument("--serving-python", default=None, metavar="PYTHON",
                   help="also start the app from this Python's installation (e.g. the serving-only virtual "
                        "environment tests/test_packaging.py builds under .cache/) and compare it with this one")
    args = p.parse_args(argv)
    busy = machine_busy()
    web = {engine: http_phase(args, engine) for engine in ("litert", "xla")}
    if args.serving_python:  # cold starts of the two installs, alternated; the medians are compared
        full, lean = [], []
        for _ in range(args.starts):
            full.append(http_phase(args, "litert", sys.executable, load=False))
            lean.append(http_phase(args, "litert", args.serving_python, load=False))
        web["serving"] = {"engine": "litert", "start": float(np.median([r["start"] for r in lean])),
                          "full_start": float(np.median([r["start"] for r in full])),
                          "starts": args.starts, "rss_mb": lean[-1]["rss_mb"], "full_rss_mb": full[-1]["rss_mb"],
                          "tensorflow_loaded": any(r["tensorflow_loaded"] for r in lean)}
        web["serving"]["tensorflow_installed"] = subprocess.run(
            [args.serving_python, "-c", "import importlib.util as u; print(u.find_spec('tensorflow') is not None)"],
            capture_output=True, text=True, check=True).stdout.strip() == "True"
    rows = model_times(Path(args.models_dir), args.repeats)
    busy = busy or machine_busy()
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "web": web, "busy": busy}, indent=1), encoding="utf-8")
    if args.write:
        write(rows, web, busy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
