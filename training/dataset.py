"""What every image loader returns: `ImageData` (train, test and an optional fixed validation set,
with where they came from), `DataError` for a data set that is missing or wrong, and the class
balance the card reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from app.splits import IMBALANCE_RATIO, VALIDATION_FRACTION, validation_count


QUICK_TRAIN, QUICK_TEST = 512, 256  # the training and test images of a --quick run


class DataError(Exception):
    """A data set that is missing or not what was expected; the message names path and problem."""


@dataclass
class ImageData:
    """Train and test arrays for an image task, with where they came from."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    class_names: list[str] = field(default_factory=list)
    test_meta: dict = field(default_factory=dict)  # e.g. age and race per test image
    skipped: dict = field(default_factory=dict)  # unreadable files found in a folder
    split: dict = field(default_factory=dict)  # how a folder without test/ was split
    x_val: np.ndarray | None = None  # a validation set fixed with the data (a folder's val/), else None
    y_val: np.ndarray | None = None
    train_meta: dict = field(default_factory=dict)  # the same groups per training image

    def subset(self, n_train: int, n_test: int) -> ImageData:
        """A small stratified-enough slice for --quick runs (a fixed validation set is kept whole)."""
        rng = np.random.default_rng(0)
        tr = rng.permutation(len(self.y_train))[:n_train]
        te = rng.permutation(len(self.y_test))[:n_test]
        meta = {k: v[te] for k, v in self.test_meta.items()}
        return ImageData(self.x_train[tr], self.y_train[tr], self.x_test[te], self.y_test[te],
                         self.source, self.class_names, meta, self.skipped, self.split, self.x_val, self.y_val,
                         {k: v[tr] for k, v in self.train_meta.items()})

    def train_validation(self, seed: int, fraction: float = VALIDATION_FRACTION):
        """((x, y) train, (x, y) validation): the training set shuffled with `seed` (some sets are
        stored sorted by class); validation is the data's fixed set when it has one, else a
        `fraction` of the shuffled training set."""
        train, val = self._split(seed, fraction)
        if val is None:
            return (self.x_train[train], self.y_train[train]), (self.x_val, self.y_val)
        return (self.x_train[train], self.y_train[train]), (self.x_train[val], self.y_train[val])

    def train_groups(self, seed: int, fraction: float = VALIDATION_FRACTION) -> dict:
        """`train_meta` in the order of `train_validation`'s training part (same `seed`)."""
        train, _ = self._split(seed, fraction)
        return {k: v[train] for k, v in self.train_meta.items()}

    def _split(self, seed: int, fraction: float):
        order = np.random.default_rng(seed).permutation(len(self.y_train))
        if self.y_val is not None and len(self.y_val):
            return order, None
        n_val = validation_count(len(order), fraction)
        return order[n_val:], order[:n_val]


def class_imbalance(y_train: np.ndarray, y_test: np.ndarray, names: list[str]) -> dict:
    """Images per class in each split, the largest/smallest ratio, and the test accuracy of a
    model that always answers the most common class (what any real model must beat)."""
    n = len(names)
    tr = np.bincount(np.asarray(y_train, dtype=np.int64), minlength=n)
    te = np.bincount(np.asarray(y_test, dtype=np.int64), minlength=n)
    ratio = float(tr.max() / max(tr.min(), 1))
    return {"train": dict(zip(names, tr.tolist())), "test": dict(zip(names, te.tolist())),
            "largest_to_smallest": round(ratio, 3), "imbalanced": ratio > IMBALANCE_RATIO,
            "majority_class_test_accuracy": float(te.max() / max(te.sum(), 1))}
