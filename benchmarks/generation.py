"""Generation speed: the project's decoder against the lab's method, in the same run, one CPU core.

    python benchmarks/generation.py [--models-dir models] [--couplets 20] [--repeats 5] [--write]
    python benchmarks/generation.py --quality-only --write   # only the tables read from the cards

Measured, for Truyện Kiều:
- lab: the lab's generator: for every new syllable, `model.predict` over the whole padded window
  of the text so far, then a scan of the vocabulary to find the word with the predicted id (its
  own Embedding(10) → LSTM(100) → Dense model; the weights do not change the speed);
- tf_step: our model stepped one token at a time by a compiled `tf.function` carrying the LSTM
  state (greedy, no meter);
- ours: `app.decoding.generate` with the lục bát constraints (top-p sampling), the NumPy step;
- cells: the served NumPy step alone (greedy, no meter) of LSTM, GRU and SimpleRNN models of the
  served model's shape (untrained: the weights do not change the speed), timed in alternating rounds.
With --cells-only only the cells are timed and printed (nothing is written).
With --write the table replaces the generation section of docs/BENCHMARKS.md; with --quality-only
nothing is timed and only the part read from the cards (after the speed table) is replaced, so a
retrained model's figures can be written while the machine is too busy for a fair speed run.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
             "TF_NUM_INTEROP_THREADS"):
    os.environ[_var] = "1"  # one CPU core for every contender
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import datetime as dt  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from app.decoding import EXACT_RHYME_BONUS, generate, validate_request  # noqa: E402
from app.textmodel import load_text_model  # noqa: E402
from app.tasks import KIEU  # noqa: E402
from app.text import EOL_ID, clean_words  # noqa: E402
from training.layers import load_keras_text_model  # noqa: E402
from load import machine_busy, write_section  # noqa: E402

SEED = "Trăm năm trong cõi người ta"
START, END = "<!-- generation:start -->", "<!-- generation:end -->"
CELL_TITLES = {"lstm": "LSTM", "gru": "GRU", "simple_rnn": "SimpleRNN"}


def lab_method(vocab, n_tokens: int, window: int) -> float:
    """Syllables per second of the lab's generator (predict over the padded window + scan)."""
    import keras

    v = len(vocab)
    model = keras.Sequential([keras.Input((window,), dtype="int32"), keras.layers.Embedding(v, 10),
                              keras.layers.LSTM(100), keras.layers.Dropout(0.1),
                              keras.layers.Dense(v, activation="softmax")])
    word_index = {t: i for i, t in enumerate(vocab.tokens)}
    text = clean_words(SEED)
    model.predict(np.zeros((1, window), np.int32), verbose=0)  # warm-up, as a served model would be
    t0 = time.perf_counter()
    for _ in range(n_tokens):
        ids = [word_index.get(w, 1) for w in text][-window:]
        padded = np.zeros((1, window), np.int32)
        padded[0, window - len(ids):] = ids  # pad_sequences(..., padding="pre")
        predicted = int(np.argmax(model.predict(padded, verbose=0)))
        output = ""
        for word, index in word_index.items():  # the lab's scan for the predicted id
            if index == predicted:
                output = word
                break
        text.append(output)
    return n_tokens / (time.perf_counter() - t0)


def tf_step(tm, keras_model, n_tokens: int) -> float:
    """Syllables per second of a tf.function single step (LSTM state carried), greedy."""
    import tensorflow as tf

    emb = keras_model.get_layer("embedding")
    cell = keras_model.get_layer("lstm").cell
    denses = [lyr for lyr in keras_model.layers if lyr.__class__.__name__ == "Dense"]
    units = cell.units

    @tf.function(input_signature=[tf.TensorSpec([1], tf.int32), tf.TensorSpec([1, units]), tf.TensorSpec([1, units])])
    def step(token, h, c):
        out, (h2, c2) = cell(emb(token), [h, c])
        for d in denses:
            out = d(out)
        return out, h2, c2

    h = tf.zeros([1, units])
    c = tf.zeros([1, units])
    token = tf.constant([EOL_ID], tf.int32)
    step(token, h, c)  # trace
    t0 = time.perf_counter()
    for _ in range(n_tokens):
        probs, h, c = step(token, h, c)
        token = tf.reshape(tf.cast(tf.argmax(probs, axis=-1), tf.int32), [1])
    return n_tokens / (time.perf_counter() - t0)


def ours(tm, couplets: int, repeats: int, strategy: str = "top_p") -> tuple[float, float, float]:
    """Syllables per second of constrained lục bát generation, the share of passing lines, and the
    share of rhyme places rhymed exactly (same vần)."""
    tokens, seconds, ok, lines, exact, places = 0, 0.0, 0, 0, 0, 0
    for r in range(repeats):
        res = generate(tm, validate_request(KIEU, {"seed": SEED, "length": couplets, "strategy": strategy,
                                                   "random_seed": r}))
        tokens += res["tokens"]
        seconds += res["seconds"]
        ok += sum(c["ok"] for c in res["checks"])
        lines += len(res["checks"])
        rhymed = [c["rhyme"] for c in res["checks"] if c["rhyme"]]
        exact += sum(r["exact"] for r in rhymed)
        places += len(rhymed)
    return tokens / seconds, ok / lines, exact / max(places, 1)


CELLS = ("lstm", "gru", "simple_rnn")


def cell_speeds(folder: Path, n_tokens: int, rounds: int = 5) -> tuple[dict[str, float], dict]:
    """Tokens per second of the served step (greedy, state carried) for each of CELLS, in a model
    of the served one's shape (its card's model_kwargs with the cell changed): the median of
    `rounds` alternating rounds, so a change of load hits every cell alike. Also the kwargs."""
    from app.cards import Card
    from training.build import make_word_lstm

    kwargs = dict(Card.from_json(folder).model_kwargs or {}) | {"weight_drop": 0.0}
    vocab_text = (folder / "vocab.json").read_text(encoding="utf-8")
    vocab_size = len(load_text_model(folder, KIEU).vocab)
    models = {}
    for cell in CELLS:
        tmp = Path(tempfile.mkdtemp())
        make_word_lstm(vocab_size, name="kieu", **(kwargs | {"cell": cell})).save(tmp / "model.keras")
        (tmp / "vocab.json").write_text(vocab_text, encoding="utf-8")
        models[cell] = load_text_model(tmp, KIEU)
    times: dict[str, list[float]] = {cell: [] for cell in CELLS}
    for _ in range(rounds):
        for cell, tm in models.items():
            state, token = tm.initial_state(1), np.array([EOL_ID])
            t0 = time.perf_counter()
            for _ in range(n_tokens):
                logits, state = tm.step(token, state)
                token = logits.argmax(axis=-1)
            times[cell].append(time.perf_counter() - t0)
    return {cell: n_tokens / float(np.median(t)) for cell, t in times.items()}, kwargs


def quality_table(models_dir: Path) -> list[str]:
    """The shipped text models' held-out figures, read from their cards (not measured here)."""
    from app.cards import Card
    from app.tasks import KIEU, NYT_HEADLINES

    rows, cards = [], {s.slug: Card.from_json(models_dir / s.slug) for s in (NYT_HEADLINES, KIEU)
                       if (models_dir / s.slug / "card.json").is_file()}
    for slug, card in cards.items():
        m, n = card.metrics, card.metrics.ngram or {}
        if not n:
            continue
        rows.append(f"| {slug} | {m.test_perplexity:.1f} | {n['test_perplexity']:.1f} (order {n['order']}, "
                    f"d={n['discount']}) | {m.perplexity_below_ngram:+.1%} | {m.test_top1_accuracy:.3f} / "
                    f"{n['test_top1_accuracy']:.3f} | {m.test_top5_accuracy:.3f} / {n['test_top5_accuracy']:.3f} |")
    if not rows:
        return []
    out = ["", f"Held-out quality of the shipped models (from their cards; goal: LSTM perplexity ≥ "
           f"{NYT_HEADLINES.goal_below_ngram:.0%} below the Kneser-Ney n-gram's on the same split and vocabulary):", "",
           "| model | LSTM test perplexity | Kneser-Ney test perplexity | LSTM below KN | top-1 LSTM / KN | "
           "top-5 LSTM / KN |", "| --- | ---: | ---: | ---: | ---: | ---: |"] + rows
    meter = cards["kieu"].metrics.meter if "kieu" in cards else None
    if meter:
        out += ["", "Lục bát pass rates per couplet under `app.text.check_verse` (card of `models/kieu`):", "",
                "| text | couplets | length | tone | rhyme | exact rhymes (share of rhyme places) |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for key, label in (("constrained", "generated, meter enforced while decoding"),
                           ("unconstrained", "generated, same sampling, no masks"),
                           ("real_poem_first_200", "Truyện Kiều, first 200 couplets"),
                           ("real_poem_all", "Truyện Kiều, whole poem")):
            r = meter[key]
            ex = f"{r['rhymes']['exact']:.1%}" if "rhymes" in r else "–"
            out.append(f"| {label} | {r['couplets']} | {r['length']:.1%} | {r['tone']:.1%} | {r['rhyme']:.1%} | {ex} |")
        out += ["", f"Two random 6th syllables of the poem rhyme under the same rule "
                f"{meter['random_syllable_pairs_rhyme']:.1%} of the time."]
    return out


def write_quality_only(models_dir: Path, write: bool) -> int:
    """Replace the card-derived tables of the generation section, keeping its measured speed part."""
    doc = ROOT / "docs" / "BENCHMARKS.md"
    text = doc.read_text(encoding="utf-8") if doc.is_file() else ""
    if START not in text or END not in text:
        print(f"error: {doc} has no generation section yet: run without --quality-only first", file=sys.stderr)
        return 2
    head, rest = text.split(START, 1)
    section, tail = rest.split(END, 1)
    cut = section.find("\nHeld-out quality")
    speed = section[:cut] if cut >= 0 else section.rstrip("\n") + "\n"
    table = START + speed.rstrip("\n") + "\n" + "\n".join(quality_table(models_dir)) + "\n" + END
    print(table)
    if write:
        doc.write_text(head + table + tail, encoding="utf-8")
    return 0


def main(argv=None) -> int:
    """Run the benchmark, print the table, optionally write it into docs/BENCHMARKS.md."""
    import keras
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--couplets", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--lab-tokens", type=int, default=60)
    p.add_argument("--write", action="store_true", help="update docs/BENCHMARKS.md")
    p.add_argument("--quality-only", action="store_true",
                   help="time nothing: rewrite only the tables read from the cards")
    p.add_argument("--cells-only", action="store_true", help="time only the served step of each cell; print it")
    p.add_argument("--cell-tokens", type=int, default=500)
    args = p.parse_args(argv)
    if args.quality_only:
        return write_quality_only(Path(args.models_dir), args.write)
    busy = machine_busy()
    folder = Path(args.models_dir) / "kieu"
    if not (folder / "model.keras").is_file():
        from training.textgen import write_tiny_text_model

        folder = write_tiny_text_model(Path(tempfile.mkdtemp()), KIEU)
        print("no trained Kiều model: using an untrained tiny one", file=sys.stderr)
    cells, cell_kwargs = cell_speeds(folder, args.cell_tokens)
    cell_note = (f"Served NumPy step alone, greedy, no meter, {args.cell_tokens} tokens, median of 5 alternating "
                 f"rounds; models of the served shape (embedding {cell_kwargs.get('embedding')}, "
                 f"{cell_kwargs.get('rnn_layers', 1)} × {cell_kwargs.get('units')} units), untrained.")
    cell_rows = [f"| {CELL_TITLES[c]} | {cells[c]:,.0f} | {cells[c] / cells['lstm']:.2f}× |" for c in CELLS]
    cell_table = ["", cell_note, "", "| cell | tokens/s | × LSTM |", "| --- | ---: | ---: |"] + cell_rows
    if args.cells_only:
        busy = busy or machine_busy()
        print(f"load: {busy or 'no training run on the machine'}; {os.getloadavg()[0]:.1f} (1-min load average)")
        print("\n".join(cell_table))
        return 0
    tm = load_text_model(folder, KIEU)
    keras_model = load_keras_text_model(folder / "model.keras")
    window = 24  # a couplet and a bit: the lab pads every input to the longest sequence
    lab = lab_method(tm.vocab, args.lab_tokens, window)
    tfs = tf_step(tm, keras_model, 300)
    fast, pass_rate, exact = ours(tm, args.couplets, args.repeats)
    fast_beam, _, _ = ours(tm, args.couplets, 1, "beam")
    rows = [
        ("lab: predict over padded window + vocabulary scan, greedy", lab, 1.0),
        ("tf.function single step, LSTM state carried, greedy", tfs, tfs / lab),
        ("ours: NumPy step, lục bát masks, top-p sampling", fast, fast / lab),
        ("ours: NumPy step, lục bát masks, beam search (width 4)", fast_beam, fast_beam / lab),
    ]
    cpu = platform.processor() or platform.machine()
    busy = busy or machine_busy()
    load_note = (f"while a training run (`{busy}`) shared the machine, so absolute numbers are noisy"
                 if busy else "with no training run on the machine")
    lines = [START, "## Text generation speed (benchmarks/generation.py)", "",
             f"Measured {dt.date.today().isoformat()} on one CPU core ({cpu}; thread pools set to 1) "
             f"{load_note}; the ratios come from "
             f"the same run. Model: `{folder.relative_to(ROOT) if folder.is_relative_to(ROOT) else 'tiny untrained'}`"
             f" (vocabulary {len(tm.vocab)}, LSTM {tm.units}). Seed \"{SEED}\", {args.couplets} couplets × "
             f"{args.repeats} runs; the lab's method timed over {args.lab_tokens} syllables with a {window}-token window.",
             "", "| method | syllables/s | × lab |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {speed:,.0f} | {ratio:,.0f}× |" for name, speed, ratio in rows]
    goal = fast >= 2000 and fast / lab >= 100
    lines += ["", f"Constrained output: {pass_rate:.1%} of generated lines pass the checker, {exact:.1%} of their "
              f"rhymes are exact (same vần; exact-rhyme bonus {EXACT_RHYME_BONUS}). Goal ≥ 2,000 "
              f"syllables/s and ≥ 100× the lab: {'met' if goal else 'NOT met'}."]
    lines += cell_table
    lines += quality_table(Path(args.models_dir)) + [END]
    table = "\n".join(lines)
    print(table)
    if args.write:
        write_section(START, END, table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
