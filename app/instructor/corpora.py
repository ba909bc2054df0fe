"""An instructor's text corpus: a UTF-8 .txt upload (or a file under DATASET_SERVER_ROOT), one line
per verse or headline, NFC-normalised, checked and previewed (lines per split, vocabulary size at
the default cut-off, unknown-word rate on validation), split once into train/validation/test the
way the headlines are (distinct lines, a seeded 80/10/10 permutation, `app.splits.split_indices`)
and saved by one final rename under <instance>/datasets/<slug>/ beside the image data sets, with
whose preview, token and save machinery (`app.instructor.datasets`) it is staged and saved.
Details: docs/DESIGN.md, "Instructors' text corpora (app/instructor/corpora.py)"."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from flask import current_app

from app.errors import InvalidInput
from app.i18n import N_, translate_to
from app.instructor.datasets import (
    check_names,
    iter_datasets,
    publish_staged,
    server_path,
    staged,
    staging_dir,
)
from app.splits import MIN_SPLIT_UNITS, SPLIT_SEED, TEXT_SPLIT_FRACTIONS, split_indices
from app.tasks import TEXT, TaskSpec
from app.text import DEFAULT_MIN_COUNT, EOL, MAX_LINE_TOKENS, UNK_ID, Vocabulary, clean_words, normalize

SPLITS = ("train", "validation", "test")
SAMPLE_LINES = 5  # training lines shown on the preview
TOKENIZER = "words"  # lower case, punctuation removed: words, or Vietnamese syllables


def decode_corpus(data: bytes, name: str) -> str:
    """The text of an uploaded corpus, NFC; InvalidInput for an empty, binary or non-UTF-8 file."""
    if not data:
        raise InvalidInput("The uploaded file is empty.")
    if b"\x00" in data:
        raise InvalidInput("%(name)s holds NUL bytes: it is a binary file, not text. Send a UTF-8 .txt file, "
                           "one verse or headline per line.", name=name)
    try:
        text = data.decode("utf-8-sig")  # a byte-order mark some editors write is not part of the text
    except UnicodeDecodeError as exc:
        raise InvalidInput("%(name)s is not UTF-8 text (byte %(pos)s is not valid UTF-8): save it as UTF-8 and "
                           "upload it again.", name=name, pos=exc.start) from None
    return normalize(text)


def corpus_lines(text: str) -> tuple[list[str], list[list[str]], dict]:
    """(the distinct lines that have words, in order of first appearance; their sequences
    (`line_sequence`); counts of what was read, dropped as a repeat and cut) of a corpus' text.
    InvalidInput unless at least MIN_SPLIT_UNITS lines remain (one each for training,
    validation and test)."""
    read = [ln.strip() for ln in text.splitlines() if ln.strip()]
    kept, seqs, seen, cut = [], [], set(), 0
    for line in read:
        words = clean_words(line)  # once per line: line_sequence's words, and whether it is cut
        tokens = (*words[:MAX_LINE_TOKENS - 1], EOL)
        if not words or tokens in seen:
            continue
        seen.add(tokens)
        cut += len(words) >= MAX_LINE_TOKENS
        kept.append(line)
        seqs.append(list(tokens))
    if len(kept) < MIN_SPLIT_UNITS:
        raise InvalidInput("The corpus has %(count)s distinct line(s) with words; at least %(min)s are needed (one each "
                           "for training, validation and test). Put one verse or headline per line.",
                           count=len(kept), min=MIN_SPLIT_UNITS)
    return kept, seqs, {"lines_read": len(read), "distinct": len(kept), "without_words_or_repeated": len(read) - len(kept),
                        "cut": cut, "max_tokens": MAX_LINE_TOKENS}


def split_order(n: int, seed: int = SPLIT_SEED) -> dict[str, list[int]]:
    """The indices of n corpus lines per split (`split_indices`, each split in corpus order)."""
    return {name: sorted(idx.tolist()) for name, idx in zip(SPLITS, split_indices(n, seed))}


def describe(seqs: dict[str, list[list[str]]], min_count: int = DEFAULT_MIN_COUNT) -> dict:
    """The preview's figures from the sequences per split: lines and tokens per split, the
    vocabulary of the training split at `min_count`, the share of validation tokens (line ends
    included, as a run's card counts them) that are unknown to it, and the two commonest first
    words (the run page's sample seeds)."""
    vocab = Vocabulary.build(seqs["train"], TOKENIZER, min_count=min_count)
    val_ids = [i for s in seqs["validation"] for i in vocab.encode(s)]
    firsts = Counter(s[0] for s in seqs["train"])
    return {"lines": {name: len(ss) for name, ss in seqs.items()},
            "tokens": {name: sum(len(s) for s in ss) for name, ss in seqs.items()},
            "vocabulary": {"size": len(vocab), "min_count": min_count},
            "validation_unknown_rate": round(val_ids.count(UNK_ID) / len(val_ids), 4),
            "seeds": sorted(firsts, key=lambda w: (-firsts[w], w))[:2]}


def build_preview(staging: Path, data: bytes, source: dict) -> dict:
    """Check, normalise and split a corpus into staging/dataset/{train,validation,test}.txt and
    write its preview.json; returns the preview."""
    lines, seqs, counts = corpus_lines(decode_corpus(data, source["name"]))
    order = split_order(len(lines))
    out = staging / "dataset"
    out.mkdir()
    for name, idx in order.items():
        (out / f"{name}.txt").write_text("".join(lines[i] + "\n" for i in idx), encoding="utf-8")
    preview = {"kind": TEXT, "source": source, "read": counts,
               **describe({name: [seqs[i] for i in idx] for name, idx in order.items()}),
               "sample": [lines[i] for i in order["train"][:SAMPLE_LINES]], "created": time.time()}
    (staging / "preview.json").write_text(json.dumps(preview, ensure_ascii=False), encoding="utf-8")
    return preview


def max_bytes() -> int:
    """The largest corpus accepted (CORPUS_MAX_BYTES)."""
    return int(current_app.config["CORPUS_MAX_BYTES"])


def too_large() -> InvalidInput:
    """The refusal of a corpus over CORPUS_MAX_BYTES."""
    return InvalidInput("The file is too large: the limit is %(mb)s MB.", 413, mb=max_bytes() // 2**20)


def stage_corpus(stream, filename: str = "corpus.txt") -> tuple[str, dict]:
    """Check and stage an uploaded corpus (a binary stream): (preview token, preview)."""
    data = stream.read(max_bytes() + 1)
    if len(data) > max_bytes():
        raise too_large()
    return staged(lambda path: build_preview(path, data, {"kind": "upload", "name": filename[:200],
                                                          "bytes": len(data)}))


def stage_corpus_file(relative: str) -> tuple[str, dict]:
    """Check and stage a text file under DATASET_SERVER_ROOT: (preview token, preview)."""
    root, path = server_path(relative)
    if not path.is_file():
        raise InvalidInput("%(name)s is a folder: name one text file, one verse or headline per line.",
                           name=str(path.relative_to(root)) or ".")
    if path.stat().st_size > max_bytes():
        raise too_large()
    name = str(path.relative_to(root))
    return staged(lambda staging: build_preview(staging, path.read_bytes(), {"kind": "file", "name": name,
                                                                             "bytes": path.stat().st_size}))


def save_corpus(token: str, slug: str, title_en: str = "", title_vi: str = "", created_by: str = "") -> dict:
    """Save a staged corpus as <instance>/datasets/<slug>/ (its split as staged); returns its
    record (dataset.json). 409 when the name is taken."""
    staging = staging_dir(token)
    preview = json.loads((staging / "preview.json").read_text(encoding="utf-8"))
    if preview.get("kind") != TEXT:
        raise InvalidInput("This preview is of an image data set, not a text corpus.", 409)
    slug, title_en, title_vi = check_names(slug, title_en, title_vi)
    record = {
        "slug": slug, "title_en": title_en, "title_vi": title_vi, "kind": TEXT, "tokenizer": TOKENIZER,
        "counts": {"train": preview["lines"]["train"], "val": preview["lines"]["validation"],
                   "test": preview["lines"]["test"]},
        **{key: preview[key] for key in ("lines", "tokens", "read", "vocabulary")}, "validation_unknown_rate": preview["validation_unknown_rate"],
        "seeds": preview["seeds"],
        "split": {"method": "distinct lines, seeded permutation", "seed": SPLIT_SEED,
                  "fractions": list(TEXT_SPLIT_FRACTIONS), "files": [f"{name}.txt" for name in SPLITS]},
        "source": preview["source"], "created_by": created_by,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return publish_staged(staging, staging / "dataset", record)


# ----------------------------------------------------------------------------- the bench
SUMMARY = N_("An instructor's text corpus: %(lines)s lines, a vocabulary of %(vocab)s words.")


def corpus_spec(record: dict, folder: Path) -> TaskSpec:
    """The TaskSpec the text bench trains a corpus with (its folder as data_path)."""
    counts = record["counts"]
    fields = {"lines": counts["train"] + counts["val"] + counts["test"], "vocab": record["vocabulary"]["size"]}
    return TaskSpec(
        slug=record["slug"], kind=TEXT, title_en=record["title_en"], title_vi=record["title_vi"],
        summary_en=translate_to("en", SUMMARY, **fields), summary_vi=translate_to("vi", SUMMARY, **fields),
        tokenizer=record.get("tokenizer", TOKENIZER), data_path=str(folder),
        data_source=f"Instructor's corpus {record['slug']} ({record.get('source', {}).get('name', '')}, "
                    f"{counts['train']} train / {counts['val']} validation / {counts['test']} test lines)",
        architecture="word_lstm", epochs=20, batch_size=64, learning_rate=2e-3, goal_below_ngram=0.10,
        extra={"dataset": "instructor", "counts": {k: counts[k] for k in ("train", "val", "test")},
               "tokens": record.get("tokens") or {},  # per split: the run-time estimate's figures
               "vocabulary_size": int(record["vocabulary"]["size"]), "sample_seeds": list(record.get("seeds") or []),
               "split": record["split"], "model": {"embedding": 64, "units": 128, "dropout": 0.3, "tied": True}},
    )


def iter_corpora() -> Iterator[tuple[dict, Path]]:
    """(record, folder) of every saved text corpus, by name."""
    return ((r, f) for r, f in iter_datasets() if r.get("kind") == TEXT)


def list_corpora() -> list[TaskSpec]:
    """Every saved text corpus as a TaskSpec (the text bench offers them beside kieu and nyt_headlines)."""
    out = []
    for record, folder in iter_corpora():
        try:
            out.append(corpus_spec(record, folder))
        except (KeyError, TypeError, ValueError):
            continue
    return out
