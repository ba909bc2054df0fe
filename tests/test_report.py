"""README's results table is the one `python -m training report` renders from the shipped cards."""

from __future__ import annotations

import json

import pytest

from app.config import MODELS_DIR, ROOT
from training import report


def test_readme_results_match_the_cards():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split(report.START, 1)[1].split(report.END, 1)[0]
    assert section.strip() == report.render(MODELS_DIR).strip(), \
        "README is stale: run python -m training report --write"


def test_every_figure_comes_from_a_card(tmp_path):
    folder = tmp_path / "mnist"
    folder.mkdir()
    card = {"slug": "mnist", "kind": "image", "task": {"slug": "mnist", "kind": "image", "title_en": "Digits",
                                                       "title_vi": "Chữ số"},
            "architecture": "rows_cols", "params_total": 1234,
            "metrics": {"test_accuracy": 0.98765, "test_count": 10000},
            "baseline": {"test_accuracy": 0.5},
            "training": {"epochs_run": 3, "seconds_total": 600.0},
            "warm_start": {"previous_runs": [{"epochs_run": 5, "seconds_total": 1200.0}]}}
    (folder / "card.json").write_text(json.dumps(card), encoding="utf-8")
    (folder / "model.keras").write_bytes(b"\0" * 2_500_000)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "card.json").write_text("{not json", encoding="utf-8")
    table = report.render(tmp_path)
    row = next(line for line in table.splitlines() if line.startswith("| mnist |"))
    assert "**98.77%** (n=10,000)" in row and "**below floor**" in row
    assert "| 50.00% |" in row and "| 1,234 | 2.5 | 8 | 30 min |" in row  # epochs and time of both runs
    assert "| cifar10 | not trained |" in table and "| kieu | not trained |" in table


def test_verdicts():
    assert report.verdict(0.995, 0.99, 0.993) == "goal met"
    assert report.verdict(0.991, 0.99, 0.993) == "floor met, goal missed"
    assert report.verdict(0.98, 0.99, 0.993) == "**below floor**"


def test_write_needs_the_markers():
    with pytest.raises(ValueError, match="RESULTS"):
        report.replace_section("# no markers here\n", "table")
    text = f"a\n{report.START}\nold\n{report.END}\nb\n"
    assert report.replace_section(text, "new\n") == f"a\n{report.START}\nnew\n{report.END}\nb\n"
