"""How a data set is split and checked, one rule for the console, training and the bench: a class
data set's seeded, stratified test split, the validation share, and when classes count as
imbalanced; a text data set's seeded 80/10/10 split of its units (headlines, lines, verse blocks)."""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 20261128  # fixed: the same folder always gives the same test set
TEST_FRACTION = 0.2
VALIDATION_FRACTION = 0.1  # of the training images, held out for validation
IMBALANCE_RATIO = 1.5  # largest / smallest class above this is reported as imbalanced


def held_out(n: int, fraction: float) -> int:
    """Images of one class (of `n`) held out: `fraction`, at least one when it has two or more,
    never all of them."""
    return min(max(int(round(n * fraction)), 1 if n > 1 else 0), max(n - 1, 0))


def validation_count(n: int, fraction: float = VALIDATION_FRACTION) -> int:
    """Training images a run holds out for validation when the data set fixes none."""
    return max(1, int(n * fraction))


def stratified_split(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, test): `held_out` of every class to test, the rest to train."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for label in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == label))
        n_test = held_out(len(idx), fraction)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


TEXT_SPLIT_FRACTIONS = (0.8, 0.1, 0.1)  # training, validation, test units of a text data set
MIN_SPLIT_UNITS = 3  # one unit each for training, validation and test at the least


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded 80/10/10 permutation split of n text units: (train, validation, test) indices."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * TEXT_SPLIT_FRACTIONS[1]))
    n_test = max(1, round(n * TEXT_SPLIT_FRACTIONS[2]))
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]
