"""Readable run names, "nickname · data set #n": numbered per data set on insert (stable once
given), existing runs numbered by the migration, shown on the run page, the leaderboards,
"my runs", the instructor console and in the API's run JSON beside the hex id."""

from __future__ import annotations

import re

import pytest

from app.records import Run, db


@pytest.fixture
def client(lab_app):
    return lab_app.test_client()


def number_of(app, run_id: str) -> int:
    with app.app_context():
        return db.session.get(Run, run_id).number


def test_runs_are_numbered_per_data_set_in_the_order_they_come(lab_app, finished_run, finished_text_run):
    first, second = finished_run(), finished_run()
    verse = finished_text_run("kieu")
    third = finished_run()
    a, b, c = number_of(lab_app, first), number_of(lab_app, second), number_of(lab_app, third)
    assert (b, c) == (a + 1, a + 2)  # a verse run in between takes no mnist number
    with lab_app.app_context():
        kieu = sorted(r.number for r in db.session.query(Run).filter_by(dataset="kieu"))
        assert kieu == list(range(1, len(kieu) + 1)) and number_of(lab_app, verse) == kieu[-1]
        run = db.session.get(Run, first)
        run.status, run.history = "failed", []  # a later write keeps the number
        db.session.commit()
    assert number_of(lab_app, first) == a


@pytest.mark.parametrize(("lang", "title"), [("en", "Handwritten digits (MNIST)"), ("vi", "Chữ số viết tay (MNIST)")])
def test_the_name_shows_on_the_run_page_leaderboard_and_api(client, lab_app, finished_run, lang, title):
    run_id = finished_run(nickname="Lan")
    name = f"Lan · {title} #{number_of(lab_app, run_id)}"
    page = client.get(f"/lab/runs/{run_id}?lang={lang}").get_data(as_text=True)
    assert f"<title>{name}" in page and f'<h1 id="run-name">{name}</h1>' in page and run_id in page
    board = client.get(f"/lab/mnist?lang={lang}").get_data(as_text=True)
    assert f'<a href="/lab/runs/{run_id}">{name}</a>' in board
    body = client.get(f"/api/v1/runs/{run_id}?lang={lang}").get_json()
    assert body["id"] == run_id and body["name"] == name
    listed = client.get(f"/api/v1/runs?dataset=mnist&lang={lang}").get_json()["runs"]
    assert {r["id"]: r["name"] for r in listed}[run_id] == name


def test_a_run_without_a_nickname_is_named_by_its_data_set(client, lab_app, finished_text_run):
    run_id = finished_text_run("kieu", nickname="")
    name = f"Thơ Truyện Kiều (lục bát) #{number_of(lab_app, run_id)}"
    page = client.get(f"/lab/runs/{run_id}?lang=vi").get_data(as_text=True)
    assert f'<h1 id="run-name">{name}</h1>' in page
    assert f'">{name}</a>' in client.get("/lab/kieu?lang=vi").get_data(as_text=True)


def test_my_runs_lists_names(lab_app, finished_run):
    from app.lab import runs

    run_id = finished_run(nickname="Mai", owner="m" * 32)
    client = lab_app.test_client()
    with lab_app.test_request_context():
        client.set_cookie(runs.OWNER_COOKIE, runs._serializer().dumps("m" * 32))
    page = client.get("/lab?lang=en").get_data(as_text=True)
    mine = re.search(r'<ul class="my-runs">(.*?)</ul>', page, re.S).group(1)
    assert f'<a href="/lab/runs/{run_id}">Mai · Handwritten digits (MNIST) #{number_of(lab_app, run_id)}</a>' in mine


def test_the_instructor_console_lists_names(signed_in, finished_lab_run):
    page = signed_in.get("/instructor/?lang=en").get_data(as_text=True)
    row = re.search(rf'<tr id="run-{finished_lab_run}">(.*?)</tr>', page, re.S).group(1)
    assert "An · shapes #1</a>" in row and f"<code class=\"small\">{finished_lab_run}</code>" in row


def test_the_migration_numbers_existing_runs_by_creation_time(make_app, tiny_models_dir, tmp_path):
    from flask_migrate import downgrade, upgrade
    from sqlalchemy import inspect, text

    from app.records import MIGRATIONS_DIR

    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_AUTO_UPGRADE="0")
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR), revision="0006_reason_msgid")
        for run_id, dataset, created in (("aaaaaaaaaaa3", "mnist", "2026-01-03"), ("aaaaaaaaaaa1", "mnist", "2026-01-01"),
                                         ("bbbbbbbbbbb1", "kieu", "2026-01-02"), ("aaaaaaaaaaa2", "mnist", "2026-01-02")):
            db.session.execute(text("INSERT INTO runs (id, dataset, recipe, settings, nickname, owner, client, status, "
                                    "created_at, progress, history, metrics, cancel_requested, attempts) VALUES "
                                    f"('{run_id}', '{dataset}', '{{}}', '{{}}', '', '', '', 'finished', "
                                    f"'{created} 00:00:00', '{{}}', '[]', '{{}}', 0, 1)"))
        db.session.commit()
        upgrade(directory=str(MIGRATIONS_DIR), revision="0007_run_number")
        numbers = dict(db.session.execute(text("SELECT id, number FROM runs")).all())
        assert numbers == {"aaaaaaaaaaa1": 1, "aaaaaaaaaaa2": 2, "aaaaaaaaaaa3": 3, "bbbbbbbbbbb1": 1}
        db.session.add(Run(dataset="mnist", status="queued"))
        db.session.commit()
        assert db.session.execute(text("SELECT max(number) FROM runs WHERE dataset = 'mnist'")).scalar() == 4
        db.session.remove()
        downgrade(directory=str(MIGRATIONS_DIR), revision="0006_reason_msgid")
        assert "number" not in {c["name"] for c in inspect(db.engine).get_columns("runs")}
