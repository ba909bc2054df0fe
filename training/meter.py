"""The meter of generated Kiều verse: how often constrained and free sampling keep lục bát's
length, tones and rhymes, against the poem itself; measured at the end of a verse run and again
by `python -m training meter kieu` (which rewrites only the card's metrics.meter)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import numpy as np

from app.cards import Card
from app.decoding import EXACT_RHYME_BONUS, generate, validate_request
from app.tasks import TaskSpec, get_task
from app.text import check_verse, clean_words, couplet_pass_rates, rhyme_shares, rhymes
from app.textmodel import load_text_model
from training import fit
from training.textdata import TextData, load_text_data

METER_COUPLETS = 200


def meter_rates(folder: Path, spec: TaskSpec, data: TextData, seed: int, couplets: int = METER_COUPLETS) -> dict:
    """Pass rates of length, tone and rhyme, and the shares of exact and near rhymes: constrained
    vs unconstrained sampling vs the poem; plus the first constrained verses with their checks."""
    model = load_text_model(folder, spec)
    per_seed = 10
    seeds = data.test_lines[::2] or ["Trăm năm trong cõi người ta"]
    out = {}
    for name, meter in (("constrained", True), ("unconstrained", False)):
        checks_all, relaxed, secs, toks = [], 0, 0.0, 0
        for k, made in enumerate(range(0, couplets, per_seed)):
            n = min(per_seed, couplets - made)
            req = validate_request(spec, {"seed": seeds[k % len(seeds)], "length": n, "strategy": "top_p",
                                          "random_seed": seed + k, "meter": meter})
            res = generate(model, req)
            lines = res["lines"]
            if meter and k == 0:  # shown on the card: the seed's couplet and 3 generated ones
                out["examples"] = [{"line": ln, "check": c} for ln, c in zip(lines[:8], check_verse(lines[:8]))]
            checks_all.extend(check_verse(lines)[2:])  # the seed's couplet is not generated
            relaxed += sum(len(c.get("relaxed", [])) for c in res["checks"][2:])
            secs += res["seconds"]
            toks += res["tokens"]
        rates = couplet_pass_rates(checks_all)
        rates.update(relaxed_positions=relaxed, syllables_per_second=round(toks / max(secs, 1e-9)),
                     rhymes=rhyme_shares(checks_all))
        out[name] = rates
    real = check_verse(data.all_lines)
    out["real_poem_all"] = couplet_pass_rates(real) | {"rhymes": rhyme_shares(real)}
    first = check_verse(data.all_lines[: 2 * couplets])
    out["real_poem_first_200"] = couplet_pass_rates(first) | {"rhymes": rhyme_shares(first)}
    words = [clean_words(ln) for ln in data.all_lines]
    sixth = [w[5] for w in words if len(w) >= 6]
    pairs = np.random.default_rng(seed).integers(0, len(sixth), size=(2, 20000))
    out["random_syllable_pairs_rhyme"] = float(np.mean([rhymes(sixth[a], sixth[b]) for a, b in pairs.T]))
    out["sampling"] = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8,
                       "seeds": "first line of test couplets, 10 couplets per seed",
                       "exact_rhyme_bonus": EXACT_RHYME_BONUS}
    goal = out["real_poem_all"]["rhymes"]
    mine = out["constrained"]["rhymes"]
    out["exact_rhymes_at_least_poem"] = all(mine[k]["exact"] >= goal[k]["exact"] for k in ("luc6_bat6", "bat8_luc6"))
    return out


def measure_meter(spec: TaskSpec, data_arg, models_dir: Path, couplets: int = METER_COUPLETS) -> dict:
    """Re-measure a shipped verse model's meter rates (`meter_rates`, with the current decoder and
    checker) and write them into its card's metrics.meter, with the command and time; the model
    is not touched. Returns the new rates."""
    folder = Path(models_dir) / spec.slug
    card = Card.from_json(folder)
    seed = card.training.seed if card.training and card.training.seed is not None else 42
    data = load_text_data(spec, data_arg, seed, bool(card.training and card.training.quick))
    meter = meter_rates(folder, spec, data, seed, couplets)
    meter["measured"] = {"command": fit.command_line(), "git_commit": fit.git_commit(),
                         "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    card.metrics.meter = meter
    card.write(folder)
    return meter


def main(args) -> int:
    """`python -m training meter kieu` (options from `training.cli.meter_parser`): `measure_meter`
    for a shipped verse model; returns the exit code."""
    folder = Path(args.models_dir) / args.slug
    try:
        spec = get_task(args.slug, Path(args.models_dir))
    except KeyError:
        spec = None
    if spec is None or spec.tokenizer != "syllables":
        print(f"error: {args.slug!r} is not a verse task (the meter applies to kieu)", file=sys.stderr)
        return 2
    if not (folder / "card.json").is_file() or not (folder / "model.keras").is_file():
        print(f"error: no trained model at {folder}; run: python -m training {args.slug}", file=sys.stderr)
        return 2
    meter = measure_meter(spec, args.data, Path(args.models_dir), args.couplets)
    print(json.dumps({k: meter[k] for k in ("constrained", "real_poem_all", "exact_rhymes_at_least_poem")},
                     ensure_ascii=False, indent=1))
    return 0

