"""The consumer's side of submissions: the work behind the queue's "score_submission" task.

`execute_submission` claims a queued submission (queued -> scoring, one consumer only), reads the
data set's test split (the same images a bench run on this server is tested on) and passes every
test image through the served preprocessing (`app.imaging.bytes_to_array` on the image's PNG, what
the predict API does with an upload), then `scoring.score_submission` evaluates the archive in a
child process under CPU, memory and wall limits, rebuilt as data by safekeras. The record ends
scored (accuracy, parameters, layer table) or refused (the reason in both languages).

A text data set's submission brings its vocab.json: the split is the bench's
(`training.textdata.load_text_data` with the submission's seed, the tokens of `app.text`), the
vocabulary must be the one the bench builds from its training split, token for token (the
cut-off is read off the tokens given), and the score is the bench's test perplexity
(`training.textgen.lm_metrics`).
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import traceback
import types
from pathlib import Path

import numpy as np
from flask import Flask
from huey import crontab
from sqlalchemy import select, update

from app.errors import InvalidInput
from app.instructor.settings import submission_rules
from app.lab import scoring
from app.lab.jobs import WORKER_ID, in_worker_app, pid_alive, worker_app
from app.lab.queue import handles, huey
from app.lab.queue import score_submission as score_task
from app.lab.recipes import available_datasets
from app.lab.textrecipes import text_datasets
from app.records import QUEUED, REFUSED, SCORED, SCORING, Submission, as_utc, db, reason_values, utcnow
from app.tasks import TaskSpec

log = logging.getLogger(__name__)
MODEL_FILE, VOCABULARY_FILE = "model.keras", "vocab.json"


@functools.lru_cache(maxsize=4)
def test_split(spec: TaskSpec, data: str, test_subset: int) -> tuple[np.ndarray, np.ndarray, int]:
    """(inputs, labels, refused) of the data set's test split through the served preprocessing;
    a test image the served path refuses gets label -1, so it always counts as wrong."""
    # heavy: training.images loads Keras, in the consumer only
    from app.imaging import bytes_to_array
    from training.data import load_image_data, to_png_bytes
    from training.images import train_subset

    images = train_subset(load_image_data(spec, data or None),
                          types.SimpleNamespace(quick=False, subset=0, test_subset=test_subset))
    x = np.zeros((len(images.y_test), *spec.input_shape), np.float32)
    y = np.asarray(images.y_test, np.int64).copy()
    refused = 0
    for i, image in enumerate(images.x_test):
        try:
            x[i] = bytes_to_array(to_png_bytes(image), spec)
        except InvalidInput:
            y[i], refused = -1, refused + 1
    return x, y, refused


@functools.lru_cache(maxsize=4)
def text_split(spec: TaskSpec, data: str, seed: int, quick: bool):
    """The bench's `TextData` of a text data set for `seed` (a quick slice when the bench's runs are quick)."""
    from training.textdata import load_text_data  # heavy: pandas, in the consumer only

    return load_text_data(spec, data or None, seed, quick, (spec.extra or {}).get("aux_text", "none"))


def dataset_vocabulary(tokens: list[str], text, tokenizer: str, seed: int):
    """The data set's vocabulary as the bench builds it from the training split of `text` (a
    `TextData`), at the cut-off the submitted `tokens` imply (the lowest that leaves out every
    token they leave out), and that cut-off; InvalidInput naming the first token where `tokens`
    differ from it."""
    from collections import Counter

    from app.text import SNIPPET, SPECIALS, Vocabulary

    markers = (SNIPPET,) if text.aux else ()
    counts = Counter(t for s in text.train for t in s if t not in SPECIALS and t not in markers)
    words = [t for t in tokens[len(SPECIALS):] if t not in markers]
    unseen = next((t for t in words if t not in counts), None)
    if unseen is not None or not words:
        raise InvalidInput("The vocabulary is not this data set's: %(token)s is not in the training split of seed "
                           "%(seed)s.", token=(unseen or "–")[:80], seed=seed)
    given = set(words)
    cut = max((n for t, n in counts.items() if t not in given), default=0) + 1
    vocab = Vocabulary.build(text.train, tokenizer, min_count=cut, display=text.display, markers=markers)
    if vocab.tokens != tokens:
        at = next((i for i, (a, b) in enumerate(zip(tokens, vocab.tokens)) if a != b), min(len(tokens), len(vocab)))
        raise InvalidInput("The vocabulary is not this data set's: at id %(id)s it has %(found)s where the training "
                           "split of seed %(seed)s, cut-off %(cut)s, gives %(expected)s (%(size)s tokens, yours "
                           "%(yours)s).", id=at, found=(tokens[at] if at < len(tokens) else "–")[:80],
                           expected=(vocab.tokens[at] if at < len(vocab) else "–")[:80], seed=seed, cut=cut,
                           size=len(vocab), yours=len(tokens))
    return vocab, cut


def text_test_arrays(app: Flask, spec: TaskSpec, folder: Path, seed: int) -> tuple[np.ndarray, np.ndarray, dict]:
    """(inputs, targets, figures) of the data set's test split for a text submission in `folder`:
    its vocab.json checked against the bench's vocabulary, the test sequences numbered with it."""
    from app.lab.submissions import read_vocabulary
    from app.text import PAD_ID, UNK_ID
    from training.textdata import to_arrays

    tokens = read_vocabulary(folder / VOCABULARY_FILE, spec)
    text = text_split(spec, os.environ.get("LSTMLAB_DATA", ""), seed, bool(int(app.config.get("LAB_TEXT_QUICK") or 0)))
    vocab, cut = dataset_vocabulary(tokens, text, spec.tokenizer, seed)
    x, y = to_arrays(text.test, vocab)
    targets = y[y != PAD_ID]
    return x, y, {"seed": seed, "min_count": cut, "vocabulary_size": len(vocab),
                  "test_unk_rate": float(np.mean(targets == UNK_ID)), "test_sequences": len(text.test)}


def claim(submission_id: str) -> bool:
    """Atomically mark a queued submission as scoring on this consumer."""
    result = db.session.execute(update(Submission).where(Submission.id == submission_id, Submission.status == QUEUED)
                                .values(status=SCORING, worker=WORKER_ID, started_at=utcnow()))
    db.session.commit()
    return result.rowcount == 1


def finish(submission_id: str, status: str, **values) -> str:
    """Set a claimed submission's final status."""
    db.session.rollback()
    db.session.execute(update(Submission).where(Submission.id == submission_id, Submission.status == SCORING)
                       .values(status=status, finished_at=utcnow(), **values))
    db.session.commit()
    return status


def execute_submission(app: Flask, submission_id: str) -> str:
    """Score submission `submission_id` if this consumer can claim it; its final status (or why not)."""
    record = db.session.get(Submission, submission_id)
    if record is None:
        return "missing"
    if not claim(submission_id):
        return "skipped"
    dataset, stated = record.dataset, dict(record.metrics or {})
    folder = Path(app.instance_path) / "submissions" / submission_id
    try:
        rules = submission_rules(dataset)
        text_spec = text_datasets().get(dataset)
        db.session.commit()  # no transaction stays open while it scores
        if text_spec is not None:
            x, y, figures = text_test_arrays(app, text_spec, folder, int(stated.get("seed", 0)))
            result = scoring.score_submission(folder / MODEL_FILE, x, y, recurrent_only=rules["recurrent_only"],
                                              max_params=rules["max_params"], vocab_size=figures["vocabulary_size"])
            return finish(submission_id, SCORED, params=result["params"], layers=result["layers"],
                          metrics=figures | {"test_perplexity": result["perplexity"],
                                             "test_top1_accuracy": result["top1_accuracy"],
                                             "test_top5_accuracy": result["top5_accuracy"],
                                             "test_tokens": result["tokens"]})
        spec = available_datasets()[dataset]
        x, y, refused = test_split(spec, os.environ.get("LSTMLAB_DATA", ""), int(app.config.get("LAB_TEST_SUBSET") or 0))
        result = scoring.score_submission(folder / MODEL_FILE, x, y, recurrent_only=rules["recurrent_only"],
                                          max_params=rules["max_params"])
    except InvalidInput as exc:
        return finish(submission_id, REFUSED, **reason_values(exc))
    except Exception as exc:  # noqa: BLE001 - one submission's failure must leave the consumer serving others
        log.error("submission %s failed: %s", submission_id, "".join(traceback.format_exception(exc))[-3000:])
        return finish(submission_id, REFUSED, **reason_values(
            InvalidInput("The model could not be scored (%(name)s).", 500, name=exc.__class__.__name__)))
    return finish(submission_id, SCORED, params=result["params"], layers=result["layers"],
                  metrics={"test_accuracy": result["accuracy"], "test_count": int(len(y)), "refused_inputs": refused})


@handles("score_submission")
def score(submission_id: str) -> str:
    """The queue's "score_submission" task: score one submitted model (see the module docstring)."""
    return in_worker_app(score_task, submission_id, execute_submission)


# ----------------------------------------------------------------------------- lost submissions
STALE_MARGIN = 60  # seconds past the child's wall limit before a scoring submission counts as lost


def sweep_stale_submissions() -> list[str]:
    """Submissions left "scoring" by a consumer that died (a dead pid on this host, or scoring for
    longer than the child's wall limit allows) end refused, asking for a new submission: never
    queued again, so a model that brings its consumer down cannot do it twice. Returns their ids."""
    now, ended = utcnow(), []
    for sub in db.session.scalars(select(Submission).where(Submission.status == SCORING)).all():
        host, _, pid = (sub.worker or "").rpartition(":")
        dead = host == socket.gethostname() and pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid))
        started = as_utc(sub.started_at)
        late = started is None or (now - started).total_seconds() > scoring.WALL_SECONDS + STALE_MARGIN
        if not (dead or late):
            continue
        result = db.session.execute(
            update(Submission).where(Submission.id == sub.id, Submission.status == SCORING, Submission.worker == sub.worker)
            .values(status=REFUSED, finished_at=now, **reason_values(InvalidInput(
                "The consumer scoring this model stopped before it finished; submit the model again.", 500))))
        db.session.commit()
        if result.rowcount == 1:
            log.warning("submission %s: consumer %s is gone; marked refused", sub.id, sub.worker)
            ended.append(sub.id)
    return ended


@huey.on_startup()
def sweep_submissions_at_startup() -> None:
    """A consumer coming back ends the submissions a killed consumer left scoring."""
    with worker_app().app_context():
        try:
            sweep_stale_submissions()
        finally:
            db.session.remove()


@huey.periodic_task(crontab(minute="*"))
def sweep_submissions_every_minute() -> None:
    """Catch submissions whose consumer died on another machine (past the wall limit)."""
    sweep_submissions_at_startup()
