"""Sample lines after each epoch of a text run: fixed seeds at two temperatures, for verse each
line with its lục bát check (`app.text.check_verse`), so the bench can show the text improve."""

from __future__ import annotations

import numpy as np

from app.text import EOL, EOL_ID, PAD_ID, UNK_ID, Vocabulary, check_verse, clean_words

SAMPLE_TEMPERATURES = (0.7, 1.0)


def sample_lines(model, vocab: Vocabulary, seed_text: str, temperature: float, rng: np.random.Generator,
                 lines: int = 2, max_tokens: int = 40) -> list[str]:
    """`lines` lines continuing `seed_text`, sampled token by token from `model` (never <pad> or
    <unk>), the seed's words first."""
    import keras

    ids = [vocab.index.get(t, UNK_ID) for t in clean_words(seed_text)] or [EOL_ID]
    out, current = [], list(clean_words(seed_text))
    for _ in range(max_tokens):
        probs = keras.ops.convert_to_numpy(model(np.array([ids], dtype="int32"), training=False))[0, -1]
        logits = np.log(np.maximum(probs.astype("float64"), 1e-12)) / temperature
        logits[[PAD_ID, UNK_ID]] = -np.inf
        p = np.exp(logits - logits.max())
        token = int(rng.choice(len(p), p=p / p.sum()))
        ids.append(token)
        if vocab.tokens[token] == EOL:
            out.append(" ".join(current))
            current = []
            if len(out) == lines:
                break
        else:
            current.append(vocab.tokens[token])
    return out or [" ".join(current)]


def epoch_samples(model, vocab: Vocabulary, seeds: list[str], epoch_seed: int = 0,
                  temperatures: tuple = SAMPLE_TEMPERATURES) -> list[dict]:
    """Every seed at every temperature (a fixed random stream, so epochs differ by the model
    only); verse (syllable vocabularies) carries the meter check of each line."""
    out = []
    for i, seed in enumerate(seeds):
        for t in temperatures:
            rng = np.random.default_rng([epoch_seed, i, int(t * 1000)])
            text = sample_lines(model, vocab, seed, t, rng)
            entry = {"seed": seed, "temperature": t, "lines": text}
            if vocab.tokenizer == "syllables":
                entry["meter"] = check_verse(text)
            out.append(entry)
    return out
