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
from app.records import FINISHED, QUEUED, SCORED, SUBMISSION_ACTIVE, Run, Submission, as_utc, db, new_run_id

MB = 2 ** 20
MAX_NOTEBOOK_BYTES = 8 * MB
MODEL_FILE, NOTEBOOK_FILE = "model.keras", "notebook.ipynb"
CHUNK = 1 << 16


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
    find_dataset(dataset)
    nickname = recipes.validate_nickname(form.get("nickname"))
    model = files.get("model")
    if model is None or not model.filename:
        raise InvalidInput("Choose the .keras file of your model (saved with model.save(\"model.keras\")).")
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
        found = check_archive(folder / MODEL_FILE, limit, recurrent_only=rules["recurrent_only"],
                              max_params=rules["max_params"])
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
                        layers=[{"class": name} for name in found["layers"]], metrics={})
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


def accuracy_of(item) -> float | None:
    """The test accuracy of a finished run or a scored submission, else None."""
    done = item.status == (SCORED if isinstance(item, Submission) else FINISHED)
    acc = (item.metrics or {}).get("test_accuracy")
    return float(acc) if done and isinstance(acc, (int, float)) and not isinstance(acc, bool) else None


def leaderboard_rows(dataset: str, board_runs: list[Run]) -> list[dict]:
    """Bench runs and submissions of a data set in one list, best test accuracy first, then the
    others newest first: {"kind": "run" | "submission", "item", "accuracy"}."""
    subs = db.session.scalars(select(Submission).where(Submission.dataset == dataset)
                              .order_by(Submission.created_at.desc())).all()
    rows = [{"kind": "run", "item": r, "accuracy": accuracy_of(r)} for r in board_runs]
    rows += [{"kind": "submission", "item": s, "accuracy": accuracy_of(s)} for s in subs]

    def key(row):
        created = as_utc(row["item"].created_at).timestamp() if row["item"].created_at else 0.0
        return (0, -row["accuracy"], -created) if row["accuracy"] is not None else (1, 0.0, -created)

    return sorted(rows, key=key)


RESULT_COLUMNS = ("nickname", "dataset", "test_accuracy", "params", "kind", "id", "time")


def best_results(dataset: str | None = None) -> list[list]:
    """One row per student nickname and data set: the best finished run or scored submission
    (kind "run" or "submission"; time: when it finished), by nickname then data set."""
    runs_q = select(Run).where(Run.status == FINISHED, Run.nickname != "")
    subs_q = select(Submission).where(Submission.status == SCORED, Submission.nickname != "")
    if dataset:
        runs_q, subs_q = runs_q.where(Run.dataset == dataset), subs_q.where(Submission.dataset == dataset)
    best: dict[tuple[str, str], tuple[float, object]] = {}
    for item in [*db.session.scalars(runs_q), *db.session.scalars(subs_q)]:
        acc = accuracy_of(item)
        key = (item.nickname, item.dataset)
        if acc is not None and (key not in best or acc > best[key][0]):
            best[key] = (acc, item)
    rows = []
    for (nickname, slug), (acc, item) in sorted(best.items(), key=lambda kv: (kv[0][0].casefold(), kv[0][1])):
        finished = as_utc(item.finished_at)
        rows.append([nickname, slug, round(acc, 6), item.params if item.params is not None else "",
                     "submission" if isinstance(item, Submission) else "run", item.id,
                     finished.isoformat(timespec="seconds") if finished else ""])
    return rows
