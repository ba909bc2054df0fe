"""Text recipes on the bench (app/lab/textrecipes.py): presets, validation, bilingual refusals."""

import json
from pathlib import Path

import pytest

from app.errors import InvalidInput
from app.lab.recipes import Limits
from app.lab.textrecipes import (
    FAST_EPOCHS,
    FAST_STEPS,
    TEXT_PRESET_NAMES,
    TextRecipe,
    model_kwargs,
    text_datasets,
    text_param_count,
    text_preset,
    training_argv,
    training_sequences,
    validate_text,
)
from app.tasks import BUILTIN_TASKS


@pytest.mark.parametrize("slug", ["kieu", "nyt_headlines"])
@pytest.mark.parametrize("name", TEXT_PRESET_NAMES)
def test_every_preset_validates(slug, name):
    recipe, settings = text_preset(name, BUILTIN_TASKS[slug])
    payload = {"dataset": slug, "recipe": recipe.__dict__, **settings.__dict__}
    r, s = validate_text(payload, Limits(max_epochs=100), vocab_size=3000)
    assert r == recipe.__dict__ and s == settings.__dict__


def test_lab_preset_is_the_seed_notebook_model():
    recipe, _ = text_preset("lab", BUILTIN_TASKS["nyt_headlines"])
    assert (recipe.embedding, recipe.cell, recipe.units, recipe.dropout) == (10, "lstm", 100, 0.1)


def test_shipped_preset_follows_the_task():
    recipe, settings = text_preset("shipped", BUILTIN_TASKS["nyt_headlines"])
    assert (recipe.embedding, recipe.units, recipe.tied) == (200, 384, True)
    assert settings.epochs == BUILTIN_TASKS["nyt_headlines"].epochs


def test_shipped_kieu_preset_is_the_shipped_model_and_command():
    """The preset builds the shipped Kiều network (its card's keywords and parameter count) and
    trains it as the card's command did (batch, learning rate, seed, cut-off, epochs)."""
    card = json.loads((Path(__file__).parents[1] / "models" / "kieu" / "card.json").read_text(encoding="utf-8"))
    recipe, settings = text_preset("shipped", BUILTIN_TASKS["kieu"])
    assert model_kwargs(recipe) == {**card["model_kwargs"], "tied": False}
    assert text_param_count(recipe, card["vocabulary"]["size"]) == card["params_total"]
    command = card["command"].split()
    flag = lambda name: command[command.index(name) + 1]  # noqa: E731
    assert (settings.batch_size, settings.epochs) == (int(flag("--batch-size")), int(flag("--epochs")))
    assert (settings.learning_rate, settings.seed) == (card["optimizer"]["learning_rate"], card["training"]["seed"])
    assert recipe.min_count == card["vocabulary"]["min_count"]


def test_the_fast_preset_keeps_a_large_corpus_within_its_step_budget():
    """Kiều's 325 verse blocks keep all FAST_EPOCHS; NYT's headlines and snippets (the shipped
    card's counts) get the epochs that fit in FAST_STEPS batches of 16; the payload's preset too."""
    models = Path(__file__).parents[1] / "models"
    kieu, nyt = BUILTIN_TASKS["kieu"], BUILTIN_TASKS["nyt_headlines"]
    assert training_sequences(kieu, models) == 325 and training_sequences(nyt, models) == 6647 + 7324
    assert text_preset("fast", kieu, 325)[1].epochs == FAST_EPOCHS == text_preset("fast", nyt)[1].epochs
    epochs = text_preset("fast", nyt, 13971)[1].epochs
    assert epochs == FAST_STEPS // 874 and epochs * 874 <= FAST_STEPS < (epochs + 1) * 874
    _, settings = validate_text({"dataset": "nyt_headlines", "preset": "fast"}, Limits(), sequences=13971)
    assert settings["epochs"] == epochs
    assert training_sequences(nyt, models / "nowhere") is None


def test_an_untied_projection_counts_and_reaches_the_model():
    recipe = TextRecipe(embedding=16, units=32, projection=8)
    assert model_kwargs(recipe)["projection"] == 8
    assert text_param_count(recipe, 100) == 100 * 16 + 4 * 32 * (16 + 32) + 4 * 32 + 32 * 8 + 8 + 8 * 100 + 100
    assert model_kwargs(TextRecipe(tied=True, projection=8))["projection"] == TextRecipe().embedding


def test_text_datasets_are_the_text_tasks():
    assert set(text_datasets()) == {"kieu", "nyt_headlines"}


@pytest.mark.parametrize("payload, words", [
    ({"dataset": "kieu", "recipe": {"min_count": 10**9}}, ("vocabulary cut-off", "ngưỡng từ vựng")),
    ({"dataset": "kieu", "recipe": {"sequence_length": 10**6}}, ("sequence length", "độ dài chuỗi")),
    ({"dataset": "kieu", "recipe": {"embedding": "wide"}}, ("embedding size", "kích thước embedding")),
    ({"dataset": "kieu", "recipe": {"tied": "maybe"}}, ("tied embeddings", "embedding dùng chung")),
    ({"dataset": "kieu", "recipe": {"cell": "transformer"}}, ("recurrent cell", None)),
    ({"dataset": "kieu", "epochs": 10**6}, ("epochs", None)),
    ({"dataset": "kieu", "learning_rate": "nan"}, ("learning rate", None)),
    ({"dataset": "kieu", "recipe": {"colour": 1}}, ("colour", None)),
    ({"dataset": "mnist"}, ("mnist", None)),
    ({"dataset": "kieu", "recipe": {"units": 1024, "embedding": 512}}, ("parameters", "tham số")),
])
def test_absurd_recipes_are_bilingual_400s(payload, words):
    with pytest.raises(InvalidInput) as info:
        validate_text(payload, Limits(), vocab_size=50_000)
    err = info.value
    assert err.status == 400
    assert words[0] in err.en
    assert err.vi != err.en
    if words[1]:
        assert words[1] in err.vi


def test_defaults_fill_a_bare_payload():
    r, s = validate_text({"dataset": "nyt_headlines"}, Limits())
    assert r == TextRecipe().__dict__ and s["seed"] == 42


@pytest.mark.parametrize("cell, layers", [("lstm", 1), ("gru", 2), ("simple_rnn", 3)])
@pytest.mark.parametrize("tied", [False, True])
def test_param_count_matches_keras(tied, cell, layers):
    from training.build import make_word_lstm

    recipe = TextRecipe(embedding=8, units=12, tied=tied, cell=cell, layers=layers)
    model = make_word_lstm(50, **model_kwargs(recipe))
    assert text_param_count(recipe, 50) == model.count_params()
    assert [layer.name for layer in model.layers if layer.name.startswith(cell)][0] == cell


def test_a_one_layer_lstm_keeps_the_shipped_models_keyword_arguments():
    assert set(model_kwargs(TextRecipe())) == {"embedding", "units", "dropout", "projection", "tied"}
    assert model_kwargs(TextRecipe(cell="gru", layers=2))["rnn_layers"] == 2


def test_sequence_length_cuts_training_sequences_into_pieces():
    from training.textdata import cut_sequences

    assert cut_sequences([[1, 2, 3, 4, 5], [6]], 2) == [[1, 2], [3, 4], [5], [6]]
    assert cut_sequences([[1, 2, 3]], 0) == [[1, 2, 3]]
    argv = training_argv("kieu", TextRecipe(sequence_length=32), {})
    assert argv[argv.index("--sequence-length") + 1] == "32"


def test_a_preset_named_in_the_payload_fills_what_it_does_not_give():
    r, s = validate_text({"dataset": "kieu", "preset": "fast", "seed": 9}, Limits(max_epochs=5))
    fast_recipe, fast_settings = text_preset("fast", BUILTIN_TASKS["kieu"])
    assert r == fast_recipe.__dict__ and s["seed"] == 9 and s["epochs"] == 5
    with pytest.raises(InvalidInput) as info:
        validate_text({"dataset": "kieu", "preset": "huge"}, Limits())
    assert info.value.status == 400 and "huge" in info.value.en


def test_a_recipe_trains_through_the_cli_training_function_with_a_per_epoch_callback(tmp_path):
    """The bench's text run: the recipe's command line, parsed by `python -m training`'s own
    parser, trains with `train_text_task`, which calls the bench's callback after each epoch."""
    import keras

    from app.config import default_data_dir
    from training.cli import text_parser
    from training.config import TrainConfig

    if not (default_data_dir() / BUILTIN_TASKS["kieu"].data_path).exists():
        pytest.skip("no Kiều data")
    from training.textgen import train_text_task

    recipe = TextRecipe(embedding=8, units=12, dropout=0.0, tied=True, min_count=1)
    argv = training_argv("kieu", recipe, {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "seed": 7})
    config = TrainConfig.from_args(text_parser("python -m training kieu").parse_args([*argv[1:], "--quick",
                                                                                     "--verbose", "0"]))
    seen = []

    class Record(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            seen.append((epoch, sorted(logs)))

    folder = train_text_task(BUILTIN_TASKS["kieu"], config, tmp_path, callbacks=(Record(),))
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    assert seen and seen[0][0] == 0 and "val_loss" in seen[0][1]
    assert card["model_kwargs"]["embedding"] == 8 and card["model_kwargs"]["tied"] is True
    assert card["training"]["seed"] == 7 and card["vocabulary"]["min_count"] == 1
    metrics = card["metrics"]
    assert metrics["test_perplexity"] > 1 and metrics["ngram"]["test_perplexity"] > 1


@pytest.mark.parametrize("cell", ["gru", "simple_rnn"])
def test_a_gru_or_simple_rnn_verse_run_finishes_with_the_meter_rates(tmp_path, cell):
    """The meter rates generate from the saved model with the served NumPy step, which runs every
    cell the bench trains: a GRU or SimpleRNN Kiều run saves its model and card with them."""
    from app.config import default_data_dir
    from training.cli import text_parser
    from training.config import TrainConfig

    if not (default_data_dir() / BUILTIN_TASKS["kieu"].data_path).exists():
        pytest.skip("no Kiều data")
    from training.textgen import train_text_task

    recipe = TextRecipe(embedding=8, cell=cell, units=12, dropout=0.0, tied=True, min_count=1)
    argv = training_argv("kieu", recipe, {"epochs": 1, "batch_size": 16, "learning_rate": 3e-3, "seed": 7})
    config = TrainConfig.from_args(text_parser("python -m training kieu").parse_args([*argv[1:], "--quick",
                                                                                     "--verbose", "0"]))
    card = json.loads((train_text_task(BUILTIN_TASKS["kieu"], config, tmp_path) / "card.json").read_text(encoding="utf-8"))
    assert card["model_kwargs"]["cell"] == cell and card["metrics"]["test_perplexity"] > 1
    meter = card["metrics"]["meter"]
    assert meter["constrained"]["couplets"] > 0 and 0 <= meter["unconstrained"]["length"] <= 1


def test_epoch_samples_are_reproducible_lines_with_the_meter_check_for_verse():
    import keras

    from app.text import Vocabulary, tokenize_verse
    from training.build import TINY_MODEL, make_word_lstm
    from training.textgen import SAMPLE_TEXT
    from training.textsamples import SAMPLE_TEMPERATURES, epoch_samples

    vocab = Vocabulary.build([tokenize_verse(SAMPLE_TEXT["syllables"].splitlines())], "syllables")
    keras.utils.set_random_seed(0)
    model = make_word_lstm(len(vocab), **TINY_MODEL)
    first = epoch_samples(model, vocab, ["Trăm năm trong cõi"], epoch_seed=3)
    assert first == epoch_samples(model, vocab, ["Trăm năm trong cõi"], epoch_seed=3)
    assert [e["temperature"] for e in first] == list(SAMPLE_TEMPERATURES)
    for entry in first:
        assert entry["lines"] and len(entry["meter"]) == len(entry["lines"])
        assert all(isinstance(line, str) for line in entry["lines"])
