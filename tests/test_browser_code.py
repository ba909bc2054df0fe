"""A real browser on the bench's Code panel: changing the recipe changes the program shown
(static/js/code.js fetches /lab/program.py after each change), and both download links give the
program of the values shown: the .py as text, the .ipynb as a valid notebook.

Skips where chromium or the playwright package is absent, except in CI (CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browser import new_page, serve_on_loopback

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.slow


@pytest.fixture
def bench_url(lab_app):
    """The lab app served on a loopback port by a thread of this process."""
    with serve_on_loopback(lab_app) as url:
        yield url


def test_the_code_panel_follows_the_recipe_and_downloads_both_files(bench_url, browser, tmp_path):
    import nbformat
    from playwright.sync_api import expect

    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{bench_url}/lab?lang=en")
    code = page.locator("#code-view")
    expect(code).to_contain_text("layers.LSTM(64", timeout=10_000)  # the lab preset, rendered by the server
    page.select_option("#f-cell", "gru")
    page.fill("#f-units", "24")
    page.check("#f-bidirectional")
    page.fill("#f-seed", "11")
    expect(code).to_contain_text("Bidirectional(layers.GRU(24", timeout=10_000)
    expect(code).to_contain_text("SEED = 11")
    expect(code).not_to_contain_text("layers.LSTM(64")
    shown = code.inner_text()
    page.screenshot(path=str(SHOTS / "lab_code_panel.png"), full_page=True)

    with page.expect_download() as got:
        page.click("#code-py")
    source = Path(got.value.path()).read_text(encoding="utf-8")
    assert got.value.suggested_filename == "lstmlab_mnist.py"
    assert source.strip() == shown.strip()
    compile(source, "program.py", "exec")
    with page.expect_download() as got:
        page.click("#code-ipynb")
    assert got.value.suggested_filename == "lstmlab_mnist.ipynb"
    notebook = nbformat.reads(Path(got.value.path()).read_text(encoding="utf-8"), as_version=4)
    nbformat.validate(notebook)
    assert any("Bidirectional(layers.GRU(24" in c.source for c in notebook.cells if c.cell_type == "code")

    page.select_option("#f-dataset", "cifar10")  # a JPEG data set: its program decodes the images with Pillow
    expect(code).to_contain_text("from PIL import Image", timeout=10_000)
    expect(code).to_contain_text("INPUT_SHAPE = (32, 32, 3)")
    page.fill("#f-units", "0")  # a recipe the bench refuses has no program: said plainly
    expect(page.locator("#code-error")).not_to_be_empty(timeout=10_000)
    expect(code).to_be_hidden()
    assert not problems, problems  # no script error, nothing refused by the Content-Security-Policy


def test_the_text_benchs_code_panel_follows_its_form(bench_url, browser):
    """The same panel on the Kiều bench: a change of cell, width or tying changes the program
    shown (and the live estimate), the .py download is that program, and a value out of range is
    said plainly."""
    from playwright.sync_api import expect

    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{bench_url}/lab/kieu?lang=en")
    code = page.locator("#code-view")
    expect(code).to_contain_text("layers.LSTM(128", timeout=10_000)  # the fast preset, rendered by the server
    page.select_option("#f-cell", "gru")
    page.fill("#f-units", "24")
    page.uncheck("#f-tied")
    expect(code).to_contain_text("layers.GRU(24", timeout=10_000)
    expect(code).not_to_contain_text("TiedEmbedding")
    # the live estimate (static/js/lab.js) follows the same form, without a Check submit
    expect(page.locator("#est-params")).not_to_have_text("", timeout=10_000)
    expect(page.locator("#est-time")).not_to_have_text("")
    with page.expect_download() as got:
        page.click("#code-py")
    assert got.value.suggested_filename == "lstmlab_kieu.py"
    assert Path(got.value.path()).read_text(encoding="utf-8").strip() == code.inner_text().strip()
    page.fill("#f-units", "0")
    expect(page.locator("#code-error")).to_contain_text("units", timeout=10_000)
    expect(code).to_be_hidden()
    assert not problems, problems


def test_the_code_panel_and_a_cards_downloads_pass_axe_on_a_phone(bench_url, browser):
    """axe-core (WCAG 2.1 AA) finds nothing in the bench's Code panel or a card's downloads, and
    the bench still fits a 390 px phone with the program's long lines (they scroll in their box)."""
    import json

    from helpers.browser import axe_violations
    from test_browser_a11y import AXE, missing

    if not AXE.is_file():
        missing(f"axe-core is not installed at {AXE} (npm install --prefix .cache/axe axe-core)")
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True, is_mobile=True)
    page = context.new_page()
    try:
        for path, region in (("/lab?lang=vi", "#code-panel"), ("/lab/kieu?lang=vi", "#code-panel"),
                             ("/tasks/mnist/card?lang=vi", "#take-away")):
            page.goto(bench_url + path)
            violations = axe_violations(page, AXE, region)
            assert not violations, json.dumps(violations, ensure_ascii=False, indent=1)
            assert page.evaluate("() => document.documentElement.scrollWidth") <= 390, path
        page.screenshot(path=str(SHOTS / "phone_card_downloads.png"), full_page=True)
    finally:
        context.close()
