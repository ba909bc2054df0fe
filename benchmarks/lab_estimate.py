"""The bench's first run-time estimates on a fresh server against the measured runs, through the queue.

    python benchmarks/lab_estimate.py                       # lab, then fast (~3 min on a quiet machine)
    python benchmarks/lab_estimate.py --presets lab --no-write

A fresh instance folder (no finished run: the estimate is the shipped default's), gunicorn and one
niced Huey consumer as `make serve` starts them (benchmarks/lab.py's Stack). For each preset on
MNIST, one at a time: the estimate the bench shows before Submit (GET /lab/estimate, the form's
fields), then the run submitted as the Train button does (POST /api/v1/runs) and waited for; its
record gives Submit -> finished, the seconds in its epochs and the cost units it ran
(`recipes.epoch_cost`). The throughput the server measures from these runs
(`recipes.measure_throughput`, what `runs.throughput()` uses) is printed: it is the calibrated
default of app/lab/runs.py. The table goes into docs/BENCHMARKS.md between the lab-estimate markers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import ROOT, Stack, beside, load_average, write_section  # noqa: E402 - benchmarks/lab.py

sys.path.insert(0, str(ROOT))
from app.lab import recipes  # noqa: E402
from app.tasks import MNIST  # noqa: E402


def form_args(name: str) -> dict:
    """The bench form's fields of a preset on MNIST (what /lab/estimate reads)."""
    recipe, settings = recipes.preset(name, MNIST)
    return {"dataset": "mnist", **{k: str(v).lower() if isinstance(v, bool) else v for k, v in asdict(recipe).items()},
            "bidirectional": "1" if recipe.bidirectional else "", **asdict(settings)}


def measure(stack: Stack, name: str) -> dict:
    """The estimate shown before Submit, then the run's record once it has finished."""
    shown = requests.get(stack.url + "/lab/estimate", params=form_args(name), timeout=30).json()
    recipe, settings = recipes.preset(name, MNIST)
    body = {"dataset": "mnist", "recipe": asdict(recipe), **asdict(settings), "nickname": f"estimate {name}"}
    run = requests.post(stack.url + "/api/v1/runs", json=body, timeout=30)
    run.raise_for_status()
    record = stack.wait_done(run.json()["id"], seconds=3600)
    created, started, finished = (dt.datetime.fromisoformat(record[k]) for k in ("created_at", "started_at", "finished_at"))
    size = recipes.training_size(MNIST, ROOT / "models")
    return {"preset": name, "id": record["id"], "status": record["status"], "estimate": shown.get("seconds"),
            "estimate_text": shown.get("eta_text"), "measured_runs": shown.get("measured_runs"),
            "actual": (finished - created).total_seconds(), "run_seconds": (finished - started).total_seconds(),
            "epoch_seconds": sum(e.get("seconds") or 0 for e in record["history"]),
            "units": settings.epochs * recipes.epoch_cost(MNIST, recipe, settings, size),
            "record": {"dataset": "mnist", "recipe": record["recipe"], "settings": record["settings"],
                       "history": record["history"], "started_at": started, "finished_at": finished}}


def main(argv=None) -> int:
    """Measure, print, and write the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="lab,fast")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args(argv)
    before = load_average()
    with tempfile.TemporaryDirectory(prefix="lab-estimate-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.web()
            stack.consumer()
            others = beside()
            rows = [measure(stack, name) for name in args.presets.split(",")]
        finally:
            stack.close()
    after = load_average()
    default = recipes.Throughput(0.0, 0.0)
    fitted = recipes.measure_throughput([r["record"] for r in rows], recipes.image_cost({"mnist": MNIST}, ROOT / "models"),
                                        default)
    for r in rows:
        print({k: v for k, v in r.items() if k != "record"}, flush=True)
    print(f"measured throughput: {fitted.seconds_per_unit:.3g} s per unit, {fitted.overhead_seconds:.1f} s overhead "
          f"(from {fitted.runs} runs); load {before} before, {after} after", flush=True)
    if not args.no_write:
        write_doc(rows, fitted, before, after, others)
    return 0


def write_doc(rows: list[dict], fitted: recipes.Throughput, before: str, after: str, others: str) -> None:
    """The "Lab bench: first estimate" section of docs/BENCHMARKS.md, between its markers."""
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [f"| {r['preset']} | {r['estimate_text']} ({r['estimate']:.0f} s; from {r['measured_runs']} runs) | "
             f"{r['actual']:.1f} s | {r['epoch_seconds']:.1f} s | {r['run_seconds'] - r['epoch_seconds']:.1f} s | "
             f"{r['units']:,.0f} | {r['epoch_seconds'] / r['units']:.3g} | `{r['id']}` |" for r in rows]
    block = "\n".join([
        "<!-- lab-estimate:start -->",
        "## Lab bench: first estimate on a fresh server (benchmarks/lab_estimate.py)",
        "",
        f"Run {when} on this 2-core machine through the queue (fresh instance folder, gunicorn + one Huey "
        f"consumer niced 10), one run at a time; load average {before} before, {after} after. "
        f"Other trainings beside: {others or 'none'}.",
        "",
        "| preset | estimate shown before Submit | Submit → finished | in epochs | outside epochs | cost units | "
        "s per unit | run |",
        "|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"Measured from these runs (the median the server itself takes): {fitted.seconds_per_unit:.3g} s per unit, "
        f"{fitted.overhead_seconds:.1f} s outside the epochs.",
        "<!-- lab-estimate:end -->",
    ])
    write_section("lab-estimate", block)

if __name__ == "__main__":
    raise SystemExit(main())
