"""A real browser hands in a model trained outside the app: from the leaderboard to the submit
form (CSRF on, no script needed), a refusal shown on the form, the status page reloading itself
until the consumer's handler has scored it, and the model on the leaderboard marked "nộp bài".

Skips where chromium, the playwright package or the MNIST data is absent, except in CI (CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browser import new_page, serve_on_loopback

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.slow


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
        page.goto(f"{url}/lab/mnist?lang=vi")
        with page.expect_navigation():
            page.click("#submit-link")
        assert page.url.split("?")[0].endswith("/lab/mnist/submit")
        page.fill("#f-nickname", "Trình duyệt")
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
