"""A real browser on the lab bench with real processes (gunicorn and a Huey consumer, ENGINE's
LabStack): start a run from /lab, see training points every few batches and an epoch's validation
point drawn live from the server-sent events (titled axes, gridlines), see
the run finish, open its try-it page and classify a digit with the run's own model.

Skips where chromium, the playwright package or the MNIST data is absent, except in CI (CI=true).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.browser import new_page

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"

pytestmark = pytest.mark.slow


def test_train_watch_and_try_a_run(lab_stack, browser, mnist_png, tmp_path):
    from playwright.sync_api import expect

    problems: list[str] = []
    page = new_page(browser, problems)
    lab_stack.web()
    lab_stack.consumer()
    page.goto(f"{lab_stack.web_url}/lab?lang=en")
    for field, value in (("units", "8"), ("layers", "1"), ("epochs", "3"), ("batch_size", "64"),
                         ("subset", "3000"), ("nickname", "browser test")):
        page.fill(f"#f-{field}", value)
    # the live estimate follows the form (JavaScript), without a Check submit
    expect(page.locator("#est-params")).not_to_have_text("", timeout=10_000)
    with page.expect_navigation():
        page.click("#submit-button")
    assert "/lab/runs/" in page.url
    run_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    # training points arrive every few batches by server-sent events and are drawn mid-run
    # (data-points is set only by lab.js; the page rendered after the run ends has no such attribute)
    page.wait_for_function("() => Number(document.getElementById('chart-loss').dataset.points || 0) > 2",
                           timeout=240_000)
    assert page.locator("#chart-loss .x-title").text_content() == "Epoch"
    assert page.locator("#chart-loss .y-title").text_content() == "Loss"
    assert page.locator("#chart-loss .grid line").count() >= 3
    # an epoch's validation point arrives too, while the run still trains (data-epochs: lab.js)
    expect(page.locator("#run[data-epochs]")).to_have_count(1, timeout=240_000)
    assert page.locator("#chart-accuracy polyline").count() == 2
    assert page.locator("#chart-accuracy circle.point.s1").count() >= 1  # validation: a dot per epoch
    assert page.locator("#history-table tbody tr").count() >= 1
    page.screenshot(path=str(SHOTS / "lab_run_live.png"), full_page=True)
    # the page shows the results once the run has finished (it reloads itself)
    expect(page.locator("#test-accuracy")).to_be_visible(timeout=240_000)
    assert lab_stack.run(run_id)["status"] == "finished"
    page.screenshot(path=str(SHOTS / "lab_run_finished.png"), full_page=True)
    with page.expect_navigation():
        page.click("#try-link")
    assert page.url.endswith(f"/lab/runs/{run_id}/try")
    digit = tmp_path / "digit.png"
    digit.write_bytes(mnist_png(0)[0])
    with page.expect_navigation():
        page.set_input_files("#file", str(digit))  # choosing a file submits the form
    expect(page.locator("#answer")).to_be_visible()
    assert page.locator(".bars li").count() == 5
    page.screenshot(path=str(SHOTS / "lab_try.png"), full_page=True)
    assert not problems, problems  # no script error, nothing refused by the Content-Security-Policy
