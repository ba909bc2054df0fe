"""Text generation: load a word/syllable model once, then decode incrementally.

The LSTM runs one token at a time in NumPy with the weights of the saved Keras model (the
Embedding → LSTM → Dense stack, Dropout being a no-op at inference): the (h, c) state is carried
from step to step, so each new token costs the same however long the text is, and no
`model.predict` runs on the request path. For one sample a NumPy step is far cheaper than a
TensorFlow call (see docs/BENCHMARKS.md); tests check it equals the Keras model.

Kiều in lục bát: the meter is enforced while decoding. Before each syllable is drawn, the
candidates that break the rule at that position are masked (per-vocabulary tone class and vần
are computed once at load time): a line ends exactly after 6 / 8 syllables; positions 2, 6, 8 are
bằng, 4 is trắc; the bát line's 8 is the other level tone than its 6; lục 6 rhymes with the
previous bát 8 and bát 6 with lục 6. When no vocabulary entry fits (a seed ending in a vần the
vocabulary does not have), the rules are relaxed in a fixed order: first the rhyme is dropped,
then the tone (length is never dropped); each relaxation is reported in that line's check under
"relaxed".

Exact rhymes are preferred, near rhymes stay possible: at a rhyme position the candidates whose
vần is the same as the target's get EXACT_RHYME_BONUS added to their (temperature-scaled) logits,
i.e. their probability multiplied by e^bonus before sampling or beam scoring. The target syllable
itself is not a candidate there (unless it is the only one): the poem almost never rhymes a
syllable with itself, and without this rule the bonus would mostly buy repetitions. Each line's
check says whether its rhyme was exact (`app.text.check_line`).
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from app.cards import Card
from app.errors import InvalidInput
from app.kerasfile import keras_file_layers
from app.tasks import TaskSpec
from app.text import (BANG, BAT, EOL_ID, LUC, MARKERS, Vocabulary, check_line, clean_words, format_verse_line,
                      is_syllable, line_kind, rhyme_key, rime, title_case, tone)

STRATEGIES = ("greedy", "temperature", "top_k", "top_p", "beam")
MAX_SEED_CHARS = 500
LIMITS = {  # (min, max, default) of `length`: words for headlines, couplets for verse
    "words": (1, 40, 10),
    "syllables": (1, 20, 2),
}
DEFAULTS = {"strategy": "top_p", "temperature": 0.8, "top_k": 40, "top_p": 0.9, "beam_width": 4}
EXACT_RHYME_BONUS = 1.5  # added to the logits of exact-rhyme candidates (see the module docstring)


# ----------------------------------------------------------------------------- the request
@dataclass(frozen=True)
class GenerateRequest:
    """A validated generation request."""

    seed: str
    length: int
    strategy: str = DEFAULTS["strategy"]
    temperature: float = DEFAULTS["temperature"]
    top_k: int = DEFAULTS["top_k"]
    top_p: float = DEFAULTS["top_p"]
    beam_width: int = DEFAULTS["beam_width"]
    random_seed: int | None = None
    meter: bool = True  # Kiều only: enforce lục bát while decoding


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


# ----------------------------------------------------------------------------- the model
class MeterTables:
    """Per-vocabulary tone class and vần, computed once per model (masks are then array ops)."""

    def __init__(self, vocab: Vocabulary):
        tokens = vocab.tokens
        self.syllable = np.array([i >= 3 and is_syllable(t) for i, t in enumerate(tokens)])
        tones = [tone(t) if ok else "" for t, ok in zip(tokens, self.syllable)]
        self.bang = self.syllable & np.array([t in BANG for t in tones])
        self.trac = self.syllable & ~self.bang
        self.huyen = self.syllable & np.array([t == "huyền" for t in tones])
        self.ngang = self.syllable & np.array([t == "ngang" for t in tones])
        keys = [rhyme_key(t) if ok else "" for t, ok in zip(tokens, self.syllable)]
        self.rhyme_ids = {k: i for i, k in enumerate(sorted(set(keys) - {""}))}
        self.rhyme = np.array([self.rhyme_ids.get(k, -1) for k in keys], dtype=np.int32)
        rimes = [rime(t) if ok else "" for t, ok in zip(tokens, self.syllable)]
        self.rime_ids = {r: i for i, r in enumerate(sorted(set(rimes) - {""}))}
        self.rime = np.array([self.rime_ids.get(r, -1) for r in rimes], dtype=np.int32)


class TextModel:
    """A loaded text model: vocabulary, NumPy weights and a single-step LSTM function."""

    def __init__(self, spec: TaskSpec, vocab: Vocabulary, layers: list, card: dict | None = None):
        self.spec = spec
        self.vocab = vocab
        self.card = card or {}
        self.embedding = None
        self.lstms: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.denses: list[tuple[np.ndarray, np.ndarray]] = []
        for kind, weights in layers:
            if kind == "embedding":
                self.embedding = weights[0].astype(np.float32)
            elif kind == "lstm":
                self.lstms.append(tuple(w.astype(np.float32) for w in weights))
            elif kind == "dense":
                self.denses.append(tuple(w.astype(np.float32) for w in weights))
        if self.embedding is None or not self.lstms or not self.denses:
            raise ValueError("a text model is Embedding → LSTM(s) → Dense(s)")
        # The first LSTM's input projection for every token, looked up instead of multiplied.
        w, _, b = self.lstms[0]
        self.input_table = self.embedding @ w + b
        self.units = [u.shape[0] for _, u, _ in self.lstms]
        self.meter = MeterTables(vocab) if spec.tokenizer == "syllables" else None

    @property
    def vocab_size(self) -> int:
        """Number of entries in the vocabulary (the softmax width)."""
        return len(self.vocab)

    def initial_state(self, batch: int = 1) -> list[tuple[np.ndarray, np.ndarray]]:
        """Zero (h, c) for every LSTM layer."""
        return [(np.zeros((batch, u), np.float32), np.zeros((batch, u), np.float32)) for u in self.units]

    def step(self, ids: np.ndarray, state: list) -> tuple[np.ndarray, list]:
        """One token per row in; the next token's logits (unnormalised) and the new state out."""
        new_state = []
        x = None
        for layer, ((w, u, b), (h, c)) in enumerate(zip(self.lstms, state)):
            z = self.input_table[ids] if layer == 0 else x @ w + b
            z = z + h @ u
            n = u.shape[0]
            gates = _sigmoid(z)  # i, f, o (the g slice is recomputed with tanh below)
            c = gates[:, n:2 * n] * c + gates[:, :n] * np.tanh(z[:, 2 * n:3 * n])
            h = gates[:, 3 * n:] * np.tanh(c)
            new_state.append((h, c))
            x = h
        for k, (w, b) in enumerate(self.denses):
            x = x @ w + b
            if self._hidden_relu and self._hidden_relu[k]:
                x = np.maximum(x, 0)
        return x, new_state

    _hidden_relu: tuple = ()

    def feed(self, ids: list[int], state=None) -> tuple[np.ndarray, list]:
        """Run a prefix through the model; the log-probabilities (1, V) after its last token, and
        the state."""
        state = state or self.initial_state(1)
        logits = None
        for t in ids:
            logits, state = self.step(np.array([t]), state)
        return log_softmax(logits), state

    def sequence_log_probs(self, ids: list[int]) -> np.ndarray:
        """Log-probabilities (len(ids), V) of each next token (used by tests and evaluation)."""
        state = self.initial_state(1)
        out = []
        for t in ids:
            logits, state = self.step(np.array([t]), state)
            out.append(log_softmax(logits)[0])
        return np.array(out)


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-probabilities from logits along the last axis."""
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (np.tanh(0.5 * x) + 1.0)


_TIED = None


def tied_embedding_layer():
    """The `TiedEmbedding` Keras layer class (defined and registered on first use, so importing
    this module does not import Keras): an Embedding whose matrix, transposed, also gives the
    output logits when called with reverse=True (weight tying: fewer parameters, and on small
    corpora a better language model)."""
    global _TIED
    if _TIED is None:
        import keras

        @keras.saving.register_keras_serializable(package="lstmlab")
        class TiedEmbedding(keras.layers.Layer):
            def __init__(self, input_dim, output_dim, **kw):
                super().__init__(**kw)
                self.input_dim, self.output_dim = int(input_dim), int(output_dim)

            def build(self, input_shape=None):
                self.embeddings = self.add_weight(shape=(self.input_dim, self.output_dim), name="embeddings",
                                                  initializer=keras.initializers.RandomUniform(-0.05, 0.05))
                self.output_bias = self.add_weight(shape=(self.input_dim,), initializer="zeros", name="output_bias")

            def call(self, inputs, reverse=False):
                if reverse:
                    return keras.ops.matmul(inputs, keras.ops.transpose(self.embeddings)) + self.output_bias
                return keras.ops.take(self.embeddings, keras.ops.cast(inputs, "int32"), axis=0)

            def compute_output_spec(self, inputs, reverse=False):
                last = self.input_dim if reverse else self.output_dim
                shape = tuple(inputs.shape[:-1]) if reverse else tuple(inputs.shape)
                return keras.KerasTensor(shape + (last,), dtype=self.compute_dtype)

            def get_config(self):
                return super().get_config() | {"input_dim": self.input_dim, "output_dim": self.output_dim}

        _TIED = TiedEmbedding
    return _TIED


def load_keras_text_model(path: Path):
    """keras.saving.load_model for a text model (registers the custom layer first)."""
    import keras

    tied_embedding_layer()
    return keras.saving.load_model(path, compile=False)


def model_layers(model) -> tuple[list, tuple]:
    """[(kind, weights)] of a Keras Embedding → LSTM → Dense stack, plus which Denses use relu."""
    import keras

    layers, relu, tied = [], [], None
    for lyr in model.layers:
        if isinstance(lyr, tied_embedding_layer()):
            tied = lyr.get_weights()
            layers.append(("embedding", tied[:1]))
        elif isinstance(lyr, keras.layers.Embedding):
            layers.append(("embedding", lyr.get_weights()))
        elif isinstance(lyr, keras.layers.LSTM):
            cfg = lyr.get_config()
            if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
                raise ValueError("the NumPy step supports the default LSTM activations only")
            layers.append(("lstm", lyr.get_weights()))
        elif isinstance(lyr, keras.layers.Dense):
            layers.append(("dense", lyr.get_weights()))
            act = lyr.get_config().get("activation")
            if act not in ("linear", "relu", "softmax"):
                raise ValueError(f"Dense activation {act!r} not supported")
            relu.append(act == "relu")
    if tied is not None:  # the logits: hidden @ embedding matrix transposed + bias
        layers.append(("dense", [tied[0].T.copy(), tied[1]]))
        relu.append(False)
    return layers, tuple(relu)


def text_layers(path: Path) -> tuple[list, tuple]:
    """[(kind, weights)] of a saved Embedding → LSTM → Dense text model, plus which Denses use
    relu (the same list `model_layers` makes from a loaded Keras model)."""
    layers, relu, tied = [], [], None
    for kind, cfg, weights in keras_file_layers(path):
        if kind == "TiedEmbedding":
            tied = weights
            layers.append(("embedding", weights[:1]))
        elif kind == "Embedding":
            layers.append(("embedding", weights))
        elif kind == "LSTM":
            if cfg.get("activation") != "tanh" or cfg.get("recurrent_activation") != "sigmoid":
                raise ValueError("the NumPy step supports the default LSTM activations only")
            layers.append(("lstm", weights))
        elif kind == "Dense":
            act = cfg.get("activation")
            if act not in ("linear", "relu", "softmax"):
                raise ValueError(f"Dense activation {act!r} not supported")
            layers.append(("dense", weights))
            relu.append(act == "relu")
        elif kind == "Activation" and cfg.get("activation") in ("softmax", "linear"):
            continue  # the step returns logits; softmax is applied by the decoder
        elif kind not in ("Dropout", "SpatialDropout1D", "GaussianNoise"):
            raise ValueError(f"layer {kind} is not part of a word LSTM")
    if tied is not None:  # the logits: hidden @ embedding matrix transposed + bias
        layers.append(("dense", [tied[0].T.copy(), tied[1]]))
        relu.append(False)
    return layers, tuple(relu)


def load_text_model(folder: Path, spec: TaskSpec) -> TextModel:
    """Load models/<slug>/ (model.keras, vocab.json, card.json) once, before serving; the weights
    are read from the file directly, so serving text never imports Keras or TensorFlow."""
    folder = Path(folder)
    vocab = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8"))
    card = Card.from_json(folder).to_json() if (folder / "card.json").is_file() else {}
    layers, relu = text_layers(folder / "model.keras")
    tm = TextModel(spec, vocab, layers, card)
    tm._hidden_relu = relu
    if tm.denses[-1][0].shape[1] != len(vocab):
        raise ValueError(f"model output {tm.denses[-1][0].shape[1]} != vocabulary {len(vocab)}")
    return tm


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
        if len(lines[-1]) == line_kind(len(lines) - 1):
            ids.append(EOL_ID)
            lines.append([])
        ids.append(model.vocab.index.get(w, 1))
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


def _beam(model: TextModel, logits: np.ndarray, state: list, plan, width: int) -> list[tuple[int, list]]:
    """Beam search over the constrained candidates (exact-rhyme candidates scored with the bonus);
    returns [(token_id, relaxed)] of the best beam."""
    logp = log_softmax(logits)
    beams = [(0.0, state, [], plan)]
    finished = []
    for _ in range(10_000):
        cands = []
        for b, (score, st, toks, pl) in enumerate(beams):
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
            item = (score, b, beams[b][2] + [(t, relaxed)], pl)
            (finished if pl.done else new).append(item)
        if not new or len(finished) >= width:
            break
        ids = np.array([it[2][-1][0] for it in new])
        h_c = [(np.stack([beams[it[1]][1][i][0][0] for it in new]), np.stack([beams[it[1]][1][i][1][0] for it in new]))
               for i in range(len(model.units))]
        logits, st = model.step(ids, h_c)
        logp = log_softmax(logits)
        beams = [(it[0], [(h[j:j + 1], c[j:j + 1]) for h, c in st], it[2], it[3]) for j, it in enumerate(new)]
    best = max(finished or [(b[0], 0, b[2], b[3]) for b in beams], key=lambda it: it[0])
    return best[2]


def generate_stream(model: TextModel, req: GenerateRequest):
    """Yield {"token": str} per generated word, {"line": str, "check": {...}} per finished verse
    line (Kiều), and finally {"done": True, **summary} (the same summary as `generate`)."""
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
    logits, state = model.feed(ids)
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
        for token_id, relaxed in _beam(model, logits, state, plan.copy(), req.beam_width):
            before = plan.complete_lines() if verse else 0
            plan.advance(token_id, model.vocab.tokens[token_id], relaxed)
            yield from emit(token_id, before)
    else:
        while not plan.done:
            mask, relaxed, prefer = plan.allowed()
            token_id = _pick(logits[0], mask, req, rng, prefer)
            before = plan.complete_lines() if verse else 0
            plan.advance(token_id, model.vocab.tokens[token_id], relaxed)
            yield from emit(token_id, before)
            if plan.done:
                break
            logits, state = model.step(np.array([token_id]), state)
    seconds = time.perf_counter() - t0
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


def generate(model: TextModel, req: GenerateRequest) -> dict:
    """The whole text at once: {text, lines, checks, tokens, seconds, random_seed, ...}."""
    final = None
    for event in generate_stream(model, req):
        if event.get("done"):
            final = event
    final = dict(final)
    final.pop("done")
    return final
