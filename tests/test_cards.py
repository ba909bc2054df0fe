"""The card schema (app/cards.py): what it refuses, what it keeps, and how the app reacts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from app.cards import CARD_VERSION, Card, CardError
from app.config import MODELS_DIR

SHIPPED = sorted(MODELS_DIR.glob("*/card.json"))
MINIMAL = {"slug": "shapes", "kind": "image", "metrics": {"test_accuracy": 0.5, "test_count": 4},
           "task": {"slug": "shapes", "kind": "image", "title_en": "Shapes", "title_vi": "Hình"}}


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.parent.name)
def test_every_shipped_card_loads_and_round_trips_exactly(path):
    raw = json.loads(path.read_text(encoding="utf-8"))
    card = Card.from_json(path)
    assert raw["version"] == card.version == CARD_VERSION
    assert card.to_json() == raw
    assert json.dumps(card.to_json(), ensure_ascii=False, indent=1) == path.read_text(encoding="utf-8")
    assert card.spec.slug == card.slug == path.parent.name


def test_shipped_cards_are_all_there():
    assert {p.parent.name for p in SHIPPED} >= {"mnist", "fashion_mnist", "cifar10", "cats_dogs", "faces_gender",
                                                "kieu", "nyt_headlines"}


@pytest.mark.parametrize("field", ["slug", "kind", "task", "metrics"])
def test_a_missing_field_is_named(field):
    data = {k: v for k, v in MINIMAL.items() if k != field}
    with pytest.raises(CardError) as err:
        Card.from_json(data)
    assert err.value.fields == [field] and f"{field} is missing" in str(err.value)


def test_every_wrong_type_is_named_with_its_path():
    data = {**MINIMAL, "params_total": "many", "metrics": {"test_accuracy": "high", "test_count": 4.5},
            "export": {"int8": {"accepted": "yes"}}, "training": {"seconds_per_epoch": [1.0, "x"]}}
    with pytest.raises(CardError) as err:
        Card.from_json(data)
    assert set(err.value.fields) == {"params_total", "metrics.test_accuracy", "metrics.test_count",
                                     "export.int8.accepted", "training.seconds_per_epoch[1]"}
    assert "metrics.test_accuracy must be a number, not a string" in str(err.value)


def test_true_is_not_a_number_and_a_whole_number_is_a_number():
    card = Card.from_json({**MINIMAL, "metrics": {"test_accuracy": 1, "test_count": 4}})
    assert card.metrics.test_accuracy == 1
    with pytest.raises(CardError, match="metrics.test_count must be a whole number, not true/false"):
        Card.from_json({**MINIMAL, "metrics": {"test_count": True}})


@pytest.mark.parametrize("version", [CARD_VERSION + 1, -1, "1", True])
def test_an_unknown_version_is_refused(version):
    with pytest.raises(CardError) as err:
        Card.from_json({**MINIMAL, "version": version})
    assert err.value.fields == ["version"] and "unknown" in str(err.value)


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null"])
def test_a_file_that_is_not_a_card_object(tmp_path, text):
    (tmp_path / "card.json").write_text(text, encoding="utf-8")
    with pytest.raises(CardError):
        Card.from_json(tmp_path)


def test_a_task_block_the_registry_cannot_read():
    with pytest.raises(CardError) as err:
        Card.from_json({**MINIMAL, "task": {"slug": "shapes"}})
    assert err.value.fields == ["task"]


def test_unknown_keys_and_nulls_survive_read_then_write(tmp_path):
    data = {**MINIMAL, "version": CARD_VERSION, "notes": {"a": [1, 2]}, "split_of": None,
            "data": {"split": None, "source": "x", "future": 3},
            "metrics": {**MINIMAL["metrics"], "served": {"count": 4, "correct": 3, "photo_set": {"accuracy": 1.0}}}}
    card = Card.from_json(data)
    assert card.data.split is None and card.data.extra == {"split": None, "future": 3}
    assert card.write(tmp_path) == tmp_path / "card.json"
    assert json.loads((tmp_path / "card.json").read_text(encoding="utf-8")) == data
    assert not list(tmp_path.glob(".*"))  # the temp file is renamed, not left behind


def test_a_version_0_card_gets_the_check_count_as_a_field():
    card = Card.from_json({**MINIMAL, "export": {"checked_on": "32 random images (no data found)"}})
    assert card.version == CARD_VERSION
    assert card.export.checked_count == 32 and card.export.checked_random is True


def test_int8_acceptance_is_read_once_in_the_schema():
    accepted = Card.from_json({**MINIMAL, "export": {"int8": {"accepted": True, "file": "sub/model.int8.tflite"}}})
    refused = Card.from_json({**MINIMAL, "export": {"int8": {"accepted": False, "why": "no test images"}}})
    assert accepted.export.int8.served_file == "model.int8.tflite"
    assert refused.export.int8.served_file is None


def test_recording_served_figures_puts_them_next_to_the_array_figure():
    card = Card.from_json({**MINIMAL, "metrics": {"test_accuracy": 0.5, "test_count": 4, "per_class_accuracy": [0.5]}})
    card.metrics.record_served({"count": 4, "correct": 3, "refused": 0})
    keys = list(card.to_json()["metrics"])
    assert keys == ["test_accuracy", "test_count", "served_accuracy", "served_count", "served", "per_class_accuracy"]
    assert card.metrics.served_accuracy == 0.75


def test_the_schema_module_imports_no_tensorflow():
    import subprocess
    import sys

    code = "import sys, app.cards; print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"


def test_the_model_store_marks_a_card_off_schema_unavailable_with_the_reason(make_app, tiny_models_dir, tmp_path):
    shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / "mnist")
    path = tmp_path / "mnist" / "card.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    del card["metrics"]
    path.write_text(json.dumps({**card, "params_total": "many"}), encoding="utf-8")
    client = make_app(tmp_path, PREDICT_JIT=False).test_client()
    status = client.get("/readyz").get_json()["tasks"]["mnist"]
    assert status["status"] == "error" and "metrics is missing" in status["error"]
    assert status["error_en"] == "Its card.json does not fit the card schema (params_total, metrics)."
    assert status["error_vi"].startswith("Tệp card.json của nó không khớp") and "params_total, metrics" in status["error_vi"]
    assert client.get("/").status_code == 200
    for lang, text in (("en", "does not fit the card schema (params_total, metrics)"),
                       ("vi", "không khớp lược đồ thẻ mô hình (params_total, metrics)")):
        page = client.get(f"/tasks/mnist/card?lang={lang}")
        assert page.status_code == 503 and text in page.get_data(as_text=True)
    assert client.post("/api/v1/tasks/mnist/predict").status_code == 503


def test_the_card_page_shows_the_check_count_from_its_field(make_app, tiny_models_dir, tmp_path):
    shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / "mnist")
    card = Card.from_json(tmp_path / "mnist")
    card.export = Card.from_json({**MINIMAL, "export": {"file": "model.tflite", "max_abs_diff": 1e-6,
                                                         "argmax_agreement": 1.0, "checked_count": 1234,
                                                         "checked_on": "no count in this sentence"}}).export
    card.write(tmp_path / "mnist")
    html = make_app(tmp_path, PREDICT_JIT=False).test_client().get("/tasks/mnist/card?lang=en").get_data(as_text=True)
    assert "of 1,234 test images" in html


@pytest.mark.parametrize("lang, target", [("en", "goal 99.3%, floor 99.0%; best published row-by-row LSTM: 98.9%"),
                                          ("vi", "mục tiêu 99,3")])
def test_the_card_page_shows_the_targets_from_the_task_registry(client, lang, target):
    html = client.get(f"/tasks/mnist/card?lang={lang}").get_data(as_text=True)
    assert 'id="target"' in html and target in html


@pytest.mark.parametrize("lang, words", [("en", ["An ensemble of 2 teachers", "read as augmented and mirrored",
                                                  "70% × teachers + 30% × label", "validation 81.26%, test 80.43%"]),
                                          ("vi", ["2 mô hình thầy", "lật gương", "kiểm định 81,26%"])])
def test_the_card_page_says_what_a_distilled_model_learnt_from(make_app, tiny_models_dir, tmp_path, lang, words):
    shutil.copytree(Path(tiny_models_dir) / "mnist", tmp_path / "mnist")
    card = Card.from_json(tmp_path / "mnist")
    card.training.distillation = {"weight": 0.7, "views": "augmented and mirrored",
                                  "teachers": [{"folder": "a", "validation_accuracy": 0.8, "test_accuracy": 0.79}] * 2,
                                  "ensemble_validation_accuracy": 0.8126, "ensemble_test_accuracy": 0.8043}
    card.write(tmp_path / "mnist")
    client = make_app(tmp_path, PREDICT_JIT=False).test_client()
    html = client.get(f"/tasks/mnist/card?lang={lang}").get_data(as_text=True)
    shown = html.split('id="distillation">')[1].split("</dd>")[0]
    assert all(w in shown for w in words), shown
    plain = make_app(tiny_models_dir, PREDICT_JIT=False).test_client().get(f"/tasks/mnist/card?lang={lang}")
    assert 'id="distillation"' not in plain.get_data(as_text=True)  # not distilled: no row
