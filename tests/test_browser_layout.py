"""A real browser (Playwright driving Debian's chromium) on the page layout: after a one-click
example or an upload the result is in view at 1280×900 (input and result side by side), and no
page is wider than a 360 or 390 px phone, in either language.

Skips where chromium or the playwright package is absent, except in CI (CI=true).
"""

from __future__ import annotations

import json
import shutil

import pytest

from helpers.browser import serve_on_loopback
from helpers.images import png_bytes


@pytest.fixture(scope="module")
def lab_app(make_app, tiny_models_dir, tmp_path_factory):
    """The web app over a copy of the tiny models with three MNIST one-click examples, the lab
    bench and the instructor console on a fresh instance folder (overrides the lab fixture, so
    `finished_run` writes its runs here)."""
    root = tmp_path_factory.mktemp("layout")
    models = root / "models"
    shutil.copytree(tiny_models_dir, models)
    examples = models / "mnist" / "examples"
    examples.mkdir()
    for i in range(3):
        (examples / f"{i:02d}.png").write_bytes(png_bytes((30 * i, 30 * i, 30 * i), size=(28, 28)))
    (examples / "examples.json").write_text(json.dumps(
        {"examples": [{"id": str(i), "file": f"{i:02d}.png", "label": i} for i in range(3)]}), encoding="utf-8")
    (root / "server").mkdir()
    instance = root / "instance"
    return make_app(models, INSTANCE_PATH=str(instance), DATASET_SERVER_ROOT=str(root / "server"),
                    LSTMLAB_QUEUE_URL="", LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}")


@pytest.fixture(scope="module")
def base_url(lab_app):
    with serve_on_loopback(lab_app) as url:
        yield url


def in_view(page, selector: str) -> bool:
    """Whether the element's top edge lies inside the viewport."""
    return page.evaluate("s => { const r = document.querySelector(s).getBoundingClientRect();"
                         " return r.top >= 0 && r.top < window.innerHeight; }", selector)


def test_the_result_is_in_view_after_an_example_and_an_upload(browser, base_url, tmp_path):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{base_url}/tasks/mnist?lang=vi")
    assert page.locator(".result.waiting").is_visible()  # the right half says where the result will be
    with page.expect_navigation():
        page.locator("button.example").nth(1).click()
    assert page.url.endswith("#result")
    assert in_view(page, "#result-heading")
    # Side by side: the result's column starts to the right of the input's.
    inp, res = (page.locator(s).bounding_box() for s in ("section[aria-labelledby=input-heading]", "#result"))
    assert res["x"] >= inp["x"] + inp["width"] and res["y"] < 900

    path = tmp_path / "digit.png"
    path.write_bytes(png_bytes((255, 255, 255), size=(40, 40)))
    page.goto(f"{base_url}/tasks/mnist?lang=en")
    with page.expect_navigation():
        page.set_input_files("#file", str(path))  # choosing a file submits the form
    assert in_view(page, "#result-heading")

    # A phone: one column, and the anchor still brings the result up.
    phone = browser.new_context(viewport={"width": 390, "height": 800}).new_page()
    phone.goto(f"{base_url}/tasks/mnist?lang=vi")
    with phone.expect_navigation():
        phone.locator("button.example").first.click()
    assert in_view(phone, "#result-heading")
    assert phone.locator("#result").bounding_box()["x"] < 40
    phone.context.close()
    context.close()


def test_a_text_result_without_javascript_lands_in_view(browser, base_url):
    context = browser.new_context(viewport={"width": 390, "height": 800}, java_script_enabled=False)
    page = context.new_page()
    page.goto(f"{base_url}/tasks/kieu?lang=vi")
    page.fill("#seed", "trăm năm trong cõi người ta")
    page.fill("#length", "1")
    with page.expect_navigation():
        page.click("#generate-button")
    assert page.url.endswith("#result")
    assert in_view(page, "#output-heading")
    context.close()
