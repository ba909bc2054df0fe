"""Presets on small class data sets: scaled to the data (a batch that fits, enough optimiser
steps), a scaled preset that learns above chance on a tiny instructor folder (a real run, small),
and the bench's warning before Submit (form, /lab/estimate and the API's answer) when a recipe
cannot learn much from so little."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from app.instructor import datasets as instructor_datasets
from app.lab import recipes
from app.lab.recipes import RunSettings
from app.tasks import MNIST

SMALL = 58  # the instructor's data set of the issue


def test_presets_scale_with_a_small_data_set_and_keep_large_ones():
    for name in recipes.PRESET_NAMES:
        assert recipes.preset(name, MNIST, 60000) == recipes.preset(name, MNIST)  # MNIST: unchanged
        _, s = recipes.preset(name, MNIST, SMALL)
        assert s.batch_size == 8 and recipes.optimiser_steps(s, SMALL) >= recipes.MIN_STEPS
        assert s.epochs <= recipes.Limits.max_epochs
    _, capped = recipes.preset("fast", MNIST, SMALL, max_epochs=10)
    assert capped.epochs == 10  # never past the server's limit
    assert recipes.optimiser_steps(RunSettings(epochs=6, batch_size=128), SMALL) == 6  # the run


def small_spec(per_class: dict[str, int], folder="unused") -> object:
    """The TaskSpec an instructor's saved data set gets (app.instructor.datasets.dataset_spec)."""
    train = sum(per_class.values())
    record = {"slug": "small_class", "title_en": "Small", "title_vi": "Nhỏ", "classes": sorted(per_class),
              "image_size": 16, "colour": "grey", "split": {},
              "counts": {"train": train, "val": 0, "test": 12,
                         "per_class": {c: {"train": n, "val": 0, "test": 6} for c, n in per_class.items()}}}
    return instructor_datasets.dataset_spec(record, folder)


def test_the_bench_warns_before_submit_and_the_api_answers_with_the_warning(make_app, tiny_models_dir, tmp_path,
                                                                              monkeypatch):
    spec = small_spec({"cat": 50, "dog": 4})
    monkeypatch.setattr(recipes, "list_datasets", lambda: [spec])
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_QUEUE_URL="",
                   LSTMLAB_DATABASE_URL="")
    client = app.test_client()
    form = {"dataset": "small_class", "reading": "rows", "cell": "lstm", "units": "128", "layers": "1",
            "dropout": "0", "epochs": "6", "batch_size": "128", "learning_rate": "0.003", "subset": "0", "seed": "1"}
    en = client.get("/lab/estimate", query_string={**form, "lang": "en"}).get_json()["warnings"]
    assert len(en) == 2 and "only 6 optimiser steps" in en[0] and "dog: 4" in en[1]
    vi = client.get("/lab/estimate", query_string={**form, "lang": "vi"}).get_json()["warnings"]
    assert "chỉ có 6 bước tối ưu" in vi[0] and "dog: 4" in vi[1]
    page = client.post("/lab?lang=en", data={**form, "action": "check"}).get_data(as_text=True)
    assert page.count('class="warning" role="alert"') == 2
    # the preset button fills in the scaled preset: no step warning left, the class one stays
    page = client.post("/lab?lang=en", data={**form, "preset": "fast"}).get_data(as_text=True)
    _, scaled = recipes.preset("fast", spec, 54)
    assert f'id="f-epochs" name="epochs" value="{scaled.epochs}"' in page
    assert f'id="f-batch_size" name="batch_size" value="{scaled.batch_size}"' in page
    fixed = {**form, "epochs": str(scaled.epochs), "batch_size": str(scaled.batch_size)}
    assert len(client.get("/lab/estimate", query_string=fixed).get_json()["warnings"]) == 1
    body = {"dataset": "small_class", "recipe": {"units": 8, "layers": 1}, "epochs": 1, "batch_size": 128}
    answer = client.post("/api/v1/runs", json=body)
    assert answer.status_code == 202
    warnings = answer.get_json()["warnings"]
    assert len(warnings) == 2 and all(w["en"] and w["vi"] and w["en"] != w["vi"] for w in warnings)


def test_the_scaled_fast_preset_learns_a_tiny_class_data_set(tmp_path):
    """58 pictures in two classes (bright left half or bright right half, noisy): the issue's unscaled
    run makes 6 optimiser steps; the scaled fast preset, trained by the very training function the
    bench calls, classifies the held-out pictures well above chance (50%)."""
    from training.config import TrainConfig
    from training.images import train_image_task

    rng = np.random.default_rng(0)
    folder = tmp_path / "small"
    for label, cls in enumerate(("left", "right")):
        (folder / cls).mkdir(parents=True)
        for i in range(SMALL // 2):
            pixels = rng.integers(0, 90, (16, 16)).astype(np.uint8)
            pixels[:, 8 * label:8 * label + 8] += 140
            Image.fromarray(pixels, "L").save(folder / cls / f"{i}.png")
    spec = small_spec({"left": 23, "right": 23}, str(folder))
    recipe, settings = recipes.preset("fast", spec, recipes.training_size(spec))
    assert settings.batch_size == 8 and settings.epochs == recipes.Limits.max_epochs  # 200 steps capped at 30 epochs
    assert recipes.optimiser_steps(settings, recipes.training_size(spec)) == 30 * 6  # 42 images to train on
    config = TrainConfig(epochs=settings.epochs, batch_size=settings.batch_size, learning_rate=settings.learning_rate,
                         seed=1, architecture="recipe", model_kwargs=json.dumps(dataclasses.asdict(recipe)),
                         baseline_epochs=0, verbose=0, int8=False)
    out = train_image_task(spec, config, tmp_path / "runs", slug="small")
    card = json.loads((out / "card.json").read_text())
    assert card["metrics"]["test_count"] >= 10
    assert card["metrics"]["test_accuracy"] >= 0.8
