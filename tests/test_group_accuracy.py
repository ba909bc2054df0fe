"""Per-group accuracy on the cards: Wilson intervals and the gap between groups with its interval."""
import numpy as np
import pytest

from training.groups import accuracy_gap, group_accuracy, wilson_interval


def test_wilson_interval_matches_the_published_values():
    # Newcombe (1998), Statistics in Medicine 17:857, table I: 81/263 -> 0.2553 to 0.3662
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    lo, hi = wilson_interval(0, 10)
    assert lo == 0.0 and hi == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0)


def test_gap_interval_is_newcombes_hybrid_score_interval():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 - 48/80 = 0.2000, 0.0524 to 0.3339
    groups = {"a": {"n": 70, "accuracy": 56 / 70, "ci95": list(wilson_interval(56, 70))},
              "b": {"n": 80, "accuracy": 48 / 80, "ci95": list(wilson_interval(48, 80))}}
    gap = accuracy_gap(groups)
    assert (gap["most_accurate"], gap["least_accurate"]) == ("a", "b")
    assert gap["gap"] == pytest.approx(0.2)
    assert gap["ci95"] == pytest.approx([0.0524, 0.3339], abs=1e-4)


def test_gap_by_chance_alone_shrinks_with_larger_groups():
    def groups(n):
        return {k: {"n": n, "accuracy": 0.9, "ci95": list(wilson_interval(int(0.9 * n), n))} for k in "ab"}

    small, large = accuracy_gap(groups(100))["equal_accuracy_p95"], accuracy_gap(groups(10000))["equal_accuracy_p95"]
    # two groups of n at 90%: the difference's 95th percentile is about 1.96·sqrt(2·0.9·0.1/n)
    assert small == pytest.approx(1.96 * np.sqrt(2 * 0.09 / 100), abs=0.015)
    assert large == pytest.approx(1.96 * np.sqrt(2 * 0.09 / 10000), abs=0.0015)
    assert accuracy_gap(groups(100)) == accuracy_gap(groups(100))  # a fixed seed: the card does not wobble


def test_group_accuracy_counts_each_group_and_skips_empty_ones():
    y = np.array([0, 1, 1, 0, 1, 0])
    pred = np.array([0, 1, 0, 0, 0, 0])
    groups = np.array([0, 0, 0, 1, 1, 1])
    out = group_accuracy(y, pred, groups, {0: "x", 1: "y", 2: "empty"})
    assert set(out) == {"x", "y"}
    assert out["x"]["n"] == 3 and out["x"]["accuracy"] == pytest.approx(2 / 3)
    assert out["x"]["ci95"] == pytest.approx(list(wilson_interval(2, 3)))


@pytest.mark.parametrize("lang, words, chance", [
    ("en", "Gap between the most accurate group", "a model equally accurate in every group would still show"),
    ("vi", "Chênh lệch giữa nhóm chính xác nhất", "một mô hình chính xác như nhau ở mọi nhóm vẫn cho")])
def test_card_page_shows_the_served_race_gap_with_its_interval(make_app, lang, words, chance):
    from app.cards import Card
    from app.config import MODELS_DIR

    folder = MODELS_DIR / "faces_gender"
    if not (folder / "card.json").is_file():
        pytest.skip("faces_gender is not shipped")
    served = Card.from_json(folder).metrics.served
    if not served or not served.race_gap:
        pytest.skip("the card has no served race figures (python -m training evaluate faces_gender --through-upload)")
    html = make_app(MODELS_DIR).test_client().get(f"/tasks/faces_gender/card?lang={lang}").get_data(as_text=True)
    assert words in html and served.race_gap["least_accurate"] in html
    lo = f"{served.race_gap['ci95'][0] * 100:.1f}"
    assert (lo if lang == "en" else lo.replace(".", ",")) in html
    p95 = f"{served.race_gap['equal_accuracy_p95'] * 100:.1f}"
    assert f"{p95 if lang == 'en' else p95.replace('.', ',')}" in html and chance in html
