"""Lab bench benchmark: the queue end to end with real processes, ratios measured in one run.

    python benchmarks/lab.py                 # ~10-15 min; results into docs/BENCHMARKS.md ("Lab bench")
    python benchmarks/lab.py --no-write --quick

Processes (loopback only, a fresh instance folder in /tmp, every process stopped by pid):
gunicorn (`gunicorn.conf.py`, 2 workers, LSTMLAB_TRAIN_WORKERS=0) and Huey consumers started
as `make worker` does (`python -m app.lab`, niced by LAB_WORKER_NICE). The recipe is the issue's
"small MNIST rows-LSTM": rows, LSTM(64), one layer, 1 epoch on 10,000 training images, tested
on the full official test split (10,000 digits).

1. latency: submit -> first progress event -> first curve point (epoch 1's event) -> finished ->
   first classification answered by the run's own model (consumer already started, as under
   `make serve`).
2. queue overhead: the same recipe with `python -m training mnist --architecture recipe ...`
   (a fresh process, wall time) against the bench (submit -> finished), interleaved, and their
   cards' fit seconds.
3. classify p99 under the load benchmark's kind of classify traffic (closed-loop clients posting
   MNIST digits to /api/v1/tasks/mnist/predict): idle, while a run trains beside it with the
   consumer niced (default), and with the consumer not niced.
4. runs per hour with 1 and with 2 consumers (a batch of runs submitted at once).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from load import training_processes  # noqa: E402

DOC = ROOT / "docs" / "BENCHMARKS.md"
PY = sys.executable
RECIPE = {"reading": "rows", "cell": "lstm", "units": 64, "layers": 1, "bidirectional": False, "dropout": 0.0}
SETTINGS = {"epochs": 1, "batch_size": 128, "learning_rate": 0.002, "subset": 10000, "seed": 1}


class Stack:
    """gunicorn and consumers on one instance folder; everything stopped by pid in `close`."""

    def __init__(self, folder: Path):
        from app.config import default_data_dir

        self.folder, self.procs, self.url = folder, [], None
        self.env = {**os.environ, "LSTMLAB_INSTANCE": str(folder / "instance"), "TF_CPP_MIN_LOG_LEVEL": "3",
                    "FLASK_SECRET_KEY": secrets.token_hex(16), "LSTMLAB_TRAIN_WORKERS": "0",
                    "LSTMLAB_DATA": str(default_data_dir()), "WEB_CONCURRENCY": "2", "LAB_PROGRESS_SECONDS": "2",
                    "FLASK_LAB_RUNS_PER_BROWSER": "50", "FLASK_LAB_RUNS_PER_CLIENT": "50",
                    "FLASK_LAB_MAX_SECONDS": str(10**9), "PYTHONUNBUFFERED": "1"}

    def start(self, args, name, **env):
        """Start a process with the stack's environment, output to <name>.log."""
        log = open(self.folder / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=ROOT, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        self.procs.append(proc)
        return proc

    def web(self):
        """gunicorn on a free loopback port, waited for until /readyz answers."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.start([PY, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], "web",
                   LSTMLAB_BIND=f"127.0.0.1:{port}")
        self.url = f"http://127.0.0.1:{port}"
        wait(lambda: ok(self.url + "/readyz"), 120, "web did not start")

    def consumer(self, name="consumer", nice=None):
        """A consumer as `make worker` starts it, waited for until Huey reports it started."""
        env = {} if nice is None else {"LAB_WORKER_NICE": str(nice)}
        proc = self.start([PY, "-m", "app.lab"], name, **env)
        log = self.folder / f"{name}.log"
        wait(lambda: "Huey consumer started" in log.read_text(errors="replace"), 120, f"{name} did not start")
        return proc

    def stop(self, proc):
        """SIGTERM to the process's group, SIGKILL after 30 s."""
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()

    def close(self):
        """Stop every process this stack started."""
        for proc in reversed(self.procs):
            self.stop(proc)

    def submit(self, session, nickname="bench", **overrides):
        """POST the benchmark's recipe; the 202 body."""
        body = {"dataset": "mnist", "recipe": RECIPE, **SETTINGS, "nickname": nickname, **overrides}
        r = session.post(self.url + "/api/v1/runs", json=body, timeout=30)
        r.raise_for_status()
        return r.json()

    def run(self, run_id):
        """GET one run record."""
        return requests.get(f"{self.url}/api/v1/runs/{run_id}", timeout=30).json()

    def wait_done(self, run_id, seconds=1800):
        """Poll a run until it has ended; the record."""
        return wait(lambda: (lambda r: r if r["status"] in ("finished", "failed", "cancelled") else None)(
            self.run(run_id)), seconds, f"run {run_id} did not end")


def ok(url) -> bool:
    """True when `url` answers 200."""
    try:
        return requests.get(url, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def wait(check, seconds, message):
    """Poll `check()` until truthy; TimeoutError with `message` otherwise."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise TimeoutError(message)


def digits(n=64) -> list[bytes]:
    """MNIST test digits as PNG bytes (the classify traffic)."""
    from PIL import Image

    from app.config import default_data_dir

    with np.load(default_data_dir() / "mnist" / "mnist.npz") as data:
        x = data["x_test"][:n]
    out = []
    for img in x:
        buf = io.BytesIO()
        Image.fromarray(np.asarray(img, np.uint8).reshape(28, 28), "L").save(buf, "PNG")
        out.append(buf.getvalue())
    return out


# ----------------------------------------------------------------------------- 1. latency
def latency(stack: Stack, pngs) -> dict:
    """Submit -> first progress, first curve point, finished, first classification (seconds)."""
    browser = requests.Session()
    t0 = time.monotonic()
    run = stack.submit(browser, nickname="latency")
    marks = {"submitted": time.monotonic() - t0}
    with browser.get(run["links"]["events"], stream=True, timeout=(5, 1800)) as stream:
        name = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                data = json.loads(line[6:])
                key = {"progress": "first_progress", "epoch": "first_curve_point"}.get(name)
                if key and key not in marks and (name != "progress" or data.get("batch")):
                    marks[key] = time.monotonic() - t0
                if name == "status" and data["status"] in ("finished", "failed", "cancelled"):
                    marks["ended"] = time.monotonic() - t0
                    marks["status"] = data["status"]
                name = None
    answer = browser.post(run["links"]["predict"], files={"file": ("d.png", pngs[0], "image/png")}, timeout=60)
    marks["classified"] = time.monotonic() - t0
    marks["classify_status"] = answer.status_code
    record = stack.run(run["id"])
    marks.update(test_accuracy=record["metrics"].get("test_accuracy"), test_count=record["metrics"].get("test_count"),
                 run_id=run["id"])
    return marks


# ----------------------------------------------------------------------------- 2. overhead
def cli_run(stack: Stack, out: Path) -> dict:
    """The same recipe through `python -m training` (a fresh process): wall and fit seconds."""
    args = [PY, "-m", "training", "mnist", "--architecture", "recipe", "--model-kwargs", json.dumps(RECIPE),
            "--epochs", str(SETTINGS["epochs"]), "--batch-size", str(SETTINGS["batch_size"]),
            "--learning-rate", str(SETTINGS["learning_rate"]), "--seed", str(SETTINGS["seed"]),
            "--subset", str(SETTINGS["subset"]), "--baseline-epochs", "0", "--verbose", "0",
            "--models-dir", str(out)]
    env = {**stack.env, "LSTMLAB_RUNS": str(out / "runs")}
    t0 = time.monotonic()
    subprocess.run(["nice", "-n", os.environ.get("LAB_WORKER_NICE", "10"), *args], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - t0
    from app.cards import Card

    card = Card.from_json(out / "mnist")
    return {"wall": wall, "fit": card.training.seconds_total, "test_accuracy": card.metrics.test_accuracy}


def bench_run(stack: Stack) -> dict:
    """The recipe through the bench: submit -> finished, and the run card's fit seconds."""
    t0 = time.monotonic()
    run = stack.submit(requests.Session(), nickname="overhead")
    record = stack.wait_done(run["id"])
    wall = time.monotonic() - t0
    from app.cards import Card

    card = Card.from_json(requests.get(run["links"]["card"], timeout=30).json())
    return {"wall": wall, "fit": card.training.seconds_total, "test_accuracy": record["metrics"]["test_accuracy"]}


# ----------------------------------------------------------------------------- 3. classify
def classify_load(url: str, pngs, seconds: float, clients: int = 4) -> dict:
    """Closed-loop clients posting digits to the task predict for `seconds`: p50/p99 ms, req/s."""
    latencies, errors, stop = [], [0], time.monotonic() + seconds
    lock = threading.Lock()

    def client(k):
        s = requests.Session()
        i = k
        while time.monotonic() < stop:
            t = time.perf_counter()
            try:
                r = s.post(url + "/api/v1/tasks/mnist/predict", files={"file": ("d.png", pngs[i % len(pngs)])},
                           timeout=30)
                good = r.status_code == 200
            except requests.RequestException:
                good = False
            ms = (time.perf_counter() - t) * 1000
            with lock:
                (latencies.append(ms) if good else None)
                errors[0] += 0 if good else 1
            i += clients

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lat = np.array(latencies)
    return {"requests": int(len(lat)), "rps": round(len(lat) / seconds, 1), "errors": errors[0],
            "p50_ms": round(float(np.percentile(lat, 50)), 1), "p99_ms": round(float(np.percentile(lat, 99)), 1)}


def classify_beside_training(stack: Stack, consumer_nice: int, pngs, seconds: float) -> dict:
    """Classify traffic while one run trains on a consumer at `consumer_nice`."""
    proc = stack.consumer(f"consumer-nice{consumer_nice}", nice=consumer_nice)
    owner = requests.Session()
    # Long enough to outlast the traffic (a run ends on its own in seconds on an idle machine).
    run = stack.submit(owner, nickname=f"beside-{consumer_nice}", epochs=20)
    wait(lambda: stack.run(run["id"])["progress"].get("batch"), 300, "run did not start training")
    result = classify_load(stack.url, pngs, seconds)
    result["run_still_training"] = stack.run(run["id"])["status"] == "running"
    cancel = owner.post(run["links"]["cancel"], timeout=30)
    if cancel.status_code != 409:  # 409: it had already ended
        cancel.raise_for_status()
    stack.wait_done(run["id"], 120)
    stack.stop(proc)
    return result


# ----------------------------------------------------------------------------- 4. runs per hour
def runs_per_hour(stack: Stack, consumers: int, runs: int) -> dict:
    """Submit `runs` at once to `consumers` fresh consumers; runs per hour from first submit to last end."""
    procs = [stack.consumer(f"rph{consumers}-{k}") for k in range(consumers)]
    session = requests.Session()
    t0 = time.monotonic()
    ids = [stack.submit(session, nickname=f"rph{consumers}-{k}")["id"] for k in range(runs)]
    records = [stack.wait_done(i) for i in ids]
    wall = time.monotonic() - t0
    for proc in procs:
        stack.stop(proc)
    return {"consumers": consumers, "runs": runs, "seconds": round(wall, 1),
            "finished": sum(r["status"] == "finished" for r in records),
            "runs_per_hour": round(runs * 3600 / wall, 1),
            "mean_run_seconds": round(statistics.mean(r["seconds"] or 0 for r in records), 1)}


def load_average() -> str:
    """The 1, 5 and 15 minute load averages."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def beside() -> str:
    """Other training processes running on the machine while this benchmark ran."""
    return "; ".join(f"`{('python -m training ' + ' '.join(args))[:70]}` (nice {nice})"
                     for nice, args in training_processes() if args[:1] != ["evaluate"])


def main(argv=None) -> int:
    """Run every phase (or rewrite the section from saved results)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a smoke run)")
    parser.add_argument("--seconds", type=float, default=20, help="classify traffic per phase")
    parser.add_argument("--from-json", help="rewrite the section from a saved results file (runs/bench_lab.json)")
    args = parser.parse_args(argv)
    if args.from_json:
        write_doc(json.loads(Path(args.from_json).read_text()))
        return 0
    folder = Path(tempfile.mkdtemp(prefix="lstmlab-bench-lab-"))
    stack = Stack(folder)
    results: dict = {"started": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": load_average(),
                     "beside": beside(), "seconds": args.seconds}
    try:
        stack.web()
        pngs = digits()
        consumer = stack.consumer()
        results["latency"] = latency(stack, pngs)
        print("latency", results["latency"], flush=True)
        pairs = []
        for k in range(1 if args.quick else 2):  # interleaved: the background load hits both alike
            pairs.append({"cli": cli_run(stack, folder / f"cli-{k}"), "bench": bench_run(stack)})
            print("overhead", pairs[-1], flush=True)
        results["overhead"] = pairs
        stack.stop(consumer)
        results["classify_idle"] = classify_load(stack.url, pngs, args.seconds)
        print("classify idle", results["classify_idle"], flush=True)
        results["classify_niced"] = classify_beside_training(stack, 10, pngs, args.seconds)
        print("classify niced", results["classify_niced"], flush=True)
        results["classify_not_niced"] = classify_beside_training(stack, 0, pngs, args.seconds)
        print("classify not niced", results["classify_not_niced"], flush=True)
        n = 2 if args.quick else 4
        results["rph"] = [runs_per_hour(stack, 1, n), runs_per_hour(stack, 2, n)]
        print("runs per hour", results["rph"], flush=True)
        results["load_after"] = load_average()
    finally:
        stack.close()
        (ROOT / "runs").mkdir(exist_ok=True)
        (ROOT / "runs" / "bench_lab.json").write_text(json.dumps(results, indent=1))
        shutil.rmtree(folder, ignore_errors=True)
    if not args.no_write:
        write_doc(results)
    return 0


def write_doc(r: dict) -> None:
    """The "Lab bench" section of docs/BENCHMARKS.md, between its markers."""
    lat = r["latency"]
    cli = [p["cli"] for p in r["overhead"]]
    bench = [p["bench"] for p in r["overhead"]]
    wall_ratio = statistics.mean(b["wall"] for b in bench) / statistics.mean(c["wall"] for c in cli)
    fit_ratio = statistics.mean(b["fit"] for b in bench) / statistics.mean(c["fit"] for c in cli)
    rph1, rph2 = r["rph"]
    per_machine = rph1["runs_per_hour"]
    checks = [("first curve point ≤ 20 s", lat["first_curve_point"] <= 20),
              ("finished and classifying ≤ 60 s", lat["classified"] <= 60),
              ("queue overhead ≤ 1.10×", wall_ratio <= 1.10),
              ("classify p99 ≤ 100 ms beside a niced run", r["classify_niced"]["p99_ms"] <= 100)]
    miss = ", ".join(name for name, met in checks if not met)
    lines = [
        "<!-- lab:start -->",
        "## Lab bench (benchmarks/lab.py)",
        "",
        f"Run {r['started']} on this 2-core machine, everything in one run so the ratios share the same "
        f"background load (load average {r['load_before']} before, {r['load_after']} after). "
        + (f"Training ran beside it the whole time: {r['beside']}." if r["beside"] else
           "No other training process was running."),
        "Recipe: MNIST, rows, LSTM(64), one layer, 1 epoch on 10,000 training images (1,000 of them held "
        "out for validation), batch 128; tested on the full official test split. Web: gunicorn, 2 workers; "
        "consumers `python -m app.lab` (niced 10 unless said).",
        "",
        "| measure | goal | measured |",
        "|---|---|---|",
        f"| submit → first progress event | | {lat.get('first_progress', float('nan')):.1f} s |",
        f"| submit → first curve point (epoch 1 on the curve) | ≤ 20 s | {lat['first_curve_point']:.1f} s |",
        f"| submit → finished (test accuracy {lat['test_accuracy']:.2%} on {lat['test_count']:,} digits) | | "
        f"{lat['ended']:.1f} s |",
        f"| submit → finished and classifying (first answer of its own model) | ≤ 60 s | {lat['classified']:.1f} s |",
        f"| queue overhead: bench submit→finished ÷ `python -m training` wall time (mean of {len(cli)}) | ≤ 1.10× | "
        f"{wall_ratio:.2f}× ({statistics.mean(b['wall'] for b in bench):.1f} s ÷ "
        f"{statistics.mean(c['wall'] for c in cli):.1f} s) |",
        f"| fit time only (cards' seconds_total), bench ÷ CLI | | {fit_ratio:.2f}× |",
        f"| classify p99, idle (4 clients, {r['classify_idle']['rps']} req/s) | ≤ 100 ms | "
        f"{r['classify_idle']['p99_ms']} ms (p50 {r['classify_idle']['p50_ms']}) |",
        f"| classify p99, a run training beside, consumer niced 10 ({r['classify_niced']['rps']} req/s) | ≤ 100 ms | "
        f"{r['classify_niced']['p99_ms']} ms (p50 {r['classify_niced']['p50_ms']}) |",
        f"| classify p99, a run training beside, consumer not niced ({r['classify_not_niced']['rps']} req/s) | | "
        f"{r['classify_not_niced']['p99_ms']} ms (p50 {r['classify_not_niced']['p50_ms']}) |",
        f"| runs per hour, 1 consumer ({rph1['runs']} runs in {rph1['seconds']} s) | | {rph1['runs_per_hour']} |",
        f"| runs per hour, 2 consumers ({rph2['runs']} runs in {rph2['seconds']} s) | | {rph2['runs_per_hour']} |",
        "",
        f"The CLI's wall time includes starting Python and importing TensorFlow in a fresh process, "
        f"which a consumer does once when it starts; the fit-time ratio compares the training itself "
        f"(the progress, heartbeat and cancel callbacks included). Errors during the classify phases: "
        f"{r['classify_idle']['errors']}, {r['classify_niced']['errors']}, {r['classify_not_niced']['errors']}.",
        "",
        f"Goals missed here: {miss or 'none'}. The classify phases last {r.get('seconds', 20):g} s each; "
        f"their p99 moves with whatever else shares the cores in that window (the load averages above).",
        "",
        f"A class of 60 students each submitting this run at once: at {per_machine} runs/hour with one "
        f"consumer per 2-core machine, N machines clear the queue in 60 / ({per_machine} × N) hours: "
        + ", ".join(f"N = {n}: {60 / (per_machine * n) * 60:.0f} min" for n in (1, 2, 4, 8))
        + f". Two consumers on this machine gave {rph2['runs_per_hour']} runs/hour "
        f"({rph2['runs_per_hour'] / rph1['runs_per_hour']:.2f}× one, the two sharing the same 2 cores). "
        f"The arithmetic above uses the one-consumer rate; more students need more machines "
        f"(`make worker` against Redis and PostgreSQL).",
        "<!-- lab:end -->",
    ]
    write_section("lab", "\n".join(lines))


def write_section(name: str, block: str) -> None:
    """Put `block` (its <!-- name:start/end --> markers included) into docs/BENCHMARKS.md, in place
    of the section between the same markers, or at the end."""
    text = DOC.read_text(encoding="utf-8")
    if f"<!-- {name}:start -->" in text:
        text = re.sub(rf"<!-- {name}:start -->.*?<!-- {name}:end -->", lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
