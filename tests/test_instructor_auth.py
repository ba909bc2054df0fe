"""Instructor accounts and authorization: the CLI, password hashes, sign-in with delays and limits,
sessions that expire, API tokens (hashed, revocable), and a walk over the URL map proving every
/instructor page and instructor API route refuses anonymous and student requests."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from sqlalchemy import select

from helpers.instructor import INSTRUCTOR_PASSWORD

PLACEHOLDERS = {"run_id": "abcdef123456", "token": "0123456789abcdef", "slug": "shapes", "action": "pause"}


def instructor_rules(app):
    """Every URL rule of the console and of the instructor API (what must be guarded)."""
    from app.instructor.auth import PUBLIC_ENDPOINTS

    rules = [r for r in app.url_map.iter_rules()
             if (r.rule.startswith("/instructor") or r.endpoint.startswith(("instructor.", "instructor_api.")))
             and r.endpoint not in PUBLIC_ENDPOINTS]
    return rules


def requests_for(app):
    """(method, url, is_api) for every guarded rule and method."""
    out = []
    with app.test_request_context():
        for rule in instructor_rules(app):
            url = rule.build({a: PLACEHOLDERS.get(a, "x") for a in rule.arguments})[1]
            for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
                out.append((method, url, rule.endpoint.startswith("instructor_api.")))
    return out


def test_the_walk_covers_the_console_and_the_api(instructor_app):
    endpoints = {r.endpoint for r in instructor_rules(instructor_app)}
    for expected in ("instructor.console", "instructor.dataset_upload", "instructor.run_report",
                     "instructor.publish_form", "instructor.cancel_run", "instructor_api.create_dataset",
                     "instructor_api.list_datasets", "instructor_api.publish_run", "instructor_api.unpublish_task",
                     "instructor_api.queue_action"):
        assert expected in endpoints
    from app.instructor.auth import PUBLIC_ENDPOINTS

    assert PUBLIC_ENDPOINTS == {"instructor.login"}  # the only open page: the sign-in form


def test_every_route_refuses_anonymous_requests(instructor_app):
    client = instructor_app.test_client()
    for method, url, is_api in requests_for(instructor_app):
        response = client.open(url, method=method)
        if is_api:
            assert response.status_code == 401, (method, url)
            assert response.headers["WWW-Authenticate"].startswith("Bearer")
            assert set(response.get_json()) == {"error", "error_en", "error_vi", "status"}
        else:
            assert response.status_code == 302, (method, url, response.status_code)
            assert "/instructor/login" in response.headers["Location"], (method, url)


def test_every_route_refuses_student_requests(instructor_app):
    client = instructor_app.test_client()
    client.set_cookie("lab_owner", "a-student-browser")
    for method, url, is_api in requests_for(instructor_app):
        response = client.open(url, method=method)
        assert response.status_code == 403, (method, url, response.status_code)


def test_a_student_with_a_class_code_is_refused_too(instructor_app):
    client = instructor_app.test_client()
    with client.session_transaction() as session:
        session["class_code"] = 1
    assert client.get("/instructor/").status_code == 403
    assert client.get("/api/v1/datasets").status_code == 401  # the API reads no session at all


def test_a_signed_in_browser_is_not_an_api_client(signed_in):
    assert signed_in.get("/instructor/").status_code == 200
    assert signed_in.get("/api/v1/datasets").status_code == 401  # bearer tokens only: no CSRF risk


# ----------------------------------------------------------------------------- the CLI
def test_cli_add_hashes_the_password_and_never_echoes_it(instructor_app):
    result = instructor_app.test_cli_runner().invoke(
        args=["instructor", "add", "ana"], input=f"{INSTRUCTOR_PASSWORD}\n{INSTRUCTOR_PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert INSTRUCTOR_PASSWORD not in result.output
    from app.records import Instructor, db

    with instructor_app.app_context():
        user = db.session.scalar(select(Instructor).where(Instructor.name == "ana"))
        assert user.password_hash.startswith("scrypt:") and INSTRUCTOR_PASSWORD not in user.password_hash


@pytest.mark.parametrize("args,typed,message", [
    (["instructor", "add", "bob"], "short\nshort\n", "at least"),
    (["instructor", "add", "bob"], f"{INSTRUCTOR_PASSWORD}\nsomething else\n", "do not match"),
    (["instructor", "add", "../bob"], "", "NAME"),
    (["instructor", "passwd", "nobody"], "", "no instructor"),
    (["instructor", "token", "nobody"], "", "no instructor"),
])
def test_cli_refusals(instructor_app, args, typed, message):
    result = instructor_app.test_cli_runner().invoke(args=args, input=typed)
    assert result.exit_code != 0
    assert message in result.output


def test_cli_add_twice_is_refused(instructor_app, add_instructor):
    add_instructor(instructor_app, "ana")
    result = instructor_app.test_cli_runner().invoke(
        args=["instructor", "add", "ana"], input=f"{INSTRUCTOR_PASSWORD}\n{INSTRUCTOR_PASSWORD}\n")
    assert result.exit_code != 0 and "already exists" in result.output


def test_passwd_signs_every_browser_out(signed_in, instructor_app):
    new = "a brand new passphrase"
    result = instructor_app.test_cli_runner().invoke(args=["instructor", "passwd", "teacher"], input=f"{new}\n{new}\n")
    assert result.exit_code == 0, result.output
    assert signed_in.get("/instructor/").status_code == 302  # the old session ended
    fresh = instructor_app.test_client()
    assert fresh.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 401
    assert fresh.post("/instructor/login", data={"name": "teacher", "password": new}).status_code == 302


def test_remove_deletes_the_account_and_its_tokens(instructor_app, add_instructor):
    add_instructor(instructor_app, "ana")
    runner = instructor_app.test_cli_runner()
    token = runner.invoke(args=["instructor", "token", "ana"]).output.strip()
    assert instructor_app.test_client().get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert runner.invoke(args=["instructor", "remove", "ana", "--yes"]).exit_code == 0
    assert instructor_app.test_client().get("/api/v1/datasets", headers={"Authorization": f"Bearer {token}"}).status_code == 401


# ----------------------------------------------------------------------------- sign-in
def test_sign_in_and_out(instructor_app, add_instructor):
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    page = client.get("/instructor/login?lang=vi").get_data(as_text=True)
    assert "Đăng nhập" in page
    response = client.post("/instructor/login?next=/instructor/datasets",
                           data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.status_code == 302 and response.headers["Location"] == "/instructor/datasets"
    assert client.get("/instructor/").status_code == 200
    assert client.post("/instructor/logout").status_code == 302
    assert client.get("/instructor/").status_code == 302


def test_logout_ends_a_copied_session_cookie(signed_in, instructor_app):
    saved = signed_in.get_cookie("session").value
    assert signed_in.get("/instructor/").status_code == 200
    assert signed_in.post("/instructor/logout").status_code == 302
    replay = instructor_app.test_client()
    replay.set_cookie("session", saved)
    assert replay.get("/instructor/").status_code == 302  # the copy is signed out, like a fresh client


def test_password_change_ends_a_copied_session_cookie(signed_in, instructor_app):
    saved = signed_in.get_cookie("session").value
    new = "a brand new passphrase"
    assert instructor_app.test_cli_runner().invoke(args=["instructor", "passwd", "teacher"],
                                                   input=f"{new}\n{new}\n").exit_code == 0
    replay = instructor_app.test_client()
    replay.set_cookie("session", saved)
    assert replay.get("/instructor/").status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "javascript:alert(1)",
                                    "/\\evil.example/x"])
def test_no_open_redirect_after_sign_in(instructor_app, add_instructor, target):
    add_instructor(instructor_app)
    response = instructor_app.test_client().post(f"/instructor/login?next={target}",
                                                 data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.headers["Location"] == "/instructor/"


def test_wrong_password_is_bilingual_and_gives_no_hint(instructor_app, add_instructor):
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    wrong = client.post("/instructor/login?lang=en", data={"name": "teacher", "password": "nope nope nope"})
    unknown = client.post("/instructor/login?lang=en", data={"name": "nobody", "password": "nope nope nope"})
    assert wrong.status_code == unknown.status_code == 401
    assert "Wrong name or password." in wrong.get_data(as_text=True)
    assert "Wrong name or password." in unknown.get_data(as_text=True)
    vi = client.post("/instructor/login?lang=vi", data={"name": "teacher", "password": "x"})
    assert "Sai tên hoặc mật khẩu." in vi.get_data(as_text=True)


def at(address: str) -> dict:
    """The test client's environ for a request from `address`."""
    return {"REMOTE_ADDR": address}


def login_error(response) -> tuple[int, str]:
    """A sign-in answer as the person sees it: its status and the error line."""
    page = response.get_data(as_text=True)
    return response.status_code, page.split('id="login-error">', 1)[1].split("</div>", 1)[0] if "login-error" in page else ""


def test_wrong_passwords_bring_growing_waits_not_a_lock_out(instructor_app, add_instructor):
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    free = instructor_app.config["LOGIN_FREE_TRIES"]
    for _ in range(free):
        assert client.post("/instructor/login", data={"name": "teacher", "password": "wrong guess"}).status_code == 401
    assert client.post("/instructor/login", data={"name": "teacher", "password": "wrong guess"}).status_code == 401
    waiting = client.post("/instructor/login?lang=en", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert waiting.status_code == 429  # the right password too, from this address, during the wait
    assert "wait 1 seconds" in login_error(waiting)[1]
    assert "hãy chờ 1 giây" in login_error(client.post("/instructor/login?lang=vi", data={"name": "teacher", "password": "x"}))[1]
    from app.instructor.delays import delay_after
    from app.records import LoginDelay, db, utcnow

    with instructor_app.test_request_context():
        assert [delay_after(free + n) for n in range(9)] == [0, 1, 2, 4, 8, 16, 32, 60, 60]  # doubles, capped
        row = db.session.get(LoginDelay, ("teacher", "127.0.0.1"))
        assert row.failures == free + 1  # the tries refused while waiting did not count
        row.retry_at = utcnow() - dt.timedelta(seconds=1)  # the wait is over
        db.session.commit()
    assert client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302
    with instructor_app.app_context():
        assert db.session.get(LoginDelay, ("teacher", "127.0.0.1")) is None  # a right password starts afresh


def test_an_attacker_elsewhere_cannot_keep_the_instructor_out(instructor_app, add_instructor):
    add_instructor(instructor_app)
    attacker, teacher = instructor_app.test_client(), instructor_app.test_client()
    codes = [attacker.post("/instructor/login", data={"name": "teacher", "password": f"guess {i}"},
                           environ_base=at("203.0.113.9")).status_code for i in range(8)]
    assert codes[:6] == [401] * 6 and 429 in codes  # slowed down at the attacker's address
    signed = teacher.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD},
                          environ_base=at("198.51.100.7"))
    assert signed.status_code == 302 and teacher.get("/instructor/", environ_base=at("198.51.100.7")).status_code == 200


def test_unknown_and_known_names_get_the_same_answers(instructor_app, add_instructor):
    add_instructor(instructor_app)
    client = instructor_app.test_client()
    rounds = instructor_app.config["LOGIN_FREE_TRIES"] + 3
    known = [login_error(client.post("/instructor/login?lang=en", data={"name": "teacher", "password": "wrong guess"},
                                     environ_base=at("192.0.2.1"))) for _ in range(rounds)]
    unknown = [login_error(client.post("/instructor/login?lang=en", data={"name": "nobody", "password": "wrong guess"},
                                       environ_base=at("192.0.2.2"))) for _ in range(rounds)]
    assert known == unknown
    assert {status for status, _ in known} == {401, 429}  # both slowed down the same way


def test_sign_in_tries_are_limited_per_address(make_app, tiny_models_dir, tmp_path, add_instructor):
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), RATELIMIT_ENABLED=True,
                   RATELIMIT_LOGIN="3 per minute")
    add_instructor(app)
    client = app.test_client()
    for _ in range(5):
        assert client.get("/instructor/login", environ_base=at("192.0.2.1")).status_code == 200  # the form is free
    codes = [client.post("/instructor/login", data={"name": f"name{i}", "password": "x"},
                         environ_base=at("192.0.2.1")).status_code for i in range(3)]
    assert codes == [401, 401, 401]
    refused = client.post("/instructor/login?lang=vi", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD},
                          environ_base=at("192.0.2.1"))
    assert refused.status_code == 429 and "Quá nhiều yêu cầu" in refused.get_data(as_text=True)
    assert int(refused.headers["Retry-After"]) > 0
    english = client.post("/instructor/login?lang=en", data={"name": "teacher", "password": "x"}, environ_base=at("192.0.2.1"))
    assert english.status_code == 429 and "Too many requests" in english.get_data(as_text=True)
    other = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD},
                        environ_base=at("192.0.2.99"))
    assert other.status_code == 302  # another address has its own budget


@pytest.mark.parametrize("key,age", [("instructor_seen", 2 * 3600), ("instructor_since", 9 * 3600)])
def test_sessions_expire(signed_in, key, age):
    import time

    with signed_in.session_transaction() as session:
        session[key] = time.time() - age
    response = signed_in.get("/instructor/")
    assert response.status_code == 302 and "/instructor/login" in response.headers["Location"]
    assert signed_in.get("/instructor/").status_code == 302  # signed out, not only redirected once


def test_forms_need_the_csrf_token(make_app, tiny_models_dir, tmp_path, add_instructor):
    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), WTF_CSRF_ENABLED=True)
    add_instructor(app)
    client = app.test_client()
    response = client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD})
    assert response.status_code == 400  # no csrf_token field
    page = client.get("/instructor/login").get_data(as_text=True)
    assert 'name="csrf_token"' in page


# ----------------------------------------------------------------------------- API tokens
def test_tokens_are_stored_hashed_and_can_be_revoked(instructor_app, add_instructor):
    add_instructor(instructor_app)
    runner = instructor_app.test_cli_runner()
    first = runner.invoke(args=["instructor", "token", "teacher"]).output.strip()
    second = runner.invoke(args=["instructor", "token", "teacher"]).output.strip()
    assert first.startswith("lstm_") and first != second
    from app.records import ApiToken, db

    with instructor_app.app_context():
        rows = db.session.scalars(select(ApiToken)).all()
        stored = {r.token_hash for r in rows}
        assert stored == {hashlib.sha256(t.encode()).hexdigest() for t in (first, second)}
        assert not any(first in (r.token_hash + r.prefix) and len(r.prefix) >= len(first) for r in rows)
    client = instructor_app.test_client()
    ok = client.post("/api/v1/queue/pause", headers={"Authorization": f"Bearer {first}"})
    assert ok.status_code == 200 and ok.get_json() == {"paused": True}
    assert client.post("/api/v1/queue/resume", headers={"Authorization": f"Bearer {first[:-1]}x"}).status_code == 401
    assert client.post("/api/v1/queue/resume", headers={"Authorization": f"Basic {first}"}).status_code == 401
    listed = runner.invoke(args=["instructor", "token", "teacher", "--list"]).output
    assert first[:12] in listed and first not in listed
    revoked = runner.invoke(args=["instructor", "token", "teacher", "--revoke", first[:12]])
    assert "1 token(s) revoked" in revoked.output
    assert client.post("/api/v1/queue/resume", headers={"Authorization": f"Bearer {first}"}).status_code == 401
    assert client.post("/api/v1/queue/resume", headers={"Authorization": f"Bearer {second}"}).status_code == 200
    runner.invoke(args=["instructor", "token", "teacher", "--revoke-all"])
    assert client.post("/api/v1/queue/resume", headers={"Authorization": f"Bearer {second}"}).status_code == 401


# ----------------------------------------------------------------------------- access modes
def test_access_modes_and_class_codes(instructor_app):
    from app.instructor import access
    from app.records import ClassCode, db, utcnow

    with instructor_app.test_request_context():
        assert access.may_train() is True  # open by default
        access.set_access_mode("closed")
        refused = access.may_train()
        assert refused.status == 403 and "closed" in refused.en and refused.vi
        access.set_access_mode("code")
        assert access.may_train().status == 403
        with pytest.raises(Exception):
            access.set_access_mode("everyone")
        first = access.new_class_code(hours=1).code
        second = access.new_class_code(hours=1).code
        assert first != second and access.current_code().code == second
    client = instructor_app.test_client()
    assert client.post("/lab/join", data={"code": first}).status_code == 403  # rotated out
    assert client.post("/lab/join?lang=en", data={"code": second.lower().replace("-", " ")}).status_code == 200
    assert client.post("/lab/join?next=//evil.example/", data={"code": second}).status_code == 200  # no open redirect
    moved = client.post("/lab/join?next=/lab", data={"code": second})
    assert moved.status_code == 302 and moved.headers["Location"] == "/lab"
    with client.session_transaction() as session:
        code_id = session["class_code"]
    with instructor_app.test_request_context():
        from flask import session

        session["class_code"] = code_id
        assert access.may_train() is True
        row = db.session.get(ClassCode, code_id)
        row.expires_at = utcnow() - dt.timedelta(minutes=1)
        db.session.commit()
        assert access.may_train().status == 403  # expired: no new runs from that browser


def test_console_sets_mode_code_limits_and_pause(signed_in, instructor_app):
    assert signed_in.post("/instructor/access", data={"action": "mode", "mode": "code"}).status_code == 303
    assert signed_in.post("/instructor/access", data={"action": "rotate", "hours": "2"}).status_code == 303
    page = signed_in.get("/instructor/?lang=en").get_data(as_text=True)
    assert 'id="class-code"' in page
    assert signed_in.post("/instructor/access", data={"action": "mode", "mode": "bogus"}).status_code == 400
    assert signed_in.post("/instructor/limits", data={"max_epochs": "4", "runs_per_browser": "1"}).status_code == 303
    assert signed_in.post("/instructor/limits", data={"max_epochs": "-3"}).status_code == 400
    assert signed_in.post("/instructor/queue/pause").status_code == 303
    with instructor_app.app_context():
        from app.instructor import settings
        from app.lab.recipes import current_limits

        assert settings.queue_paused() is True
        limits = current_limits()
        assert limits.max_epochs == 4 and limits.runs_per_browser == 1
    assert signed_in.post("/instructor/queue/resume").status_code == 303
    with instructor_app.app_context():
        assert settings.queue_paused() is False


@pytest.mark.parametrize("route, data, panel, words", [
    ("/instructor/limits", {"max_epochs": "-3", "max_params": "9"}, "limits-panel", "max_epochs"),
    ("/instructor/access", {"action": "mode", "mode": "bogus"}, "access-panel", "bogus"),
    ("/instructor/access", {"action": "rotate", "hours": "0"}, "access-panel", "năm"),
])
def test_a_refused_console_setting_shows_the_console_again_and_saves_nothing(signed_in, instructor_app, route,
                                                                             data, panel, words):
    response = signed_in.post(route + "?lang=vi", data=data)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert 'id="limits-panel"' in page and 'id="runs"' in page  # the console, not a bare error page
    assert words in page.split(f'id="{panel}-error">', 1)[1].split("</div>", 1)[0]
    assert page.count('role="alert"') == 1
    with instructor_app.app_context():
        from app.instructor import access
        from app.lab.recipes import Limits, current_limits

        assert current_limits() == Limits() and access.current_code() is None  # nothing saved


def test_the_lab_bench_obeys_the_access_mode(instructor_app):
    from app.instructor import access

    with instructor_app.test_request_context():
        access.set_access_mode("closed")
    client = instructor_app.test_client()
    body = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "epochs": 1}
    refused = client.post("/api/v1/runs?lang=en", json=body)
    assert refused.status_code == 403 and "closed" in refused.get_json()["error_en"]
    with instructor_app.test_request_context():
        access.set_access_mode("code")
        code = access.new_class_code(hours=1).code
    assert client.post("/api/v1/runs", json=body).status_code == 403
    assert client.post("/lab/join", data={"code": code}).status_code == 200
    assert client.post("/api/v1/runs", json=body).status_code == 202  # queued (no consumer here)


def test_header_links_the_console_for_an_instructor_and_the_footer_the_sign_in(signed_in, instructor_app):
    anonymous = instructor_app.test_client().get("/?lang=en").get_data(as_text=True)
    assert 'href="/instructor/login"' in anonymous and "Instructor sign-in" in anonymous
    assert 'href="/instructor/"' not in anonymous
    page = signed_in.get("/lab?lang=vi").get_data(as_text=True)
    header = page.split("</header>")[0]
    assert 'href="/instructor/"' in header and "Bảng điều khiển của giảng viên" in header
    assert 'href="/instructor/login"' not in page  # no sign-in link once signed in


def test_the_bench_shows_the_join_form_in_code_mode_until_this_browser_joins(signed_in, instructor_app):
    from app.instructor import access

    with instructor_app.test_request_context():
        access.set_access_mode("code")
        code = access.new_class_code(hours=1).code
    assert 'id="join-form"' not in signed_in.get("/lab").get_data(as_text=True)  # an instructor may always train
    student = instructor_app.test_client()
    page = student.get("/lab?lang=vi").get_data(as_text=True)
    assert 'id="join-form"' in page and 'action="/lab/join?next=/lab"' in page
    assert "Cần mã lớp do giảng viên cung cấp để huấn luyện ở đây." in page
    joined = student.post("/lab/join?next=%2Flab", data={"code": code.lower().replace("-", " ")})
    assert joined.status_code == 302 and joined.headers["Location"] == "/lab"
    assert 'id="join-form"' not in student.get("/lab").get_data(as_text=True)
    with instructor_app.test_request_context():
        access.new_class_code(hours=1)  # rotation: the old code stops working, the form comes back
        assert access.needs_class_code() is True
    assert 'id="join-form"' in student.get("/lab").get_data(as_text=True)
    with instructor_app.test_request_context():
        access.set_access_mode("open")
    assert 'id="join-form"' not in instructor_app.test_client().get("/lab").get_data(as_text=True)


def test_parallel_wrong_passwords_all_count_and_none_fails(instructor_app, add_instructor):
    from concurrent.futures import ThreadPoolExecutor

    add_instructor(instructor_app)

    def wrong(_):
        return instructor_app.test_client().post("/instructor/login", data={"name": "teacher", "password": "wrong guess"},
                                                 environ_base=at("192.0.2.30")).status_code

    with ThreadPoolExecutor(4) as pool:
        codes = list(pool.map(wrong, range(4)))
    assert codes == [401] * 4  # the first failures of a new pair race to insert its row: no 500
    from app.records import LoginDelay, db

    with instructor_app.app_context():
        assert db.session.get(LoginDelay, ("teacher", "192.0.2.30")).failures == 4
