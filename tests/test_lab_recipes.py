"""The lab bench's recipes: defaults, validation with bilingual refusals, limits from config,
presets, the pure-Python parameter count (against Keras), and the run-time estimate."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict

import pytest

from app.errors import InvalidInput
from app.lab import recipes
from app.lab.recipes import Limits, Recipe, RunSettings, Throughput
from app.tasks import BUILTIN_TASKS, CATS_DOGS, CIFAR10, MNIST

DATASETS = recipes.available_datasets()


def payload(**kw) -> dict:
    return {"dataset": "mnist", **kw}


# ----------------------------------------------------------------------------- parameter count
@pytest.mark.parametrize("spec, recipe", [
    (MNIST, Recipe()),  # the lab's recipe
    (MNIST, Recipe("rows", "lstm", 128, 1, False, 0.0)),  # the fast preset
    (MNIST, Recipe("rows_cols", "gru", 16, 2, True, 0.3)),
    (MNIST, Recipe("patches", "simple_rnn", 8, 1, False, 0.0)),  # 28 px: 3-px patches, cropped to 27
    (CIFAR10, Recipe("patches", "lstm", 12, 2, True, 0.1)),
    (CATS_DOGS, Recipe("rows", "gru", 10, 3, False, 0.0)),
    (CIFAR10, Recipe("rows_cols", "simple_rnn", 5, 1, True, 0.0)),
])
def test_param_count_equals_keras(spec, recipe):
    from training.build import make_recipe_model

    model = make_recipe_model(spec, **asdict(recipe))
    assert recipes.param_count(spec, recipe) == model.count_params()
    assert recipes.param_count(spec, asdict(recipe)) == model.count_params()


def test_lab_preset_is_the_seed_notebooks_model():
    """LSTM(64) → Dropout → LSTM(64) → Dense(32) → Dense(10): the baseline builder's parameters."""
    from training.build import make_baseline

    recipe, settings = recipes.preset("lab", MNIST)
    assert recipes.param_count(MNIST, recipe) == make_baseline(MNIST).count_params()
    assert (recipe.reading, recipe.cell, recipe.units, recipe.layers, recipe.bidirectional) == ("rows", "lstm", 64, 2, False)


def test_cost_grows_with_steps_units_and_layers():
    def cost(spec, **kw):
        return recipes.batch_cost(spec, Recipe(**kw), 128)

    assert cost(MNIST, units=64) > cost(MNIST, units=32)
    assert cost(MNIST, units=64, layers=2) > 1.9 * cost(MNIST, units=64, layers=1)
    assert cost(MNIST, units=32, bidirectional=True) > 1.9 * cost(MNIST, units=32)
    assert cost(CIFAR10, units=32) > cost(MNIST, units=32)  # 32 steps of 96 features
    assert recipes.batch_cost(MNIST, Recipe(), 256) > recipes.batch_cost(MNIST, Recipe(), 128)


# ----------------------------------------------------------------------------- validation
def test_defaults_fill_every_missing_key():
    recipe, settings = recipes.validate(payload(), Limits(), DATASETS)
    assert recipe == asdict(Recipe())
    assert settings == asdict(RunSettings())


def test_form_strings_are_accepted():
    recipe, settings = recipes.validate(payload(recipe={"units": "32", "layers": "1", "dropout": "0,1",
                                                        "bidirectional": "on", "cell": "gru"},
                                                epochs="2", learning_rate="0.003", subset="1000", seed="7"),
                                        Limits(), DATASETS)
    assert recipe == {"reading": "rows", "cell": "gru", "units": 32, "layers": 1, "bidirectional": True, "dropout": 0.1}
    assert settings == {"epochs": 2, "batch_size": 128, "learning_rate": 0.003, "subset": 1000, "seed": 7}


@pytest.mark.parametrize("bad, words", [
    ({"dataset": "imagenet"}, ("imagenet", "mnist")),
    ({"dataset": None}, ("None",)),
    ({"recipe": {"units": 0}}, ("units", "4", "512")),
    ({"recipe": {"units": "many"}}, ("units", "whole number")),
    ({"recipe": {"units": 1.5}}, ("units", "whole number")),
    ({"recipe": {"units": True}}, ("units",)),
    ({"recipe": {"layers": 9}}, ("layers",)),
    ({"recipe": {"cell": "transformer"}}, ("cell", "lstm")),
    ({"recipe": {"reading": "spiral"}}, ("reading", "rows")),
    ({"recipe": {"dropout": 0.95}}, ("dropout",)),
    ({"recipe": {"dropout": "nan"}}, ("dropout",)),
    ({"recipe": {"bidirectional": "maybe"}}, ("bidirectional",)),
    ({"recipe": {"kernel": 3}}, ("kernel",)),
    ({"recipe": [1, 2]}, ("recipe",)),
    ({"epochs": 0}, ("epochs",)),
    ({"epochs": 31}, ("epochs", "30")),
    ({"batch_size": 2}, ("batch size",)),
    ({"learning_rate": 5}, ("learning rate",)),
    ({"learning_rate": "fast"}, ("learning rate", "number")),
    ({"learning_rate": 10**400}, ("learning rate", "number")),
    ({"recipe": {"dropout": -(10**400)}}, ("dropout", "number")),
    ({"subset": 50}, ("training subset",)),
    ({"seed": -1}, ("random seed",)),
    ({"optimizer": "sgd"}, ("optimizer",)),
])
def test_bad_input_is_refused_in_both_languages(bad, words):
    with pytest.raises(InvalidInput) as info:
        recipes.validate({**payload(), **bad}, Limits(), DATASETS)
    exc = info.value
    assert exc.status == 400
    for word in words:
        assert word in exc.en
    assert exc.vi and exc.en


def test_not_a_json_object():
    with pytest.raises(InvalidInput):
        recipes.validate(["mnist"], Limits(), DATASETS)


def test_too_many_parameters_is_refused():
    with pytest.raises(InvalidInput) as info:
        recipes.validate(payload(recipe={"units": 512, "layers": 4, "bidirectional": True}), Limits(), DATASETS)
    assert "parameters" in info.value.en and "2,000,000" in info.value.en


def test_too_long_is_refused_only_with_a_throughput():
    slow = Throughput(seconds_per_unit=1.0, overhead_seconds=0)
    big = payload(epochs=30)
    with pytest.raises(InvalidInput) as info:
        recipes.validate({**big, "subset": 20000}, Limits(), DATASETS, slow)
    assert "minutes" in info.value.en
    recipes.validate({**big, "subset": 20000}, Limits(), DATASETS)  # no measurement: no time limit


def test_subset_limit_caps_all_images():
    _, settings = recipes.validate(payload(subset=0), Limits(max_subset=5000), DATASETS)
    assert settings["subset"] == 0  # unknown training size (no card given): the worker caps it
    with pytest.raises(InvalidInput):
        recipes.validate(payload(subset=6000), Limits(max_subset=5000), DATASETS)


def test_nickname():
    assert recipes.validate_nickname("  Lan   Anh ") == "Lan Anh"
    assert recipes.validate_nickname(None) == ""
    for bad in ("x" * 41, "a\x00b", 12):
        with pytest.raises(InvalidInput):
            recipes.validate_nickname(bad)


def test_refusals_are_translated(app):
    """Inside the app the Vietnamese text comes from the catalogue, not the English msgid."""
    with app.test_request_context("/?lang=en"):
        with pytest.raises(InvalidInput) as info:
            recipes.validate(payload(recipe={"units": 0}), Limits(), DATASETS)
    assert info.value.vi != info.value.en
    assert "units" in info.value.en


# ----------------------------------------------------------------------------- limits, presets
def test_limits_from_config_then_overrides():
    limits = Limits.from_config({"LAB_MAX_EPOCHS": "5", "LAB_RUNS_PER_BROWSER": 1}, {"max_params": 1000})
    assert (limits.max_epochs, limits.runs_per_browser, limits.max_params) == (5, 1, 1000)
    assert Limits.from_config({}) == Limits()


@pytest.mark.parametrize("slug", sorted(DATASETS))
@pytest.mark.parametrize("name", recipes.PRESET_NAMES)
def test_every_preset_is_valid_on_every_data_set(slug, name):
    recipe, settings = recipes.preset(name, BUILTIN_TASKS[slug])
    got = recipes.validate({"dataset": slug, "recipe": asdict(recipe), **asdict(settings)}, Limits(), DATASETS)
    assert got == (asdict(recipe), asdict(settings))


def test_shipped_preset_follows_the_task_registry():
    recipe, settings = recipes.preset("shipped", CIFAR10)
    assert recipe.reading == "patches" and recipe.bidirectional
    assert (settings.epochs, settings.batch_size, settings.learning_rate) == (CIFAR10.epochs, CIFAR10.batch_size,
                                                                              CIFAR10.learning_rate)
    assert recipes.preset("shipped", MNIST)[0].reading == "rows_cols"
    with pytest.raises(InvalidInput):
        recipes.preset("huge", MNIST)


# ----------------------------------------------------------------------------- estimate
def test_estimate_scales_with_epochs_and_subset():
    t = Throughput(seconds_per_unit=1e-4, overhead_seconds=10)
    r = Recipe()
    one = recipes.estimate_seconds(MNIST, r, RunSettings(epochs=1, subset=10000), t)
    two = recipes.estimate_seconds(MNIST, r, RunSettings(epochs=2, subset=10000), t)
    assert two - 10 == pytest.approx(2 * (one - 10))
    assert recipes.estimate_seconds(MNIST, r, RunSettings(epochs=1), t, train_size=60000) - 10 == pytest.approx(6 * (one - 10), rel=0.01)
    assert recipes.estimate_seconds(MNIST, r, RunSettings(epochs=1), t) is None  # size unknown


def test_throughput_measured_from_finished_runs():
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    default = Throughput(1.0, 99.0)
    settings = asdict(RunSettings(epochs=2, subset=10000))
    cost = recipes.epoch_cost(MNIST, Recipe(), settings, None)
    run = {"dataset": "mnist", "recipe": asdict(Recipe()), "settings": settings,
           "history": [{"epoch": 1, "seconds": 10.0}, {"epoch": 2, "seconds": 10.0}],
           "started_at": t0, "finished_at": t0 + dt.timedelta(seconds=35)}
    cost_of = recipes.image_cost(DATASETS)
    got = recipes.measure_throughput([run, {"dataset": "nope", "history": [{"seconds": 1.0}]}, {**run, "history": []}],
                                     cost_of, default)
    assert got.seconds_per_unit == pytest.approx(10.0 / cost)
    assert got.overhead_seconds == pytest.approx(15.0)
    assert got.runs == 1
    assert recipes.measure_throughput([], cost_of, default) is default
    # the estimate of the same run from its own measurement is its measured time
    assert recipes.estimate_seconds(MNIST, Recipe(), settings, got) == pytest.approx(35.0)


def test_training_size_from_the_shipped_card(tmp_path):
    import json

    (tmp_path / "mnist").mkdir()
    (tmp_path / "mnist" / "card.json").write_text(json.dumps({"data": {"counts": {"train": 54000, "validation": 6000}}}))
    assert recipes.training_size(MNIST, tmp_path) == 60000
    assert recipes.training_size(CIFAR10, tmp_path) is None
    with pytest.raises(InvalidInput) as info:
        recipes.validate(payload(subset=60001), Limits(), DATASETS, models_dir=tmp_path)
    assert "60000" in info.value.en
    _, settings = recipes.validate(payload(subset=0), Limits(max_subset=5000), DATASETS, models_dir=tmp_path)
    assert settings["subset"] == 5000  # "all" within the limit
