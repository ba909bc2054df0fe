"""LSTM Lab web app: `create_app` builds everything from configuration (see STYLE.md)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import ROOT, Config, environment_settings


def create_app(test_config: dict | None = None) -> Flask:
    """The app: defaults, then LSTMLAB_* and FLASK_* environment variables, then `test_config`;
    models loaded. The instance folder (runtime files: the generated secret key...) is
    `LSTMLAB_INSTANCE_PATH` when set, else Flask's `instance/` beside the app."""
    instance = (test_config or {}).get("INSTANCE_PATH") or os.environ.get("LSTMLAB_INSTANCE_PATH")
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"),
                instance_path=str(Path(instance).resolve()) if instance else None)
    app.config.from_object(Config)
    app.config.update(environment_settings())
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.config["MODELS_DIR"] = str(Path(app.config["MODELS_DIR"]))
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    from app import i18n, modelstore, security
    from app.views import api, errors, lstm, pages

    security.init_app(app)  # first: the start-up checks (secret key, debug, TESTING) before the models load
    i18n.init_app(app)
    modelstore.init_app(app)
    for module in (pages, api, lstm, errors):
        app.register_blueprint(module.bp)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:  # behind nginx: the client's address and scheme come from its X-Forwarded-* headers
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    return app
