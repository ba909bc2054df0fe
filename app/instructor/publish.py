"""Publish a finished run as a served task (one rename into models/<slug>/, the previous folder kept
in <instance>/replaced/), and unpublish one; every worker picks the change up without a restart.
Details: docs/DESIGN.md, "Publishing a run (app/instructor/publish.py)"."""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
import time
from pathlib import Path

from flask import current_app

from app.cards import Card, CardError
from app.errors import InvalidInput
from app.instructor.chance import HeldOut, held_out
from app.lab.recipes import available_datasets
from app.lab.runs import run_folder
from app.records import FINISHED, Run, db, utcnow
from app.tasks import BUILTIN_TASKS, IMAGE, SLUG_RE, TEXT, ClassName

RUN_FILES_SKIPPED = ("checkpoints",)  # never part of a served task


def models_dir() -> Path:
    """The folder the app serves tasks from."""
    return Path(current_app.config["MODELS_DIR"])


def replaced_dir() -> Path:
    """<instance>/replaced: previous versions of replaced or unpublished tasks."""
    path = Path(current_app.instance_path) / "replaced"
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextlib.contextmanager
def publish_lock():
    """One publish or unpublish at a time on this machine (closing the file releases the lock)."""
    models_dir().mkdir(parents=True, exist_ok=True)
    with open(Path(current_app.instance_path) / "publish.lock", "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def parse_classes(raw, n: int) -> tuple[ClassName, ...]:
    """Class names from the form or the API: a list of {"en", "vi"} or of strings (both
    languages), in the model's label order; exactly `n` of them."""
    if isinstance(raw, str):
        raw = [line for line in raw.splitlines() if line.strip()]
    if not isinstance(raw, list) or len(raw) != n:
        raise InvalidInput("Give exactly %(n)s class names, in the model's order.", n=n)
    out = []
    for item in raw:
        if isinstance(item, str):
            en, _, vi = item.partition("|")
            item = {"en": en, "vi": vi or en}
        if not isinstance(item, dict) or not isinstance(item.get("en"), str) or not isinstance(item.get("vi", ""), str):
            raise InvalidInput("Each class name is text, or {\"en\": ..., \"vi\": ...}.")
        en, vi = item["en"].strip()[:80], (item.get("vi") or item["en"]).strip()[:80]
        if not en or not vi:
            raise InvalidInput("A class name is empty.")
        out.append(ClassName(en=en, vi=vi))
    return tuple(out)


def run_metrics(run: Run, card: Card | None = None) -> dict:
    """The run's test metrics: its record's (written from the card when it finished), else the
    card's in its folder, else {}."""
    if (run.metrics or {}).get("test_accuracy") is not None:
        return run.metrics
    try:
        card = card or Card.from_json(run_folder(run))
    except CardError:
        return {}
    return card.metrics.to_json()


def run_held_out(run: Run, n_classes: int) -> HeldOut:
    """Test accuracy, n, chance and confusion matrix of `run`, for the publish form and its check."""
    return held_out(run_metrics(run), n_classes)


def run_class_names(run: Run) -> tuple[ClassName, ...]:
    """The class names (English and Vietnamese) of a run's data set, else of its card, else ()."""
    spec = available_datasets().get(run.dataset)
    if spec is not None:
        return spec.classes
    try:
        return Card.from_json(run_folder(run)).spec.classes
    except CardError:
        return ()


def task_exists(slug: str) -> bool:
    """True when a task folder named `slug` is in the models folder (publishing would replace it)."""
    slug = (slug or "").strip()
    return bool(SLUG_RE.match(slug)) and (models_dir() / slug).exists()


def below_ngram(metrics: dict | None) -> bool | None:
    """True when a text run's test perplexity is below its n-gram's on the same split (None: unknown)."""
    metrics = metrics if isinstance(metrics, dict) else {}
    ppl, ngram = metrics.get("test_perplexity"), (metrics.get("ngram") or {}).get("test_perplexity")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (ppl, ngram)):
        return None
    return ppl < ngram


def text_figures(run: Run) -> dict:
    """A text run's test perplexity, its n-gram's and whether it is below (the publish form)."""
    metrics = run.metrics or {}
    return {"test": metrics.get("test_perplexity"), "ngram": (metrics.get("ngram") or {}).get("test_perplexity"),
            "below": below_ngram(metrics)}


def check_below_ngram(metrics: dict | None) -> None:
    """409 unless the text run's test perplexity is below the Kneser-Ney n-gram's."""
    verdict = below_ngram(metrics)
    if verdict:
        return
    if verdict is None:
        raise InvalidInput("This run has no test perplexity to judge it by. Confirm to publish it anyway.", 409)
    raise InvalidInput("Test perplexity %(ppl)s is not below the n-gram's (%(ngram)s) on the same split and "
                       "vocabulary. Confirm to publish it anyway.", 409, ppl=f"{metrics['test_perplexity']:.1f}",
                       ngram=f"{metrics['ngram']['test_perplexity']:.1f}")


def check_above_chance(figures: HeldOut) -> None:
    """409 with accuracy, chance and n unless the test accuracy is clearly above chance."""
    if figures.clearly_above_chance:
        return
    if figures.accuracy is None or figures.n is None or figures.chance is None:
        raise InvalidInput("This run has no test accuracy to judge it by. Confirm to publish it anyway.", 409)
    raise InvalidInput("Test accuracy %(accuracy)s (%(correct)s of %(n)s test images) is not clearly above chance "
                       "(%(chance)s, always answering the most frequent class). Confirm to publish it anyway.", 409,
                       accuracy=f"{figures.accuracy:.1%}", correct=figures.correct, n=figures.n,
                       chance=f"{figures.chance:.1%}")


def publish_run(run: Run, slug: str, title_en: str, title_vi: str, classes=None, confirm: bool = False,
                by: str = "", confirm_chance: bool = False) -> dict:
    """Serve finished run `run` as task `slug`; returns {"slug", "replaced"} (replaced: where
    the previous version went, or None). 409 when `slug` exists and `confirm` is false, and
    when the test accuracy is not clearly above chance and `confirm_chance` is false."""
    if run.status != FINISHED:
        raise InvalidInput("Only a finished run can be published.", 409)
    source = run_folder(run)
    try:
        card = Card.from_json(source)
        spec = card.spec
    except CardError:
        raise InvalidInput("This run's model files are missing or damaged.", 409) from None
    text = spec.kind == TEXT
    if spec.kind not in (IMAGE, TEXT) or not (source / "model.keras").is_file() or (
            text and not (source / "vocab.json").is_file()):
        raise InvalidInput("This run's model files are missing or damaged.", 409)
    slug = (slug or "").strip()
    if not SLUG_RE.match(slug):
        raise InvalidInput("Name: 1-40 lowercase letters, digits and underscores, starting with a letter.")
    if slug in BUILTIN_TASKS and run.dataset != slug:
        raise InvalidInput("%(slug)s is a built-in task: only a run on its own data set can replace it.", 409, slug=repr(slug))
    title_en = (title_en or "").strip()[:120]
    title_vi = (title_vi or "").strip()[:120]
    if not title_en or not title_vi:
        raise InvalidInput("Give the task's title in English and in Vietnamese.")
    names = parse_classes(classes, len(spec.classes)) if classes and not text else spec.classes
    if not confirm_chance and text:
        check_below_ngram(run.metrics or card.metrics.to_json())
    elif not confirm_chance:
        check_above_chance(held_out(run_metrics(run, card), len(spec.classes)))
    new_spec = spec.with_overrides(slug=slug, title_en=title_en, title_vi=title_vi, classes=names)
    card.slug, card.task = slug, new_spec.to_dict()
    card.published = {"run": run.id, "dataset": run.dataset, "nickname": run.nickname, "by": by,
                      "at": utcnow().isoformat(timespec="seconds")}
    models = models_dir()
    with publish_lock():
        target = models / slug
        if target.exists() and not confirm:
            raise InvalidInput("The task %(slug)s exists already. Confirm to replace it (the current model is kept in the instance folder's replaced/ and can be restored).", 409, slug=repr(slug))
        tmp = models / f".publish-{slug}-{secrets.token_hex(4)}"
        try:
            shutil.copytree(source, tmp, ignore=shutil.ignore_patterns(*RUN_FILES_SKIPPED, "*.tmp"))
            card.write(tmp)
            previous = set_aside(target) if target.exists() else None
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    run.published_slug = slug
    db.session.commit()
    return {"slug": slug, "replaced": str(previous) if previous else None}


def set_aside(target: Path) -> Path:
    """Move a task folder to <instance>/replaced/<slug>-<UTC time>/ (recoverable by moving it back)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    dest = replaced_dir() / f"{target.name}-{stamp}"
    n = 1
    while dest.exists():
        n += 1
        dest = replaced_dir() / f"{target.name}-{stamp}-{n}"
    shutil.move(str(target), str(dest))
    return dest


def unpublish(slug: str, confirm: bool = False) -> dict:
    """Stop serving task `slug` (its folder goes to <instance>/replaced/); a built-in task needs
    `confirm`. Returns {"slug", "replaced"}."""
    target = models_dir() / (slug or "")
    if not SLUG_RE.match(slug or "") or not (target / "card.json").is_file():
        raise InvalidInput("There is no published task %(slug)s.", 404, slug=repr(slug))
    if slug in BUILTIN_TASKS and not confirm:
        raise InvalidInput("%(slug)s is a shipped task. Confirm to take it offline (its model is kept in replaced/).", 409, slug=repr(slug))
    with publish_lock():
        previous = set_aside(target)
    for run in db.session.scalars(db.select(Run).where(Run.published_slug == slug)):
        run.published_slug = None
    db.session.commit()
    return {"slug": slug, "replaced": str(previous)}
