"""Issue 6, faults: a full disk during a save; broken model folders at serving time.

A training run killed with SIGKILL mid-epoch (the model in place untouched, `--resume` continuing
from its checkpoint) is covered by tests/test_pipeline.py::test_killed_run_leaves_old_model_and_resume_continues.
"""

from __future__ import annotations

import errno
import json

import pytest

from test_pipeline import digits_npz, old_model, snapshot
from training import data as data_module
from training import fit
from training.__main__ import main


@pytest.fixture
def private_runs(tmp_path, monkeypatch):
    """Checkpoints and decode caches go to tmp_path, never to the project's runs/."""
    monkeypatch.setattr(fit, "RUNS_DIR", tmp_path / "runs")
    monkeypatch.setattr(data_module, "CACHE_DIR", tmp_path / "runs" / "cache")


def test_full_disk_during_save_fails_that_run_only(tmp_path, monkeypatch, capsys, private_runs):
    models = tmp_path / "models"
    before = {slug: old_model(models, slug) for slug in ("mnist", "fashion_mnist")}
    npz = digits_npz(tmp_path / "mnist.npz", n_train=96, n_test=40)
    real_write_card = fit.write_card

    def disk_fills_up(folder, card):
        (folder / "card.json").write_text('{"half": ', encoding="utf-8")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(fit, "write_card", disk_fills_up)
    cmd = ["mnist", "--data", str(npz), "--models-dir", str(models), "--quick", "--baseline-epochs", "0",
           "--verbose", "0", "--model-kwargs", '{"units": 4}']
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
