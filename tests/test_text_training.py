"""Text training: the Kneser-Ney baseline, a tiny trained verse model, the --quick run."""

import json
import math

import numpy as np
import pytest

from app.config import default_data_dir
from app.decoding import generate, validate_request
from app.textmodel import load_text_model
from app.tasks import KIEU, NYT_HEADLINES
from app.text import (EOL, EOL_ID, PAD_ID, SNIPPET, Vocabulary, check_verse, clean_words, display_forms,
                      tokenize_verse)
from training import fit
from training import build, meter, textdata, textgen
from training.__main__ import main as cli
from training.ngram import KneserNey, ngram_baseline

LINES = textgen.SAMPLE_TEXT["syllables"].splitlines()


@pytest.fixture(autouse=True)
def private_runs(tmp_path, monkeypatch):
    """Checkpoints and logs go to tmp_path, never to the project's runs/."""
    monkeypatch.setattr(fit, "RUNS_DIR", tmp_path / "runs")


def test_kneser_ney_equals_nltk():
    from nltk.lm import KneserNeyInterpolated
    from nltk.util import everygrams

    seqs = [tokenize_verse(LINES[i:i + 4]) for i in range(0, len(LINES), 4)]
    vocab = Vocabulary.build(seqs, "syllables")
    for order in (2, 3):
        padded = [[EOL] * (order - 1) + s for s in seqs]
        ref = KneserNeyInterpolated(order, discount=0.75)
        ref.fit([list(everygrams(p, max_len=order)) for p in padded], [t for p in padded for t in p])
        mine = KneserNey(order, 0.75, len(vocab)).fit([vocab.encode(s) for s in seqs])
        p = padded[1]
        for i in range(len(seqs[1])):
            ctx = p[i:i + order - 1]
            dist = mine.distribution(tuple(vocab.encode(ctx)))
            assert dist.sum() == pytest.approx(1.0)
            want = np.array([ref.score(w, ctx) for w in vocab.tokens[2:]])
            np.testing.assert_allclose(dist[2:], want / want.sum(), atol=1e-12)
            if ctx[-1] != EOL:  # elsewhere nltk's scores already sum to one: equal as they are
                np.testing.assert_allclose(dist[2:], want, atol=1e-12)


def test_kneser_ney_metrics_are_consistent():
    seqs = [[3, 4, 5, 2], [3, 5, 4, 2], [4, 4, 3, 2]]
    m = KneserNey(2, 0.75, 6).fit(seqs).metrics(seqs)
    assert 1 < m["perplexity"] < 6 and 0 <= m["top1_accuracy"] <= m["top5_accuracy"] <= 1 and m["tokens"] == 12


def test_arrays_shift_targets_by_one():
    vocab = Vocabulary.build([["a", "b", EOL]], "words")
    x, y = textdata.to_arrays([["a", "b", EOL], ["b", EOL]], vocab)
    assert x[0].tolist() == [2, vocab.index["a"], vocab.index["b"]]
    assert y[0].tolist() == vocab.encode(["a", "b", EOL]) and y[1, 2] == PAD_ID


@pytest.fixture(scope="module")
def trained_tiny_kieu(tmp_path_factory):
    """A tiny verse model trained a few epochs on the opening lines (no data set needed)."""
    import keras

    seqs = [tokenize_verse(LINES[i:i + 4]) for i in range(0, len(LINES), 2)]
    vocab = Vocabulary.build(seqs, "syllables", display=display_forms(LINES))
    x, y = textdata.to_arrays(seqs, vocab)
    x, y = np.tile(x, (40, 1)), np.tile(y, (40, 1))  # few long epochs: Keras' per-epoch overhead dominates
    keras.utils.set_random_seed(0)
    model = build.make_word_lstm(len(vocab), embedding=16, units=32, dropout=0.0, projection=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    model.fit(x, y, sample_weight=(y != PAD_ID).astype("float32"), epochs=4, batch_size=8, verbose=0)
    folder = tmp_path_factory.mktemp("kieu_tiny")
    model.save(folder / "model.keras")
    (folder / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
    return load_text_model(folder, KIEU)


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
def test_constrained_decoding_on_a_trained_model_keeps_the_meter(trained_tiny_kieu, strategy):
    for rs in range(3):
        r = generate(trained_tiny_kieu, validate_request(KIEU, {
            "seed": "Trải qua một cuộc bể dâu", "length": 3, "strategy": strategy, "random_seed": rs}))
        assert len(r["lines"]) == 8
        checks = check_verse(r["lines"])
        assert all(c["ok"] for c in checks), r["text"]
        assert [len(x.split()) for x in r["lines"]] == [6, 8] * 4


def test_trained_model_learns_something(trained_tiny_kieu):
    r = generate(trained_tiny_kieu, validate_request(KIEU, {"seed": "Trăm năm trong cõi người ta", "length": 1,
                                                            "strategy": "greedy", "meter": False}))
    assert r["lines"][1] == "Chữ tài chữ mệnh khéo là ghét nhau"  # memorised from training


def _data_or_skip(spec):
    path = default_data_dir() / spec.data_path
    if not path.exists():
        pytest.skip(f"no data at {path}")


@pytest.mark.parametrize("spec", [KIEU, NYT_HEADLINES], ids=lambda s: s.slug)
def test_quick_run_writes_a_loadable_model_vocabulary_and_card(spec, tmp_path):
    _data_or_skip(spec)
    models = tmp_path / "models"
    assert cli([spec.slug, "--quick", "--verbose", "0", "--models-dir", str(models)]) == 0
    folder = models / spec.slug
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert card["slug"] == spec.slug and card["kind"] == "text" and card["task"]["tokenizer"] == spec.tokenizer
    m = card["metrics"]
    assert math.isfinite(m["test_perplexity"]) and m["ngram"]["test_perplexity"] > 1
    assert 0 <= m["test_top1_accuracy"] <= m["test_top5_accuracy"] <= 1
    assert card["vocabulary"]["size"] == len(Vocabulary.from_json((folder / "vocab.json").read_text("utf-8")))
    assert (folder / "training_curves.png").is_file() and card["layers"] and card["params_total"] > 0
    tm = load_text_model(folder, spec)
    out = generate(tm, validate_request(spec, {"seed": "Trăm năm", "length": 1, "random_seed": 0}))
    assert out["tokens"] > 0
    if spec is KIEU:
        meter = m["meter"]
        assert meter["constrained"]["length"] == 1.0 and meter["constrained"]["tone"] == 1.0
        assert set(meter) >= {"unconstrained", "real_poem_all", "real_poem_first_200", "examples"}
        assert meter["constrained"]["rhymes"]["places"] == 2 * meter["constrained"]["couplets"]
        assert meter["real_poem_all"]["rhymes"]["exact"] > 0 and "exact_rhymes_at_least_poem" in meter
        assert [len(e["line"].split()) for e in meter["examples"]] == [6, 8] * 4
        assert all("exact" in e["check"]["rhyme"] for e in meter["examples"][1:])
        assert cli(["meter", "kieu", "--models-dir", str(models), "--couplets", "4"]) == 0
        again = json.loads((folder / "card.json").read_text(encoding="utf-8"))["metrics"]["meter"]
        assert again["constrained"]["couplets"] == 4 and again["measured"]["command"].startswith("python -m training")
    assert cli(["evaluate", spec.slug, "--models-dir", str(models)]) == 0


def test_meter_command_refuses_a_headline_task_and_a_missing_model(tmp_path, capsys):
    assert cli(["meter", "nyt_headlines", "--models-dir", str(tmp_path)]) == 2
    assert cli(["meter", "kieu", "--models-dir", str(tmp_path)]) == 2
    assert "python -m training kieu" in capsys.readouterr().err


def test_weight_drop_trains_with_a_dropped_recurrent_kernel_and_serves_as_a_plain_lstm(tmp_path):
    import keras

    kw = {"embedding": 8, "units": 12, "dropout": 0.0, "projection": 6, "tied": True, "weight_drop": 0.5}
    folder = textgen.write_tiny_text_model(tmp_path, KIEU)
    vocab = load_text_model(folder, KIEU).vocab
    keras.utils.set_random_seed(0)
    model = build.make_word_lstm(len(vocab), **kw)
    for w in model.trainable_weights:
        w.assign(np.random.default_rng(len(w.name)).normal(0, 0.8, w.shape).astype("float32"))
    x = np.array([[EOL_ID] + vocab.encode(clean_words("Trăm năm trong cõi người ta"))])
    run = lambda training: keras.ops.convert_to_numpy(model(x, training=training))  # noqa: E731
    assert np.abs(run(True) - run(True)).max() > 1e-3  # a new mask per call while training
    np.testing.assert_array_equal(run(False), run(False))  # none at inference
    lstm = model.get_layer("lstm")
    assert lstm.cell.weight_drop == 0.5 and lstm.cell._dropped is None  # reset after each call
    twin = build.plain_twin(model, len(vocab), kw, "kieu")
    assert type(twin.get_layer("lstm")) is keras.layers.LSTM
    np.testing.assert_allclose(keras.ops.convert_to_numpy(twin(x)), run(False), atol=1e-6)
    twin.save(folder / "model.keras")
    served = load_text_model(folder, KIEU)  # the NumPy engine reads the plain file
    np.testing.assert_allclose(np.exp(served.sequence_log_probs(list(x[0]))), run(False)[0], atol=1e-4)
    # gradients reach the recurrent kernel through the mask
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    before = keras.ops.convert_to_numpy(lstm.cell.recurrent_kernel).copy()
    model.fit(x, x, epochs=1, verbose=0)
    assert np.abs(keras.ops.convert_to_numpy(lstm.cell.recurrent_kernel) - before).max() > 0


def test_weight_average_validates_the_average_and_trains_on_the_raw_weights():
    import keras

    seqs = [tokenize_verse(LINES[i:i + 4]) for i in range(0, len(LINES), 2)]
    vocab = Vocabulary.build(seqs, "syllables")
    x, y = textdata.to_arrays(seqs, vocab)
    keras.utils.set_random_seed(0)
    model = build.make_word_lstm(len(vocab), embedding=8, units=16, dropout=0.0, projection=0)
    model.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy")
    seen = []

    class Spy(keras.callbacks.Callback):  # between the two: the weights validated, and the logs
        def on_epoch_end(self, epoch, logs=None):
            seen.append(([keras.ops.convert_to_numpy(w).copy() for w in model.trainable_weights], dict(logs)))

    def validate(m):
        return {"val_loss": math.log(textgen.lm_metrics(m, x, y)["perplexity"])}

    swap_in, swap_out = fit.weight_average_callbacks(model, 0.9, validate)
    w = (y != PAD_ID).astype("float32")
    model.fit(x, y, sample_weight=w, validation_data=(x, y, w), epochs=2, batch_size=2, verbose=0,
              callbacks=[swap_in, Spy(), swap_out])
    validated, logs = seen[-1]
    raw = [keras.ops.convert_to_numpy(v) for v in model.trainable_weights]
    assert any(np.abs(a - b).max() > 1e-4 for a, b in zip(validated, raw))  # the average, not the last step
    assert logs["val_loss"] != logs["val_loss_raw"]
    for v, a in zip(model.trainable_weights, validated):
        v.assign(a)
    assert logs["val_loss"] == pytest.approx(math.log(textgen.lm_metrics(model, x, y)["perplexity"]))
    # momentum 0: the average is the last weights, validated as they are
    swap_in, swap_out = fit.weight_average_callbacks(model, 0.0, validate)
    seen.clear()
    model.fit(x, y, sample_weight=w, validation_data=(x, y, w), epochs=1, batch_size=2, verbose=0,
              callbacks=[swap_in, Spy(), swap_out])
    assert seen[-1][1]["val_loss"] == pytest.approx(math.log(textgen.lm_metrics(model, x, y)["perplexity"]))


def test_batches_pad_each_batch_to_its_own_longest():
    seqs = [[3] * n + [2] for n in (1, 9, 2, 8, 3, 7)]
    batches = textdata.make_batches(seqs, 2, seed=0, shuffle=True)
    seen = []
    for k in range(len(batches)):
        x, y, w = batches[k]
        assert x.shape == y.shape == w.shape and x.shape[1] == max(int(r.sum()) for r in w)
        assert (x[:, 0] == 2).all() and (w == (y != PAD_ID)).all()
        seen += [int(r.sum()) for r in w]
    assert sorted(seen) == sorted(len(s) for s in seqs)
    assert len(batches) == 3


def test_vocabulary_puts_markers_after_the_specials():
    vocab = Vocabulary.build([["a", "b", "a", EOL]], "words", markers=(SNIPPET,))
    assert vocab.tokens[:4] == ["<pad>", "<unk>", EOL, SNIPPET] and vocab.index["a"] == 4


def test_snippet_start_is_read_but_never_a_target():
    vocab = Vocabulary.build([["a", "b", EOL]], "words", markers=(SNIPPET,))
    x, y = textdata.to_arrays([["a", "b", EOL], [SNIPPET, "b", "a", EOL]], vocab)
    assert x[0].tolist() == [EOL_ID, vocab.index["a"], vocab.index["b"]]  # a headline starts from EOL
    assert x[1].tolist() == [vocab.index[SNIPPET], vocab.index["b"], vocab.index["a"]]
    assert y[1].tolist() == vocab.encode(["b", "a", EOL]) and vocab.index[SNIPPET] not in y
    batches = textdata.make_batches([vocab.encode(s) for s in ([SNIPPET, "b", EOL], ["a", EOL])], 2, 0, False,
                                   marker=vocab.index[SNIPPET])
    bx, by, _ = batches[0]
    assert sorted(bx[:, 0].tolist()) == sorted([vocab.index[SNIPPET], EOL_ID])
    assert vocab.index[SNIPPET] not in by


def test_kneser_ney_keeps_snippet_contexts_apart_and_never_predicts_the_marker():
    a, b, mark = 4, 5, 3
    heads = [[a, EOL_ID]] * 5
    lm = KneserNey(2, 0.75, 6).fit(heads + [[mark, b, EOL_ID]] * 5, marker=mark)
    assert lm.distribution((EOL_ID,))[a] > lm.distribution((EOL_ID,))[b]  # headlines start with a
    assert lm.distribution((mark,))[b] > lm.distribution((mark,))[a]  # snippets with b
    assert lm.distribution((a,))[mark] == 0


ARTICLES = [  # headline, snippet: one article per split, a duplicate headline, an 'Unknown' one
    {"headline": "Train Headline", "snippet": "train text", "abstract": "", "file": "f"},
    {"headline": "Valid Headline", "snippet": "validation text", "abstract": "", "file": "f"},
    {"headline": "Test Headline", "snippet": "test text", "abstract": "test abstract", "file": "f"},
    {"headline": "Test Headline", "snippet": "second test text", "abstract": "", "file": "f"},
    {"headline": "Unknown", "snippet": "briefing text", "abstract": "", "file": "f"},
    {"headline": "Unknown", "snippet": "Test text.", "abstract": "", "file": "f"},
    {"headline": "Train Headline", "snippet": "train text", "abstract": "train abstract", "file": "f"},
]


def test_snippets_of_validation_and_test_articles_never_reach_training():
    split_of = {("train", "headline"): "train", ("valid", "headline"): "validation", ("test", "headline"): "test"}
    aux, counts = textdata.snippet_sequences(ARTICLES, split_of)
    texts = [" ".join(s[1:-1]) for s in aux]
    assert all(s[0] == SNIPPET and s[-1] == EOL for s in aux)
    assert texts == ["train text", "briefing text", "train abstract"]  # distinct; 'Test text.' is held out
    assert counts["sequences"] == 3 and counts["dropped_equal_to_held_out_text"] == 1


def test_real_snippets_leave_the_headline_split_unchanged_and_hold_out_its_articles():
    _data_or_skip(NYT_HEADLINES)
    plain = textdata.load_text_data(NYT_HEADLINES, None, 42)
    data = textdata.load_text_data(NYT_HEADLINES, None, 42, aux_text="snippets")
    assert (data.train, data.validation, data.test) == (plain.train, plain.validation, plain.test)
    assert not plain.aux and len(data.aux) > len(data.train)
    articles, _ = textdata.read_articles(default_data_dir() / NYT_HEADLINES.data_path)
    held_heads = {tuple(s[:-1]) for s in data.validation + data.test}
    held_text = {tuple(clean_words(a[k])[:textdata.MAX_SNIPPET_TOKENS])
                 for a in articles for k in ("snippet", "abstract")
                 if tuple(clean_words(a["headline"])[:textdata.MAX_HEADLINE_TOKENS - 1]) in held_heads}
    trained = {tuple(s[1:-1]) for s in data.aux}
    assert held_text and not trained & held_text
    assert not trained & held_heads


def test_first_two_batches_differ_in_width():
    """Keras fixes the input signature from the first two batches; equal widths would freeze it."""
    seqs = [[3] * 4 + [2]] * 4 + [[3] * 9 + [2]] * 2
    for seed in range(5):
        batches = textdata.make_batches(seqs, 2, seed=seed, shuffle=True)
        assert batches[0][0].shape[1] != batches[1][0].shape[1]


# ----------------------------------------------------------------------------- the shipped cards, recomputed
@pytest.mark.slow
@pytest.mark.parametrize("slug", ["kieu", "nyt_headlines"])
def test_shipped_text_card_figures_are_recomputed_exactly(slug):
    """Perplexity and next-word accuracy, the tuned n-gram baseline and (Kiều) the meter pass rates
    on the card are what the shipped model and the data give again."""
    from app.config import MODELS_DIR
    from app.tasks import BUILTIN_TASKS

    spec = BUILTIN_TASKS[slug]
    folder = MODELS_DIR / slug
    if not (folder / "card.json").is_file():
        pytest.skip(f"{slug} model not trained yet")
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    if not (default_data_dir() / spec.data_path).exists():
        pytest.skip(f"no data at {default_data_dir() / spec.data_path}")
    m, training = card["metrics"], card["training"]

    result = textgen.evaluate_text_task(spec, None, MODELS_DIR)
    assert result["test_count"] == result["card_test_count"] == m["test_tokens"]
    assert result["measured_perplexity"] == pytest.approx(m["test_perplexity"], rel=1e-6)
    assert result["measured_accuracy"] == m["test_top1_accuracy"]
    assert result["measured_top5_accuracy"] == m["test_top5_accuracy"]

    vocab = Vocabulary.from_json((folder / "vocab.json").read_text(encoding="utf-8"))
    data = textdata.load_text_data(spec, None, training["seed"], False, spec.extra.get("aux_text", "none"))
    ids = lambda seqs: [vocab.encode(s) for s in seqs]  # noqa: E731
    ngram = ngram_baseline(ids(data.train), ids(data.validation), ids(data.test), len(vocab), ids(data.aux),
                           vocab.index.get(SNIPPET))
    for key in ("order", "discount", "test_top1_accuracy", "test_top5_accuracy"):
        assert ngram[key] == m["ngram"][key], key
    assert ngram["test_perplexity"] == pytest.approx(m["ngram"]["test_perplexity"], rel=1e-9)

    if "meter" in m:
        rates = meter.meter_rates(folder, spec, data, training["seed"], m["meter"]["constrained"]["couplets"])
        for name in ("constrained", "unconstrained", "real_poem_all"):
            for key in ("couplets", "length", "tone", "rhyme", "all"):
                assert rates[name][key] == m["meter"][name][key], (name, key)


def test_init_from_continues_a_finished_model_on_the_headlines_only(tmp_path):
    _data_or_skip(NYT_HEADLINES)
    first, second = tmp_path / "first", tmp_path / "second"
    kwargs = '{"weight_drop": 0.3, "tied": true, "embedding": 8, "projection": 8}'
    assert cli(["nyt_headlines", "--quick", "--verbose", "0", "--models-dir", str(first),
                "--model-kwargs", kwargs, "--weight-average", "0.9"]) == 0
    card = json.loads((first / "nyt_headlines" / "card.json").read_text(encoding="utf-8"))
    assert card["optimizer"]["weight_average"]["momentum"] == 0.9 and "val_loss_raw" in card["history"]
    assert card["training"]["trained_on"] == "headlines and auxiliary text"
    assert [r["type"] for r in card["layers"]].count("LSTM") == 1  # saved plain: served by the NumPy engine
    assert cli(["nyt_headlines", "--quick", "--verbose", "0", "--models-dir", str(second),
                "--init-from", str(first / "nyt_headlines"), "--train-text", "headlines"]) == 0
    card2 = json.loads((second / "nyt_headlines" / "card.json").read_text(encoding="utf-8"))
    assert card2["model_kwargs"]["weight_drop"] == 0.3 and card2["training"]["trained_on"] == "headlines only"
    prev = card2["warm_start"]["previous_runs"]
    assert len(prev) == 1 and prev[0]["test_perplexity"] == card["metrics"]["test_perplexity"]
    assert card2["metrics"]["ngram"]["test_perplexity"] == card["metrics"]["ngram"]["test_perplexity"]
    tm = load_text_model(second / "nyt_headlines", NYT_HEADLINES)
    assert generate(tm, validate_request(NYT_HEADLINES, {"seed": "Trump", "length": 3, "random_seed": 0}))["tokens"] == 3
    # a folder without a model is refused with a clear message (exit code 2)
    assert cli(["nyt_headlines", "--quick", "--verbose", "0", "--models-dir", str(tmp_path / "x"),
                "--init-from", str(tmp_path / "nowhere")]) == 2
