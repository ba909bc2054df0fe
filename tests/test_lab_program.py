"""The standalone program of a bench recipe builds the bench's very model and trains on its own."""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import types
from dataclasses import asdict, replace
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
JPEG_SETS = [slug for slug, spec in BUILTIN_TASKS.items() if program.is_jpeg(spec)]  # cifar10, cats_dogs, faces_gender


def recipes_under_test(spec=MNIST) -> list[tuple[str, Recipe]]:
    """Every preset, then two random recipes per reading order (small, so the test stays fast)."""
    out = [(name, preset(name, spec)[0]) for name in PRESET_NAMES]
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


def tiny_jpeg(folder: Path, spec, n_train: int = 150, n_test: int = 30) -> Path:
    """A small data file shaped as `spec`'s JPEG-bytes .npz (random pixels, stored as JPEG) where the
    program looks for the data set."""
    from PIL import Image

    rng = np.random.default_rng(4)
    path = folder / spec.data_path
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        blobs = []
        for pixels in rng.integers(0, 256, (n, *spec.input_shape), dtype=np.uint8):
            out = io.BytesIO()
            Image.fromarray(pixels.squeeze()).save(out, "JPEG", quality=75)
            blobs.append(np.frombuffer(out.getvalue(), np.uint8))
        arrays[f"jpeg_{split}"] = np.concatenate(blobs)
        arrays[f"off_{split}"] = np.cumsum([0] + [len(b) for b in blobs])
        arrays[f"y_{split}"] = rng.integers(0, len(spec.classes), n).astype(np.uint8)
    np.savez(path, class_names=np.array(spec.class_names), **arrays)
    return folder


def form_of(recipe: Recipe, settings: RunSettings, dataset: str = "mnist") -> dict:
    """The bench form's fields (GET query) for a recipe and its settings."""
    fields = {**asdict(recipe), **asdict(settings), "dataset": dataset}
    fields["bidirectional"] = "on" if recipe.bidirectional else ""
    return {k: str(v) for k, v in fields.items()}


def data_and_model(source: str) -> str:
    """The program's sections before Train: the data and the model, nothing fitted."""
    return program.SECTION.join(source.split(program.SECTION)[:3])


@pytest.mark.parametrize("slug", ["mnist", "cats_dogs"])
def test_every_program_builds_the_bench_model(lab_app, tmp_path, monkeypatch, slug):
    """The downloaded .py and .ipynb of every preset and random recipe, on MNIST and on a JPEG data
    set, hold the same code, and that code builds the run's layer table and parameter count
    exactly (the notebook tests below execute notebooks end to end: train, evaluate, save)."""
    import nbformat

    from training.build import make_recipe_model
    from training.fit import card_header

    spec = BUILTIN_TASKS[slug]
    data = tiny_jpeg(tmp_path / "data", spec) if program.is_jpeg(spec) else tiny_mnist(tmp_path / "data")
    monkeypatch.setenv("LSTMLAB_DATA", str(data))
    monkeypatch.setenv("PROGRAM_SUBSET", "100")
    client = lab_app.test_client()
    for name, recipe in recipes_under_test(spec):
        query = form_of(recipe, RunSettings(epochs=3, batch_size=32, seed=5), slug)
        source = client.get("/lab/program.py", query_string=query).get_data(as_text=True)
        assert "from app" not in source and "import training" not in source, name
        notebook = nbformat.reads(client.get("/lab/program.ipynb", query_string=query).get_data(as_text=True), 4)
        head, *sections = source.partition('"""\n\n')[2].split(program.SECTION)
        assert [c.source for c in notebook.cells if c.cell_type == "code"] == [
            head.strip(), *(s.partition("\n")[2].strip() for s in sections)], name
        scope = {"__name__": "__main__"}
        exec(compile(data_and_model(source), "program.py", "exec"), scope)
        mine = card_header(spec, scope["model"], "recipe", asdict(recipe))
        bench = card_header(spec, make_recipe_model(spec, **asdict(recipe)), "recipe", asdict(recipe))
        assert [mine["layers"], mine["params_total"]] == [bench["layers"], bench["params_total"]], name
        assert len(scope["y_train"]) + len(scope["y_val"]) == 100, name
        assert ("pillow" in source) == program.is_jpeg(spec), name


def bench_split(spec, subset: int, seed: int):
    """(train, validation, test) as the bench's run reads them: `training.data`'s loader, the run's
    subset (`train_subset`) and its seeded validation split."""
    from training.data import load_image_data
    from training.images import train_subset

    data = train_subset(load_image_data(spec), types.SimpleNamespace(quick=False, subset=subset, test_subset=0))
    train, val = data.train_validation(seed)
    return train, val, (data.x_test, data.y_test)


@pytest.mark.parametrize("slug", JPEG_SETS)
def test_a_jpeg_programs_data_is_the_benchs_pixel_for_pixel(slug, monkeypatch):
    """The program decodes the stored JPEG bytes with Pillow into exactly the arrays training.data
    gives the bench (app.imaging's decode), for the same subset, split and test order."""
    spec = BUILTIN_TASKS[slug]
    data = Path(os.environ.get("LSTMLAB_DATA") or ROOT.parent / "shared" / "data")
    if not (data / spec.data_path).is_file():
        pytest.skip(f"no {spec.data_path} under {data}")
    monkeypatch.setenv("LSTMLAB_DATA", str(data))
    monkeypatch.setenv("PROGRAM_SUBSET", "300")
    recipe, settings = preset("fast", spec)
    source = program.render_program(spec, recipe, replace(settings, seed=7))
    scope = {"__name__": "__main__"}
    data_section = program.SECTION.join(source.split(program.SECTION)[:2])  # the constants and the data
    exec(compile(data_section, "program.py", "exec"), scope)
    train, val, test = bench_split(spec, 300, 7)
    for name, (x, y) in {"train": train, "val": val, "test": test}.items():
        assert scope[f"x_{name}"].dtype == np.uint8 and scope[f"x_{name}"].shape == x.shape, name
        assert np.array_equal(scope[f"x_{name}"], x) and np.array_equal(scope[f"y_{name}"], y), name


def test_program_comments_follow_the_language():
    recipe, settings = preset("fast", MNIST)
    english = program.render_program(MNIST, recipe, settings)
    marked = program.render_program(MNIST, recipe, settings, translate=lambda s: "<<" + s + ">>")
    assert "<<Data>>" in marked and "<<Data>>" not in english
    assert english.replace("LEARNING_RATE = 0.003", "") != marked


def test_a_data_set_without_a_program_is_refused_plainly(tmp_path):
    """Only where no program can exist: a text data set here (its own program: textprogram), an
    instructor's folder of images on the server, JPEG images prepared by the digits' recipe."""
    folder = replace(MNIST, slug="my_folder", data_path=str(tmp_path / "images"))
    jpeg_digits = replace(BUILTIN_TASKS["cats_dogs"], preprocess="mnist")
    for spec in (BUILTIN_TASKS["kieu"], folder, jpeg_digits):
        with pytest.raises(InvalidInput) as err:
            program.render_program(spec, Recipe(), RunSettings())
        assert err.value.status == 404, spec.slug


def test_a_jpeg_data_sets_program_trains_with_the_benchs_extras():
    """A run on a JPEG data set: label smoothing, the weight average and the task's augmentation
    as train_image_task applies them; CutMix where the task asks for it."""
    cats_dogs = BUILTIN_TASKS["cats_dogs"]
    source = program.render_program(cats_dogs, Recipe(), RunSettings())
    assert "LABEL_SMOOTHING = 0.1" in source and "WEIGHT_AVERAGE = 0.998" in source and "JITTER = 0.25" in source
    assert "CategoricalCrossentropy(label_smoothing=LABEL_SMOOTHING)" in source and "WeightAverage(" in source
    assert "keras.layers.CutMix" not in source and "from PIL import Image" in source
    mixed = program.render_program(replace(cats_dogs, extra={**cats_dogs.extra, "cutmix": 1.0}), Recipe(), RunSettings())
    assert "CUTMIX = 1.0" in mixed and "keras.layers.CutMix(factor=CUTMIX" in mixed
    vi = program.render_program(cats_dogs, Recipe(), RunSettings(), translate=lambda s: "<<" + s + ">>")
    assert f"<<{program.COMMENTS['average_doc']}" in vi.replace("\n    ", " ")


def test_a_jpeg_runs_program_runs_end_to_end(tmp_path):
    """`python program.py` of a small recipe on a tiny JPEG cats-and-dogs file, with every extra the
    bench can add (label smoothing, CutMix, the weight average): it trains, evaluates, saves."""
    cats_dogs = BUILTIN_TASKS["cats_dogs"]
    spec = replace(cats_dogs, extra={**cats_dogs.extra, "cutmix": 1.0})
    source = program.render_program(spec, Recipe("rows", "gru", 8, 1, False, 0.0), RunSettings(epochs=2, batch_size=32))
    (tmp_path / "program.py").write_text(source, encoding="utf-8")
    env = {**os.environ, "LSTMLAB_DATA": str(tiny_jpeg(tmp_path / "data", spec, 80, 20)), "PROGRAM_SUBSET": "60",
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, "program.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "train 54, validation 6, test 20" in done.stdout and "val_accuracy_raw" in done.stdout
    assert "test accuracy " in done.stdout and (tmp_path / "model.keras").is_file()


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


@pytest.mark.parametrize("query, status", [({**FORM, "units": "0"}, 400), ({**FORM, "dataset": "nope"}, 400)])
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


def chain_card(spec) -> dict:
    """A card as `python -m training` writes it for a small rows-and-columns model trained in two
    runs, the second continued from the first (--init-from): the first with CutMix and a weight
    average, the second with label smoothing."""
    from training.build import make_image_classifier
    from training.fit import card_header

    header = card_header(spec, make_image_classifier(spec, "rows_cols", units=4), "rows_cols", {"units": 4})
    first = {"command": f"python -m training {spec.slug} --model-kwargs {{\"units\": 4}} --epochs 3 --patience 2 "
                        "--cutmix 1.0 --weight-average 0.9", "epochs_run": 3,
             "optimizer": {"name": "AdamW", "peak_learning_rate": 0.004, "batch_size": 16,
                           "weight_average": {"kind": "exponential moving average", "momentum": 0.9}}}
    return {**header, "command": f"python -m training {spec.slug} --init-from runs/a --epochs 2 --seed 9",
            "training": {"epochs_requested": 2, "epochs_run": 2, "seed": 9, "early_stopping": {"patience": 4},
                         "augmentation": {"augment": 0.1, "flip": True, "label_smoothing": 0.1}},
            "optimizer": {"name": "AdamW", "peak_learning_rate": 0.001, "batch_size": 32, "weight_average": None},
            "warm_start": {"from": "runs/a", "previous_runs": [first], "epochs_total": 5},
            "metrics": {"test_accuracy": 0.5}}


def test_a_warm_started_shipped_notebook_runs_both_phases(tmp_path):
    """A card's two runs as one notebook on a tiny JPEG file: phase 1 with its CutMix and weight
    average, phase 2 from phase 1's weights with its own seed (a new validation split), label
    smoothing and learning rate; then it evaluates and saves."""
    import nbformat

    spec = BUILTIN_TASKS["cats_dogs"]
    card = chain_card(spec)
    source = program.shipped_program(spec, card)
    assert "CUTMIX = 1.0" in source.split(program.SECTION)[0] and "x_train, y_train, x_val, y_val = split(SEED)" in source
    notebook = nbformat.reads(program.program_notebook(source), 4)
    notebook.cells.append(nbformat.v4.new_code_cell(
        "print('RESULT', SEED, EPOCHS, LEARNING_RATE, LABEL_SMOOTHING, CUTMIX, len(y_train), len(y_val))"))
    printed = execute_notebook(notebook, tmp_path, {"LSTMLAB_DATA": str(tiny_jpeg(tmp_path / "data", spec, 70, 20)),
                                                    "PROGRAM_SUBSET": "60", "PROGRAM_EPOCHS": "1"})
    fits = ["".join(o.get("text", "") for o in c.outputs) for c in notebook.cells
            if c.cell_type == "code" and "model.fit(" in c.source]
    assert len(fits) == 2 and "val_accuracy_raw" in fits[0] and "val_accuracy_raw" not in fits[1], fits
    assert printed.strip() == "RESULT 9 1 0.001 0.1 0.0 54 6"
    assert (tmp_path / "model.keras").is_file()
