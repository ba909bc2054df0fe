"""The text bench's run-time estimate against runs measured through the queue.

    nice -n 10 python benchmarks/lab_text_estimate.py --save /tmp/text-runs.json      # measure (~25 min)
    python benchmarks/lab_text_estimate.py --load /tmp/text-runs.json                 # work out, write the doc
    nice -n 10 python benchmarks/lab_text_estimate.py --step-cost                      # the cost model's constants
    nice -n 10 python benchmarks/lab_text_estimate.py --cell-cost                      # CELL_COST (~5 min)
    nice -n 10 python benchmarks/lab_text_estimate.py --ngram-cost                     # loading and n-gram (~3 min)

Step cost: seconds per training batch of word models (`make_word_lstm`, compiled as
`train_text_task` compiles them, batches from `make_batches`) of several sizes, with and without
the weight average's per-batch update, fitted as seconds = rate · `plan_cost` units + fixed +
per parameter (+ per parameter when averaged): the fixed and per-parameter parts over the rate
are BATCH_MACS, PARAM_MACS and AVERAGE_PARAM_MACS of app/lab/textrecipes.py.

Measure: a fresh instance folder, gunicorn and one niced Huey consumer as `make serve` starts them
(benchmarks/lab.py's Stack); each text preset submitted as the bench's Train button does
(POST /api/v1/runs {"dataset", "preset"}, optionally a smaller "epochs"), one at a time, and its
record kept once it has ended (with the load average before and after it), saved after every run.

Cell cost (`--cell-cost`): word models of each cell, one and two layers, narrow and wide, trained
in turns in one process; each case's seconds per batch against the one-layer LSTM of its width in
the same round, fitted as one factor per cell on its recurrent layers' units: CELL_COST of
app/lab/recipes.py. N-gram cost (`--ngram-cost`): loading each built-in corpus and the n-gram's
fitting and scoring, timed between batches of a reference model: the ratios of LOAD_TOKEN_UNITS,
NGRAM_FIT_UNITS and NGRAM_SCORE_UNITS of app/lab/textrecipes.py, all three scaled by the median
of finished runs' n-gram seconds over the modelled n-gram at their own in-epoch speed (`--load`
prints it): pure Python slows less than the two-threaded training when the machine is busy, so
the reference model alone would overprice it.

Work out: each record's cost (`textrecipes.text_run_cost`, from the same data-set figures the
bench reads), the throughput the server itself would measure from these runs
(`recipes.measure_throughput` over the text cost, what `runs.text_throughput()` takes: its
median is the default of app/lab/runs.py), and for every run the estimate at that throughput for
the epochs it ran against the seconds from start to finish, with the estimate left out
of its own calibration (the median of the other runs) beside it. The table goes into
docs/BENCHMARKS.md between the lab-text-estimate markers. Each run's own figures of its end
also give the cost model's after-the-epochs constants: its n-gram's seconds (the card's) over its
in-epoch seconds per unit against the modelled n-gram (`textrecipes.ngram_units`), and its meter
sampling's seconds (syllables over the card's syllables per second) over the same rate and the
model's single-row step (METER_STEP_UNITS).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab import ROOT, Stack, beside, load_average, write_section  # noqa: E402 - benchmarks/lab.py

sys.path.insert(0, str(ROOT))

RUNS = "kieu:fast nyt_headlines:fast kieu:lab kieu:shipped:4 nyt_headlines:lab:2"
# (vocabulary, embedding, units, tied, projection, batch, tokens per sequence, weight average)
STEP_COST_CASES = [
    (1572, 64, 128, True, 0, 16, 64, False), (1572, 10, 100, False, 0, 64, 64, False),
    (1572, 128, 256, False, 128, 16, 64, False), (4324, 64, 128, True, 0, 16, 15, True),
    (4324, 64, 128, True, 0, 16, 15, False), (4324, 10, 100, False, 0, 64, 15, True),
    (8000, 256, 64, False, 0, 16, 8, False), (8000, 256, 64, False, 0, 16, 8, True),
    (1000, 32, 32, True, 0, 8, 4, False), (4324, 200, 384, True, 0, 64, 20, False),
    (2000, 64, 64, True, 0, 32, 32, False), (16000, 128, 128, True, 0, 16, 12, True),
]


def step_cost(batches: int = 40) -> list[dict]:
    """Seconds per training batch of every STEP_COST_CASES model, and the fitted constants."""
    import time

    import keras
    import numpy as np

    from training import fit
    from training.build import make_word_lstm
    from training.textdata import make_batches

    out = []
    for vocab, emb, units, tied, proj, batch, steps, average in STEP_COST_CASES:
        keras.utils.set_random_seed(1)
        rng = np.random.default_rng(1)
        ids = [list(rng.integers(3, vocab, steps)) for _ in range(batch * batches)]
        model = make_word_lstm(vocab, embedding=emb, units=units, dropout=0.3, projection=emb if tied else proj,
                               tied=tied)
        model.compile(keras.optimizers.AdamW(2e-3, weight_decay=1e-4, clipnorm=1.0), "sparse_categorical_crossentropy",
                      weighted_metrics=["accuracy"])
        callbacks = list(fit.weight_average_callbacks(model, 0.998, lambda m: {})) if average else []
        model.fit(make_batches(ids[:batch * 4], batch, 1, True), epochs=1, verbose=0, callbacks=callbacks)  # trace
        t0 = time.perf_counter()
        model.fit(make_batches(ids, batch, 1, True), epochs=1, verbose=0, callbacks=callbacks)
        seconds = (time.perf_counter() - t0) / batches
        out.append(case_cost([vocab, emb, units, tied, proj, batch, steps, average], seconds))
        print(json.dumps(out[-1]), flush=True)
    fit_step_cost(out)
    return out


# (cell, layers, units): word models of each cell over the Kiều fast preset's vocabulary, embedding,
# batch and sequence length, from the presets' width (the steps' fixed part weighs most) to wide
# (their multiply-adds).
CELL_COST_CASES = [(cell, layers, units) for units in (128, 256) for layers in (1, 2)
                   for cell in ("lstm", "gru", "simple_rnn")] + [(cell, 1, 512) for cell in ("lstm", "gru", "simple_rnn")]


def cell_cost(rounds: int = 24, batches: int = 2) -> list[dict]:
    """Seconds per training batch (`train_on_batch`) of every CELL_COST_CASES model, measured in
    turns (each round runs `batches` batches of every model, so a change of the machine's load
    falls on all of them alike; the median round counts, and each case's median ratio to the
    one-layer LSTM of its width in the same round), and each cell's step factors fitted."""
    import time

    import keras
    import numpy as np

    from training.build import make_word_lstm

    vocab, emb, batch, steps = 1572, 64, 16, 64
    rng = np.random.default_rng(1)
    x = rng.integers(3, vocab, (batch, steps)).astype("int32")
    y = np.roll(x, -1, axis=1)
    models = []
    for cell, depth, units in CELL_COST_CASES:
        keras.utils.set_random_seed(1)
        model = make_word_lstm(vocab, embedding=emb, units=units, dropout=0.3, projection=emb, tied=True, cell=cell,
                               rnn_layers=depth)
        model.compile(keras.optimizers.AdamW(2e-3, weight_decay=1e-4, clipnorm=1.0), "sparse_categorical_crossentropy",
                      weighted_metrics=["accuracy"])
        for _ in range(3):  # trace
            model.train_on_batch(x, y)
        models.append(model)
    times = [[] for _ in models]
    for _ in range(rounds):
        for i, model in enumerate(models):
            t0 = time.perf_counter()
            for _ in range(batches):
                model.train_on_batch(x, y)
            times[i].append((time.perf_counter() - t0) / batches)
    out = []
    for (cell, depth, units), seconds in zip(CELL_COST_CASES, times):
        lstm = times[CELL_COST_CASES.index(("lstm", 1, units))]
        out.append({"cell": cell, "layers": depth, "units": units, "seconds_per_batch": statistics.median(seconds),
                    "spread": (max(seconds) - min(seconds)) / statistics.median(seconds),
                    "to_lstm": statistics.median(a / b for a, b in zip(seconds, lstm)),
                    **cell_case_units(cell, depth, units, vocab, emb, batch, steps)})
        print(json.dumps(out[-1]), flush=True)
    fit_cell_cost(out)
    return out


def cell_case_units(cell: str, depth: int, units: int, vocab: int, emb: int, batch: int, steps: int) -> dict:
    """A cell case's plan split as the cell fit reads it: the units of its recurrent layers'
    sequential steps and of their multiply-adds (both at factor 1), and of everything else
    (the other layers and the per-batch part)."""
    from app.lab import textrecipes
    from app.lab.recipes import STEP_MACS, Layer, plan_cost

    recipe = textrecipes.TextRecipe(embedding=emb, cell=cell, units=units, layers=depth, tied=True, sequence_length=steps)
    plan = textrecipes.text_plan(recipe, vocab, steps)
    rnn = [layer for layer in plan if layer.steps]
    plain = [Layer(layer.name, layer.params, layer.macs) for layer in rnn]
    params = textrecipes.text_param_count(recipe, vocab)
    per_batch = (textrecipes.BATCH_MACS + params * textrecipes.PARAM_MACS) / STEP_MACS
    return {"step_units": sum(layer.steps for layer in rnn), "mac_units": plan_cost(plain, batch),
            "other_units": plan_cost([layer for layer in plan if not layer.steps], batch) + per_batch,
            "plan_units": plan_cost(plan, batch) + per_batch}


def fit_cell_cost(out: list[dict]) -> None:
    """Each cell's factor f on its recurrent layers' units, from the cases' ratios to the
    one-layer LSTM of their width (ratio · that LSTM's units = other units + f · recurrent units),
    fitted on relative error; the LSTM's own (1 by definition for one layer) shows whether a
    second layer costs what the plan says."""
    import numpy as np

    ref = {o["units"]: o["plan_units"] for o in out if o["cell"] == "lstm" and o["layers"] == 1}
    for cell in ("lstm", "gru", "simple_rnn"):
        cases = [o for o in out if o["cell"] == cell]
        target = np.array([o["to_lstm"] * ref[o["units"]] for o in cases])
        rnn = np.array([o["step_units"] + o["mac_units"] for o in cases])
        other = np.array([o["other_units"] for o in cases])
        f = float(np.sum(rnn * (target - other) / target ** 2) / np.sum(rnn ** 2 / target ** 2))
        print(f"{cell}: CELL_COST {f:.3g}; " + ", ".join(
            f"×{o['layers']} {o['units']}: measured {o['to_lstm']:.2f} of the LSTM, modelled "
            f"{(oth + f * u) / ref[o['units']]:.2f} (factor 1: {(oth + u) / ref[o['units']]:.2f})"
            for o, u, oth in zip(cases, rnn, other)), flush=True)


def reference_rate(model, x, y, units: float, batches: int = 4) -> float:
    """Seconds per cost unit now: `batches` training batches of a reference model of `units` units a batch."""
    import time

    t0 = time.perf_counter()
    for _ in range(batches):
        model.train_on_batch(x, y)
    return (time.perf_counter() - t0) / batches / units


def ngram_cost(rounds: int = 3) -> list[dict]:
    """The after-the-epochs constants of the data sets' loading and n-gram, in cost units: each
    round times, for Kiều and the NYT headlines, loading the text as a run does (`load_text_data`,
    the vocabulary, the arrays) and the n-gram's two parts (`KneserNey.fit` at each order over
    the training text; `KneserNey.metrics` of the validation split, one whole-vocabulary
    distribution per token and order), each between batches of a reference model (the Kiều fast
    preset's) that turn its seconds into units at that moment."""
    import time

    import keras
    import numpy as np

    from app.lab import textrecipes
    from app.lab.recipes import STEP_MACS, plan_cost
    from app.tasks import BUILTIN_TASKS
    from training.build import make_word_lstm
    from training.ngram import NGRAM_ORDERS, KneserNey
    from training.textdata import load_text_data, to_arrays
    from training.textgen import Vocabulary

    recipe = textrecipes.TextRecipe(embedding=64, units=128, tied=True, sequence_length=64)
    vocab, batch = 1572, 16
    model = make_word_lstm(vocab, **textrecipes.model_kwargs(recipe))
    model.compile(keras.optimizers.AdamW(2e-3, weight_decay=1e-4, clipnorm=1.0), "sparse_categorical_crossentropy")
    rng = np.random.default_rng(1)
    x = rng.integers(3, vocab, (batch, 64)).astype("int32")
    y = np.roll(x, -1, axis=1)
    units = plan_cost(textrecipes.text_plan(recipe, vocab, 64), batch) + (
        textrecipes.BATCH_MACS + textrecipes.text_param_count(recipe, vocab) * textrecipes.PARAM_MACS) / STEP_MACS
    for _ in range(3):
        model.train_on_batch(x, y)
    out = []
    for _ in range(rounds):
        for slug in ("kieu", "nyt_headlines"):
            spec = BUILTIN_TASKS[slug]
            row = {"slug": slug}
            rate = reference_rate(model, x, y, units)
            t0 = time.perf_counter()
            data = load_text_data(spec, None, 42, False, spec.extra.get("aux_text", "none"))
            words = Vocabulary.build(data.train, spec.tokenizer, min_count=2, display=data.display)
            for part in (data.train, data.aux, data.validation, data.test):
                if part:
                    to_arrays(part, words)
            row["load_seconds"] = time.perf_counter() - t0
            ids = lambda seqs: [words.encode(s) for s in seqs]  # noqa: E731
            train, val = ids(data.train) + ids(data.aux), ids(data.validation)
            row["tokens"] = sum(len(s) for s in train) + 2 * sum(len(s) for s in val)  # test: as large as validation
            rate = (rate + reference_rate(model, x, y, units)) / 2
            row["load_units"] = row["load_seconds"] / rate
            t0 = time.perf_counter()
            lms = [KneserNey(order, 0.75, len(words)).fit(train) for order in NGRAM_ORDERS]
            row["fit_seconds"] = time.perf_counter() - t0
            row["fit_token_orders"] = sum(len(s) for s in train) * sum(NGRAM_ORDERS)
            rate2 = reference_rate(model, x, y, units)
            row["fit_units"] = row["fit_seconds"] / ((rate + rate2) / 2)
            t0 = time.perf_counter()
            for lm in lms:
                lm.metrics(val, full=False)
            row["score_seconds"] = time.perf_counter() - t0
            row["score_token_orders_vocabulary"] = sum(len(s) for s in val) * sum(NGRAM_ORDERS) * len(words)
            row["score_units"] = row["score_seconds"] / ((rate2 + reference_rate(model, x, y, units)) / 2)
            row["rate"] = rate
            out.append(row)
            print(json.dumps(row), flush=True)
    for key, per in (("load_units", "tokens"), ("fit_units", "fit_token_orders"),
                     ("score_units", "score_token_orders_vocabulary")):
        print(key, "per", per, {slug: f"{statistics.median(r[key] / r[per] for r in out if r['slug'] == slug):.3g}"
                                for slug in ("kieu", "nyt_headlines")}, flush=True)
    return out


def case_cost(case: list, seconds: float) -> dict:
    """A STEP_COST_CASES case's measured seconds per batch with its units and parameters."""
    from app.lab import textrecipes
    from app.lab.recipes import plan_cost

    vocab, emb, units, tied, proj, batch, steps, average = case
    recipe = textrecipes.TextRecipe(embedding=emb, units=units, tied=tied, projection=proj, sequence_length=steps)
    return {"case": case, "seconds_per_batch": seconds, "units": plan_cost(textrecipes.text_plan(recipe, vocab, steps), batch),
            "params": textrecipes.text_param_count(recipe, vocab), "average": average}


def fit_step_cost(out: list[dict]) -> None:
    """seconds per batch = rate · the plan's units + fixed + per parameter · params (+ per
    parameter · params when averaged), fitted on relative error (weights 1/y: the cases span
    30x); each part over the rate, in STEP_MACS multiply-adds, is a constant of
    app/lab/textrecipes.py."""
    import numpy as np

    from app.lab.recipes import STEP_MACS

    y = np.array([o["seconds_per_batch"] for o in out])
    x = np.array([[o["units"], 1.0, o["params"], o["params"] * o["average"]] for o in out])
    coef, *_ = np.linalg.lstsq(x / y[:, None], np.ones_like(y), rcond=None)
    rate, fixed, per_param, per_average = coef
    error = np.abs(x @ coef / y - 1)
    print(f"rate {rate:.3g} s per unit; BATCH_MACS ≈ {fixed / rate * STEP_MACS:.3g}, "
          f"PARAM_MACS ≈ {per_param / rate * STEP_MACS:.3g}, AVERAGE_PARAM_MACS ≈ {per_average / rate * STEP_MACS:.3g}; "
          f"fit within {np.max(error):.0%} (median {np.median(error):.0%})", flush=True)


def measure(stack: Stack, slug: str, preset: str, epochs: int | None, changes: dict) -> dict:
    """Submit one preset (its epochs cut to `epochs` when given, its recipe's fields `changes`)
    and wait for its record."""
    body = {"dataset": slug, "preset": preset, "nickname": f"estimate {preset}", "recipe": changes}
    if epochs:
        body["epochs"] = epochs
    before = load_average()
    r = requests.post(stack.url + "/api/v1/runs", json=body, timeout=30)
    r.raise_for_status()
    record = stack.wait_done(r.json()["id"], seconds=4 * 3600)
    return {"slug": slug, "preset": preset, "changes": changes, "load_before": before, "load_after": load_average(),
            "beside": beside(), "record": record}


def collect(specs: list[str], save: Path) -> list[dict]:
    """Measure every `slug:preset[:epochs[:field=value,...]]` in a fresh stack (the values JSON),
    saving the records after each run."""
    rows: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="lab-text-estimate-") as tmp:
        stack = Stack(Path(tmp))
        try:
            stack.web()
            stack.consumer()
            for item in specs:
                slug, preset, *rest = item.split(":")
                changes = dict(kv.split("=") for kv in rest[1].split(",")) if len(rest) > 1 else {}
                rows.append(measure(stack, slug, preset, int(rest[0]) if rest else None,
                                    {k: json.loads(v) for k, v in changes.items()}))
                save.write_text(json.dumps(rows, indent=1, ensure_ascii=False), encoding="utf-8")
                last = rows[-1]["record"]
                print(json.dumps({k: v for k, v in rows[-1].items() if k != "record"}
                                 | {"id": last["id"], "status": last["status"], "seconds": last["seconds"]}), flush=True)
        finally:
            stack.close()
    return rows


def as_run(record: dict) -> dict:
    """A saved record as `measure_throughput` reads runs (times as datetimes)."""
    return {"dataset": record["dataset"], "recipe": record["recipe"], "settings": record["settings"],
            "history": record["history"], "started_at": dt.datetime.fromisoformat(record["started_at"]),
            "finished_at": dt.datetime.fromisoformat(record["finished_at"])}


def work_out(rows: list[dict]) -> tuple[list[dict], object]:
    """Each run's cost, estimate and measured seconds, and its end's constants; the throughput
    fitted from all of them."""
    from app.lab import recipes, textrecipes

    models = ROOT / "models"
    specs = textrecipes.text_datasets()
    cost_of = textrecipes.text_cost(specs, models)
    zero = recipes.Throughput(0.0, 0.0)
    runs = [as_run(r["record"]) for r in rows if r["record"]["status"] == "finished"]
    fitted = recipes.measure_throughput(runs, cost_of, zero)
    out = []
    for r in rows:
        rec = r["record"]
        if rec["status"] != "finished":
            continue
        run = as_run(rec)
        others = recipes.measure_throughput([x for x in runs if x != run], cost_of, zero)
        epochs = len(rec["history"])
        cost = cost_of(run)
        measured = (run["finished_at"] - run["started_at"]).total_seconds()
        in_epochs = sum(e["seconds"] for e in rec["history"])
        rate = in_epochs / (epochs * cost.epoch)
        figures = textrecipes.text_figures(specs[rec["dataset"]], models)
        meter = rec["metrics"].get("meter") or {}
        syllables = [m.get("syllables_per_second") for m in (meter.get("constrained"), meter.get("unconstrained")) if m]
        recipe = textrecipes.TextRecipe(**{**rec["recipe"]})
        step = recipes.plan_cost(textrecipes.text_plan(recipe, figures.vocabulary, 1), 1)
        out.append({"slug": r["slug"], "preset": r["preset"], "changes": r.get("changes") or {}, "id": rec["id"],
                    "epochs": epochs, "asked": rec["settings"]["epochs"],
                    "ngram_measured_to_modelled": rec["metrics"]["ngram"]["seconds"] / rate
                    / textrecipes.ngram_units(figures),
                    "meter_step_units": (sum(textrecipes.METER_TOKENS / 2 / x for x in syllables) / rate
                                         / (textrecipes.METER_TOKENS * step)) if syllables else None,
                    "units": epochs * cost.epoch + cost.outside(epochs), "measured": measured,
                    "in_epochs": in_epochs, "rate": rate, "outside": measured - in_epochs,
                    "overhead": measured - in_epochs - cost.outside(epochs) * rate,
                    "estimate": recipes.seconds_for(epochs, cost, fitted),
                    "held_out": recipes.seconds_for(epochs, cost, others) if others.runs else None,
                    "at_own_rate": recipes.seconds_for(epochs, cost, recipes.Throughput(rate, fitted.overhead_seconds)),
                    "load": f"{r['load_before']} → {r['load_after']}", "beside": r["beside"]})
    return out, fitted


def write_doc(rows: list[dict], fitted, note: str) -> None:
    """The "Lab bench: text run-time estimate" section of docs/BENCHMARKS.md, between its markers."""
    def name(r: dict) -> str:
        changed = ", ".join(f"{k} {v}" for k, v in r["changes"].items())
        return f"{r['slug']} {r['preset']}" + (f" ({changed})" if changed else "")

    lines = [f"| {name(r)} | {r['epochs']} of {r['asked']} | {r['units']:,.0f} | "
             f"{r['measured']:.1f} s | {r['in_epochs']:.1f} s | {r['rate'] * 1000:.2f} | {r['estimate']:.1f} s | "
             f"**{r['estimate'] / r['measured']:.2f}** | "
             + (f"{r['held_out']:.1f} s ({r['held_out'] / r['measured']:.2f})" if r["held_out"] else "–")
             + f" | {r['at_own_rate']:.1f} s ({r['at_own_rate'] / r['measured']:.2f})"
             + f" | {r['load']} | `{r['id']}` |" for r in rows]
    block = "\n".join([
        "<!-- lab-text-estimate:start -->",
        "## Lab bench: text run-time estimate (benchmarks/lab_text_estimate.py)",
        "",
        note,
        "",
        "| run | epochs run | cost units | start → finished | in epochs | ms per unit (in epochs) | estimate "
        "| estimate / measured | estimate from the other runs (ratio) | estimate at this run's own ms per unit (ratio) "
        "| load average before → after | run |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *lines,
        "",
        f"Measured from these runs (the median the server itself takes): {fitted.seconds_per_unit * 1000:.3g} ms per "
        f"unit, {fitted.overhead_seconds:.1f} s outside the epochs besides the modelled report and end; fastest and "
        f"slowest run {min(r['rate'] for r in rows) * 1000:.3g} and {max(r['rate'] for r in rows) * 1000:.3g} ms per unit, "
        f"{max(0.0, min(r['overhead'] for r in rows)):.1f} and {max(r['overhead'] for r in rows):.1f} s outside.",
        "<!-- lab-text-estimate:end -->",
    ])
    write_section("lab-text-estimate", block)


def main(argv=None) -> int:
    """Measure (--save) or work out (--load) the text estimates."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--save", type=Path, help="measure, keeping the records in this file")
    mode.add_argument("--load", type=Path, help="work out the estimates of records measured before")
    mode.add_argument("--step-cost", action="store_true", help="only measure the cost model's constants")
    mode.add_argument("--cell-cost", action="store_true", help="only measure the recurrent cells' step factors")
    mode.add_argument("--ngram-cost", action="store_true", help="only measure the loading and n-gram constants")
    parser.add_argument("--runs", default=RUNS, help="with --save: slug:preset[:epochs[:field=value,...]] ...")
    parser.add_argument("--note", default="", help="with --load: the section's first paragraph (when, where, load)")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--refit", type=Path, help="with --step-cost: fit the cases printed before (a log)")
    args = parser.parse_args(argv)
    if args.refit:
        cases = [json.loads(ln) for ln in args.refit.read_text().splitlines() if ln.startswith('{"case"')]
        fit_step_cost([case_cost(c["case"], c["seconds_per_batch"]) for c in cases])
        return 0
    if args.cell_cost or args.ngram_cost:
        cell_cost() if args.cell_cost else ngram_cost()
        return 0
    if args.save or args.step_cost:
        collect(args.runs.split(), args.save) if args.save else step_cost()
        return 0
    rows, fitted = work_out(json.loads(args.load.read_text(encoding="utf-8")))
    for r in rows:
        print(json.dumps(r, ensure_ascii=False), flush=True)
    print(f"fitted: {fitted.seconds_per_unit:.4g} s per unit, {fitted.overhead_seconds:.1f} s overhead "
          f"(from {fitted.runs} runs); rates {statistics.median(r['rate'] for r in rows):.4g} median; "
          f"n-gram measured / modelled {statistics.median(r['ngram_measured_to_modelled'] for r in rows):.3g}, "
          f"METER_STEP_UNITS "
          f"{statistics.median(r['meter_step_units'] for r in rows if r['meter_step_units']):.3g} (medians)", flush=True)
    if not args.no_write:
        write_doc(rows, fitted, args.note)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
