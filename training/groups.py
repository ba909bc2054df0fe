"""Accuracy per group of people (race, age band) where a data set records them, with Wilson
intervals and the gap chance alone would show; and loss weights that count rarer groups more."""

from __future__ import annotations

import numpy as np

from training.dataset import DataError, ImageData


def wilson_interval(correct: int, n: int, z: float = 1.959964) -> tuple[float, float]:
    """The Wilson score interval (95% by default) of a proportion correct/n."""
    p = correct / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def group_accuracy(y_true, pred, groups: np.ndarray, names: dict) -> dict:
    """Accuracy within each group (e.g. race or age band), with the group's size and the
    accuracy's 95% Wilson interval."""
    out = {}
    for g, name in names.items():
        mask = groups == g
        if mask.any():
            n, correct = int(mask.sum()), int((pred[mask] == y_true[mask]).sum())
            out[name] = {"n": n, "accuracy": correct / n, "ci95": list(wilson_interval(correct, n))}
    return out


def accuracy_gap(groups: dict, draws: int = 20000) -> dict:
    """The gap between the most and the least accurate group, with its 95% interval (Newcombe's
    hybrid score interval for a difference of two independent proportions), and the gap that a
    model equally accurate in every group (at the pooled accuracy) would exceed one time in twenty
    with groups of these sizes (`draws` binomial draws, a fixed seed): what chance alone shows."""
    best = max(groups, key=lambda k: groups[k]["accuracy"])
    worst = min(groups, key=lambda k: groups[k]["accuracy"])
    (p1, (l1, u1)), (p2, (l2, u2)) = ((groups[k]["accuracy"], groups[k]["ci95"]) for k in (best, worst))
    gap = p1 - p2
    n = np.array([g["n"] for g in groups.values()])
    pooled = sum(g["n"] * g["accuracy"] for g in groups.values()) / n.sum()
    chance = np.random.default_rng(0).binomial(n, pooled, size=(draws, len(n))) / n
    return {"most_accurate": best, "least_accurate": worst, "gap": gap,
            "ci95": [float(gap - np.hypot(p1 - l1, u2 - p2)), float(gap + np.hypot(u1 - p1, p2 - l2))],
            "equal_accuracy_p95": float(np.quantile(chance.max(1) - chance.min(1), 0.95))}


RACES = {0: "White", 1: "Black", 2: "Asian", 3: "Indian", 4: "Others", 255: "missing"}
AGE_BANDS = [(0, 12, "0-12"), (13, 19, "13-19"), (20, 29, "20-29"), (30, 44, "30-44"),
             (45, 59, "45-59"), (60, 200, "60+")]


def age_bands(age: np.ndarray) -> np.ndarray:
    """The index into AGE_BANDS of each age (-1 outside them)."""
    age = age.astype(int)
    band = np.full(len(age), -1)
    for i, (lo, hi, _) in enumerate(AGE_BANDS):
        band[(age >= lo) & (age <= hi)] = i
    return band


def fairness_breakdown(data: ImageData, pred: np.ndarray) -> dict:
    """Per-race and per-age-band accuracy where the data set records them (UTKFace)."""
    out = {}
    if "race" in data.test_meta:
        out["accuracy_by_race"] = group_accuracy(data.y_test, pred, data.test_meta["race"], RACES)
        out["race_gap"] = accuracy_gap({k: v for k, v in out["accuracy_by_race"].items() if k != "missing"})
    if "age" in data.test_meta:
        out["accuracy_by_age"] = group_accuracy(data.y_test, pred, age_bands(data.test_meta["age"]),
                                                dict(enumerate(n for _, _, n in AGE_BANDS)))
    return out


def balance_weights(groups: dict, keys: list[str], power: float = 0.5) -> tuple[np.ndarray, dict]:
    """A loss weight per training image from the groups the data set records (`groups`, e.g.
    race and age, ages taken in AGE_BANDS): the size of the image's cell (its combination of the
    `keys` groups, counted as at least 1% of the images, so that a handful of images is not weighted
    by the hundred) to the power -`power`, scaled to a mean of 1: images of rarer groups count more
    (power 1 gives every cell of 1% or more the same total weight). Returns the weights and the
    card's record of them."""
    missing = [k for k in keys if k not in groups]
    if missing:
        raise DataError(f"--balance {','.join(keys)}: this data set records no {', '.join(missing)} per "
                        f"training image (it records: {', '.join(sorted(groups)) or 'none'})")
    columns = [age_bands(groups[k]) if k == "age" else groups[k].astype(int) for k in keys]
    _, cell, size = np.unique(np.stack(columns, 1), axis=0, return_inverse=True, return_counts=True)
    weights = np.maximum(size[cell.reshape(-1)], len(cell) / 100) ** -power
    weights /= weights.mean()
    return weights, {"groups": keys, "power": power, "cells": len(size),
                     "weight_range": [round(float(weights.min()), 3), round(float(weights.max()), 3)]}
