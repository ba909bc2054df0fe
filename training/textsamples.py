"""After each epoch of a text run: the training and validation perplexity and sample lines from
fixed seeds at two temperatures (verse with each line's lục bát check, `app.text.check_verse`),
so the bench can show the text improve. Every forward pass goes through the model's compiled
predict function on arrays of one fixed shape, so an epoch's report costs little."""

from __future__ import annotations

import math

import keras
import numpy as np

from app.text import EOL, EOL_ID, PAD_ID, UNK_ID, Vocabulary, check_verse, clean_words

SAMPLE_TEMPERATURES = (0.7, 1.0)
# The fixed openings every epoch continues, by tokenizer (verse: the poem's first words).
SAMPLE_SEEDS = {"syllables": ("Trăm năm trong cõi", "Thúy Kiều là chị"), "words": ("The", "New York")}
REPORT_SEQUENCES = 1000  # training sequences whose perplexity is measured after each epoch
REPORT_BATCH = 128


def sample_rows(model, vocab: Vocabulary, rows: list[tuple[str, float, np.random.Generator]],
                lines: int = 2, max_tokens: int = 40) -> list[list[str]]:
    """For each (seed text, temperature, random stream): `lines` lines continuing the seed,
    sampled token by token (never <pad> or <unk>), the seed's words first; every row advances
    in one predict call per step."""
    starts = [[vocab.index.get(t, UNK_ID) for t in clean_words(seed)] or [EOL_ID] for seed, _, _ in rows]
    width = max(len(s) for s in starts) + max_tokens
    ids = np.zeros((len(rows), width), np.int32)
    for r, s in enumerate(starts):
        ids[r, :len(s)] = s
    length = [len(s) for s in starts]
    current = [list(clean_words(seed)) for seed, _, _ in rows]
    out: list[list[str]] = [[] for _ in rows]
    active = set(range(len(rows)))
    for _ in range(max_tokens):
        probs = np.asarray(model.predict_on_batch(ids))
        for r in sorted(active):
            _, temperature, rng = rows[r]
            logits = np.log(np.maximum(probs[r, length[r] - 1].astype("float64"), 1e-12)) / temperature
            logits[[PAD_ID, UNK_ID]] = -np.inf
            p = np.exp(logits - logits.max())
            token = int(rng.choice(len(p), p=p / p.sum()))
            ids[r, length[r]] = token
            length[r] += 1
            if vocab.tokens[token] == EOL:
                out[r].append(" ".join(current[r]))
                current[r] = []
                if len(out[r]) == lines:
                    active.discard(r)
            else:
                current[r].append(vocab.tokens[token])
        if not active:
            break
    return [o or [" ".join(c)] for o, c in zip(out, current)]


def epoch_samples(model, vocab: Vocabulary, seeds: list[str], epoch_seed: int = 0,
                  temperatures: tuple = SAMPLE_TEMPERATURES) -> list[dict]:
    """Every seed at every temperature (a fixed random stream each, so epochs differ by the model
    only); verse (syllable vocabularies) carries the meter check of each line."""
    keys = [(i, seed, t) for i, seed in enumerate(seeds) for t in temperatures]
    rows = [(seed, t, np.random.default_rng([epoch_seed, i, int(t * 1000)])) for i, seed, t in keys]
    out = []
    for (_, seed, t), text in zip(keys, sample_rows(model, vocab, rows)):
        entry = {"seed": seed, "temperature": t, "lines": text}
        if vocab.tokenizer == "syllables":
            entry["meter"] = check_verse(text)
        out.append(entry)
    return out


def perplexity(model, x: np.ndarray, y: np.ndarray, batch: int = REPORT_BATCH) -> float:
    """Per-token perplexity over the non-padding targets (no dropout), in batches of one shape."""
    nll, n = 0.0, 0
    for s in range(0, len(x), batch):
        xb, yb = x[s:s + batch], y[s:s + batch]
        rows = len(xb)
        if rows < batch:  # pad the last batch: one shape, one compiled function
            xb = np.concatenate([xb, np.zeros((batch - rows, x.shape[1]), x.dtype)])
        probs = np.asarray(model.predict_on_batch(xb))[:rows]
        keep = yb != PAD_ID
        p = np.take_along_axis(probs, yb[..., None], axis=-1)[..., 0][keep]
        nll -= float(np.log(np.maximum(p, 1e-12)).sum())
        n += int(keep.sum())
    return math.exp(nll / max(n, 1))


def epoch_report_callback(vocab: Vocabulary, train: tuple, validation: tuple, report, seeds: tuple | None = None):
    """A Keras callback calling `report(epoch, {"perplexity", "val_perplexity", "samples"})` after
    each epoch: `perplexity` on `train` (x, y) and `validation`, and `epoch_samples` from the
    tokenizer's SAMPLE_SEEDS."""
    seeds = list(seeds or SAMPLE_SEEDS[vocab.tokenizer])

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            report(epoch, {"perplexity": round(perplexity(self.model, *train), 3),
                           "val_perplexity": round(perplexity(self.model, *validation), 3),
                           "samples": epoch_samples(self.model, vocab, seeds, epoch_seed=epoch)})

    return EpochReport()
