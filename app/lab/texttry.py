"""A finished text run's try-it page and generate route: the shipped text tasks' own page
(`app.views.pages.text_page`, templates/text_task.html and static/js/text.js: every decoding
strategy, streamed, the meter check for verse) and generate answer (`app.views.api.generate_answer`)
over the run's model, which the model store loads as it loads a served text task (NumPy).

Called by the thin routes in app/lab/views.py and app/lab/api.py; the rate limits are the
shipped text tasks' (RATELIMIT_GENERATE and RATELIMIT_GENERATE_WORK), weighed the same way.
"""

from __future__ import annotations

from functools import partial

from flask import request, url_for
from flask_babel import gettext as _

from app.errors import InvalidInput
from app.lab import runs
from app.records import FINISHED, Run
from app.security import RouteLimit
from app.tasks import TEXT, TaskSpec
from app.views.limits import generate_cost
from app.views.pages import text_page


def text_entry(run: Run):
    """The finished text run's served model (LSTM, GRU or SimpleRNN), as `runs.finished_entry`
    (409 unfinished, 400 an image run, 503 a model that does not load)."""
    return runs.finished_entry(run, TEXT)


def try_text_page(run: Run):
    """The shipped text task page over the run's model: its form posts back here, its stream
    comes from POST /api/v1/runs/<id>/generate."""
    return text_page(text_entry(run), action=url_for("lab.try_run", run_id=run.id),
                     stream_url=url_for("lab_api.generate_run", run_id=run.id, stream=1),
                     card_url=url_for("lab.run_card", run_id=run.id), run_note=_("Lab bench run %(id)s", id=run.id))


def run_spec() -> TaskSpec | None:
    """The spec of the finished text run the request's URL names (None: no such run or no model),
    for the rate limiter to weigh its request."""
    try:
        run = runs.find_run((request.view_args or {}).get("run_id"))
    except InvalidInput:
        return None
    entry = runs.run_entry(run) if run.status == FINISHED else None
    return entry.spec if entry is not None and entry.spec.kind == TEXT else None


def not_text_run_post() -> bool:
    """Not a form post to a finished text run's try-it page (a GET, or an image run's upload)."""
    return request.method != "POST" or run_spec() is None


RUN_GENERATE = (RouteLimit("RATELIMIT_GENERATE"),
                RouteLimit("RATELIMIT_GENERATE_WORK", cost=partial(generate_cost, run_spec)))
TRY_PAGE = (RouteLimit("RATELIMIT_GENERATE", exempt_when=not_text_run_post),
            RouteLimit("RATELIMIT_GENERATE_WORK", exempt_when=not_text_run_post, cost=partial(generate_cost, run_spec)))
