"""Submissions as a service: a student's own .keras model (and, optionally, the notebook that made
it) handed in for a data set, checked, queued for scoring, found, and shown beside bench runs.

The web side saves the upload into the submission's own folder (<instance>/submissions/<id>/),
runs the cheap structural checks of `safekeras.check_archive` (zip, config.json, layers, each
weight's shape: no Keras, no TensorFlow), applies the instructor's rules for the data set, writes a
queued record and enqueues it; a consumer scores it (app/lab/scorer.py). Anything refused leaves
no record and no file behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from flask import current_app
from sqlalchemy import func, select

from app.errors import InvalidInput
from app.instructor.access import may_train
from app.instructor.settings import submission_rules
from app.lab import queue, recipes
from app.lab.runs import client_address, find_dataset, owner_token
from app.lab.safekeras import MAX_ARCHIVE_BYTES, check_archive
from app.lab.textrecipes import TEXT_RANGES, TextSettings, text_datasets
from app.records import FINISHED, QUEUED, SCORED, SUBMISSION_ACTIVE, Run, Submission, as_utc, db, new_run_id
from app.tasks import TaskSpec
from app.text import SPECIALS

MB = 2 ** 20
MAX_NOTEBOOK_BYTES = 8 * MB
MAX_VOCABULARY_BYTES = 8 * MB
MAX_TOKEN_CHARS = 200
MODEL_FILE, NOTEBOOK_FILE, VOCABULARY_FILE = "model.keras", "notebook.ipynb", "vocab.json"
CHUNK = 1 << 16
DEFAULT_SPLIT_SEED = TextSettings().seed  # the text program's and the bench's default SEED


def submission_datasets() -> dict[str, TaskSpec]:
    """Every data set a model may be submitted to: the image data sets, then the text ones."""
    return recipes.available_datasets() | text_datasets()


def max_upload_bytes() -> int:
    """The largest .keras file this server accepts (config SUBMISSION_MAX_BYTES, at most the reader's bound)."""
    return min(int(current_app.config.get("SUBMISSION_MAX_BYTES") or MAX_ARCHIVE_BYTES), MAX_ARCHIVE_BYTES)


def folder_of(submission_id: str) -> Path:
    """<instance>/submissions/<id>/: the uploaded model.keras and notebook.ipynb, nothing else."""
    return Path(current_app.instance_path) / "submissions" / submission_id


def save_upload(storage, path: Path, limit: int, too_large: InvalidInput) -> int:
    """Copy an uploaded file to `path`, at most `limit` bytes (else `too_large`); its size."""
    size = 0
    with path.open("wb") as out:
        while True:
            chunk = storage.stream.read(CHUNK)
            if not chunk:
                return size
            size += len(chunk)
            if size > limit:
                raise too_large
            out.write(chunk)


def file_size_refusal(limit: int, rule: bool) -> InvalidInput:
    """The refusal of a file over `limit` bytes: the data set's rule (400) or the server's bound (413)."""
    if rule:
        return InvalidInput("The file is larger than this data set's rule allows (at most %(limit)s MB).",
                            limit=format(limit / MB, "g"))
    return InvalidInput("The file is too large: the limit is %(mb)s MB.", 413, mb=format(limit / MB, "g"))


def check_notebook(path: Path) -> None:
    """Refuse a notebook file that is not a Jupyter notebook (JSON with cells); it is never run."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise InvalidInput("The notebook is not a Jupyter notebook (.ipynb).")


def read_vocabulary(path: Path, spec: TaskSpec) -> list[str]:
    """The tokens of an uploaded vocab.json (the text program's, or `app.text.Vocabulary.to_json`'s:
    {"tokens": [...]}, token i has id i), refused unless they are distinct strings beginning with
    the specials, of this data set's tokenizer when it names one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        data = None
    tokens = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(tokens, list) or not all(isinstance(t, str) and 0 < len(t) <= MAX_TOKEN_CHARS for t in tokens):
        raise InvalidInput("The vocabulary file is not a vocab.json: a JSON object whose \"tokens\" is a list "
                           "of the tokens, token i having id i.")
    if tuple(tokens[:len(SPECIALS)]) != SPECIALS:
        raise InvalidInput("The vocabulary must begin with %(specials)s (ids 0, 1, 2).", specials=", ".join(SPECIALS))
    if len(set(tokens)) != len(tokens):
        raise InvalidInput("The vocabulary lists a token twice.")
    tokenizer = data.get("tokenizer")
    if tokenizer is not None and tokenizer != spec.tokenizer:
        raise InvalidInput("The vocabulary is for the tokenizer %(found)s; this data set's is %(tokenizer)s.",
                           found=str(tokenizer)[:40], tokenizer=spec.tokenizer)
    return tokens


def split_seed(raw) -> int:
    """The seed of the text split a submission was trained on (form field `seed`; default the
    program's SEED), a whole number within the bench's range."""
    if raw in (None, ""):
        return DEFAULT_SPLIT_SEED
    low, high = TEXT_RANGES["seed"]
    text = str(raw).strip()
    if not (text.isascii() and text.isdigit()) or not low <= int(text) <= high:
        raise InvalidInput("The split seed must be a whole number from %(low)s to %(high)s.", low=low, high=high)
    return int(text)


def check_waiting_limits(owner: str, client: str) -> None:
    """429 when this browser, or this network address, already has as many submissions waiting to
    be scored as it may have runs waiting (the bench's limits)."""
    limits = recipes.current_limits()
    checks = [(Submission.owner == owner, limits.runs_per_browser,
               "This browser already has %(n)s submissions waiting to be scored; wait until one is scored."),
              (Submission.client == client, limits.runs_per_client,
               "Your network address already has %(n)s submissions waiting to be scored; wait until one is scored.")]
    for condition, limit, msgid in checks:
        waiting = db.session.scalar(select(func.count()).select_from(Submission).where(
            condition, Submission.status.in_(SUBMISSION_ACTIVE))) or 0
        if limit and waiting >= limit:
            raise InvalidInput(msgid, 429, n=limit)


def submit(form, files) -> Submission:
    """Check and queue one submission from a multipart form (dataset, nickname, model, notebook);
    InvalidInput (400 naming what was refused, 403, 404, 413, 429) with nothing recorded or kept."""
    verdict = may_train()  # the instructor's access mode applies to submissions as to runs
    if verdict is not True:
        raise verdict
    dataset = form.get("dataset") or ""
    text_spec = text_datasets().get(dataset)
    if text_spec is None:
        find_dataset(dataset)
    nickname = recipes.validate_nickname(form.get("nickname"))
    model = files.get("model")
    if model is None or not model.filename:
        raise InvalidInput("Choose the .keras file of your model (saved with model.save(\"model.keras\")).")
    vocabulary = files.get("vocabulary")
    seed = None
    if text_spec is not None:
        seed = split_seed(form.get("seed"))
        if vocabulary is None or not vocabulary.filename:
            raise InvalidInput("Choose the vocab.json your program saved beside the model: a text model is "
                               "scored with its vocabulary.")
    notebook = files.get("notebook")
    rules = submission_rules(dataset)
    limit, by_rule = max_upload_bytes(), False
    if rules["max_file_mb"] and rules["max_file_mb"] * MB < limit:
        limit, by_rule = int(rules["max_file_mb"] * MB), True
    owner, client = owner_token(create=True), client_address()
    check_waiting_limits(owner, client)
    submission_id = new_run_id()
    folder = folder_of(submission_id)
    folder.mkdir(parents=True)
    try:
        size = save_upload(model, folder / MODEL_FILE, limit, file_size_refusal(limit, by_rule))
        if size == 0:
            raise InvalidInput("The model file is empty.")
        tokens = None
        if text_spec is not None:
            too_large = InvalidInput("The vocabulary file is larger than %(mb)s MB.", 413, mb=MAX_VOCABULARY_BYTES // MB)
            save_upload(vocabulary, folder / VOCABULARY_FILE, MAX_VOCABULARY_BYTES, too_large)
            tokens = read_vocabulary(folder / VOCABULARY_FILE, text_spec)
        found = check_archive(folder / MODEL_FILE, limit, recurrent_only=rules["recurrent_only"],
                              max_params=rules["max_params"], vocab_size=None if tokens is None else len(tokens))
        has_notebook = notebook is not None and bool(notebook.filename)
        if has_notebook:
            save_upload(notebook, folder / NOTEBOOK_FILE, MAX_NOTEBOOK_BYTES,
                        InvalidInput("The notebook is larger than %(mb)s MB.", 413, mb=MAX_NOTEBOOK_BYTES // MB))
            check_notebook(folder / NOTEBOOK_FILE)
    except BaseException:
        remove_folder(submission_id)
        raise
    record = Submission(id=submission_id, dataset=dataset, nickname=nickname, owner=owner, client=client,
                        status=QUEUED, filename=Path(model.filename.replace("\\", "/")).name[:120], size_bytes=size,
                        notebook=has_notebook, params=found["params"],
                        layers=[{"class": name} for name in found["layers"]],
                        metrics={} if seed is None else {"seed": seed, "vocabulary_size": len(tokens)})
    db.session.add(record)
    db.session.commit()
    try:
        record.queue_task_id = queue.enqueue_submission(record.id)
    except Exception:  # the queue is down: nothing may stay recorded as queued
        db.session.delete(record)
        db.session.commit()
        remove_folder(submission_id)
        raise
    db.session.commit()
    return record


def remove_folder(submission_id: str) -> None:
    """Delete a submission's folder (and submissions/ itself once empty)."""
    folder = folder_of(submission_id)
    shutil.rmtree(folder, ignore_errors=True)
    try:
        folder.parent.rmdir()
    except OSError:  # other submissions are kept there
        pass


def find_submission(submission_id: str) -> Submission:
    """The submission `submission_id` or a bilingual 404."""
    found = (db.session.get(Submission, submission_id)
             if isinstance(submission_id, str) and len(submission_id) <= 12 else None)
    if found is None:
        raise InvalidInput("There is no submission %(id)s.", 404, id=str(submission_id)[:12])
    return found


def list_submissions(dataset: str | None = None, mine: bool = False, limit: int = 200) -> list[Submission]:
    """Submissions, newest first, of one data set / this browser when given."""
    query = select(Submission)
    if dataset:
        query = query.where(Submission.dataset == dataset)
    if mine:
        query = query.where(Submission.owner == (owner_token(create=False) or "-"))
    return list(db.session.scalars(query.order_by(Submission.created_at.desc()).limit(limit)))


def _figure(item, key: str) -> float | None:
    """metrics[key] of a finished run or a scored submission, else None."""
    done = item.status == (SCORED if isinstance(item, Submission) else FINISHED)
    value = (item.metrics or {}).get(key)
    return float(value) if done and isinstance(value, (int, float)) and not isinstance(value, bool) else None


def accuracy_of(item) -> float | None:
    """The test accuracy of a finished run or a scored submission, else None."""
    return _figure(item, "test_accuracy")


def perplexity_of(item) -> float | None:
    """The test perplexity of a finished text run or a scored text submission, else None."""
    return _figure(item, "test_perplexity")


def top1_of(item) -> float | None:
    """The next-token top-1 test accuracy of a finished text run or a scored text submission, else None."""
    return _figure(item, "test_top1_accuracy")


def leaderboard_rows(dataset: str, board_runs: list[Run], text: bool = False) -> list[dict]:
    """Bench runs and submissions of a data set in one list, best first (test accuracy; a text
    data set's: lowest test perplexity), then the others newest first: {"kind": "run" |
    "submission", "item", "accuracy"} (text: "perplexity")."""
    subs = db.session.scalars(select(Submission).where(Submission.dataset == dataset)
                              .order_by(Submission.created_at.desc())).all()
    field, score = ("perplexity", perplexity_of) if text else ("accuracy", accuracy_of)
    rows = [{"kind": "run", "item": r, field: score(r)} for r in board_runs]
    rows += [{"kind": "submission", "item": s, field: score(s)} for s in subs]

    def key(row):
        created = as_utc(row["item"].created_at).timestamp() if row["item"].created_at else 0.0
        value = row[field]
        return (0, value if text else -value, -created) if value is not None else (1, 0.0, -created)

    return sorted(rows, key=key)


RESULT_COLUMNS = ("nickname", "dataset", "test_accuracy", "params", "kind", "id", "time", "test_perplexity")


def best_results(dataset: str | None = None) -> list[list]:
    """One row per student nickname and data set: the best finished run or scored submission
    (highest test accuracy; a text data set's: lowest test perplexity, with its next-token top-1
    accuracy as test_accuracy; kind "run" or "submission"; time: when it finished), by nickname
    then data set."""
    runs_q = select(Run).where(Run.status == FINISHED, Run.nickname != "")
    subs_q = select(Submission).where(Submission.status == SCORED, Submission.nickname != "")
    if dataset:
        runs_q, subs_q = runs_q.where(Run.dataset == dataset), subs_q.where(Submission.dataset == dataset)
    text = set(text_datasets())
    best: dict[tuple[str, str], tuple[float, object]] = {}
    for item in [*db.session.scalars(runs_q), *db.session.scalars(subs_q)]:
        # one order for both: the larger key is better
        value = perplexity_of(item) if item.dataset in text else accuracy_of(item)
        key = (item.nickname, item.dataset)
        if value is not None:
            rank = -value if item.dataset in text else value
            if key not in best or rank > best[key][0]:
                best[key] = (rank, item)
    rows = []
    for (nickname, slug), (_, item) in sorted(best.items(), key=lambda kv: (kv[0][0].casefold(), kv[0][1])):
        finished = as_utc(item.finished_at)
        accuracy = top1_of(item) if slug in text else accuracy_of(item)
        perplexity = perplexity_of(item) if slug in text else None
        rows.append([nickname, slug, "" if accuracy is None else round(accuracy, 6),
                     item.params if item.params is not None else "",
                     "submission" if isinstance(item, Submission) else "run", item.id,
                     finished.isoformat(timespec="seconds") if finished else "",
                     "" if perplexity is None else round(perplexity, 4)])
    return rows
