"""The lab bench's presets side by side on MNIST, through the queue, from the runs' records.

    python benchmarks/lab_presets.py                      # lab and fast presets (~5-15 min)
    python benchmarks/lab_presets.py --presets lab,fast,shipped
    python benchmarks/lab_presets.py --url http://127.0.0.1:8000 --no-submit   # table from a server's records
    python benchmarks/lab_presets.py --step-cost           # the run-time estimate's STEP_MACS (~3 min)

Each preset (app/lab/recipes.py) is submitted as a browser's Train button would (POST /api/v1/runs,
the same `submit_run`), to gunicorn and one niced Huey consumer started like `make serve` does
(benchmarks/lab.py's Stack), one run at a time; when it has finished, one MNIST test digit is
classified with the run's own model. The table is then built from the finished runs' records
(GET /api/v1/runs): test accuracy on the full official test split, seconds in epochs, Submit to
finished (the record's created_at to finished_at), and Submit to the first classification (this
script's clock). It is written into docs/BENCHMARKS.md between the lab-presets markers, with the
machine's load and the other trainings that ran beside.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import ROOT, Stack, beside, digits, load_average, write_section  # noqa: E402 - benchmarks/lab.py

sys.path.insert(0, str(ROOT))
from app.lab import recipes  # noqa: E402
from app.tasks import MNIST  # noqa: E402


def preset_body(name: str) -> dict:
    """The API payload of a preset on MNIST."""
    recipe, settings = recipes.preset(name, MNIST)
    return {"dataset": "mnist", "recipe": asdict(recipe), **asdict(settings), "nickname": f"preset {name}"}


def submit_and_classify(stack: Stack, name: str, png: bytes) -> dict:
    """Submit one preset, wait for it, classify one digit; Submit -> classified seconds."""
    session = requests.Session()
    t0 = time.monotonic()
    body = preset_body(name)
    run = session.post(stack.url + "/api/v1/runs", json=body, timeout=30)
    run.raise_for_status()
    run = run.json()
    record = stack.wait_done(run["id"], seconds=4 * 3600)
    answer = session.post(run["links"]["predict"], files={"file": ("d.png", png, "image/png")}, timeout=60)
    return {"id": run["id"], "status": record["status"], "classify_status": answer.status_code,
            "classified": time.monotonic() - t0}


def parse_time(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text)


def table_rows(url: str, classified: dict[str, float]) -> list[str]:
    """One row per preset from the latest finished run of exactly its recipe and settings."""
    runs = requests.get(url + "/api/v1/runs", params={"dataset": "mnist", "status": "finished", "limit": 1000},
                        timeout=30).json()["runs"]
    rows = []
    for name in recipes.PRESET_NAMES:
        recipe, settings = recipes.preset(name, MNIST)
        same = [r for r in runs if r["recipe"] == asdict(recipe) and r["settings"] == asdict(settings)]
        if not same:
            rows.append(f"| {name} | {recipe_text(name)} | {recipes.param_count(MNIST, recipe):,} | not measured | | | | |")
            continue
        r = same[0]  # newest first
        m = r["metrics"]
        epochs = sum(e.get("seconds") or 0 for e in r["history"])
        total = (parse_time(r["finished_at"]) - parse_time(r["created_at"])).total_seconds()
        waited = (parse_time(r["started_at"]) - parse_time(r["created_at"])).total_seconds()
        answer = classified.get(r["id"])
        rows.append(f"| {name} | {recipe_text(name)} | {r['params']:,} | **{m['test_accuracy']:.2%}** "
                    f"(n={m.get('test_count', 0):,}) | {len(r['history'])} | {epochs:.0f} s | {total:.0f} s "
                    f"(queue {waited:.0f} s) | " + (f"{answer:.0f} s" if answer else "–") + f" | `{r['id']}` |")
    return rows


def recipe_text(name: str) -> str:
    recipe, s = recipes.preset(name, MNIST)
    return (f"{recipe.reading}, {recipe.cell} {recipe.units} × {recipe.layers}"
            + (", bidirectional" if recipe.bidirectional else "") + f", dropout {recipe.dropout:g}; "
            f"{s.epochs} epochs, batch {s.batch_size}, lr {s.learning_rate:g}")


def write_doc(rows: list[str], context: str) -> None:
    """The "Lab bench presets" section of docs/BENCHMARKS.md, between its markers."""
    block = "\n".join([
        "<!-- lab-presets:start -->",
        "## Lab bench presets (benchmarks/lab_presets.py)",
        "",
        context,
        "",
        "| preset | recipe | parameters | test accuracy (full test split) | epochs | time in epochs | "
        "Submit → finished | Submit → classifying | run |",
        "|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        "Goal for `fast`: ≥ 99.0% in ≤ 3 min from Submit to a classifying run on 2 cores (floor ≥ 98.5% in "
        "≤ 90 s). The bench page shows the same figures, read from the records of the finished runs.",
        "<!-- lab-presets:end -->",
    ])
    write_section("lab-presets", block)

STEP_COST_CASES = ((32, 128), (128, 128), (512, 128), (128, 32))  # (LSTM units, batch) over MNIST rows


def step_cost(n: int = 12800) -> list[dict]:
    """Training seconds per image of one-layer row LSTMs (make_recipe_model) of several widths and
    batch sizes, and the fixed cost / multiply-add cost ratio app/lab/recipes.py's STEP_MACS models."""
    import keras
    import numpy as np

    from app.config import default_data_dir
    from training.build import make_recipe_model

    with np.load(default_data_dir() / MNIST.data_path) as data:
        x, y = data["x_train"][:n].astype("float32")[..., None], data["y_train"][:n]
    out = []
    for units, batch in STEP_COST_CASES:
        model = make_recipe_model(MNIST, "rows", "lstm", units, 1, False, 0.0)
        model.compile("adam", "sparse_categorical_crossentropy")
        model.fit(x[:batch * 4], y[:batch * 4], batch_size=batch, epochs=1, verbose=0)  # build and trace first
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0)
        per_image = (time.perf_counter() - t0) / n
        layer = recipes.layer_plan(MNIST, recipes.Recipe("rows", "lstm", units, 1, False, 0.0))[0]
        out.append({"units": units, "batch": batch, "seconds_per_image": per_image,
                    "seconds_per_batch_step": per_image * batch / layer.steps,
                    "batch_step_macs": batch * layer.macs / layer.steps})
        print(out[-1], flush=True)
    # seconds per batch step = a + b * multiply-adds per batch step, fitted on relative error
    # (weights 1/y: the widths span 30x); STEP_MACS = a / b
    xs = np.array([o["batch_step_macs"] for o in out])
    ys = np.array([o["seconds_per_batch_step"] for o in out])
    b, a = np.polyfit(xs, ys, 1, w=1 / ys)
    print(f"fixed part {a:.3g} s, {b:.3g} s per multiply-add: STEP_MACS ≈ {a / b:.3g}", flush=True)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--presets", default="lab,fast", help="comma-separated: lab, fast, shipped")
    parser.add_argument("--url", help="a running server (else gunicorn and a consumer are started here)")
    parser.add_argument("--no-submit", action="store_true", help="only build the table from the records")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--step-cost", action="store_true", help="only measure the cost model's STEP_MACS")
    args = parser.parse_args(argv)
    if args.step_cost:
        step_cost()
        return 0
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load_before, others = load_average(), beside()
    stack = Stack(Path(tempfile.mkdtemp(prefix="lstmlab-bench-presets-")))
    classified: dict[str, float] = {}
    try:
        if args.url:
            stack.url = args.url.rstrip("/")
        else:
            stack.web()
            stack.consumer()
        if not args.no_submit:
            png = digits(1)[0]
            for name in [p.strip() for p in args.presets.split(",") if p.strip()]:
                result = submit_and_classify(stack, name, png)
                classified[result["id"]] = result["classified"]
                print(name, result, flush=True)
        rows = table_rows(stack.url, classified)
    finally:
        stack.close()
    context = (f"Run {started} through the queue (gunicorn + one Huey consumer niced 10, as `make serve` "
               f"starts it), one run at a time, on this 2-core machine shared with other work: load average "
               f"{load_before} before, {load_average()} after. "
               + (f"Training beside it: {others}." if others else "No other training process was running."))
    print("\n".join(rows))
    if not args.no_write:
        write_doc(rows, context)
    return 0


if __name__ == "__main__":
    sys.exit(main())
