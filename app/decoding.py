"""Decoding: a generation request checked (`validate_request`, bilingual 400s), then the next
token from a text model's logits (greedy, temperature, top-k, top-p or beam search), streamed;
for Kiều the lục bát meter is enforced while decoding.
Details: docs/DESIGN.md, "Decoding (app/decoding.py)"."""

from __future__ import annotations

import contextlib
import math
import secrets
import time
from dataclasses import asdict, dataclass
from functools import partial
from typing import Annotated, Literal

import numpy as np
from pydantic import (AfterValidator, AllowInfNan, BaseModel, BeforeValidator, Field, PlainValidator, Strict,
                      ValidationError, ValidationInfo)
from pydantic_core import PydanticCustomError

from app.cells import stack_rows, state_row
from app.errors import InvalidInput
from app.tasks import TaskSpec
from app.text import (BAT, EOL_ID, LUC, MARKERS, UNK_ID, check_line, clean_words, format_verse_line, line_kind,
                      rhyme_key, rime, title_case, tone)
from app.textmodel import TextModel, log_softmax
from app.validation import field_bounds, first_error

STRATEGIES = ("greedy", "temperature", "top_k", "top_p", "beam")
DEFAULTS = {"strategy": "top_p", "temperature": 0.8, "top_k": 40, "top_p": 0.9, "beam_width": 4}
EXACT_RHYME_BONUS = 1.5  # added to the logits of exact-rhyme candidates (see the module docstring)


@dataclass(frozen=True)
class GenerateRequest:
    """What to generate and how to decode it (checked by `validate_request`)."""

    seed: str
    length: int
    strategy: str = DEFAULTS["strategy"]
    temperature: float = DEFAULTS["temperature"]
    top_k: int = DEFAULTS["top_k"]
    top_p: float = DEFAULTS["top_p"]
    beam_width: int = DEFAULTS["beam_width"]
    random_seed: int | None = None
    meter: bool = True  # Kiều only: enforce lục bát while decoding


# ----------------------------------------------------------------------------- request parameters
MAX_SEED_CHARS = 500
LIMITS = {  # (min, max, default) of `length`: words for headlines, couplets for verse
    "words": (1, 40, 10),
    "syllables": (1, 20, 2),
}
NUMBER_FIELDS = ("length", "temperature", "top_k", "top_p", "beam_width", "random_seed")


def _python_number(kind, value):
    """`kind(value)` as Python's int() or float() reads it (form text with white space, an
    integral float), or the value as given, for the strict check after it to refuse by name."""
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        return value
    with contextlib.suppress(TypeError, ValueError, OverflowError):  # OverflowError: past float's range
        out = kind(value)
        if kind is int or math.isfinite(out):
            return out
    return value


def _strategy(value):
    """A strategy's name, trimmed and lowercased when it is one; else the value as sent."""
    if isinstance(value, str) and value.strip().lower() in STRATEGIES:
        return value.strip().lower()
    return value


def _meter(value) -> bool:
    """Kiều's meter switch: form words for off, anything else as its truth."""
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off", "")
    return bool(value)


def _length_within(value: int, info: ValidationInfo) -> int:
    lo, hi = info.context["length"]
    if not lo <= value <= hi:
        raise PydanticCustomError("out_of_range", "between {lo} and {hi}", {"lo": lo, "hi": hi})
    return value


Whole = Annotated[int, Strict(), BeforeValidator(partial(_python_number, int))]
Decimal = Annotated[float, Strict(), AllowInfNan(False), BeforeValidator(partial(_python_number, float))]


class RequestFields(BaseModel):
    """The decoding parameters' schema, in the order they are checked (the length's bounds, which
    depend on the task's tokenizer, come from the validation context)."""

    length: Annotated[Whole, AfterValidator(_length_within)]
    strategy: Annotated[Literal[STRATEGIES], BeforeValidator(_strategy)] = DEFAULTS["strategy"]
    temperature: Annotated[Decimal, Field(ge=0.05, le=5.0)] = DEFAULTS["temperature"]
    top_k: Annotated[Whole, Field(ge=1, le=1000)] = DEFAULTS["top_k"]
    top_p: Annotated[Decimal, Field(ge=0.01, le=1.0)] = DEFAULTS["top_p"]
    beam_width: Annotated[Whole, Field(ge=1, le=16)] = DEFAULTS["beam_width"]
    random_seed: Annotated[Whole, Field(ge=0, le=2**32 - 1)] = None  # a default is not validated: None draws one
    meter: Annotated[bool, PlainValidator(_meter)] = True


def _refusal(error: dict) -> InvalidInput:
    """The bilingual refusal of the first error of RequestFields."""
    key, kind, value = error["loc"][0], error["type"], error["input"]
    if key == "strategy":
        return InvalidInput("strategy must be one of %(choices)s, got %(value)s",
                            choices=", ".join(STRATEGIES), value=repr(value))
    if kind in ("greater_than_equal", "less_than_equal", "out_of_range"):
        ctx = error.get("ctx", {})
        lo, hi = (ctx["lo"], ctx["hi"]) if kind == "out_of_range" else field_bounds(RequestFields, key)
        value = _python_number(RequestFields.model_fields[key].annotation, value)  # the error holds the input
        return InvalidInput("%(key)s must be between %(lo)s and %(hi)s, got %(value)s", key=key, lo=lo, hi=hi,
                            value=value)
    if isinstance(value, bool):
        return InvalidInput("%(key)s must be a number", key=key)
    if kind == "int_type":
        return InvalidInput("%(key)s must be a whole number, got %(value)s", key=key, value=repr(value))
    return InvalidInput("%(key)s must be a number, got %(value)s", key=key, value=repr(value))


def validate_request(spec: TaskSpec, params: dict) -> GenerateRequest:
    """Check and convert a request's parameters (strings accepted, as HTML forms send them).

    A missing or blank seed starts from `spec.default_seed` (the poem's opening line for verse).
    Raises InvalidInput (400, Vietnamese and English) on a missing or empty seed otherwise, a wrong type
    or a value out of range. Unknown words in the seed are fine (they become <unk>).
    """
    if not isinstance(params, dict):
        raise InvalidInput("the request must be a JSON object")
    seed = params.get("seed")
    if spec.default_seed and (seed is None or (isinstance(seed, str) and not seed.strip())):
        seed = spec.default_seed  # verse: an empty box starts from the poem's opening line
    if not isinstance(seed, str) or not seed.strip():
        raise InvalidInput("enter a few words to start from (the seed is empty)")
    if len(seed) > MAX_SEED_CHARS:
        raise InvalidInput("the seed is too long (at most %(max_seed_chars)s characters)", max_seed_chars=MAX_SEED_CHARS)
    if not clean_words(seed):
        raise InvalidInput("the seed has no words (only punctuation or symbols)")
    lo, hi, default = LIMITS.get(spec.tokenizer, LIMITS["words"])
    given = {k: params[k] for k in NUMBER_FIELDS if not _blank(params.get(k))}
    if params.get("strategy"):  # an empty or false strategy takes the default
        given["strategy"] = params["strategy"]
    if "meter" in params:
        given["meter"] = params["meter"]
    try:
        checked = RequestFields.model_validate({"length": default} | given, context={"length": (lo, hi)})
    except ValidationError as exc:
        raise _refusal(first_error(exc)) from None
    return GenerateRequest(seed=seed.strip(), **checked.model_dump())


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# ----------------------------------------------------------------------------- constraints
class Headline:
    """Headline decoding: exactly `length` words; no <pad>, <unk> or end-of-headline."""

    def __init__(self, model: TextModel, length: int):
        self.mask = np.ones(model.vocab_size, bool)
        self.mask[:3] = False
        self.mask[[model.vocab.index[m] for m in MARKERS if m in model.vocab.index]] = False
        self.remaining = length
        self.words: list[str] = []

    def copy(self) -> Headline:
        other = object.__new__(Headline)
        other.mask, other.remaining, other.words = self.mask, self.remaining, list(self.words)
        return other

    @property
    def done(self) -> bool:
        return self.remaining <= 0

    def allowed(self):
        return self.mask, [], None

    def advance(self, token_id: int, token: str, relaxed: list) -> None:
        self.remaining -= 1
        self.words.append(token)


class Verse:
    """Verse decoding state: the lines so far, and the mask for the next syllable.

    With `meter` the lục bát rules are masks; without it (the card's unconstrained comparison)
    the model itself decides where lines end.
    """

    def __init__(self, model: TextModel, lines: list[list[str]], target_lines: int, meter: bool):
        self.t = model.meter
        self.vocab_index = model.vocab.index
        self.lines = [list(x) for x in lines] or [[]]
        self.target_lines = target_lines
        self.meter = meter
        self.relaxed: dict[int, list] = {}
        self.free = self.t.syllable.copy()
        self.free[EOL_ID] = True

    def copy(self) -> Verse:
        other = object.__new__(Verse)
        other.__dict__.update(self.__dict__)
        other.lines = [list(x) for x in self.lines]
        other.relaxed = {k: list(v) for k, v in self.relaxed.items()}
        return other

    @property
    def done(self) -> bool:
        return self.complete_lines() >= self.target_lines

    def complete_lines(self) -> int:
        """Lines that have ended (the last one is still open)."""
        return len(self.lines) - 1

    def allowed(self):
        """The mask for the next token, which rules had to be relaxed (if any), and the exact-rhyme
        candidates to prefer (None where no rhyme is due)."""
        if not self.meter:
            return self.free, [], None
        t = self.t
        index = len(self.lines) - 1
        line = self.lines[-1]
        n = line_kind(index)
        p = len(line) + 1  # 1-based position of the next syllable
        if p > n:
            only = np.zeros(len(t.syllable), bool)
            only[EOL_ID] = True
            return only, [], None
        tone_mask = t.syllable
        if p in (2, 6, 8):
            tone_mask = t.bang
            if n == BAT and p == 8 and len(line) >= 6:
                six = tone(line[5])
                tone_mask = t.ngang if six == "huyền" else t.huyen if six == "ngang" else t.bang
        elif p == 4:
            tone_mask = t.trac
        target = None
        if p == 6 and n == BAT:
            target = self.lines[-2][5] if len(self.lines[-2]) >= 6 else None
        elif p == 6 and n == LUC and index > 0:
            target = self.lines[-2][7] if len(self.lines[-2]) >= 8 else None
        if target is not None:
            key = t.rhyme_ids.get(rhyme_key(target), -2)
            full = tone_mask & (t.rhyme == key)
            same = self.vocab_index.get(target)
            if same is not None and full[same] and full.sum() > 1:
                full = full.copy()  # rhyming a syllable with itself: not a rhyme the poem makes
                full[same] = False
            if full.any():
                exact = full & (t.rime == t.rime_ids.get(rime(target), -2))
                return full, [], exact if exact.any() else None
            if tone_mask.any():
                return tone_mask, ["rhyme"], None
            return t.syllable, ["rhyme", "tone"], None
        if tone_mask.any():
            return tone_mask, [], None
        return t.syllable, ["tone"], None

    def advance(self, token_id: int, token: str, relaxed: list) -> None:
        if relaxed:
            index = len(self.lines) - 1
            self.relaxed.setdefault(index, []).append({"position": len(self.lines[-1]) + 1, "dropped": relaxed})
        if token_id == EOL_ID:
            self.lines.append([])
        else:
            self.lines[-1].append(token)


def _verse_prefix(model: TextModel, words: list[str]) -> tuple[list[int], list[list[str]]]:
    """Seed syllables laid out in the 6-8 cadence from the start, with EOL fed at each line end."""
    ids = [EOL_ID]
    lines: list[list[str]] = [[]]
    for w in words:
        ids.append(model.vocab.index.get(w, UNK_ID))
        lines[-1].append(w)
        if len(lines[-1]) == line_kind(len(lines) - 1):
            ids.append(EOL_ID)
            lines.append([])
    return ids, lines


# ----------------------------------------------------------------------------- sampling
def _pick(logits: np.ndarray, mask: np.ndarray, req: GenerateRequest, rng: np.random.Generator,
          prefer: np.ndarray | None = None) -> int:
    """One token id from the masked logits by the request's strategy (`prefer`: the candidates
    that get EXACT_RHYME_BONUS)."""
    candidates = np.flatnonzero(mask)
    s = logits[candidates]
    if req.strategy != "greedy":
        s = s / req.temperature
    if prefer is not None:
        s = s + EXACT_RHYME_BONUS * prefer[candidates]
    if req.strategy == "greedy":
        return int(candidates[np.argmax(s)])
    if req.strategy == "top_k" and req.top_k < len(candidates):
        keep = np.argpartition(-s, req.top_k - 1)[: req.top_k]
        candidates, s = candidates[keep], s[keep]
    p = np.exp(s - s.max())
    p /= p.sum()
    if req.strategy == "top_p":
        order = np.argsort(-p, kind="stable")
        cum = np.cumsum(p[order])
        cut = int(np.searchsorted(cum, req.top_p)) + 1
        keep = order[:cut]
        candidates, p = candidates[keep], p[keep] / p[keep].sum()
    cum = np.cumsum(p)
    return int(candidates[min(int(np.searchsorted(cum, rng.random() * cum[-1], side="right")), len(p) - 1)])


def _entry(token_id, step: list, row: int = 0) -> tuple:
    """One path entry from a recorded step (`TextModel.step`'s `gates`): (token id, [records of
    every layer, e.g. an LSTM's (i, f, g, o, c, h)]) of one row of the batch."""
    return int(token_id), [tuple(v[row] for v in layer) for layer in step]


def _beam(model: TextModel, logits: np.ndarray, state: list, plan, width: int, path: list | None = None):
    """Beam search over the constrained candidates (exact-rhyme candidates scored with the bonus).

    Returns [(token_id, relaxed)] of the best beam, the state from which its last token is still
    to be read (None when it was read) and, with `path` (a list), the path of the tokens read
    (every beam carries its own)."""
    logp = log_softmax(logits)
    beams = [(0.0, state, [], plan, path)]
    finished = []
    for _ in range(10_000):
        cands = []
        for b, (score, st, toks, pl, _) in enumerate(beams):
            mask, relaxed, prefer = pl.allowed()
            row = np.where(mask, logp[b], -np.inf)
            if prefer is not None:
                row = row + EXACT_RHYME_BONUS * prefer
            k = min(width, int(mask.sum()))
            top = np.argpartition(-row, k - 1)[:k]
            cands.extend((score + float(row[t]), b, int(t), relaxed) for t in top)
        cands.sort(key=lambda c: (-c[0], c[1], c[2]))
        new = []
        for score, b, t, relaxed in cands[:width]:
            pl = beams[b][3].copy()
            pl.advance(t, model.vocab.tokens[t], relaxed)
            item = (score, beams[b], beams[b][2] + [(t, relaxed)], pl)
            (finished if pl.done else new).append(item)
        if not new or len(finished) >= width:
            break
        ids = np.array([it[2][-1][0] for it in new])
        gates = [] if path is not None else None
        logits, st = model.step(ids, stack_rows([it[1][1] for it in new]), gates)
        logp = log_softmax(logits)
        beams = [(it[0], state_row(st, j), it[2], it[3],
                  None if gates is None else it[1][4] + [_entry(ids[j], gates[0], j)]) for j, it in enumerate(new)]
    if finished:
        best = max(finished, key=lambda it: it[0])
        return best[2], best[1][1], best[1][4]
    best = max(beams, key=lambda b: b[0])
    return best[2], None, best[4]


def generate_stream(model: TextModel, req: GenerateRequest, path: list | None = None):
    """Yield {"token": str} per generated word, {"line": str, "check": {...}} per finished verse
    line (Kiều), and finally {"done": True, **summary} (the same summary as `generate`).

    With a `path` list, the model also reads the last generated token and `path` receives every
    token it read, in order, with its gates: (token id, [records per layer, as `_entry`])."""
    t0 = time.perf_counter()
    random_seed = req.random_seed if req.random_seed is not None else secrets.randbelow(2**31)
    rng = np.random.default_rng(random_seed)
    words = clean_words(req.seed)
    verse = model.spec.tokenizer == "syllables"
    display = model.vocab.display if verse else {}
    if verse:
        ids, seed_lines = _verse_prefix(model, words)
        # Finish the seed's couplet, then `length` more couplets.
        started = len(seed_lines) if seed_lines[-1] else len(seed_lines) - 1
        target = 2 * math.ceil(started / 2) + 2 * req.length
        plan = Verse(model, seed_lines, target, req.meter)
        for i, line in enumerate(seed_lines[:-1]):
            yield {"line": format_verse_line(line, display), "check": _check(plan, i)}
    else:
        ids = [EOL_ID] + model.vocab.encode(words)
        plan = Headline(model, req.length)
    gates = [] if path is not None else None
    logits, state = model.feed(ids, gates=gates)
    if gates is not None:
        path.extend(_entry(t, step) for t, step in zip(ids, gates))
    generated = 0

    def emit(token_id: int, before: int):
        nonlocal generated
        token = model.vocab.tokens[token_id]
        if token_id != EOL_ID:
            generated += 1
            yield {"token": display.get(token, token) if verse else title_case([token])}
        if verse and plan.complete_lines() > before:
            i = plan.complete_lines() - 1
            yield {"line": format_verse_line(plan.lines[i], display), "check": _check(plan, i)}

    if req.strategy == "beam":
        tokens, state, beam_path = _beam(model, logits, state, plan.copy(), req.beam_width,
                                         [] if path is not None else None)
        for token_id, relaxed in tokens:
            before = plan.complete_lines() if verse else 0
            plan.advance(token_id, model.vocab.tokens[token_id], relaxed)
            yield from emit(token_id, before)
        if path is not None:
            path.extend(beam_path)
        last = [tokens[-1][0]] if state is not None else []
    else:
        last = []
        while not plan.done:
            mask, relaxed, prefer = plan.allowed()
            token_id = _pick(logits[0], mask, req, rng, prefer)
            before = plan.complete_lines() if verse else 0
            plan.advance(token_id, model.vocab.tokens[token_id], relaxed)
            yield from emit(token_id, before)
            if plan.done:
                last = [token_id]
                break
            logits, state = model.step(np.array([token_id]), state, gates)
            if gates is not None:
                path.append(_entry(token_id, gates[-1]))
    seconds = time.perf_counter() - t0
    if path is not None and last:  # the trace shows the gates after the last token too
        gates = []
        model.step(np.array(last), state, gates)
        path.append(_entry(last[0], gates[0]))
    if verse:
        lines_syl = plan.lines[: plan.complete_lines()]
        lines = [format_verse_line(x, display) for x in lines_syl]
        checks = [_check(plan, i) for i in range(len(lines_syl))]
        text = "\n".join(lines)
    else:
        text = title_case(words + plan.words)
        lines, checks = [text], None
    yield {"done": True, "text": text, "lines": lines, "checks": checks, "tokens": generated,
           "seconds": round(seconds, 4), "random_seed": random_seed, "strategy": req.strategy,
           "request": asdict(req) | {"random_seed": random_seed}}


def _check(plan: Verse, i: int) -> dict:
    prev = plan.lines[i - 1] if i else None
    out = check_line(plan.lines[i], i, prev)
    out["relaxed"] = plan.relaxed.get(i, [])
    return out


def generate(model: TextModel, req: GenerateRequest, path: list | None = None) -> dict:
    """The whole text at once: {text, lines, checks, tokens, seconds, random_seed, ...} (`path`:
    as in `generate_stream`)."""
    *_, final = generate_stream(model, req, path)  # the last event is the summary
    return {key: value for key, value in final.items() if key != "done"}
