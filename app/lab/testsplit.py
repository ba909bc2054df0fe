"""Where a run's test images came from, in the reader's language: the official test split of a
built-in data set, or the stratified share an instructor's folder held out when it was saved
(app.splits.held_out of every class, with the folder's size and the split's seed)."""

from __future__ import annotations

from flask_babel import gettext as _

from app.i18n import format_number, format_percent
from app.tasks import TaskSpec


def test_split_text(spec: TaskSpec | None, count: int) -> str:
    """One sentence naming the `count` test images of a run on `spec` and where they came from."""
    extra = (spec.extra or {}) if spec is not None else {}
    split = extra.get("split") if isinstance(extra.get("split"), dict) else None
    if extra.get("dataset") == "instructor" and split:
        counts = extra.get("counts") or {}
        total = int(counts.get("train") or 0) + int(counts.get("test") or 0)
        return _("%(n)s test images held out of the instructor's folder of %(total)s: a stratified %(share)s of "
                 "each class, drawn with seed %(seed)s when the data set was saved, never used in training",
                 n=format_number(count), total=format_number(total),
                 share=format_percent(float(split.get("test_fraction") or 0), 0), seed=split.get("seed"))
    return _("%(n)s test images from the data set's official test split, never used in training",
             n=format_number(count))
