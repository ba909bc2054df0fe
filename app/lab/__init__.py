"""The lab bench: design and train an LSTM from the browser.

Feature package: `queue` (Huey), `jobs` (the training task a consumer runs), `api` (the
/api/v1/runs routes), `recipes` (what a run may be and what it costs) and `views` (the pages);
students' own models: `submissions` (the service), `submit_views` (page and API), `safekeras`
(the archive read as data), `scorer` and `scoring` (the consumer's side).
The web side only enqueues and reads run records; training happens in Huey consumers
(`make serve` starts one, `make worker` more).
"""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    """Configure the queue and register the lab's API and pages."""
    from app.lab import api, queue, submit_views, views  # the routes load when an app is built, not on `import app.lab` (the consumer)
    from app.security import csrf

    queue.init_app(app)
    csrf.exempt(api.bp)  # scripts call it without a form token; cookie writes are checked by lab.forgery
    app.register_blueprint(api.bp)
    app.register_blueprint(views.bp)
    submit_views.init_app(app)
