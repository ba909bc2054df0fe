"""What a lab-bench run on a text data set (kieu, nyt_headlines, an instructor's corpus) may be: the network and training
settings a student chooses, their bounds, the presets, and their validation.

Pure Python (no Flask at import, no TensorFlow), like `app.lab.recipes`, whose field types and
refusals it reuses so text and image recipes refuse in the same bilingual words. `model_kwargs` is the
seam to the training side: the keyword arguments of `training.build.make_word_lstm`.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict

from app.lab.recipes import (
    CELLS,
    FORWARD_SHARE,
    STEP_MACS,
    Boolean,
    Layer,
    LimitedEpochs,
    Limits,
    Number,
    RunCost,
    Throughput,
    WholeNumber,
    between,
    check_params,
    check_time,
    checked,
    payload_dataset,
    plan_cost,
    refusal,
    rnn_layer,
    seconds_for,
)
from app.instructor.corpora import list_corpora
from app.tasks import BUILTIN_TASKS, TEXT, TEXT_MODEL, TaskSpec
from app.text import DEFAULT_MIN_COUNT

# Bounds of every field; past them a payload is refused with a 400 before anything is queued.
TEXT_RANGES = {
    "embedding": (4, 512),
    "projection": (0, 512),  # 0: none
    "units": (4, 1024),
    "layers": (1, 3),
    "dropout": (0.0, 0.8),
    "sequence_length": (4, 512),  # tokens per training sequence
    "min_count": (1, 1000),  # tokens seen fewer times in the training split become <unk>
    "batch_size": (8, 1024),
    "learning_rate": (1e-5, 1.0),
    "seed": (0, 2**31 - 1),
}

# English msgids of the field names (translated inside the refusals).
TEXT_FIELD_NAMES = {
    "embedding": "embedding size", "projection": "projection size", "cell": "recurrent cell", "units": "units", "layers": "layers",
    "dropout": "dropout", "tied": "tied embeddings", "sequence_length": "sequence length",
    "min_count": "vocabulary cut-off", "epochs": "epochs", "batch_size": "batch size",
    "learning_rate": "learning rate", "seed": "random seed",
}


@dataclass(frozen=True)
class TextRecipe:
    """The network: embedding size, which cell, how wide and deep, dropout, tied input/output
    embeddings, the linear projection before the softmax (0: none; tied: the embedding size),
    training sequence length and the vocabulary cut-off (minimum count)."""

    embedding: int = 64
    cell: str = "lstm"
    units: int = 128
    layers: int = 1
    dropout: float = 0.2
    tied: bool = False
    projection: int = 0
    sequence_length: int = 64
    min_count: int = DEFAULT_MIN_COUNT


@dataclass(frozen=True)
class TextSettings:
    """How it is trained: epochs, batch size, peak learning rate, seed."""

    epochs: int = 5
    batch_size: int = 64
    learning_rate: float = 2e-3
    seed: int = 42


TEXT_PRESET_NAMES = ("lab", "shipped", "fast")
FAST_EPOCHS = 20
# The "fast" preset's optimiser steps at most: a large corpus gets fewer epochs, so the preset
# stays fast on a 2-core server (docs/BENCHMARKS.md, "Lab bench: text runs").
FAST_STEPS = 7000


def text_datasets() -> dict[str, TaskSpec]:
    """The text data sets a run may use: the built-in ones, then the corpora an instructor added."""
    out = {slug: spec for slug, spec in BUILTIN_TASKS.items() if spec.kind == TEXT}
    for spec in list_corpora():
        out.setdefault(spec.slug, spec)
    return out


def text_preset(name: str, spec: TaskSpec, sequences: int | None = None) -> tuple[TextRecipe, TextSettings]:
    """A named preset: "lab" (the seed notebook's §3 model, Embedding(10) → LSTM(100) →
    Dropout(0.1), trained on the whole training split rather than two headlines), "shipped"
    (the task's shipped model and settings, app/tasks.py: TEXT_MODEL under the task's own sizes;
    regularisers the bench has no field for, such as NYT's weight drop, are left out) or "fast"
    (small; FAST_EPOCHS epochs, fewer when an epoch of the corpus's `sequences` training
    sequences would take the run past FAST_STEPS optimiser steps)."""
    if name == "lab":
        return (TextRecipe(embedding=10, cell="lstm", units=100, layers=1, dropout=0.1, tied=False),
                TextSettings(epochs=10, batch_size=64, learning_rate=1e-3))
    if name == "shipped":
        model = TEXT_MODEL | (spec.extra.get("model", {}) if isinstance(spec.extra, dict) else {})
        tied = bool(model.get("tied", False))
        return (TextRecipe(embedding=int(model["embedding"]), cell="lstm", units=int(model["units"]), layers=1,
                           dropout=float(model["dropout"]), tied=tied,
                           projection=0 if tied else int(model.get("projection", 0))),
                TextSettings(epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate))
    if name == "fast":
        # Small batches: a Kiều epoch is only a few hundred verse blocks, so a large batch leaves
        # too few optimiser steps (docs/BENCHMARKS.md, "Lab bench: text runs").
        steps = math.ceil(sequences / 16) if sequences else 1
        return (TextRecipe(embedding=64, cell="lstm", units=128, layers=1, dropout=0.3, tied=True),
                TextSettings(epochs=max(1, min(FAST_EPOCHS, FAST_STEPS // steps)), batch_size=16, learning_rate=3e-3))
    raise refusal("Unknown preset '%(name)s'.", name=str(name)[:40])


class TextRecipeFields(BaseModel):
    """The text recipe's schema: each field's type and bounds (the defaults are TextRecipe's)."""

    model_config = ConfigDict(extra="forbid")
    embedding: Annotated[WholeNumber, between("embedding", TEXT_RANGES)]
    projection: Annotated[WholeNumber, between("projection", TEXT_RANGES)]
    cell: Literal[CELLS]
    units: Annotated[WholeNumber, between("units", TEXT_RANGES)]
    layers: Annotated[WholeNumber, between("layers", TEXT_RANGES)]
    dropout: Annotated[Number, between("dropout", TEXT_RANGES)]
    tied: Boolean
    sequence_length: Annotated[WholeNumber, between("sequence_length", TEXT_RANGES)]
    min_count: Annotated[WholeNumber, between("min_count", TEXT_RANGES)]


class TextSettingsFields(BaseModel):
    """The text training settings' schema (the epochs' upper bound is the limits', from the context)."""

    epochs: LimitedEpochs
    batch_size: Annotated[WholeNumber, between("batch_size", TEXT_RANGES)]
    learning_rate: Annotated[Number, between("learning_rate", TEXT_RANGES)]
    seed: Annotated[WholeNumber, between("seed", TEXT_RANGES)]


def validate_text_recipe(raw) -> TextRecipe:
    """The recipe part of a text payload, checked (missing or empty keys take the defaults)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise refusal("The recipe must be an object.")
    defaults = asdict(TextRecipe())
    given = {k: v for k, v in raw.items() if k not in defaults or (v is not None and v != "")}  # unknown: refused
    return TextRecipe(**checked(TextRecipeFields, defaults | given, TEXT_FIELD_NAMES))


def validate_text_settings(raw: dict, limits: Limits) -> TextSettings:
    """The training settings of a text payload, checked against the ranges and the limits."""
    d = asdict(TextSettings())
    d.update({k: raw[k] for k in d if raw.get(k) is not None and raw.get(k) != ""})
    return TextSettings(**checked(TextSettingsFields, d, TEXT_FIELD_NAMES, {"limits": limits}))


def limited_preset(name: str, spec: TaskSpec, limits: Limits,
                   sequences: int | None = None) -> tuple[TextRecipe, TextSettings]:
    """`text_preset` with its epochs cut to this server's limit."""
    recipe, settings = text_preset(name, spec, sequences)
    return recipe, replace(settings, epochs=min(settings.epochs, limits.max_epochs))


def with_preset(payload: dict, spec: TaskSpec, limits: Limits, sequences: int | None = None) -> dict:
    """The payload over its named preset ("preset": "fast"), its own fields winning; unchanged
    without one (unknown preset: 400)."""
    name = payload.get("preset")
    if name in (None, ""):
        return payload
    recipe, settings = limited_preset(str(name), spec, limits, sequences)
    raw = payload.get("recipe")
    merged = {**asdict(recipe), **raw} if isinstance(raw, dict) else asdict(recipe) if raw is None else raw
    return {**asdict(settings), **{k: v for k, v in payload.items() if k != "preset"}, "recipe": merged}


def text_plan(recipe: TextRecipe, vocab_size: int, steps: float = 1) -> list[Layer]:
    """The layers of `training.build.make_word_lstm` for a recipe and a vocabulary of `vocab_size`
    tokens, over sequences of `steps` tokens: the embedding (a lookup, no multiply-adds), the
    stacked cells (Keras 3; GRU with two bias vectors), then the softmax layer (a projection to
    the embedding size first when tied, its weights then shared with the embedding; an untied
    recipe's own projection first when it has one)."""
    plan = [Layer("embedding", vocab_size * recipe.embedding, 0)]
    width = recipe.embedding
    for i in range(recipe.layers):
        layer, width = rnn_layer(f"{recipe.cell}_{i + 1}", recipe.cell, width, recipe.units, False, steps)
        plan.append(layer)
    out = recipe.embedding if recipe.tied else recipe.projection
    if out:
        plan.append(Layer("projection", width * out + out, steps * width * out))
        width = out
    weights = 0 if recipe.tied else width * vocab_size  # tied: the embedding's own
    plan.append(Layer("softmax", weights + vocab_size, steps * width * vocab_size))
    return plan


def text_param_count(recipe: TextRecipe, vocab_size: int) -> int:
    """Parameters of the recipe's network for a vocabulary of `vocab_size` tokens (`text_plan`)."""
    return sum(layer.params for layer in text_plan(recipe, vocab_size))


def validate_text(payload, limits: Limits, datasets: dict[str, TaskSpec] | None = None,
                  vocab_size: int | None = None, sequences: int | None = None,
                  figures: TextFigures | None = None, throughput: Throughput | None = None) -> tuple[dict, dict]:
    """(recipe, settings) as plain dicts from a text-run payload (a named preset for a corpus of
    `sequences` training sequences), or InvalidInput (400): unknown data set or field, wrong
    type, out of range, over the parameter limit (when `vocab_size` is known), over the time
    limit (when the data set's `figures` and a `throughput` are given)."""
    datasets = text_datasets() if datasets is None else datasets
    spec = payload_dataset(payload, datasets, TextSettings)
    payload = with_preset(payload, spec, limits, sequences)
    recipe = validate_text_recipe(payload.get("recipe"))
    settings = validate_text_settings(payload, limits)
    if vocab_size is not None:
        check_params(text_param_count(recipe, vocab_size), limits)
    if figures is not None and throughput is not None:
        check_time(text_estimate_seconds(recipe, settings, figures, throughput), limits)
    return asdict(recipe), asdict(settings)


def model_kwargs(recipe: TextRecipe | dict) -> dict:
    """The keyword arguments of `training.build.make_word_lstm` for a recipe (a tied recipe
    projects to the embedding size, as the shipped tied model does, an untied one to its own
    projection size or not at all; a one-layer LSTM's are those of the shipped models, without
    cell and depth)."""
    r = recipe if isinstance(recipe, TextRecipe) else TextRecipe(**recipe)
    kw = {"embedding": r.embedding, "units": r.units, "dropout": r.dropout,
          "projection": r.embedding if r.tied else r.projection, "tied": r.tied}
    if r.cell != "lstm" or r.layers != 1:
        kw |= {"cell": r.cell, "rnn_layers": r.layers}
    return kw


def training_argv(slug: str, recipe: TextRecipe | dict, settings: TextSettings | dict) -> list[str]:
    """The command line of `python -m training <slug>` that trains this recipe with these settings
    (the bench's queue job parses it with the same parser; a code export can print it)."""
    r = recipe if isinstance(recipe, TextRecipe) else TextRecipe(**recipe)
    s = settings if isinstance(settings, TextSettings) else TextSettings(**settings)
    return [slug, "--epochs", str(s.epochs), "--batch-size", str(s.batch_size),
            "--learning-rate", repr(float(s.learning_rate)), "--seed", str(s.seed),
            "--min-count", str(r.min_count), "--sequence-length", str(r.sequence_length),
            "--model-kwargs", json.dumps(model_kwargs(r), sort_keys=True)]


def vocabulary_size(spec: TaskSpec, models_dir) -> int | None:
    """The vocabulary size of the task's shipped model (its card), the estimate a recipe's
    parameter count is checked with before the run builds its own (an instructor's corpus: its
    vocabulary at the default cut-off, from its record); None without either."""
    if isinstance(spec.extra, dict) and spec.extra.get("vocabulary_size"):
        return int(spec.extra["vocabulary_size"])
    return _shipped_figure(spec, models_dir, lambda card: int(card["vocabulary"]["size"]))


def training_sequences(spec: TaskSpec, models_dir) -> int | None:
    """The sequences a text run trains on (training split plus any auxiliary text): an
    instructor's corpus's training lines from its record, else the shipped model's card's counts;
    None without either."""
    counts = spec.extra.get("counts") if isinstance(spec.extra, dict) else None
    if counts:
        return int(counts["train"])
    return _shipped_figure(spec, models_dir, lambda card: int(card["data"]["counts"]["train"])
                           + int((card["data"]["counts"].get("auxiliary") or {}).get("sequences", 0)))


def _shipped_figure(spec: TaskSpec, models_dir, read) -> int | None:
    """`read(card)` of the task's shipped card.json; None without a card or the figure."""
    try:
        return read(json.loads((Path(models_dir) / spec.slug / "card.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


# ----------------------------------------------------------------------------- cost
# Mirrors of what `training.textgen` and `training.textsamples` do in each epoch (a test checks
# them against those modules): validation batches, the report's batches and training sequences,
# and its sample lines (two seeds at two temperatures, one forward pass per token sampled).
VALIDATION_BATCH = 256
REPORT_BATCH = 128
REPORT_SEQUENCES = 1000
SAMPLE_ROWS = 4
SAMPLE_TOKENS = 40
# Costs of a training step that do not grow with its time steps, in the multiply-adds of
# STEP_MACS (`python benchmarks/lab_text_estimate.py --step-cost`; docs/BENCHMARKS.md): a fixed
# part per batch (the step's launch, padding the batch) and a part per parameter (the AdamW
# update; with the task's weight average, also its update after every batch).
BATCH_MACS = 5.6e7
PARAM_MACS = 150.0
AVERAGE_PARAM_MACS = 90.0
# Outside the epochs (`python benchmarks/lab_text_estimate.py --ngram-cost`, timed between batches
# of a reference model in the same process, then scaled to finished runs' own n-gram seconds,
# `--load`): loading the text, in units per token of the corpus, and the n-gram baseline
# (`training.ngram.ngram_baseline`, whose grid of orders and discounts these mirror: one model
# fitted per grid point and text, each scored on validation with a whole-vocabulary
# distribution per token and order level), in units per token counted per order and per token
# scored per order per vocabulary entry. After the last epoch
# (`--load`, from finished runs' own figures): the verse meter rates' sampling, in units per
# sampled syllable per single-row step of the model.
NGRAM_ORDERS = (2, 3, 4)
NGRAM_DISCOUNTS = (0.6, 0.75, 0.9, 1.0)
LOAD_TOKEN_UNITS = 0.0077
NGRAM_FIT_UNITS = 0.0068
NGRAM_SCORE_UNITS = 4.5e-6
METER_TOKENS = 2 * 200 * 16  # constrained and free, 200 couplets each (training.meter), 16 tokens a couplet
METER_STEP_UNITS = 0.41


@dataclass(frozen=True)
class TextFigures:
    """What a text run's cost depends on besides its recipe: the training text as (sequences,
    tokens) per part (the training split, then any auxiliary text), the validation split's,
    the vocabulary size, whether the task averages its weights after every batch and whether it
    is verse."""

    parts: tuple[tuple[int, int], ...]
    validation: tuple[int, int]
    vocabulary: int
    weight_average: bool = False
    verse: bool = False  # syllables: the run ends with the meter rates

    @property
    def report(self) -> tuple[int, int]:
        """(sequences, tokens) of the training split the per-epoch report measures."""
        n, k = self.parts[0]
        shown = min(n, REPORT_SEQUENCES)
        return shown, round(k * shown / n)


def text_figures(spec: TaskSpec, models_dir) -> TextFigures | None:
    """The cost figures of a text data set: an instructor's corpus's from its record (lines and
    tokens per split, vocabulary), a built-in task's from its shipped card's counts; None when
    they are not known."""
    extra = spec.extra if isinstance(spec.extra, dict) else {}
    average, verse = bool(extra.get("weight_average")), spec.tokenizer == "syllables"
    vocab = vocabulary_size(spec, models_dir)
    if extra.get("counts"):
        counts, tokens = extra["counts"], extra.get("tokens") or {}
        if not vocab or not tokens.get("train") or not tokens.get("validation"):
            return None
        return TextFigures(((int(counts["train"]), int(tokens["train"])),),
                           (int(counts["val"]), int(tokens["validation"])), vocab, average, verse)

    def read(card: dict) -> TextFigures:
        c = card["data"]["counts"]
        train = (int(c["train"]), int(c["train_tokens"]))
        aux = c.get("auxiliary") or {}
        parts = (train, (int(aux["sequences"]), int(aux["tokens"]))) if aux.get("sequences") else (train,)
        val_tokens = c.get("validation_tokens") or round(train[1] * int(c["validation"]) / train[0])
        return TextFigures(parts, (int(c["validation"]), int(val_tokens)), int(card["vocabulary"]["size"]), average,
                           verse)

    return _shipped_figure(spec, models_dir, read) if vocab else None


def text_run_cost(recipe: TextRecipe | dict, settings: TextSettings | dict, figures: TextFigures) -> RunCost:
    """The cost of a text run (`recipes.plan_cost` units). Each epoch: its training sequences cut
    at the recipe's sequence length and batched by length (a batch runs as many steps as its
    sequences' tokens), each batch's fixed and per-parameter part, the validation forward pass
    (twice with a weight average: Keras's and the averaged weights'); between epochs, the
    report: a forward pass over up to REPORT_SEQUENCES training and every validation sequence,
    and SAMPLE_TOKENS forward passes of the sample rows. At the end: the test and validation
    forward passes, loading the corpus, the n-gram's grid (`ngram_units`), and for verse the
    meter rates' sampling."""
    r = recipe if isinstance(recipe, TextRecipe) else TextRecipe(**recipe)
    s = settings if isinstance(settings, TextSettings) else TextSettings(**settings)
    vocab = figures.vocabulary
    params = text_param_count(r, vocab)
    per_batch = (BATCH_MACS + params * (PARAM_MACS + (AVERAGE_PARAM_MACS if figures.weight_average else 0))) / STEP_MACS
    train = 0.0
    for n, k in figures.parts:
        pieces = n * math.ceil(k / n / r.sequence_length) if n else 0
        if pieces:
            batches = pieces / s.batch_size
            train += batches * plan_cost(text_plan(r, vocab, k / pieces), s.batch_size) + math.ceil(batches) * per_batch

    def forward(sequences: int, tokens: int, batch: int) -> float:
        if not sequences:
            return 0.0
        return math.ceil(sequences / batch) * plan_cost(text_plan(r, vocab, tokens / sequences), batch) * FORWARD_SHARE

    val = forward(*figures.validation, VALIDATION_BATCH) * (2 if figures.weight_average else 1)
    samples = SAMPLE_TOKENS * forward(SAMPLE_ROWS, SAMPLE_ROWS * SAMPLE_TOKENS, SAMPLE_ROWS)
    report = forward(*figures.report, REPORT_BATCH) + forward(*figures.validation, REPORT_BATCH) + samples
    corpus = sum(k for _, k in figures.parts) + 2 * figures.validation[1]  # the test split: as large as validation
    end = 2 * forward(*figures.validation, 64) + LOAD_TOKEN_UNITS * corpus + ngram_units(figures)
    if figures.verse:  # the meter rates, sampled through the served step of any cell
        end += METER_TOKENS * METER_STEP_UNITS * plan_cost(text_plan(r, vocab, 1), 1)
    return RunCost(train + val, report, end)


def ngram_work(figures: TextFigures) -> tuple[int, int]:
    """The n-gram baseline's work as (tokens counted × order, tokens scored × order × vocabulary):
    a model of each order and discount fitted on the training split (and again with any
    auxiliary text), each scored on the validation split, then the best refitted (at most the
    highest order on the most text) and scored on the test split (as large as validation)."""
    head = figures.parts[0][1]
    texts = (head, sum(k for _, k in figures.parts)) if len(figures.parts) > 1 else (head,)
    grid = len(NGRAM_DISCOUNTS) * sum(NGRAM_ORDERS)  # token-orders per token, over the grid
    fitted = sum(texts) * grid + max(texts) * max(NGRAM_ORDERS)
    scored = figures.validation[1] * figures.vocabulary * (len(texts) * grid + max(NGRAM_ORDERS))
    return fitted, scored


def ngram_units(figures: TextFigures) -> float:
    """The n-gram baseline's cost in units (`ngram_work` at NGRAM_FIT_UNITS and NGRAM_SCORE_UNITS)."""
    fitted, scored = ngram_work(figures)
    return NGRAM_FIT_UNITS * fitted + NGRAM_SCORE_UNITS * scored


def text_estimate_seconds(recipe: TextRecipe | dict, settings: TextSettings | dict, figures: TextFigures,
                          throughput: Throughput) -> float:
    """Seconds from start to finish of a text run at `throughput`, all its epochs run (early
    stopping may end it sooner)."""
    s = settings if isinstance(settings, TextSettings) else TextSettings(**settings)
    return seconds_for(s.epochs, text_run_cost(recipe, s, figures), throughput)


def text_cost(datasets: dict[str, TaskSpec], models_dir):
    """`cost_of(run)` for `recipes.measure_throughput` over text runs: a run record's RunCost
    (dict with dataset, recipe, settings), None when it is not on one of `datasets` or the data
    set's figures are unknown."""
    known: dict[str, TextFigures | None] = {}

    def cost_of(run: dict) -> RunCost | None:
        slug = run.get("dataset")
        if slug not in datasets:
            return None
        if slug not in known:
            known[slug] = text_figures(datasets[slug], models_dir)
        figures = known[slug]
        if figures is None:
            return None
        return text_run_cost({**asdict(TextRecipe()), **(run["recipe"] or {})},
                             {**asdict(TextSettings()), **(run["settings"] or {})}, figures)

    return cost_of
