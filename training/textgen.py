"""Train and evaluate a text task (NYT headlines by word, Truyện Kiều by syllable).

Read top to bottom: data (load, split, vocabulary), model, train, evaluate (against a
Kneser-Ney n-gram on the same split), Kiều meter rates, save.

Splits: headlines are deduplicated, then split 80/10/10 by headline. Kiều is split by couplet,
in runs of COUPLETS_PER_BLOCK consecutive couplets so that every sequence keeps the
cross-couplet rhyme (bát 8 → next lục 6) the model must learn. Training is many-to-many: each
headline or block is one sequence and the loss covers every position.

Headlines alone are ~54k training words, little for an LSTM. With `aux_text="snippets"` (the
task's default) the model also trains on the snippets of the training articles: one more
sequence per article, starting from the SNIPPET marker instead of EOL, so the model keeps the
two styles apart and headlines stay what is validated, tested and generated. The text goes
with its article's headline split, so nothing of a validation or test article is trained on
(`snippet_sequences`). The n-gram baseline is offered the same text after the same marker.

The vocabulary is built from the training headlines only (tokens seen at least MIN_COUNT times),
so the test tokens do not depend on the extra text; the rest become <unk>, which both the LSTM
and the n-gram predict as one token.

The n-gram baseline is `KneserNey` below, the same interpolated Kneser-Ney formula as
`nltk.lm.KneserNeyInterpolated` (a test checks they agree), vectorised: nltk scans every stored
n-gram for each continuation count, so one score costs milliseconds, and the top-1/top-5 figures
need the score of every word of the vocabulary at every test position (tens of millions of scores).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.tasks import TaskSpec
from app.text import (EOL, EOL_ID, PAD_ID, SNIPPET, Vocabulary, check_verse, clean_words, couplet_pass_rates,
                      display_forms, normalize, rhyme_shares, rhymes, tokenize_verse)
from training import fit
from training.data import DataError, resolve

COUPLETS_PER_BLOCK = 4
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
MIN_COUNT = 2
MAX_HEADLINE_TOKENS = 40
MAX_SNIPPET_TOKENS = 60
AUX_TEXT = ("none", "snippets")
QUICK_SEQUENCES = 200
METER_COUPLETS = 200
NGRAM_ORDERS = (2, 3, 4)
NGRAM_DISCOUNTS = (0.6, 0.75, 0.9, 1.0)
DEFAULT_MODEL = {"embedding": 128, "units": 256, "dropout": 0.4, "projection": 128}
TINY_MODEL = {"embedding": 8, "units": 16, "dropout": 0.0, "projection": 0}
# A few real lines, so a tiny model (tests) has a vocabulary without the data set.
SAMPLE_TEXT = {
    "syllables": (
        "Trăm năm trong cõi người ta,\nChữ tài chữ mệnh khéo là ghét nhau.\n"
        "Trải qua một cuộc bể dâu,\nNhững điều trông thấy mà đau đớn lòng.\n"
        "Lạ gì bỉ sắc tư phong,\nTrời xanh quen thói má hồng đánh ghen.\n"
        "Cảo thơm lần giở trước đèn,\nPhong tình cổ lục còn truyền sử xanh.\n"
        "Rằng năm Gia Tĩnh triều Minh,\nBốn phương phẳng lặng hai kinh vững vàng.\n"
        "Có nhà viên ngoại họ Vương,\nGia tư nghỉ cũng thường thường bậc trung.\n"
    ),
    "words": (
        "G.O.P. Leadership Poised to Topple Obama’s Pillars\nFractured World Tested the Hope of a Young President\n"
        "Little Troublemakers\nAngela Merkel, Russia’s Next Target\nBoots for a Stranger on a Bus\n"
        "The New Year in Pictures\nTrump Says He Will Leave His Business\nA Year of Living Dangerously\n"
    ),
}


# ----------------------------------------------------------------------------- data
@dataclass
class TextData:
    """Token sequences per split (each ends with EOL), with provenance and counts."""

    train: list[list[str]]
    validation: list[list[str]]
    test: list[list[str]]
    source: str
    counts: dict = field(default_factory=dict)
    display: dict = field(default_factory=dict)
    test_lines: list[str] = field(default_factory=list)  # Kiều: the test verses, for meter rates
    all_lines: list[str] = field(default_factory=list)
    aux: list[list[str]] = field(default_factory=list)  # training only: SNIPPET + words + EOL each


def read_articles(folder: Path) -> tuple[list[dict], dict]:
    """Headline, snippet and abstract of every article of every Articles*.csv (empty when absent)."""
    import pandas as pd

    files = sorted(Path(folder).glob("Articles*.csv"))
    if not files:
        raise DataError(f"no Articles*.csv in {folder}; pass --data with the nyt_headlines folder")
    rows, per_file = [], {}
    for f in files:
        frame = pd.read_csv(f, dtype=str).fillna("")
        cols = [c for c in ("headline", "snippet", "abstract") if c in frame]
        part = [{c: str(r.get(c, "")).strip() for c in ("headline", "snippet", "abstract")} | {"file": f.name}
                for r in frame[cols].to_dict("records")]
        per_file[f.name] = sum(1 for r in part if r["headline"] and r["headline"] != "Unknown")
        rows.extend(part)
    return rows, {"files": len(files), "headlines_per_file": per_file}


def snippet_sequences(articles: list[dict], split_of: dict, quick: bool = False) -> tuple[list[list[str]], dict]:
    """Training-only auxiliary sequences: SNIPPET + the words of an article's snippet (and of its
    abstract where that differs) + EOL.

    Split by article: `split_of` maps a headline's words to its split, and an article's text goes
    with its headline, so nothing of a validation or test article is trained on. Articles whose
    headline is 'Unknown' belong to no split and are kept, except a text equal to that of a
    validation or test article (the same briefing under two records).
    """
    held_out, kept, seen = set(), [], set()
    texts = []
    for a in articles:
        head = tuple(clean_words(a["headline"])[:MAX_HEADLINE_TOKENS - 1]) if a["headline"] != "Unknown" else ()
        split = split_of.get(head, "unknown") if head else "unknown"
        if split == "unknown" and head:
            continue  # a headline dropped from the split (quick runs): its text goes nowhere
        parts = [a["snippet"]] + ([a["abstract"]] if a["abstract"] and a["abstract"] != a["snippet"] else [])
        for text in parts:
            words = tuple(clean_words(text)[:MAX_SNIPPET_TOKENS])
            if words:
                texts.append((split, words))
                if split in ("validation", "test"):
                    held_out.add(words)
    dropped = 0
    for split, words in texts:
        if split not in ("train", "unknown") or words in seen:
            continue
        if words in held_out:
            dropped += 1
            continue
        seen.add(words)
        kept.append([SNIPPET, *words, EOL])
    if quick:
        kept = kept[:QUICK_SEQUENCES]
    counts = {"text": "snippet (and abstract where it differs) of each article",
              "marker": SNIPPET, "sequences": len(kept), "tokens": sum(len(k) - 1 for k in kept),
              "from_unknown_headline_articles": sum(1 for sp, w in texts if sp == "unknown" and w in seen),
              "dropped_equal_to_held_out_text": dropped,
              "split": "by article: an article's text goes with its headline's split and only the training "
                       "split's is used; articles headed 'Unknown' (in no split) are used unless their text "
                       "equals a validation or test article's; distinct texts only, at most "
                       f"{MAX_SNIPPET_TOKENS} words each"}
    return kept, counts


def read_verses(path: Path) -> list[str]:
    """Verse lines of the poem, NFC, blank lines dropped."""
    if not Path(path).is_file():
        raise DataError(f"no verse file at {path}; pass --data with truyen_kieu/truyen_kieu.txt")
    return [normalize(ln.strip()) for ln in Path(path).read_text(encoding="utf-8").splitlines() if ln.strip()]


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A seeded 80/10/10 permutation split of n units."""
    order = np.random.default_rng(seed).permutation(n)
    n_val = max(1, round(n * SPLIT_FRACTIONS[1]))
    n_test = max(1, round(n * SPLIT_FRACTIONS[2]))
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def load_text_data(spec: TaskSpec, data_arg, seed: int, quick: bool = False, aux_text: str = "none") -> TextData:
    """Read the task's text and split it (see the module docstring); with aux_text "snippets"
    (headlines only) also the training articles' snippets (`snippet_sequences`)."""
    path = resolve(spec, data_arg)
    if spec.tokenizer == "words":
        articles, info = read_articles(path)
        heads = [a["headline"] for a in articles if a["headline"] and a["headline"] != "Unknown"]
        seqs, seen = [], set()
        for h in heads:
            words = clean_words(h)[:MAX_HEADLINE_TOKENS - 1]
            if words and tuple(words) not in seen:
                seen.add(tuple(words))
                seqs.append(words + [EOL])
        if quick:
            seqs = seqs[:QUICK_SEQUENCES]
        tr, va, te = split_indices(len(seqs), seed)
        counts = {"headlines": len(heads), "distinct_headlines": len(seqs), "unit": "headline", **info}
        aux = []
        if aux_text == "snippets":
            split_of = {tuple(seqs[i][:-1]): name for name, idx in (("train", tr), ("validation", va), ("test", te))
                        for i in idx}
            aux, counts["auxiliary"] = snippet_sequences(articles, split_of, quick)
        return TextData([seqs[i] for i in tr], [seqs[i] for i in va], [seqs[i] for i in te], str(path),
                        counts, aux=aux)
    lines = read_verses(path)
    couplets = [lines[i:i + 2] for i in range(0, len(lines) - 1, 2)]
    blocks = [couplets[i:i + COUPLETS_PER_BLOCK] for i in range(0, len(couplets), COUPLETS_PER_BLOCK)]
    if quick:
        blocks = blocks[:QUICK_SEQUENCES // 4]
    tr, va, te = split_indices(len(blocks), seed)

    def seqs(idx):
        return [tokenize_verse([ln for c in blocks[i] for ln in c]) for i in sorted(idx)]

    test_lines = [ln for i in sorted(te) for c in blocks[i] for ln in c]
    counts = {"verses": len(lines), "couplets": len(couplets), "unit": "couplet",
              "couplets_per_block": COUPLETS_PER_BLOCK,
              "couplets_per_split": {"train": sum(len(blocks[i]) for i in tr),
                                     "validation": sum(len(blocks[i]) for i in va),
                                     "test": sum(len(blocks[i]) for i in te)}}
    train_lines = [ln for i in tr for c in blocks[i] for ln in c]
    return TextData(seqs(tr), seqs(va), seqs(te), str(path), counts, display_forms(train_lines), test_lines,
                    [ln for b in blocks for c in b for ln in c])


def shift(ids: list[int], marker: int | None = None) -> tuple[list[int], list[int]]:
    """(inputs, targets) of one sequence: the targets are the sequence and the inputs EOL + the
    sequence shifted right by one, except that a sequence starting with `marker` (an auxiliary
    one) has it as its first input and never as a target."""
    if marker is not None and ids and ids[0] == marker:
        return ids[:-1], ids[1:]
    return [EOL_ID] + ids[:-1], ids


def pad_pairs(pairs: list[tuple[list[int], list[int]]]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) pairs of `shift` as two arrays padded to the longest target."""
    width = max(len(t) for _, t in pairs)
    x = np.zeros((len(pairs), width), np.int32)
    y = np.zeros((len(pairs), width), np.int32)
    for r, (inputs, targets) in enumerate(pairs):
        y[r, :len(targets)] = targets
        x[r, :len(inputs)] = inputs
    return x, y


def to_arrays(seqs: list[list[str]], vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray]:
    """Padded (inputs, targets) of `shift`."""
    marker = vocab.index.get(SNIPPET)
    return pad_pairs([shift(vocab.encode(s), marker) for s in seqs])


def make_batches(ids: list[list[int]], batch: int, seed: int, shuffle: bool, marker: int | None = None):
    """A Keras PyDataset of (inputs, targets, weights) batches of similar length, each padded only
    to its own longest sequence (headlines vary from 1 to ~30 words: padding all of them to the
    longest would triple the work). Reshuffled every epoch when `shuffle`."""
    import keras

    class Batches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.on_epoch_end()

        def on_epoch_end(self):
            order = self.rng.permutation(len(ids)) if shuffle else np.arange(len(ids))
            pool = batch * 16
            chunks = []
            for s in range(0, len(order), pool):
                part = sorted(order[s:s + pool], key=lambda i: len(ids[i]))
                chunks += [part[k:k + batch] for k in range(0, len(part), batch)]
            self.chunks = [chunks[i] for i in self.rng.permutation(len(chunks))] if shuffle else chunks
            # Keras reads the input signature off the first two batches: if they were equally wide
            # it would take the width as fixed and fail on the next batch. Keep them different.
            width = lambda c: max(len(ids[i]) for i in c)  # noqa: E731
            other = next((k for k in range(2, len(self.chunks))
                          if width(self.chunks[k]) != width(self.chunks[0])), None)
            if len(self.chunks) > 2 and width(self.chunks[1]) == width(self.chunks[0]) and other:
                self.chunks[1], self.chunks[other] = self.chunks[other], self.chunks[1]

        def __len__(self):
            return len(self.chunks)

        def __getitem__(self, k):
            x, y = pad_pairs([shift(ids[i], marker) for i in self.chunks[k]])
            return x, y, (y != PAD_ID).astype(np.float32)

    return Batches()


# ----------------------------------------------------------------------------- model
_WEIGHT_DROP = None


def weight_drop_lstm_class():
    """The `WeightDropLSTM` Keras layer class (AWD-LSTM's weight drop, Merity et al. 2017), made
    on first use: an LSTM whose recurrent kernel, while training, is multiplied by one Bernoulli
    mask per batch (DropConnect on the hidden-to-hidden weights, the same mask at every step).
    Its weights are a plain LSTM's [kernel, recurrent_kernel, bias] and at inference it is a plain
    LSTM, so the saved model uses `keras.layers.LSTM` (`plain_twin`) and serving is unchanged."""
    global _WEIGHT_DROP
    if _WEIGHT_DROP is None:
        import keras
        from keras import ops

        class WeightDropCell(keras.layers.LSTMCell):
            def __init__(self, units, weight_drop=0.0, **kw):
                super().__init__(units, implementation=2, **kw)
                self.weight_drop = float(weight_drop)
                self.seed_generator = keras.random.SeedGenerator(kw.get("seed"))
                object.__setattr__(self, "_dropped", None)

            def call(self, inputs, states, training=False):
                h_tm1, c_tm1 = states
                kernel = self._dropped if (training and self._dropped is not None) else self.recurrent_kernel
                z = ops.matmul(inputs, self.kernel) + ops.matmul(h_tm1, kernel) + self.bias
                c, o = self._compute_carry_and_output_fused(ops.split(z, 4, axis=1), c_tm1)
                h = o * self.activation(c)
                return h, [h, c]

        @keras.saving.register_keras_serializable(package="lstmlab")
        class WeightDropLSTM(keras.layers.RNN):
            def __init__(self, units, weight_drop=0.0, **kw):
                super().__init__(WeightDropCell(units, weight_drop), **kw)
                self.units, self.weight_drop = int(units), float(weight_drop)

            def inner_loop(self, sequences, initial_state, mask, training=False):
                cell = self.cell
                if training and cell.weight_drop > 0:
                    dropped = keras.random.dropout(cell.recurrent_kernel, cell.weight_drop, seed=cell.seed_generator)
                    object.__setattr__(cell, "_dropped", dropped)
                try:
                    return super().inner_loop(sequences, initial_state, mask=mask, training=training)
                finally:
                    object.__setattr__(cell, "_dropped", None)

            def get_config(self):
                cfg = {k: v for k, v in super().get_config().items() if k != "cell"}
                return cfg | {"units": self.units, "weight_drop": self.weight_drop}

        _WEIGHT_DROP = WeightDropLSTM
    return _WEIGHT_DROP


def plain_twin(model, vocab_size: int, kwargs: dict, name: str):
    """The inference model of a training model made with `weight_drop`: the same stack with a
    plain LSTM, carrying the trained weights (what is saved and served)."""
    if not kwargs.get("weight_drop"):
        return model
    twin = make_word_lstm(vocab_size, name=name, **(kwargs | {"weight_drop": 0.0}))
    twin.set_weights(model.get_weights())
    return twin


def make_word_lstm(vocab_size: int, embedding: int = 128, units: int = 256, dropout: float = 0.4,
                   projection: int = 128, tied: bool = False, recurrent_dropout: float = 0.0,
                   word_dropout: float = 0.0, locked: bool = False, weight_drop: float = 0.0,
                   name: str = "word_lstm"):
    """Embedding → Dropout → LSTM (every step) → Dropout → [Dense projection] → Dense softmax.

    The lab's reference is Embedding(10) → LSTM(100) → Dropout(0.1) → Dense(softmax); this is
    wider, with more dropout (small corpora), and a linear projection that keeps the output
    layer (the largest) small. With `tied` the output layer is the embedding matrix transposed
    (projection = embedding width), which halves the parameters and regularises.
    `word_dropout` drops whole words (every unit of a token's embedding) and `locked` drops the
    same units at every step of a sequence (SpatialDropout1D, AWD-LSTM's variational dropout);
    both are Dropout layers, which serving skips. `weight_drop` trains a `WeightDropLSTM`
    (DropConnect on the recurrent kernel); save its `plain_twin`.
    """
    import keras
    from keras import layers

    from app.generation import tied_embedding_layer

    tokens = keras.Input((None,), dtype="int32", name="tokens")
    if tied:
        emb = tied_embedding_layer()(vocab_size, embedding, name="embedding")
    else:
        emb = layers.Embedding(vocab_size, embedding, name="embedding")
    x = emb(tokens)
    if word_dropout:
        x = layers.Dropout(word_dropout, noise_shape=(None, None, 1), name="word_dropout")(x)
    drop = layers.SpatialDropout1D if locked else layers.Dropout
    x = drop(dropout, name="embedding_dropout")(x)
    if weight_drop:
        x = weight_drop_lstm_class()(units, weight_drop, return_sequences=True, name="lstm")(x)
    else:
        x = layers.LSTM(units, return_sequences=True, recurrent_dropout=recurrent_dropout, name="lstm")(x)
    x = drop(dropout, name="lstm_dropout")(x)
    if tied:
        x = layers.Dense(embedding, name="projection")(x)
        x = layers.Dropout(dropout / 2, name="projection_dropout")(x)
        probs = layers.Activation("softmax", name="next_token")(emb(x, reverse=True))
    else:
        if projection:
            x = layers.Dense(projection, name="projection")(x)
        probs = layers.Dense(vocab_size, activation="softmax", name="next_token")(x)
    return keras.Model(tokens, probs, name=name)


# ----------------------------------------------------------------------------- evaluation
def lm_metrics(model, x: np.ndarray, y: np.ndarray, batch: int = 64) -> dict:
    """Perplexity and top-1/top-5 next-token accuracy over the non-padding targets."""
    import keras

    nll, n, top1, top5 = 0.0, 0, 0, 0
    for s in range(0, len(x), batch):
        probs = keras.ops.convert_to_numpy(model(x[s:s + batch], training=False))
        t = y[s:s + batch]
        keep = t != PAD_ID
        p = np.take_along_axis(probs, t[..., None], axis=-1)[..., 0][keep]
        nll -= float(np.log(np.maximum(p, 1e-12)).sum())
        n += int(keep.sum())
        flat = probs[keep]
        tt = t[keep]
        top = np.argpartition(-flat, 5, axis=-1)[:, :5]
        top1 += int((flat.argmax(-1) == tt).sum())
        top5 += int((top == tt[:, None]).any(-1).sum())
    return {"perplexity": math.exp(nll / max(n, 1)), "top1_accuracy": top1 / max(n, 1),
            "top5_accuracy": top5 / max(n, 1), "tokens": n}


class KneserNey:
    """Interpolated Kneser-Ney (nltk.lm.KneserNeyInterpolated's formula), whole-vocabulary vectors.

    P(w | c) = max(N(c w) - d, 0) / N(c •) + d · |{w: N(c w) > 0}| / N(c •) · P(w | c[1:]),
    with raw counts N at the highest order, continuation counts (distinct left extensions) at the
    lower ones, and a context never seen handing all its mass to the shorter one. Equal to nltk's
    scores (a test checks), then normalised where nltk's padding quirk makes them sum above 1.
    """

    def __init__(self, order: int, discount: float, vocab_size: int):
        self.order, self.d, self.v = order, discount, vocab_size

    def fit(self, seqs: list[list[int]], marker: int | None = None) -> KneserNey:
        """Count n-grams of each sequence padded on the left with order-1 EOLs; a sequence that
        starts with `marker` (see `shift`) is padded with order-1 markers instead."""
        grams = [Counter() for _ in range(self.order + 1)]
        for s in seqs:
            start, s = (marker, s[1:]) if marker is not None and s and s[0] == marker else (EOL_ID, s)
            padded = [start] * (self.order - 1) + list(s)
            for k in range(1, self.order + 1):
                for i in range(len(padded) - k + 1):
                    grams[k][tuple(padded[i:i + k])] += 1
        # Unigram: continuation count over distinct bigram types.
        cont1 = np.zeros(self.v)
        for (_, w) in grams[2]:
            cont1[w] += 1
        if marker is not None:
            cont1[marker] = 0  # only a pad: never a word to predict
        self.p1 = cont1 / max(cont1.sum(), 1)
        self.tables: list[dict] = [{} for _ in range(self.order)]
        followers = [defaultdict(int) for _ in range(self.order)]
        for k in range(1, self.order):
            for g in grams[k + 1]:
                followers[k][g[:-1]] += 1
        for k in range(1, self.order):  # context length k
            acc: dict = defaultdict(Counter)
            if k == self.order - 1:
                for g, c in grams[k + 1].items():
                    acc[g[:-1]][g[-1]] += c
            else:
                for g in grams[k + 2]:
                    acc[g[1:-1]][g[-1]] += 1
            for ctx, cnt in acc.items():
                ids = np.fromiter(cnt.keys(), np.int64, len(cnt))
                vals = np.fromiter(cnt.values(), np.float64, len(cnt))
                total = vals.sum()
                self.tables[k][ctx] = (ids, np.maximum(vals - self.d, 0) / total,
                                       self.d * followers[k][ctx] / total)
        return self

    def distribution(self, context: tuple) -> np.ndarray:
        """P(· | context) over the vocabulary; context is the previous order-1 ids."""
        p = self.p1
        for k in range(1, self.order):
            t = self.tables[k].get(tuple(context[len(context) - k:]))
            if t is None:
                continue  # unseen context: alpha 0, gamma 1
            ids, alpha, gamma = t
            p = gamma * p
            p[ids] += alpha
        # nltk's formula leaves a little extra mass where the pad symbol (here EOL, also a real
        # token) follows itself; dividing by the total keeps P a distribution (a no-op elsewhere).
        return p / p.sum()

    def metrics(self, seqs: list[list[int]], full: bool = True) -> dict:
        """Perplexity (and, with `full`, top-1/top-5 accuracy) over every token of the sequences."""
        nll, n, top1, top5 = 0.0, 0, 0, 0
        for s in seqs:
            padded = [EOL_ID] * (self.order - 1) + list(s)
            for i, w in enumerate(s):
                p = self.distribution(padded[i:i + self.order - 1])
                nll -= math.log(max(p[w], 1e-12))
                n += 1
                if full:
                    top = np.argpartition(-p, 5)[:5]
                    top1 += int(p.argmax() == w)
                    top5 += int(w in top)
        out = {"perplexity": math.exp(nll / max(n, 1)), "tokens": n}
        if full:
            out.update(top1_accuracy=top1 / max(n, 1), top5_accuracy=top5 / max(n, 1))
        return out


def ngram_baseline(train: list[list[int]], val: list[list[int]], test: list[list[int]], vocab_size: int,
                   aux: list[list[int]] = (), marker: int | None = None) -> dict:
    """Pick the n-gram order and discount on validation perplexity, report test metrics.

    With auxiliary sequences the n-gram is offered them too (as the LSTM is, after the same
    marker), and whether to count them is one more choice made on validation perplexity.
    """
    t0 = time.perf_counter()
    grid = []
    for with_aux in (False, True) if aux else (False,):
        seqs = list(train) + list(aux) if with_aux else train
        for order in NGRAM_ORDERS:
            for d in NGRAM_DISCOUNTS:
                lm = KneserNey(order, d, vocab_size).fit(seqs, marker)
                grid.append((lm.metrics(val, full=False)["perplexity"], order, d, with_aux))
    best_ppl, order, d, with_aux = min(grid)
    lm = KneserNey(order, d, vocab_size).fit(list(train) + list(aux) if with_aux else train, marker)
    m = lm.metrics(test)
    return {"method": "interpolated Kneser-Ney (nltk.lm formula, own vectorised code)", "order": order,
            "discount": d, "auxiliary_text": with_aux, "validation_perplexity": best_ppl,
            "grid": [{"order": o, "discount": dd, "auxiliary_text": a, "validation_perplexity": p}
                     for p, o, dd, a in grid],
            "test_perplexity": m["perplexity"], "test_top1_accuracy": m["top1_accuracy"],
            "test_top5_accuracy": m["top5_accuracy"], "seconds": round(time.perf_counter() - t0, 1)}


def meter_rates(folder: Path, spec: TaskSpec, data: TextData, seed: int, couplets: int = METER_COUPLETS) -> dict:
    """Pass rates of length, tone and rhyme, and the shares of exact and near rhymes: constrained
    vs unconstrained sampling vs the poem; plus the first constrained verses with their checks."""
    from app.generation import EXACT_RHYME_BONUS, generate, load_text_model, validate_request

    model = load_text_model(folder, spec)
    per_seed = 10
    seeds = [data.test_lines[i] for i in range(0, len(data.test_lines), 2)] or ["Trăm năm trong cõi người ta"]
    out = {}
    for name, meter in (("constrained", True), ("unconstrained", False)):
        checks_all, relaxed, secs, toks = [], 0, 0.0, 0
        made, k = 0, 0
        while made < couplets:
            n = min(per_seed, couplets - made)
            req = validate_request(spec, {"seed": seeds[k % len(seeds)], "length": n, "strategy": "top_p",
                                          "random_seed": seed + k, "meter": meter})
            res = generate(model, req)
            lines = res["lines"]
            if meter and k == 0:  # shown on the card: the seed's couplet and 3 generated ones
                out["examples"] = [{"line": ln, "check": c} for ln, c in zip(lines[:8], check_verse(lines[:8]))]
            checks = check_verse(lines)[2:]  # the seed's couplet is not generated
            checks_all.extend(checks)
            relaxed += sum(len(c.get("relaxed", [])) for c in res["checks"][2:])
            secs += res["seconds"]
            toks += res["tokens"]
            made += n
            k += 1
        rates = couplet_pass_rates(checks_all)
        rates.update(relaxed_positions=relaxed, syllables_per_second=round(toks / max(secs, 1e-9)),
                     rhymes=rhyme_shares(checks_all))
        out[name] = rates
    real = check_verse(data.all_lines)
    out["real_poem_all"] = couplet_pass_rates(real) | {"rhymes": rhyme_shares(real)}
    first = check_verse(data.all_lines[: 2 * couplets])
    out["real_poem_first_200"] = couplet_pass_rates(first) | {"rhymes": rhyme_shares(first)}
    words = [clean_words(ln) for ln in data.all_lines]
    sixth = [w[5] for w in words if len(w) >= 6]
    pairs = np.random.default_rng(seed).integers(0, len(sixth), size=(2, 20000))
    out["random_syllable_pairs_rhyme"] = float(np.mean([rhymes(sixth[a], sixth[b]) for a, b in pairs.T]))
    out["sampling"] = {"strategy": "top_p", "top_p": 0.9, "temperature": 0.8,
                       "seeds": "first line of test couplets, 10 couplets per seed",
                       "exact_rhyme_bonus": EXACT_RHYME_BONUS}
    goal = out["real_poem_all"]["rhymes"]
    mine = out["constrained"]["rhymes"]
    out["exact_rhymes_at_least_poem"] = all(mine[k]["exact"] >= goal[k]["exact"] for k in ("luc6_bat6", "bat8_luc6"))
    return out


# ----------------------------------------------------------------------------- training
def text_parser(prog: str) -> argparse.ArgumentParser:
    """The common training flags plus the text model's size."""
    from training.__main__ import image_parser

    p = image_parser(prog)
    p.add_argument("--min-count", type=int, default=MIN_COUNT, help="rarer tokens become <unk>")
    p.add_argument("--weight-average", type=float, default=None, metavar="MOMENTUM",
                   help="validate and keep an exponential moving average of the weights, e.g. 0.998 "
                        "(default: the task's; 0 turns it off)")
    p.add_argument("--train-text", choices=("all", "headlines"), default="all",
                   help="headlines: fit on the headlines only, the auxiliary text still loaded for the "
                        "vocabulary and the n-gram (e.g. a last phase with --init-from)")
    p.add_argument("--aux-text", choices=AUX_TEXT, default=None,
                   help="headlines: also train on the training articles' snippets (default: the task's)")
    return p


def main(spec: TaskSpec, argv: list[str]) -> int:
    """`python -m training nyt_headlines|kieu [options]`; returns the exit code."""
    args = text_parser(f"python -m training {spec.slug}").parse_args(argv)
    train_text_task(spec, args, Path(args.models_dir))
    return 0


def train_text_task(spec: TaskSpec, args, models_dir: Path) -> Path:
    """The whole run for one text task; returns the folder the model was saved to."""
    import keras

    # Data --------------------------------------------------------------------------------
    aux_text = args.aux_text or spec.extra.get("aux_text", "none")
    data = load_text_data(spec, args.data, args.seed, args.quick, aux_text)
    # From the headlines only, so the test tokens (and <unk>s) do not depend on the extra text.
    vocab = Vocabulary.build(data.train, spec.tokenizer, min_count=args.min_count, display=data.display,
                             markers=(SNIPPET,) if data.aux else ())
    marker = vocab.index.get(SNIPPET)
    (xtr, ytr), (xva, yva), (xte, yte) = (to_arrays(s, vocab) for s in (data.train, data.validation, data.test))
    epochs = 1 if args.quick else (args.epochs or spec.epochs)
    batch = args.batch_size or spec.batch_size
    print(f"[{spec.slug}] {data.source}: sequences train {len(xtr)} (+{len(data.aux)} auxiliary), "
          f"validation {len(xva)}, test {len(xte)}; vocabulary {len(vocab)}", flush=True)

    # Model ---------------------------------------------------------------------------------
    keras.utils.set_random_seed(args.seed)
    start = load_text_warm_start(spec, args.init_from, vocab)
    kw = dict(TINY_MODEL) if args.quick else DEFAULT_MODEL | spec.extra.get("model", {})
    if start:
        kw = dict(start["card"].get("model_kwargs", kw))
    kw.update(json.loads(args.model_kwargs) if args.model_kwargs else {})
    model = make_word_lstm(len(vocab), name=spec.slug, **kw)
    if start:  # a weight-dropped LSTM has the plain one's weights, in the same order
        model.set_weights(start["model"].get_weights())
    train_seqs = data.train + (data.aux if args.train_text == "all" else [])
    lr = args.learning_rate or spec.learning_rate
    optimizer = keras.optimizers.AdamW(lr, weight_decay=1e-4, clipnorm=1.0)
    model.compile(optimizer, "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    if args.verbose:
        model.summary()

    # Train ---------------------------------------------------------------------------------
    callbacks, paths = fit.standard_callbacks(spec.slug, args.resume, args.patience, "val_loss", "min",
                                              args.verbose)
    callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, args.patience // 3),
                                                       verbose=args.verbose))
    average = args.weight_average if args.weight_average is not None else spec.extra.get("weight_average", 0.0)
    if average:
        swap_in, swap_out = fit.weight_average_callbacks(
            model, average, lambda m: {"val_loss": math.log(lm_metrics(m, xva, yva, batch=256)["perplexity"])})
        # In before the timer/CSV/checkpoint/early stopping, out just before the backup (last).
        # The averaged val_loss is the per-token NLL; Keras' own also averages over padding.
        callbacks = [swap_in, *callbacks[:-2], callbacks[-1], swap_out, callbacks[-2]]
    t0 = time.perf_counter()
    model.fit(make_batches([vocab.encode(s) for s in train_seqs], batch, args.seed, True, marker),
              validation_data=make_batches([vocab.encode(s) for s in data.validation], 256, args.seed, False),
              epochs=epochs, callbacks=callbacks, verbose=args.verbose)
    train_seconds = time.perf_counter() - t0
    if paths["best"].is_file():
        model.load_weights(paths["best"])
    model = plain_twin(model, len(vocab), kw, spec.slug)  # what is evaluated, saved and served

    # Evaluate ------------------------------------------------------------------------------
    test = lm_metrics(model, xte, yte)
    val = lm_metrics(model, xva, yva)
    ids = lambda seqs: [vocab.encode(s) for s in seqs]  # noqa: E731
    ngram = ngram_baseline(ids(data.train), ids(data.validation), ids(data.test), len(vocab), ids(data.aux), marker)
    gain = 1 - test["perplexity"] / ngram["test_perplexity"]
    print(f"[{spec.slug}] test perplexity {test['perplexity']:.1f} (n-gram {ngram['test_perplexity']:.1f}, "
          f"{gain:+.1%}), top-1 {test['top1_accuracy']:.3f}, top-5 {test['top5_accuracy']:.3f}", flush=True)
    history = fit.read_history(paths["history_csv"])
    seconds = history.pop("seconds", paths["timer"].seconds)
    unk_rate = float(np.mean(yte[yte != PAD_ID] == 1))
    metrics = {"test_perplexity": test["perplexity"], "test_top1_accuracy": test["top1_accuracy"],
               "test_top5_accuracy": test["top5_accuracy"], "test_tokens": test["tokens"],
               "test_unk_rate": unk_rate,
               "validation_perplexity": val["perplexity"], "validation_top1_accuracy": val["top1_accuracy"],
               "ngram": ngram, "perplexity_below_ngram": gain, "goal_perplexity_10pct_below_ngram": gain >= spec.goal_below_ngram,
               # `python -m training evaluate` compares this figure:
               "test_accuracy": test["top1_accuracy"]}

    card = {
        **fit.card_header(spec, model, "word_lstm", kw),
        "optimizer": fit.optimizer_record(batch, average, learning_rate=lr, schedule="halve on validation plateau",
                                          loss="sparse categorical cross-entropy over every non-padding position"),
        "training": {"epochs_requested": epochs, "epochs_run": len(history.get("loss", [])),
                     "seconds_per_epoch": [round(s, 2) for s in seconds],
                     "seconds_total": round(train_seconds, 1), "seed": args.seed, "quick": bool(args.quick),
                     "trained_on": ("headlines and auxiliary text" if data.aux and args.train_text == "all"
                                    else "headlines only" if spec.tokenizer == "words" else "verse"),
                     "early_stopping": {"monitor": "val_loss", "patience": args.patience}},
        "data": {"source": spec.data_source, "path": data.source, "licence": spec.licence,
                 "counts": {**data.counts, "train": len(data.train), "validation": len(data.validation),
                            "test": len(data.test), "train_tokens": int((ytr != PAD_ID).sum()),
                            "validation_tokens": val["tokens"],
                            "test_tokens": test["tokens"]},
                 "split": "80/10/10 by " + ("headline (deduplicated)" if spec.tokenizer == "words"
                                            else f"couplet, in runs of {COUPLETS_PER_BLOCK}")
                          + ("; auxiliary text by article, training split only" if data.aux else ""),
                 "tokenizer": spec.tokenizer},
        "vocabulary": {"file": "vocab.json", "size": len(vocab), "min_count": args.min_count,
                       "specials": vocab.tokens[:3], "markers": [SNIPPET] if marker is not None else [],
                       "built_from": "training split" + (" (headlines only)" if data.aux else "")},
        "metrics": metrics,
        "history": history,
        "versions": fit.library_versions() | {"nltk": _nltk_version()},
        "git_commit": fit.git_commit(),
        "command": fit.command_line(),
    }
    if start:
        card["warm_start"] = warm_start_record(start, card["training"]["epochs_run"])

    def write(folder: Path) -> None:
        fit.save_without_optimizer(model, folder / "model.keras")
        (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
        fit.write_card(folder, card)
        fit.plot_curves(history, folder / "training_curves.png", spec.title_en)
        if spec.tokenizer == "syllables":  # the meter rates need the saved model: generate from it
            card["metrics"]["meter"] = meter_rates(folder, spec, data, args.seed,
                                                   20 if args.quick else METER_COUPLETS)
            fit.write_card(folder, card)

    out = fit.save_atomically(models_dir, spec.slug, write)
    fit.finish_run(paths)
    if "meter" in card["metrics"]:
        print(f"[{spec.slug}] meter: " + json.dumps({k: v for k, v in card["metrics"]["meter"].items()
                                                     if k != "sampling"}, ensure_ascii=False), flush=True)
    print(f"[{spec.slug}] saved {out}", flush=True)
    return out


def load_text_warm_start(spec: TaskSpec, folder, vocab: Vocabulary) -> dict | None:
    """The finished text model (and its card) a run continues from with --init-from, or None;
    refused unless it is for this task and has exactly this run's vocabulary."""
    if not folder:
        return None
    from app.generation import load_keras_text_model

    folder = Path(folder)
    try:
        card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
        tokens = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8")).tokens
        model = load_keras_text_model(folder / "model.keras")
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"--init-from {folder}: expected a model folder with model.keras, vocab.json and "
                        f"card.json ({exc})") from exc
    if card.get("slug") != spec.slug:
        raise DataError(f"--init-from {folder}: that model is for task {card.get('slug')!r}, not {spec.slug!r}")
    if tokens != vocab.tokens:
        raise DataError(f"--init-from {folder}: its vocabulary differs from this run's (same data, seed and "
                        "--min-count needed)")
    print(f"[{spec.slug}] starting from {folder} (test perplexity {card['metrics']['test_perplexity']:.1f})",
          flush=True)
    return {"folder": folder, "card": card, "model": model}


def warm_start_record(start: dict, epochs_now: int) -> dict:
    """What the card says about the run(s) it continued: enough to retrace every epoch."""
    prev = start["card"]
    earlier = list(prev.get("warm_start", {}).get("previous_runs", []))
    m = prev["metrics"]
    earlier.append({"created": prev.get("created"), "git_commit": prev.get("git_commit"),
                    "command": prev.get("command"), "optimizer": prev.get("optimizer"),
                    "model_kwargs": prev.get("model_kwargs"), "trained_on": prev["training"].get("trained_on"),
                    "epochs_run": prev["training"]["epochs_run"],
                    "seconds_total": prev["training"].get("seconds_total"),
                    "validation_perplexity": m.get("validation_perplexity"),
                    "test_perplexity": m.get("test_perplexity"), "test_accuracy": m.get("test_accuracy"),
                    "history": prev.get("history")})
    return {"from": str(start["folder"]), "previous_runs": earlier,
            "epochs_total": sum(r["epochs_run"] for r in earlier) + epochs_now}


def _nltk_version() -> str:
    try:
        import nltk

        return nltk.__version__
    except ImportError:
        return "not installed"


def evaluate_text_task(spec: TaskSpec, data_arg, models_dir: Path) -> dict:
    """Recompute the shipped model's test metrics from the data; compare with its card."""
    from app.generation import load_keras_text_model

    folder = Path(models_dir) / spec.slug
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    vocab = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8"))
    model = load_keras_text_model(folder / "model.keras")
    training = card.get("training", {})
    data = load_text_data(spec, data_arg, training.get("seed", 42), training.get("quick", False))
    x, y = to_arrays(data.test, vocab)
    m = lm_metrics(model, x, y)
    cm = card["metrics"]
    return {"slug": spec.slug, "card_accuracy": cm["test_top1_accuracy"], "measured_accuracy": m["top1_accuracy"],
            "difference": m["top1_accuracy"] - cm["test_top1_accuracy"],
            "card_perplexity": cm["test_perplexity"], "measured_perplexity": m["perplexity"],
            "measured_top5_accuracy": m["top5_accuracy"], "test_count": m["tokens"],
            "card_test_count": cm.get("test_tokens")}


def measure_meter(spec: TaskSpec, data_arg, models_dir: Path, couplets: int = METER_COUPLETS) -> dict:
    """Re-measure a shipped verse model's meter rates (`meter_rates`, with the current decoder and
    checker) and write them into its card's metrics.meter, with the command and time; the model
    is not touched. Returns the new rates."""
    from app.cards import Card

    folder = Path(models_dir) / spec.slug
    card = Card.from_json(folder)
    seed = card.training.seed if card.training and card.training.seed is not None else 42
    data = load_text_data(spec, data_arg, seed, bool(card.training and card.training.quick))
    meter = meter_rates(folder, spec, data, seed, couplets)
    meter["measured"] = {"command": fit.command_line(), "git_commit": fit.git_commit(),
                         "at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}
    card.metrics.meter = meter
    card.write(folder)
    return meter


def meter_main(argv: list[str]) -> int:
    """`python -m training meter kieu`: `measure_meter` for a shipped verse model."""
    from app.config import MODELS_DIR
    from app.tasks import get_task

    p = argparse.ArgumentParser(prog="python -m training meter")
    p.add_argument("slug")
    p.add_argument("--data", default=os.environ.get("LSTMLAB_DATA"))
    p.add_argument("--models-dir", default=os.environ.get("LSTMLAB_MODELS", str(MODELS_DIR)))
    p.add_argument("--couplets", type=int, default=METER_COUPLETS)
    args = p.parse_args(argv)
    folder = Path(args.models_dir) / args.slug
    try:
        spec = get_task(args.slug, Path(args.models_dir))
    except KeyError:
        spec = None
    if spec is None or spec.tokenizer != "syllables":
        print(f"error: {args.slug!r} is not a verse task (the meter applies to kieu)", file=sys.stderr)
        return 2
    if not (folder / "card.json").is_file() or not (folder / "model.keras").is_file():
        print(f"error: no trained model at {folder}; run: python -m training {args.slug}", file=sys.stderr)
        return 2
    meter = measure_meter(spec, args.data, Path(args.models_dir), args.couplets)
    print(json.dumps({k: meter[k] for k in ("constrained", "real_poem_all", "exact_rhymes_at_least_poem")},
                     ensure_ascii=False, indent=1))
    return 0


def write_tiny_text_model(models_dir: Path, spec: TaskSpec) -> Path:
    """An untrained tiny model, its vocabulary and a minimal valid card (for tests)."""
    import keras

    lines = SAMPLE_TEXT[spec.tokenizer].splitlines()
    seqs = [tokenize_verse(lines)] if spec.tokenizer == "syllables" else [clean_words(h) + [EOL] for h in lines]
    markers = (SNIPPET,) if spec.extra.get("aux_text", "none") != "none" else ()  # as the trained model's
    vocab = Vocabulary.build(seqs, spec.tokenizer, display=display_forms(lines), markers=markers)
    keras.utils.set_random_seed(0)
    model = make_word_lstm(len(vocab), name=spec.slug, **TINY_MODEL)
    card = {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(), "architecture": "word_lstm",
            "model_kwargs": TINY_MODEL, "layers": fit.layer_table(model), "params_total": int(model.count_params()),
            "vocabulary": {"file": "vocab.json", "size": len(vocab)},
            "metrics": {"test_perplexity": None, "test_top1_accuracy": None, "test_top5_accuracy": None},
            "training": {"epochs_run": 0, "quick": True, "untrained": True}, "history": {}}

    def write(folder: Path) -> None:
        model.save(folder / "model.keras")
        (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
        fit.write_card(folder, card)

    return fit.save_atomically(Path(models_dir), spec.slug, write)
