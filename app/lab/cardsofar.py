"""A run's model card before it has one (/lab/runs/<id>/card while the run waits, trains or has
ended without a model): what is known so far (recipe, settings, epochs done, the latest epoch's
figures, the curves so far), clearly marked as not the final card.

Like the other lab pages it only reads the run record; a finished run's card is card.html over
its card.json (app/lab/views.py).
"""

from __future__ import annotations

from flask import render_template, url_for
from flask_babel import gettext as _, lazy_gettext

from app.i18n import current_language
from app.lab import runs, textrecipes
from app.lab.charts import run_chart, run_charts_live
from app.lab.textviews import text_recipe_text, text_settings_text
from app.records import ACTIVE, QUEUED, RUNNING, Run
from app.wording import recipe_text, settings_text, status_label

# The per-epoch figures a run's history holds (app/lab/jobs.py writes them), in the order shown.
METRIC_LABELS = {"loss": lazy_gettext("Training loss"), "accuracy": lazy_gettext("Training accuracy"),
                 "val_loss": lazy_gettext("Validation loss"), "val_accuracy": lazy_gettext("Validation accuracy"),
                 "perplexity": lazy_gettext("Training perplexity"),
                 "val_perplexity": lazy_gettext("Validation perplexity")}


def epochs_of(run: Run) -> tuple[int, int, int]:
    """(epochs finished, the epoch under way or last reached, epochs planned) of a run."""
    history = [e for e in run.history or [] if isinstance(e, dict)]
    progress = run.progress or {}
    planned = int(progress.get("epochs") or (run.settings or {}).get("epochs") or len(history) or 0)
    current = int(progress.get("epoch") or 0) if run.status == RUNNING else 0
    return len(history), max(current, len(history)), planned


def state_text(run: Run) -> str:
    """The card's marker: "Training, epoch k of N", waiting, or ended without a model."""
    done, current, planned = epochs_of(run)
    if run.status == RUNNING:
        return _("Training, epoch %(k)s of %(n)s", k=current, n=planned)
    if run.status == QUEUED:
        return _("Waiting in the queue: no epoch has run yet (%(n)s planned).", n=planned)
    if run.status in ACTIVE:  # interrupted: queued again, resumes from its last epoch
        return _("Interrupted after epoch %(k)s of %(n)s: it will resume.", k=done, n=planned)
    return _("Ended (%(status)s) after epoch %(k)s of %(n)s, without a model.",
             status=status_label(run.status), k=done, n=planned)


def latest_figures(history: list[dict]) -> list[tuple[str, float, int]]:
    """The last finished epoch's figures as (label, value, decimals), in METRIC_LABELS' order."""
    last = history[-1] if history else {}
    return [(str(label), last[key], 1 if "perplexity" in key else 4) for key, label in METRIC_LABELS.items()
            if isinstance(last.get(key), (int, float)) and not isinstance(last.get(key), bool)]


def card_so_far(run: Run):
    """The card page of a run that has no model (yet): 200, marked as not the final card."""
    text = run.dataset in textrecipes.text_datasets()
    spec = runs.datasets().get(run.dataset)
    history = [e for e in run.history or [] if isinstance(e, dict)]
    done, current, planned = epochs_of(run)
    if text:
        charts = [(run_chart("perplexity", [], history, planned), "perplexity", _("Perplexity (lower is better)"),
                   _("Perplexity"))]
        series = [("train", _("training split")), ("validation", _("validation split"))]
    else:
        live = run_charts_live(run.progress, history, planned)
        charts = [(live["loss"], "loss", _("Loss during training"), _("Loss")),
                  (live["accuracy"], "accuracy", _("Accuracy during training"), _("Accuracy"))]
        series = [("train", _("training, every few batches")), ("validation", _("validation, at each epoch's end"))]
    return render_template(
        "lab/card_so_far.html", run=run, spec=spec, state=state_text(run), active=run.status in ACTIVE,
        training=run.status == RUNNING, done=done, current=current, planned=planned,
        dataset_title=spec.title(current_language()) if spec else run.dataset,
        recipe_words=(text_recipe_text if text else recipe_text)(run.recipe),
        settings_words=(text_settings_text if text else settings_text)(run.settings),
        figures=latest_figures(history), charts=charts, series=series,
        run_url=url_for("lab.run_page", run_id=run.id))
