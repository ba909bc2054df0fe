"""Error pages and JSON errors, in the current language.

Paths under /api/ (and clients that ask for JSON) get {"error", "error_en", "error_vi",
"status"}; everyone else an HTML page from templates/errors/. `InvalidInput` escaping a view
gets its own status; HTTP errors (404, 405, 413, 429...) use their code; anything else is a 500
whose details go to the log, never to the client.
"""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, make_response, render_template, request
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException, InternalServerError

from app.errors import InvalidInput
from app.i18n import N_, current_language

bp = Blueprint("errors", __name__)
CSRF_MESSAGE = N_("The form has expired or is not valid. Reload the page and try again.")
log = logging.getLogger(__name__)


def wants_json() -> bool:
    """JSON for the API and for clients that prefer it over HTML."""
    if request.path.startswith("/api/") or request.path in ("/healthz", "/readyz"):
        return True
    best = request.accept_mimetypes.best_match(["text/html", "application/json"])
    return best == "application/json" and request.accept_mimetypes[best] > request.accept_mimetypes["text/html"]


def respond(error: InvalidInput):
    """The error in the form the client wants, in the current language (JSON: also vi and en)."""
    message = error.message(current_language())
    if wants_json():
        body = {"error": message, "error_en": error.en, "error_vi": error.vi, "status": error.status}
        return make_response(jsonify(body), error.status)
    template = f"errors/{error.status}.html" if error.status in (404, 413, 500) else "errors/generic.html"
    return make_response(render_template(template, status=error.status, message=message),
                         error.status)


def http_message(status: int) -> InvalidInput:
    """The message for an HTTP status."""
    if status == 413:
        return too_large_message()
    msgid = HTTP_MESSAGES.get(status) or HTTP_MESSAGES[500 if status >= 500 else 400]
    return InvalidInput(msgid, status)


HTTP_MESSAGES = {
    400: N_("The request is not valid."),
    404: N_("This page does not exist."),
    405: N_("This method is not allowed here."),
    429: N_("Too many requests; please try again later."),
    500: N_("Something went wrong on the server. It has been logged."),
    503: N_("This task's model is not available."),
}


def too_large_message() -> InvalidInput:
    """A 413: the upload over MAX_CONTENT_LENGTH, or, when the body was within it, a form with too
    many parts or a text field over MAX_FORM_MEMORY_SIZE (werkzeug raises the same 413 for all three)."""
    config = current_app.config
    limit, length = request.max_content_length or config["MAX_CONTENT_LENGTH"], request.content_length  # per route
    if length is None or not limit or length > limit:
        mb = limit // (1024 * 1024) if limit else 0
        return InvalidInput("The file is too large: the limit is %(mb)s MB.", 413, mb=mb)
    parts, field_kb = config.get("MAX_FORM_PARTS") or 1000, (config.get("MAX_FORM_MEMORY_SIZE") or 500_000) // 1000
    return InvalidInput("The form has too many parts (at most %(parts)s) or a text field over %(field_kb)s KB. "
                        "Send one file and fewer fields.", 413, parts=parts, field_kb=field_kb)


@bp.app_errorhandler(InvalidInput)
def invalid_input(exc: InvalidInput):
    """Bad input a person can fix, with its own status."""
    return respond(exc)


@bp.app_errorhandler(CSRFError)
def csrf_error(exc: CSRFError):
    """A missing or stale CSRF token: 400 with a bilingual message, like any other bad input."""
    return respond(InvalidInput(CSRF_MESSAGE, 400))


@bp.app_errorhandler(HTTPException)
def http_error(exc: HTTPException):
    """404, 405, 413, 429... in the current language (a 500 goes to `server_error`)."""
    response = respond(http_message(exc.code or 500))
    if exc.code == 405 and exc.valid_methods:
        response.headers["Allow"] = ", ".join(exc.valid_methods)
    return response


@bp.app_errorhandler(InternalServerError)
def server_error(exc):
    """Anything unexpected: logged with its traceback, the client sees a plain 500."""
    original = getattr(exc, "original_exception", None) or exc
    log.error("unhandled error on %s %s", request.method, request.path, exc_info=original)
    return respond(http_message(500))
