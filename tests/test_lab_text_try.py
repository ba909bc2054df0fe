"""A finished text run on the bench: its try-it page and generate route over the run's own model
(the shipped text pages' strategies, streaming and meter check), and the text leaderboard's CSV."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest
from markupsafe import escape

from app.decoding import STRATEGIES
from app.tasks import BUILTIN_TASKS
from helpers.lab import add_finished_run


@pytest.fixture
def client(lab_app):
    return lab_app.test_client()


# ----------------------------------------------------------------------------- leaderboard CSV
def test_the_text_leaderboard_downloads_as_csv_with_its_perplexities(client, finished_text_run):
    better = finished_text_run("nyt_headlines", nickname="=HYPERLINK(1)",
                               metrics={"test_perplexity": 140.25, "ngram": {"test_perplexity": 153.1}})
    worse = finished_text_run("nyt_headlines", nickname="Bảo", recipe={"cell": "gru", "units": 16})
    page = client.get("/lab/nyt_headlines?lang=en").get_data(as_text=True)
    assert 'id="csv-link" href="/lab/nyt_headlines.csv"' in page
    response = client.get("/lab/nyt_headlines.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="lstmlab-nyt_headlines-runs.csv"' in response.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    ids = [r["id"] for r in rows]
    assert ids.index(better) < ids.index(worse)  # lowest test perplexity first
    a, b = (next(r for r in rows if r["id"] == i) for i in (better, worse))
    assert a["nickname"].startswith("'=")  # no formula for a spreadsheet to run
    assert (a["test_perplexity"], a["ngram_test_perplexity"]) == ("140.25", "153.1")
    assert a["validation_perplexity"] == "" and a["perplexity_below_ngram"] == ""  # not in its metrics
    assert (b["test_perplexity"], b["validation_perplexity"], b["perplexity_below_ngram"]) == ("210.5", "220.25", "0.1054")
    assert (b["cell"], b["units"], b["sequence_length"], b["min_count"]) == ("gru", "16", "64", "2")  # defaults fill
    assert (b["test_unk_rate"], b["test_top1_accuracy"], b["epochs_run"], b["tied"]) == ("0.05", "0.125", "2", "False")
    assert all(r["dataset"] == "nyt_headlines" for r in rows)


def test_the_text_history_downloads_as_csv_with_its_perplexities(client, finished_text_run):
    run_id = finished_text_run("kieu", nickname="=cmd")
    page = client.get("/lab/kieu?lang=vi").get_data(as_text=True)
    assert 'id="history-csv-link" href="/lab/kieu/history.csv"' in page
    response = client.get("/lab/kieu/history.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert 'filename="lstmlab-kieu-history.csv"' in response.headers["Content-Disposition"]
    rows = [r for r in csv.DictReader(io.StringIO(response.get_data(as_text=True))) if r["id"] == run_id]
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[0]["nickname"].startswith("'=")
    assert (float(rows[1]["loss"]), float(rows[1]["perplexity"]), float(rows[1]["val_loss"])) == (2.5, 200.0, 2.75)
    assert "samples" not in rows[0]


# ----------------------------------------------------------------------------- try-it page
def stream_events(response) -> list[dict]:
    """The `data:` events of a server-sent-events answer, each without its timing."""
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    events = [json.loads(line[6:]) for line in response.get_data(as_text=True).splitlines() if line.startswith("data: ")]
    for event in events:
        event.pop("seconds", None)
    return events


def served_model(app, run_id: str):
    """The run's folder loaded as the model store loads a served text task's (app.textmodel)."""
    from app.lab import runs
    from app.records import Run, db
    from app.textmodel import load_text_model

    with app.app_context():
        folder = runs.run_folder(db.session.get(Run, run_id))
    return load_text_model(folder, BUILTIN_TASKS[folder_slug(folder)])


def folder_slug(folder) -> str:
    return json.loads((folder / "card.json").read_text(encoding="utf-8"))["slug"]


def test_the_try_page_is_the_text_task_page_over_the_run(client, finished_text_run):
    run_id = finished_text_run("kieu")
    page = client.get(f"/lab/runs/{run_id}/try?lang=en").get_data(as_text=True)
    assert f'action="/lab/runs/{run_id}/try#result"' in page
    assert f'data-stream-url="/api/v1/runs/{run_id}/generate?stream=1"' in page
    assert all(f'<option value="{s}"' in page for s in STRATEGIES)
    assert 'id="meter"' in page and 'id="temperature"' in page and 'id="beam_width"' in page and 'id="trace"' in page
    assert f'id="run-note">Lab bench run {run_id}<' in page and f'href="/lab/runs/{run_id}/card"' in page
    assert 'class="seed-example" name="example"' in page and "js/text.js" in page  # one-click openings, posted here
    vi = client.get(f"/lab/runs/{run_id}/try?lang=vi").get_data(as_text=True)
    assert f"Lần chạy {run_id} trên bàn thí nghiệm" in vi
    headlines = client.get(f"/lab/runs/{finished_text_run('nyt_headlines')}/try?lang=en").get_data(as_text=True)
    assert 'id="meter"' not in headlines and 'name="length"' in headlines
    run_page = client.get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert f'id="try-link" href="/lab/runs/{run_id}/try"' in run_page and 'id="try-note"' not in run_page
    links = client.get(f"/api/v1/runs/{run_id}").get_json()["links"]
    assert links["generate"].endswith(f"/api/v1/runs/{run_id}/generate") and "predict" not in links
    card = client.get(f"/lab/runs/{run_id}/card?lang=en")
    assert card.status_code == 200 and f'href="/lab/runs/{run_id}/try"' in card.get_data(as_text=True)


@pytest.mark.parametrize("dataset, params", [
    ("kieu", {"seed": "Trăm năm trong cõi người ta", "length": 2, "strategy": "greedy", "random_seed": 1}),
    ("kieu", {"seed": "Cỏ non xanh tận chân trời", "length": 1, "strategy": "top_p", "random_seed": 7, "meter": False}),
    ("nyt_headlines", {"seed": "New York", "length": 8, "strategy": "greedy", "random_seed": 2}),
    ("nyt_headlines", {"seed": "How to", "length": 6, "strategy": "beam", "beam_width": 3, "random_seed": 3}),
    ("nyt_headlines", {"seed": "A New", "length": 6, "strategy": "top_k", "top_k": 5, "temperature": 1.3, "random_seed": 11}),
])
def test_the_streamed_generation_is_the_shipped_decoding_of_the_run_model(lab_app, client, finished_text_run,
                                                                          dataset, params):
    """Event for event, the run's stream equals `generate_stream` over its folder loaded as a
    served task (and the shipped task's own stream over the same model). A fixed random seed
    even for greedy and beam: the summary reports the seed, drawn when none is given."""
    from app.decoding import generate_stream, validate_request

    run_id = finished_text_run(dataset)
    got = stream_events(client.post(f"/api/v1/runs/{run_id}/generate?stream=1", json=params))
    model = served_model(lab_app, run_id)
    with lab_app.app_context():
        expected = list(generate_stream(model, validate_request(model.spec, params)))
    for event in expected:
        event.pop("seconds", None)
    assert got == expected and got[-1]["done"] and got[-1]["tokens"] > 0
    assert got == stream_events(client.post(f"/api/v1/tasks/{dataset}/generate?stream=1", json=params))
    whole = client.post(f"/api/v1/runs/{run_id}/generate", json=params).get_json()
    assert whole["run"] == run_id and whole["text"] == got[-1]["text"] and whole["lines"] == got[-1]["lines"]
    if dataset == "kieu":
        assert [e["line"] for e in got if "line" in e] == got[-1]["lines"]
        assert all(set(e["check"]) >= {"syllables", "tone_ok", "ok"} for e in got if "line" in e)


def test_the_try_page_form_answers_without_javascript_with_the_meter_check(lab_app, client, finished_text_run):
    from app.decoding import generate, validate_request

    run_id = finished_text_run("kieu")
    form = {"seed": "Trăm năm trong cõi người ta", "length": "1", "strategy": "greedy", "meter": "1"}
    page = client.post(f"/lab/runs/{run_id}/try?lang=en", data=form).get_data(as_text=True)
    model = served_model(lab_app, run_id)
    with lab_app.app_context():
        result = generate(model, validate_request(model.spec, {**form, "meter": True}))
    assert 'class="verse"' in page and page.count('class="check') >= len(result["lines"]) >= 2
    for line in result["lines"]:
        assert str(escape(line)) in page
    clicked = client.post(f"/lab/runs/{run_id}/try?lang=en", data={**form, "seed": "", "example": form["seed"]})
    assert clicked.status_code == 200 and all(str(escape(x)) in clicked.get_data(as_text=True) for x in result["lines"])
    traced = client.post(f"/lab/runs/{run_id}/try?lang=en", data={**form, "trace": "1"}).get_data(as_text=True)
    assert 'id="trace' in traced  # the gates panel, over the run's model


# ----------------------------------------------------------------------------- GRU and SimpleRNN runs
CELL_PARAMS = [
    ("kieu", {"seed": "Trăm năm trong cõi người ta", "length": 2, "strategy": "greedy", "random_seed": 1}),
    ("kieu", {"seed": "Trăm năm", "length": 1, "strategy": "beam", "beam_width": 3, "random_seed": 2}),
    ("kieu", {"seed": "Cỏ non xanh tận chân trời", "length": 2, "strategy": "top_p", "top_p": 0.8, "random_seed": 3}),
    ("kieu", {"seed": "Cỏ non", "length": 1, "strategy": "top_k", "top_k": 5, "random_seed": 4, "meter": False}),
    ("kieu", {"seed": "Trăm năm", "length": 2, "strategy": "temperature", "temperature": 3, "random_seed": 5}),
    ("nyt_headlines", {"seed": "New York", "length": 6, "strategy": "greedy", "random_seed": 6}),
    ("nyt_headlines", {"seed": "How to", "length": 5, "strategy": "beam", "beam_width": 4, "random_seed": 7}),
    ("nyt_headlines", {"seed": "A New", "length": 6, "strategy": "top_p", "random_seed": 8}),
    ("nyt_headlines", {"seed": "A New", "length": 6, "strategy": "top_k", "top_k": 5, "temperature": 1.3,
                       "random_seed": 9}),
    ("nyt_headlines", {"seed": "The", "length": 4, "strategy": "temperature", "temperature": 0.5, "random_seed": 10}),
]


@pytest.fixture
def cell_run(finished_text_run, tiny_cell_model):
    """`cell_run(cell, dataset)` -> id of a finished run whose model has two `cell` layers."""
    def make(cell: str, dataset: str = "kieu", layers: int = 2):
        return finished_text_run(dataset, model_folder=tiny_cell_model(cell, dataset, layers),
                                 recipe={"embedding": 8, "cell": cell, "units": 16, "layers": layers, "dropout": 0.0,
                                         "tied": False, "sequence_length": 64, "min_count": 1})

    return make


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
@pytest.mark.parametrize("dataset, params", CELL_PARAMS)
def test_gru_and_simple_rnn_runs_generate_with_every_strategy(lab_app, client, cell_run, cell, dataset, params):
    """The stream, the whole answer and the page's form of a GRU or SimpleRNN run are the shipped
    decoding over its model (the served NumPy step of that cell); with the meter on, every verse line
    keeps lục bát."""
    from app.decoding import generate_stream, validate_request

    run_id = cell_run(cell, dataset)
    model = served_model(lab_app, run_id)
    assert model.cell == cell and model.units == [16, 16]
    got = stream_events(client.post(f"/api/v1/runs/{run_id}/generate?stream=1", json=params))
    with lab_app.app_context():
        expected = list(generate_stream(model, validate_request(model.spec, params)))
    for event in expected:
        event.pop("seconds", None)
    assert got == expected and got[-1]["done"] and got[-1]["tokens"] > 0
    whole = client.post(f"/api/v1/runs/{run_id}/generate", json=params)
    assert whole.status_code == 200 and whole.get_json()["text"] == got[-1]["text"]
    if dataset == "kieu" and params.get("meter", True):
        assert got[-1]["checks"] and all(c["ok"] for c in got[-1]["checks"]), got[-1]["text"]
    form = {k: str(v) for k, v in params.items() if k != "meter"} | ({"meter": "1"} if params.get("meter", True) else {})
    page = client.post(f"/lab/runs/{run_id}/try?lang=en", data=form)
    assert page.status_code == 200 and all(str(escape(x)) in page.get_data(as_text=True) for x in got[-1]["lines"])


def trace_maps(page: str) -> list[str]:
    """The quantities the page's trace panel draws, in order (the labels beside the text heatmaps)."""
    panel = page.split('id="trace-heading"', 1)[1]
    return re.findall(r'dominant-baseline="middle">(\w+)</text>', panel.split("</details>", 1)[0])


@pytest.mark.parametrize("cell, heading, maps, words", [
    ("gru", ("Inside the GRU", "Bên trong GRU"), ["z", "r", "g", "h"], ("update gate z", "Cổng cập nhật z")),
    ("simple_rnn", ("Inside the SimpleRNN", "Bên trong SimpleRNN"), ["h"], ("has no gates", "không có cổng")),
])
def test_the_trace_shows_a_gru_s_gates_and_a_simple_rnn_s_hidden_state(client, cell_run, cell, heading, maps, words):
    """A GRU's trace shows its update and reset gates, its candidate and h; a SimpleRNN's only h,
    with a note saying it has no gates; both in both languages, on the page and in the API."""
    run_id = cell_run(cell)
    form = {"seed": "Trăm năm", "length": "1", "strategy": "greedy", "meter": "1", "trace": "1"}
    for lang, k in (("en", 0), ("vi", 1)):
        page = client.post(f"/lab/runs/{run_id}/try?lang={lang}", data=form).get_data(as_text=True)
        assert f'id="trace-heading">{heading[k]}<' in page and words[k] in page
        assert page.count('class="trace-map text"') == 2 and trace_maps(page) == maps  # one map per layer
    form_page = client.get(f"/lab/runs/{run_id}/try?lang=en").get_data(as_text=True)
    assert 'id="trace"' in form_page and f"Show inside the {heading[0].split()[-1]}" in form_page
    body = client.post(f"/api/v1/runs/{run_id}/generate", json={**form, "trace": True}).get_json()
    trace = body["trace"]
    assert trace["gates"] == maps and [set(layer["values"]) for layer in trace["layers"]] == [set(maps)] * 2
    assert trace["layers"][0]["steps"] == len(trace["tokens"]) == len(trace["layers"][0]["values"]["h"])
    if cell == "gru":
        assert all(0 < v < 1 for row in trace["layers"][1]["values"]["z"] for v in row)


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_a_gru_or_simple_rnn_run_page_links_to_its_try_page_and_card(client, cell_run, cell):
    run_id = cell_run(cell)
    run_page = client.get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert f'id="try-link" href="/lab/runs/{run_id}/try"' in run_page and f'href="/lab/runs/{run_id}/card"' in run_page
    assert client.get(f"/lab/runs/{run_id}/card?lang=vi").status_code == 200
    assert client.get(f"/lab/runs/{run_id}/try?lang=vi").status_code == 200


# ----------------------------------------------------------------------------- refusals
BAD_PARAMS = [
    ({"seed": "How to", "strategy": "sideways"}, 400, "strategy"),
    ({"seed": "How to", "strategy": "temperature", "temperature": "0"}, 400, "temperature"),
    ({"seed": "How to", "strategy": "temperature", "temperature": "hot"}, 400, "temperature"),
    ({"seed": "How to", "length": "999"}, 400, "length"),
    ({"seed": "   "}, 400, "seed"),
]


@pytest.mark.parametrize("params, status, word", BAD_PARAMS)
def test_bad_decoding_parameters_are_bilingual_4xx_on_the_api_and_the_page(client, finished_text_run, params, status,
                                                                           word):
    run_id = finished_text_run("nyt_headlines")
    resp = client.post(f"/api/v1/runs/{run_id}/generate?stream=1", json=params)
    body = resp.get_json()
    assert resp.status_code == status and word in body["error_en"] and body["error_vi"] != body["error_en"]
    page = client.post(f"/lab/runs/{run_id}/try?lang=vi", data=params)
    text = page.get_data(as_text=True)
    assert page.status_code == status and str(escape(body["error_vi"])) in text
    assert f'>{params["seed"]}</textarea>' in text  # the form keeps what was typed


@pytest.mark.parametrize("kind, status, words", [
    ("unknown", 404, ("There is no run nosuchrun", "nosuchrun")),
    ("running", 409, ("has not finished", "chưa xong")),
    ("image", 400, ("image run", "lần chạy ảnh")),
])
def test_runs_without_a_text_model_to_try_are_bilingual_4xx(client, finished_text_run, finished_run, kind, status,
                                                            words):
    from app.records import RUNNING

    run_id = {"unknown": lambda: "nosuchrun",
              "running": lambda: finished_text_run("kieu", status=RUNNING, finished_at=None, metrics=None),
              "image": lambda: finished_run()}[kind]()
    body = client.post(f"/api/v1/runs/{run_id}/generate", json={"seed": "Trăm năm"}).get_json()
    assert body["status"] == status and words[0] in body["error_en"] and words[1] in body["error_vi"]
    for method in ("get", "post") if kind != "image" else ():  # an image run's try page is the image task's
        page = getattr(client, method)(f"/lab/runs/{run_id}/try?lang=vi", data={"seed": "Trăm năm"})
        assert page.status_code == status and words[1] in page.get_data(as_text=True)


def test_a_text_run_does_not_classify_pictures(client, finished_text_run, png_digit):
    run_id = finished_text_run("kieu")
    resp = client.post(f"/api/v1/runs/{run_id}/predict", data={"file": (io.BytesIO(png_digit()), "d.png")})
    body = resp.get_json()
    assert resp.status_code == 400 and "text run" in body["error_en"] and "lần chạy văn bản" in body["error_vi"]


# ----------------------------------------------------------------------------- rate limits
def test_trying_a_run_counts_against_the_generate_limits(make_app, tiny_models_dir, tmp_path):
    """The run's generate route and its try page's form share the shipped text tasks' budget
    (RATELIMIT_GENERATE): the third request in the hour is a bilingual 429; the page's GET is free."""
    from app.records import FINISHED

    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path), LSTMLAB_QUEUE_URL="", RATELIMIT_ENABLED=True,
                   RATELIMIT_GENERATE="2 per hour", LSTMLAB_DATABASE_URL=f"sqlite:///{tmp_path / 'records.sqlite3'}")
    run_id = add_finished_run(app, {"dataset": "nyt_headlines", "status": FINISHED, "recipe": {"cell": "lstm"},
                                    "settings": {}, "owner": "someone-else", "client": "127.0.0.1"},
                              tiny_models_dir / "nyt_headlines")
    client = app.test_client()
    params = {"seed": "How to", "length": 3, "strategy": "greedy"}
    assert client.post(f"/api/v1/runs/{run_id}/generate", json=params).status_code == 200
    assert client.post(f"/lab/runs/{run_id}/try", data=params).status_code == 200
    assert client.get(f"/lab/runs/{run_id}/try").status_code == 200
    refused = client.post(f"/api/v1/runs/{run_id}/generate", json=params)
    body = refused.get_json()
    assert refused.status_code == 429 and body["error_vi"] != body["error_en"]
    assert client.post(f"/lab/runs/{run_id}/try", data=params).status_code == 429
