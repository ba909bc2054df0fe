"""Faults: a full disk during a save; missing, truncated or corrupt model.keras and
card.json at serving time (the app starts, that task is unavailable with its training command,
the others keep working, /readyz says which).

A training run killed with SIGKILL mid-epoch (the model in place untouched, `--resume` continuing
from its checkpoint) is covered by tests/test_pipeline.py::test_killed_run_leaves_old_model_and_resume_continues.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
from pathlib import Path

import pytest

from training import data as data_module
from training import fit
from training.__main__ import main


@pytest.fixture
def private_runs(tmp_path, monkeypatch):
    """Checkpoints and decode caches go to tmp_path, never to the project's runs/."""
    monkeypatch.setattr(fit, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(data_module, "CACHE_DIR", tmp_path / "runs" / "cache")


def test_full_disk_during_save_fails_that_run_only(digits_npz, old_model, snapshot, tmp_path, monkeypatch, capsys, private_runs):
    models = tmp_path / "models"
    before = {slug: old_model(models, slug) for slug in ("mnist", "fashion_mnist")}
    npz = digits_npz(tmp_path / "mnist.npz", n_train=96, n_test=40)
    real_write_card = fit.write_card

    def disk_fills_up(folder, card):
        (folder / "card.json").write_text('{"half": ', encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit, "write_card", disk_fills_up)
    cmd = ["mnist", "--data", str(npz), "--models-dir", str(models), "--quick", "--baseline-epochs", "0",
           "--verbose", "0", "--architecture", "baseline", "--model-kwargs", "{}"]  # the cheapest model to trace
    assert main(cmd) == 1
    err = capsys.readouterr().err
    assert "disk is full" in err and "Traceback" not in err
    for slug, files in before.items():  # the old model, and every other model, byte-identical
        assert snapshot(models / slug) == files
    assert sorted(p.name for p in models.iterdir()) == ["fashion_mnist", "mnist"]  # no half folder

    # Space is back: the next run saves, continuing from the failed run's last epoch.
    monkeypatch.setattr(fit, "write_card", real_write_card)
    assert main(cmd + ["--resume"]) == 0
    card = json.loads((models / "mnist" / "card.json").read_text(encoding="utf-8"))
    assert card["slug"] == "mnist" and card["training"]["epochs_run"] == 1
    assert snapshot(models / "fashion_mnist") == before["fashion_mnist"]


# ----------------------------------------------------------------------------- broken model folders
LANGS = ("vi", "en")
GOOD = ("mnist", "kieu")


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory, tiny_models_dir):
    """A models/ folder where every task but mnist and kieu is damaged in a different way."""
    from helpers.models import write_tiny_image_model

    from app.tasks import BUILTIN_TASKS

    src, d = Path(tiny_models_dir), tmp_path_factory.mktemp("broken")
    if not (src / "kieu" / "model.keras").is_file():
        pytest.skip("text models not available")
    for slug in ("mnist", "kieu", "nyt_headlines"):
        shutil.copytree(src / slug, d / slug)
    shutil.copytree(src / "mnist", d / "fashion_mnist")
    for slug in ("cifar10", "cats_dogs", "faces_gender"):
        write_tiny_image_model(d, BUILTIN_TASKS[slug], plots=False)
    damage = {
        "nyt_headlines": lambda f: (f / "model.keras").unlink(),  # model missing, card present
        "fashion_mnist": lambda f: (f / "model.keras").write_bytes(os.urandom((f / "model.keras").stat().st_size)),
        "cifar10": lambda f: truncate(f / "model.keras"),
        "cats_dogs": lambda f: truncate(f / "card.json"),
        "faces_gender": lambda f: (f / "card.json").unlink(),
    }
    for slug, hurt in damage.items():
        hurt(d / slug)
    return d


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.fixture(scope="module")
def broken_client(make_app, broken_models):
    return make_app(broken_models).test_client()


def test_readyz_names_the_unavailable_tasks(broken_client):
    resp = broken_client.get("/readyz")
    body = resp.get_json()
    assert resp.status_code == 200 and body["ready"]
    assert sorted(body["ready_tasks"]) == sorted(GOOD)
    assert sorted(body["unavailable_tasks"]) == sorted(set(body["tasks"]) - set(GOOD))
    for slug in body["unavailable_tasks"]:
        task = body["tasks"][slug]
        assert task["status"] in ("missing", "error") and task["error"]
        assert task["command"] == f"python -m training {slug}"
    assert body["tasks"]["nyt_headlines"]["status"] == "missing"
    assert body["tasks"]["fashion_mnist"]["status"] == body["tasks"]["cats_dogs"]["status"] == "error"


@pytest.mark.parametrize("lang", LANGS)
def test_unavailable_tasks_show_the_command_that_trains_them(broken_client, lang):
    home = broken_client.get(f"/?lang={lang}").get_data(as_text=True)
    for slug in ("nyt_headlines", "fashion_mnist", "cifar10", "cats_dogs", "faces_gender"):
        assert f"python -m training {slug}" in home
        page = broken_client.get(f"/tasks/{slug}?lang={lang}")
        assert page.status_code == 503 and f"python -m training {slug}" in page.get_data(as_text=True)
        kind = "generate" if slug == "nyt_headlines" else "predict"
        api = broken_client.post(f"/api/v1/tasks/{slug}/{kind}?lang={lang}", json={"seed": "a"})
        assert api.status_code == 503 and api.is_json and api.get_json()["error"]


def test_the_other_tasks_keep_working(uploads, broken_client):
    png = uploads.encode(uploads.digit_like(64, 64), "PNG")
    resp = broken_client.post("/api/v1/tasks/mnist/predict", data={"file": (io.BytesIO(png), "d.png")})
    assert resp.status_code == 200 and resp.get_json()["top"]
    verse = broken_client.post("/api/v1/tasks/kieu/generate", json={"seed": "Trăm năm trong cõi", "length": 1})
    assert verse.status_code == 200 and verse.get_json()["text"]
    listed = {t["slug"]: t["status"] for t in broken_client.get("/api/v1/tasks").get_json()["tasks"]}
    assert listed["mnist"] == listed["kieu"] == "ready" and listed["cifar10"] == "error"


BAD_CARDS = [b"", b"[]", b'"just a string"', b"\xff\xfe\x00garbage", b'{"slug": "mnist",', b'{"metrics": "oops"}',
             b'{"metrics": {"test_accuracy": "high"}}', b'{"metrics": {"confusion_matrix": 3}}', b'{"layers": "x"}',
             b'{"layers": [1, 2]}', b'{"training": []}', b'{"baseline": "none"}', b'{"params_total": true}']


@pytest.mark.parametrize("card", BAD_CARDS)
def test_unreadable_card_makes_only_that_task_unavailable(tiny_models_dir, tmp_path, card):
    from app.modelstore import ERROR, Engines, load_entry
    from app.tasks import MNIST

    folder = tmp_path / "mnist"
    shutil.copytree(Path(tiny_models_dir) / "mnist", folder)
    (folder / "card.json").write_bytes(card)
    entry = load_entry(folder, MNIST, Engines(jit=False))
    assert entry.status == ERROR and not entry.available and entry.error and entry.card is None
    assert entry.status_dict()["command"] == "python -m training mnist"


def test_a_card_with_wrong_field_types_never_reaches_the_pages(make_app, tiny_models_dir, tmp_path):
    shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / "mnist")
    card = json.loads((tmp_path / "mnist" / "card.json").read_text(encoding="utf-8"))
    (tmp_path / "mnist" / "card.json").write_text(json.dumps({**card, "metrics": "oops"}), encoding="utf-8")
    client = make_app(tmp_path, PREDICT_JIT=False).test_client()
    assert client.get("/").status_code == 200 and client.get("/api/v1/tasks").status_code == 200
    assert client.get("/tasks/mnist").status_code == client.get("/tasks/mnist/card").status_code == 503
    assert "metrics" in client.get("/readyz").get_json()["tasks"]["mnist"]["error"]
