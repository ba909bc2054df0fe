"""Is a run's test accuracy clearly above chance? The figures the publish form shows, and the rule
(a one-sided exact binomial test against the majority-class rate) that asks for a confirmation.
Details: docs/DESIGN.md, "Clearly above chance (app/instructor/chance.py)"."""

from __future__ import annotations

import math
from dataclasses import dataclass

ALPHA = 0.01  # the one-sided significance level of "clearly above chance"


@dataclass(frozen=True)
class HeldOut:
    """A finished run's test figures: accuracy, n correct of n, chance, the p-value, the matrix."""

    accuracy: float | None
    n: int | None
    correct: int | None
    chance: float | None
    p_value: float | None
    confusion: list[list[int]] | None

    @property
    def alpha(self) -> float:
        """The significance level the p-value is held to."""
        return ALPHA

    @property
    def clearly_above_chance(self) -> bool:
        """True when the binomial test says the accuracy beats chance at level ALPHA."""
        return self.p_value is not None and self.p_value < ALPHA


def binomial_tail(correct: int, n: int, p: float) -> float:
    """P(X >= correct) for X ~ Binomial(n, p), summed in log space (exact for any n)."""
    if correct <= 0:
        return 1.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    logs = [math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q
            for k in range(correct, n + 1)]
    top = max(logs)
    return min(1.0, math.exp(top) * math.fsum(math.exp(v - top) for v in logs))


def square_matrix(raw) -> list[list[int]] | None:
    """`raw` as a k×k matrix of non-negative whole numbers (k >= 2), else None."""
    if not isinstance(raw, list) or len(raw) < 2:
        return None
    k = len(raw)
    if not all(isinstance(row, list) and len(row) == k for row in raw):
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for row in raw for v in row):
        return None
    return raw


def held_out(metrics: dict | None, n_classes: int) -> HeldOut:
    """The test figures of a run's metrics (the record's or the card's `metrics` block)."""
    metrics = metrics if isinstance(metrics, dict) else {}
    accuracy = metrics.get("test_accuracy")
    accuracy = float(accuracy) if isinstance(accuracy, (int, float)) and not isinstance(accuracy, bool) else None
    confusion = square_matrix(metrics.get("confusion_matrix"))
    if confusion is not None:
        n = sum(map(sum, confusion))
        correct = sum(confusion[i][i] for i in range(len(confusion)))
        chance = max(map(sum, confusion)) / n if n else None
        accuracy = correct / n if n else accuracy
    else:
        count = metrics.get("test_count")
        n = count if isinstance(count, int) and not isinstance(count, bool) and count > 0 else None
        correct = round(accuracy * n) if accuracy is not None and n else None
        chance = 1 / n_classes if n_classes >= 2 else None
    p_value = binomial_tail(correct, n, chance) if n and correct is not None and chance is not None else None
    return HeldOut(accuracy=accuracy, n=n or None, correct=correct, chance=chance, p_value=p_value,
                       confusion=confusion)
