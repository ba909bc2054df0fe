"""API tokens expire (a default and per token), die with a password change, and show their last
use on the console, written at most once a minute (issue 36 item 8)."""

from __future__ import annotations

import datetime as dt
import re

from sqlalchemy import select

from helpers.instructor import INSTRUCTOR_PASSWORD


def bearer(token: str) -> dict:
    """The header of a call with `token`."""
    return {"Authorization": f"Bearer {token}"}


def new_token(app, *args, name: str = "teacher") -> str:
    """A new API token of `name` made with the CLI (`args`: e.g. --days N)."""
    result = app.test_cli_runner().invoke(args=["instructor", "token", name, *args])
    assert result.exit_code == 0, result.output
    return result.output.strip()


def token_row(app, token: str):
    """The stored row of `token` (inside an app context)."""
    from app.instructor.auth import token_digest
    from app.records import ApiToken, db

    return db.session.scalar(select(ApiToken).where(ApiToken.token_hash == token_digest(token)))


def test_tokens_expire_by_default_and_as_chosen(instructor_app, add_instructor):
    add_instructor(instructor_app)
    default, short = new_token(instructor_app), new_token(instructor_app, "--days", "3")
    from app.records import as_utc, db, utcnow

    with instructor_app.app_context():
        lasts = {t: as_utc(token_row(instructor_app, t).expires_at) - as_utc(token_row(instructor_app, t).created_at)
                 for t in (default, short)}
        assert abs(lasts[default] - dt.timedelta(days=instructor_app.config["API_TOKEN_DAYS"])) < dt.timedelta(seconds=5)
        assert abs(lasts[short] - dt.timedelta(days=3)) < dt.timedelta(seconds=5)
    client = instructor_app.test_client()
    assert client.get("/api/v1/datasets", headers=bearer(short)).status_code == 200
    with instructor_app.app_context():
        token_row(instructor_app, short).expires_at = utcnow() - dt.timedelta(seconds=1)
        db.session.commit()
    refused = client.get("/api/v1/datasets?lang=en", headers=bearer(short))
    body = refused.get_json()
    assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert "expired on" in body["error_en"] and "đã hết hạn" in body["error_vi"]
    lab = client.post("/api/v1/runs", json={"dataset": "mnist", "epochs": 1}, headers=bearer(short))
    assert lab.status_code == 401 and "expired" in lab.get_json()["error_en"]  # the runs API refuses it too
    assert client.get("/api/v1/datasets", headers=bearer(default)).status_code == 200
    listed = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher", "--list"]).output
    assert "expired" in listed and "active" in listed


def test_a_lifetime_out_of_bounds_is_refused(instructor_app, add_instructor):
    add_instructor(instructor_app)
    for days in ("0", "366", "two", "٣", "-1", "9" * 5000):
        result = instructor_app.test_cli_runner().invoke(args=["instructor", "token", "teacher", "--days", days])
        assert result.exit_code != 0 and "from 1 to 365" in result.output, days


def test_a_password_change_revokes_every_token(instructor_app, add_instructor):
    add_instructor(instructor_app)
    tokens = [new_token(instructor_app), new_token(instructor_app, "--days", "30")]
    client = instructor_app.test_client()
    assert all(client.get("/api/v1/datasets", headers=bearer(t)).status_code == 200 for t in tokens)
    new = "a brand new passphrase"
    result = instructor_app.test_cli_runner().invoke(args=["instructor", "passwd", "teacher"], input=f"{new}\n{new}\n")
    assert result.exit_code == 0 and "2 API token(s) revoked" in result.output
    assert [client.get("/api/v1/datasets", headers=bearer(t)).status_code for t in tokens] == [401, 401]


def test_last_use_is_written_at_most_once_a_minute(instructor_app, add_instructor):
    add_instructor(instructor_app)
    token = new_token(instructor_app)
    client = instructor_app.test_client()
    from app.records import as_utc, db, utcnow

    with instructor_app.app_context():
        assert token_row(instructor_app, token).last_used_at is None
    assert client.get("/api/v1/datasets", headers=bearer(token)).status_code == 200
    with instructor_app.app_context():
        first = as_utc(token_row(instructor_app, token).last_used_at)
        assert abs(utcnow() - first) < dt.timedelta(seconds=5)
    for _ in range(3):
        assert client.get("/api/v1/datasets", headers=bearer(token)).status_code == 200
    with instructor_app.app_context():
        assert as_utc(token_row(instructor_app, token).last_used_at) == first  # no write within the minute
        token_row(instructor_app, token).last_used_at = first - dt.timedelta(seconds=61)
        db.session.commit()
    assert client.get("/api/v1/datasets", headers=bearer(token)).status_code == 200
    with instructor_app.app_context():
        assert as_utc(token_row(instructor_app, token).last_used_at) > first  # a minute later: written again


def test_the_console_makes_lists_and_revokes_tokens(signed_in, instructor_app, add_instructor):
    page = signed_in.get("/instructor/tokens?lang=vi").get_data(as_text=True)
    assert "Chưa có mã nào." in page and 'href="/instructor/tokens"' in page
    made = signed_in.post("/instructor/tokens?lang=en", data={"days": "7"})
    assert made.status_code == 201
    token = re.search(r"<code class=\"code\">(lstm_[^<]+)</code>", made.get_data(as_text=True)).group(1)
    assert "never" in made.get_data(as_text=True)
    client = instructor_app.test_client()
    assert client.get("/api/v1/datasets", headers=bearer(token)).status_code == 200
    page = signed_in.get("/instructor/tokens?lang=vi").get_data(as_text=True)
    assert token[:12] in page and token not in page  # listed by its prefix, never shown again
    row_html = page.split(f"{token[:12]}…", 1)[1].split("</tr>", 1)[0]
    assert row_html.count("<time ") == 3 and "đang dùng được" in row_html  # created, expires, last used
    for bad in ("0", "9999", "x"):
        refused = signed_in.post("/instructor/tokens?lang=vi", data={"days": bad})
        assert refused.status_code == 400 and "từ 1 đến 365" in refused.get_data(as_text=True)
    with instructor_app.app_context():
        token_id = token_row(instructor_app, token).id
    add_instructor(instructor_app, "other")
    theirs = new_token(instructor_app, name="other")
    with instructor_app.app_context():
        their_id = token_row(instructor_app, theirs).id
    assert signed_in.post("/instructor/tokens/revoke", data={"id": str(their_id)}).status_code == 404
    assert signed_in.post("/instructor/tokens/revoke", data={"id": "not a number"}).status_code == 404
    assert client.get("/api/v1/datasets", headers=bearer(theirs)).status_code == 200
    assert signed_in.post("/instructor/tokens/revoke", data={"id": str(token_id)}).status_code == 303
    assert client.get("/api/v1/datasets", headers=bearer(token)).status_code == 401
    assert "đã thu hồi" in signed_in.get("/instructor/tokens?lang=vi").get_data(as_text=True)


def test_tokens_of_an_older_database_get_the_default_lifetime(make_app, tiny_models_dir, tmp_path):
    from flask_migrate import upgrade
    from sqlalchemy import text

    from app.records import MIGRATIONS_DIR, ApiToken, as_utc, db, utcnow

    app = make_app(tiny_models_dir, INSTANCE_PATH=str(tmp_path / "instance"), LSTMLAB_AUTO_UPGRADE="0")
    with app.app_context():
        upgrade(directory=str(MIGRATIONS_DIR), revision="0004_submissions")
        db.session.execute(text("INSERT INTO instructors (name, password_hash, session_token, created_at) "
                                "VALUES ('teacher', 'x', 't', '2026-01-01 00:00:00')"))
        db.session.execute(text("INSERT INTO api_tokens (instructor_id, token_hash, prefix, created_at) "
                                "VALUES (1, 'h', 'lstm_abc', '2026-01-01 00:00:00')"))
        db.session.commit()
        upgrade(directory=str(MIGRATIONS_DIR))
        row = db.session.scalar(select(ApiToken))
        assert abs(as_utc(row.expires_at) - utcnow() - dt.timedelta(days=90)) < dt.timedelta(minutes=1)


def test_the_console_password_form_revokes_tokens_and_ends_other_sessions(signed_in, instructor_app):
    tokens = [new_token(instructor_app), new_token(instructor_app, "--days", "5")]
    other = instructor_app.test_client()
    other.set_cookie("session", signed_in.get_cookie("session").value)  # the same sign-in, copied
    assert other.get("/instructor/").status_code == 200
    new = "another long passphrase"
    page = signed_in.get("/instructor/password?lang=vi").get_data(as_text=True)
    assert "Mật khẩu hiện tại" in page and 'href="/instructor/password"' in page
    wrong = signed_in.post("/instructor/password?lang=vi", data={"current": "not it at all", "new": new, "confirm": new})
    assert wrong.status_code == 401 and "Sai tên hoặc mật khẩu." in wrong.get_data(as_text=True)
    mismatch = signed_in.post("/instructor/password?lang=en",
                              data={"current": INSTRUCTOR_PASSWORD, "new": new, "confirm": new + "x"})
    assert mismatch.status_code == 400 and "do not match" in mismatch.get_data(as_text=True)
    short = signed_in.post("/instructor/password", data={"current": INSTRUCTOR_PASSWORD, "new": "short", "confirm": "short"})
    assert short.status_code == 400
    client = instructor_app.test_client()
    assert all(client.get("/api/v1/datasets", headers=bearer(t)).status_code == 200 for t in tokens)  # nothing changed yet
    changed = signed_in.post("/instructor/password?lang=en",
                             data={"current": INSTRUCTOR_PASSWORD, "new": new, "confirm": new})
    assert changed.status_code == 303
    assert "2 API token(s) were revoked" in signed_in.get("/instructor/?lang=en").get_data(as_text=True)
    assert signed_in.get("/instructor/").status_code == 200  # this browser stays signed in
    assert other.get("/instructor/").status_code == 302  # the copy is signed out
    assert [client.get("/api/v1/datasets", headers=bearer(t)).status_code for t in tokens] == [401, 401]
    assert client.post("/instructor/login", data={"name": "teacher", "password": new}).status_code == 302
    instructor_app.config["LOGIN_FREE_TRIES"] = 0  # wrong current passwords are delayed like sign-ins
    guesses = [signed_in.post("/instructor/password", data={"current": "guess", "new": new, "confirm": new}).status_code
               for _ in range(2)]
    assert guesses == [401, 429]
