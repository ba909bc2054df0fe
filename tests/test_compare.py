"""`python -m training compare-rnn --quick` writes its results, and the "Why LSTM?" page reads them."""

import json

import numpy as np
import pytest

pytest.importorskip("keras")

from training.compare import KINDS, PLOT, RESULTS, adding_problem  # noqa: E402


def test_adding_problem_targets_are_the_marked_sums():
    x, y = adding_problem(50, 40, np.random.default_rng(0))
    assert x.shape == (50, 40, 2) and y.shape == (50, 1)
    assert (x[:, :, 1].sum(axis=1) == 2).all()
    assert (x[:, :4, 1].sum(axis=1) == 1).all()  # the first marker is in the first tenth
    np.testing.assert_allclose(y[:, 0], (x[:, :, 0] * x[:, :, 1]).sum(axis=1), rtol=1e-6)


def test_why_page_without_results(make_app, tmp_path):
    page = make_app(tmp_path).test_client().get("/lstm/why?lang=en")
    assert page.status_code == 200 and "python -m training compare-rnn" in page.get_data(as_text=True)


def test_quick_run_writes_results_and_the_page_reads_them(make_app, tmp_path):
    from app.config import default_data_dir
    from app.tasks import MNIST
    from training.__main__ import main

    if not (default_data_dir() / MNIST.data_path).is_file():
        pytest.skip("no MNIST data")
    assert main(["compare-rnn", "--quick", "--models-dir", str(tmp_path), "--verbose", "0"]) == 0
    folder = tmp_path / "compare_rnn"
    assert (folder / PLOT).stat().st_size > 0
    assert not (folder / "card.json").exists()  # an experiment, not a task the app would serve
    results = json.loads((folder / RESULTS).read_text(encoding="utf-8"))
    assert results["quick"] is True
    for name, exp in results["experiments"].items():
        assert set(exp["models"]) == set(KINDS)
        for m in exp["models"].values():
            epochs = results["config"]["add_epochs" if name == "adding" else "mnist_epochs"]
            assert len(m["history"]["val_accuracy"]) == epochs
            assert len(m["grad_norms"]) == epochs + 1  # before training and after every epoch
            assert len(m["grad_norms"][0]) == exp["steps"]
            assert all(np.isfinite(m["grad_norms"][-1]))
    client = make_app(tmp_path).test_client()
    html = client.get("/lstm/why?lang=en").get_data(as_text=True)
    lstm_acc = results["experiments"]["mnist_rows"]["models"]["lstm"]["test_accuracy"]
    assert f"{lstm_acc * 100:.1f}%" in html
    assert "<polyline" in html and "quick (--quick) test run" in html
    assert client.get("/lstm/why/comparison.png").status_code == 200
    vi = client.get("/lstm/why?lang=vi").get_data(as_text=True)
    assert "gradient biến mất" in vi
