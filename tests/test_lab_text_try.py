"""A finished text run on the bench: its try-it page and generate route over the run's own model
(the shipped text pages' strategies, streaming and meter check), and the text leaderboard's CSV."""

from __future__ import annotations

import csv
import io

import pytest


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
