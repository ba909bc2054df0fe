"""The instructor console: sign-in, data sets, publishing, access to the lab bench, the run queue
and a token-authenticated JSON API. Every /instructor route but the sign-in page is guarded
once, for the whole blueprint.
Details: docs/DESIGN.md, "The instructor console (app/instructor/)"."""

from __future__ import annotations

from flask import Flask, current_app, request

from app.instructor.blueprints import api_bp, bp

DEFAULTS = {
    "INSTRUCTOR_SESSION_HOURS": 8,  # a sign-in lasts at most this long
    "INSTRUCTOR_IDLE_MINUTES": 60,  # ... and ends after this long without a request
    "LOGIN_FREE_TRIES": 5,  # wrong passwords in a row (per name and address) that cost no wait
    "LOGIN_DELAY_MAX_SECONDS": 60,  # the longest wait between tries (it doubles from 1 s up to this)
    "API_TOKEN_DAYS": 90,  # how long a new API token lasts unless its creator chooses
    "API_TOKEN_MAX_DAYS": 365,  # the longest a token may be made to last
    "DATASET_MAX_UPLOAD_BYTES": 512 * 1024 * 1024,  # one zip upload (the request body)
    "DATASET_MAX_TOTAL_BYTES": 2 * 1024 * 1024 * 1024,  # all files of a data set, uncompressed
    "DATASET_MAX_RATIO": 100,  # uncompressed / compressed, per file and for the whole archive
    "DATASET_MAX_FILES": 50_000,  # entries in one archive or folder
    "DATASET_MAX_FILE_BYTES": 20 * 1024 * 1024,  # one image file
    "DATASET_MAX_CLASSES": 200,
    "DATASET_SERVER_ROOT": "",  # folders under this root may be imported ("" = option off)
    "MODELS_RELOAD_SECONDS": 2.0,  # how often a worker looks for new, changed or removed cards
}
UPLOAD_ENDPOINTS = ("instructor.dataset_upload", "instructor_api.create_dataset")


def raise_upload_limit() -> None:
    """The data-set upload routes accept DATASET_MAX_UPLOAD_BYTES instead of MAX_CONTENT_LENGTH
    (runs before the CSRF check reads the form; werkzeug streams file parts to temporary files)."""
    if request.endpoint in UPLOAD_ENDPOINTS:
        request.max_content_length = int(current_app.config["DATASET_MAX_UPLOAD_BYTES"])


def init_app(app: Flask) -> None:
    """Install sign-in, the CLI, the console's pages and API, and the class-code page on `app`."""
    for key, value in DEFAULTS.items():
        app.config.setdefault(key, value)
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
