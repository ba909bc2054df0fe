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
