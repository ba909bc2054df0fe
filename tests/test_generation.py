"""app.textmodel and app.decoding on tiny models: request validation, strategies, determinism, streaming, meter."""

import unicodedata

import numpy as np
import pytest

from app.errors import InvalidInput
from app.decoding import STRATEGIES, generate, generate_stream, validate_request
from app.textmodel import load_text_model, log_softmax
from app.tasks import KIEU, NYT_HEADLINES
from app.text import EOL_ID, SNIPPET, check_verse, clean_words
from training.layers import load_keras_text_model
from training.textgen import write_tiny_text_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("textmodels")
    return {spec.slug: load_text_model(write_tiny_text_model(d, spec), spec) for spec in (NYT_HEADLINES, KIEU)}


@pytest.mark.parametrize("kw", [{}, {"tied": True}, {"word_dropout": 0.1, "locked": True}],
                         ids=["plain", "tied", "word_locked_dropout"])
def test_numpy_step_equals_the_keras_model(tmp_path, kw):
    import keras

    from training.build import make_word_lstm

    folder = write_tiny_text_model(tmp_path, KIEU)
    vocab = load_text_model(folder, KIEU).vocab
    keras.utils.set_random_seed(1)
    model = make_word_lstm(len(vocab), embedding=8, units=12, dropout=0.2, projection=6, **kw)
    for w in model.weights:  # random biases too, so every term of the step is exercised
        w.assign(np.random.default_rng(len(w.name)).normal(0, 0.5, w.shape).astype("float32"))
    model.save(folder / "model.keras")
    tm = load_text_model(folder, KIEU)
    model = load_keras_text_model(folder / "model.keras")
    ids = [EOL_ID] + tm.vocab.encode(clean_words("Trăm năm trong cõi người ta chữ tài"))
    want = np.log(keras.ops.convert_to_numpy(model(np.array([ids]), training=False))[0])
    np.testing.assert_allclose(tm.sequence_log_probs(ids), want, atol=1e-4)
    np.testing.assert_allclose(tm.feed(ids)[0][0], want[-1], atol=1e-4)  # feed: log-probabilities


@pytest.mark.parametrize("cell, layers", [("gru", 1), ("gru", 2), ("simple_rnn", 1), ("simple_rnn", 2)])
def test_the_numpy_step_of_a_gru_or_simple_rnn_bench_recipe_equals_keras(tmp_path, cell, layers):
    """A text model built from the bench's recipe with that cell, saved to .keras and read back by
    the served loader: its logits token by token equal Keras' predictions, one sequence or a batch
    of three stepped together (as beam search steps its beams)."""
    import keras

    from app.cells import stack_rows, state_row
    from app.lab.textrecipes import TextRecipe, model_kwargs
    from training.build import make_word_lstm

    folder = write_tiny_text_model(tmp_path, KIEU)
    vocab = load_text_model(folder, KIEU).vocab
    keras.utils.set_random_seed(2)
    recipe = TextRecipe(embedding=8, cell=cell, units=12, layers=layers, dropout=0.2, projection=6)
    model = make_word_lstm(len(vocab), **model_kwargs(recipe))
    for w in model.weights:  # random biases too (a GRU's input and recurrent ones), every term exercised
        w.assign(np.random.default_rng(len(w.path)).normal(0, 0.5, w.shape).astype("float32"))
    model.save(folder / "model.keras")
    tm = load_text_model(folder, KIEU)
    assert tm.cell == cell and len(tm.layers) == layers
    rows = [[EOL_ID] + tm.vocab.encode(clean_words(text)) for text in
            ("Trăm năm trong cõi người ta chữ tài", "Cỏ non xanh tận chân trời cành lê", "Chữ tài chữ mệnh khéo là ghét")]
    rows = [r[:8] for r in rows]
    want = np.log(keras.ops.convert_to_numpy(load_keras_text_model(folder / "model.keras")(np.array(rows), training=False)))
    np.testing.assert_allclose(tm.sequence_log_probs(rows[0]), want[0], atol=1e-5)
    state = stack_rows([tm.initial_state(1)] * 3)
    for t in range(len(rows[0])):
        logits, state = tm.step(np.array([r[t] for r in rows]), state)
        np.testing.assert_allclose(log_softmax(logits), want[:, t], atol=1e-5)
    one, _ = tm.step(np.array([rows[1][-1]]), state_row(state, 1))  # a row taken out steps as in the batch
    both, _ = tm.step(np.array([rows[0][-1], rows[1][-1]]), stack_rows([state_row(state, 0), state_row(state, 1)]))
    np.testing.assert_allclose(one[0], both[1], atol=1e-6)


def test_the_served_step_refuses_recurrent_settings_it_does_not_compute(tmp_path):
    import keras

    from app.textmodel import text_layers

    tokens = keras.Input((None,), dtype="int32")
    x = keras.layers.Embedding(10, 4)(tokens)
    for layer, words in ((keras.layers.GRU(3, reset_after=False, return_sequences=True), "reset_after"),
                         (keras.layers.SimpleRNN(3, activation="relu", return_sequences=True), "activations"),
                         (keras.layers.GRU(3, go_backwards=True, return_sequences=True), "forwards")):
        path = tmp_path / f"{layer.name}.keras"
        keras.Model(tokens, keras.layers.Dense(10)(layer(x))).save(path)
        with pytest.raises(ValueError, match=words):
            text_layers(path)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_returns_the_requested_length(tiny, strategy):
    r = generate(tiny["nyt_headlines"], validate_request(NYT_HEADLINES, {
        "seed": "Trump says", "length": 7, "strategy": strategy, "random_seed": 3}))
    assert r["tokens"] == 7 and len(clean_words(r["text"])) == 2 + 7
    assert r["text"].startswith("Trump Says ") and r["checks"] is None
    v = generate(tiny["kieu"], validate_request(KIEU, {"seed": "Trăm năm trong cõi người ta", "length": 2,
                                                       "strategy": strategy, "random_seed": 3}))
    assert len(v["lines"]) == 2 + 4 and len(v["checks"]) == 6  # the seed's couplet, then 2 couplets


@pytest.mark.parametrize("strategy", ["temperature", "top_k", "top_p"])
def test_same_random_seed_same_text(tiny, strategy):
    params = {"seed": "trăm năm", "length": 3, "strategy": strategy, "random_seed": "42", "temperature": "1.5"}
    a = generate(tiny["kieu"], validate_request(KIEU, params))
    b = generate(tiny["kieu"], validate_request(KIEU, params))
    assert a["text"] == b["text"] and a["random_seed"] == 42
    c = generate(tiny["kieu"], validate_request(KIEU, params | {"random_seed": 43}))
    d = generate(tiny["kieu"], validate_request(KIEU, params | {"random_seed": 44}))
    assert len({a["text"], c["text"], d["text"]}) > 1


def test_nfd_seed_gives_the_same_text(tiny):
    seed = "Trải qua một cuộc bể dâu"
    a = generate(tiny["kieu"], validate_request(KIEU, {"seed": seed, "random_seed": 1}))
    b = generate(tiny["kieu"], validate_request(KIEU, {"seed": unicodedata.normalize("NFD", seed), "random_seed": 1}))
    assert a["text"] == b["text"]


def test_unknown_words_do_not_crash(tiny):
    r = generate(tiny["nyt_headlines"], validate_request(NYT_HEADLINES, {"seed": "Zyxwv qwerty", "length": 3}))
    assert r["text"].startswith("Zyxwv Qwerty") and r["tokens"] == 3
    v = generate(tiny["kieu"], validate_request(KIEU, {"seed": "xyz abc", "length": 1}))
    assert len(v["lines"]) == 4  # the seed's couplet completed, then one more


def test_untrained_constrained_verse_keeps_the_meter(tiny):
    for rs in range(5):
        r = generate(tiny["kieu"], validate_request(KIEU, {"seed": "Trăm năm trong cõi người ta", "length": 3,
                                                           "strategy": "temperature", "temperature": 3,
                                                           "random_seed": rs}))
        assert all(c["ok"] for c in check_verse(r["lines"])), r["text"]
        assert all(c["ok"] and not c["relaxed"] for c in r["checks"])


def test_stream_yields_tokens_lines_and_a_summary(tiny):
    events = list(generate_stream(tiny["kieu"], validate_request(KIEU, {"seed": "Trăm năm trong", "length": 1,
                                                                         "random_seed": 5})))
    final = events[-1]
    assert final["done"] and final["tokens"] == sum("token" in e for e in events)
    lines = [e for e in events if "line" in e]
    assert [e["line"] for e in lines] == final["lines"] and all("check" in e for e in lines)
    assert final["text"] == generate(tiny["kieu"], validate_request(KIEU, {"seed": "Trăm năm trong", "length": 1,
                                                                            "random_seed": 5}))["text"]


@pytest.mark.parametrize("params", [
    {}, {"seed": ""}, {"seed": "   "}, {"seed": "!!!"}, {"seed": 5}, {"seed": "a" * 501},
    {"seed": "ok", "length": 0}, {"seed": "ok", "length": 99}, {"seed": "ok", "length": "two"},
    {"seed": "ok", "length": 2.5}, {"seed": "ok", "length": True}, {"seed": "ok", "strategy": "magic"},
    {"seed": "ok", "temperature": 0}, {"seed": "ok", "temperature": "nan"}, {"seed": "ok", "top_p": 1.5},
    {"seed": "ok", "top_k": 0}, {"seed": "ok", "beam_width": 100}, {"seed": "ok", "random_seed": -1},
])
def test_bad_requests_raise_invalid_input(params):
    with pytest.raises(InvalidInput) as err:
        validate_request(NYT_HEADLINES, params)
    assert err.value.status == 400 and err.value.en and err.value.vi


def test_form_strings_are_accepted():
    req = validate_request(KIEU, {"seed": " Trăm năm ", "length": "3", "strategy": "Top_K", "top_k": "5",
                                  "temperature": "0.7", "top_p": "", "random_seed": "9", "meter": "false"})
    assert (req.length, req.strategy, req.top_k, req.temperature, req.random_seed, req.meter) == (
        3, "top_k", 5, 0.7, 9, False)


def test_no_fitting_candidate_relaxes_the_rhyme_and_says_so(tiny):
    # "khách" ends in -ch: every -ch syllable is trắc, so no bằng syllable can rhyme at bát 6.
    r = generate(tiny["kieu"], validate_request(KIEU, {"seed": "Trăm năm trong cõi người khách", "length": 1,
                                                       "random_seed": 0}))
    bat = r["checks"][1]
    assert bat["relaxed"] == [{"position": 6, "dropped": ["rhyme"]}]
    assert bat["rhyme_ok"] is False and bat["length_ok"] and bat["tone_ok"]


def test_headlines_never_contain_the_snippet_marker(tmp_path):
    import keras

    folder = write_tiny_text_model(tmp_path, NYT_HEADLINES.with_overrides(extra={"aux_text": "snippets"}))
    model = load_keras_text_model(folder / "model.keras")
    tm = load_text_model(folder, NYT_HEADLINES)
    marker = tm.vocab.index[SNIPPET]
    bias = keras.ops.convert_to_numpy(model.get_layer("next_token").bias).copy()
    bias[marker] = 50.0  # the untrained model would pick it everywhere if it could
    model.get_layer("next_token").bias.assign(bias)
    model.save(folder / "model.keras")
    tm = load_text_model(folder, NYT_HEADLINES)
    for strategy in STRATEGIES:
        r = generate(tm, validate_request(NYT_HEADLINES, {"seed": "Trump says", "length": 5, "strategy": strategy,
                                                          "random_seed": 1}))
        assert r["tokens"] == 5 and "snippet" not in r["text"].lower()


def _bat_six_plan(model):
    """A plan whose next syllable is bát 6, to rhyme with lục 6 'ta'."""
    from app.decoding import Verse

    return Verse(model, [clean_words("Trăm năm trong cõi người ta"), clean_words("Chữ tài chữ mệnh khéo")], 2, True)


def test_rhyme_position_prefers_exact_rhymes_and_keeps_near_ones(tiny):
    from app.text import exact_rhyme, rhymes

    model = tiny["kieu"]
    mask, relaxed, prefer = _bat_six_plan(model).allowed()
    tokens = model.vocab.tokens
    allowed = {tokens[i] for i in np.flatnonzero(mask)}
    preferred = {tokens[i] for i in np.flatnonzero(prefer)}
    assert relaxed == [] and preferred and preferred <= allowed
    assert all(rhymes(t, "ta") for t in allowed)
    assert preferred == {t for t in allowed if exact_rhyme(t, "ta")} and {"là", "nhà"} <= preferred
    assert "tư" in allowed - preferred  # a near rhyme (ư ~ a) stays possible
    assert "ta" not in allowed  # not the lục's own syllable again
    # no preference where no rhyme is due
    from app.decoding import Verse

    assert Verse(model, [clean_words("Trăm năm")], 2, True).allowed()[2] is None


def test_the_exact_rhyme_bonus_outweighs_a_smaller_lead_only(tiny):
    from app.decoding import EXACT_RHYME_BONUS, _pick

    model = tiny["kieu"]
    mask, _, prefer = _bat_six_plan(model).allowed()
    near, exact = model.vocab.index["tư"], model.vocab.index["là"]
    req = validate_request(KIEU, {"seed": "x", "strategy": "greedy"})
    logits = np.full(model.vocab_size, -10.0)
    logits[near], logits[exact] = 0.0, -EXACT_RHYME_BONUS / 2
    assert _pick(logits, mask, req, np.random.default_rng(0), prefer) == exact
    logits[exact] = -EXACT_RHYME_BONUS * 2
    assert _pick(logits, mask, req, np.random.default_rng(0), prefer) == near
    # sampling: the exact rhyme's probability is multiplied by e^bonus
    req = validate_request(KIEU, {"seed": "x", "strategy": "temperature", "temperature": 1})
    logits[exact] = logits[near] = 0.0
    rng = np.random.default_rng(0)
    picks = [_pick(logits, mask, req, rng, prefer) for _ in range(2000)]
    share = picks.count(exact) / (picks.count(exact) + picks.count(near))
    assert share == pytest.approx(np.exp(EXACT_RHYME_BONUS) / (np.exp(EXACT_RHYME_BONUS) + 1), abs=0.05)


@pytest.mark.parametrize("strategy", ["top_p", "beam"])
def test_streamed_checks_say_which_rhymes_were_exact(tiny, strategy):
    events = list(generate_stream(tiny["kieu"], validate_request(
        KIEU, {"seed": "Trăm năm trong cõi người ta", "length": 3, "random_seed": 4, "strategy": strategy})))
    checks = [e["check"] for e in events if "line" in e]
    assert len(checks) == 8 and checks[0]["rhyme"] is None
    for c, mine in zip(checks[1:], check_verse([e["line"] for e in events if "line" in e])[1:]):
        assert c["rhyme"]["ok"] and c["rhyme"]["exact"] == mine["rhyme"]["exact"]


@pytest.mark.parametrize("lang, exact, near", [("vi", "vần chính", "vần thông"), ("en", "exact rhyme", "near rhyme")])
def test_card_and_text_pages_say_which_rhymes_were_exact(tmp_path, make_app, lang, exact, near):
    import json

    from app.text import rhyme_shares

    folder = write_tiny_text_model(tmp_path, KIEU)
    opening = ["Trăm năm trong cõi người ta", "Chữ tài chữ mệnh khéo là ghét nhau",
               "Trải qua một cuộc bể dâu", "Những điều trông thấy mà đau đớn lòng"]
    checks = check_verse(opening)  # ta ~ là exact, nhau ~ dâu and dâu ~ đau near
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    card["metrics"]["meter"] = {"constrained": {"couplets": 2, "rhymes": rhyme_shares(checks)},
                                "real_poem_all": {"couplets": 2, "rhymes": rhyme_shares(checks)},
                                "examples": [{"line": ln, "check": c} for ln, c in zip(opening, checks)]}
    (folder / "card.json").write_text(json.dumps(card, ensure_ascii=False), encoding="utf-8")
    client = make_app(tmp_path).test_client()
    page = client.get(f"/tasks/kieu/card?lang={lang}").get_data(as_text=True)
    section = page[page.index('id="meter-examples"'):]
    assert section.count(f"({exact})") == 1 and section.count(f"({near})") == 2 and "33.3%" in section
    resp = client.post(f"/tasks/kieu?lang={lang}", data={"seed": "Trăm năm trong cõi người ta", "length": "2",
                                                         "random_seed": "1", "meter": "1"})
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    assert html.count(f"({exact})") + html.count(f"({near})") == 5  # every rhymed line of 6, each marked once
    assert f'data-i18n-exact="{exact}"' in html and f'data-i18n-near="{near}"' in html
