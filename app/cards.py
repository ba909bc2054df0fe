"""The model card (`card.json`): one schema every writer and reader goes through. `Card.from_json`
checks a card field by field with pydantic (`CardError` names each bad field), unknown keys are kept, and
older card versions are upgraded on reading.
Details: docs/DESIGN.md, "Model cards (app/cards.py)"."""

from __future__ import annotations

import json
import os
import re
from functools import cache
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator
from pydantic.functional_validators import PlainValidator
from pydantic_core import PydanticCustomError

from app.tasks import TaskSpec

CARD_VERSION = 1
CARD_FILE = "card.json"


class CardError(ValueError):
    """A card that does not fit the schema; `problems` is a list of (field path, what is wrong)."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("card.json: " + "; ".join(f"{name} {what}" for name, what in problems))

    @property
    def fields(self) -> list[str]:
        """The dotted names of the fields at fault."""
        return [name for name, _ in self.problems]


# The JSON kinds a problem names, by pydantic error type.
KINDS = {"int_type": "a whole number", "float_type": "a number", "string_type": "a string", "bool_type": "true/false",
         "dict_type": "an object", "model_type": "an object", "model_attributes_type": "an object",
         "list_type": "a list"}
SIMPLE = {str: "a string", bool: "true/false", int: "a whole number", float: "a number", dict: "an object",
          list: "a list"}


def _json_type(value) -> str:
    return "null" if value is None else SIMPLE.get(type(value), type(value).__name__)


def _number(value):
    """A JSON number kept as read (an int stays an int, so a card's text round-trips); not true/false."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    raise PydanticCustomError("float_type", "Input should be a valid number")


Number = Annotated[float, PlainValidator(_number, json_schema_input_type=float)]


class Part(BaseModel):
    """One block of a card: its named fields, typed and checked by pydantic (strict: no "3" for 3,
    no true for 1), and `extra` for every other key and every named one read as null, kept as
    read and written back in their order."""

    model_config = ConfigDict(strict=True, extra="ignore", populate_by_name=True, protected_namespaces=())
    _extra: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="wrap")
    @classmethod
    def _keep_the_rest(cls, data, handler):
        part = handler(data)
        if isinstance(data, dict):
            named = _json_keys(cls)
            part._extra = {k: v for k, v in data.items() if k not in named or v is None}
        return part

    @property
    def extra(self) -> dict:
        """The keys the schema does not name, and named ones read as null, as read."""
        return self._extra

    @classmethod
    def parse(cls, data: Any, where: str = ""):
        """The block `data` as `cls`; CardError naming every field that is missing or of the wrong
        type (dotted paths under `where`, e.g. "metrics.served.")."""
        if not isinstance(data, dict):
            raise CardError([(where.rstrip(".") or "card", f"must be an object, not {_json_type(data)}")])
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise CardError([_problem(where, e) for e in exc.errors()]) from None

    def to_json(self) -> dict:
        """The block as JSON-ready dict: named fields in schema order (unset ones left out), then
        the extra keys as read."""
        out = {}
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if value is not None:
                out[info.alias or name] = value.to_json() if isinstance(value, Part) else value
        for key, value in self._extra.items():
            out.setdefault(key, value)
        return out


@cache
def _json_keys(cls) -> frozenset:
    """The JSON keys a block's schema names (aliases such as "from" included)."""
    return frozenset(info.alias or name for name, info in cls.model_fields.items())


def _problem(where: str, error: dict) -> tuple[str, str]:
    """(dotted field path, what is wrong) of one pydantic error."""
    path = where + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error["loc"]).lstrip(".")
    if error["type"] == "missing":
        return path, "is missing"
    kind = KINDS.get(error["type"])
    return path, f"must be {kind}, not {_json_type(error['input'])}" if kind else error["msg"]


# ----------------------------------------------------------------------------- the blocks
class Input(Part):
    """What an image model reads: shape, colour, preprocessing (image tasks only)."""

    shape: list[int] | None = None
    colour: str | None = None
    dtype: str | None = None
    preprocess: str | None = None
    resize: str | None = None
    aspect_ratio_kept: bool | None = None
    time_steps: int | None = None
    features_per_step: int | None = None


class Training(Part):
    """How the run went: epochs, time, seed, early stopping."""

    epochs_requested: int | None = None
    epochs_run: int | None = None
    seconds_per_epoch: list[Number] | None = None
    seconds_total: Number | None = None
    seed: int | None = None
    quick: bool | None = None
    subset: int | None = None
    untrained: bool | None = None  # a test fixture's card
    augmentation: dict | None = None
    balance: dict | None = None  # group-balanced loss weights (training.groups.balance_weights)
    distillation: dict | None = None  # teachers and their figures (training.distill.teacher_targets)
    early_stopping: dict | None = None


class Data(Part):
    """Where the data came from and how it was split and counted."""

    source: str | None = None
    path: str | None = None
    licence: str | None = None
    counts: dict | None = None
    class_counts_train: list[int] | None = None
    class_imbalance: dict | None = None
    split: Any = None  # a sentence (text tasks) or the folder split's record
    skipped_files: dict | None = None
    tokenizer: str | None = None


class Served(Part):
    """The test set uploaded as a user would send it, through the app's own path."""

    count: int
    correct: int
    refused: int | None = None
    input: str | None = None
    engine: str | None = None
    precision: str | None = None
    model_sha256: str | None = None
    command: str | None = None
    accuracy_by_race: dict | None = None
    accuracy_by_age: dict | None = None
    race_gap: dict | None = None


class Metrics(Part):
    """Held-out figures: accuracy (image) or perplexity (text), served accuracy, breakdowns."""

    test_accuracy: Number | None = None
    test_top5_accuracy: Number | None = None
    test_count: int | None = None
    served_accuracy: Number | None = None
    served_count: int | None = None
    served: Served | None = None
    per_class_accuracy: list[Number] | None = None
    confusion_matrix: list[list] | None = None
    accuracy_by_race: dict | None = None
    accuracy_by_age: dict | None = None
    race_gap: dict | None = None
    test_perplexity: Number | None = None
    test_top1_accuracy: Number | None = None
    test_tokens: int | None = None
    test_unk_rate: Number | None = None
    validation_perplexity: Number | None = None
    validation_top1_accuracy: Number | None = None
    ngram: dict | None = None
    perplexity_below_ngram: Number | None = None
    goal_perplexity_10pct_below_ngram: bool | None = None
    meter: dict | None = None

    def record_served(self, served: dict) -> None:
        """Set the served figures from a `Served` block's dict."""
        self.served = Served.parse(served, "metrics.served.")
        self.served_accuracy, self.served_count = served["correct"] / served["count"], served["count"]


class Baseline(Part):
    """The lab's original recipe, trained in the same run on the same data."""

    recipe: str | None = None
    epochs: int | None = None
    optimizer: str | None = None
    params: int | None = None
    test_accuracy: Number | None = None
    seconds: Number | None = None


class WarmStart(Part):
    """The runs this one continued (--init-from): enough to retrace every epoch."""

    source: str | None = Field(default=None, alias="from")
    previous_runs: list[dict] = Field(default_factory=list)
    epochs_total: int | None = None


class Int8(Part):
    """The int8 export's acceptance check against float32 on the labelled test set."""

    accepted: bool
    rule: str | None = None
    why: str | None = None  # when it was not made
    test_count: int | None = None
    test_accuracy: Number | None = None
    float_test_accuracy: Number | None = None
    agreement: Number | None = None
    max_abs_diff: Number | None = None
    file: str | None = None
    bytes: int | None = None
    sha256: str | None = None

    @property
    def served_file(self) -> str | None:
        """The int8 file's name when it passed its check and may be served, else None."""
        return Path(self.file).name if self.accepted and self.file else None


class Export(Part):
    """The LiteRT export the app serves, checked against the model.keras it was made from."""

    format: str | None = None
    file: str | None = None
    bytes: int | None = None
    sha256: str | None = None
    source_sha256: str | None = None
    max_abs_diff: Number | None = None
    argmax_agreement: Number | None = None
    checked_on: str | None = None
    checked_count: int | None = None
    checked_random: bool | None = None  # random pixels, as no test data was found
    converter: str | None = None
    graph: str | None = None
    int8: Int8 | None = None
    error: str | None = None  # the export failed; the model is served with Keras


class Card(Part):
    """A trained model's card: the task it serves, how it was trained, and what it measured."""

    version: int = CARD_VERSION
    slug: str
    kind: str
    task: dict  # TaskSpec.to_dict(): the card alone declares its task
    created: str | None = None
    input: Input | None = None
    architecture: str | None = None
    model_kwargs: dict | None = None
    layers: list[dict] | None = None
    params_total: int | None = None
    optimizer: dict | None = None
    training: Training | None = None
    data: Data | None = None
    vocabulary: dict | None = None
    metrics: Metrics
    history: dict | None = None
    baseline: Baseline | None = None
    versions: dict | None = None
    git_commit: str | None = None
    command: str | None = None
    warm_start: WarmStart | None = None
    intended_use: str | None = None
    limitations: str | None = None
    run: dict | None = None  # a lab-bench run's id and nickname
    published: dict | None = None  # the instructor's publish record: run, data set, by, when
    export: Export | None = None

    @classmethod
    def from_json(cls, source: dict | str | Path) -> Card:
        """The card in `source` (a dict, or the path of a card.json or of its folder); CardError
        naming every field that is missing or of the wrong type, or an unknown version."""
        if not isinstance(source, dict):
            path = Path(source)
            path = path / CARD_FILE if path.is_dir() else path
            try:
                source = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise CardError([("card.json", f"cannot be read ({exc.strerror or exc})")]) from exc
            except ValueError as exc:
                raise CardError([("card.json", f"is not valid JSON ({exc})")]) from exc
        if not isinstance(source, dict):
            raise CardError([("card", f"must be an object, not {_json_type(source)}")])
        version = source.get("version", 0)
        if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version <= CARD_VERSION:
            raise CardError([("version", f"is unknown ({version!r}; this code reads up to {CARD_VERSION})")])
        card = cls.parse(_upgrade(source) if version < CARD_VERSION else source)
        card.version = CARD_VERSION
        card.spec  # noqa: B018 - a task block TaskSpec cannot read is a card error too
        return card

    @property
    def spec(self):
        """The TaskSpec this card declares."""
        try:
            return TaskSpec.from_dict(self.task)
        except (TypeError, ValueError, KeyError) as exc:
            raise CardError([("task", f"is not a task declaration ({exc})")]) from exc

    def epochs_and_seconds(self) -> tuple[int, float]:
        """Epochs and training seconds over this run and every run it continued (--init-from)."""
        runs = (self.warm_start.previous_runs if self.warm_start else []) + [(self.training or Training()).to_json()]
        return sum(r.get("epochs_run") or 0 for r in runs), sum(r.get("seconds_total") or 0 for r in runs)

    def write(self, folder: Path) -> Path:
        """Write folder/card.json (pretty-printed UTF-8, Vietnamese kept readable) atomically."""
        path = Path(folder) / CARD_FILE
        write_atomically(path, json.dumps(self.to_json(), ensure_ascii=False, indent=1).encode("utf-8"))
        return path


def _upgrade(data: dict) -> dict:
    """A version-0 card in the current layout: the export check's image count becomes a field
    (it was only in the `checked_on` sentence)."""
    export = data.get("export")
    if isinstance(export, dict) and isinstance(export.get("checked_on"), str) and "checked_count" not in export:
        found = re.match(r"(\d+) ", export["checked_on"])
        if found:
            export = {**export, "checked_count": int(found.group(1))}
            if "random" in export["checked_on"]:
                export["checked_random"] = True
            data = {**data, "export": export}
    return data


def write_atomically(path: Path, data: bytes) -> None:
    """Write `path` through a temporary file beside it, flushed to disk, then renamed: a reader,
    a crash or a full disk midway leave the old file or the new one, never half of one."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
