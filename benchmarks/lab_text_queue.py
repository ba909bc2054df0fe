"""Lab bench text runs through the real queue: Submit -> first sample lines, timed.

    nice -n 10 python benchmarks/lab_text_queue.py kieu fast     # prints one JSON line

gunicorn and one consumer (`python -m app.lab`, as `make worker`) on a fresh instance folder in
/tmp (every process stopped by pid; `benchmarks/lab.py`'s Stack). The consumer is started and
idle first, as under `make serve`. The preset is submitted by POST /api/v1/runs ({"dataset",
"preset"}), then the run's server-sent events are read: seconds from Submit to the first
progress event, to the first epoch event carrying sample lines (what the run page shows first),
and to the end; then the record's test perplexity and the Kneser-Ney n-gram's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))

from lab import Stack  # noqa: E402


def main() -> int:
    """Start the stack, submit the preset, print the figures as JSON."""
    p = argparse.ArgumentParser()
    p.add_argument("slug", choices=("kieu", "nyt_headlines"))
    p.add_argument("preset", choices=("lab", "shipped", "fast"))
    a = p.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="lstmlab-text-queue-"))
    stack = Stack(folder)
    try:
        stack.web()
        stack.consumer()
        session = requests.Session()
        t0 = time.monotonic()
        r = session.post(stack.url + "/api/v1/runs", json={"dataset": a.slug, "preset": a.preset,
                                                           "nickname": "benchmark"}, timeout=30)
        r.raise_for_status()
        run = r.json()
        marks = {"submitted": round(time.monotonic() - t0, 2)}
        while "ended" not in marks:  # an events stream lives LAB_SSE_SECONDS at most: reconnect
            read_events(session, run["links"]["events"], t0, marks)
        record = stack.run(run["id"])
        m = record["metrics"] or {}
        marks.update(slug=a.slug, preset=a.preset, epochs_run=len(record["history"]),
                     test_perplexity=m.get("test_perplexity"),
                     ngram_test_perplexity=(m.get("ngram") or {}).get("test_perplexity"),
                     validation_perplexity=m.get("validation_perplexity"), error=record.get("error"))
        print(json.dumps(marks, ensure_ascii=False))
        return 0
    finally:
        stack.close()
        shutil.rmtree(folder, ignore_errors=True)


def read_events(session, url: str, t0: float, marks: dict) -> None:
    """Read one connection of the run's events into `marks` (seconds since `t0`)."""
    with session.get(url, stream=True, timeout=(5, 3600)) as stream:
        name = None
        for line in stream.iter_lines(decode_unicode=True):
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: ") and name:
                data = json.loads(line[6:])
                now = round(time.monotonic() - t0, 2)
                if name == "progress" and data.get("batch"):
                    marks.setdefault("first_progress", now)
                if name == "epoch" and data.get("samples") and "first_samples" not in marks:
                    marks["first_samples"], marks["first_lines"] = now, data["samples"][0]["lines"]
                if name == "status" and data["status"] in ("finished", "failed", "cancelled"):
                    marks["ended"], marks["status"] = now, data["status"]
                    return
                name = None


if __name__ == "__main__":
    sys.exit(main())
