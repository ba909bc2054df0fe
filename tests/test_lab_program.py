"""The standalone program of a bench recipe builds the bench's very model and trains on its own."""

from __future__ import annotations

import json
import random
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from app.errors import InvalidInput
from app.lab import program
from app.lab.recipes import CELLS, PRESET_NAMES, READINGS, Recipe, RunSettings, preset
from app.tasks import BUILTIN_TASKS
from helpers.notebooks import execute_notebook

ROOT = Path(__file__).resolve().parents[1]
MNIST = BUILTIN_TASKS["mnist"]


def recipes_under_test() -> list[tuple[str, Recipe]]:
    """Every preset, then two random recipes per reading order (small, so the test stays fast)."""
    out = [(name, preset(name, MNIST)[0]) for name in PRESET_NAMES]
    rng = random.Random(34)
    for reading in READINGS:
        for i in range(2):
            out.append((f"{reading}_{i}", Recipe(reading, rng.choice(CELLS), rng.choice([4, 8, 12]),
                                                 rng.randint(1, 3), rng.random() < 0.5,
                                                 rng.choice([0.0, 0.2]))))
    return out


def tiny_mnist(folder: Path) -> Path:
    """A small MNIST-shaped .npz (random pixels) where the program looks for the data set."""
    rng = np.random.default_rng(3)
    path = folder / MNIST.data_path
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=rng.integers(0, 256, (150, 28, 28), dtype=np.uint8), y_train=rng.integers(0, 10, 150),
             x_test=rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), y_test=rng.integers(0, 10, 30))
    return folder


def form_of(recipe: Recipe, settings: RunSettings) -> dict:
    """The bench form's fields (GET query) for a recipe and its settings."""
    fields = {**asdict(recipe), **asdict(settings), "dataset": "mnist"}
    fields["bidirectional"] = "on" if recipe.bidirectional else ""
    return {k: str(v) for k, v in fields.items()}


def data_and_model(source: str) -> str:
    """The program's sections before Train: the data and the model, nothing fitted."""
    return program.SECTION.join(source.split(program.SECTION)[:3])


def test_every_program_builds_the_bench_model(lab_app, tmp_path, monkeypatch):
    """The downloaded .py and .ipynb of every preset and random recipe hold the same code, and
    that code builds the run's layer table and parameter count exactly (the notebook test
    below executes one notebook end to end: train, evaluate, save)."""
    import nbformat

    from training.build import make_recipe_model
    from training.fit import card_header

    monkeypatch.setenv("LSTMLAB_DATA", str(tiny_mnist(tmp_path / "data")))
    monkeypatch.setenv("PROGRAM_SUBSET", "100")
    client = lab_app.test_client()
    for name, recipe in recipes_under_test():
        query = form_of(recipe, RunSettings(epochs=3, batch_size=32, seed=5))
        source = client.get("/lab/program.py", query_string=query).get_data(as_text=True)
        assert "from app" not in source and "import training" not in source, name
        notebook = nbformat.reads(client.get("/lab/program.ipynb", query_string=query).get_data(as_text=True), 4)
        head, *sections = source.partition('"""\n\n')[2].split(program.SECTION)
        assert [c.source for c in notebook.cells if c.cell_type == "code"] == [
            head.strip(), *(s.partition("\n")[2].strip() for s in sections)], name
        scope = {"__name__": "__main__"}
        exec(compile(data_and_model(source), "program.py", "exec"), scope)
        mine = card_header(MNIST, scope["model"], "recipe", asdict(recipe))
        bench = card_header(MNIST, make_recipe_model(MNIST, **asdict(recipe)), "recipe", asdict(recipe))
        assert [mine["layers"], mine["params_total"]] == [bench["layers"], bench["params_total"]], name
        assert len(scope["y_train"]) + len(scope["y_val"]) == 100, name


def test_program_comments_follow_the_language():
    recipe, settings = preset("fast", MNIST)
    english = program.render_program(MNIST, recipe, settings)
    marked = program.render_program(MNIST, recipe, settings, translate=lambda s: "<<" + s + ">>")
    assert "<<Data>>" in marked and "<<Data>>" not in english
    assert english.replace("LEARNING_RATE = 0.003", "") != marked


@pytest.mark.parametrize("slug", ["cifar10", "cats_dogs", "kieu"])
def test_jpeg_and_text_data_sets_are_refused_plainly(slug):
    with pytest.raises(InvalidInput) as err:
        program.render_program(BUILTIN_TASKS[slug], Recipe(), RunSettings())
    assert err.value.status == 404


# ----------------------------------------------------------------------------- routes
FORM = {"dataset": "mnist", "reading": "patches", "cell": "gru", "units": "16", "layers": "1", "dropout": "0",
        "epochs": "2", "batch_size": "64", "learning_rate": "0.002", "subset": "1000", "seed": "7"}


@pytest.mark.parametrize("lang, words", [("en", "- Model\n"), ("vi", "- Mô hình\n")])
def test_a_runs_program_downloads_in_the_pages_language(lab_app, finished_run, lang, words):
    run_id = finished_run()
    response = lab_app.test_client().get(f"/lab/runs/{run_id}/program.py?lang={lang}")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="lstmlab_mnist_{run_id}.py"'
    source = response.get_data(as_text=True)
    assert words in source
    compile(source, "program.py", "exec")


def test_the_form_program_follows_every_field(lab_app):
    client = lab_app.test_client()
    source = client.get("/lab/program.py", query_string=FORM).get_data(as_text=True)
    assert "GRU(16" in source and "SEED = 7" in source and "BATCH_SIZE = 64" in source and "Dropout" not in source
    other = client.get("/lab/program.py", query_string={**FORM, "bidirectional": "on", "units": "24"})
    assert "Bidirectional(layers.GRU(24" in other.get_data(as_text=True)


@pytest.mark.parametrize("query, status", [({**FORM, "units": "0"}, 400), ({**FORM, "dataset": "nope"}, 400),
                                           ({**FORM, "dataset": "cifar10"}, 404)])
def test_a_bad_form_program_is_refused_in_both_languages(lab_app, query, status):
    for lang in ("en", "vi"):
        response = lab_app.test_client().get("/lab/program.py", query_string={**query, "lang": lang})
        assert response.status_code == status
        assert "Traceback" not in response.get_data(as_text=True)


def test_an_unknown_runs_program_is_a_404(lab_app):
    assert lab_app.test_client().get("/lab/runs/nosuchrun/program.py").status_code == 404


def test_the_notebook_runs_and_builds_the_bench_model(lab_app, finished_run, tmp_path):
    import nbformat

    run_id = finished_run()
    response = lab_app.test_client().get(f"/lab/runs/{run_id}/program.ipynb?lang=vi")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == f'attachment; filename="lstmlab_mnist_{run_id}.ipynb"'
    notebook = nbformat.reads(response.get_data(as_text=True), as_version=4)
    assert [c.source for c in notebook.cells if c.cell_type == "markdown"][1:] == [
        "## Dữ liệu", "## Mô hình", "## Huấn luyện", "## Đánh giá"]
    data = tiny_mnist(tmp_path / "data")
    notebook.cells.append(nbformat.v4.new_code_cell(
        "import json\nprint('RESULT ' + json.dumps([[{'name': l.name, 'type': l.__class__.__name__, "
        "'params': int(l.count_params())} for l in model.layers], int(model.count_params())]))"))
    printed = execute_notebook(notebook, tmp_path, {"LSTMLAB_DATA": str(data), "PROGRAM_SUBSET": "100",
                                                    "PROGRAM_EPOCHS": "1"})
    layers, params = json.loads(printed.split("RESULT ", 1)[1])
    from training.build import make_recipe_model
    from training.fit import card_header

    with lab_app.app_context():
        from app.lab import runs

        recipe = runs.find_run(run_id).recipe
    card = card_header(MNIST, make_recipe_model(MNIST, **recipe), "recipe", recipe)  # what the run's card holds
    assert params == card["params_total"]
    assert layers == [{k: row[k] for k in ("name", "type", "params")} for row in card["layers"]]
    assert (tmp_path / "model.keras").is_file()


# ----------------------------------------------------------------------------- downloads
def owner_client(lab_app, owner: str):
    """A test client carrying the signed owner cookie of `owner`."""
    from app.lab import runs

    client = lab_app.test_client()
    with lab_app.test_request_context():
        client.set_cookie(runs.OWNER_COOKIE, runs._serializer().dumps(owner))
    return client


def test_downloads_for_the_owner_only(lab_app, finished_run):
    from app.records import RUNNING

    run_id = finished_run(owner="a" * 32)
    mine, other = owner_client(lab_app, "a" * 32), owner_client(lab_app, "b" * 32)
    for name in ("model.keras", "model.tflite", "card.json"):
        response = mine.get(f"/lab/runs/{run_id}/download/{name}")
        assert response.status_code == 200, name
        assert f'filename=lstmlab_{run_id}_{name}' in response.headers["Content-Disposition"]
        assert response.headers["X-Provenance"].startswith("data: ")
        assert other.get(f"/lab/runs/{run_id}/download/{name}?lang=en").status_code == 403
    assert mine.get(f"/lab/runs/{run_id}/download/history.csv").status_code == 404
    running = finished_run(owner="a" * 32, status=RUNNING)
    assert mine.get(f"/lab/runs/{running}/download/model.keras").status_code == 404
