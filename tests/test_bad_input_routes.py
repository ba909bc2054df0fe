"""Bad input on every write route (issue 36 item 4): walk app.url_map for POST/PUT/PATCH/DELETE
rules, fill URL variables with real ids (and with bad values), send Unicode digits, signs, a
5,000-digit number, wrong types and 100,000-deep JSON as JSON and as form fields: every answer
is under 500, and every refusal is bilingual (JSON: error_en and error_vi; a page: in the language
asked for). One app for the module; each test gets its own client signed in as an instructor (CSRF
off as in the other tests) and an API token, so the instructor routes reach their validation in
any order (pytest-randomly shuffles them; a walk that signs out touches only its own client)."""

from __future__ import annotations

import dataclasses
import re
import shutil
from pathlib import Path

import pytest

from app.lab.recipes import Limits
from helpers.instructor import INSTRUCTOR_PASSWORD, INSTRUCTOR_RUN_ID

WRITE_METHODS = ("POST", "PUT", "PATCH", "DELETE")
DEEP_ARRAY = "[" * 100_000 + "]" * 100_000
DEEP_OBJECT = '{"a":' * 100_000 + "1" + "}" * 100_000

# Values that look like numbers to a careless parser, huge ones, and wrong types.
BAD_VALUES = {
    "superscript two": "²",
    "arabic-indic three": "٣",
    "two signs": "+-8",
    "5,000 digits": "9" * 5000,
    "deep text": "[" * 100_000,
    "list": [1, 2],
    "object": {"units": "²"},
    "null": None,
    "true": True,
    "float past int": 1e300,
}
# Every field name a view or a recipe reads (form fields, JSON keys, recipe keys, limits).
FIELDS = ("action", "again", "back", "batch_size", "bidirectional", "cell", "cells", "classes", "code", "colour",
          "confirm", "confirm_chance", "current", "dataset", "days", "dropout", "embedding", "epochs", "export",
          "folder", "format", "hours", "id", "image", "image_size", "k", "layers", "learning_rate", "limit",
          "max_epochs", "max_runs", "min_count", "mode", "name", "new", "next", "nickname", "password", "preset",
          "reading", "recipe", "recurrent_only", "seed", "sequence_length", "slug", "source", "status", "subset",
          "tied", "title_en", "title_vi", "token", "units", "target_accuracy", "max_file_mb",
          *(f.name for f in dataclasses.fields(Limits)))
NUMBERS = ("batch_size", "days", "dropout", "embedding", "epochs", "hours", "image_size", "layers",
           "learning_rate", "limit", "seed", "subset", "units")
# The routes that parse whole numbers from their fields (recipes, limits, rules, token lifetimes).
# (The console's limits, rules and token forms read only their own fields: every field at once covers them.)
NUMBER_ROUTES = {"lab_api.create_run", "lab.bench", "lab_submit_api.create_submission", "lab_submit.submit_page",
                 "instructor.dataset_preview", "instructor_api.create_dataset"}
VIETNAMESE = re.compile("[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]", re.IGNORECASE)
ALERT = re.compile(r'role="alert"[^>]*>(.*?)</(?:div|p)>', re.S)
LAST = ("instructor.delete_run", "lab_api.delete_run", "instructor.dataset_delete", "instructor.logout")


@pytest.fixture(scope="module")
def bench_app(make_app, tiny_models_dir, tiny_run_folder, tmp_path_factory):
    """The app with an instructor, a bearer token and a finished run to aim at."""
    from app.records import FINISHED, Run, db

    root = tmp_path_factory.mktemp("bad-routes")
    shutil.copytree(tiny_models_dir, root / "models")
    (root / "server").mkdir()
    app = make_app(root / "models", INSTANCE_PATH=str(root / "instance"), DATASET_SERVER_ROOT=str(root / "server"),
                   MODELS_RELOAD_SECONDS=0, LSTMLAB_QUEUE_URL="", RATELIMIT_LOGIN="1000 per minute")
    cli = app.test_cli_runner()
    assert cli.invoke(args=["instructor", "add", "teacher"],
                      input=f"{INSTRUCTOR_PASSWORD}\n{INSTRUCTOR_PASSWORD}\n").exit_code == 0
    token = cli.invoke(args=["instructor", "token", "teacher"]).output.strip().splitlines()[-1]
    shutil.copytree(tiny_run_folder, Path(app.instance_path) / "runs" / INSTRUCTOR_RUN_ID)
    with app.app_context():
        db.session.add(Run(id=INSTRUCTOR_RUN_ID, dataset="mnist", status=FINISHED, recipe={"units": 8},
                           settings={"seed": 3}, metrics={"test_accuracy": 0.9, "confusion_matrix": [[9, 1], [1, 9]]}))
        db.session.commit()
    return app, {"Authorization": f"Bearer {token}"}


@pytest.fixture
def bench(bench_app):
    """The app, a client signed in as the instructor for this test alone, and the bearer token.
    (A walk over the password form may leave a sign-in delay for the name: cleared first.)"""
    from sqlalchemy import delete

    from app.records import LoginDelay, db

    app, auth = bench_app
    with app.app_context():
        db.session.execute(delete(LoginDelay))
        db.session.commit()
    client = app.test_client()
    assert client.post("/instructor/login", data={"name": "teacher", "password": INSTRUCTOR_PASSWORD}).status_code == 302
    return app, client, auth


def write_rules():
    """Every write rule of a fresh app, the ones that delete or sign out last."""
    from app import create_app

    app = create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": "/nonexistent"})
    rules = [r for r in app.url_map.iter_rules() if set(WRITE_METHODS) & r.methods]
    return sorted(rules, key=lambda r: (r.endpoint in LAST, LAST.index(r.endpoint) if r.endpoint in LAST else 0, r.rule))


RULES = write_rules()
REAL_IDS = {"run_id": INSTRUCTOR_RUN_ID, "slug": "mnist", "dataset": "mnist", "action": "pause", "token": "0" * 32}


def url(rule, values: dict) -> str:
    """`rule` with its variables filled from `values` (a bad value for any not given)."""
    from urllib.parse import quote

    path = rule.rule
    for arg in rule.arguments:
        path = path.replace(f"<{arg}>", quote(str(values.get(arg, "²")), safe=""))
    return re.sub(r"<(?:\w+:)?(\w+)>", "x", path)


def as_form(value) -> str:
    """A value as a form field carries it."""
    return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


def assert_refusal_in_language(response, lang: str, where: str) -> None:
    """Under 500; a 4xx carries its message in both languages (JSON) or in `lang` (a page)."""
    text = response.get_data(as_text=True)
    assert response.status_code < 500, (where, response.status_code, text[:300])
    assert "Traceback" not in text, where
    if response.status_code < 400:
        return
    if response.is_json:
        body = response.get_json()
        assert body.get("error_en") and body.get("error_vi") and body["error_en"] != body["error_vi"], (where, body)
        assert body["error"] == body[f"error_{lang}"], (where, body)
    else:
        assert f'<html lang="{lang}"' in text, (where, response.status_code, text[:300])
        alert = ALERT.search(text)
        assert alert, (where, response.status_code, "no role=alert message")
        message = re.sub(r"<[^>]+>", "", alert.group(1)).strip()
        assert message and (VIETNAMESE.search(message) is not None) == (lang == "vi"), (where, response.status_code, message)


def send(client, rule, path: str, auth: dict, lang: str, json=None, form=None, raw=None):
    """One request to `path` with the rule's first write method."""
    method = next(m for m in WRITE_METHODS if m in rule.methods)
    kwargs = {"headers": auth if path.startswith("/api/") else {}}
    if raw is not None:
        kwargs.update(data=raw, content_type="application/json")
    elif json is not None:
        kwargs["json"] = json
    else:
        kwargs["data"] = form or {}
    sep = "&" if "?" in path else "?"
    return client.open(f"{path}{sep}lang={lang}", method=method, **kwargs)


def bodies(rule, value):
    """The bodies to send with one bad value: every field at once; on the routes that read whole
    numbers (and refuse unknown fields), also each number field alone, at the top and inside a
    recipe; as JSON on /api/ routes and as form fields elsewhere."""
    everything = {f: value for f in FIELDS}
    singles = [{"dataset": "mnist", f: value} for f in NUMBERS] + [{"dataset": "mnist", "recipe": {f: value}}
                                                                   for f in ("units", "layers", "dropout")]
    if rule.endpoint not in NUMBER_ROUTES:
        singles = []
    if rule.rule.startswith("/api/"):
        return [("json", b) for b in [everything, *singles]]
    return [("form", {k: as_form(v) for k, v in b.items() if not isinstance(v, dict)}) for b in [everything, *singles]]


@pytest.mark.parametrize("value", ["٣", "²", "+-8", "9" * 5000, "1e300"])
@pytest.mark.parametrize("path,field", [("/instructor/limits", "max_epochs"), ("/instructor/limits", "queue_length"),
                                        ("/instructor/submissions/rules/mnist", "max_params"),
                                        ("/instructor/submissions/rules/mnist", "target_accuracy"),
                                        ("/instructor/tokens", "days")])
def test_console_numbers_are_ascii_digits_only(bench, path, field, value):
    """int() and float() read "٣" as 3: the console's number fields refuse it (and the rest) with a
    bilingual 400, and store nothing."""
    from app.instructor import settings

    app, client, _auth = bench
    with app.app_context():
        before = (settings.get_setting("lab_limits"), settings.get_setting("submission_rules"))
    for lang in ("vi", "en"):
        response = client.post(f"{path}?lang={lang}", data={field: value})
        assert response.status_code == 400, (path, field, value, response.status_code)
        assert_refusal_in_language(response, lang, f"{path} {field}={value[:10]}")
    with app.app_context():
        assert (settings.get_setting("lab_limits"), settings.get_setting("submission_rules")) == before


@pytest.mark.parametrize("rule", RULES, ids=lambda r: f"{'/'.join(sorted(set(WRITE_METHODS) & r.methods))} {r.rule}")
def test_every_write_route_refuses_bad_input_without_a_500(bench, rule):
    app, client, auth = bench
    sent = 0
    for i, (name, value) in enumerate(BAD_VALUES.items()):
        lang = ("vi", "en")[i % 2]
        real = url(rule, REAL_IDS)
        for kind, body in bodies(rule, value):
            response = send(client, rule, real, auth, lang, **{kind: body})
            assert_refusal_in_language(response, lang, f"{rule.rule} {name} {kind} {str(body)[:80]}")
            sent += 1
        if rule.arguments and isinstance(value, str) and len(value) < 10_000:
            response = send(client, rule, url(rule, {a: value for a in rule.arguments}), auth, lang,
                            form={"confirm": "yes"})
            assert 400 <= response.status_code < 500, (rule.rule, name, response.status_code)
            assert_refusal_in_language(response, lang, f"{rule.rule} in the address: {name}")
            sent += 1
    for lang, raw in (("vi", DEEP_ARRAY), ("en", DEEP_OBJECT), ("vi", '{"units": "²",'), ("en", "[1, 2, 3]")):
        response = send(client, rule, url(rule, REAL_IDS), auth, lang, raw=raw.encode())
        assert_refusal_in_language(response, lang, f"{rule.rule} raw {raw[:20]}")
        sent += 1
    assert sent >= len(BAD_VALUES) * (1 + (len(NUMBERS) if rule.endpoint in NUMBER_ROUTES else 0))


def test_the_walk_covers_the_routes_the_issue_names():
    paths = {r.rule for r in RULES}
    assert {"/api/v1/runs", "/lab", "/api/v1/runs/<run_id>/publish", "/tasks/<slug>", "/instructor/limits",
            "/instructor/runs/<run_id>/publish", "/api/v1/tasks/<slug>/generate"} <= paths
    assert len(RULES) >= 30 and NUMBER_ROUTES <= {r.endpoint for r in RULES}

