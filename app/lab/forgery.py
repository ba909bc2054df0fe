"""Cross-site request forgery on the runs API, which Flask-WTF does not guard but which reads the
browser's cookies: a write passes with a bearer token, the CSRF token, or this site's Origin.
Details: docs/DESIGN.md, "Forged requests on the runs API (app/lab/forgery.py)"."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, g, request
from flask_login import current_user
from flask_wtf.csrf import validate_csrf
from wtforms.validators import ValidationError

from app.errors import InvalidInput
from app.instructor.auth import instructor_for_token

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_HEADERS = ("X-CSRFToken", "X-CSRF-Token")  # Flask-WTF's default header names


def bearer_instructor():
    """The instructor of this request's valid bearer token, or None (looked up once per request)."""
    if "api_instructor" not in g:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        g.api_instructor = instructor_for_token(token.strip()) if scheme.lower() == "bearer" else None
    return g.api_instructor


def has_csrf_token() -> bool:
    """True when the request's X-CSRFToken header holds a valid token of this browser's session."""
    token = next((request.headers[h] for h in TOKEN_HEADERS if request.headers.get(h)), None)
    if not token:
        return False
    try:
        validate_csrf(token)
    except ValidationError:
        return False
    return True


def is_this_site(url: str) -> bool:
    """True when `url` (an Origin or a Referer) names this site's host (and HTTPS on an HTTPS request)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return False  # "null" (a sandboxed frame, a file) and anything else that is not a web page of a host
    if request.is_secure and parts.scheme != "https":
        return False
    return parts.netloc.lower() == request.host.lower()


def check_forgery():
    """A before-request hook of the runs API: 403 (bilingual) for a cookie-carrying write that
    neither shows the CSRF token nor comes from this site's own pages."""
    if request.method not in WRITE_METHODS or bearer_instructor() is not None or has_csrf_token():
        return None
    origin = request.headers.get("Origin") or request.headers.get("Referer")
    if origin:
        if is_this_site(origin):
            return None
        raise InvalidInput("Refused: this request came from another site. The lab API takes your browser's "
                           "cookies only from this site's own pages.", 403)
    if current_user.is_authenticated and current_app.config.get("WTF_CSRF_ENABLED", True):
        raise InvalidInput("Signed in through the browser, a change through the API needs the page's CSRF token "
                           "(header X-CSRFToken) or an API token (Authorization: Bearer).", 403)
    return None
