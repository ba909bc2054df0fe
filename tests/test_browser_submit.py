"""A real browser hands in a model trained outside the app: from the leaderboard to the submit
form (CSRF on, no script needed), a refusal shown on the form, the status page reloading itself
until the consumer's handler has scored it, and the model on the leaderboard marked "nộp bài";
the same for a language model and its vocabulary on a text data set's leaderboard.

Skips where chromium, the playwright package or the MNIST data is absent, except in CI (CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browser import new_page, serve_on_loopback

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.slow


def open_submit_form(page, url: str, dataset: str, nickname: str) -> None:
    """From the data set's leaderboard (in Vietnamese) to its submit form, the nickname typed."""
    page.goto(f"{url}/lab/{dataset}?lang=vi")
    with page.expect_navigation():
        page.click("#submit-link")
    assert page.url.split("?")[0].endswith(f"/lab/{dataset}/submit")
    page.fill("#f-nickname", nickname)


def test_submit_a_model_and_see_it_on_the_leaderboard(make_app, tiny_models_dir, browser, tmp_path):
    from playwright.sync_api import expect

    from app.lab import scorer
    from test_lab_submit import train_outside

    train_outside(tmp_path / "mine.keras", 500, 12, 1, 50, 5)
    (tmp_path / "junk.keras").write_bytes(b"not a zip archive at all")
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                   LSTMLAB_DATABASE_URL="", LAB_TEST_SUBSET=200, WTF_CSRF_ENABLED=True)
    problems: list[str] = []
    page = new_page(browser, problems)
    with serve_on_loopback(app) as url:
        open_submit_form(page, url, "mnist", "Trình duyệt")
        page.set_input_files("#f-model", str(tmp_path / "junk.keras"))
        with page.expect_navigation():
            page.click("#submit-button")
        expect(page.locator("#form-error")).to_contain_text("không phải tệp .keras")
        assert page.locator("#f-nickname").input_value() == "Trình duyệt"  # the form keeps what was typed
        page.set_input_files("#f-model", str(tmp_path / "mine.keras"))
        with page.expect_navigation():
            page.click("#submit-button")
        assert "/lab/submissions/" in page.url
        sub_id = page.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        expect(page.locator("#submission-status")).to_have_text("đang chờ")
        with app.app_context():
            assert scorer.execute_submission(app, sub_id) == "scored"
        expect(page.locator("#test-accuracy")).to_be_visible(timeout=20_000)  # the page reloaded itself
        shown = page.locator("#test-accuracy").text_content()
        assert page.locator("#layer-table tbody tr").count() == 4
        page.screenshot(path=str(SHOTS / "lab_submission_scored.png"), full_page=True)
        page.goto(f"{url}/lab/mnist?lang=vi")
        row = page.locator(f"#row-{sub_id}")
        expect(row).to_have_class("submitted")
        expect(row).to_contain_text("nộp bài")
        expect(row).to_contain_text("Trình duyệt")
        expect(row).to_contain_text(shown)
        page.screenshot(path=str(SHOTS / "lab_leaderboard_submitted.png"), full_page=True)
    assert not problems, problems  # no script error, nothing refused by the Content-Security-Policy


def test_submit_a_language_model_and_see_it_on_the_text_leaderboard(make_app, tiny_models_dir, browser, tmp_path,
                                                                      monkeypatch):
    """The text bench links to the submit form, which asks for the vocab.json and the split seed;
    a vocabulary of the wrong size is refused on the form naming both sizes, the right one is
    scored and the model shows on the text leaderboard by its perplexity, marked "nộp bài"."""
    import json
    import re

    from playwright.sync_api import expect

    from app.lab import scorer
    from test_lab_text_program import tiny_corpora
    from test_lab_text_submit import language_model, split_arrays

    keras = pytest.importorskip("keras")
    corpora = tiny_corpora(tmp_path / "data")
    monkeypatch.setenv("LSTMLAB_DATA", str(corpora))
    scorer.text_split.cache_clear()
    vocab, (x, y), _ = split_arrays(corpora)
    model = language_model(len(vocab), keras.layers.GRU(8, return_sequences=True))
    model.compile("adam", "sparse_categorical_crossentropy")
    model.fit(x, y, epochs=1, verbose=0)
    model.save(tmp_path / "model.keras")
    (tmp_path / "vocab.json").write_text(vocab.to_json(), encoding="utf-8")
    longer = json.loads(vocab.to_json())
    (tmp_path / "longer.json").write_text(json.dumps({"tokens": longer["tokens"] + ["thêm"]}), encoding="utf-8")
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                   LSTMLAB_DATABASE_URL="", WTF_CSRF_ENABLED=True)
    problems: list[str] = []
    page = new_page(browser, problems)
    with serve_on_loopback(app) as url:
        open_submit_form(page, url, "kieu", "Thơ")
        expect(page.locator("#rule-vocabulary")).to_contain_text("vocab.json")
        page.set_input_files("#f-model", str(tmp_path / "model.keras"))
        page.set_input_files("#f-vocabulary", str(tmp_path / "longer.json"))
        with page.expect_navigation():
            page.click("#submit-button")
        expect(page.locator("#form-error")).to_contain_text(f"nhận {len(vocab)} token")
        expect(page.locator("#form-error")).to_contain_text(f"có {len(vocab) + 1} token")
        page.set_input_files("#f-model", str(tmp_path / "model.keras"))
        page.set_input_files("#f-vocabulary", str(tmp_path / "vocab.json"))
        page.fill("#f-seed", "42")
        with page.expect_navigation():
            page.click("#submit-button")
        sub_id = page.url.split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        with app.app_context():
            assert scorer.execute_submission(app, sub_id) == "scored"
        expect(page.locator("#test-perplexity")).to_be_visible(timeout=20_000)  # the page reloaded itself
        assert page.locator("#layer-table tbody tr").count() == 3
        page.goto(f"{url}/lab/kieu?lang=vi")
        row = page.locator(f"#row-{sub_id}")
        expect(row).to_have_class("submitted")
        expect(row).to_contain_text("nộp bài")
        expect(row).to_contain_text("Thơ")
        expect(row.locator("strong")).to_have_text(re.compile(r"^\d+,\d$"))  # its perplexity, vi decimal mark
        page.screenshot(path=str(SHOTS / "lab_text_leaderboard_submitted.png"), full_page=True)
    assert not problems, problems
