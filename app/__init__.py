"""LSTM Lab web app: `create_app` builds everything from configuration (see STYLE.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

from app.config import ROOT, Config, LabEngineConfig, instance_dir


def create_app(test_config: dict | None = None) -> Flask:
    """The app: defaults, then FLASK_* environment variables, then `test_config`; models loaded."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"),
                instance_path=str((test_config or {}).get("INSTANCE_PATH") or instance_dir()))
    app.config.from_object(LabEngineConfig)
    app.config.from_object(Config)
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.config["MODELS_DIR"] = str(Path(app.config["MODELS_DIR"]))
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app import i18n, lab, modelstore, records, security
    from app.views import api, errors, lstm, pages

    security.init_app(app)  # first: refuses a default SECRET_KEY before the models load
    i18n.init_app(app)
    modelstore.init_app(app)
    records.init_app(app)  # the run records, schema migrated to the newest revision
    for module in (pages, api, lstm, errors):
        app.register_blueprint(module.bp)
    lab.init_app(app)  # the lab bench: /api/v1/runs (and the bench's pages when present)
    try:  # the instructor console (issue 14), where it is installed
        from app import instructor
    except ImportError:
        instructor = None
    if instructor is not None:
        instructor.init_app(app)
    return app
