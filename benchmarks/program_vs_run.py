"""A bench run's test accuracy against its downloaded standalone program's, same seed and settings.

    nice -n 10 python benchmarks/program_vs_run.py                 # lab and fast presets on MNIST
    nice -n 10 python benchmarks/program_vs_run.py --presets fast --no-doc

For each preset, one run goes through the app's run path (POST /api/v1/runs to gunicorn, one niced
Huey consumer started as `make worker` does: benchmarks/lab.py's Stack) and is waited for; then the
run's own program (GET /lab/runs/<id>/program.py) is run as a student would, `python program.py`
in an empty folder, niced, with LSTMLAB_DATA pointing at the same data files. Both test accuracies
are on the full official test split. The table goes into docs/BENCHMARKS.md between the
program-vs-run markers, with the machine's load and the other trainings that ran beside.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import PY, ROOT, Stack, beside, load_average, write_section  # noqa: E402 - benchmarks/lab.py
from lab_presets import preset_body, recipe_text  # noqa: E402

GOAL_POINTS = 1.0  # issue 34: the program within 1 point of the run


def estimate(stack: Stack, body: dict) -> str:
    """The bench's estimated run time for the preset (its text, as the form shows it)."""
    query = {"dataset": "mnist", **{k: v for k, v in body["recipe"].items() if k != "bidirectional"},
             **{k: body[k] for k in ("epochs", "batch_size", "learning_rate", "subset", "seed")}}
    if body["recipe"]["bidirectional"]:
        query["bidirectional"] = "on"
    return requests.get(stack.url + "/lab/estimate", params={**query, "lang": "en"}, timeout=30).json()["eta_text"]


def run_program(source: str, folder: Path, data: str) -> tuple[float, float]:
    """(test accuracy, seconds) of the program run with python in `folder`, niced."""
    (folder / "program.py").write_text(source, encoding="utf-8")
    t0 = time.monotonic()
    done = subprocess.run(["nice", "-n", "10", PY, "program.py"], cwd=folder, capture_output=True, text=True,
                          env={**os.environ, "LSTMLAB_DATA": data, "TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=4 * 3600)
    seconds = time.monotonic() - t0
    (folder / "program.log").write_text(done.stdout + done.stderr, encoding="utf-8")
    found = re.search(r"^test accuracy ([0-9.]+)$", done.stdout, re.M)
    if done.returncode or not found:
        raise SystemExit(f"the program failed ({done.returncode}); see {folder / 'program.log'}")
    return float(found[1]), seconds


def measure(stack: Stack, name: str, work: Path) -> dict:
    """One preset: the run through the queue, then its downloaded program."""
    body = preset_body(name)
    print(f"[{name}] estimated run time on the bench: {estimate(stack, body)}", flush=True)
    t0 = time.monotonic()
    created = requests.post(stack.url + "/api/v1/runs", json=body, timeout=30)
    created.raise_for_status()
    record = stack.wait_done(created.json()["id"], seconds=4 * 3600)
    run_seconds = time.monotonic() - t0
    if record["status"] != "finished":
        raise SystemExit(f"run {record['id']} ended {record['status']}: {record.get('error')}")
    run_acc = record["metrics"]["test_accuracy"]
    print(f"[{name}] run {record['id']}: test accuracy {run_acc:.4f} in {run_seconds:.0f} s", flush=True)
    source = requests.get(f"{stack.url}/lab/runs/{record['id']}/program.py", params={"lang": "en"}, timeout=30)
    source.raise_for_status()
    folder = work / name
    folder.mkdir()
    prog_acc, prog_seconds = run_program(source.text, folder, stack.env["LSTMLAB_DATA"])
    print(f"[{name}] program: test accuracy {prog_acc:.4f} in {prog_seconds:.0f} s", flush=True)
    return {"name": name, "run_id": record["id"], "run": run_acc, "run_seconds": run_seconds,
            "run_epochs": len(record["history"]), "program": prog_acc, "program_seconds": prog_seconds,
            "program_epochs": (folder / "program.log").read_text().count(" - val_accuracy:"),
            "test_count": record["metrics"].get("test_count")}


def write_doc(results: list[dict], context: str) -> None:
    """The "program vs run" section of docs/BENCHMARKS.md, between its markers."""
    rows = [f"| {r['name']} | {recipe_text(r['name'])} | {r['run']:.2%} ({r['run_epochs']} epochs, "
            f"{r['run_seconds']:.0f} s Submit → finished) | {r['program']:.2%} ({r['program_epochs']} epochs, "
            f"{r['program_seconds']:.0f} s) | {100 * (r['program'] - r['run']):+.2f} | "
            f"{'met' if abs(100 * (r['program'] - r['run'])) <= GOAL_POINTS else 'missed'} | `{r['run_id']}` |"
            for r in results]
    write_section("program-vs-run", "\n".join([
        "<!-- program-vs-run:start -->",
        "## A run against its downloaded program (benchmarks/program_vs_run.py)",
        "",
        context,
        "",
        "| preset | recipe | bench run: test accuracy | its program.py: test accuracy | points | goal (±1) | run |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Both on the full MNIST test split (n=10,000), the same seed and settings: the run through the "
        "queue (gunicorn, one Huey consumer), the program downloaded from /lab/runs/<id>/program.py and run "
        "with `python program.py` on the same data files.",
        "<!-- program-vs-run:end -->",
    ]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="lab,fast")
    parser.add_argument("--no-doc", action="store_true", help="print only; leave docs/BENCHMARKS.md alone")
    args = parser.parse_args(argv)
    started = dt.datetime.now(dt.timezone.utc)
    with tempfile.TemporaryDirectory(prefix="lstmlab-program-vs-run-") as tmp:
        work = Path(tmp)
        stack = Stack(work)
        try:
            stack.web()
            stack.consumer(nice=10)
            results = [measure(stack, name, work) for name in args.presets.split(",")]
        finally:
            stack.close()
    context = (f"Measured {started:%Y-%m-%d %H:%M} UTC on this 2-core machine, load average {load_average()} "
               f"at the end" + (f"; beside it: {beside()}" if beside() else "") + ".")
    print(context)
    print("RESULTS " + json.dumps(results), flush=True)
    if not args.no_doc:
        write_doc(results, context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
