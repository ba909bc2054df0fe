"""Security for the web app: response headers, CSRF on the HTML forms, the rate limiter, uploads
kept in memory, and the start-up checks (secret key, no debug or TESTING under gunicorn).

`create_app` calls `init_app` first, so a server that cannot start safely refuses before it
loads models. Routes declare their own rate limits with `limited(...)` (app/views/limits.py);
`apply_route_limits` installs them on the app's limiter once every blueprint is registered.
The secret key is FLASK_SECRET_KEY, else one kept in the instance folder (`secret_key`, 0600).
"""

from __future__ import annotations

import io
import logging
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from flask import Flask, Request, current_app, has_request_context, request
from flask.json.provider import DefaultJSONProvider
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFProtect

from app.config import Config
from app.errors import InsecureConfiguration

log = logging.getLogger(__name__)

CONTENT_SECURITY_POLICY = "; ".join([
    "default-src 'self'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data: blob:",
    "connect-src 'self'",
    "object-src 'none'",
    "base-uri 'none'",
    "form-action 'self'",
    "frame-ancestors 'none'",
])
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate CSP 2
}
HSTS = "max-age=31536000"
SECRET_KEY_FILE = "secret_key"

csrf = CSRFProtect()


def under_gunicorn() -> bool:
    """True inside a gunicorn master or worker (the arbiter sets SERVER_SOFTWARE)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")


def check_startup(app: Flask) -> None:
    """No debug and no TESTING under gunicorn; a real SECRET_KEY (FLASK_SECRET_KEY, else the
    instance folder's) outside testing."""
    if under_gunicorn() and app.debug:
        log.warning("debug mode requested under gunicorn: turned off")
        app.debug = False
    if under_gunicorn() and app.testing:
        raise InsecureConfiguration(
            "refusing to start with TESTING under gunicorn: it turns off CSRF protection and rate "
            "limits (unset FLASK_TESTING)")
    key = app.config.get("SECRET_KEY")
    if (not key or key == Config.SECRET_KEY) and not app.testing:
        app.config["SECRET_KEY"] = instance_secret_key(Path(app.instance_path))


def instance_secret_key(instance: Path) -> str:
    """The key kept in `instance/secret_key`, generated (mode 0600) on first use; safe when
    several workers start at once (the file appears whole or not at all)."""
    path = instance / SECRET_KEY_FILE
    try:
        os.makedirs(instance, exist_ok=True)
        if not path.exists():
            tmp = instance / f".{SECRET_KEY_FILE}.{os.getpid()}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_hex(32) + "\n")
                fh.flush()
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)  # fails if another worker got there first: keep theirs
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links (some volume drivers): rename
                if not path.exists():
                    os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        if path.stat().st_mode & 0o077 and path.stat().st_uid == os.getuid():
            path.chmod(0o600)
        key = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise InsecureConfiguration(
            f"cannot keep a secret key in the instance folder {instance} ({exc.__class__.__name__}: "
            f"{exc}): make it writable, or set FLASK_SECRET_KEY to a long random value") from None
    if len(key) < 32:
        raise InsecureConfiguration(f"{path} holds no usable key: delete it, or set FLASK_SECRET_KEY")
    return key


def configured_limit(key: str):
    """The limit `key` of the app's configuration (a Flask-Limiter rate string), read per request."""
    return lambda: current_app.config[key]


@dataclass(frozen=True)
class RouteLimit:
    """One rate limit of a route: the configuration key of its rate (which names its scope, shared
    by every route that declares it), when a request is exempt, and what a request costs."""

    key: str  # e.g. RATELIMIT_GENERATE, scope "generate"
    exempt_when: Callable[[], bool] | None = None
    cost: Callable[[], int] | int = 1


def limited(*limits: RouteLimit):
    """Declare a view's rate limits (installed per app by `apply_route_limits`)."""
    def mark(view):
        view.route_limits = limits
        return view
    return mark


def apply_route_limits(app: Flask) -> None:
    """Wrap every registered view that declares `limited(...)` limits with the app's own limiter.

    The limiter is built per app, not at import: Flask-Limiter keeps its storage and its enabled
    flag on the instance, so a module-level limiter would take them from the last app built."""
    limiter = app.extensions["security_limiter"]
    for endpoint, view in list(app.view_functions.items()):
        for rule in getattr(view, "route_limits", ()):
            scope = rule.key.removeprefix("RATELIMIT_").lower().replace("_", "-")
            view = limiter.shared_limit(configured_limit(rule.key), scope=scope,
                                        exempt_when=rule.exempt_when, cost=rule.cost)(view)
        app.view_functions[endpoint] = view


def https() -> bool:
    """Whether this response goes out over HTTPS: the HTTPS setting, or the request's own scheme
    (through ProxyFix, X-Forwarded-Proto of a trusted proxy)."""
    return bool(current_app.config.get("HTTPS")) or (has_request_context() and request.is_secure)


def add_headers(response):
    """The security headers on every response (pages, API, static files, errors); over HTTPS,
    HSTS and `Secure` on the cookies set so far (the language cookie)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if https():
        response.headers.setdefault("Strict-Transport-Security", HSTS)
        cookies = response.headers.getlist("Set-Cookie")
        response.headers.setlist("Set-Cookie", [c if "; Secure" in c else c + "; Secure" for c in cookies])
    return response


class SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie session, its cookie `Secure` also when the request came over HTTPS."""

    def get_cookie_secure(self, app) -> bool:
        """Secure when configured (SESSION_COOKIE_SECURE, HTTPS) or when this request is HTTPS."""
        return super().get_cookie_secure(app) or https()


class BoundedJSONProvider(DefaultJSONProvider):
    """Flask's JSON, where a body nested too deep to parse is invalid JSON (a 400), not a RecursionError."""

    def loads(self, s, **kwargs):
        """Parse `s`; ValueError when it nests past Python's recursion limit."""
        try:
            return super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None


class InMemoryRequest(Request):
    """Flask's request, its multipart files read into memory (at most MAX_CONTENT_LENGTH) instead
    of werkzeug's temporary file for parts over 500 KB: uploads never touch the disk."""

    def _get_file_stream(self, total_content_length, content_type, filename=None, content_length=None):
        return io.BytesIO()


def init_app(app: Flask) -> None:
    """Install the checks, headers, CSRF protection, rate limiter and in-memory uploads on `app`."""
    check_startup(app)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:  # Flask's default is None, not absent
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    if app.config.get("HTTPS"):
        app.config["SESSION_COOKIE_SECURE"] = True
    app.config.setdefault("WTF_CSRF_ENABLED", not app.testing)
    app.config.setdefault("RATELIMIT_ENABLED", not app.testing)
    app.request_class = InMemoryRequest
    app.json = BoundedJSONProvider(app)
    app.session_interface = SessionInterface()
    app.after_request(add_headers)
    csrf.init_app(app)
    limiter = Limiter(get_remote_address)
    limiter.init_app(app)
    app.extensions["security_limiter"] = limiter
