"""LSTM Lab web app: `create_app` builds everything from configuration (see STYLE.md)."""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask
from werkzeug.middleware.proxy_fix import ProxyFix

from app.config import ROOT, Config, instance_dir


def create_app(test_config: dict | None = None, *, web: bool = True) -> Flask:
    """The app: defaults, then LSTMLAB_* and FLASK_* environment variables, then `test_config`;
    models loaded. The instance folder (runtime files: secret key, records, queue, runs) is
    `LSTMLAB_INSTANCE` when set, else `instance/` beside the app. With `web` False, what a queue
    consumer needs: the same configuration and the records, no models, pages or security."""
    app = Flask(__name__, template_folder=str(ROOT / "templates"), static_folder=str(ROOT / "static"),
                instance_path=str((test_config or {}).get("INSTANCE_PATH") or instance_dir()))
    app.config.from_object(Config)
    app.config.update(Config.from_environment())
    app.config.from_prefixed_env()
    if test_config:
        app.config.update(test_config)
    app.config["MODELS_DIR"] = str(Path(app.config["MODELS_DIR"]))
    if not app.debug and not app.testing:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not web:
        from app import records  # the consumer's app: records only (see the import below)

        records.init_app(app)
        return app

    # here, not at the top: importing app.tasks (training, the consumer) must not load the web layer
    from app import i18n, instructor, lab, modelstore, records, security, wording
    from app.views import api, errors, lstm, pages

    security.init_app(app)  # first: the start-up checks (secret key, debug, TESTING) before the models load
    i18n.init_app(app)
    wording.init_app(app)
    modelstore.init_app(app)
    records.init_app(app)  # the run records, schema migrated to the newest revision
    for module in (pages, api, lstm, errors):
        app.register_blueprint(module.bp)
    proxies = int(app.config.get("TRUSTED_PROXIES") or 0)
    if proxies:  # behind nginx: the client's address and scheme come from its X-Forwarded-* headers
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies)
    security.csrf.exempt(api.bp)  # the JSON API: no session state a forged form could abuse
    lab.init_app(app)  # the lab bench: its pages and /api/v1/runs
    instructor.init_app(app)  # the instructor console: sign-in, data sets, publishing, the class's queue
    security.apply_route_limits(app)  # last: every blueprint's views are registered
    return app
