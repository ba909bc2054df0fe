"""Text corpora brought by an instructor: every bad file (empty, binary, not UTF-8, one line, over
the size limit) is refused with a bilingual 4xx and leaves nothing behind; the preview's lines per
split, vocabulary and unknown-word rate are those of the split training reads; a saved corpus is
on the text bench, and a run on it trains through the queue's job with the n-gram on its split."""

from __future__ import annotations

import csv
import io
import json
import os
import unicodedata

import pytest

from app.i18n import translate_to
from app.splits import SPLIT_SEED, split_indices
from app.text import DEFAULT_MIN_COUNT, UNK_ID, Vocabulary, line_sequence
from helpers.instructor import leftovers


def corpus_text(n: int = 40) -> str:
    """n distinct lines of Vietnamese verse-like text, written decomposed (NFD), one repeat."""
    words = ["trăm", "năm", "trong", "cõi", "người", "ta", "chữ", "tài", "mệnh", "khéo", "là", "ghét", "nhau"]
    lines = [" ".join(words[(i * k) % len(words)] for k in range(1, 7)) + f" {i}" for i in range(n)]
    return unicodedata.normalize("NFD", "\n".join(lines + [lines[0], "", "  ", "!!!"]) + "\n")


def upload(client, data: bytes, name: str = "verse.txt", lang: str = "en"):
    """POST a text file to the console's corpus form."""
    return client.post(f"/instructor/datasets/corpus?lang={lang}", data={"file": (io.BytesIO(data), name)},
                       content_type="multipart/form-data")


def saved(client, data: bytes | None = None, slug: str = "tho"):
    """Upload a corpus and save it as `slug`: the save's response."""
    resp = upload(client, corpus_text().encode() if data is None else data)
    assert resp.status_code == 303, resp.get_data(as_text=True)[:500]
    return client.post(resp.headers["Location"], data={"slug": slug, "title_en": "Verse", "title_vi": "Thơ"})


TOO_FEW = ("The corpus has %(count)s distinct line(s) with words; at least %(min)s are needed (one each for "
           "training, validation and test). Put one verse or headline per line.")
BAD = {  # case: (file, status, msgid, fields)
    "empty": (b"", 400, "The uploaded file is empty.", {}),
    "binary": (b"PK\x03\x04\x00\x00 a zip, or any file with NUL bytes", 400,
               "%(name)s holds NUL bytes: it is a binary file, not text. Send a UTF-8 .txt file, one verse or "
               "headline per line.", {"name": "verse.txt"}),
    "latin-1": ("Trăm năm\nChữ tài\nLạ gì\n".encode().replace("ă".encode(), b"\xe3"), 400,
                "%(name)s is not UTF-8 text (byte %(pos)s is not valid UTF-8): save it as UTF-8 and upload it again.",
                {"name": "verse.txt", "pos": 2}),
    "one line": (("Một dòng duy nhất, dài như một bài thơ không xuống dòng " * 50).encode(), 400, TOO_FEW,
                 {"count": 1, "min": 3}),
    "two lines and repeats": (b"one line\ntwo lines\none line\n...\n", 400, TOO_FEW, {"count": 2, "min": 3}),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_corpora_are_refused_in_both_languages_and_leave_nothing(signed_in, instructor_app, case):
    data, status, msgid, fields = BAD[case]
    for lang in ("en", "vi"):
        resp = upload(signed_in, data, lang=lang)
        body = resp.get_data(as_text=True)
        assert resp.status_code == status and "Traceback" not in body
        assert translate_to(lang, msgid, **fields) in body.replace("&#39;", "'")
    assert leftovers(instructor_app) == []


def test_a_200_mb_corpus_is_refused_by_its_declared_length(signed_in, instructor_app):
    """werkzeug answers 413 from Content-Length before reading the body: nothing is allocated."""
    resp = signed_in.post("/instructor/datasets/corpus?lang=vi", data=b"x" * 100, content_type="text/plain",
                          environ_overrides={"CONTENT_LENGTH": str(200 * 2**20)})
    mb = instructor_app.config["CORPUS_MAX_BYTES"] // 2**20
    assert resp.status_code == 413
    assert translate_to("vi", "The file is too large: the limit is %(mb)s MB.", mb=mb) in resp.get_data(as_text=True)
    assert leftovers(instructor_app) == []


def test_a_corpus_over_its_own_limit_is_refused_from_a_form_and_a_server_file(signed_in, instructor_app, tmp_path):
    instructor_app.config["CORPUS_MAX_BYTES"] = 2**20
    big = corpus_text(40_000).encode()
    assert len(big) > 2**20
    (tmp_path / "server" / "big.txt").write_bytes(big)
    for resp in (upload(signed_in, big),
                 signed_in.post("/instructor/datasets/corpus/file", data={"file": "big.txt"})):
        assert resp.status_code == 413 and "the limit is 1 MB" in resp.get_data(as_text=True)
    assert signed_in.post("/instructor/datasets/corpus/file", data={"file": "."}).status_code == 400
    assert signed_in.post("/instructor/datasets/corpus/file", data={"file": "../x.txt"}).status_code == 403
    assert leftovers(instructor_app) == []


def test_the_preview_shows_the_split_training_reads(signed_in, instructor_app):
    """Lines per split, vocabulary at the default cut-off and the validation unknown-word rate,
    computed again here from the NFC lines and the seeded 80/10/10 split."""
    resp = upload(signed_in, corpus_text().encode())
    assert resp.status_code == 303
    page = signed_in.get(resp.headers["Location"] + "?lang=en").get_data(as_text=True)
    token = resp.headers["Location"].rsplit("/", 1)[1]
    preview = json.load(open(os.path.join(instructor_app.instance_path, "datasets", ".staging", token,
                                          "preview.json"), encoding="utf-8"))
    lines = unicodedata.normalize("NFC", corpus_text()).splitlines()[:40]
    train, val, test = ([lines[i] for i in sorted(idx)] for idx in split_indices(40, SPLIT_SEED))
    assert preview["lines"] == {"train": len(train), "validation": len(val), "test": len(test)} == \
        {"train": 32, "validation": 4, "test": 4}
    assert preview["read"] | {} == {"lines_read": 42, "distinct": 40, "without_words_or_repeated": 2, "cut": 0,
                                    "max_tokens": 100}
    vocab = Vocabulary.build([line_sequence(ln) for ln in train], "words", min_count=DEFAULT_MIN_COUNT)
    ids = [i for ln in val for i in vocab.encode(line_sequence(ln))]
    assert preview["vocabulary"]["size"] == len(vocab)
    assert preview["validation_unknown_rate"] == round(ids.count(UNK_ID) / len(ids), 4) > 0
    assert preview["sample"] == train[:5] and all(unicodedata.is_normalized("NFC", ln) for ln in preview["sample"])
    assert "corpus-counts" in page and f"{len(vocab)} tokens" in page and train[0] in page


def test_a_saved_corpus_is_on_the_text_bench_only(signed_in, instructor_app):
    from app.lab.recipes import available_datasets
    from app.lab.textrecipes import text_datasets

    resp = saved(signed_in)
    assert resp.status_code == 303 and resp.headers["Location"].endswith("/instructor/datasets/tho")
    folder = os.path.join(instructor_app.instance_path, "datasets", "tho")
    assert sorted(os.listdir(folder)) == ["dataset.json", "test.txt", "train.txt", "validation.txt"]
    record = json.load(open(os.path.join(folder, "dataset.json"), encoding="utf-8"))
    assert record["kind"] == "text" and record["counts"] == {"train": 32, "val": 4, "test": 4}
    assert leftovers(instructor_app) == sorted(f"tho/{f}" for f in os.listdir(folder))
    with instructor_app.app_context():
        spec = text_datasets()["tho"]
        assert spec.tokenizer == "words" and spec.extra["vocabulary_size"] == record["vocabulary"]["size"]
        assert "tho" not in available_datasets()
    detail = signed_in.get("/instructor/datasets/tho?lang=vi").get_data(as_text=True)
    assert "corpus-counts" in detail and "Tỉ lệ từ lạ" in detail
    assert "tho" in signed_in.get("/instructor/datasets").get_data(as_text=True)
    bench = signed_in.get("/lab/tho?lang=en")
    assert bench.status_code == 200 and "Verse" in bench.get_data(as_text=True)
    assert saved(signed_in).status_code == 409  # the name is taken: the second upload stays staged, unsaved
    assert sorted(os.listdir(folder)) == ["dataset.json", "test.txt", "train.txt", "validation.txt"]


def test_a_run_on_a_corpus_trains_through_the_job_with_its_ngram(signed_in, instructor_app):
    """One quick epoch of a tiny recipe through the consumer's job: the card holds the corpus'
    fixed split, the test perplexity and the Kneser-Ney n-gram's on the same split."""
    from app.lab import jobs
    from app.records import FINISHED, Run, db

    assert saved(signed_in).status_code == 303
    instructor_app.config["LAB_TEXT_QUICK"] = 1
    resp = signed_in.post("/api/v1/runs", json={"dataset": "tho", "epochs": 1, "batch_size": 16, "seed": 1,
                                                "recipe": {"embedding": 8, "units": 8, "dropout": 0.0, "tied": True,
                                                           "min_count": 1}})
    assert resp.status_code == 202, resp.get_json()
    run_id = resp.get_json()["id"]
    with instructor_app.app_context():
        assert jobs.execute_run(instructor_app, run_id) == FINISHED
        run = db.session.get(Run, run_id)
        metrics, history = run.metrics, run.history
    assert metrics["test_perplexity"] > 1 and metrics["ngram"]["test_perplexity"] > 1
    assert history[0]["samples"] and {s["seed"] for s in history[0]["samples"]} <= {"trăm", "năm", "trong", "cõi",
                                                                                     "người", "ta", "chữ", "tài",
                                                                                     "mệnh", "khéo", "là", "ghét",
                                                                                     "nhau"}
    card = json.load(open(os.path.join(instructor_app.instance_path, "runs", run_id, "card.json"), encoding="utf-8"))
    assert card["data"]["split"] == "80/10/10 by distinct line, fixed when the corpus was saved"
    assert card["data"]["counts"]["train"] == 32 and card["data"]["counts"]["test"] == 4
    rows = list(csv.DictReader(io.StringIO(signed_in.get("/instructor/datasets/tho/runs.csv").get_data(as_text=True))))
    assert [(r["id"], r["embedding"], r["min_count"]) for r in rows] == [(run_id, "8", "1")]
    assert float(rows[0]["test_perplexity"]) == metrics["test_perplexity"]
    assert float(rows[0]["ngram_test_perplexity"]) == metrics["ngram"]["test_perplexity"]
    # published as a served text task (a one-epoch model is no better than the n-gram: confirmed)
    resp = signed_in.post(f"/instructor/runs/{run_id}/publish?lang=en", data={
        "slug": "tho_served", "title_en": "Verse", "title_vi": "Thơ", "confirm_chance": "yes"})
    assert resp.status_code == 303, resp.get_data(as_text=True)[:800]
    answer = signed_in.post("/api/v1/tasks/tho_served/generate", json={"seed": "trăm năm", "strategy": "greedy"})
    assert answer.status_code == 200, answer.get_data(as_text=True)[:300]
    assert answer.get_json()["text"].lower().startswith("trăm năm")


def test_the_bearer_api_uploads_lists_and_deletes_a_corpus(instructor_app, add_instructor):
    add_instructor(instructor_app)
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    client, auth = instructor_app.test_client(), {"Authorization": f"Bearer {token}"}

    def post(data: bytes, slug: str = "tho"):
        return client.post("/api/v1/corpora", headers=auth, content_type="multipart/form-data",
                           data={"file": (io.BytesIO(data), "verse.txt"), "slug": slug, "title_vi": "Thơ"})

    resp = post(corpus_text().encode())
    assert resp.status_code == 201, resp.get_json()
    assert resp.get_json()["dataset"]["counts"] == {"train": 32, "val": 4, "test": 4}
    listed = client.get("/api/v1/datasets", headers=auth).get_json()["datasets"]
    assert [(d["slug"], d["kind"], d["lines"]["validation"]) for d in listed] == [("tho", "text", 4)]
    for data, slug, status in ((b"\xff\xfe t\x00e\x00x\x00t\x00", "other", 400), (corpus_text().encode(), "tho", 409),
                               (corpus_text().encode(), "kieu", 409)):
        bad = post(data, slug)
        assert bad.status_code == status and set(bad.get_json()) == {"error", "error_en", "error_vi", "status"}
    assert leftovers(instructor_app) == sorted(p for p in leftovers(instructor_app) if p.startswith("tho/"))
    assert client.delete("/api/v1/datasets/tho", headers=auth).get_json() == {"deleted": "tho"}
    with instructor_app.app_context():
        from app.lab.textrecipes import text_datasets

        assert "tho" not in text_datasets()
