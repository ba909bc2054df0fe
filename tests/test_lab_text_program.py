"""The standalone program of a text bench recipe reads, cuts and numbers the corpus as the bench
does, builds the queue job's very model, and trains on its own."""

from __future__ import annotations

import csv
import json
import os
import random
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidInput
from app.lab import program, textprogram
from app.lab.recipes import current_limits
from app.lab.textrecipes import CELLS, TEXT_PRESET_NAMES, TextRecipe, TextSettings, limited_preset, text_preset
from app.records import Run
from app.tasks import BUILTIN_TASKS
from helpers.notebooks import execute_notebook

SHARED_DATA = Path(os.environ.get("LSTMLAB_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
TEXTS = ("kieu", "nyt_headlines")


def recipes_under_test(slug: str, app) -> list[tuple[str, TextRecipe, TextSettings]]:
    """Every text preset (its epochs cut to the server's limit, as the bench's form does), then two
    random recipes (small, so building them stays cheap)."""
    spec = BUILTIN_TASKS[slug]
    out = [(name, *limited_preset(name, spec, limits_of(app))) for name in TEXT_PRESET_NAMES]
    rng = random.Random(35 + len(slug))
    for i in range(2):
        recipe = TextRecipe(embedding=rng.choice([8, 12, 16]), cell=rng.choice(CELLS), units=rng.choice([8, 16]),
                            layers=rng.randint(1, 3), dropout=rng.choice([0.0, 0.25]), tied=rng.random() < 0.5,
                            projection=rng.choice([0, 8]),
                            sequence_length=rng.choice([8, 64]), min_count=rng.randint(1, 3))
        out.append((f"random_{i}", recipe, TextSettings(epochs=2, batch_size=8, seed=rng.randint(0, 99))))
    return out


def limits_of(app):
    """The bench's limits in `app` (its epoch limit cuts the presets, as the form does)."""
    with app.app_context():
        return current_limits()


VERSES = ("Trăm năm trong cõi người ta,", "Chữ tài chữ mệnh khéo là ghét nhau.", "Trải qua một cuộc bể dâu,",
          "Những điều trông thấy mà đau đớn lòng.", "Lạ gì bỉ sắc tư phong,", "Trời xanh quen thói má hồng đánh ghen.")
HEADLINES = ("G.O.P. Leadership Poised to Topple Obama’s Pillars", "Fractured World Tested the Hope of a President",
             "Little Troublemakers", "Angela Merkel, Russia’s Next Target", "Boots for a Stranger on a Bus",
             "The New Year in Pictures", "Trump Says He Will Leave His Business", "A Year of Living Dangerously")


def tiny_corpora(folder: Path) -> Path:
    """A few dozen verse lines and headline rows, laid out as the program looks for them."""
    kieu = folder / BUILTIN_TASKS["kieu"].data_path
    kieu.parent.mkdir(parents=True, exist_ok=True)
    kieu.write_text("\n".join(f"{v} {i}" if i % 5 == 0 else v for i in range(8) for v in VERSES) + "\n",
                    encoding="utf-8")
    nyt = folder / BUILTIN_TASKS["nyt_headlines"].data_path
    nyt.mkdir(parents=True, exist_ok=True)
    with (nyt / "ArticlesJan2017.csv").open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["abstract", "headline", "snippet"])
        for i in range(40):
            head = HEADLINES[i % len(HEADLINES)] + ("" if i < len(HEADLINES) else f" {i}")
            out.writerow(["" if i % 3 else "An abstract, of sorts.", "Unknown" if i == 39 else head,
                          f"The snippet of article {i}: {HEADLINES[(i + 1) % len(HEADLINES)]}."])
    return folder


def section(source: str, *names: str) -> str:
    """The program's head and its first sections (Data, then Model): nothing trained."""
    return program.SECTION.join(source.split(program.SECTION)[:1 + len(names)])


def bench_config(slug: str, recipe: TextRecipe, settings: TextSettings, app):
    """The TrainConfig the queue job builds for this recipe (app/lab/jobs.py)."""
    from app.lab.jobs import text_training_config

    with app.app_context():
        return text_training_config(Run(dataset=slug, recipe=asdict(recipe), settings=asdict(settings)), False)


def test_every_program_builds_the_bench_jobs_model(lab_app, tmp_path, monkeypatch):
    """For every text preset and two random recipes per data set: the .py and .ipynb hold the same
    code, and it builds the queue job's training model and the saved (served) one layer for
    layer, parameter for parameter (the vocabulary size from the program's own data section)."""
    import nbformat

    from training.build import make_word_lstm, plain_twin
    from training.fit import card_header
    from training.textgen import text_model_kwargs

    monkeypatch.setenv("LSTMLAB_DATA", str(tiny_corpora(tmp_path / "data")))
    client = lab_app.test_client()
    for slug in TEXTS:
        spec = BUILTIN_TASKS[slug]
        for name, recipe, settings in recipes_under_test(slug, lab_app):
            query = {**{k: str(v) for k, v in (asdict(recipe) | asdict(settings)).items()}, "tied": "1" if recipe.tied else ""}
            source = client.get(f"/lab/{slug}/program.py", query_string=query).get_data(as_text=True)
            assert "from app" not in source and "import training" not in source, name
            notebook = nbformat.reads(client.get(f"/lab/{slug}/program.ipynb", query_string=query).get_data(as_text=True), 4)
            head, *sections = source.partition('"""\n\n')[2].split(program.SECTION)
            assert [c.source for c in notebook.cells if c.cell_type == "code"] == [
                head.strip(), *(s.partition("\n")[2].strip() for s in sections)], name
            scope = {"__name__": "__main__"}
            exec(compile(section(source, "data", "model"), "program.py", "exec"), scope)
            kw = text_model_kwargs(spec, bench_config(slug, recipe, settings, lab_app))
            bench = make_word_lstm(scope["VOCAB_SIZE"], name=slug, **kw)
            served = plain_twin(bench, scope["VOCAB_SIZE"], kw, slug)
            mine = scope["model"]
            mine_served = scope["build_model"](0.0) if kw.get("weight_drop") and kw.get("cell", "lstm") == "lstm" else mine
            for a, b in ((mine, bench), (mine_served, served)):
                ca, cb = card_header(spec, a, "word_lstm", kw), card_header(spec, b, "word_lstm", kw)
                assert [ca["layers"], ca["params_total"]] == [cb["layers"], cb["params_total"]], (slug, name)


def bench_data(slug: str, recipe: TextRecipe, settings: TextSettings, config) -> dict:
    """What `train_text_task` trains, validates and tests on, cut and numbered as it does."""
    from app.text import SNIPPET, Vocabulary
    from training.textdata import cut_sequences, load_text_data, to_arrays

    spec = BUILTIN_TASKS[slug]
    data = load_text_data(spec, str(SHARED_DATA / spec.data_path), config.seed, False,
                          config.aux_text or spec.extra.get("aux_text", "none"))
    vocab = Vocabulary.build(data.train, spec.tokenizer, min_count=config.min_count, markers=(SNIPPET,) if data.aux else ())
    return {"vocab": vocab.tokens, "train_ids": cut_sequences([vocab.encode(s) for s in data.train + data.aux],
                                                              config.sequence_length),
            "val_ids": [vocab.encode(s) for s in data.validation], "test": to_arrays(data.test, vocab)}


@pytest.mark.parametrize("slug, change", [("kieu", {}), ("kieu", {"min_count": 1, "sequence_length": 9}),
                                          ("nyt_headlines", {})])
def test_the_program_reads_the_real_corpus_as_the_bench(lab_app, monkeypatch, slug, change):
    """On the real corpus: the same vocabulary (ids and order), the same training pieces, the same
    validation sequences and the same padded test arrays as the bench's training function."""
    spec = BUILTIN_TASKS[slug]
    if not (SHARED_DATA / spec.data_path).exists():
        pytest.skip(f"no {spec.data_path} under {SHARED_DATA}")
    recipe, settings = text_preset("fast", spec)
    recipe, settings = replace(recipe, **change), replace(settings, seed=7 if change else settings.seed)
    monkeypatch.setenv("LSTMLAB_DATA", str(SHARED_DATA))
    scope = {"__name__": "__main__"}
    exec(compile(section(textprogram.render_text_program(spec, recipe, settings), "data"), "program.py", "exec"), scope)
    bench = bench_data(slug, recipe, settings, bench_config(slug, recipe, settings, lab_app))
    assert scope["vocab"] == bench["vocab"]
    assert scope["train_ids"] == bench["train_ids"]
    assert scope["val_batches"].ids == bench["val_ids"]
    assert np.array_equal(scope["x_test"], bench["test"][0]) and np.array_equal(scope["y_test"], bench["test"][1])
    assert len(scope["train_ids"]) > 300


def test_an_instructors_corpus_program_reads_it_and_builds_the_model_as_the_bench(lab_app, tmp_path, monkeypatch):
    """A saved corpus (train/validation/test.txt, app/instructor/corpora.py): the program reads
    the same sequences and vocabulary as the bench and builds the same model."""
    from app.instructor.corpora import corpus_spec
    from app.text import Vocabulary
    from training.build import make_word_lstm
    from training.fit import layer_table
    from training.textdata import load_text_data, to_arrays
    from training.textgen import text_model_kwargs

    folder = tmp_path / "data" / "poems"
    folder.mkdir(parents=True)
    lines = [f"{h} {', '.join(VERSES[i % 6].split()[:i % 5])}" for i, h in enumerate(HEADLINES * 3)]
    for name, part in (("train", lines[:16]), ("validation", lines[16:20]), ("test", lines[20:] + ["...", ""])):
        (folder / f"{name}.txt").write_text("\n".join(part), encoding="utf-8")
    spec = corpus_spec({"slug": "poems", "title_en": "Poems", "title_vi": "Thơ", "split": "80/10/10",
                        "counts": {"train": 16, "val": 4, "test": 4}, "vocabulary": {"size": 60}}, folder)
    recipe, settings = text_preset("fast", spec)
    monkeypatch.setenv("LSTMLAB_DATA", str(tmp_path / "data"))
    scope = {"__name__": "__main__"}
    source = textprogram.render_text_program(spec, recipe, settings)
    assert str(tmp_path) not in source  # the server's folders stay on the server
    exec(compile(section(source, "data", "model"), "program.py", "exec"), scope)
    data = load_text_data(spec, None, settings.seed)
    vocab = Vocabulary.build(data.train, spec.tokenizer, min_count=recipe.min_count)
    assert scope["vocab"] == vocab.tokens and scope["val_batches"].ids == [vocab.encode(s) for s in data.validation]
    assert np.array_equal(scope["x_test"], to_arrays(data.test, vocab)[0])
    kw = text_model_kwargs(spec, bench_config(spec.slug, recipe, settings, lab_app))
    assert layer_table(scope["model"]) == layer_table(make_word_lstm(len(vocab), name=spec.slug, **kw))


def test_the_notebook_trains_evaluates_and_saves_on_a_tiny_subset(lab_app, tmp_path):
    """The shipped headline recipe's notebook (snippets, weight drop, weight average, tied
    embeddings: every optional part) runs end to end with nbclient on a tiny corpus, one epoch;
    the saved model loads with the app's loader and its vocab.json with the app's Vocabulary."""
    import nbformat

    from app.text import Vocabulary
    from training.build import make_word_lstm, plain_twin
    from training.fit import layer_table
    from training.layers import load_keras_text_model
    from training.textgen import text_model_kwargs

    response = lab_app.test_client().get("/lab/nyt_headlines/program.ipynb?preset=shipped&lang=vi")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="lstmlab_nyt_headlines.ipynb"'
    notebook = nbformat.reads(response.get_data(as_text=True), as_version=4)
    assert [c.source for c in notebook.cells if c.cell_type == "markdown"][1:] == [
        "## Dữ liệu", "## Mô hình", "## Huấn luyện", "## Đánh giá"]
    printed = execute_notebook(notebook, tmp_path, {"LSTMLAB_DATA": str(tiny_corpora(tmp_path / "data")),
                                                    "PROGRAM_EPOCHS": "1"})
    assert "test perplexity" in printed
    vocab = Vocabulary.from_json((tmp_path / "vocab.json").read_text(encoding="utf-8"))
    model = load_keras_text_model(tmp_path / "model.keras")
    assert model.output.shape[-1] == len(vocab) and "<snippet>" in vocab.index
    recipe, settings = limited_preset("shipped", BUILTIN_TASKS["nyt_headlines"], limits_of(lab_app))
    kw = text_model_kwargs(BUILTIN_TASKS["nyt_headlines"], bench_config("nyt_headlines", recipe, settings, lab_app))
    served = plain_twin(make_word_lstm(len(vocab), name="nyt_headlines", **kw), len(vocab), kw, "nyt_headlines")
    assert layer_table(model) == layer_table(served)  # what the run's card holds, for this vocabulary


def test_the_verse_program_trains_in_process_on_a_tiny_subset(tmp_path, monkeypatch):
    """The Kiều "fast" program, run as a script on a tiny corpus for one epoch, writes a model
    whose perplexity it prints."""
    spec = BUILTIN_TASKS["kieu"]
    monkeypatch.setenv("LSTMLAB_DATA", str(tiny_corpora(tmp_path / "data")))
    monkeypatch.setenv("PROGRAM_EPOCHS", "1")
    monkeypatch.chdir(tmp_path)
    source = textprogram.render_text_program(spec, *text_preset("fast", spec), translate=lambda s: s)
    scope = {"__name__": "__main__"}
    exec(compile(source, "program.py", "exec"), scope)
    assert (tmp_path / "model.keras").is_file()
    assert json.loads((tmp_path / "vocab.json").read_text(encoding="utf-8"))["tokenizer"] == "syllables"
    assert 1 < scope["perplexity"](scope["served"], scope["x_test"], scope["y_test"]) < scope["VOCAB_SIZE"] * 2


def test_program_comments_follow_the_language():
    spec = BUILTIN_TASKS["kieu"]
    english = textprogram.render_text_program(spec, *text_preset("fast", spec))
    marked = textprogram.render_text_program(spec, *text_preset("fast", spec), translate=lambda s: "<<" + s + ">>")
    assert "<<Data>>" in marked and "# ---" in english and "<<" not in english


def test_the_lab_preset_notes_the_notebooks_fixes():
    spec = BUILTIN_TASKS["nyt_headlines"]
    lab = textprogram.render_text_program(spec, *text_preset("lab", spec))
    assert "two headlines" in lab and "Embedding(VOCAB_SIZE, 10" in lab and "LSTM(100" in lab
    assert "two headlines" not in textprogram.render_text_program(spec, *text_preset("fast", spec))


# ----------------------------------------------------------------------------- routes
FORM = {"embedding": "12", "cell": "gru", "units": "16", "layers": "2", "dropout": "0", "sequence_length": "32",
        "min_count": "3", "epochs": "2", "batch_size": "16", "learning_rate": "0.004", "seed": "9"}


def test_the_text_form_program_follows_every_field(lab_app):
    client = lab_app.test_client()
    source = client.get("/lab/kieu/program.py", query_string=FORM).get_data(as_text=True)
    for words in ("GRU(16", 'name="gru_2"', "SEED = 9", "BATCH_SIZE = 16", "MIN_COUNT = 3", "SEQUENCE_LENGTH = 32",
                  "LEARNING_RATE = 0.004", "Embedding(VOCAB_SIZE, 12"):
        assert words in source, words
    tied = client.get("/lab/kieu/program.py", query_string={**FORM, "tied": "1"}).get_data(as_text=True)
    assert "TiedEmbedding(VOCAB_SIZE, 12" in tied and "TiedEmbedding" not in source


@pytest.mark.parametrize("path, query, status, words", [
    ("/lab/kieu/program.py", {**FORM, "units": "0"}, 400, "units"),
    ("/lab/kieu/program.ipynb", {**FORM, "sequence_length": "1000000"}, 400, "sequence length"),
    ("/lab/kieu/program.py", {"preset": "nope"}, 400, "Unknown preset 'nope'"),
    ("/lab/nosuch/program.py", FORM, 404, "There is no text data set nosuch."),
    ("/lab/mnist/program.ipynb", FORM, 404, "There is no text data set mnist."),
])
def test_a_bad_text_program_request_is_refused_in_both_languages(lab_app, path, query, status, words):
    for lang in ("en", "vi"):
        response = lab_app.test_client().get(path, query_string={**query, "lang": lang},
                                             headers={"Accept": "application/json"})
        assert response.status_code == status, (path, lang)
        body = response.get_json()
        assert words in body["error_en"] and body["error_vi"] != body["error_en"], body
        assert body["error"] == body["error_" + lang]
    page = lab_app.test_client().get(path, query_string={**query, "lang": "vi"})
    assert page.status_code == status and "Traceback" not in page.get_data(as_text=True)


@pytest.mark.parametrize("lang, words", [("en", "- Model\n"), ("vi", "- Mô hình\n")])
def test_a_finished_text_runs_program_downloads_in_the_pages_language(lab_app, finished_run, lang, words):
    recipe, settings = text_preset("fast", BUILTIN_TASKS["kieu"])
    run_id = finished_run(dataset="kieu", recipe=asdict(replace(recipe, units=48)), settings=asdict(settings),
                          metrics={"test_perplexity": 180.5, "ngram": {"test_perplexity": 235.3}})
    client = lab_app.test_client()
    for ext in ("py", "ipynb"):
        response = client.get(f"/lab/runs/{run_id}/program.{ext}?lang={lang}")
        assert response.status_code == 200
        assert response.headers["Content-Disposition"] == f'attachment; filename="lstmlab_kieu_{run_id}.{ext}"'
    source = client.get(f"/lab/runs/{run_id}/program.py?lang={lang}").get_data(as_text=True)
    assert words in source and "LSTM(48" in source
    compile(source, "program.py", "exec")
    page = client.get(f"/lab/runs/{run_id}?lang={lang}").get_data(as_text=True)
    assert f"/lab/runs/{run_id}/program.py" in page and f"/lab/runs/{run_id}/program.ipynb" in page


def test_the_text_bench_shows_the_code_panel_of_its_form(lab_app):
    page = lab_app.test_client().get("/lab/nyt_headlines?preset=lab&lang=en").get_data(as_text=True)
    assert 'id="code-panel"' in page and 'data-form="text-form"' in page
    assert 'data-program-url="/lab/nyt_headlines/program.py"' in page
    assert "Embedding(VOCAB_SIZE, 10" in page and "js/code.js" in page


# ----------------------------------------------------------------------------- shipped text tasks
@pytest.mark.parametrize("slug", TEXTS)
def test_a_shipped_text_tasks_program_rebuilds_its_served_model(slug, monkeypatch):
    """The program of the served model (models/<slug>/card.json), its data section run on the
    real corpus: the card's vocabulary size, layer table and parameter count."""
    from training.fit import layer_table

    spec = BUILTIN_TASKS[slug]
    card_path = Path(__file__).resolve().parents[1] / "models" / slug / "card.json"
    if not card_path.is_file() or not (SHARED_DATA / spec.data_path).exists():
        pytest.skip(f"no shipped {slug} model or no {spec.data_path} under {SHARED_DATA}")
    card = json.loads(card_path.read_text(encoding="utf-8"))
    source = textprogram.shipped_text_program(spec, card)
    assert f"PATIENCE = {card['training']['early_stopping']['patience']}" in source
    monkeypatch.setenv("LSTMLAB_DATA", str(SHARED_DATA))
    scope = {"__name__": "__main__"}
    exec(compile(section(source, "data", "model"), "program.py", "exec"), scope)
    assert scope["VOCAB_SIZE"] == card["vocabulary"]["size"]
    served = scope["build_model"](0.0) if "def build_model(weight_drop)" in source else scope["model"]
    mine = layer_table(served)
    assert [{k: r[k] for k in ("name", "type", "params")} for r in mine] == [
        {k: r[k] for k in ("name", "type", "params")} for r in card["layers"]]
    assert int(served.count_params()) == card["params_total"]


def test_an_untrained_or_continued_text_model_has_no_program_in_either_language(lab_app):
    """The tiny untrained models of the test app's models folder: a bilingual 404, no 500."""
    client = lab_app.test_client()
    for lang in ("en", "vi"):
        response = client.get(f"/tasks/kieu/program.py?lang={lang}", headers={"Accept": "application/json"})
        assert response.status_code == 404
        body = response.get_json()
        assert "it was not trained in one run" in body["error_en"] and body["error"] == body["error_" + lang]
    with pytest.raises(InvalidInput) as err:
        textprogram.shipped_text_program(BUILTIN_TASKS["kieu"], {"architecture": "word_lstm", "model_kwargs": {},
                                                                 "warm_start": {"runs": []}})
    assert err.value.status == 404
