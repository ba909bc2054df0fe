"""Phones, accessibility and the camera in a real browser (Playwright driving Debian's chromium).

- axe-core (npm package, installed by .ci/run into .cache/axe) on the seven main pages: zero
  WCAG 2 A/AA violations.
- At 390 px wide (a phone): no horizontal overflow, header links never break inside a label, the
  gate names on /lstm stay beside their equations; screenshots go to test-artifacts/.
- The camera button with Chromium's fake camera: a snapshot is shown and classified; with no
  camera the button says why.

Skips where chromium, playwright or axe-core is absent, except in CI (CI=true).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from werkzeug.serving import make_server

from app.config import MODELS_DIR
from app.tasks import KIEU, MNIST, NYT_HEADLINES
from helpers.browser import axe_violations

ROOT = Path(__file__).resolve().parent.parent
AXE = ROOT / ".cache" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
SHOTS = ROOT / "test-artifacts" / "screenshots"
FAKE_CAMERA = ["--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
PAGES = {"home": "/", "image_task": "/tasks/mnist", "text_task": "/tasks/kieu", "card": "/tasks/mnist/card",
         "lstm": "/lstm", "why": "/lstm/why", "api_docs": "/docs/api", "lab_submit": "/lab/mnist/submit",
         "lab_text": "/lab/kieu"}


def missing(reason: str):
    """Skip, or fail in CI where .ci/run installs everything this test needs."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI must run the accessibility test)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    """Tiny models as in conftest, plus one-click examples and served figures on the mnist card,
    so every part of the pages is rendered."""
    from helpers.models import write_tiny_image_model
    from training.data import to_png_bytes
    from training.served import record_served, write_examples

    d = tmp_path_factory.mktemp("a11y_models")
    write_tiny_image_model(d, MNIST, export=True)
    try:
        from training.textgen import write_tiny_text_model
    except ImportError:
        pass
    else:
        for spec in (NYT_HEADLINES, KIEU):
            write_tiny_text_model(d, spec)
    if (MODELS_DIR / "compare_rnn").is_dir():  # /lstm/why's measured charts, as shipped
        shutil.copytree(MODELS_DIR / "compare_rnn", d / "compare_rnn")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (12, 28, 28), dtype=np.uint8)
    labels = np.arange(12) % 10
    preds = labels.copy()
    preds[:2] = 9 - labels[:2]
    write_examples(d / "mnist", lambda i: to_png_bytes(x[i]), np.arange(12), labels, preds, ".png")
    record_served(d / "mnist", {"count": 12, "correct": 10, "refused": 0, "input": "PNG of the test array",
                                "engine": "litert", "precision": "float32", "digit_photos": {"accuracy": 0.5, "count": 12}})
    return d


@pytest.fixture(scope="module")
def base_url(models_dir):
    from app import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "test", "MODELS_DIR": str(models_dir)})
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def open_page(browser, **context):
    """A new page whose script errors and failed requests (a favicon 404 too) are collected."""
    ctx = browser.new_context(**context)
    page = ctx.new_page()
    problems = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 400 else None)
    return ctx, page, problems


@pytest.mark.parametrize("name", PAGES)
def test_no_wcag_violations_and_a_phone_fits(browser, base_url, name):
    if not AXE.is_file():
        missing(f"axe-core is not installed at {AXE} (npm install --prefix .cache/axe axe-core)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    # axe is injected as a script; the app's CSP (script-src 'self') would block it, so only the
    # test's context bypasses CSP.
    ctx, page, problems = open_page(browser, viewport={"width": 390, "height": 844}, bypass_csp=True,
                                    device_scale_factor=1, is_mobile=True, has_touch=True)
    try:
        page.goto(base_url + PAGES[name] + "?lang=vi")
        violations = axe_violations(page, AXE)
        assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)

        width = page.evaluate("() => document.documentElement.scrollWidth")
        assert width <= 390, f"{name}: the page is {width} px wide on a 390 px phone"
        broken = page.evaluate("""() => [...document.querySelectorAll('header.site a')]
            .filter(a => a.getClientRects().length > 1 || a.getBoundingClientRect().height > 1.9 *
                         parseFloat(getComputedStyle(a).lineHeight || '20')).map(a => a.textContent.trim())""")
        assert not broken, f"header labels broken across lines: {broken}"
        if name == "lstm":
            under = page.evaluate("""() => [...document.querySelectorAll('.equations li')].filter(li => {
                const eq = li.querySelector('.eq').getBoundingClientRect();
                const why = li.querySelector('.why').getBoundingClientRect();
                return why.left < eq.right - 1 || why.top > eq.bottom; }).map(li => li.textContent.trim())""")
            assert not under, f"gate names wrapped under their equations: {under}"
        page.screenshot(path=str(SHOTS / f"phone_{name}.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()


def test_scrollable_tables_are_reachable_by_keyboard(browser, base_url):
    ctx, page, problems = open_page(browser, viewport={"width": 390, "height": 844})
    try:
        page.goto(base_url + "/tasks/mnist/card?lang=en")
        regions = page.locator(".scroll")
        assert regions.count() >= 1
        for i in range(regions.count()):
            region = regions.nth(i)
            assert region.get_attribute("tabindex") == "0" and region.get_attribute("role") == "region"
            assert region.get_attribute("aria-label")
        assert not problems, problems
    finally:
        ctx.close()


def test_one_click_example_without_javascript(browser, base_url):
    ctx, page, problems = open_page(browser, java_script_enabled=False)
    try:
        page.goto(base_url + "/tasks/mnist?lang=en")
        with page.expect_navigation():
            page.locator("button.example").first.click()
        assert page.locator("#answer").inner_text()
        assert page.locator("#example-truth").inner_text().startswith("True label")
        assert page.locator("#camera").is_hidden()  # no camera button that could not work
        assert not problems, problems
    finally:
        ctx.close()


def test_camera_snapshot_is_shown_and_classified(chromium, base_url):
    browser = chromium(*FAKE_CAMERA)
    ctx, page, problems = open_page(browser, viewport={"width": 1000, "height": 900}, permissions=["camera"])
    try:
        page.goto(base_url + "/tasks/mnist?lang=en")
        assert page.locator("#camera-snap").is_hidden() and page.locator("#camera-video").is_hidden()
        page.click("#camera-start")
        page.wait_for_selector("#camera-snap:not([hidden])", timeout=15_000)
        assert page.locator("#camera-snap").is_visible()
        page.wait_for_timeout(500)  # a few frames of the fake camera's moving pattern
        with page.expect_navigation():
            page.click("#camera-snap")
        page.wait_for_selector("#answer, .error")
        assert page.locator("#answer").count() == 1, page.locator("main").inner_text()
        assert page.locator("#lstm-input").get_attribute("src").startswith("data:image/png")
        page.screenshot(path=str(SHOTS / "camera.png"), full_page=True)
        assert not problems, problems
    finally:
        ctx.close()


def test_no_camera_the_button_says_why(browser, base_url):
    ctx, page, problems = open_page(browser, viewport={"width": 1000, "height": 900})
    try:
        page.goto(base_url + "/tasks/mnist?lang=en")
        page.click("#camera-start")
        status = page.locator("#camera-status")
        from playwright.sync_api import expect

        expect(status).not_to_be_empty(timeout=15_000)
        assert "camera" in status.inner_text().lower() or "https" in status.inner_text()
        assert page.locator("#file").is_enabled()  # the file picker still works
        assert not problems, problems
    finally:
        ctx.close()
