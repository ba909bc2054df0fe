"""The trace of a prediction reproduces the model's output and records the gates per time step."""

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from app.tasks import MNIST  # noqa: E402
from app.trace import (COLUMNS, PATCH_ROWS, ROWS, SHOWN, WORDS, Tracer, image_tracer, model_graph,  # noqa: E402
                       trace_image, word_trace)
from training.build import make_image_classifier  # noqa: E402

TOL = 1e-5
SMALL = {"baseline": {}, "rows_cols": {"units": 8}, "renet": {"units": 4, "top_units": 8}}


def _randomise(model, seed=0):
    """Trained-looking weights: random, not the initial zeros/ones (they would hide mistakes)."""
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(scale=0.3, size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture(scope="module")
def digit():
    return np.random.default_rng(1).integers(0, 256, MNIST.input_shape).astype(np.uint8)


@pytest.mark.parametrize("architecture", ["baseline", "rows_cols", "renet"])
def test_image_trace_equals_the_prediction(architecture, digit):
    keras.utils.set_random_seed(0)
    model = _randomise(make_image_classifier(MNIST, architecture, **SMALL[architecture]))
    expected = np.asarray(model(digit[None].astype(np.float32), training=False))[0]
    trace = trace_image(image_tracer(model, MNIST), digit)
    np.testing.assert_allclose(trace.output[0], expected, atol=TOL)
    assert trace.layers, "no recurrent layer was recorded"
    for lt in trace.layers:
        assert set(SHOWN) <= set(lt.values)
        assert all(lt.values[k].shape == (lt.steps, lt.units) for k in SHOWN)
        assert np.all((lt.values["f"] > 0) & (lt.values["f"] < 1))
    axes = {lt.name: lt.axis for lt in trace.layers}
    if architecture == "baseline":
        assert axes == {"lstm_1": ROWS, "lstm_2": ROWS}
    elif architecture == "rows_cols":
        assert axes["rows_bilstm_1"] == ROWS and axes["cols_bilstm_2"] == COLUMNS
        assert len(trace.layers) == 8  # four BiLSTMs, two directions each
    else:
        assert axes == {"read_rows": PATCH_ROWS}


def test_backward_record_is_in_time_order(digit):
    keras.utils.set_random_seed(0)
    model = _randomise(make_image_classifier(MNIST, "rows_cols", units=8))
    trace = trace_image(image_tracer(model, MNIST), digit)
    back = next(lt for lt in trace.layers if lt.name == "rows_bilstm_1" and lt.direction == "backward")
    fwd = next(lt for lt in trace.layers if lt.name == "rows_bilstm_1" and lt.direction == "forward")
    # Both directions' hidden states at row t are what the layer outputs at row t.
    layer_out = keras.Model(model.inputs, model.get_layer("rows_bilstm_1").output)
    out = np.asarray(layer_out(digit[None].astype(np.float32)))[0]
    np.testing.assert_allclose(np.concatenate([fwd.values["h"], back.values["h"]], axis=1), out, atol=TOL)


def _text_model(tmp_path, tied: bool, **kw):
    """A served text model (nyt_headlines' vocabulary) with random weights, and its Keras twin
    (`kw`: more of make_word_lstm's arguments, e.g. the cell)."""
    from app.tasks import NYT_HEADLINES
    from app.textmodel import load_text_model
    from training.layers import load_keras_text_model
    from training.textgen import make_word_lstm, write_tiny_text_model

    folder = write_tiny_text_model(tmp_path, NYT_HEADLINES)
    vocab = load_text_model(folder, NYT_HEADLINES).vocab
    keras.utils.set_random_seed(0)
    _randomise(make_word_lstm(len(vocab), embedding=6, units=8, dropout=0.2, tied=tied, **kw), seed=3).save(
        folder / "model.keras")
    return load_text_model(folder, NYT_HEADLINES), load_keras_text_model(folder / "model.keras")


@pytest.mark.parametrize("strategy", ["greedy", "top_p", "beam"])
@pytest.mark.parametrize("tied", [False, True], ids=["plain", "tied"])
def test_text_trace_records_the_gates_of_the_generating_run(tmp_path, tied, strategy):
    from app.decoding import generate, validate_request
    from app.tasks import NYT_HEADLINES
    from app.text import EOL_ID, clean_words

    served, model = _text_model(tmp_path, tied)
    path = []
    result = generate(served, validate_request(NYT_HEADLINES, {"seed": "the new", "length": 4, "strategy": strategy,
                                                               "random_seed": 1}), path)
    trace, ids = word_trace(served, path)
    # the tokens the model read: end of line, the seed, every generated word (the last one too)
    assert ids == [EOL_ID] + served.vocab.encode(clean_words(result["text"]))
    (lstm,) = [layer for layer in model.layers if isinstance(layer, keras.layers.LSTM)]
    (lt,) = trace.layers
    assert lt.name == lstm.name and lt.axis == WORDS and lt.steps == len(ids) and lt.units == 8
    hidden = keras.Model(model.inputs[0], lstm.output)(np.array([ids]), training=False)
    np.testing.assert_allclose(lt.values["h"], keras.ops.convert_to_numpy(hidden)[0], atol=TOL)
    assert np.all((lt.values["f"] > 0) & (lt.values["f"] < 1))
    assert trace.to_dict()["layers"][0]["steps"] == len(ids) and "output" not in trace.to_dict()


@pytest.mark.parametrize("cell, shown", [("gru", ("z", "r", "g", "h")), ("simple_rnn", ("h",))])
def test_a_gru_or_simple_rnn_text_trace_records_its_own_quantities(tmp_path, cell, shown):
    """A GRU's trace holds its update and reset gates, candidate and h, a SimpleRNN's only h; every
    layer's h equals that Keras layer's output over the tokens the generation read."""
    from app.decoding import generate, validate_request
    from app.tasks import NYT_HEADLINES

    served, model = _text_model(tmp_path, False, cell=cell, rnn_layers=2)
    path = []
    generate(served, validate_request(NYT_HEADLINES, {"seed": "the new", "length": 4, "strategy": "beam",
                                                      "random_seed": 1}), path)
    trace, ids = word_trace(served, path)
    rnns = [layer for layer in model.layers if layer.name.startswith(cell)
            and isinstance(layer, (keras.layers.GRU, keras.layers.SimpleRNN))]
    assert [lt.name for lt in trace.layers] == [layer.name for layer in rnns] and len(rnns) == 2
    for lt, layer in zip(trace.layers, rnns):
        assert lt.shown == shown and set(lt.values) == set(shown) and lt.steps == len(ids)
        hidden = keras.Model(model.inputs[0], layer.output)(np.array([ids]), training=False)
        np.testing.assert_allclose(lt.values["h"], keras.ops.convert_to_numpy(hidden)[0], atol=TOL)
    if cell == "gru":
        assert all(np.all((lt.values[k] > 0) & (lt.values[k] < 1)) for lt in trace.layers for k in "zr")
    assert trace.to_dict()["gates"] == list(shown)


def test_text_trace_keeps_the_last_words(tmp_path):
    from app.decoding import generate, validate_request
    from app.tasks import NYT_HEADLINES

    served, _ = _text_model(tmp_path, False)
    path = []
    generate(served, validate_request(NYT_HEADLINES, {"seed": "the new", "length": 30, "strategy": "greedy"}), path)
    trace, ids = word_trace(served, path, last=10)
    assert len(path) == 33 and ids == [entry[0] for entry in path[-10:]] and trace.layers[0].steps == 10
    np.testing.assert_array_equal(trace.layers[0].values["c"][-1], path[-1][1][0][4])


def test_trace_to_dict_is_json_ready(digit):
    import json

    keras.utils.set_random_seed(0)
    trace = trace_image(image_tracer(make_image_classifier(MNIST, "baseline"), MNIST), digit)
    body = json.loads(json.dumps(trace.to_dict()))
    assert body["gates"] == list(SHOWN)
    first = body["layers"][0]
    assert first["steps"] == MNIST.image_size[0] and len(first["values"]["c"]) == first["steps"]
    assert len(first["values"]["c"][0]) == first["units"]


def test_unsupported_recurrent_layer_is_refused():
    inputs = keras.Input((5, 3))
    model = keras.Model(inputs, keras.layers.GRU(4)(inputs))
    with pytest.raises(ValueError):
        Tracer(*model_graph(model))


# ----------------------------------------------------------------------------- the web app
def _png(seed=0) -> bytes:
    import io

    from PIL import Image

    img = np.zeros((40, 40), np.uint8)  # a white stroke on black: a digit-like drawing
    img[8:32, 18 + seed:22 + seed] = 255
    img[8:12, 12:22 + seed] = 255
    buf = io.BytesIO()
    Image.fromarray(img, "L").save(buf, "PNG")
    return buf.getvalue()


def test_image_page_shows_the_trace(client):
    page = client.post("/tasks/mnist?lang=en", data={"file": (io_bytes(_png()), "d.png"), "trace": "1"},
                       content_type="multipart/form-data")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "Inside the LSTM" in html and 'class="trace-map"' in html
    assert "lstm_1" in html and "lstm_2" in html  # the tiny baseline's two LSTMs
    assert "<script>" not in html  # CSP: no inline script


def test_image_page_without_the_trace(client):
    page = client.post("/tasks/mnist?lang=vi", data={"file": (io_bytes(_png()), "d.png")},
                       content_type="multipart/form-data")
    assert page.status_code == 200 and 'class="trace-map"' not in page.get_data(as_text=True)


def test_api_predict_trace_equals_the_prediction(client):
    body = client.post("/api/v1/tasks/mnist/predict?trace=1&k=10", data={"file": (io_bytes(_png(1)), "d.png")},
                       content_type="multipart/form-data").get_json()
    trace = body["trace"]
    assert trace["difference_from_served"] < TOL
    probs = {item["index"]: item["probability"] for item in body["top"]}
    for index, p in probs.items():
        assert abs(trace["output"][0][index] - p) < TOL
    layer = trace["layers"][0]
    assert layer["axis"] == ROWS and len(layer["values"]["f"]) == MNIST.image_size[0]
    assert "trace" not in client.post("/api/v1/tasks/mnist/predict", data={"file": (io_bytes(_png(1)), "d.png")},
                                      content_type="multipart/form-data").get_json()


def test_text_page_and_api_trace(app, client):
    from app.modelstore import get_store

    with app.app_context():
        if "nyt_headlines" not in get_store().entries or not get_store().get("nyt_headlines").available:
            pytest.skip("no text model in the test models")
    page = client.post("/tasks/nyt_headlines?lang=en", data={"seed": "the new", "length": "3", "trace": "1",
                                                             "strategy": "greedy"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and 'class="trace-map text"' in html and "step = word" in html
    body = client.post("/api/v1/tasks/nyt_headlines/generate",
                       json={"seed": "the new", "length": 3, "strategy": "greedy", "trace": True}).get_json()
    trace = body["trace"]
    assert trace["tokens"][-3:] == [w.lower() for w in body["text"].split()][-3:]
    assert trace["layers"][0]["steps"] == len(trace["tokens"])


@pytest.mark.parametrize("strategy", ["greedy", "top_p"])
def test_a_traced_generation_runs_the_model_once(app, client, monkeypatch, strategy):
    """One text model step per token read, traced or not: the trace is recorded by the run that
    generates (plus the step that reads the last word), not by a second interpreter."""
    from app.modelstore import get_store
    from app.textmodel import TextModel

    with app.app_context():
        if "nyt_headlines" not in get_store().entries or not get_store().get("nyt_headlines").available:
            pytest.skip("no text model in the test models")
    calls = []
    step = TextModel.step
    monkeypatch.setattr(TextModel, "step", lambda self, *a, **kw: calls.append(1) or step(self, *a, **kw))
    params = {"seed": "the new", "length": 5, "strategy": strategy, "random_seed": 2}
    plain = client.post("/api/v1/tasks/nyt_headlines/generate", json=params).get_json()
    untraced = len(calls)
    calls.clear()
    body = client.post("/api/v1/tasks/nyt_headlines/generate", json={**params, "trace": True}).get_json()
    assert body["text"] == plain["text"]
    assert len(calls) == len(body["trace"]["tokens"]) == untraced + 1 == 1 + 2 + 5


@pytest.mark.parametrize("lang, words", [("en", "forget gate"), ("vi", "cổng quên")])
def test_lstm_page_renders(client, lang, words):
    page = client.get(f"/lstm?lang={lang}")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and words in html
    assert html.count("<svg") >= 2 and "<script>" not in html


def io_bytes(data: bytes):
    import io

    return io.BytesIO(data)
