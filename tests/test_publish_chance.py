"""The publish form and API show the run's test accuracy and confusion matrix, and ask for an
explicit confirmation when the accuracy is not clearly above chance (issue 36 item 9)."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest

from app.instructor.chance import ALPHA, binomial_tail, held_out
from helpers.instructor import INSTRUCTOR_RUN_ID

DOG_RUN = "0000000ca7d0"
EVERY_CAT_A_DOG = [[0, 50], [0, 50]]  # 100 test photos, every one answered "dog"


def test_binomial_tail_matches_the_exact_sum():
    exact = sum(math.comb(20, k) for k in range(15, 21)) / 2 ** 20
    assert binomial_tail(15, 20, 0.5) == pytest.approx(exact, rel=1e-12)
    assert binomial_tail(0, 20, 0.3) == 1.0 and binomial_tail(5, 5, 0.5) == pytest.approx(1 / 32)


@pytest.mark.parametrize("matrix,above", [
    (EVERY_CAT_A_DOG, False),              # 50% on two balanced classes: chance exactly
    ([[2, 0], [0, 2]], False),             # perfect, but 4 images cannot tell: p = 1/16
    ([[28, 22], [21, 29]], False),         # 57% of 100: p about 0.097
    ([[45, 5], [5, 45]], True),            # 90% of 100
    ([[90, 0], [8, 2]], False),            # 92% where always answering the first class scores 90%
    ([[8, 1, 1], [1, 8, 1], [1, 1, 8]], True),
])
def test_clearly_above_chance_uses_the_split_size_and_majority_rate(matrix, above):
    figures = held_out({"test_accuracy": 0.0, "confusion_matrix": matrix}, len(matrix))
    n = sum(map(sum, matrix))
    assert figures.n == n and figures.chance == max(map(sum, matrix)) / n
    assert figures.accuracy == sum(matrix[i][i] for i in range(len(matrix))) / n
    assert figures.clearly_above_chance is above and (figures.p_value < ALPHA) is above


def test_without_a_matrix_chance_is_one_in_k_and_without_figures_nothing_passes():
    figures = held_out({"test_accuracy": 0.3, "test_count": 1000}, 10)
    assert figures.chance == 0.1 and figures.correct == 300 and figures.clearly_above_chance
    assert not held_out({}, 2).clearly_above_chance and held_out({}, 2).accuracy is None
    assert not held_out({"test_accuracy": 0.99}, 2).clearly_above_chance  # no n: cannot tell


@pytest.fixture
def dog_run(instructor_app, tiny_run_folder):
    """A finished cats_dogs run that calls every cat a dog (its record's test figures)."""
    from app.records import FINISHED, Run, db

    shutil.copytree(tiny_run_folder, Path(instructor_app.instance_path) / "runs" / DOG_RUN)
    with instructor_app.app_context():
        db.session.add(Run(id=DOG_RUN, dataset="cats_dogs", status=FINISHED, recipe={"units": 8}, settings={},
                           metrics={"test_accuracy": 0.5, "test_count": 100, "confusion_matrix": EVERY_CAT_A_DOG}))
        db.session.commit()
    return DOG_RUN


def post_form(client, run_id, lang="en", **kw):
    data = {"slug": "pets", "title_en": "Pets", "title_vi": "Thú cưng", "classes": "cat|Mèo\ndog|Chó", **kw}
    return client.post(f"/instructor/runs/{run_id}/publish?lang={lang}", data=data)


def served_slugs(client) -> set:
    return {t["slug"] for t in client.get("/api/v1/tasks").get_json()["tasks"]}


@pytest.mark.parametrize("lang,first,second", [("en", "cat", "Mèo"), ("vi", "Mèo", "cat")])
def test_form_shows_accuracy_chance_and_the_labelled_matrix(signed_in, dog_run, lang, first, second):
    page = signed_in.get(f"/instructor/runs/{dog_run}/publish?lang={lang}").get_data(as_text=True)
    assert 'id="test-accuracy"' in page and 'id="confusion"' in page and 'id="near-chance"' in page
    assert ("50.0%" if lang == "en" else "50,0%") in page and "100" in page
    assert f'{first} <span lang="{"vi" if lang == "en" else "en"}" class="hint">({second})</span>' in page
    assert page.count('<td>50</td>') == 2 and page.count('<td>0</td>') == 2
    assert 'id="confirm_chance"' in page and 'id="confirm"' not in page


def test_every_cat_called_dog_needs_confirmation(signed_in, dog_run):
    refused = post_form(signed_in, dog_run)
    text = refused.get_data(as_text=True)
    assert refused.status_code == 409 and "pets" not in served_slugs(signed_in)
    assert "Test accuracy 50.0% (50 of 100 test images) is not clearly above chance (50.0%" in text
    assert 'id="confirm_chance"' in text and 'id="confirm"' not in text  # nothing to replace
    vi = post_form(signed_in, dog_run, lang="vi").get_data(as_text=True)
    assert "không cao hơn rõ rệt so với mức ngẫu nhiên" in vi and "50 trên 100 ảnh kiểm tra" in vi
    assert post_form(signed_in, dog_run, confirm_chance="yes").status_code == 303
    assert "pets" in served_slugs(signed_in)


def test_a_good_model_needs_no_confirmation(signed_in, finished_lab_run):
    page = signed_in.get(f"/instructor/runs/{finished_lab_run}/publish?lang=en").get_data(as_text=True)
    assert 'id="above-chance"' in page and "90.0%" in page and 'id="confirm_chance"' not in page
    assert post_form(signed_in, finished_lab_run, classes="blue|Xanh\nred|Đỏ").status_code == 303
    assert "pets" in served_slugs(signed_in)


def test_api_refuses_near_chance_without_confirm(instructor_app, add_instructor, dog_run, finished_lab_run):
    add_instructor(instructor_app)
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    client, auth = instructor_app.test_client(), {"Authorization": f"Bearer {token}"}
    body = {"slug": "pets", "title_en": "Pets", "title_vi": "Thú cưng"}
    refused = client.post(f"/api/v1/runs/{dog_run}/publish", json=body, headers=auth)
    error = refused.get_json()
    assert refused.status_code == 409 and "pets" not in served_slugs(client)
    assert "50.0%" in error["error_en"] and "100 test images" in error["error_en"] and "chance" in error["error_en"]
    assert "100 ảnh kiểm tra" in error["error_vi"] and "mức ngẫu nhiên" in error["error_vi"]
    assert client.post(f"/api/v1/runs/{dog_run}/publish", json={**body, "confirm": True}, headers=auth).status_code == 201
    good = client.post(f"/api/v1/runs/{INSTRUCTOR_RUN_ID}/publish", json={**body, "slug": "shapes"}, headers=auth)
    assert good.status_code == 201, good.get_json()
