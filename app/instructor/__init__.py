"""The instructor console: sign-in, data sets, publishing, access to the lab bench, the run queue
and a token-authenticated JSON API. Every /instructor route but the sign-in page is guarded
once, for the whole blueprint.
Details: docs/DESIGN.md, "The instructor console (app/instructor/)"."""

from __future__ import annotations

from flask import Flask, current_app, request

from app.instructor.blueprints import api_bp, bp

# The upload routes and the config key of the request size each accepts.
UPLOAD_ENDPOINTS = {"instructor.dataset_upload": "DATASET_MAX_UPLOAD_BYTES",
                    "instructor_api.create_dataset": "DATASET_MAX_UPLOAD_BYTES",
                    "instructor.corpus_upload": "CORPUS_MAX_BYTES", "instructor_api.create_corpus": "CORPUS_MAX_BYTES"}


def raise_upload_limit() -> None:
    """The data-set upload routes accept their own limit (DATASET_MAX_UPLOAD_BYTES, CORPUS_MAX_BYTES)
    instead of MAX_CONTENT_LENGTH (runs before the CSRF check reads the form; werkzeug streams file
    parts to temporary files)."""
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = int(current_app.config[UPLOAD_ENDPOINTS[request.endpoint]])


def init_app(app: Flask) -> None:
    """Install sign-in, the CLI, the console's pages and API, and the class-code page on `app`."""
    from app.instructor import (access, api, apitokens, auth, cli, datasets, password, publish,  # noqa: F401 - routes
                                results, views)
    from app.security import csrf  # the routes load when an app is built, not on `import app.instructor`

    app.cli.add_command(cli.instructor)
    app.register_blueprint(bp)
    app.register_blueprint(api_bp)
    app.register_blueprint(access.bp)
    csrf.exempt(api_bp)  # bearer tokens, no cookies: nothing a forged cross-site request could use
    app.before_request_funcs.setdefault(None, []).insert(0, raise_upload_limit)
    auth.init_app(app)  # its guard goes first of all: refused before CSRF or the upload limit
