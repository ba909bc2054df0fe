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
from helpers.instructor import INSTRUCTOR_PASSWORD


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
    # Long dotted metric names and a commit id, as the shipped Kiều card has them.
    card = json.loads((models / "kieu" / "card.json").read_text(encoding="utf-8"))
    card["metrics"]["meter"] = {"real_poem_first_200": {"rhymes": {"luc6_bat6": {"exact": 0.51}}},
                                "measured": {"git_commit": "80b9b67365f92474e3c42460118b972a6cfd9844"}}
    (models / "kieu" / "card.json").write_text(json.dumps(card), encoding="utf-8")
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


# Rules that serve files (images, downloads, programs, static), never an HTML page.
FILE_ENDPOINTS = {"static", "pages.example_image", "pages.plot", "pages.favicon", "lab.run_plot", "lab.run_download",
                  "lab.task_download", "lab.run_program", "lab.task_program", "lab.form_program", "lab.text_form_program",
                  "lstm.comparison_plot"}
PHONES = (390, 360)
# The page's width when it is wider than the viewport, with the first element that sticks out
# (its tag, class and text), else null.
WIDEST = """() => { const W = window.innerWidth, S = document.documentElement.scrollWidth;
  if (S <= W) { return null; }
  const e = [...document.querySelectorAll("main *, header *, footer *")].find(e => e.getBoundingClientRect().right > W + 1);
  return S + " px; " + (e ? `<${e.tagName.toLowerCase()} class="${e.className}"> ${e.textContent.replace(/\\s+/g, " ").trim().slice(0, 50)}` : ""); }"""


@pytest.fixture(scope="module")
def page_urls(lab_app, finished_run, base_url):
    """Every GET page of the app with real ids filled in: tasks, cards, lab pages, a finished
    run, a submission, an instructor's saved data set and an unsaved preview, plus a 404."""
    import io
    import itertools

    from app.records import SCORED, Submission, db, utcnow
    from helpers.images import make_zip

    run_id = finished_run(nickname="Lan", settings={"epochs": 3, "batch_size": 128, "learning_rate": 0.001,
                                                     "subset": 0, "seed": 1})
    with lab_app.app_context():
        db.session.add(Submission(id="s00000000001", dataset="mnist", nickname="Lan", status=SCORED, params=300,
                                  metrics={"test_accuracy": 0.93}, finished_at=utcnow()))
        db.session.commit()
    added = lab_app.test_cli_runner().invoke(args=["instructor", "add", "teacher"],
                                             input=f"{INSTRUCTOR_PASSWORD}\n{INSTRUCTOR_PASSWORD}\n")
    assert added.exit_code == 0, added.output
    client = lab_app.test_client()
    assert client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302
    zipped = make_zip({f"shapes/{c}/{i}.png": png_bytes(rgb) for c, rgb in (("red", (220, 40, 40)),
                       ("blue", (40, 40, 220))) for i in range(10)})

    def upload() -> str:
        response = client.post("/instructor/datasets/upload", data={"file": (io.BytesIO(zipped), "shapes.zip")},
                               content_type="multipart/form-data")
        return response.headers["Location"]

    saved = client.post(upload(), data={"slug": "shapes", "title_en": "Shapes", "title_vi": "Hình", "image_size": "16",
                                        "colour": "grey"})
    assert saved.status_code == 303, saved.get_data(as_text=True)[:300]
    token = upload().rstrip("/").rsplit("/", 1)[1]
    fills = {"slug": ["mnist", "kieu", "nyt_headlines"], "dataset": ["mnist", "kieu"], "run_id": [run_id],
             "submission_id": ["s00000000001"], "token": [token]}
    urls = ["/no/such/page"]
    with lab_app.test_request_context():
        for rule in lab_app.url_map.iter_rules():
            if "GET" not in rule.methods or rule.endpoint in FILE_ENDPOINTS:
                continue
            args = sorted(rule.arguments)
            assert set(args) <= set(fills), f"{rule.rule}: no real id to fill {set(args) - set(fills)}"
            values = [dict(zip(args, combo)) for combo in itertools.product(*(fills[a] for a in args))]
            if rule.endpoint in ("instructor.dataset_detail", "instructor.dataset_csv"):  # the saved data set
                values = [{"slug": "shapes"}]
            urls += sorted({rule.build(v)[1] for v in values})
    # Pages only: JSON, CSV, event streams and downloads have no layout to overflow.
    return sorted(u for u in set(urls) if client.get(u).mimetype == "text/html")


def test_no_page_is_wider_than_a_phone(browser, base_url, page_urls):
    context = browser.new_context(viewport={"width": PHONES[0], "height": 800})
    page = context.new_page()
    page.goto(f"{base_url}/instructor/login?lang=en")
    page.fill("#name", "teacher")
    page.fill("#password", INSTRUCTOR_PASSWORD)
    with page.expect_navigation():
        page.click("#login-form button[type=submit]")
    too_wide, pages = [], 0
    for url in page_urls:
        for lang in ("vi", "en"):
            page.set_viewport_size({"width": PHONES[0], "height": 800})
            response = page.goto(f"{base_url}{url}{'&' if '?' in url else '?'}lang={lang}", wait_until="load")
            assert "text/html" in response.headers["content-type"], url
            pages += 1
            for width in PHONES:
                page.set_viewport_size({"width": width, "height": 800})
                wide = page.evaluate(WIDEST)
                if wide:
                    too_wide.append((url, lang, width, wide))
    context.close()
    assert pages > 40  # the walk reached the pages (not only JSON and files)
    assert not too_wide, "\n".join(f"{u} ({lang}) at {w} px: {sw}" for u, lang, w, sw in too_wide)
