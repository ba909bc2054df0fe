"""Shared pytest configuration and fixtures for LSTM Lab."""

from __future__ import annotations

import pytest


def pytest_configure(config):
    """Markers used across the test files."""
    config.addinivalue_line(
        "markers", "slow: full-data or multi-process test (seconds to a minute); deselect with -m 'not slow'")


@pytest.fixture
def shipped_evaluation():
    """Recompute a shipped image model's test accuracy from the data; skip when either is absent."""
    from app.config import MODELS_DIR, default_data_dir
    from app.tasks import BUILTIN_TASKS

    def evaluate(slug: str) -> dict:
        from training.images import evaluate_image_task

        spec = BUILTIN_TASKS[slug]
        data_file = default_data_dir() / spec.data_path
        if not data_file.is_file():
            pytest.skip(f"no data at {data_file}")
        if not (MODELS_DIR / slug / "card.json").is_file():
            pytest.skip(f"{slug} model not trained yet")
        return evaluate_image_task(spec, str(default_data_dir()), MODELS_DIR)

    return evaluate


# ----------------------------------------------------------------------------- the web app
def write_tiny_image_model(models_dir, spec, plots: bool = True, export: bool = False):
    """An untrained baseline model for `spec` with a minimal valid card (and two small plots),
    saved like a training run would save it; its metrics are measured on a few random images.
    With `export`, also its checked model.tflite and the card's `export` block, as training writes."""
    import io

    import keras
    import numpy as np
    from PIL import Image

    from training import fit
    from training.build import BASELINE_RECIPE, make_image_classifier

    keras.utils.set_random_seed(0)
    model = make_image_classifier(spec, "baseline")
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (16, *spec.input_shape)).astype(np.float32)
    y = rng.integers(0, len(spec.classes), 16)
    metrics = fit.classification_metrics(y, keras.ops.convert_to_numpy(model(x)), len(spec.classes))
    card = {"slug": spec.slug, "kind": spec.kind, "task": spec.to_dict(), "architecture": "baseline",
            "layers": fit.layer_table(model), "params_total": int(model.count_params()),
            "optimizer": {"name": "none"}, "training": {"epochs_run": 0, "untrained": True},
            "data": {"source": "random pixels (test fixture)", "counts": {"test": len(y)}},
            "metrics": metrics, "history": {},
            "baseline": {"recipe": BASELINE_RECIPE, "test_accuracy": metrics["test_accuracy"]},
            "command": f"python -m training {spec.slug}"}

    def write(folder):
        model.save(folder / "model.keras")
        if export:
            from training.export import export_model, file_sha256

            card["export"] = export_model(model, spec, folder, file_sha256(folder / "model.keras"), x,
                                          "16 random images")
        fit.write_card(folder, card)
        if plots:
            for name in ("training_curves.png", "confusion_matrix.png"):
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (200, 220, 240)).save(buf, "PNG")
                (folder / name).write_bytes(buf.getvalue())

    return fit.save_atomically(models_dir, spec.slug, write)


@pytest.fixture(scope="session")
def tiny_models_dir(tmp_path_factory):
    """models/ for the web tests: tiny untrained mnist (served by LiteRT from its model.tflite),
    nyt_headlines and kieu (others missing)."""
    from app.tasks import KIEU, MNIST, NYT_HEADLINES

    d = tmp_path_factory.mktemp("models")
    write_tiny_image_model(d, MNIST, export=True)
    try:
        from training.textgen import write_tiny_text_model
    except ImportError:  # the text pipeline has not landed: the web tests cover images only
        return d
    for spec in (NYT_HEADLINES, KIEU):
        write_tiny_text_model(d, spec)
    return d


@pytest.fixture(scope="session")
def make_app():
    """create_app for tests: `make_app(models_dir, **config)` (a fresh app each call)."""
    from app import create_app

    def make(models_dir, **config):
        return create_app({"TESTING": True, "SECRET_KEY": "test", "MODELS_DIR": str(models_dir), **config})

    return make


@pytest.fixture(scope="session")
def app(make_app, tiny_models_dir):
    """The web app over the tiny models, built once per session (loading models costs seconds)."""
    return make_app(tiny_models_dir)


@pytest.fixture
def client(app):
    """A Flask test client with fresh cookies."""
    return app.test_client()


# ============================================================================ INSTRUCTOR fixtures
# (issue 14: the instructor console's tests; an app with its own instance folder per test)
INSTRUCTOR_PASSWORD = "correct horse battery"


@pytest.fixture
def instructor_app(make_app, tiny_models_dir, tmp_path):
    """A fresh app over a private copy of the tiny models, with its own instance folder (records,
    queue, data sets) under tmp_path; DATASET_SERVER_ROOT is tmp_path/server."""
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir, models)
    (tmp_path / "server").mkdir()
    return make_app(models, INSTANCE_PATH=str(tmp_path / "instance"), DATASET_SERVER_ROOT=str(tmp_path / "server"),
                    MODELS_RELOAD_SECONDS=0)


@pytest.fixture
def add_instructor():
    """`add_instructor(app, name)`: create an account through the CLI (password typed twice)."""
    def add(app, name: str = "teacher", password: str = INSTRUCTOR_PASSWORD):
        result = app.test_cli_runner().invoke(args=["instructor", "add", name], input=f"{password}\n{password}\n")
        assert result.exit_code == 0, result.output
        return name
    return add


@pytest.fixture
def signed_in(instructor_app, add_instructor):
    """A test client signed in as instructor "teacher"."""
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    response = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    return client


def make_zip(files: dict) -> bytes:
    """A zip archive in memory: {name: bytes} (a name ending in '/' is a folder)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def png_bytes(colour=(200, 30, 30), size=(24, 24), mode="RGB") -> bytes:
    """A small PNG of one colour with a few noisy pixels."""
    import io

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(sum(colour) + size[0])
    arr = np.full((size[1], size[0], 3), colour, np.uint8)
    arr = np.clip(arr.astype(int) + rng.integers(-20, 20, arr.shape), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).convert(mode).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def class_zip():
    """`class_zip(n=6, extra={})`: a zip of two class folders (red, blue) of n PNGs each."""
    def build(n: int = 6, extra: dict | None = None, wrapper: str = "shapes/") -> bytes:
        files = {f"{wrapper}red/{i}.png": png_bytes((220, 40, 40)) for i in range(n)}
        files.update({f"{wrapper}blue/{i}.png": png_bytes((40, 40, 220)) for i in range(n)})
        files.update(extra or {})
        return make_zip(files)
    return build


# ============================================================================ BENCH (lab pages)
# The lab bench's pages over a throw-away instance folder (records, queue, runs), and finished
# runs written the way a consumer writes them: a record plus <instance>/runs/<id>/ with a tiny
# exported model and its card.
@pytest.fixture(scope="module")
def lab_app(make_app, tiny_models_dir, tmp_path_factory):
    """The web app with the lab bench on a fresh instance folder (SQLite records and queue)."""
    instance = tmp_path_factory.mktemp("lab-instance")
    return make_app(tiny_models_dir, INSTANCE_PATH=str(instance), LSTMLAB_QUEUE_URL="",
                    LSTMLAB_DATABASE_URL=f"sqlite:///{instance / 'records.sqlite3'}")


@pytest.fixture(scope="module")
def finished_run(lab_app, tmp_path_factory):
    """`finished_run(**fields)` -> id of a finished MNIST run record with a served model folder."""
    import datetime as dt
    import json
    import shutil
    from pathlib import Path

    from app.records import FINISHED, Run, db
    from app.tasks import MNIST

    made = {}

    def make(**fields):
        if "model" not in made:  # one tiny exported model, copied per run
            made["model"] = write_tiny_image_model(tmp_path_factory.mktemp("run-model"), MNIST, export=True)
        now = dt.datetime.now(dt.timezone.utc)
        card = json.loads((made["model"] / "card.json").read_text())
        history = fields.pop("history", [{"epoch": i, "loss": 1.0 / i, "accuracy": 0.8 + i / 100, "val_loss": 1.2 / i,
                                          "val_accuracy": 0.78 + i / 100, "seconds": 10.0} for i in (1, 2, 3)])
        values = {"dataset": "mnist", "recipe": {"reading": "rows", "cell": "lstm", "units": 64, "layers": 2,
                                                 "bidirectional": False, "dropout": 0.2},
                  "settings": {"epochs": 3, "batch_size": 128, "learning_rate": 0.001, "subset": 0, "seed": 1},
                  "nickname": "", "owner": "someone-else", "client": "127.0.0.1", "status": FINISHED,
                  "created_at": now - dt.timedelta(seconds=50), "started_at": now - dt.timedelta(seconds=45),
                  "finished_at": now, "history": history, "progress": {}, "params": card["params_total"],
                  "seconds": 30.0, "metrics": card["metrics"]}
        values.update(fields)
        with lab_app.app_context():
            run = Run(**values)
            db.session.add(run)
            db.session.commit()
            run_id = run.id
        folder = Path(lab_app.instance_path) / "runs" / run_id
        folder.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(made["model"], folder)
        return run_id

    return make
