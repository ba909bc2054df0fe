"""Shared pytest configuration: the web app over tiny models, for every test file. Fixtures of one
area live in tests/fixtures/ (loaded below); plain builders and process stacks in tests/helpers/."""

from __future__ import annotations

import pytest

from helpers.models import write_tiny_image_model

pytest_plugins = ["fixtures.inputs", "fixtures.instructor", "fixtures.lab", "fixtures.browser"]


@pytest.fixture
def shipped_evaluation():
    """Recompute a shipped image model's test accuracy from the data; skip when either is absent."""
    from app.config import MODELS_DIR, default_data_dir
    from app.tasks import BUILTIN_TASKS

    def evaluate(slug: str) -> dict:
        from training.served import evaluate_image_task

        spec = BUILTIN_TASKS[slug]
        data_file = default_data_dir() / spec.data_path
        if not data_file.is_file():
            pytest.skip(f"no data at {data_file}")
        if not (MODELS_DIR / slug / "card.json").is_file():
            pytest.skip(f"{slug} model not trained yet")
        return evaluate_image_task(spec, str(default_data_dir()), MODELS_DIR)

    return evaluate



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


@pytest.fixture
def text_client(app, client):
    """The test client, or a skip when the app's text models did not load."""
    from app.modelstore import get_store
    from app.tasks import BUILTIN_TASKS, TEXT

    with app.app_context():
        if not all(e.available for e in get_store() if e.spec.kind == TEXT and e.slug in BUILTIN_TASKS):
            pytest.skip("text models not available")
    return client


@pytest.fixture(scope="session")
def app(make_app, tiny_models_dir):
    """The web app over the tiny models, built once per session (loading models costs seconds)."""
    return make_app(tiny_models_dir)


@pytest.fixture
def client(app):
    """A Flask test client with fresh cookies."""
    return app.test_client()



@pytest.fixture(scope="session", autouse=True)
def lab_instance_for_session(tmp_path_factory):
    """Apps built without INSTANCE_PATH keep their records and queue in a temporary folder."""
    import os

    previous = os.environ.get("LSTMLAB_INSTANCE")
    os.environ["LSTMLAB_INSTANCE"] = str(tmp_path_factory.mktemp("instance"))
    yield
    if previous is None:
        os.environ.pop("LSTMLAB_INSTANCE", None)
    else:
        os.environ["LSTMLAB_INSTANCE"] = previous
