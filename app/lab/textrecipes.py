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
    GATES,
    Boolean,
    LimitedEpochs,
    Limits,
    Number,
    WholeNumber,
    between,
    checked,
    payload_dataset,
    refusal,
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


def text_param_count(recipe: TextRecipe, vocab_size: int) -> int:
    """Parameters of the recipe's network for a vocabulary of `vocab_size` tokens: embedding,
    the stacked cells (Keras 3; GRU with two bias vectors), and the softmax layer (a projection
    to the embedding size first when tied, its weights then shared with the embedding; an untied
    recipe's own projection first when it has one)."""
    g = GATES[recipe.cell]
    params = vocab_size * recipe.embedding
    width = recipe.embedding
    for _ in range(recipe.layers):
        bias = 2 * g * recipe.units if recipe.cell == "gru" else g * recipe.units
        params += g * recipe.units * (width + recipe.units) + bias
        width = recipe.units
    if recipe.tied:
        params += width * recipe.embedding + recipe.embedding + vocab_size  # projection, then output bias
    else:
        if recipe.projection:
            params += width * recipe.projection + recipe.projection
            width = recipe.projection
        params += width * vocab_size + vocab_size
    return params


def validate_text(payload, limits: Limits, datasets: dict[str, TaskSpec] | None = None,
                  vocab_size: int | None = None, sequences: int | None = None) -> tuple[dict, dict]:
    """(recipe, settings) as plain dicts from a text-run payload (a named preset for a corpus of
    `sequences` training sequences), or InvalidInput (400): unknown data set or field, wrong
    type, out of range, over the parameter limit (when `vocab_size` is known)."""
    datasets = text_datasets() if datasets is None else datasets
    spec = payload_dataset(payload, datasets, TextSettings)
    payload = with_preset(payload, spec, limits, sequences)
    recipe = validate_text_recipe(payload.get("recipe"))
    settings = validate_text_settings(payload, limits)
    if vocab_size is not None:
        params = text_param_count(recipe, vocab_size)
        if params > limits.max_params:
            raise refusal("This recipe has %(params)s parameters; the limit is %(limit)s. "
                          "Use fewer units or layers.", params=f"{params:,}", limit=f"{limits.max_params:,}")
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
