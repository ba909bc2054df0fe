"""A generation request's parameters, as the text page's form and the JSON API send them, checked
and converted into an `app.decoding.GenerateRequest` (bilingual 400 errors on bad input)."""

from __future__ import annotations

import math

from app.decoding import DEFAULTS, STRATEGIES, GenerateRequest
from app.errors import InvalidInput
from app.tasks import TaskSpec
from app.text import clean_words

MAX_SEED_CHARS = 500
LIMITS = {  # (min, max, default) of `length`: words for headlines, couplets for verse
    "words": (1, 40, 10),
    "syllables": (1, 20, 2),
}


def _number(params: dict, key: str, kind, lo, hi, default):
    value = params.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    if isinstance(value, bool):
        raise InvalidInput("%(key)s must be a number", key=key)
    try:
        if kind is int:
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
            out = int(str(value).strip()) if isinstance(value, str) else int(value)
        else:
            out = float(str(value).strip()) if isinstance(value, str) else float(value)
            if not math.isfinite(out):
                raise ValueError
    except (TypeError, ValueError):
        if kind is int:
            raise InvalidInput("%(key)s must be a whole number, got %(value)s", key=key, value=repr(value)) from None
        raise InvalidInput("%(key)s must be a number, got %(value)s", key=key, value=repr(value)) from None
    if not lo <= out <= hi:
        raise InvalidInput("%(key)s must be between %(lo)s and %(hi)s, got %(value)s", key=key, lo=lo, hi=hi, value=out)
    return out


def validate_request(spec: TaskSpec, params: dict) -> GenerateRequest:
    """Check and convert a request's parameters (strings accepted, as HTML forms send them).

    Raises InvalidInput (400, Vietnamese and English) on a missing or empty seed, a wrong type
    or a value out of range. Unknown words in the seed are fine (they become <unk>).
    """
    if not isinstance(params, dict):
        raise InvalidInput("the request must be a JSON object")
    seed = params.get("seed")
    if not isinstance(seed, str) or not seed.strip():
        raise InvalidInput("enter a few words to start from (the seed is empty)")
    if len(seed) > MAX_SEED_CHARS:
        raise InvalidInput("the seed is too long (at most %(max_seed_chars)s characters)", max_seed_chars=MAX_SEED_CHARS)
    if not clean_words(seed):
        raise InvalidInput("the seed has no words (only punctuation or symbols)")
    lo, hi, default = LIMITS.get(spec.tokenizer, LIMITS["words"])
    length = _number(params, "length", int, lo, hi, default)
    strategy = params.get("strategy") or DEFAULTS["strategy"]
    if not isinstance(strategy, str) or strategy.strip().lower() not in STRATEGIES:
        raise InvalidInput("strategy must be one of %(choices)s, got %(value)s",
                           choices=", ".join(STRATEGIES), value=repr(strategy))
    meter = params.get("meter", True)
    if isinstance(meter, str):
        meter = meter.strip().lower() not in ("0", "false", "no", "off", "")
    return GenerateRequest(
        seed=seed.strip(),
        length=length,
        strategy=strategy.strip().lower(),
        temperature=_number(params, "temperature", float, 0.05, 5.0, DEFAULTS["temperature"]),
        top_k=_number(params, "top_k", int, 1, 1000, DEFAULTS["top_k"]),
        top_p=_number(params, "top_p", float, 0.01, 1.0, DEFAULTS["top_p"]),
        beam_width=_number(params, "beam_width", int, 1, 16, DEFAULTS["beam_width"]),
        random_seed=_number(params, "random_seed", int, 0, 2**32 - 1, None),
        meter=bool(meter),
    )
