"""The bench's Code panel (the program of the form's values, live with static/js/code.js) and the
downloads of shipped tasks and API runs."""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest


def panel_links(html: str) -> dict[str, str]:
    """The Code panel's two download links (id -> href)."""
    return {m[0]: unescape(m[1]) for m in re.findall(r'<a class="button secondary" id="(code-py|code-ipynb)" href="([^"]+)"', html)}


@pytest.mark.parametrize("lang, heading", [("vi", "Mã nguồn"), ("en", "Code")])
def test_the_bench_shows_the_program_of_its_form(lab_app, lang, heading):
    client = lab_app.test_client()
    html = client.get(f"/lab?preset=fast&lang={lang}").get_data(as_text=True)
    assert f'<h2 id="code-heading">{heading}</h2>' in html and "js/code.js" in html
    shown = unescape(re.search(r'<pre class="program" id="code-view"[^>]*><code>(.*?)</code></pre>', html, re.S)[1])
    links = panel_links(html)
    assert urlsplit(links["code-py"]).path == "/lab/program.py"
    assert urlsplit(links["code-ipynb"]).path == "/lab/program.ipynb"
    query = parse_qs(urlsplit(links["code-py"]).query)
    assert query["units"] == ["128"] and query["lang"] == [lang] and "nickname" not in query
    assert client.get(links["code-py"]).get_data(as_text=True) == shown  # the panel is the download
    assert client.get(links["code-ipynb"]).mimetype == "application/x-ipynb+json"


def test_a_checked_form_updates_the_panel_and_a_refused_one_says_why(lab_app):
    client = lab_app.test_client()
    form = {"dataset": "mnist", "reading": "rows", "cell": "gru", "units": "24", "layers": "1", "bidirectional": "1",
            "dropout": "0", "epochs": "2", "batch_size": "64", "learning_rate": "0.002", "subset": "1000",
            "seed": "9", "action": "check"}
    html = client.post("/lab?lang=en", data=form).get_data(as_text=True)
    assert "Bidirectional(layers.GRU(24" in unescape(html) and "SEED = 9" in html
    assert parse_qs(urlsplit(panel_links(html)["code-py"]).query)["bidirectional"] == ["on"]
    refused = client.post("/lab?lang=vi", data={**form, "dataset": "cifar10"}).get_data(as_text=True)
    assert 'id="code-view"' in refused and re.search(r'id="code-view"[^>]*hidden', refused)
    assert "Chưa có chương trình độc lập cho bộ dữ liệu này" in refused


def test_without_javascript_the_buttons_send_the_form_as_typed(lab_app):
    html = lab_app.test_client().get("/lab?lang=en").get_data(as_text=True)
    noscript = re.search(r"<noscript><p class=\"buttons\">(.*?)</noscript>", html, re.S)[1]
    assert noscript.count('form="lab-form" formmethod="get"') == 2
    assert 'formaction="/lab/program.py"' in noscript and 'formaction="/lab/program.ipynb"' in noscript


def test_a_refused_program_answers_json_to_the_panel(lab_app):
    response = lab_app.test_client().get("/lab/program.py?dataset=mnist&units=0&lang=en",
                                         headers={"Accept": "text/x-python, application/json;q=0.9"})
    assert response.status_code == 400 and response.is_json
    assert response.json["error_vi"] and response.json["error_en"]
