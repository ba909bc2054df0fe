"""The rate limits of the task routes: which requests count, and what each one costs.

Every generate request (the API's and a text page's form post) counts against RATELIMIT_GENERATE
and weighs its work (tokens × beams) against RATELIMIT_GENERATE_WORK; a prediction with a gate
trace counts against RATELIMIT_TRACE. Rates are per client address (README "Rate limits").
"""

from __future__ import annotations

from typing import Callable

from flask import request

from app.decoding import validate_request
from app.errors import InvalidInput
from app.modelstore import get_store
from app.security import RouteLimit
from app.tasks import IMAGE, TEXT, TaskSpec
from app.views.lstm import wants_trace

SYLLABLES_PER_COUPLET = 14  # a lục bát couplet: 6 + 8 syllables


def task_spec() -> TaskSpec | None:
    """The spec of the task the request's URL names (None: no such task)."""
    try:
        return get_store().get((request.view_args or {}).get("slug", "")).spec
    except KeyError:
        return None


def task_kind() -> str | None:
    """The kind of the task the request's URL names (None: no such task)."""
    spec = task_spec()
    return spec.kind if spec else None


def generate_cost(find_spec: Callable[[], TaskSpec | None] = task_spec) -> int:
    """The work a generate request asks for: tokens (words, or couplets × 14 syllables) × beams;
    1 for a request that does not validate (it is refused without generating anything).
    `find_spec`: the text model's spec from the request's URL (a task's, or a lab run's)."""
    spec = find_spec()
    if spec is None:
        return 1
    try:
        params = request.get_json(silent=True) if request.is_json else None
        if not isinstance(params, dict):
            params = request.form.to_dict()
            if not request.path.startswith("/api/") and spec.tokenizer == "syllables":  # a page's checkbox
                params["meter"] = "meter" in request.form
        req = validate_request(spec, params)
    except (InvalidInput, RecursionError):
        return 1
    tokens = req.length * (SYLLABLES_PER_COUPLET if spec.tokenizer == "syllables" else 1)
    return max(1, tokens * (req.beam_width if req.strategy == "beam" else 1))


def not_traced() -> bool:
    """A prediction without the gate trace (API `?trace=1`, or the image form's box, asks for it)."""
    return request.method != "POST" or not wants_trace(request.args.get("trace") or request.form.get("trace"))


def not_text_post() -> bool:
    """Not a text page's form post (a task page's GET, or an image page's upload)."""
    return request.method != "POST" or task_kind() != TEXT


def not_image_traced() -> bool:
    """Not an image page's form post that asks for the gate trace."""
    return task_kind() != IMAGE or not_traced()


GENERATE = (RouteLimit("RATELIMIT_GENERATE"), RouteLimit("RATELIMIT_GENERATE_WORK", cost=generate_cost))
TRACE = RouteLimit("RATELIMIT_TRACE", exempt_when=not_traced)
TASK_PAGE = (RouteLimit("RATELIMIT_GENERATE", exempt_when=not_text_post),
             RouteLimit("RATELIMIT_GENERATE_WORK", exempt_when=not_text_post, cost=generate_cost),
             RouteLimit("RATELIMIT_TRACE", exempt_when=not_image_traced))
