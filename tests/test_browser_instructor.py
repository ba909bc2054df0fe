"""A real browser (Playwright driving Debian's chromium) on the instructor console, with CSRF
on: sign in, upload a zip of class folders, see the thumbnails, save the data set, publish a
finished run and open the new task's page; a student's browser cannot reach any of it.
Screenshots go to test-artifacts/screenshots/ (ignored).

Skips where chromium or the playwright package is absent, except in CI (CI=true).
"""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from werkzeug.serving import make_server

from helpers.browser import new_page
from helpers.images import make_zip, png_bytes
from helpers.instructor import INSTRUCTOR_PASSWORD, INSTRUCTOR_RUN_ID

SHOTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "screenshots"


@pytest.fixture
def served(instructor_app, add_instructor, finished_lab_run):
    """The instructor app (CSRF on, as in production) on a loopback port."""
    instructor_app.config["WTF_CSRF_ENABLED"] = True
    add_instructor(instructor_app)
    server = make_server("127.0.0.1", 0, instructor_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def test_sign_in_upload_see_thumbnails_and_publish(browser, served, tmp_path):
    from playwright.sync_api import expect

    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{served}/instructor/?lang=en")
    assert "/instructor/login" in page.url  # anonymous: sent to the sign-in page
    page.fill("#name", "teacher")
    page.fill("#password", INSTRUCTOR_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Instructor console")

    files = {f"fruit/apple/{i}.png": png_bytes((200, 30 + i, 30), size=(48, 40)) for i in range(10)}
    files.update({f"fruit/plum/{i}.png": png_bytes((90, 30, 120 + i), size=(48, 40)) for i in range(5)})
    files["fruit/plum/notes.txt"] = b"not an image"
    archive = tmp_path / "fruit.zip"
    archive.write_bytes(make_zip(files))
    page.goto(f"{served}/instructor/datasets")
    page.set_input_files("#file", str(archive))
    with page.expect_navigation():
        page.click("#upload-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Check the data set")
    expect(page.locator("img.thumb")).to_have_count(8 + 5)
    assert all(page.locator("img.thumb").nth(i).evaluate("img => img.naturalWidth > 0") for i in range(13))
    expect(page.locator("#imbalance")).to_be_visible()
    expect(page.locator("#skipped")).to_contain_text("notes.txt")
    page.screenshot(path=str(SHOTS / "instructor_preview.png"), full_page=True)
    page.fill("#slug", "fruit")
    page.fill("#title_en", "Fruit")
    page.fill("#title_vi", "Trái cây")
    with page.expect_navigation():
        page.click("#save-form button[type=submit]")
    expect(page.locator("#split-counts")).to_contain_text("apple")

    page.goto(f"{served}/instructor/")
    expect(page.locator(f"#run-{INSTRUCTOR_RUN_ID}")).to_be_visible()
    with page.expect_navigation():
        page.click(f"#run-{INSTRUCTOR_RUN_ID} a:has-text('Publish')")
    page.fill("#slug", "red_or_blue")
    page.fill("#title_en", "Red or blue")
    page.fill("#title_vi", "Đỏ hay xanh")
    page.fill("#classes", "blue|Xanh\nred|Đỏ")
    with page.expect_navigation():
        page.click("#publish-form button[type=submit]")
    expect(page.locator("#task-red_or_blue")).to_be_visible()
    page.screenshot(path=str(SHOTS / "instructor_published.png"), full_page=True)
    page.goto(f"{served}/instructor/")
    expect(page.locator("#csv-links")).to_contain_text("shapes")
    page.screenshot(path=str(SHOTS / "instructor_console.png"), full_page=True)
    page.goto(f"{served}/instructor/runs/{INSTRUCTOR_RUN_ID}/report")
    expect(page.locator("#confusion")).to_be_visible()
    page.screenshot(path=str(SHOTS / "instructor_report.png"), full_page=True)
    page.goto(f"{served}/tasks/red_or_blue?lang=vi")
    expect(page.locator("h1")).to_contain_text("Đỏ hay xanh")
    assert not problems, problems


def test_a_student_page_cannot_reach_the_console(browser, served):
    problems: list[str] = []
    page = new_page(browser, problems)
    page.goto(f"{served}/?lang=en")
    # the student pages link only the sign-in page (in the footer), never the console itself
    links = page.locator("a[href^='/instructor']")
    assert [links.nth(i).get_attribute("href") for i in range(links.count())] == ["/instructor/login"]
    assert page.locator("footer a[href='/instructor/login']").inner_text() == "Instructor sign-in"
    page.context.add_cookies([{"name": "lab_owner", "value": "a-student", "url": served}])
    for path in ("/instructor/", "/instructor/datasets", f"/instructor/runs/{INSTRUCTOR_RUN_ID}/report",
                 f"/instructor/runs/{INSTRUCTOR_RUN_ID}/publish", "/instructor/tasks"):
        response = page.goto(f"{served}{path}?lang=en")
        assert response.status == 403, path
        expect_text = page.locator("main").inner_text()
        assert "Only instructors" in expect_text
    for method_path in ("/instructor/queue/pause", "/instructor/datasets/upload", "/api/v1/queue/pause"):
        assert page.request.post(f"{served}{method_path}").status in (401, 403), method_path
    assert page.request.get(f"{served}/api/v1/datasets").status in (401, 403)
    assert page.request.delete(f"{served}/api/v1/tasks/mnist").status in (401, 403)
    assert page.request.get(f"{served}/api/v1/tasks").json()["tasks"][0]["slug"]  # the models stay open
    assert not problems, problems
