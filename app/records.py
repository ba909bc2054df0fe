"""Run records (SQLAlchemy): one row per lab-bench training run, read by the web, written by workers.

The web enqueues a run and from then on only reads its row; the Huey consumer that trains it
writes status, progress, history and metrics into the same row (microblog's "Background Jobs").
Default database: `sqlite:///<instance>/lstmlab.sqlite3`; `LSTMLAB_DATABASE_URL` takes any
SQLAlchemy URL (PostgreSQL for several machines). The schema comes from the Alembic chain in
`app/migrations/` (Flask-Migrate), brought up to date by `init_app` under a lock, so a fresh
instance folder, a web worker and a consumer all start on the same schema.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import logging
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask, url_for
from flask_login import UserMixin
from flask_migrate import Migrate
from flask_migrate import upgrade as migrate_upgrade
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy import JSON, Boolean, DateTime, Float, Index, Integer, String, Text, event, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.errors import InvalidInput, Msgid

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
QUEUED, RUNNING, FINISHED, FAILED, CANCELLED, INTERRUPTED = (
    "queued", "running", "finished", "failed", "cancelled", "interrupted")
ACTIVE = (QUEUED, RUNNING, INTERRUPTED)  # still waiting for, or holding, a consumer
DONE = (FINISHED, FAILED, CANCELLED)


class Base(DeclarativeBase):
    """Declarative base shared by every table (the lab's and the instructor console's)."""


db = SQLAlchemy(model_class=Base)
migrate = Migrate()


def utcnow() -> dt.datetime:
    """The current time in UTC (timezone-aware)."""
    return dt.datetime.now(dt.timezone.utc)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    """`value` with UTC attached (SQLite hands datetimes back naive)."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.timezone.utc)


def iso(value: dt.datetime | None) -> str | None:
    """ISO 8601 text of a stored datetime, or None."""
    value = as_utc(value)
    return value.isoformat(timespec="seconds") if value else None


def new_run_id() -> str:
    """A fresh run id: 12 hex characters."""
    return secrets.token_hex(6)


# Records written before reasons were stored as msgids keep their two texts under this msgid.
LEGACY_REASON = "%(en)s"


def reason_values(reason: InvalidInput) -> dict:
    """The columns that store `reason` (a msgid and its fields, a Msgid field marked as such):
    for `update(...).values(**reason_values(r))` or a record's attributes."""
    params = {k: {"msgid": str(v)} if isinstance(v, Msgid) else v for k, v in reason.params.items()}
    return {"error_msgid": reason.msgid, "error_params": params}


class HasReason:
    """A record's failure or refusal reason, stored as a gettext msgid and its fields and shown in
    the reader's language."""

    error_msgid: Mapped[str | None] = mapped_column(Text, nullable=True)
    error_params: Mapped[dict | None] = mapped_column(JSON, nullable=True)

    @property
    def reason(self) -> InvalidInput | None:
        """The stored reason, or None."""
        if not self.error_msgid:
            return None
        params = {k: Msgid(v["msgid"]) if isinstance(v, dict) and set(v) == {"msgid"} else v
                  for k, v in (self.error_params or {}).items()}
        return InvalidInput(self.error_msgid, **params)

    @property
    def error(self) -> dict | None:
        """The reason in both languages, or None."""
        if not self.error_msgid:
            return None
        if self.error_msgid == LEGACY_REASON:
            return dict(self.error_params or {})
        reason = self.reason
        return {"en": reason.en, "vi": reason.vi}

    def clear_reason(self) -> None:
        """Forget the reason (a run queued again)."""
        self.error_msgid, self.error_params = None, None


class Run(HasReason, db.Model):
    """One training run of the lab bench."""

    __tablename__ = "runs"

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_run_id)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    recipe: Mapped[dict] = mapped_column(JSON, default=dict)
    settings: Mapped[dict] = mapped_column(JSON, default=dict)
    nickname: Mapped[str] = mapped_column(String(40), default="")
    owner: Mapped[str] = mapped_column(String(64), index=True, default="")
    client: Mapped[str] = mapped_column(String(64), index=True, default="")
    status: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    queue_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    progress: Mapped[dict] = mapped_column(JSON, default=dict)
    history: Mapped[list] = mapped_column(JSON, default=list)
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)
    params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    seconds: Mapped[float | None] = mapped_column(Float, nullable=True)  # training time, all attempts
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    published_slug: Mapped[str | None] = mapped_column(String(64), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # times a consumer started it
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)  # host:pid training it
    number: Mapped[int | None] = mapped_column(Integer, nullable=True)  # n-th run on its data set (set on insert)
    __table_args__ = (Index("ix_runs_dataset_number", "dataset", "number"),)

    def links(self) -> dict:
        """The API addresses of this run (absolute URLs; needs a request or SERVER_NAME)."""
        endpoints = {"self": "get_run", "events": "run_events", "card": "run_card", "predict": "predict_run",
                     "cancel": "cancel_run"}
        return {key: url_for(f"lab_api.{name}", run_id=self.id, _external=True) for key, name in endpoints.items()}

    def to_dict(self, links: bool = True) -> dict[str, Any]:
        """The run as the JSON API shows it (no owner token, no client address)."""
        out = {"id": self.id, "dataset": self.dataset, "recipe": self.recipe or {},
               "settings": self.settings or {}, "nickname": self.nickname or "", "status": self.status,
               "created_at": iso(self.created_at), "started_at": iso(self.started_at),
               "finished_at": iso(self.finished_at), "progress": self.progress or {},
               "history": self.history or [], "metrics": self.metrics or {}, "params": self.params,
               "seconds": self.seconds, "error": self.error, "cancel_requested": bool(self.cancel_requested),
               "published_slug": self.published_slug, "attempts": self.attempts or 0}
        if links:
            out["links"] = self.links()
        return out


@event.listens_for(Run, "before_insert")
def _number_run(mapper, connection, target: Run) -> None:
    """Give a new run the next number on its data set, computed inside its own INSERT (one
    statement, so two runs submitted at once on SQLite cannot take the same number)."""
    if target.number is None:
        target.number = (select(func.coalesce(func.max(Run.number), 0) + 1)
                         .where(Run.dataset == target.dataset).scalar_subquery())


# ----------------------------------------------------------------------------- set-up
@event.listens_for(Engine, "connect")
def _sqlite_wal(dbapi_connection, connection_record) -> None:
    """SQLite in WAL mode: web readers never wait for the consumer writing progress."""
    if type(dbapi_connection).__module__.startswith("sqlite3"):
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()


def database_url(app: Flask) -> str:
    """LSTMLAB_DATABASE_URL (config or environment), else a SQLite file in the instance folder."""
    return (app.config.get("LSTMLAB_DATABASE_URL") or os.environ.get("LSTMLAB_DATABASE_URL")
            or "sqlite:///" + str(Path(app.instance_path) / "lstmlab.sqlite3"))


@contextlib.contextmanager
def schema_lock(app: Flask):
    """An exclusive lock held while the schema is upgraded: a file lock in the instance folder
    (processes of one machine), plus a PostgreSQL advisory lock when the database is shared."""
    path = Path(app.instance_path) / ".schema.lock"
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            if db.engine.dialect.name == "postgresql":
                with db.engine.connect() as conn:
                    conn.exec_driver_sql("SELECT pg_advisory_lock(727301)")
                    try:
                        yield
                    finally:
                        conn.exec_driver_sql("SELECT pg_advisory_unlock(727301)")
                        conn.commit()
            else:
                yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def upgrade_schema(app: Flask) -> None:
    """Apply every migration not yet applied (a no-op when the schema is current)."""
    with app.app_context(), schema_lock(app):
        migrate_upgrade(directory=str(MIGRATIONS_DIR))


def init_app(app: Flask, upgrade: bool = True) -> None:
    """Bind the database to `app` and bring its schema up to date (LSTMLAB_AUTO_UPGRADE=0: don't)."""
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config["SQLALCHEMY_DATABASE_URI"] = database_url(app)
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite"):
        # a consumer writes while web workers read: wait for a lock instead of failing at once
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"connect_args": {"timeout": 30}})
    else:
        app.config.setdefault("SQLALCHEMY_ENGINE_OPTIONS", {"pool_pre_ping": True})
    db.init_app(app)
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR))
    if upgrade and str(app.config["LSTMLAB_AUTO_UPGRADE"]) not in ("0", "false", "False"):
        upgrade_schema(app)


# ----------------------------------------------------------------------------- instructor tables
# Instructor accounts, their API tokens (stored as SHA-256 hashes only), the data sets they
# brought, the console's settings (queue pause, lab limits, access mode) and class codes.


def new_session_token() -> str:
    """A random token naming an instructor's sign-ins (rotated by a new password: old sessions end)."""
    return secrets.token_hex(16)


class Instructor(UserMixin, db.Model):
    """An instructor account (created with `flask --app wsgi instructor add NAME`)."""

    __tablename__ = "instructors"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    session_token: Mapped[str] = mapped_column(String(32), default=new_session_token)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)

    def get_id(self) -> str:
        """Flask-Login's id: the session token, so a password change signs every browser out."""
        return self.session_token


class LoginDelay(db.Model):
    """Wrong passwords in a row for one name as typed (known or not) from one address, and when
    that pair may try again (see app/instructor/delays.py)."""

    __tablename__ = "login_delays"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    address: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    retry_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)


class ApiToken(db.Model):
    """A bearer token of one instructor: only its SHA-256 is stored; it expires, and revoked or
    expired tokens stay listed."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    instructor_id: Mapped[int] = mapped_column(Integer, db.ForeignKey("instructors.id", ondelete="CASCADE"),
                                               index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True, index=True)
    prefix: Mapped[str] = mapped_column(String(12))  # the first characters, to tell tokens apart
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))  # refused from then on


class Dataset(db.Model):
    """A data set an instructor brought (its images live in <instance>/datasets/<slug>/)."""

    __tablename__ = "datasets"

    slug: Mapped[str] = mapped_column(String(40), primary_key=True)
    title_en: Mapped[str] = mapped_column(String(120))
    title_vi: Mapped[str] = mapped_column(String(120))
    created_by: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    manifest: Mapped[dict] = mapped_column(JSON, default=dict)  # the folder's dataset.json


class Setting(db.Model):
    """One console setting (queue_paused, lab_limits, access_mode) as a JSON value."""

    __tablename__ = "settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[Any] = mapped_column(JSON, nullable=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)


class ClassCode(db.Model):
    """A code the instructor hands out: browsers that enter it may train while it is valid."""

    __tablename__ = "class_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    revoked: Mapped[bool] = mapped_column(Boolean, default=False)


# ----------------------------------------------------------------------------- submissions
# A student's own .keras model for a data set: its own table, not a Run, because a submission has
# no recipe, settings, epochs or training time, and every engine rule over runs (the consumer's
# claim and resume, the stale sweep, the measured training speed, the run limits) must not touch it.
SCORING, SCORED, REFUSED = "scoring", "scored", "refused"
SUBMISSION_ACTIVE = (QUEUED, SCORING)


class Submission(HasReason, db.Model):
    """One uploaded model: checked by the web, scored on the data set's test split by a consumer."""

    __tablename__ = "submissions"

    id: Mapped[str] = mapped_column(String(12), primary_key=True, default=new_run_id)
    dataset: Mapped[str] = mapped_column(String(64), index=True)
    nickname: Mapped[str] = mapped_column(String(40), default="")
    owner: Mapped[str] = mapped_column(String(64), index=True, default="")
    client: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16), index=True, default=QUEUED)
    queue_task_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    filename: Mapped[str] = mapped_column(String(120), default="")
    size_bytes: Mapped[int] = mapped_column(Integer, default=0)
    notebook: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    params: Mapped[int | None] = mapped_column(Integer, nullable=True)
    layers: Mapped[list] = mapped_column(JSON, default=list)  # [{name, class, output_shape, params}]
    metrics: Mapped[dict] = mapped_column(JSON, default=dict)  # test_accuracy, test_count
    worker: Mapped[str | None] = mapped_column(String(128), nullable=True)

    def to_dict(self) -> dict[str, Any]:
        """The submission as the JSON API shows it (no owner token, no client address)."""
        return {"id": self.id, "kind": "submission", "dataset": self.dataset, "nickname": self.nickname or "",
                "status": self.status, "filename": self.filename, "size_bytes": self.size_bytes,
                "notebook": bool(self.notebook), "created_at": iso(self.created_at),
                "started_at": iso(self.started_at), "finished_at": iso(self.finished_at), "params": self.params,
                "layers": self.layers or [], "metrics": self.metrics or {}, "error": self.error,
                "links": {"self": url_for("lab_submit_api.get_submission", submission_id=self.id, _external=True),
                          "page": url_for("lab_submit.submission_page", submission_id=self.id, _external=True)}}
