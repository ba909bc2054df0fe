"""Seeds on the text task pages: an empty seed on the verse task starts from the poem's opening
line (the form, the API, the stream), and headlines still ask for words."""

from __future__ import annotations

import re

import pytest

from app.config import default_data_dir
from app.decoding import validate_request
from app.errors import InvalidInput
from app.tasks import KIEU, NYT_HEADLINES
from app.text import clean_words, normalize

EMPTY = [{}, {"seed": ""}, {"seed": " \t\n "}, {"seed": None}]


def test_the_default_seed_is_the_corpus_opening_line():
    corpus = default_data_dir() / KIEU.data_path
    if not corpus.is_file():
        pytest.skip(f"{corpus} is absent")
    first = next(line for line in corpus.read_text(encoding="utf-8").splitlines() if line.strip())
    assert clean_words(normalize(first)) == clean_words(KIEU.default_seed)
    assert KIEU.default_seed == KIEU.openings[0] and not NYT_HEADLINES.default_seed


@pytest.mark.parametrize("params", EMPTY)
def test_an_empty_verse_seed_starts_from_the_opening(params):
    assert validate_request(KIEU, params | {"length": "1"}).seed == KIEU.default_seed


@pytest.mark.parametrize("params", EMPTY)
def test_an_empty_headline_seed_is_still_refused(params):
    with pytest.raises(InvalidInput) as info:
        validate_request(NYT_HEADLINES, params)
    assert info.value.status == 400 and info.value.vi and info.value.en


def test_the_api_generates_from_the_opening_when_the_seed_is_empty(text_client):
    given = text_client.post("/api/v1/tasks/kieu/generate", json={"seed": KIEU.default_seed, "length": 1,
                                                                  "random_seed": 4}).get_json()
    for body in ({"length": 1, "random_seed": 4}, {"seed": "", "length": 1, "random_seed": 4}):
        resp = text_client.post("/api/v1/tasks/kieu/generate", json=body)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        answer = resp.get_json()
        assert answer["lines"][0] == KIEU.default_seed and answer["request"]["seed"] == KIEU.default_seed
        assert answer["text"] == given["text"]
    stream = text_client.post("/api/v1/tasks/kieu/generate?stream=1", json={"length": 1, "random_seed": 4})
    assert stream.status_code == 200 and '"done": true' in stream.get_data(as_text=True)
    refused = text_client.post("/api/v1/tasks/nyt_headlines/generate", json={"seed": "", "length": 1})
    assert refused.status_code == 400 and refused.get_json()["error_vi"]


@pytest.mark.parametrize(("lang", "hint"), [("en", "Leave it empty to start from the poem"),
                                            ("vi", "Để trống thì mô hình viết tiếp từ câu mở đầu")])
def test_the_page_form_allows_an_empty_verse_seed_and_says_so(text_client, lang, hint):
    page = text_client.get(f"/tasks/kieu?lang={lang}").get_data(as_text=True)
    box = re.search(r"<textarea id=\"seed\"[^>]*>", page).group(0)
    assert "required" not in box and hint in page and KIEU.default_seed in page
    headline_box = re.search(r"<textarea id=\"seed\"[^>]*>",
                             text_client.get(f"/tasks/nyt_headlines?lang={lang}").get_data(as_text=True)).group(0)
    assert "required" in headline_box
    resp = text_client.post(f"/tasks/kieu?lang={lang}", data={"seed": "", "length": "1", "random_seed": "4"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and '<ol class="verse">' in body
    assert re.search(r'<span class="line">' + re.escape(KIEU.default_seed) + "</span>", body)


@pytest.mark.parametrize("spec", [KIEU, NYT_HEADLINES], ids=lambda s: s.slug)
def test_an_example_opening_is_a_button_that_generates_without_javascript(text_client, spec):
    page = text_client.get(f"/tasks/{spec.slug}").get_data(as_text=True)
    form = page[page.index('<form id="generate-form"'):page.index("</form>")]
    buttons = re.findall(r'<button type="submit" class="seed-example" name="example" value="([^"]*)" formnovalidate>',
                         form)
    assert buttons == list(spec.openings)
    example = spec.openings[1]
    resp = text_client.post(f"/tasks/{spec.slug}", data={"seed": "", "example": example, "length": "1",
                                                         "random_seed": "2"})
    body = resp.get_data(as_text=True)
    assert resp.status_code == 200 and f">{example}</textarea>" in body
    shown = re.search(r'<span class="line">([^<]*)</span>' if spec is KIEU else r'<p class="headline">([^<]*)</p>', body)
    assert clean_words(shown.group(1))[:len(clean_words(example))] == clean_words(example)
