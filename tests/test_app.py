"""The web app through the Flask test client: every page and API route, both languages, for an
image task (mnist) and the text tasks (nyt_headlines, kieu), on tiny untrained models."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from app.i18n import translate_to
from app.tasks import BUILTIN_TASKS, IMAGE

LANGS = ("vi", "en")
TEXT_SLUGS = ("nyt_headlines", "kieu")


def upload(data: bytes, name: str = "digit.png") -> dict:
    return {"file": (io.BytesIO(data), name)}


def text_of(resp) -> str:
    return resp.get_data(as_text=True)


def says(html: str, msgid: str, lang: str) -> bool:
    """Whether the page shows `msgid` in `lang`."""
    text = translate_to(lang, msgid)
    return text in html or escape(text) in html  # a template's _() is markup, a view's message is escaped


@pytest.fixture
def text_ready(app):
    from app.modelstore import get_store

    with app.app_context():
        if not get_store().get("kieu").available:
            pytest.skip("training.textgen not available")


# ----------------------------------------------------------------------------- pages
@pytest.mark.parametrize("lang", LANGS)
def test_home_lists_every_task_in_the_language(client, lang):
    resp = client.get(f"/?lang={lang}")
    assert resp.status_code == 200
    html = text_of(resp)
    assert f'<html lang="{lang}">' in html
    for spec in BUILTIN_TASKS.values():
        assert spec.title(lang) in html
    assert says(html, "Tasks", lang)
    # an untrained task shows the command that trains it, a trained one its links
    assert "python -m training cifar10" in html
    assert 'href="/tasks/mnist/card"' in html


def test_language_choice_is_remembered_in_a_cookie(client):
    assert '<html lang="vi">' in text_of(client.get("/"))  # Vietnamese by default
    resp = client.get("/?lang=en")
    assert "lang=en" in resp.headers.get("Set-Cookie", "")
    assert '<html lang="en">' in text_of(client.get("/tasks/mnist"))
    assert '<html lang="vi">' in text_of(client.get("/tasks/mnist?lang=vi"))
    assert '<html lang="vi">' in text_of(client.get("/docs/api"))


def test_unknown_language_falls_back_to_vietnamese(client):
    assert '<html lang="vi">' in text_of(client.get("/?lang=fr"))


@pytest.mark.parametrize("lang", LANGS)
def test_image_page_form_works_without_javascript(png_digit, client, lang):
    page = client.get(f"/tasks/mnist?lang={lang}")
    assert page.status_code == 200
    html = text_of(page)
    assert 'enctype="multipart/form-data"' in html and 'name="file"' in html
    assert 'id="canvas"' in html and "<script" in html and "onclick" not in html
    resp = client.post(f"/tasks/mnist?lang={lang}", data=upload(png_digit()), content_type="multipart/form-data")
    assert resp.status_code == 200
    html = text_of(resp)
    assert 'id="result"' in html and 'id="lstm-input"' in html and "data:image/png;base64," in html
    assert html.count("<meter") == 5  # the top-5 bars
    assert says(html, "Model time", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_image_page_bad_upload_rerenders_the_form_with_the_message(client, lang):
    resp = client.post(f"/tasks/mnist?lang={lang}", data=upload(b"not a picture"),
                       content_type="multipart/form-data")
    assert resp.status_code == 400
    html = text_of(resp)
    assert 'id="form-error"' in html and 'id="upload-form"' in html
    assert ("không phải ảnh" if lang == "vi" else "not an image") in html
    empty = client.post(f"/tasks/mnist?lang={lang}", data={}, content_type="multipart/form-data")
    assert empty.status_code == 400 and says(text_of(empty), "No picture was chosen.", lang)


@pytest.mark.parametrize("lang", LANGS)
def test_model_card_page(client, lang):
    resp = client.get(f"/tasks/mnist/card?lang={lang}")
    assert resp.status_code == 200
    html = text_of(resp)
    for msgid in ("Layers", "Per-class accuracy", "Confusion matrix", "Training curves", "Baseline (the lab's original recipe)",
                  "Command to reproduce"):
        assert says(html, msgid, lang)
    assert "lstm_1" in html and "LSTM" in html  # the layer table
    assert "python -m training mnist" in html
    assert "/tasks/mnist/plots/training_curves.png" in html and "/tasks/mnist/plots/confusion_matrix.png" in html
    assert "<code>test_accuracy</code>" in html  # the generic metrics table


@pytest.mark.parametrize("slug", TEXT_SLUGS)
@pytest.mark.parametrize("lang", LANGS)
def test_text_card_page(client, text_ready, slug, lang):
    resp = client.get(f"/tasks/{slug}/card?lang={lang}")
    assert resp.status_code == 200
    html = text_of(resp)
    assert "Embedding" in html and "<code>test_perplexity</code>" in html


def test_plot_route_serves_only_the_known_files(client):
    ok = client.get("/tasks/mnist/plots/confusion_matrix.png")
    assert ok.status_code == 200 and ok.mimetype == "image/png" and ok.data[:4] == b"\x89PNG"
    for bad in ("card.json", "model.keras", "..%2Fmnist%2Fcard.json", "..%2F..%2Fetc%2Fpasswd"):
        assert client.get(f"/tasks/mnist/plots/{bad}").status_code == 404
    assert client.get("/tasks/nope/plots/training_curves.png").status_code == 404


@pytest.mark.parametrize("lang", LANGS)
def test_api_docs_page(client, lang):
    resp = client.get(f"/docs/api?lang={lang}")
    assert resp.status_code == 200
    html = text_of(resp)
    assert "curl -F file=@digit.png" in html and "/api/v1/tasks/mnist/predict" in html
    assert "/readyz" in html and "stream=1" in html


@pytest.mark.parametrize("lang", LANGS)
def test_unavailable_task_shows_the_command(client, lang):
    resp = client.get(f"/tasks/cifar10?lang={lang}")
    assert resp.status_code == 503
    html = text_of(resp)
    assert "python -m training cifar10" in html and says(html, "Not available", lang)


@pytest.mark.parametrize("slug", TEXT_SLUGS)
@pytest.mark.parametrize("lang", LANGS)
def test_text_page_form_works_without_javascript(client, text_ready, slug, lang):
    page = client.get(f"/tasks/{slug}?lang={lang}")
    assert page.status_code == 200
    html = text_of(page)
    for name in ("seed", "length", "strategy", "temperature", "top_k", "top_p", "beam_width", "random_seed"):
        assert f'name="{name}"' in html
    resp = client.post(f"/tasks/{slug}?lang={lang}",
                       data={"seed": "trăm năm trong cõi", "length": "1", "strategy": "greedy", "meter": "1"})
    assert resp.status_code == 200
    html = text_of(resp)
    assert 'id="output"' in html
    if slug == "kieu":  # each line with its meter diagnostics
        assert html.count('<span class="check') >= 2
        assert says(html, "syllables", lang)
    else:
        assert 'class="headline"' in html


@pytest.mark.parametrize("lang", LANGS)
def test_text_page_bad_request_rerenders_the_form(client, text_ready, lang):
    resp = client.post(f"/tasks/nyt_headlines?lang={lang}", data={"seed": "  ", "length": "3"})
    assert resp.status_code == 400
    html = text_of(resp)
    assert 'id="form-error"' in html and 'id="generate-form"' in html
    assert ("trống" if lang == "vi" else "empty") in html


# ----------------------------------------------------------------------------- JSON API
def test_api_lists_every_task_with_status(client):
    tasks = {t["slug"]: t for t in client.get("/api/v1/tasks").get_json()["tasks"]}
    assert set(BUILTIN_TASKS) <= set(tasks)
    assert tasks["mnist"]["status"] == "ready" and tasks["mnist"]["input_shape"] == [28, 28, 1]
    assert tasks["mnist"]["predict"].endswith("/api/v1/tasks/mnist/predict")
    assert tasks["cifar10"]["status"] == "missing" and tasks["cifar10"]["command"] == "python -m training cifar10"
    assert tasks["nyt_headlines"]["generate"].endswith("/api/v1/tasks/nyt_headlines/generate")


@pytest.mark.parametrize("lang", LANGS)
def test_api_predict(png_digit, client, lang):
    resp = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}&image=1", data=upload(png_digit()))
    assert resp.status_code == 200
    body = resp.get_json()
    probs = [t["probability"] for t in body["top"]]
    assert len(probs) == 5 and probs == sorted(probs, reverse=True) and 0 < sum(probs) <= 1 + 1e-6
    assert body["prediction"] == body["top"][0] and body["input_shape"] == [28, 28, 1]
    assert body["top"][0]["label"] == body["top"][0][f"label_{lang}"]
    assert body["model_ms"] > 0 and body["image"].startswith("data:image/png;base64,")
    k = client.post("/api/v1/tasks/mnist/predict?k=2", data=upload(png_digit())).get_json()
    assert len(k["top"]) == 2


@pytest.mark.parametrize("lang", LANGS)
def test_api_errors_are_json_in_the_language(png_digit, client, lang):
    bad = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data=upload(b"plain text", "x.png"))
    assert bad.status_code == 400 and bad.is_json
    body = bad.get_json()
    assert body["error"] == body[f"error_{lang}"] and body["error_en"] != body["error_vi"]
    missing = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}")
    assert missing.status_code == 400 and missing.get_json()["error"] == translate_to(lang, "No picture was chosen.")
    unknown = client.post(f"/api/v1/tasks/nope/predict?lang={lang}", data=upload(png_digit()))
    assert unknown.status_code == 404 and "nope" in unknown.get_json()["error"]
    wrong_method = client.get(f"/api/v1/tasks/mnist/predict?lang={lang}")
    assert wrong_method.status_code == 405 and wrong_method.is_json and "POST" in wrong_method.headers["Allow"]
    not_there = client.get(f"/api/v1/whatever?lang={lang}")
    assert not_there.status_code == 404 and not_there.is_json
    untrained = client.post(f"/api/v1/tasks/cifar10/predict?lang={lang}", data=upload(png_digit()))
    assert untrained.status_code == 503 and untrained.is_json


def test_api_wrong_kind_of_task(png_digit, client, text_ready):
    image_to_text = client.post("/api/v1/tasks/nyt_headlines/predict", data=upload(png_digit()))
    assert image_to_text.status_code == 400 and image_to_text.is_json
    text_to_image = client.post("/api/v1/tasks/mnist/generate", json={"seed": "a"})
    assert text_to_image.status_code == 400
    picture_as_text = client.post("/api/v1/tasks/kieu/generate", data=upload(png_digit()))
    assert picture_as_text.status_code == 400 and picture_as_text.is_json


@pytest.mark.parametrize("slug", TEXT_SLUGS)
def test_api_generate_json(client, text_ready, slug):
    resp = client.post(f"/api/v1/tasks/{slug}/generate",
                       json={"seed": "trăm năm trong cõi người ta", "length": 2, "strategy": "top_k", "random_seed": 7})
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["task"] == slug and body["random_seed"] == 7 and body["text"] and body["lines"]
    again = client.post(f"/api/v1/tasks/{slug}/generate",
                        json={"seed": "trăm năm trong cõi người ta", "length": 2, "strategy": "top_k", "random_seed": 7})
    assert again.get_json()["text"] == body["text"]
    if slug == "kieu":
        assert len(body["checks"]) == len(body["lines"])


@pytest.mark.parametrize("lang", LANGS)
def test_api_generate_bad_requests(client, text_ready, lang):
    malformed = client.post(f"/api/v1/tasks/nyt_headlines/generate?lang={lang}", data="{not json",
                            content_type="application/json")
    assert malformed.status_code == 400 and malformed.get_json()["error"] == translate_to(lang, "The request body must be valid JSON.")
    out_of_range = client.post(f"/api/v1/tasks/nyt_headlines/generate?lang={lang}", json={"seed": "a", "length": 10**6})
    assert out_of_range.status_code == 400 and out_of_range.get_json()["error"]


@pytest.mark.parametrize("slug", TEXT_SLUGS)
def test_api_generate_streams_server_sent_events(client, text_ready, slug):
    resp = client.post(f"/api/v1/tasks/{slug}/generate?stream=1", json={"seed": "trăm năm", "length": 1})
    assert resp.status_code == 200 and resp.mimetype == "text/event-stream"
    events = [json.loads(chunk[len("data: "):]) for chunk in text_of(resp).split("\n\n") if chunk]
    assert events[-1]["done"] is True
    tokens = [e["token"] for e in events if "token" in e]
    assert len(tokens) == events[-1]["tokens"]
    if slug == "kieu":
        assert [e["line"] for e in events if "line" in e] == events[-1]["lines"]
    accept = client.post(f"/api/v1/tasks/{slug}/generate", json={"seed": "trăm năm", "length": 1},
                         headers={"Accept": "text/event-stream"})
    assert accept.mimetype == "text/event-stream"


def test_health_and_readiness(client):
    assert client.get("/healthz").get_json() == {"status": "ok"}
    resp = client.get("/readyz")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["ready"] is True and "mnist" in body["ready_tasks"]
    assert body["tasks"]["cifar10"]["status"] == "missing"
    assert body["tasks"]["cifar10"]["command"] == "python -m training cifar10"


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("lang", LANGS)
def test_error_pages_in_both_languages(client, app, monkeypatch, lang):
    i = LANGS.index(lang)
    not_found = client.get(f"/no/such/page?lang={lang}")
    assert not_found.status_code == 404 and says(text_of(not_found), "This page does not exist.", lang)
    assert "<html" in text_of(not_found)
    wrong = client.post(f"/docs/api?lang={lang}")
    assert wrong.status_code == 405 and says(text_of(wrong), "This method is not allowed here.", lang)
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 1000)
    big = client.post(f"/tasks/mnist?lang={lang}", data=upload(b"x" * 5000), content_type="multipart/form-data")
    assert big.status_code == 413 and escape(translate_to(lang, "The file is too large: the limit is %(mb)s MB.", mb=0).split(":")[0]) in text_of(big)
    big_api = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data=upload(b"x" * 5000))
    assert big_api.status_code == 413 and big_api.is_json


@pytest.mark.parametrize("lang", LANGS)
def test_unexpected_error_is_a_plain_500(png_digit, client, app, monkeypatch, lang):
    import app.views.api as api
    import app.views.pages as pages

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(pages, "classify_upload", broken)
    monkeypatch.setattr(api, "classify_upload", broken)
    monkeypatch.setitem(app.config, "PROPAGATE_EXCEPTIONS", False)
    page = client.post(f"/tasks/mnist?lang={lang}", data=upload(png_digit()), content_type="multipart/form-data")
    assert page.status_code == 500 and says(text_of(page), "Something went wrong on the server. It has been logged.", lang)
    assert "secret internal detail" not in text_of(page)
    api_resp = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data=upload(png_digit()))
    assert api_resp.status_code == 500 and api_resp.get_json()["status"] == 500
    assert "secret" not in text_of(api_resp)


# ----------------------------------------------------------------------------- serving
def test_no_request_calls_model_predict_on_the_keras_engine(png_digit, make_app, tiny_models_dir, monkeypatch):
    """The Keras (XLA) fallback is the engine that holds a keras.Model: requests use its compiled
    predict function, never `model.predict` (LiteRT serving has no Keras model at all)."""
    import keras

    client = make_app(tiny_models_dir, PREDICT_LITERT=False).test_client()
    assert client.get("/readyz").get_json()["tasks"]["mnist"]["engine"] == "xla"
    calls = []

    def forbidden(self, *args, **kwargs):
        calls.append(self)
        raise AssertionError("model.predict on the request path")

    monkeypatch.setattr(keras.Model, "predict", forbidden)
    assert client.post("/api/v1/tasks/mnist/predict", data=upload(png_digit())).status_code == 200
    assert not calls


def test_compiled_predict_matches_the_keras_model(app, tiny_models_dir):
    import keras
    import numpy as np

    from app.modelstore import get_store

    model = keras.saving.load_model(Path(tiny_models_dir) / "mnist" / "model.keras", compile=False)
    x = np.random.default_rng(1).integers(0, 256, (3, 28, 28, 1)).astype(np.float32)
    with app.app_context():
        got = get_store().get("mnist").predict(x)
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(model(x, training=False)), atol=1e-5)


def test_a_damaged_model_leaves_the_others_working(png_digit, make_app, tiny_models_dir, tmp_path):
    import shutil

    for slug in ("mnist", "fashion_mnist"):
        shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / slug)
    (tmp_path / "fashion_mnist" / "model.keras").write_bytes(b"PK\x03\x04 truncated")
    (tmp_path / "cifar10").mkdir()
    (tmp_path / "cifar10" / "model.keras").write_bytes(b"")
    (tmp_path / "cifar10" / "card.json").write_text("{not json")
    client = make_app(tmp_path).test_client()
    ready = client.get("/readyz").get_json()
    assert ready["ready"] and ready["tasks"]["mnist"]["status"] == "ready"
    assert ready["tasks"]["fashion_mnist"]["status"] == "error" and ready["tasks"]["cifar10"]["status"] == "error"
    assert ready["tasks"]["fashion_mnist"]["command"] == "python -m training fashion_mnist"
    home = text_of(client.get("/?lang=en"))
    assert "python -m training fashion_mnist" in home and says(home, "This model could not be loaded (a file is missing or damaged).", "en")
    assert client.post("/api/v1/tasks/mnist/predict", data=upload(png_digit())).status_code == 200
    assert client.post("/api/v1/tasks/fashion_mnist/predict", data=upload(png_digit())).status_code == 503


# ----------------------------------------------------------------------------- i18n
TEMPLATES = Path(__file__).resolve().parent.parent / "templates"


def test_no_inline_script_or_event_handler_in_templates():
    for path in TEMPLATES.rglob("*.html"):
        html = path.read_text(encoding="utf-8")
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", html), path
        assert not re.search(r"\son[a-z]+\s*=", html), path


def test_images_have_alt_text_and_inputs_have_labels(png_digit, client, text_ready):
    pages = [client.get("/tasks/mnist/card"), client.post("/tasks/mnist", data=upload(png_digit()),
                                                          content_type="multipart/form-data"),
             client.get("/tasks/kieu"), client.get("/tasks/mnist")]
    for resp in pages:
        html = text_of(resp)
        for img in re.findall(r"<img\b[^>]*>", html):
            assert re.search(r'\balt="[^"]+"', img), img
        for ident in re.findall(r'<(?:input|select|textarea)\b[^>]*\bid="([^"]+)"', html):
            assert f'for="{ident}"' in html, ident


def test_image_tasks_are_all_servable_by_the_layout(app, client):
    """The page layout does not depend on which tasks exist: every image task's page renders, as the
    task when its model is loaded, as the bilingual "not available" page (503) when it is not."""
    from app.modelstore import get_store

    with app.app_context():
        available = {e.slug: e.available for e in get_store()}
    for slug, spec in BUILTIN_TASKS.items():
        if spec.kind == IMAGE:
            resp = client.get(f"/tasks/{slug}")
            assert resp.status_code == (200 if available[slug] else 503), slug
