"""Finished models of a task reused by a new run: its starting point (--init-from) or its
teachers (--teachers)."""

from __future__ import annotations

from pathlib import Path

import keras

from app.cards import Card
from app.tasks import TaskSpec
from training.dataset import DataError


def load_finished(spec: TaskSpec, folder, option: str) -> dict:
    """A finished model of `spec`'s task (its folder, card and Keras model); `option` names the
    flag that asked for it in the error."""
    folder = Path(folder)
    if folder.is_file():
        folder = folder.parent
    try:
        card = Card.from_json(folder)
        model = keras.models.load_model(folder / "model.keras", compile=False)
    except (OSError, ValueError) as exc:
        raise DataError(f"{option} {folder}: expected a model folder with model.keras and "
                        f"card.json ({exc})") from exc
    if card.slug != spec.slug:
        raise DataError(f"{option} {folder}: that model is for task {card.slug!r}, not {spec.slug!r}")
    if card.training is None or card.metrics.test_accuracy is None:
        raise DataError(f"{option} {folder}: its card has no training record or test accuracy")
    return {"folder": folder, "card": card, "model": model}


def load_warm_start(spec: TaskSpec, folder) -> dict | None:
    """The finished model (and its card) a run continues from with --init-from, or None."""
    if not folder:
        return None
    start = load_finished(spec, folder, "--init-from")
    print(f"[{spec.slug}] starting from {start['folder']} (test accuracy {start['card'].metrics.test_accuracy:.4f} "
          f"after {start['card'].training.epochs_run} epochs)", flush=True)
    return start
