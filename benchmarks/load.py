"""Load test: gunicorn as `make serve` runs it, a mix of classify and generate requests at saturation.

    python benchmarks/load.py                  # 60 s at saturation, results into docs/BENCHMARKS.md
    python benchmarks/load.py --seconds 10 --no-write

Loopback only (127.0.0.1, a free port) and bounded: a fixed duration, a cap on requests, a
deadline for the server to start. The server is `gunicorn -c gunicorn.conf.py wsgi:app` with the
project's gunicorn.conf.py (workers, threads) and a random FLASK_SECRET_KEY, as `make serve`
does; only the generate rate limit is raised, because every client here shares one address.

Phases, for each server variant (see VARIANTS), all in one run:
1. baseline: one client, one request at a time (unsaturated latency and throughput);
2. saturation: `--clients` closed-loop threads (more than workers × threads) for `--seconds`.
Reported: requests/s, p50/p99 per kind, errors, each worker's RSS (from /proc) before and after
the saturation phase, and worker restarts (worker pids that changed). Goal: 0 errors, 0 restarts,
RSS growth under 5%.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import os
import random
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DOC = ROOT / "docs" / "BENCHMARKS.md"
SEEDS = {"nyt_headlines": ["trump says", "the future of", "how to", "a new", "why the"],
         "kieu": ["Trăm năm trong cõi người ta", "Chữ tài chữ mệnh khéo là", "Làn thu thủy nét xuân sơn",
                  "Đầu lòng hai ả tố nga"]}


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (from /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Direct child processes of `pid` (gunicorn's workers)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return sorted(out)


def training_running() -> str:
    """What the background training queue was doing (runs/queue.status), if anything."""
    status = ROOT / "runs" / "queue.status"
    if not status.is_file():
        return ""
    lines = [ln for ln in status.read_text(encoding="utf-8").splitlines() if ln.startswith("===")]
    if lines and " start " in lines[-1]:
        return lines[-1].split()[1]
    return ""


def write_section(start: str, end: str, text: str) -> None:
    """Replace the part of docs/BENCHMARKS.md between the markers `start` and `end` with `text`
    (which carries both markers), or append it; written through a temporary file and a rename."""
    old = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Benchmarks\n"
    if start in old and end in old:
        new = old[: old.index(start)] + text + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + text + "\n"
    DOC.parent.mkdir(exist_ok=True)
    tmp = DOC.with_name(f".{DOC.name}.tmp-{os.getpid()}")
    tmp.write_text(new, encoding="utf-8")
    os.replace(tmp, DOC)


def machine_busy() -> str:
    """The training run sharing this machine, if any: the queue's status, else the process table.
    Every benchmark calls it before and after measuring, and says so next to its figures."""
    return training_running() or training_process()


def training_processes() -> list[tuple[int, list[str]]]:
    """(nice, the arguments after `-m training`) of every `python -m training` process on this machine."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().decode(errors="replace").split("\0")
            if "-m" not in args or "training" not in args:
                continue
            nice = int((cmdline.parent / "stat").read_text().rsplit(")", 1)[1].split()[16])
        except (OSError, ValueError, IndexError):
            continue
        found.append((nice, [a for a in args[args.index("training") + 1:] if a]))
    return found


def training_process() -> str:
    """The first argument (the task or command) of a `python -m training` run, if one is running."""
    return next((" ".join(args[:1]) for _nice, args in training_processes()), "")


def make_images(n: int = 16) -> list[bytes]:
    """Digit-like drawings (dark strokes on white), each a little different: valid for every image task."""
    from PIL import Image, ImageDraw

    rng = random.Random(0)
    out = []
    for _ in range(n):
        img = Image.new("RGB", (200, 200), "white")
        draw = ImageDraw.Draw(img)
        pts = [(rng.randint(30, 170), rng.randint(30, 170)) for _ in range(4)]
        draw.line(pts, fill=(20, 20, 20), width=rng.randint(10, 18))
        buf = io.BytesIO()
        img.save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def multipart(data: bytes) -> tuple[bytes, str]:
    boundary = "lstmlab" + secrets.token_hex(8)
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


class Client:
    """One keep-alive connection; `request` returns (kind, status, seconds)."""

    def __init__(self, port: int, plan: dict, seed: int):
        self.port, self.plan, self.rng = port, plan, random.Random(seed)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def request(self) -> tuple[str, int, float]:
        if self.plan["text"] and self.rng.random() < self.plan["generate_share"]:
            slug = self.rng.choice(self.plan["text"])
            kind = "generate"
            body = json.dumps({"seed": self.rng.choice(SEEDS.get(slug, ["the"])), "length": 10 if slug != "kieu" else 1,
                               "strategy": "top_p"}).encode()
            path, ctype = f"/api/v1/tasks/{slug}/generate", "application/json"
        else:
            slug = self.rng.choice(self.plan["image"])
            kind = "classify"
            body, ctype = multipart(self.rng.choice(self.plan["images"]))
            path = f"/api/v1/tasks/{slug}/predict"
        t0 = time.perf_counter()
        try:
            self.conn.request("POST", path, body=body, headers={"Content-Type": ctype})
            resp = self.conn.getresponse()
            resp.read()
            status = resp.status
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            status = 0
        return kind, status, time.perf_counter() - t0


def run_phase(port: int, plan: dict, clients: int, seconds: float, max_requests: int) -> dict:
    """`clients` closed-loop threads for `seconds` (or until `max_requests`); latencies per kind."""
    results: list[tuple[str, int, float]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def worker(i: int) -> None:
        client = Client(port, plan, seed=i)
        while time.monotonic() < stop:
            r = client.request()
            with lock:
                results.append(r)
                if len(results) >= max_requests:
                    return

    t0, cpu0 = time.perf_counter(), time.process_time()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(seconds + 120)
    elapsed = time.perf_counter() - t0
    out = summarize(results, elapsed, clients)
    out["client_cpu_share"] = round((time.process_time() - cpu0) / elapsed, 2)  # cores the load generator used
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def summarize(results: list, elapsed: float, clients: int) -> dict:
    out = {"clients": clients, "seconds": round(elapsed, 1), "requests": len(results),
           "requests_per_s": round(len(results) / elapsed, 2),
           "errors": sum(1 for _, s, _ in results if s != 200),
           "statuses": {str(s): sum(1 for _, x, _ in results if x == s) for s in sorted({s for _, s, _ in results})}}
    for kind in ("classify", "generate", "all"):
        lat = [t for k, s, t in results if kind in ("all", k)]
        out[kind] = {"n": len(lat), "p50_ms": round(percentile(lat, 50) * 1000, 1),
                     "p99_ms": round(percentile(lat, 99) * 1000, 1)}
    return out


# Server variants run one after the other in the same invocation, so they meet the same machine.
# "configured" is gunicorn.conf.py as shipped (one TensorFlow/BLAS thread per worker);
# "library-threads" leaves the thread pools at the libraries' default of one thread per core.
VARIANTS = {
    "configured": {},
    "library-threads": {"LSTMLAB_TF_THREADS": "0"},
}


def start_server(port: int, log_path: Path, overrides: dict, python: str = sys.executable) -> subprocess.Popen:
    """gunicorn exactly as `make serve` starts it, on a free loopback port, from the installation
    of `python` (this one by default)."""
    env = dict(os.environ, LSTMLAB_BIND=f"127.0.0.1:{port}", FLASK_SECRET_KEY=secrets.token_hex(32),
               FLASK_RATELIMIT_GENERATE="1000000 per minute", TF_CPP_MIN_LOG_LEVEL="2",
               LSTMLAB_TRAIN_WORKERS="0", **overrides)  # the web workers alone: no lab consumer
    env.pop("FLASK_DEBUG", None)
    gunicorn = Path(python).with_name("gunicorn")
    cmd = [str(gunicorn) if gunicorn.exists() else python, *([] if gunicorn.exists() else ["-m", "gunicorn"]),
           "-c", "gunicorn.conf.py", "--no-control-socket", "wsgi:app"]  # leave a running server's socket alone
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def run_variant(name: str, args) -> dict:
    """Start the server with the variant's environment, measure both phases, stop it."""
    port = free_port()
    log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"lstmlab-load-{port}.log"
    training_before = machine_busy()
    proc = start_server(port, log_path, VARIANTS[name])
    try:
        ready = wait_for_workers(proc, port, log_path, time.monotonic() + args.start_timeout)
        plan = {"image": [s for s, t in ready["tasks"].items() if t["status"] == "ready" and t["kind"] == "image"],
                "text": [s for s, t in ready["tasks"].items() if t["status"] == "ready" and t["kind"] == "text"],
                "images": make_images(), "generate_share": args.generate_share}
        if not plan["image"]:
            raise SystemExit("no image model is ready: train one first (python -m training mnist)")
        # Warm-up, not counted: every request thread of every worker serves its first classify and
        # generate here (first-use allocations), so the RSS "before" is the steady state (a short,
        # two-client warm-up left one worker below its twin until the saturation phase).
        run_phase(port, plan, args.clients, args.warmup_seconds, args.max_requests)
        baseline = run_phase(port, plan, 1, args.baseline_seconds, args.max_requests)
        workers_start = children(proc.pid)
        rss_start = {pid: rss_mb(pid) for pid in workers_start}
        saturated = run_phase(port, plan, args.clients, args.seconds, args.max_requests)
        workers_end = children(proc.pid)
        rss_end = {pid: rss_mb(pid) for pid in workers_end if pid in rss_start}
        log_text = log_path.read_text(errors="replace")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    return {
        "variant": name, "environment": VARIANTS[name],
        "server": {"workers": len(workers_start), "threads": int(os.environ.get("LSTMLAB_THREADS", "4")),
                   "tasks": {"classify": plan["image"], "generate": plan["text"]}, "cpus": os.cpu_count()},
        "baseline": baseline, "saturated": saturated,
        "throughput_ratio": round(saturated["requests_per_s"] / baseline["requests_per_s"], 2),
        "workers": [{"pid": pid, "rss_start_mb": round(rss_start[pid], 1),
                     "rss_end_mb": round(rss_end.get(pid, float("nan")), 1),
                     "growth_pct": round(100 * (rss_end[pid] / rss_start[pid] - 1), 2) if pid in rss_end else None}
                    for pid in workers_start],
        # a replaced worker shows as a new pid, and gunicorn logs every boot
        "worker_restarts": max(len(set(workers_end) - set(workers_start)),
                               log_text.count("Booting worker with pid") - len(workers_start)),
        "training_running": sorted({t for t in (training_before, machine_busy()) if t}),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=60.0, help="saturation phase length (default 60)")
    p.add_argument("--baseline-seconds", type=float, default=10.0)
    p.add_argument("--warmup-seconds", type=float, default=10.0, help="uncounted warm-up at saturation (default 10)")
    p.add_argument("--clients", type=int, default=12, help="closed-loop client threads at saturation")
    p.add_argument("--generate-share", type=float, default=0.3, help="fraction of requests that generate text")
    p.add_argument("--max-requests", type=int, default=200_000)
    p.add_argument("--start-timeout", type=float, default=600.0)
    p.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    p.add_argument("--no-write", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = p.parse_args(argv)
    results = [run_variant(name, args) for name in args.variants.split(",")]
    print(json.dumps(results, indent=1))
    if not args.no_write:
        write_doc(results, args)
    ok = all(r["saturated"]["errors"] == 0 and r["worker_restarts"] == 0 for r in results)
    return 0 if ok else 1


def wait_for_workers(proc: subprocess.Popen, port: int, log_path: Path, deadline: float) -> dict:
    """Until every worker has logged "models loaded" (each loads after forking), then /readyz."""
    workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"gunicorn exited ({proc.returncode}):\n" + log_path.read_text(errors="replace")[-3000:])
        if log_path.read_text(errors="replace").count("models loaded") >= workers:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/readyz")
            resp = conn.getresponse()
            body = json.loads(resp.read())
            if resp.status == 200:
                return body
        time.sleep(0.5)
    raise SystemExit("gunicorn did not become ready in time")


def write_doc(results: list[dict], args) -> None:
    """Replace the "## Load" section of docs/BENCHMARKS.md (other sections are left alone)."""
    first = results[0]
    rows, workers = [], []
    for r in results:
        env = ", ".join(f"{k}={v}" for k, v in r["environment"].items()) or "gunicorn.conf.py as shipped"
        for name, ph in (("1 client", r["baseline"]), (f"{r['saturated']['clients']} clients, {args.seconds:.0f} s", r["saturated"])):
            rows.append(f"| {r['variant']} | {name} | {ph['requests']} | {ph['requests_per_s']} | {ph['errors']} | "
                        f"{ph['classify']['p50_ms']} / {ph['classify']['p99_ms']} | "
                        f"{ph['generate']['p50_ms']} / {ph['generate']['p99_ms']} |")
        workers += [f"| {r['variant']} | {w['pid']} | {w['rss_start_mb']} | {w['rss_end_mb']} | {w['growth_pct']} |"
                    for w in r["workers"]]
        r["env_text"] = env
    training = sorted({t for r in results for t in r["training_running"]})
    training = (f"**A training job was running at the same time** ({', '.join(training)}: runs/queue.sh on the "
                "same 2 cores), so absolute numbers are lower than on an idle machine."
                if training else "No training job was running.")
    variants = "\n".join(f"- `{r['variant']}`: {r['env_text']}; saturation {r['saturated']['requests_per_s']} requests/s, "
                         f"{r['saturated']['errors']} errors, {r['worker_restarts']} worker restarts, status codes "
                         f"{r['saturated']['statuses']}" for r in results)
    ratio = ""
    if len(results) > 1:
        ratio = (f"\nSaturation throughput of `{results[1]['variant']}` is "
                 f"{results[1]['saturated']['requests_per_s'] / first['saturated']['requests_per_s']:.2f}× "
                 f"that of `{first['variant']}` in the same run. This is why gunicorn.conf.py gives each worker "
                 "one TensorFlow/oneDNN/BLAS thread (LSTMLAB_TF_THREADS=1): the workers' request threads "
                 "already fill the cores, and the libraries' own per-core pools only add contention.\n")
    growth = max((w["growth_pct"] for r in results for w in r["workers"] if w["growth_pct"] is not None),
                  default=float("nan"))
    section = f"""## Load

`python benchmarks/load.py` ({first['date']}): gunicorn started as `make serve` does (the project's
gunicorn.conf.py: {first['server']['workers']} workers × {first['server']['threads']} threads, gthread, a random
FLASK_SECRET_KEY) on 127.0.0.1, {first['server']['cpus']} CPU cores, load generator in the same machine.
Requests go to the JSON API: classify (a 200×200 PNG drawing, multipart) on
{', '.join(first['server']['tasks']['classify'])}; generate (top-p, 10 words / 1 couplet) on
{', '.join(first['server']['tasks']['generate']) or 'no text task'}, {args.generate_share:.0%} of requests. The
generate rate limit was raised for the run, since every client shares one address. Each variant
is a fresh server: {args.warmup_seconds:.0f} s warm-up at saturation, {args.baseline_seconds:.0f} s with one client, then {args.seconds:.0f} s at
saturation. {training}

{variants}

| variant | phase | requests | requests/s | errors | classify p50 / p99 ms | generate p50 / p99 ms |
| --- | --- | --- | --- | --- | --- | --- |
{chr(10).join(rows)}
{ratio}
Worker memory across the saturation phase (RSS from /proc):

| variant | worker pid | RSS before (MiB) | RSS after (MiB) | growth % |
| --- | --- | --- | --- | --- |
{chr(10).join(workers)}

Largest RSS growth: {growth}%; worker restarts: {sum(r['worker_restarts'] for r in results)} (goal: 0 errors,
0 restarts, growth under 5%).
"""
    text = DOC.read_text(encoding="utf-8") if DOC.is_file() else "# Benchmarks\n"
    pattern = re.compile(r"^## Load\n.*?(?=^## |^<!-- |\Z)", re.S | re.M)  # up to the next section or marker
    text = pattern.sub(lambda _: section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
