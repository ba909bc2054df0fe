"""A run's readable name, "nickname · data set #n": the owner's nickname when the bench had one,
the data set's title in the reader's language, and the run's number on that data set (given
once, on insert: app.records). The hex id stays the run's key in every URL. The name's own
marks (" · ", "#") are the same in every language, so only the title is translated.
"""

from __future__ import annotations

from flask import g, has_request_context

from app.i18n import current_language
from app.lab import recipes, textrecipes
from app.records import Run


def dataset_titles() -> dict[str, str]:
    """Every data set's title in the reader's language (once per request: a list page names many runs)."""
    cached = g.get("lab_dataset_titles") if has_request_context() else None
    if cached is None:
        lang = current_language()
        specs = {**textrecipes.text_datasets(), **recipes.available_datasets()}
        cached = {slug: spec.title(lang) for slug, spec in specs.items()}
        if has_request_context():
            g.lab_dataset_titles = cached
    return cached


def run_name(run: Run) -> str:
    """"Lan · Chữ số viết tay (MNIST) #3" ("Chữ số viết tay (MNIST) #3" without a nickname; the
    id for a run that has no number)."""
    if not run.number:
        return run.id
    named = f"{dataset_titles().get(run.dataset, run.dataset)} #{run.number}"
    return f"{run.nickname} · {named}" if run.nickname else named
