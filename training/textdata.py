"""Text data for the text tasks (NYT headlines by word, Truyện Kiều by syllable, an instructor's
corpus by line): read, split (headlines 80/10/10, Kiều by blocks of couplets, a corpus as it was
saved), and turned into padded arrays or batches.
Details: docs/DESIGN.md, "Text data (training/textdata.py)"."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from app.splits import MIN_SPLIT_UNITS, split_indices
from app.tasks import TaskSpec
from app.text import (
    DEFAULT_MIN_COUNT,
    EOL,
    EOL_ID,
    PAD_ID,
    SNIPPET,
    Vocabulary,
    clean_words,
    display_forms,
    line_sequence,
    normalize,
    tokenize_verse,
)
from training.data import resolve
from training.dataset import DataError

COUPLETS_PER_BLOCK = 4
MIN_COUNT = DEFAULT_MIN_COUNT
MAX_HEADLINE_TOKENS = 40
MAX_SNIPPET_TOKENS = 60
AUX_TEXT = ("none", "snippets")
QUICK_SEQUENCES = 200


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
    split: str = ""  # how it was split, when not the task's own rule (a saved corpus)


def read_articles(folder: Path) -> tuple[list[dict], dict]:
    """Headline, snippet and abstract of every article of every Articles*.csv (empty when absent)."""
    import pandas as pd  # heavy: the CLI imports this module; pandas loads only to read the headlines

    files = sorted(Path(folder).glob("Articles*.csv"))
    if not files:
        raise DataError(f"no Articles*.csv in {folder}; pass --data with the nyt_headlines folder")
    rows, per_file = [], {}
    for f in files:
        try:
            frame = pd.read_csv(f, dtype=str, encoding="utf-8").fillna("")
        except (UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
            raise DataError(f"{f.name} is not a readable UTF-8 CSV file ({exc.__class__.__name__})") from None
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
    """Verse lines of the poem, NFC, blank lines dropped; DataError for a file that is not UTF-8
    text (binary, another encoding) or has no verse."""
    if not Path(path).is_file():
        raise DataError(f"no verse file at {path}; pass --data with truyen_kieu/truyen_kieu.txt")
    raw = Path(path).read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(f"{Path(path).name} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    if "\x00" in text:
        raise DataError(f"{Path(path).name} is a binary file, not text")
    lines = [normalize(ln.strip()) for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise DataError(f"{Path(path).name} has no verse lines")
    return lines


def check_splittable(units: int, unit: str) -> None:
    """DataError unless there are enough units (couplet blocks, headlines) for a training,
    a validation and a test split with something in each."""
    if units < MIN_SPLIT_UNITS:
        raise DataError(f"only {units} {unit}(s): at least {MIN_SPLIT_UNITS} are needed to split into training, "
                        "validation and test")


CORPUS_FILES = {"train": "train.txt", "validation": "validation.txt", "test": "test.txt"}


def read_corpus(folder: Path, quick: bool = False) -> TextData:
    """An instructor's saved corpus (app/instructor/corpora.py): its split, fixed when it was
    saved, one sequence per line (`app.text.line_sequence`)."""
    seqs = {}
    for name, file in CORPUS_FILES.items():
        try:
            text = (Path(folder) / file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{folder}: the corpus' {file} is missing or unreadable ({exc.__class__.__name__})") from None
        seqs[name] = [s for s in (line_sequence(ln) for ln in text.splitlines()) if s]
        if quick:
            seqs[name] = seqs[name][:QUICK_SEQUENCES]
        if not seqs[name]:
            raise DataError(f"{folder}: the corpus' {file} has no line")
    counts = {"unit": "line", "lines_per_split": {name: len(s) for name, s in seqs.items()}}
    return TextData(seqs["train"], seqs["validation"], seqs["test"], str(folder), counts,
                    split="80/10/10 by distinct line, fixed when the corpus was saved")


def load_text_data(spec: TaskSpec, data_arg, seed: int, quick: bool = False, aux_text: str = "none") -> TextData:
    """Read the task's text and split it (see the module docstring); with aux_text "snippets"
    (headlines only) also the training articles' snippets (`snippet_sequences`). An instructor's
    corpus comes split already (`read_corpus`)."""
    path = resolve(spec, data_arg)
    if spec.extra.get("dataset") == "instructor":
        return read_corpus(path, quick)
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
        check_splittable(len(seqs), "distinct headline")
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
    check_splittable(len(blocks), f"block of {COUPLETS_PER_BLOCK} couplets")
    tr, va, te = split_indices(len(blocks), seed)

    def seqs(idx):
        return [tokenize_verse([ln for c in blocks[i] for ln in c]) for i in sorted(idx)]

    test_lines = [ln for i in sorted(te) for c in blocks[i] for ln in c]
    counts = {"verses": len(lines), "couplets": len(couplets), "unit": "couplet",
              "couplets_per_block": COUPLETS_PER_BLOCK,
              "couplets_per_split": {name: sum(len(blocks[i]) for i in idx)
                                     for name, idx in (("train", tr), ("validation", va), ("test", te))}}
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


def cut_sequences(ids: list[list[int]], length: int) -> list[list[int]]:
    """Every sequence cut into consecutive pieces of at most `length` tokens (0: unchanged); each
    piece is then learned from a fresh state (truncated backpropagation through time)."""
    if length <= 0:
        return ids
    return [s[k:k + length] for s in ids for k in range(0, len(s), length)]


def make_batches(ids: list[list[int]], batch: int, seed: int, shuffle: bool, marker: int | None = None):
    """A Keras PyDataset of (inputs, targets, weights) batches of similar length, each padded only
    to its own longest sequence (headlines vary from 1 to ~30 words: padding all of them to the
    longest would triple the work). Reshuffled every epoch when `shuffle`."""
    import keras  # heavy: Keras loads only to batch

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
