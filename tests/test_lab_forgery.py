"""Cross-site request forgery on the runs API (issue 36 item 7): a cookie-carrying write from
another site is refused with a bilingual 403; the same write from this site's pages, with the
CSRF token, or with a bearer token goes through."""

from __future__ import annotations

import re

import pytest

from helpers.instructor import INSTRUCTOR_PASSWORD

EVIL = {"Origin": "http://evil.example"}
HERE = {"Origin": "http://localhost"}  # the test client's host
FORM = {"dataset": "mnist", "epochs": "1"}  # what a cross-site <form> can send
BODY = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "epochs": 1}


def assert_forged(response):
    """A 403 whose JSON says why in English and in Vietnamese."""
    body = response.get_json()
    assert response.status_code == 403, (response.status_code, body)
    assert body["status"] == 403 and body["error_en"] and body["error_vi"] and body["error_en"] != body["error_vi"]
    assert "another site" in body["error_en"] and "trang web khác" in body["error_vi"]


def page_token(client, url: str = "/lab") -> str:
    """The CSRF token a page of this site hands its browser (the hidden form field)."""
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).get_data(as_text=True)).group(1)


def ended_run(client, headers) -> str:
    """A run queued and cancelled through the API (so it may be deleted); its id."""
    created = client.post("/api/v1/runs", json=BODY, headers=headers)
    assert created.status_code == 202, created.get_json()
    run_id = created.get_json()["id"]
    assert client.post(f"/api/v1/runs/{run_id}/cancel", headers=headers).status_code == 202
    return run_id


def test_cross_site_writes_on_the_instructor_cookie_are_refused(signed_in):
    assert_forged(signed_in.post("/api/v1/runs?lang=en", data=FORM, headers=EVIL))
    run_id = ended_run(signed_in, HERE)
    assert_forged(signed_in.delete(f"/api/v1/runs/{run_id}", headers=EVIL))
    assert_forged(signed_in.delete(f"/api/v1/runs/{run_id}", headers={"Referer": "http://evil.example/page"}))
    assert_forged(signed_in.delete(f"/api/v1/runs/{run_id}", headers={"Origin": "null"}))
    assert signed_in.get(f"/api/v1/runs/{run_id}").status_code == 200  # still there
    assert signed_in.delete(f"/api/v1/runs/{run_id}", headers={"Referer": "http://localhost/lab"}).status_code == 204


def test_the_csrf_token_lets_a_cookie_write_through(signed_in):
    token = {"X-CSRFToken": page_token(signed_in)}
    run_id = ended_run(signed_in, token)
    assert_forged(signed_in.delete(f"/api/v1/runs/{run_id}", headers={**EVIL, "X-CSRFToken": "forged"}))
    assert signed_in.delete(f"/api/v1/runs/{run_id}", headers={**EVIL, **token}).status_code == 204


def test_bearer_token_calls_stay_as_they_are(instructor_app, add_instructor):
    add_instructor(instructor_app)
    token = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher"]).output.strip()
    client = instructor_app.test_client()
    bearer = {"Authorization": f"Bearer {token}", **EVIL}  # a header no other site can make a browser send
    run_id = ended_run(client, bearer)
    assert client.delete(f"/api/v1/runs/{run_id}", headers=bearer).status_code == 204


def test_a_students_run_is_guarded_the_same_way(instructor_app):
    student = instructor_app.test_client()
    created = student.post("/api/v1/runs", json=BODY)  # no cookie yet: a first call from the bench or a script
    assert created.status_code == 202
    assert student.get_cookie("lab_owner") is not None
    run_id = created.get_json()["id"]
    assert_forged(student.post(f"/api/v1/runs/{run_id}/cancel", headers=EVIL))
    assert_forged(student.post("/api/v1/runs", data=FORM, headers=EVIL))
    assert student.post(f"/api/v1/runs/{run_id}/cancel", headers=HERE).status_code == 202  # the bench's own page
    assert_forged(student.delete(f"/api/v1/runs/{run_id}", headers=EVIL))
    assert student.delete(f"/api/v1/runs/{run_id}").status_code == 204  # `curl -b lab.txt`: no origin, no browser


@pytest.fixture
def csrf_app(make_app, tiny_models_dir, tmp_path, add_instructor):
    """An app with CSRF protection on (as in production) and instructor "teacher"."""
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), WTF_CSRF_ENABLED=True)
    add_instructor(app)
    return app


def test_with_csrf_on_the_instructor_session_needs_the_token_or_the_origin(csrf_app):
    client = csrf_app.test_client()
    login = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD,
                                                   "csrf_token": page_token(client, "/instructor/login")})
    assert login.status_code == 302
    refused = client.post("/api/v1/runs?lang=vi", json=BODY)  # no token, no origin, on the session
    assert refused.status_code == 403 and "X-CSRFToken" in refused.get_json()["error_en"]
    assert "mã CSRF" in refused.get_json()["error"]
    assert client.post("/api/v1/runs", json=BODY, headers={"X-CSRFToken": page_token(client)}).status_code == 202
    assert client.post("/api/v1/runs", json=BODY, headers=HERE).status_code == 202
    assert_forged(client.post("/api/v1/runs", json=BODY, headers=EVIL))
