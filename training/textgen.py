"""Train and evaluate a text task (NYT headlines by word, Truyện Kiều by syllable).

Read top to bottom: data (`training.textdata`: load, split, vocabulary), model
(`training.build.make_word_lstm`), train, evaluate (against the Kneser-Ney n-gram of
`training.ngram` on the same split), Kiều meter rates (`training.meter`), save.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import keras
import numpy as np

from app.cards import Card
from app.tasks import TEXT_MODEL, TaskSpec
from app.text import EOL, PAD_ID, SNIPPET, Vocabulary, clean_words, display_forms, tokenize_verse
from training import fit
from training.build import TINY_MODEL, make_word_lstm, plain_twin
from training.config import TrainConfig
from training.dataset import DataError
from training.layers import load_keras_text_model
from training.meter import METER_COUPLETS, meter_rates
from training.ngram import ngram_baseline
from training.textdata import COUPLETS_PER_BLOCK, cut_sequences, load_text_data, make_batches, to_arrays
from training.textsamples import REPORT_SEQUENCES, epoch_report_callback

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


def lm_metrics(model, x: np.ndarray, y: np.ndarray, batch: int = 64) -> dict:
    """Perplexity and top-1/top-5 next-token accuracy over the non-padding targets."""
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


def train_text_task(spec: TaskSpec, config: TrainConfig, models_dir: Path, callbacks: tuple = (), *, slug: str | None = None,
                    work_dir: Path | None = None, epoch_report=None) -> Path:
    """The whole run for one text task; returns the folder the model was saved to.

    The command line and the lab bench both call this: `slug` names the folder under `models_dir`
    (default: the task's slug), `work_dir` holds checkpoints and the --resume backup (default:
    runs/<slug>/), `callbacks` are extra Keras callbacks (progress, cancel) that see each epoch
    before the backup marks it done, and `epoch_report(epoch, report)`, when given, receives after
    each epoch the training and validation perplexity and sample lines (`textsamples.epoch_report_callback`)."""
    # Data --------------------------------------------------------------------------------
    aux_text = config.aux_text or spec.extra.get("aux_text", "none")
    data = load_text_data(spec, config.data, config.seed, config.quick, aux_text)
    # From the headlines only, so the test tokens (and <unk>s) do not depend on the extra text.
    vocab = Vocabulary.build(data.train, spec.tokenizer, min_count=config.min_count, display=data.display,
                             markers=(SNIPPET,) if data.aux else ())
    marker = vocab.index.get(SNIPPET)
    (xtr, ytr), (xva, yva), (xte, yte) = (to_arrays(s, vocab) for s in (data.train, data.validation, data.test))
    epochs = 1 if config.quick else (config.epochs or spec.epochs)
    batch = config.batch_size or spec.batch_size
    print(f"[{spec.slug}] {data.source}: sequences train {len(xtr)} (+{len(data.aux)} auxiliary), "
          f"validation {len(xva)}, test {len(xte)}; vocabulary {len(vocab)}", flush=True)

    # Model ---------------------------------------------------------------------------------
    keras.utils.set_random_seed(config.seed)
    start = load_text_warm_start(spec, config.init_from, vocab)
    kw = text_model_kwargs(spec, config, start)
    model = make_word_lstm(len(vocab), name=spec.slug, **kw)
    if start:  # a weight-dropped LSTM has the plain one's weights, in the same order
        model.set_weights(start["model"].get_weights())
    train_seqs = data.train + (data.aux if config.train_text == "all" else [])
    lr = config.learning_rate or spec.learning_rate
    optimizer = keras.optimizers.AdamW(lr, weight_decay=1e-4, clipnorm=1.0)
    model.compile(optimizer, "sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    if config.verbose:
        model.summary()

    # Train ---------------------------------------------------------------------------------
    extra_callbacks = list(callbacks)
    callbacks, paths = fit.standard_callbacks(slug or spec.slug, config.resume, config.patience, "val_loss", "min",
                                              config.verbose, rdir=work_dir)
    backup = callbacks[-1]
    callbacks.append(keras.callbacks.ReduceLROnPlateau("val_loss", factor=0.5, patience=max(1, config.patience // 3),
                                                       verbose=config.verbose))
    average = fit.weight_average(spec, config.weight_average)
    if average:
        swap_in, swap_out = fit.weight_average_callbacks(
            model, average, lambda m: {"val_loss": math.log(lm_metrics(m, xva, yva, batch=256)["perplexity"])})
        # In before the timer/CSV/checkpoint/early stopping, out just before the backup (last).
        # The averaged val_loss is the per-token NLL; Keras' own also averages over padding.
        callbacks = [swap_in, *callbacks[:-2], callbacks[-1], swap_out, callbacks[-2]]
    if epoch_report is not None:
        extra_callbacks.insert(0, epoch_report_callback(vocab, (xtr[:REPORT_SEQUENCES], ytr[:REPORT_SEQUENCES]),
                                                        (xva, yva), epoch_report, spec.extra.get("sample_seeds")))
    at = callbacks.index(swap_out if average else backup)  # the (averaged) weights, before the backup
    callbacks[at:at] = extra_callbacks
    train_ids = cut_sequences([vocab.encode(s) for s in train_seqs], config.sequence_length)
    train_batches = make_batches(train_ids, batch, config.seed, True, marker)
    val_batches = make_batches([vocab.encode(s) for s in data.validation], 256, config.seed, False)
    history, run = fit.fit_best(model, train_batches, val_batches, epochs, callbacks, config.verbose, paths, digits=2)
    model = plain_twin(model, len(vocab), kw, spec.slug)  # what is evaluated, saved and served

    # Evaluate ------------------------------------------------------------------------------
    test = lm_metrics(model, xte, yte)
    val = lm_metrics(model, xva, yva)
    ids = lambda seqs: [vocab.encode(s) for s in seqs]  # noqa: E731
    ngram = ngram_baseline(ids(data.train), ids(data.validation), ids(data.test), len(vocab), ids(data.aux), marker)
    gain = 1 - test["perplexity"] / ngram["test_perplexity"]
    print(f"[{spec.slug}] test perplexity {test['perplexity']:.1f} (n-gram {ngram['test_perplexity']:.1f}, "
          f"{gain:+.1%}), top-1 {test['top1_accuracy']:.3f}, top-5 {test['top5_accuracy']:.3f}", flush=True)
    metrics = {"test_perplexity": test["perplexity"], "test_top1_accuracy": test["top1_accuracy"],
               "test_top5_accuracy": test["top5_accuracy"], "test_tokens": test["tokens"],
               "test_unk_rate": float(np.mean(yte[yte != PAD_ID] == 1)),
               "validation_perplexity": val["perplexity"], "validation_top1_accuracy": val["top1_accuracy"],
               "ngram": ngram, "perplexity_below_ngram": gain,
               "goal_perplexity_10pct_below_ngram": gain >= spec.goal_below_ngram,
               # `python -m training evaluate` compares this figure:
               "test_accuracy": test["top1_accuracy"]}

    card = {
        **fit.card_header(spec, model, "word_lstm", kw),
        "optimizer": fit.optimizer_record(batch, average, learning_rate=lr, schedule="halve on validation plateau",
                                          loss="sparse categorical cross-entropy over every non-padding position"),
        "training": {**run, "seed": config.seed, "quick": bool(config.quick),
                     "sequence_length": config.sequence_length or None,
                     "trained_on": ("headlines and auxiliary text" if data.aux and config.train_text == "all"
                                    else "headlines only" if spec.tokenizer == "words" else "verse"),
                     "early_stopping": {"monitor": "val_loss", "patience": config.patience}},
        "data": {"source": spec.data_source, "path": data.source, "licence": spec.licence,
                 "counts": {**data.counts, "train": len(data.train), "validation": len(data.validation),
                            "test": len(data.test), "train_tokens": int((ytr != PAD_ID).sum()),
                            "validation_tokens": val["tokens"],
                            "test_tokens": test["tokens"]},
                 "split": data.split or "80/10/10 by " + ("headline (deduplicated)" if spec.tokenizer == "words"
                                                         else f"couplet, in runs of {COUPLETS_PER_BLOCK}")
                          + ("; auxiliary text by article, training split only" if data.aux else ""),
                 "tokenizer": spec.tokenizer},
        "vocabulary": {"file": "vocab.json", "size": len(vocab), "min_count": config.min_count,
                       "specials": vocab.tokens[:3], "markers": [SNIPPET] if marker is not None else [],
                       "built_from": "training split" + (" (headlines only)" if data.aux else "")},
        "metrics": metrics,
        "history": history,
        "versions": fit.library_versions() | {"nltk": _nltk_version()},
        "git_commit": fit.git_commit(),
        "command": fit.command_line(),
    }
    if start:
        card["warm_start"] = fit.warm_start_record(start, card["training"]["epochs_run"])
    card |= config.card_extra  # the bench's run record and command line

    def write(folder: Path) -> None:
        fit.save_without_optimizer(model, folder / "model.keras")
        (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
        fit.write_card(folder, card)
        fit.plot_curves(history, folder / "training_curves.png", spec.title_en)
        if spec.tokenizer == "syllables":  # the meter rates need the saved model: generate from it
            card["metrics"]["meter"] = meter_rates(folder, spec, data, config.seed,
                                                   20 if config.quick else METER_COUPLETS)
            fit.write_card(folder, card)

    out = fit.save_atomically(models_dir, slug or spec.slug, write)
    fit.finish_run(paths)
    if "meter" in card["metrics"]:
        print(f"[{spec.slug}] meter: " + json.dumps({k: v for k, v in card["metrics"]["meter"].items()
                                                     if k != "sampling"}, ensure_ascii=False), flush=True)
    print(f"[{spec.slug}] saved {out}", flush=True)
    return out


def text_model_kwargs(spec: TaskSpec, config: TrainConfig, start: dict | None = None) -> dict:
    """`make_word_lstm`'s keyword arguments for a run: the tiny model (quick runs), the warm start's,
    or the default under the task's extras; --model-kwargs (a bench recipe's) over them."""
    kw = dict(TINY_MODEL) if config.quick else TEXT_MODEL | spec.extra.get("model", {})
    if start:
        kw = dict(start["card"].model_kwargs or kw)
    return kw | (json.loads(config.model_kwargs) if config.model_kwargs else {})


def load_text_warm_start(spec: TaskSpec, folder, vocab: Vocabulary) -> dict | None:
    """The finished text model (and its card) a run continues from with --init-from, or None;
    refused unless it is for this task and has exactly this run's vocabulary."""
    if not folder:
        return None
    folder = Path(folder)
    try:
        card = Card.from_json(folder)
        tokens = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8")).tokens
        model = load_keras_text_model(folder / "model.keras")
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(f"--init-from {folder}: expected a model folder with model.keras, vocab.json and "
                        f"card.json ({exc})") from exc
    if card.slug != spec.slug:
        raise DataError(f"--init-from {folder}: that model is for task {card.slug!r}, not {spec.slug!r}")
    if tokens != vocab.tokens:
        raise DataError(f"--init-from {folder}: its vocabulary differs from this run's (same data, seed and "
                        "--min-count needed)")
    print(f"[{spec.slug}] starting from {folder} (test perplexity {card.metrics.test_perplexity:.1f})",
          flush=True)
    return {"folder": folder, "card": card, "model": model}


def _nltk_version() -> str:
    try:
        import nltk  # optional: nltk is only asked its version

        return nltk.__version__
    except ImportError:
        return "not installed"


def evaluate_text_task(spec: TaskSpec, data_arg, models_dir: Path) -> dict:
    """Recompute the shipped model's test metrics from the data; compare with its card."""
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


def write_tiny_text_model(models_dir: Path, spec: TaskSpec, model_kwargs: dict | None = None) -> Path:
    """An untrained tiny model, its vocabulary and a minimal valid card (for tests; `model_kwargs`
    override TINY_MODEL's, e.g. {"cell": "gru", "rnn_layers": 2})."""
    kwargs = TINY_MODEL | (model_kwargs or {})
    lines = SAMPLE_TEXT[spec.tokenizer].splitlines()
    seqs = [tokenize_verse(lines)] if spec.tokenizer == "syllables" else [clean_words(h) + [EOL] for h in lines]
    markers = (SNIPPET,) if spec.extra.get("aux_text", "none") != "none" else ()  # as the trained model's
    vocab = Vocabulary.build(seqs, spec.tokenizer, display=display_forms(lines), markers=markers)
    keras.utils.set_random_seed(0)
    model = make_word_lstm(len(vocab), name=spec.slug, **kwargs)
    card = {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(), "architecture": "word_lstm",
            "model_kwargs": kwargs, "layers": fit.layer_table(model), "params_total": int(model.count_params()),
            "vocabulary": {"file": "vocab.json", "size": len(vocab)},
            "metrics": {"test_perplexity": None, "test_top1_accuracy": None, "test_top5_accuracy": None},
            "training": {"epochs_run": 0, "quick": True, "untrained": True}, "history": {}}

    def write(folder: Path) -> None:
        model.save(folder / "model.keras")
        (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
        fit.write_card(folder, card)

    return fit.save_atomically(Path(models_dir), spec.slug, write)
