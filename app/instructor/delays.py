"""Delays after wrong passwords, per (name as typed, client address), instead of a lock-out: the
wait doubles up to LOGIN_DELAY_MAX_SECONDS, another address is never slowed, unknown names wait
exactly like known ones.
Details: docs/DESIGN.md, "Sign-in delays (app/instructor/delays.py)"."""

from __future__ import annotations

import datetime as dt
import math

from flask import current_app, request
from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError

from app.errors import InvalidInput
from app.records import LoginDelay, as_utc, db, utcnow

NAME_CHARS = 64  # the longest instructor name; longer typed names are cut to this
STALE = dt.timedelta(days=1)


def client_address() -> str:
    """The address the delay is kept for (behind a proxy: TRUSTED_PROXIES sets ProxyFix)."""
    return (request.remote_addr or "unknown")[:64]


def _row(name: str) -> LoginDelay | None:
    return db.session.get(LoginDelay, (name[:NAME_CHARS], client_address()))


def check_delay(name: str) -> None:
    """InvalidInput (429) while `name` must still wait at this address."""
    row = _row(name)
    retry = as_utc(row.retry_at) if row is not None else None
    if retry is not None and retry > utcnow():
        seconds = max(1, math.ceil((retry - utcnow()).total_seconds()))
        raise InvalidInput("Too many wrong passwords for this name from your address: wait %(seconds)s "
                           "seconds, then try again.", 429, seconds=seconds)


def delay_after(failures: int) -> float:
    """The wait in seconds after `failures` wrong passwords in a row (0 while they are free)."""
    cfg = current_app.config
    over = failures - int(cfg["LOGIN_FREE_TRIES"])
    return 0.0 if over <= 0 else min(float(cfg["LOGIN_DELAY_MAX_SECONDS"]), 2.0 ** (over - 1))


def record_failure(name: str) -> None:
    """Count a wrong password for `name` at this address and start its wait. The count is one
    UPDATE (parallel tries from one address all count); the first failure of a pair INSERTs, and
    a parallel try that inserted first turns that into the UPDATE (no 500 on the primary key)."""
    now, key = utcnow(), {"name": name[:NAME_CHARS], "address": client_address()}
    if not _count(key, now):
        try:
            db.session.add(LoginDelay(**key, failures=1, updated_at=now))
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            _count(key, now)
    row = db.session.get(LoginDelay, (key["name"], key["address"]), populate_existing=True)
    wait = delay_after(row.failures)
    row.retry_at = now + dt.timedelta(seconds=wait) if wait else None
    db.session.execute(delete(LoginDelay).where(LoginDelay.updated_at < now - STALE),
                       execution_options={"synchronize_session": False})
    db.session.commit()


def _count(key: dict, now: dt.datetime) -> bool:
    """Add one failure to the pair's row; False when it has none yet."""
    done = db.session.execute(update(LoginDelay).where(LoginDelay.name == key["name"], LoginDelay.address == key["address"])
                              .values(failures=LoginDelay.failures + 1, updated_at=now),
                              execution_options={"synchronize_session": False})
    db.session.commit()
    return bool(done.rowcount)


def clear_delay(name: str, everywhere: bool = False) -> None:
    """Forget `name`'s wrong passwords at this address (a right password), or at every address
    (a new password set on the server)."""
    query = delete(LoginDelay).where(LoginDelay.name == name[:NAME_CHARS])
    if not everywhere:
        query = query.where(LoginDelay.address == client_address())
    db.session.execute(query)
    db.session.commit()
