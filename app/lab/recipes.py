"""What a lab-bench run may be: the recipe and settings a student chooses, their defaults and
limits, the presets, and what a recipe costs (parameters, estimated seconds) before it is queued.

Pure Python (no Flask at import, no TensorFlow): the web workers validate, count parameters and
estimate run time without loading Keras. `param_count` follows `training.build.make_recipe_model`
layer by layer; a test checks it against Keras's `count_params` for several recipes.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import statistics
import unicodedata
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Annotated, Literal

from flask import current_app
from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict,
                      ValidationError, ValidationInfo, field_validator)
from pydantic_core import PydanticCustomError

from app.errors import InvalidInput, Msgid
from app.instructor.datasets import list_datasets
from app.instructor.settings import limit_overrides
from app.splits import validation_count
from app.tasks import BUILTIN_TASKS, IMAGE, TaskSpec
from app.validation import field_bounds, field_choices, first_error

READINGS = ("rows", "rows_cols", "patches")
CELLS = ("lstm", "gru", "simple_rnn")
GATES = {"lstm": 4, "gru": 3, "simple_rnn": 1}  # weight blocks per cell (input, forget, cell, output...)
HEAD_UNITS = 32  # the seed notebook's Dense(32) between the recurrent layers and the classes
NICKNAME_MAX = 40

# Bounds of every field that are not a configurable limit (the limits below cap what a run costs).
RANGES = {
    "units": (4, 512),
    "layers": (1, 4),
    "dropout": (0.0, 0.8),
    "batch_size": (8, 1024),
    "learning_rate": (1e-5, 1.0),
    "seed": (0, 2**31 - 1),
    "subset": (100, 10**9),  # 0 (or empty) means the whole training set
    "epochs": (1, 10**6),
}


@dataclass(frozen=True)
class Recipe:
    """The network: how the image is read, which cell, how wide and deep."""

    reading: str = "rows"
    cell: str = "lstm"
    units: int = 64
    layers: int = 2
    bidirectional: bool = False
    dropout: float = 0.2


@dataclass(frozen=True)
class RunSettings:
    """How it is trained: epochs, batch size, peak learning rate, training subset (0: all), seed."""

    epochs: int = 3
    batch_size: int = 128
    learning_rate: float = 1e-3
    subset: int = 0
    seed: int = 1


@dataclass(frozen=True)
class Limits:
    """What one run and one browser may ask for (config `LAB_*`, then the instructor's settings)."""

    max_epochs: int = 30
    max_subset: int = 0  # 0: the whole training set is allowed
    max_params: int = 2_000_000
    max_seconds: int = 1800  # estimated training time of one run
    runs_per_browser: int = 2
    runs_per_client: int = 6
    queue_length: int = 40

    @classmethod
    def from_config(cls, config, overrides: dict | None = None) -> Limits:
        """Defaults, then `LAB_<FIELD>` from the environment, then from the app config (e.g.
        LAB_MAX_EPOCHS, or FLASK_LAB_MAX_EPOCHS), then `overrides` (the instructor's settings)."""
        values = {}
        for f in fields(cls):
            key = f"LAB_{f.name.upper()}"
            value = (overrides or {}).get(f.name, config.get(key, os.environ.get(key)))
            if value is not None and value != "":
                values[f.name] = int(value)
        return cls(**values)


def current_limits() -> Limits:
    """The limits in force for this app: its config, then the instructor console's stored settings."""
    return Limits.from_config(current_app.config, limit_overrides())


# ----------------------------------------------------------------------------- languages
def refusal(msgid: str, status: int = 400, **kw) -> InvalidInput:
    """InvalidInput with the English msgid (a `field` argument is a field's English name,
    translated too)."""
    return InvalidInput(msgid, status, **{k: Msgid(v) if k == "field" else v for k, v in kw.items()})


# ----------------------------------------------------------------------------- data sets
def available_datasets() -> dict[str, TaskSpec]:
    """The image data sets a run may use: the built-in ones, then any an instructor added."""
    out = {slug: spec for slug, spec in BUILTIN_TASKS.items() if spec.kind == IMAGE}
    for spec in list_datasets():  # every one an image data set
        out.setdefault(spec.slug, spec)
    return out


def training_size(spec: TaskSpec, models_dir: Path | None = None) -> int | None:
    """Images in the training set (before the validation hold-out), from the data set's record:
    the spec's `extra["counts"]`, else the shipped model card's counts; None when unknown."""
    counts = spec.extra.get("counts") if isinstance(spec.extra, dict) else None
    if not counts and models_dir is not None:
        try:
            card = json.loads((Path(models_dir) / spec.slug / "card.json").read_text(encoding="utf-8"))
            counts = (card.get("data") or {}).get("counts")
        except (OSError, ValueError):
            counts = None
    if not isinstance(counts, dict):
        return None
    train = counts.get("train")
    if not isinstance(train, int):
        return None
    return train + int(counts.get("validation") or 0)


# ----------------------------------------------------------------------------- presets
def shipped_recipe(spec: TaskSpec) -> tuple[Recipe, RunSettings]:
    """The recipe closest to the data set's shipped model (app/tasks.py): its reading order,
    units, stacked bidirectional LSTMs, epochs, batch size and learning rate."""
    model = spec.extra.get("model", {}) if isinstance(spec.extra, dict) else {}
    reading = {"rows_cols": "rows_cols", "renet": "patches"}.get(spec.architecture, "rows")
    recipe = Recipe(reading=reading, cell="lstm", units=int(model.get("units", 64)),
                    layers=2 if reading == "rows_cols" else 1, bidirectional=True, dropout=0.3)
    return recipe, RunSettings(epochs=spec.epochs, batch_size=spec.batch_size, learning_rate=spec.learning_rate)


PRESET_NAMES = ("lab", "shipped", "fast")


MIN_STEPS = 200  # optimiser steps a run needs before it can learn much (presets are scaled to reach it)
MIN_BATCHES = 8  # batches per epoch a preset's batch size leaves at least, on a small data set
MIN_CLASS_IMAGES = 10  # training images per class below which the bench warns


def preset(name: str, spec: TaskSpec, train_size: int | None = None,
           max_epochs: int = Limits.max_epochs) -> tuple[Recipe, RunSettings]:
    """A named preset for a data set: "lab" (the seed notebook's model, bugs fixed), "shipped"
    (the data set's shipped recipe) or "fast" (tuned for this machine: see docs/BENCHMARKS.md),
    scaled to the data set's `train_size` when it is known (`scale_settings`)."""
    if name == "lab":
        recipe, settings = Recipe("rows", "lstm", 64, 2, False, 0.2), RunSettings(epochs=3, batch_size=128,
                                                                                  learning_rate=1e-3)
    elif name == "shipped":
        recipe, settings = shipped_recipe(spec)
    elif name == "fast":
        recipe, settings = Recipe("rows", "lstm", 128, 1, False, 0.0), RunSettings(epochs=6, batch_size=128,
                                                                                   learning_rate=3e-3)
    else:
        raise refusal("Unknown preset '%(name)s'.", name=str(name)[:40])
    return recipe, scale_settings(settings, train_size, max_epochs)


def training_images(settings: RunSettings, train_size: int | None) -> int | None:
    """Images a run trains on: its subset (or the whole training set) less the validation hold-out."""
    total = settings.subset or train_size
    return None if not total else total - validation_count(total)


def optimiser_steps(settings: RunSettings, train_size: int | None) -> int | None:
    """Batches a run trains on in all its epochs (None when the training set size is unknown)."""
    images = training_images(settings, train_size)
    return None if images is None else settings.epochs * math.ceil(max(images, 1) / settings.batch_size)


def scale_settings(settings: RunSettings, train_size: int | None, max_epochs: int = Limits.max_epochs) -> RunSettings:
    """A preset's settings fitted to a small data set: the batch halved (down to the smallest
    allowed) until an epoch has MIN_BATCHES batches, then epochs added (up to `max_epochs`) until
    the run makes MIN_STEPS optimiser steps. Large data sets keep the preset as it is."""
    images = training_images(settings, train_size)
    if images is None:
        return settings
    batch = settings.batch_size
    while batch // 2 >= RANGES["batch_size"][0] and images / batch < MIN_BATCHES:
        batch //= 2
    per_epoch = math.ceil(max(images, 1) / batch)
    epochs = min(max(settings.epochs, math.ceil(MIN_STEPS / per_epoch)), max(settings.epochs, max_epochs))
    return RunSettings(epochs=epochs, batch_size=batch, learning_rate=settings.learning_rate,
                       subset=settings.subset, seed=settings.seed)


def learning_warnings(spec: TaskSpec, settings: RunSettings | dict, train_size: int | None) -> list[InvalidInput]:
    """Why a recipe may learn little on this data set (bilingual, not refusals): too few optimiser
    steps, or classes with only a handful of training images."""
    s = settings if isinstance(settings, RunSettings) else RunSettings(**settings)
    out = []
    steps = optimiser_steps(s, train_size)
    if steps is not None and steps < MIN_STEPS:
        out.append(InvalidInput("This run makes only %(steps)s optimiser steps (%(epochs)s epochs of %(batches)s "
                                "batches); with so few it may stay at chance. Use more epochs or a smaller batch "
                                "(at least %(min)s steps), or press a preset: presets scale with the data set.",
                                200, steps=steps, epochs=s.epochs, batches=steps // max(s.epochs, 1), min=MIN_STEPS))
    per_class = spec.extra.get("per_class_train") if isinstance(spec.extra, dict) else None
    if isinstance(per_class, dict):
        few = {c: n for c, n in per_class.items() if isinstance(n, int) and n < MIN_CLASS_IMAGES}
        if few:
            out.append(InvalidInput("Some classes have only a handful of training images (%(classes)s): the model "
                                    "can hardly learn them. Add pictures to them (at least %(min)s each).", 200,
                                    classes=", ".join(f"{c}: {n}" for c, n in sorted(few.items())),
                                    min=MIN_CLASS_IMAGES))
    return out


# ----------------------------------------------------------------------------- validation
FIELD_NAMES = {  # English msgids of the field names, used inside the refusals
    "reading": "reading order", "cell": "recurrent cell", "units": "units", "layers": "layers",
    "bidirectional": "bidirectional", "dropout": "dropout", "epochs": "epochs", "batch_size": "batch size",
    "learning_rate": "learning rate", "subset": "training subset", "seed": "random seed", "nickname": "nickname",
}
WHOLE_NUMBER_RE = re.compile(r"[+-]?[0-9]{1,18}")  # ASCII digits only, and short enough for int()
TRUE_WORDS, FALSE_WORDS = ("1", "true", "on", "yes"), ("0", "false", "off", "no", "")


def _whole_number(value):
    """Form text of ASCII digits, or an integral float, as an int; anything else goes on to the
    strict int check, which refuses booleans, fractions and other text."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and WHOLE_NUMBER_RE.fullmatch(value.strip()):
        return int(value.strip())
    return value


def _decimal(value):
    """Form text with a decimal point or comma as a float; anything else goes on to the strict
    float check, which refuses booleans, text, NaN, infinities and integers past float's range."""
    if isinstance(value, str):
        with contextlib.suppress(ValueError, OverflowError):
            return float(value.strip().replace(",", "."))
    return value


def _truth(value):
    """A checkbox's or a form's word for true or false (and 0 or 1) as a bool."""
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS + FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    if isinstance(value, int) and value in (0, 1):  # True and False too
        return bool(value)
    return value


WholeNumber = Annotated[int, Strict(), BeforeValidator(_whole_number)]
Number = Annotated[float, Strict(), AllowInfNan(False), BeforeValidator(_decimal)]
Boolean = Annotated[bool, Strict(), BeforeValidator(_truth)]


def between(key: str, ranges: dict = RANGES):
    """The Field constraint of a bounded field (its bounds from `ranges`)."""
    lo, hi = ranges[key]
    return Field(ge=lo, le=hi)


def within(value, lo, hi):
    """`value`, or the out-of-range error of bounds known only at validation time."""
    if not lo <= value <= hi:
        raise PydanticCustomError("out_of_range", "between {lo} and {hi}", {"lo": lo, "hi": hi})
    return value


def _epochs_within_limit(value: int, info: ValidationInfo) -> int:
    return within(value, 1, info.context["limits"].max_epochs)


LimitedEpochs = Annotated[WholeNumber, AfterValidator(_epochs_within_limit)]


class RecipeFields(BaseModel):
    """The recipe's schema: each field's type and bounds (the defaults are Recipe's)."""

    model_config = ConfigDict(extra="forbid")
    reading: Literal[READINGS]
    cell: Literal[CELLS]
    units: Annotated[WholeNumber, between("units")]
    layers: Annotated[WholeNumber, between("layers")]
    bidirectional: Boolean
    dropout: Annotated[Number, between("dropout")]


class SettingsFields(BaseModel):
    """The training settings' schema, in the order they are checked; the epochs' and the subset's
    upper bounds come from the validation context (the limits, the training set size)."""

    epochs: LimitedEpochs
    batch_size: Annotated[WholeNumber, between("batch_size")]
    learning_rate: Annotated[Number, between("learning_rate")]
    seed: Annotated[WholeNumber, between("seed")]
    subset: WholeNumber

    @field_validator("subset")
    @classmethod
    def _subset_within_limit(cls, value: int, info: ValidationInfo) -> int:
        limits, size = info.context["limits"], info.context["train_size"]
        if value:
            hi = min(x for x in (limits.max_subset or 10**9, size or 10**9, RANGES["subset"][1]))
            return within(value, RANGES["subset"][0], hi)
        if limits.max_subset and size and size > limits.max_subset:
            return limits.max_subset  # "all" means as many as the limit allows
        return value


def checked(schema: type[BaseModel], data: dict, names: dict, context: dict | None = None) -> dict:
    """`data` validated by `schema` as a plain dict, or InvalidInput (400) for its first error
    (an unknown field, a wrong type, a value out of range), naming the field by its msgid in `names`."""
    try:
        return schema.model_validate(data, context=context).model_dump()
    except ValidationError as exc:
        raise _refusal_of(first_error(exc), schema, names) from None


def _refusal_of(error: dict, schema: type[BaseModel], names: dict) -> InvalidInput:
    key, kind = str(error["loc"][0]), error["type"]
    if kind == "extra_forbidden":
        return refusal("Unknown recipe field: %(name)s.", name=key[:40])
    field = names.get(key, key)
    if kind == "literal_error":
        return refusal("%(field)s must be one of: %(choices)s.", field=field,
                       choices=", ".join(field_choices(schema, key)))
    if kind in ("greater_than_equal", "less_than_equal", "out_of_range"):
        lo, hi = (error["ctx"]["lo"], error["ctx"]["hi"]) if kind == "out_of_range" else field_bounds(schema, key)
        return refusal("%(field)s must be between %(lo)s and %(hi)s.", field=field, lo=f"{lo:g}", hi=f"{hi:g}")
    declared = schema.model_fields[key].annotation  # the msgids stay literal, for the catalogue's extractor
    if declared is int:
        return refusal("%(field)s must be a whole number.", field=field)
    if declared is float:
        return refusal("%(field)s must be a number.", field=field)
    return refusal("%(field)s must be true or false.", field=field)


def validate_recipe(raw) -> Recipe:
    """The recipe part of a payload, checked (missing keys take the defaults)."""
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise refusal("The recipe must be an object.")
    defaults = asdict(Recipe())
    given = {k: v for k, v in raw.items() if v is not None or k not in defaults}  # an unknown key is refused
    return Recipe(**checked(RecipeFields, defaults | given, FIELD_NAMES))


def validate_settings(raw: dict, limits: Limits, train_size: int | None = None) -> RunSettings:
    """The training settings of a payload, checked against the ranges and the limits."""
    d = asdict(RunSettings())
    d.update({k: raw[k] for k in d if raw.get(k) is not None and raw.get(k) != ""})
    return RunSettings(**checked(SettingsFields, d, FIELD_NAMES, {"limits": limits, "train_size": train_size}))


def validate_nickname(value) -> str:
    """A display name: printable, at most NICKNAME_MAX characters, never personal data we ask for."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise refusal("%(field)s must be text.", field=FIELD_NAMES["nickname"])
    value = unicodedata.normalize("NFC", " ".join(value.split()))
    if len(value) > NICKNAME_MAX:
        raise refusal("The nickname may have at most %(n)s characters.", n=NICKNAME_MAX)
    if any(unicodedata.category(ch).startswith("C") for ch in value):
        raise refusal("%(field)s must be text.", field=FIELD_NAMES["nickname"])
    return value


def payload_dataset(payload, datasets: dict[str, TaskSpec], settings_class) -> TaskSpec:
    """The data set a run payload names, after checking it is an object with known fields only
    (those of `settings_class` and the recipe, nickname, preset and check)."""
    if not isinstance(payload, dict):
        raise refusal("The request must be a JSON object.")
    slug = payload.get("dataset")
    if not isinstance(slug, str) or slug not in datasets:
        raise refusal("Unknown data set '%(name)s'. Choose one of: %(choices)s.", name=str(slug)[:40],
                      choices=", ".join(sorted(datasets)))
    allowed = {"dataset", "recipe", "nickname", "preset", "check"} | {f.name for f in fields(settings_class)}
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise refusal("Unknown field: %(name)s.", name=str(unknown[0])[:40])
    return datasets[slug]


def validate(payload, limits: Limits, datasets: dict[str, TaskSpec], throughput: Throughput | None = None,
             models_dir: Path | None = None) -> tuple[dict, dict]:
    """(recipe, settings) as plain dicts from an API payload or a form, or InvalidInput (400):
    unknown data set, unknown field, wrong type, out of range, over the parameter or time limit."""
    spec = payload_dataset(payload, datasets, RunSettings)
    recipe = validate_recipe(payload.get("recipe"))
    size = training_size(spec, models_dir)
    settings = validate_settings(payload, limits, size)
    check_params(param_count(spec, recipe), limits)
    if throughput is not None:
        check_time(estimate_seconds(spec, recipe, settings, throughput, size), limits)
    return asdict(recipe), asdict(settings)


def check_params(params: int, limits: Limits) -> None:
    """InvalidInput (400) when a recipe's `params` are over the limit."""
    if params > limits.max_params:
        raise refusal("This recipe has %(params)s parameters; the limit is %(limit)s. Use fewer units or layers.",
                      params=f"{params:,}", limit=f"{limits.max_params:,}")


def check_time(seconds: float | None, limits: Limits) -> None:
    """InvalidInput (400) when a run's estimated `seconds` are over the time limit (None: unknown, allowed)."""
    if seconds is not None and seconds > limits.max_seconds:
        raise refusal("This run would take about %(minutes)s minutes; the limit is %(limit)s minutes. "
                      "Use fewer epochs, a smaller subset or a smaller network.",
                      minutes=str(math.ceil(seconds / 60)), limit=str(max(1, limits.max_seconds // 60)))


# ----------------------------------------------------------------------------- cost
@dataclass(frozen=True)
class Layer:
    """One layer of a recipe's model: parameters, multiply-adds per image, sequential steps."""

    name: str
    params: int
    macs: int
    steps: float = 0  # time steps run one after another (a bidirectional layer runs two sweeps; text: a mean)
    cell: str = ""  # a recurrent layer's cell (its cost is CELL_COST times an LSTM's of the same size)


def rnn_layer(name: str, cell: str, inputs: int, units: int, bidirectional: bool, steps: float,
         sweeps: int = 1) -> tuple[Layer, int]:
    """One recurrent layer (Keras 3 cells; GRU with reset_after has two bias vectors) over `steps`
    steps, on `sweeps` sequences at once with shared weights; returns it and its output width."""
    g = GATES[cell]
    bias = 2 * g * units if cell == "gru" else g * units
    k = 2 if bidirectional else 1
    one = g * units * (inputs + units) + bias
    return Layer(name, k * one, k * sweeps * steps * g * units * (inputs + units), k * steps, cell), k * units


def layer_plan(spec: TaskSpec, recipe: Recipe | dict) -> list[Layer]:
    """The layers of `training.build.make_recipe_model` for this data set and recipe."""
    r = recipe if isinstance(recipe, Recipe) else Recipe(**recipe)
    h, w, c = spec.input_shape
    n_classes = len(spec.classes)
    plan: list[Layer] = []

    def stack(name: str, width: int, steps: int) -> int:
        for i in range(r.layers):
            layer, width = rnn_layer(f"{name}_{i + 1}", r.cell, width, r.units, r.bidirectional, steps)
            plan.append(layer)
        return width

    if r.reading == "rows":
        width = stack("rows", w * c, h)
    elif r.reading == "rows_cols":
        width = stack("rows", w * c, h) + stack("cols", h * c, w)
    else:  # patches: an 8×8 grid, one sweep along each row of patches and one down each column
        patch = max(1, min(h, w) // 8)
        gh, gw = h // patch, w // patch
        layer, width = rnn_layer("sweep_rows", r.cell, patch * patch * c, r.units, r.bidirectional, gw, sweeps=gh)
        plan.append(layer)
        layer, width = rnn_layer("sweep_cols", r.cell, width, r.units, r.bidirectional, gh, sweeps=gw)
        plan.append(layer)
        width = stack("read_rows", gw * width, gh)
    plan.append(Layer("dense", width * HEAD_UNITS + HEAD_UNITS, width * HEAD_UNITS))
    plan.append(Layer("probs", HEAD_UNITS * n_classes + n_classes, HEAD_UNITS * n_classes))
    return plan


def param_count(spec: TaskSpec, recipe: Recipe | dict) -> int:
    """Trainable parameters of the recipe's model for this data set (Keras's count_params)."""
    return sum(layer.params for layer in layer_plan(spec, recipe))


# A recurrent step of a batch costs a fixed part (launching the step's kernels) plus a part that
# grows with its multiply-adds; STEP_MACS is how many multiply-adds of one step cost as much as the
# fixed part on this kind of CPU (`python benchmarks/lab_presets.py --step-cost`; docs/BENCHMARKS.md).
STEP_MACS = 3.7e6
VALIDATION_BATCH = 512  # training.images evaluates in batches of 512
FORWARD_SHARE = 1 / 3  # a forward pass costs about a third of a training step (forward + backward)
# A recurrent layer's cost (its steps and multiply-adds) against an LSTM's with the same steps and
# multiply-adds: the cells' kernels do different work per gate (`python
# benchmarks/lab_text_estimate.py --cell-cost`, word models of each cell trained in turns;
# docs/BENCHMARKS.md, "Lab bench: text run-time estimate"). Image and text plans both use it.
CELL_COST = {"lstm": 1.0, "gru": 0.64, "simple_rnn": 0.37}


def plan_cost(plan: list[Layer], batch: int) -> float:
    """Cost of one training step of a layer plan on `batch` samples, in fixed step costs (the
    unit of throughput): each sequential step costs one, plus its multiply-adds, times its
    cell's CELL_COST."""
    cost = 0.0
    for layer in plan:
        if layer.steps:
            cost += CELL_COST.get(layer.cell, 1.0) * layer.steps * (1 + batch * layer.macs / layer.steps / STEP_MACS)
        else:
            cost += batch * layer.macs / STEP_MACS
    return cost


def batch_cost(spec: TaskSpec, recipe: Recipe | dict, batch: int) -> float:
    """Cost of one training step on `batch` images, in fixed step costs (the unit of throughput)."""
    return plan_cost(layer_plan(spec, recipe), batch)


@dataclass(frozen=True)
class Throughput:
    """Measured speed of this server's training: seconds per unit of cost, and the fixed
    seconds a run spends outside its epochs (start-up, data, test evaluation, export)."""

    seconds_per_unit: float
    overhead_seconds: float
    runs: int = 0  # finished runs it was measured from (0: the measured default)


@dataclass(frozen=True)
class RunCost:
    """What a run costs, in units: each epoch's timed part (training steps and validation, the
    history's seconds), what each epoch spends after it outside that timer (a text run's report
    of perplexities and sample lines) and what the run spends once after its last epoch (a text
    run's test evaluation, n-gram and meter rates)."""

    epoch: float
    between: float = 0.0
    end: float = 0.0

    def outside(self, epochs: int) -> float:
        """The units of `epochs` epochs spent outside the epochs' timer."""
        return epochs * self.between + self.end


def seconds_for(epochs: int, cost: RunCost, throughput: Throughput) -> float:
    """Seconds from start to finish of `epochs` epochs of `cost` at `throughput`."""
    units = epochs * cost.epoch + cost.outside(epochs)
    return units * throughput.seconds_per_unit + throughput.overhead_seconds


def epoch_cost(spec: TaskSpec, recipe: Recipe | dict, settings: RunSettings | dict, train_size: int | None) -> float | None:
    """Cost of one epoch: the training steps, plus a forward pass over the validation images."""
    s = settings if isinstance(settings, RunSettings) else RunSettings(**settings)
    total = s.subset or train_size
    if not total:
        return None
    val = validation_count(total)
    train_steps = math.ceil((total - val) / s.batch_size)
    val_steps = math.ceil(val / VALIDATION_BATCH)
    return train_steps * batch_cost(spec, recipe, s.batch_size) + \
        val_steps * batch_cost(spec, recipe, VALIDATION_BATCH) * FORWARD_SHARE


def estimate_seconds(spec: TaskSpec, recipe: Recipe | dict, settings: RunSettings | dict, throughput: Throughput,
                     train_size: int | None = None) -> float | None:
    """Seconds from start to finish of a run on this server at the measured throughput (None if
    the training set size is unknown)."""
    s = settings if isinstance(settings, RunSettings) else RunSettings(**settings)
    cost = epoch_cost(spec, recipe, s, train_size)
    return None if cost is None else seconds_for(s.epochs, RunCost(cost), throughput)


def image_cost(datasets: dict[str, TaskSpec], models_dir: Path | None = None):
    """`cost_of(run)` for `measure_throughput` over image runs: the RunCost of a run record
    (dict with dataset, recipe, settings), None when it is not of one of `datasets` or unknown."""
    def cost_of(run: dict) -> RunCost | None:
        spec = datasets.get(run.get("dataset"))
        if spec is None:
            return None
        cost = epoch_cost(spec, run["recipe"], run["settings"], training_size(spec, models_dir))
        return RunCost(cost) if cost else None

    return cost_of


def measure_throughput(runs, cost_of, default: Throughput, recent: int = 20) -> Throughput:
    """Median throughput and overhead of the latest finished runs (dicts with recipe, settings,
    history with per-epoch seconds, started_at, finished_at), each costed by `cost_of(run)` (a
    RunCost, or None to leave it out; `image_cost`, `textrecipes.text_cost`); `default` without any."""
    rates, overheads = [], []
    for run in list(runs)[:recent]:
        history = run.get("history") or []
        seconds = [e.get("seconds") for e in history if isinstance(e, dict)]
        if not seconds or not all(isinstance(x, (int, float)) and x > 0 for x in seconds):
            continue
        try:
            cost = cost_of(run)
        except (TypeError, KeyError, ValueError):
            continue
        if not cost or not cost.epoch:
            continue
        rate = sum(seconds) / (cost.epoch * len(seconds))
        rates.append(rate)
        started, finished = run.get("started_at"), run.get("finished_at")
        if started and finished:
            outside = (finished - started).total_seconds() - sum(seconds) - cost.outside(len(seconds)) * rate
            overheads.append(max(0.0, outside))
    if not rates:
        return default
    return Throughput(statistics.median(rates), statistics.median(overheads) if overheads else default.overhead_seconds,
                      len(rates))
