"""Who may train on the lab bench: open to anyone, only browsers that entered a valid class
code, or closed. Trying the served models stays open to everyone whatever the mode.

Class codes expire and can be rotated (a new code revokes the old ones). A browser that enters a
valid code keeps the code's id in its session; `may_train` checks it again on every submit, so a
rotated or expired code stops new runs at once. A signed-in instructor may always train.
"""

from __future__ import annotations

import datetime as dt
import secrets

from flask import Blueprint, redirect, render_template, request, session, url_for
from flask_login import current_user
from sqlalchemy import select, update

from app.errors import InvalidInput
from app.instructor.auth import is_local_path
from app.instructor.settings import ACCESS_MODE, get_setting, set_setting
from app.records import ClassCode, as_utc, db, utcnow

bp = Blueprint("access", __name__)

OPEN, CODE, CLOSED = "open", "code", "closed"
MODES = (OPEN, CODE, CLOSED)
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I: read aloud in class
SESSION_KEY = "class_code"


def access_mode() -> str:
    """The current mode: "open", "code" or "closed" (open until the instructor chooses)."""
    mode = get_setting(ACCESS_MODE, OPEN)
    return mode if mode in MODES else OPEN


def set_access_mode(mode: str) -> None:
    """Choose who may train; InvalidInput for an unknown mode."""
    if mode not in MODES:
        raise InvalidInput("Unknown access mode %(mode)s.", mode=repr(mode))
    set_setting(ACCESS_MODE, mode)


def new_class_code(hours: float = 24) -> ClassCode:
    """A fresh code valid for `hours`; every older code is revoked (rotation)."""
    if not 0 < hours <= 24 * 365:
        raise InvalidInput("A code lasts between a few minutes and a year.")
    db.session.execute(update(ClassCode).where(ClassCode.revoked.is_(False)).values(revoked=True))
    raw = "".join(secrets.choice(CODE_ALPHABET) for _ in range(8))
    row = ClassCode(code=f"{raw[:4]}-{raw[4:]}", expires_at=utcnow() + dt.timedelta(hours=hours))
    db.session.add(row)
    db.session.commit()
    return row


def revoke_codes() -> None:
    """Revoke every code (browsers that entered one can no longer train in code mode)."""
    db.session.execute(update(ClassCode).where(ClassCode.revoked.is_(False)).values(revoked=True))
    db.session.commit()


def current_code() -> ClassCode | None:
    """The newest code still valid, or None."""
    row = db.session.scalar(select(ClassCode).where(ClassCode.revoked.is_(False))
                            .order_by(ClassCode.id.desc()))
    return row if is_valid(row) else None


def is_valid(row: ClassCode | None) -> bool:
    """True for a code neither revoked nor expired."""
    return row is not None and not row.revoked and as_utc(row.expires_at) > utcnow()


def has_valid_code() -> bool:
    """True when this browser entered a class code that is still valid."""
    code_id = session.get(SESSION_KEY)
    return bool(code_id) and is_valid(db.session.get(ClassCode, code_id))


def normalize_code(text: str) -> str:
    """A code as typed ("abcd 2345", "ABCD-2345") in its stored form."""
    raw = "".join(ch for ch in (text or "").upper() if ch.isalnum())
    return f"{raw[:4]}-{raw[4:]}" if len(raw) == 8 else raw


def may_train():
    """True when this browser may start a run; otherwise an InvalidInput (403) saying why, in
    both languages, for the caller to raise or show."""
    if current_user.is_authenticated:
        return True
    mode = access_mode()
    if mode == OPEN or (mode == CODE and has_valid_code()):
        return True
    if mode == CLOSED:
        return InvalidInput("Training is closed on this server for now; trying the models stays open.", 403)
    return InvalidInput("Training needs the class code your instructor gave you: enter it at /lab/join.", 403)


def needs_class_code() -> bool:
    """True when training needs a class code and this browser has not entered a valid one
    (the bench then shows the join form)."""
    return not current_user.is_authenticated and access_mode() == CODE and not has_valid_code()


@bp.route("/lab/join", methods=["GET", "POST"])
def join():
    """The page where a student enters the class code."""
    error, status, joined = None, 200, False
    if request.method == "POST":
        row = db.session.scalar(select(ClassCode).where(ClassCode.code == normalize_code(request.form.get("code", ""))))
        if is_valid(row):
            session[SESSION_KEY] = row.id
            joined = True
            nxt = request.args.get("next", "")
            if is_local_path(nxt):
                return redirect(nxt)
        else:
            error = InvalidInput("This class code is not valid (wrong, expired or replaced by a new one).", 403)
            status = 403
    else:
        joined = has_valid_code()
    return render_template("instructor/join.html", error=error, joined=joined, mode=access_mode(),
                           lab_url=url_for("lab.bench")), status
