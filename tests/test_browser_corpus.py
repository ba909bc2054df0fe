"""A real browser (Playwright driving Debian's chromium, CSRF on) on the instructor's text-corpus
pages, in Vietnamese on a 390 px phone: a binary file and a one-line file are refused on the page
with the Vietnamese message; a real corpus is previewed, saved, shown and trained on the text
bench. axe-core (WCAG 2.1 A/AA) finds nothing on any of those pages, and none is wider than the phone.

Skips where chromium, playwright or axe-core is absent, except in CI (CI=true).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from helpers.browser import axe_violations, serve_on_loopback
from helpers.instructor import INSTRUCTOR_PASSWORD
from test_browser_a11y import AXE, missing

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"
SYLLABLES = ("trăm năm trong cõi người ta chữ tài chữ mệnh khéo là ghét nhau trải qua một cuộc bể dâu "
             "những điều trông thấy mà đau đớn lòng").split()


def corpus_text(lines: int = 60, seed: int = 0) -> str:
    """`lines` distinct verses of 6 or 8 syllables drawn from a Kiều couplet's words."""
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < lines:
        line = " ".join(rng.choice(SYLLABLES) for _ in range(6 if len(out) % 2 == 0 else 8))
        if line not in out:
            out.append(line)
    return "\n".join(out) + "\n"


@pytest.fixture
def served(instructor_app, add_instructor):
    """The instructor app (CSRF on, as in production) on a loopback port."""
    instructor_app.config["WTF_CSRF_ENABLED"] = True
    add_instructor(instructor_app)
    with serve_on_loopback(instructor_app) as url:
        yield url


def check_page(page, name: str) -> None:
    """No axe violation, no horizontal overflow at 390 px (naming what overflows, outside the
    scrolling boxes), and a screenshot for a person to look at."""
    page.screenshot(path=str(SHOTS / f"phone_corpus_{name}.png"), full_page=True)
    violations = axe_violations(page, AXE)
    assert not violations, f"{name}: " + json.dumps(violations, ensure_ascii=False, indent=1)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    wide = page.evaluate("""() => [...document.querySelectorAll('body *')]
        .filter(e => e.getBoundingClientRect().right > 391 && !e.closest('.scroll'))
        .slice(0, 5).map(e => e.tagName + (e.id ? '#' + e.id : ''))""")
    assert width <= 390, f"{name}: the page is {width} px wide on a 390 px phone: {wide}"


def test_corpus_pages_refuse_bad_files_preview_save_and_pass_axe_on_a_phone(browser, served, tmp_path):
    from playwright.sync_api import expect

    if not AXE.is_file():
        missing(f"axe-core is not installed at {AXE} (npm install --prefix .cache/axe axe-core)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 390, "height": 844}, bypass_csp=True, is_mobile=True,
                                  has_touch=True, locale="vi-VN")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"script error: {exc}"))
    page.on("response", lambda r: problems.append(f"{r.status} {r.url}") if r.status >= 500 else None)
    try:
        page.goto(f"{served}/instructor/login?lang=vi")
        page.fill("#name", "teacher")
        page.fill("#password", INSTRUCTOR_PASSWORD)
        with page.expect_navigation():
            page.click("#login-form button[type=submit]")
        page.goto(f"{served}/instructor/datasets?lang=vi")
        check_page(page, "datasets")
        listing = page.url

        refused = {"binary.txt": (b"abc\x00def\n" * 20, "NUL"), "one.txt": ("một dòng thơ thôi\n".encode(), "dòng")}
        for name, (data, word) in refused.items():
            (tmp_path / name).write_bytes(data)
            page.goto(listing)
            page.set_input_files("#corpus", str(tmp_path / name))
            with page.expect_navigation() as nav:
                page.click("#corpus-form button[type=submit]")
            assert nav.value.status == 400, name
            expect(page.locator("#corpus-form-error")).to_contain_text(word)  # beside its form, on the same page
            expect(page.locator("#corpus")).to_be_visible()
            assert "Traceback" not in page.content()
            check_page(page, f"refused_{name.split('.')[0]}")

        (tmp_path / "tho.txt").write_text(corpus_text(), encoding="utf-8")
        page.goto(f"{served}/instructor/datasets?lang=vi")
        page.set_input_files("#corpus", str(tmp_path / "tho.txt"))
        with page.expect_navigation():
            page.click("#corpus-form button[type=submit]")
        expect(page.locator("#corpus-counts")).to_be_visible()
        expect(page.locator("#corpus-sample li")).not_to_have_count(0)
        expect(page.locator("#corpus-vocabulary")).to_contain_text("từ vựng")
        check_page(page, "preview")

        page.fill("#slug", "tho_lop")
        page.fill("#title_en", "Class verse")
        page.fill("#title_vi", "Thơ của lớp")
        with page.expect_navigation():
            page.click("form:has(#slug) button[type=submit]")
        assert page.url.endswith("/instructor/datasets/tho_lop"), page.url
        expect(page.locator("#corpus-counts")).to_be_visible()
        check_page(page, "saved")

        page.goto(f"{served}/lab/tho_lop?lang=vi")
        expect(page.locator("h1")).to_contain_text("Thơ của lớp")
        check_page(page, "bench")
        assert not problems, problems
    finally:
        context.close()
