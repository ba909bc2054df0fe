"""The n-gram baseline a text model is measured against: interpolated Kneser-Ney on the same split.

`KneserNey` is the same interpolated Kneser-Ney formula as `nltk.lm.KneserNeyInterpolated` (a
test checks they agree), vectorised: nltk scans every stored n-gram for each continuation count,
so one score costs milliseconds, and the top-1/top-5 figures need the score of every word of the
vocabulary at every test position (tens of millions of scores).
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict

import numpy as np

from app.text import EOL_ID

NGRAM_ORDERS = (2, 3, 4)
NGRAM_DISCOUNTS = (0.6, 0.75, 0.9, 1.0)


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
