"""`TrainConfig`: how one training run goes, built by the command line from its flags
(`training.cli`) and by the lab bench's queue job from a run's recipe and settings."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field, fields, replace

from training.textdata import MIN_COUNT


@dataclass(frozen=True)
class TrainConfig:
    """Every setting `train_image_task` and `train_text_task` read; None means "the task's"."""

    # shared by image and text runs
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float | None = None
    data: str | None = None  # data file or folder; None: $LSTMLAB_DATA, ./data, ../shared/data
    seed: int = 42
    quick: bool = False  # tiny subset, one epoch (tests)
    subset: int = 0  # training images (a fixed random choice; 0: all)
    test_subset: int = 0  # test images (0: the whole test split)
    resume: bool = False
    init_from: str | None = None  # a finished model folder to start from
    weight_average: float | None = None  # EMA momentum of the validated weights
    patience: int = 6
    architecture: str | None = None
    model_kwargs: str | None = None  # JSON
    baseline_epochs: int = 3
    verbose: int = 1
    int8: bool = True  # also export a checked int8 .tflite
    card_extra: dict = field(default_factory=dict)  # card keys the caller adds (the bench's run block)
    # image runs
    balance: list[str] | None = None
    balance_power: float = 0.5
    teachers: list[str] | None = None
    distill_weight: float = 0.5
    teacher_mirror: bool = False
    cutmix: float | None = None
    # text runs
    min_count: int = MIN_COUNT
    sequence_length: int = 0  # cut training sequences into pieces of at most this many tokens (0: whole)
    train_text: str = "all"
    aux_text: str | None = None

    @classmethod
    def from_args(cls, args: argparse.Namespace, **changes) -> TrainConfig:
        """The settings of a parsed command line (other flags, e.g. --models-dir, ignored)."""
        names = {f.name for f in fields(cls)}
        return replace(cls(**{k: v for k, v in vars(args).items() if k in names}), **changes)

    def model_kw(self) -> dict | None:
        """--model-kwargs as a dict, or None when not given."""
        return json.loads(self.model_kwargs) if self.model_kwargs else None


DEFAULTS = TrainConfig()
