"""Instructor sign-in: Flask-Login sessions, salted password hashes (werkzeug's scrypt), a
per-address rate limit and growing delays after repeated wrong passwords (no lock-out),
sessions that end after a fixed time or when idle, API tokens that expire, and the one guard
every /instructor route passes through (`bp.before_request`).

Refusals: an anonymous browser is sent to the sign-in page; a student's browser (it carries the
lab bench's owner cookie or a class code) gets 403; the JSON API answers 401 without a valid
bearer token (see api.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import time
from urllib.parse import urlsplit

from flask import Flask, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import gettext as _
from flask_login import LoginManager, current_user, login_user, logout_user
from sqlalchemy import select
from werkzeug.security import check_password_hash, generate_password_hash

from app.errors import InvalidInput
from app.instructor import delays
from app.instructor.blueprints import bp
from app.records import ApiToken, Instructor, as_utc, db, new_session_token, utcnow
from app.security import RouteLimit, limited

login_manager = LoginManager()
login_manager.login_view = "instructor.login"
login_manager.session_protection = "strong"  # a stolen cookie from another address/agent is dropped

PUBLIC_ENDPOINTS = frozenset({"instructor.login"})  # the only /instructor page open to everyone
STUDENT_COOKIES = ("lab_owner",)  # the lab bench's owner cookie: this browser is a student's
STUDENT_SESSION_KEYS = ("lab_owner", "class_code")
MIN_PASSWORD = 10
# A password hash computed once, compared against when the name is unknown (same time either way).
_DUMMY_HASH = generate_password_hash("not-a-real-password")


def check_password_strength(password: str) -> None:
    """InvalidInput for a password too short to be one."""
    if len(password) < MIN_PASSWORD:
        raise InvalidInput("The password must have at least %(min_password)s characters.", min_password=MIN_PASSWORD)


@login_manager.user_loader
def load_instructor(token: str) -> Instructor | None:
    """The instructor whose current session token is `token` (None after a password change)."""
    return db.session.scalar(select(Instructor).where(Instructor.session_token == token))


def find_instructor(name: str) -> Instructor | None:
    """The instructor called `name`, or None."""
    return db.session.scalar(select(Instructor).where(Instructor.name == name))


def authenticate(name: str, password: str) -> Instructor:
    """The instructor when `password` is right; InvalidInput otherwise: 401 for a wrong name or
    password (the same answer for both), 429 while this name must wait at this address after
    repeated wrong passwords (app/instructor/delays.py; a known and an unknown name alike)."""
    name = name.strip()
    delays.check_delay(name)
    user = find_instructor(name)
    if user is None:
        check_password_hash(_DUMMY_HASH, password)  # no faster answer for an unknown name
    if user is None or not check_password_hash(user.password_hash, password):
        delays.record_failure(name)
        raise wrong_password()
    delays.clear_delay(name)
    user.last_login_at = utcnow()
    db.session.commit()
    return user


def change_password(user: Instructor, password: str) -> int:
    """Give `user` a new password (InvalidInput when too short): every browser signed in as
    `user` is signed out (a new session token), every API token revoked, every sign-in delay of
    the name cleared. Returns how many tokens were revoked."""
    check_password_strength(password)
    user.password_hash = generate_password_hash(password)
    user.session_token = new_session_token()
    delays.clear_delay(user.name, everywhere=True)
    return revoke_tokens(user)


def wrong_password() -> InvalidInput:
    """The one answer for an unknown name or a wrong password (no hint which)."""
    return InvalidInput("Wrong name or password.", 401)


def is_student() -> bool:
    """True when this browser carries the lab bench's owner cookie or a class code."""
    return any(request.cookies.get(c) for c in STUDENT_COOKIES) or any(session.get(k) for k in STUDENT_SESSION_KEYS)


def session_expired() -> bool:
    """True when this sign-in is older than INSTRUCTOR_SESSION_HOURS or idle for INSTRUCTOR_IDLE_MINUTES."""
    cfg, now = current_app.config, time.time()
    since, seen = session.get("instructor_since", 0), session.get("instructor_seen", 0)
    return (now - since > float(cfg["INSTRUCTOR_SESSION_HOURS"]) * 3600
            or now - seen > float(cfg["INSTRUCTOR_IDLE_MINUTES"]) * 60)


def require_instructor():
    """login_required for the whole blueprint: sign-in page for anonymous browsers, 403 for a
    student's browser, and the end of a session that is too old or idle too long. Installed by
    `init_app` as the app's first before_request hook (for requests to this blueprint), so a
    refused request is answered before the CSRF check or an upload's body is even read."""
    if request.blueprint != bp.name or request.endpoint in PUBLIC_ENDPOINTS:
        return None
    if current_user.is_authenticated:
        if session_expired():
            logout_user()
            flash(_("Your session has ended; please sign in again."))
            return login_manager.unauthorized()
        session["instructor_seen"] = time.time()
        return None
    if is_student():
        raise InvalidInput("Only instructors can open this page.", 403)
    return login_manager.unauthorized()


def is_local_path(target: str | None) -> bool:
    """True for a path on this site ("/..."): no scheme, no host, no "//" or "/\\" (browsers
    read both as another host), so redirecting to it is no open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return False
    parts = urlsplit(target)
    return not parts.scheme and not parts.netloc


def not_a_post() -> bool:
    """Showing the sign-in form costs nothing against RATELIMIT_LOGIN; only a try does."""
    return request.method != "POST"


def start_session(user: Instructor) -> None:
    """Sign `user` in on a fresh session (no session fixation), its age and idle clocks at zero."""
    session.clear()
    login_user(user, remember=False)
    session["instructor_since"] = session["instructor_seen"] = time.time()


@bp.route("/login", methods=["GET", "POST"])
@limited(RouteLimit("RATELIMIT_LOGIN", exempt_when=not_a_post))
def login():
    """The sign-in form; a right name and password start a session."""
    error, status = None, 200
    if request.method == "POST":
        try:
            user = authenticate(request.form.get("name", ""), request.form.get("password", ""))
        except InvalidInput as exc:
            error, status = exc, exc.status
        else:
            start_session(user)
            target = request.args.get("next")
            return redirect(target if is_local_path(target) else url_for("instructor.console"))
    return render_template("instructor/login.html", error=error), status


@bp.post("/logout")
def logout():
    """End the session (a POST with the CSRF token: no sign-out by a link on another site) and
    rotate the instructor's session token, so a saved copy of the cookie no longer signs in."""
    if current_user.is_authenticated:
        current_user.session_token = new_session_token()
        db.session.commit()
    logout_user()
    session.pop("instructor_since", None)
    session.pop("instructor_seen", None)
    flash(_("You have signed out."))
    return redirect(url_for("instructor.login"))


def token_digest(token: str) -> str:
    """SHA-256 of an API token (tokens are 256-bit random: a fast hash cannot be brute-forced)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def init_app(app: Flask) -> None:
    """Flask-Login on `app`."""
    login_manager.init_app(app)
    app.before_request_funcs.setdefault(None, []).insert(0, require_instructor)
    login_manager.login_message = None  # the sign-in page says what to do; no untranslated flash


# ----------------------------------------------------------------------------- API tokens
TOKEN_PREFIX = "lstm_"


TOKEN_USE_RESOLUTION = dt.timedelta(minutes=1)  # last_used_at is written at most this often per token


def token_days(days=None) -> int:
    """How many days a new token lasts: `days` (a whole number, 1 to API_TOKEN_MAX_DAYS) or
    API_TOKEN_DAYS when not given; InvalidInput otherwise."""
    cfg = current_app.config
    most = int(cfg["API_TOKEN_MAX_DAYS"])
    if days is None or str(days).strip() == "":
        return min(int(cfg["API_TOKEN_DAYS"]), most)
    text = str(days).strip()
    if not (text.isascii() and text.isdigit() and len(text) <= 6) or not 1 <= int(text) <= most:
        raise InvalidInput("A token lasts a whole number of days, from 1 to %(most)s.", most=most)
    return int(text)


def issue_token(user: Instructor, days=None) -> str:
    """A new API token for `user`, valid `days` days (see `token_days`): returned once, only
    its hash is stored."""
    lifetime = token_days(days)
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(ApiToken(instructor_id=user.id, token_hash=token_digest(token), prefix=token[:12],
                            expires_at=utcnow() + dt.timedelta(days=lifetime)))
    db.session.commit()
    return token


def instructor_for_token(token: str) -> Instructor | None:
    """The instructor owning a valid token (not revoked, not expired), its use recorded at most
    once a minute; None for an unknown or revoked token; InvalidInput (401) for an expired one."""
    if not token:
        return None
    row = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token),
                                                   ApiToken.revoked_at.is_(None)))
    if row is None:
        return None
    now = utcnow()
    if as_utc(row.expires_at) <= now:
        raise InvalidInput("This API token expired on %(date)s: make a new one on the console's API tokens page "
                           "or with `flask --app wsgi instructor token NAME`.", 401,
                           date=as_utc(row.expires_at).date().isoformat())
    user = db.session.get(Instructor, row.instructor_id)
    last = as_utc(row.last_used_at)
    if user is not None and (last is None or now - last >= TOKEN_USE_RESOLUTION):
        row.last_used_at = now
        db.session.commit()
    return user


def token_state(row: ApiToken) -> str:
    """"revoked", "expired" or "active"."""
    if row.revoked_at is not None:
        return "revoked"
    return "expired" if as_utc(row.expires_at) <= utcnow() else "active"


def revoke_tokens(user: Instructor, prefix: str | None = None) -> int:
    """Revoke `user`'s tokens (those starting with `prefix`, or all); returns how many."""
    rows = db.session.scalars(select(ApiToken).where(ApiToken.instructor_id == user.id,
                                                     ApiToken.revoked_at.is_(None))).all()
    hit = [r for r in rows if prefix is None or r.prefix.startswith(prefix) or prefix.startswith(r.prefix)]
    for row in hit:
        row.revoked_at = utcnow()
    db.session.commit()
    return len(hit)
