"""Security for the web app: response headers, CSRF on the HTML forms, rate limits on the
generate routes, and the start-up checks (secret key, no debug under gunicorn).

`create_app` calls `init_app` once, right after the configuration is read, so a server with a
default secret key refuses to start before it spends time loading models.

- Headers on every response: a Content-Security-Policy that allows scripts only from our own
  files (`script-src 'self'`: no inline script), `frame-ancestors 'none'`, `nosniff`, and a
  Referrer-Policy. Images may be `data:` URLs (the preprocessed picture the LSTM read).
- CSRF (Flask-WTF): every HTML form POST carries `csrf_token`; the JSON API under /api/ is exempt
  (it holds no session state a forged request could abuse), so curl and scripts keep working.
- Rate limit (Flask-Limiter, in-memory, per client address): one shared budget for every
  generate request, the API's and the text pages' form posts, from `RATELIMIT_GENERATE`
  (env `FLASK_RATELIMIT_GENERATE`, e.g. "30 per minute"). In-memory storage counts per gunicorn
  worker, so the effective limit is up to workers × the setting. Off under TESTING unless
  `RATELIMIT_ENABLED` is set. Behind a reverse proxy every client has the proxy's address:
  wrap the app in werkzeug's ProxyFix there, or all clients share one budget.
"""

from __future__ import annotations

import logging
import os

from flask import Flask, current_app, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address
from flask_wtf.csrf import CSRFError, CSRFProtect

from app.config import Config
from app.errors import InvalidInput
from app.i18n import N_
from app.tasks import TEXT

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
DEFAULT_GENERATE_LIMIT = "30 per minute"
CSRF_MESSAGE = N_("The form has expired or is not valid. Reload the page and try again.")

csrf = CSRFProtect()


class InsecureConfiguration(RuntimeError):
    """The server was asked to start with settings that are only safe on a developer's machine."""


def under_gunicorn() -> bool:
    """True inside a gunicorn master or worker (the arbiter sets SERVER_SOFTWARE)."""
    return os.environ.get("SERVER_SOFTWARE", "").startswith("gunicorn")


def check_startup(app: Flask) -> None:
    """No debug mode under gunicorn; no default or empty SECRET_KEY outside testing and debug."""
    if under_gunicorn() and app.debug:
        log.warning("debug mode requested under gunicorn: turned off")
        app.debug = False
    key = app.config.get("SECRET_KEY")
    if (not key or key == Config.SECRET_KEY) and not (app.testing or app.debug):
        raise InsecureConfiguration(
            "refusing to start with the default SECRET_KEY: set FLASK_SECRET_KEY to a long random "
            "value (`make serve` makes one: python -c 'import secrets; print(secrets.token_hex(32))')")


def is_generate_request() -> bool:
    """A request that runs a text generator: the API's generate route or a text page's form post."""
    if request.endpoint == "api.generate_text":
        return True
    if request.endpoint != "pages.task" or request.method != "POST":
        return False
    from app.modelstore import get_store

    try:
        return get_store().get((request.view_args or {}).get("slug", "")).spec.kind == TEXT
    except KeyError:
        return False


def generate_limit() -> str:
    """The configured limit for generate requests (a Flask-Limiter rate string)."""
    return current_app.config.get("RATELIMIT_GENERATE") or DEFAULT_GENERATE_LIMIT


def add_headers(response):
    """The security headers on every response (pages, API, static files, errors)."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def csrf_error(exc: CSRFError):
    """A missing or stale CSRF token: 400 with a bilingual message, like any other bad input."""
    from app.views.errors import respond

    return respond(InvalidInput(CSRF_MESSAGE, 400))


def init_app(app: Flask) -> None:
    """Install the checks, headers, CSRF protection and rate limiter on `app`."""
    check_startup(app)
    if app.config.get("SESSION_COOKIE_SAMESITE") is None:  # Flask's default is None, not absent
        app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
    app.config.setdefault("WTF_CSRF_ENABLED", not app.testing)
    app.config.setdefault("RATELIMIT_ENABLED", not app.testing)
    app.config.setdefault("RATELIMIT_STORAGE_URI", "memory://")
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    app.config.setdefault("RATELIMIT_GENERATE", DEFAULT_GENERATE_LIMIT)
    app.after_request(add_headers)
    from app.views import api

    csrf.init_app(app)
    csrf.exempt(api.bp)
    app.register_error_handler(CSRFError, csrf_error)
    limiter = Limiter(get_remote_address, application_limits=[generate_limit],
                      application_limits_exempt_when=lambda: not is_generate_request())
    limiter.init_app(app)
    app.extensions["security_limiter"] = limiter
