"""A text model as served: the vocabulary and the weights of models/<slug>/model.keras, run one
token at a time in NumPy (no Keras, no TensorFlow; LSTM, GRU or SimpleRNN layers), optionally
recording every gate.
Details: docs/DESIGN.md, "Served text models (app/textmodel.py)"."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from app.cells import RECURRENT, State, StepLayer, step_layer
from app.lstm_cell import keras_file_layers
from app.tasks import TaskSpec
from app.text import BANG, Vocabulary, is_syllable, rhyme_key, rime, tone


class MeterTables:
    """Per-vocabulary tone class and vần, computed once per model (meter masks are then array ops)."""

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
    """A loaded text model: vocabulary, NumPy weights and a single-step function.

    `embedding` (V, E); `recurrent`: the stacked `app.cells.StepLayer`s (LSTM, GRU or SimpleRNN, one
    cell for the whole stack); `denses`: [(kernel, bias, relu)], the last one giving the logits
    (`text_layers` reads the three from a saved model). A state is one `app.cells.State` per layer."""

    def __init__(self, spec: TaskSpec, vocab: Vocabulary, embedding: np.ndarray | None, recurrent: list,
                 denses: list):
        if embedding is None or not recurrent or not denses:
            raise ValueError("a text model is Embedding → recurrent layer(s) → Dense(s)")
        if len({layer.CELL for layer in recurrent}) > 1:
            raise ValueError("a text model's recurrent layers use one cell")
        self.spec = spec
        self.vocab = vocab
        self.layers: list[StepLayer] = recurrent
        self.cell = recurrent[0].CELL  # "lstm", "gru" or "simple_rnn"
        self.denses = denses
        # The first layer's input projection for every token, looked up instead of multiplied.
        self.input_table = recurrent[0].project(embedding)
        self.units = [layer.units for layer in recurrent]
        self.meter = MeterTables(vocab) if spec.tokenizer == "syllables" else None

    @property
    def vocab_size(self) -> int:
        """Number of entries in the vocabulary (the softmax width)."""
        return len(self.vocab)

    def initial_state(self, batch: int = 1) -> list[State]:
        """The zero state of every layer."""
        return [layer.zero_state(batch) for layer in self.layers]

    def step(self, ids: np.ndarray, state: list, gates: list | None = None) -> tuple[np.ndarray, list]:
        """One token per row in; the next token's logits (unnormalised) and the new state out.

        With a `gates` list, appends this step's records of every layer (one tuple per layer in its
        `RECORDS` order, e.g. (i, f, g, o, c, h) for an LSTM; arrays (rows, units))."""
        new_state, recorded = [], []
        x = None
        for k, (layer, layer_state) in enumerate(zip(self.layers, state)):
            layer_state, values = layer.step(self.input_table[ids] if k == 0 else layer.project(x), layer_state)
            new_state.append(layer_state)
            recorded.append(values)
            x = layer_state[0]
        for w, b, relu in self.denses:
            x = x @ w + b
            if relu:
                x = np.maximum(x, 0)
        if gates is not None:
            gates.append(recorded)
        return x, new_state

    def feed(self, ids: list[int], state=None, gates: list | None = None) -> tuple[np.ndarray, list]:
        """Run a prefix through the model; the log-probabilities (1, V) after its last token, and
        the state (`gates`: as in `step`, one entry per token)."""
        state = state or self.initial_state(1)
        logits = None
        for t in ids:
            logits, state = self.step(np.array([t]), state, gates)
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


def text_layers(path: Path) -> tuple[np.ndarray | None, list, list]:
    """The embedding, the step layers and [(kernel, bias, relu)] of a saved Embedding → LSTM / GRU /
    SimpleRNN → Dense text model; a tied embedding also gives the output logits (its matrix
    transposed + bias)."""
    embedding, recurrent, denses, tied_bias = None, [], [], None
    for kind, cfg, weights in keras_file_layers(path):
        if kind in ("Embedding", "TiedEmbedding"):
            embedding = np.asarray(weights[0], np.float32)
            tied_bias = weights[1] if kind == "TiedEmbedding" else None
        elif kind in RECURRENT:
            recurrent.append(step_layer(kind, cfg, weights))
        elif kind == "Dense":
            act = cfg.get("activation")
            if act not in ("linear", "relu", "softmax"):
                raise ValueError(f"Dense activation {act!r} not supported")
            denses.append((np.asarray(weights[0], np.float32), np.asarray(weights[1], np.float32), act == "relu"))
        elif kind == "Activation" and cfg.get("activation") in ("softmax", "linear"):
            continue  # the step returns logits; softmax is applied by the decoder
        elif kind not in ("Dropout", "SpatialDropout1D", "GaussianNoise"):
            raise ValueError(f"layer {kind} is not part of a word generator")
    if tied_bias is not None:
        denses.append((embedding.T.copy(), np.asarray(tied_bias, np.float32), False))
    return embedding, recurrent, denses


def load_text_model(folder: Path, spec: TaskSpec) -> TextModel:
    """Load models/<slug>/ (model.keras, vocab.json) once, before serving."""
    folder = Path(folder)
    vocab = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8"))
    tm = TextModel(spec, vocab, *text_layers(folder / "model.keras"))
    if tm.denses[-1][0].shape[1] != len(vocab):
        raise ValueError(f"model output {tm.denses[-1][0].shape[1]} != vocabulary {len(vocab)}")
    return tm
