"""The bench's Code panel (the program of the form's values, live with static/js/code.js) and the
downloads of shipped tasks and API runs."""

from __future__ import annotations

import json
import re
from html import unescape
from pathlib import Path
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
    jpeg = unescape(client.post("/lab?lang=en", data={**form, "dataset": "cifar10"}).get_data(as_text=True))
    assert "from PIL import Image" in jpeg and "INPUT_SHAPE = (32, 32, 3)" in jpeg  # a JPEG data set has one too
    refused = client.post("/lab?lang=vi", data={**form, "units": "0"}).get_data(as_text=True)
    assert 'id="code-view"' in refused and re.search(r'id="code-view"[^>]*hidden', refused)
    assert re.search(r'<p class="error" id="code-error" role="status" >(.+?)</p>', refused, re.S)[1].strip()


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


# ----------------------------------------------------------------------------- shipped tasks
ROOT = Path(__file__).resolve().parents[1]
SHIPPED_CARD = {"units": 8, "epochs": 2, "seed": 3, "batch": 64, "lr": 0.002}


@pytest.fixture(scope="module")
def shipped_app(make_app, tiny_models_dir, tmp_path_factory):
    """The app over a copy of the tiny models whose MNIST card says, as `python -m training` writes
    it, that the served model is the rows-and-columns LSTM (units 8) trained with SHIPPED_CARD."""
    import shutil

    from app.tasks import MNIST
    from training.build import make_image_classifier
    from training.fit import card_header

    models = tmp_path_factory.mktemp("shipped") / "models"
    shutil.copytree(tiny_models_dir, models)
    path = models / "mnist" / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    header = card_header(MNIST, make_image_classifier(MNIST, "rows_cols", units=8), "rows_cols", {"units": 8})
    card.update(architecture="rows_cols", model_kwargs={"units": 8}, layers=header["layers"],
                params_total=header["params_total"],
                training={"epochs_requested": 2, "epochs_run": 2, "seed": 3, "early_stopping": {"patience": 6}},
                optimizer={"name": "AdamW", "peak_learning_rate": 0.002, "batch_size": 64},
                data={**card["data"], "licence": "CC BY-SA 3.0 (test)"})
    path.write_text(json.dumps(card), encoding="utf-8")
    instance = tmp_path_factory.mktemp("shipped-instance")
    return make_app(models, INSTANCE_PATH=str(instance), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}")


def built_model(source: str, data_folder: Path, monkeypatch, spec=None):
    """The model the program's Data and Model sections build (nothing trained) on a tiny MNIST, or
    on a tiny JPEG file shaped as `spec`'s."""
    from test_lab_program import data_and_model, tiny_jpeg, tiny_mnist

    from app.lab.program import is_jpeg

    jpeg = spec is not None and is_jpeg(spec)
    monkeypatch.setenv("LSTMLAB_DATA", str(tiny_jpeg(data_folder, spec) if jpeg else tiny_mnist(data_folder)))
    monkeypatch.setenv("PROGRAM_SUBSET", "100")
    scope = {"__name__": "__main__"}
    exec(compile(data_and_model(source), "program.py", "exec"), scope)
    return scope["model"]


def test_a_shipped_tasks_program_builds_its_served_model(shipped_app, tmp_path, monkeypatch):
    import nbformat

    from app.tasks import MNIST
    from training.fit import card_header

    client = shipped_app.test_client()
    response = client.get("/tasks/mnist/program.py?lang=en")
    assert response.status_code == 200
    assert response.headers["Content-Disposition"] == 'attachment; filename="lstmlab_mnist.py"'
    source = response.get_data(as_text=True)
    assert "SEED = 3" in source and '"PROGRAM_EPOCHS", 2)' in source and "BATCH_SIZE = 64" in source
    assert "LEARNING_RATE = 0.002" in source and "from app" not in source
    card = json.loads(client.get("/tasks/mnist/download/card.json").get_data(as_text=True))
    mine = card_header(MNIST, built_model(source, tmp_path / "data", monkeypatch), "rows_cols", {})
    assert [mine["layers"], mine["params_total"]] == [card["layers"], card["params_total"]]
    notebook = nbformat.reads(client.get("/tasks/mnist/program.ipynb?lang=vi").get_data(as_text=True), 4)
    nbformat.validate(notebook)
    assert notebook.cells[1].source.startswith("import os")


SHIPPED_IMAGE_TASKS = ["mnist", "fashion_mnist", "cifar10", "cats_dogs", "faces_gender"]


def real_card(slug: str) -> dict:
    """models/<slug>/card.json as shipped (the test skips where it is absent)."""
    path = ROOT / "models" / slug / "card.json"
    if not path.is_file():
        pytest.skip(f"no shipped card for {slug}")
    return json.loads(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize("slug", SHIPPED_IMAGE_TASKS)
def test_the_real_shipped_cards_programs_rebuild_their_layer_tables(slug, tmp_path, monkeypatch):
    from app.lab import program
    from app.tasks import BUILTIN_TASKS
    from training.fit import card_header

    card = real_card(slug)
    spec = BUILTIN_TASKS[slug]
    source = program.shipped_program(spec, card)
    assert f"SEED = {card['training']['seed']}" in source
    if slug == "fashion_mnist":  # its data file is not the tiny MNIST's: check the model section alone
        source = source.replace(repr(spec.data_path), repr(BUILTIN_TASKS["mnist"].data_path))
    mine = card_header(spec, built_model(source, tmp_path / "data", monkeypatch, spec), card["architecture"], {})
    assert [mine["layers"], mine["params_total"]] == [card["layers"], card["params_total"]]


@pytest.mark.parametrize("slug", ["cifar10", "cats_dogs", "faces_gender"])
def test_a_shipped_programs_phases_follow_its_cards_runs(slug):
    """One training phase per run of the card's warm-start chain, each with that run's epochs,
    learning rate, patience, weight average and CutMix; the last with the card's augmentation."""
    from app.lab import program
    from app.lab.program import SECTION
    from app.tasks import BUILTIN_TASKS

    card = real_card(slug)
    source = program.shipped_program(BUILTIN_TASKS[slug], card)
    runs = [*(card.get("warm_start") or {}).get("previous_runs", []), {"command": card["command"], **card}]
    trains = [s for s in source.split(SECTION)[3:-1]]
    assert len(trains) == len(runs)
    for i, (run, train) in enumerate(zip(runs, trains)):
        opt = run["optimizer"]
        constants = source.split(SECTION)[0] if i == 0 else train
        assert f"LEARNING_RATE = {opt['peak_learning_rate']!r}\n" in constants, i
        assert f"BATCH_SIZE = {opt['batch_size']}\n" in constants, i
        assert f"WEIGHT_AVERAGE = {float((opt.get('weight_average') or {}).get('momentum') or 0)!r}\n" in constants, i
        assert " ".join(run["command"].split()) in train, i
        assert ("WeightAverage(WEIGHT_AVERAGE" in train) == bool(opt.get("weight_average")), i
        assert (f"Train, phase {i + 1} of {len(runs)}" in train) == (len(runs) > 1), i
    last = trains[-1] if len(runs) > 1 else source.split(SECTION)[0]
    augmentation = card["training"]["augmentation"]
    assert f"CUTMIX = {float(augmentation.get('cutmix', 0.0))!r}\n" in last
    assert f"LABEL_SMOOTHING = {float(augmentation.get('label_smoothing', 0.0))!r}\n" in last
    assert f"PATIENCE = {card['training']['early_stopping']['patience']}\n" in last
    assert f'"PROGRAM_EPOCHS", {card["training"]["epochs_requested"]})' in last
    teachers = (card["training"].get("distillation") or {}).get("teachers") or []
    doc = " ".join(source.split('"""')[1].split())  # its lines wrapped
    assert ("cannot retrain the teachers" in doc) == bool(teachers)
    assert all(f"{t['test_accuracy']:.2%}" in doc for t in teachers)
    if teachers:
        assert f"{card['metrics']['test_accuracy']:.2%}" in doc
        assert f"{card['training']['distillation']['ensemble_test_accuracy']:.2%}" in doc


@pytest.fixture(scope="module")
def renet_app(make_app, tiny_models_dir, tmp_path_factory):
    """The app over the tiny models plus a cifar10 folder carrying the real, distilled cifar10 card
    (with a tiny model: the page and the program read only the card)."""
    import shutil

    from app.tasks import CIFAR10
    from helpers.models import write_tiny_image_model

    card = real_card("cifar10")
    models = tmp_path_factory.mktemp("renet") / "models"
    shutil.copytree(tiny_models_dir, models)
    write_tiny_image_model(models, CIFAR10)
    card = {k: v for k, v in card.items() if k != "export"}
    (models / "cifar10" / "card.json").write_text(json.dumps(card), encoding="utf-8")
    instance = tmp_path_factory.mktemp("renet-instance")
    return make_app(models, INSTANCE_PATH=str(instance), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}")


@pytest.mark.parametrize("lang, words, teacher", [("en", "cannot retrain the teachers", "80.55%"),
                                                   ("vi", "không thể huấn luyện lại các mô hình thầy", "80,55")])
def test_a_distilled_tasks_page_and_program_say_what_the_program_leaves_out(renet_app, lang, words, teacher):
    import nbformat

    client = renet_app.test_client()
    html = unescape(client.get(f"/tasks/cifar10/card?lang={lang}").get_data(as_text=True))
    assert 'id="program-py" href="/tasks/cifar10/program.py"' in html
    caveat = re.search(r'<p class="hint" id="program-caveat">(.*?)</p>', html, re.S)[1]
    assert words in caveat and teacher in caveat
    response = client.get(f"/tasks/cifar10/program.py?lang={lang}")
    assert response.status_code == 200 and response.headers["Content-Disposition"] == 'attachment; filename="lstmlab_cifar10.py"'
    source = response.get_data(as_text=True)
    assert words in " ".join(source.split('"""')[1].split()) and "from PIL import Image" in source
    compile(source, "program.py", "exec")
    notebook = nbformat.reads(client.get(f"/tasks/cifar10/program.ipynb?lang={lang}").get_data(as_text=True), 4)
    assert words in " ".join(notebook.cells[0].source.split())
    assert sum(c.source.startswith("## ") and " 3" in c.source for c in notebook.cells if c.cell_type == "markdown") == 3


@pytest.mark.parametrize("slug", ["kieu", "nyt_headlines"])
def test_tasks_the_program_cannot_reproduce_are_refused_in_both_languages(shipped_app, slug):
    client = shipped_app.test_client()
    for lang, words in (("en", "No standalone program"), ("vi", "Chưa có chương trình độc lập")):
        response = client.get(f"/tasks/{slug}/program.py?lang={lang}")
        assert response.status_code == 404
        assert words in response.get_data(as_text=True) and "Traceback" not in response.get_data(as_text=True)
    assert client.get("/tasks/nosuch/program.ipynb").status_code == 404


@pytest.mark.parametrize("lang, words", [("en", "not available"), ("vi", "chưa sẵn sàng")])
def test_a_task_without_a_model_has_no_program(shipped_app, lang, words):
    response = shipped_app.test_client().get(f"/tasks/cats_dogs/program.py?lang={lang}")
    assert response.status_code == 404 and words in response.get_data(as_text=True)
    assert "Traceback" not in response.get_data(as_text=True)


def test_a_shipped_tasks_card_page_offers_its_program_and_files(shipped_app):
    client = shipped_app.test_client()
    html = client.get("/tasks/mnist/card?lang=vi").get_data(as_text=True)
    assert 'id="program-py" href="/tasks/mnist/program.py"' in html
    assert 'href="/tasks/mnist/download/model.keras"' in html and 'href="/tasks/mnist/download/card.json"' in html
    assert "Nguồn dữ liệu" in html and "CC BY-SA 3.0 (test)" in html
    refused = client.get("/tasks/kieu/card?lang=en").get_data(as_text=True)
    assert 'id="program-refusal"' in refused and 'id="program-py"' not in refused
    for name in ("model.keras", "model.tflite", "card.json"):
        response = client.get(f"/tasks/mnist/download/{name}")
        assert response.status_code == 200, name
        assert f"filename=lstmlab_mnist_{name}" in response.headers["Content-Disposition"]
        assert response.headers["X-Provenance"].endswith("licence: CC BY-SA 3.0 (test)")
    for bad in ("/tasks/mnist/download/history.csv", "/tasks/mnist/download/..%2Fcard.json",
                "/tasks/nosuch/download/model.keras"):
        response = client.get(bad + "?lang=en")
        assert response.status_code == 404, bad
        assert "Traceback" not in response.get_data(as_text=True)


# ----------------------------------------------------------------------------- the lab preset's notes
@pytest.mark.parametrize("lang, fixed", [("en", "divided the labels by 255"), ("vi", "chia cả nhãn cho 255")])
def test_the_lab_presets_program_notes_each_fix(lab_app, lang, fixed):
    client = lab_app.test_client()
    lab = client.get("/lab/program.py", query_string={**form_query("lab"), "lang": lang}).get_data(as_text=True)
    doc = lab.split('"""')[1]
    assert fixed in doc and ("plain SGD" in doc or "SGD thuần" in doc)
    assert 'astype("int64")  # ' in lab  # the labels' fix, where the labels are read
    assert "SGD" in lab.split(program_section("Train" if lang == "en" else "Huấn luyện"))[1].split("\n")[1]
    fast = client.get("/lab/program.py", query_string={**form_query("fast"), "lang": lang}).get_data(as_text=True)
    assert fixed not in fast and "SGD" not in fast


def form_query(name: str) -> dict:
    """The bench form's fields of preset `name` on MNIST."""
    from dataclasses import asdict

    from app.lab.recipes import preset
    from app.tasks import MNIST

    recipe, settings = preset(name, MNIST)
    fields = {**asdict(recipe), **asdict(settings), "dataset": "mnist"}
    fields["bidirectional"] = "on" if recipe.bidirectional else ""
    return fields


def program_section(title: str) -> str:
    from app.lab.program import SECTION

    return SECTION + title + "\n"


# ----------------------------------------------------------------------------- the API's model download
def test_the_api_gives_a_runs_model_to_its_owner_only(lab_app, finished_run):
    from test_lab_program import owner_client

    from app.records import RUNNING

    run_id = finished_run(owner="c" * 32)
    mine, other = owner_client(lab_app, "c" * 32), owner_client(lab_app, "d" * 32)
    response = mine.get(f"/api/v1/runs/{run_id}/model")
    assert response.status_code == 200 and response.data[:2] == b"PK"  # a .keras archive is a zip
    assert f"filename=lstmlab_{run_id}_model.keras" in response.headers["Content-Disposition"]
    assert response.headers["X-Provenance"].startswith("data: ")
    tflite = mine.get(f"/api/v1/runs/{run_id}/model?format=tflite")
    assert tflite.status_code == 200 and tflite.data[4:8] == b"TFL3"
    refused = other.get(f"/api/v1/runs/{run_id}/model")
    assert refused.status_code == 403 and refused.json["error_vi"] and refused.json["error_en"]
    assert mine.get(f"/api/v1/runs/{run_id}/model?format=h5").status_code == 400
    assert mine.get(f"/api/v1/runs/{finished_run(owner='c' * 32, status=RUNNING)}/model").status_code == 404
    assert mine.get("/api/v1/runs/nosuchrun/model").status_code == 404


def test_instructors_download_any_runs_model(instructor_app, signed_in, finished_lab_run):
    assert instructor_app.test_client().get(f"/api/v1/runs/{finished_lab_run}/model").status_code == 403
    assert signed_in.get(f"/api/v1/runs/{finished_lab_run}/model").status_code == 200
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    response = instructor_app.test_client().get(f"/api/v1/runs/{finished_lab_run}/model?format=tflite",
                                               headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_a_runs_card_links_its_program_and_the_owners_files(lab_app, finished_run):
    from test_lab_program import owner_client

    run_id = finished_run(owner="e" * 32)
    html = owner_client(lab_app, "e" * 32).get(f"/lab/runs/{run_id}/card?lang=en").get_data(as_text=True)
    assert f'href="/lab/runs/{run_id}/program.ipynb"' in html and f'/lab/runs/{run_id}/download/model.keras' in html
    other = owner_client(lab_app, "f" * 32).get(f"/lab/runs/{run_id}/card?lang=en").get_data(as_text=True)
    assert f'href="/lab/runs/{run_id}/program.py"' in other and "/download/" not in other


def test_a_finished_runs_page_links_its_program_and_the_owners_files(lab_app, finished_run):
    from test_lab_program import owner_client

    run_id = finished_run(owner="g" * 32)
    html = owner_client(lab_app, "g" * 32).get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert f'id="program-py" href="/lab/runs/{run_id}/program.py"' in html
    assert all(f"/lab/runs/{run_id}/download/{n}" in html for n in ("model.keras", "model.tflite", "card.json"))
    other = owner_client(lab_app, "h" * 32).get(f"/lab/runs/{run_id}?lang=en").get_data(as_text=True)
    assert f'id="program-ipynb" href="/lab/runs/{run_id}/program.ipynb"' in other and "/download/" not in other
