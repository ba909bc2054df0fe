"""A real browser on a finished text run's try-it page: static/js/text.js streams the run's own
generation (POST /api/v1/runs/<id>/generate?stream=1) into the page, with the meter check of
each verse line; a greedy stream shows what the JSON answer gives.

Skips where chromium or the playwright package is absent, except in CI (CI=true).
"""

from __future__ import annotations

from helpers.browser import new_page, serve_on_loopback


def test_the_try_page_streams_the_run_verse_with_its_meter_check(lab_app, finished_text_run, browser):
    from playwright.sync_api import expect

    run_id = finished_text_run("kieu")
    params = {"seed": "Trăm năm trong cõi người ta", "length": 1, "strategy": "greedy", "random_seed": 5}
    expected = lab_app.test_client().post(f"/api/v1/runs/{run_id}/generate", json=params).get_json()
    problems: list[str] = []
    page = new_page(browser, problems)
    with serve_on_loopback(lab_app) as url:
        page.goto(f"{url}/lab/runs/{run_id}/try?lang=vi")
        page.fill("#seed", params["seed"])
        page.fill("#length", "1")
        page.select_option("#strategy", "greedy")
        page.click("#generate-button")
        expect(page.locator("#summary")).to_contain_text("giây", timeout=60_000)
        lines = page.locator(".verse li .line").all_inner_texts()
        checks = page.locator(".verse li .check").count()
    page.context.close()
    assert page.url.endswith(f"/lab/runs/{run_id}/try?lang=vi")  # streamed in place, no form post
    assert lines == expected["lines"] and checks == len(lines) >= 2
    assert not problems, problems
