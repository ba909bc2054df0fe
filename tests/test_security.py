"""Security: response headers, CSRF on the HTML forms (JSON API usable), the secret
key, no debug under gunicorn, per-client rate limits on generate, uploads never on disk in
the project tree."""

from __future__ import annotations

import io
import itertools
import os
import re
import secrets
import subprocess
import sys
import time
from html.parser import HTMLParser

import pytest

from app import create_app, security
from app.config import ROOT, Config
from app.i18n import translate_to

LANGS = ("vi", "en")
TEXT_BODY = {"seed": "trăm năm trong cõi", "length": 1, "random_seed": 1}


def upload(data: bytes, name: str = "x.png") -> dict:
    return {"file": (io.BytesIO(data), name)}


@pytest.fixture(scope="module")
def digit_png(uploads):
    """A drawn digit as PNG bytes (a function, called where a test uploads it)."""
    return lambda: uploads.encode(uploads.digit_like(64, 64), "PNG")


@pytest.fixture(scope="module")
def strict_app(make_app, tiny_models_dir):
    """The app as production runs it: CSRF on, a small generate limit (3 per minute)."""
    return make_app(tiny_models_dir, WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True,
                    RATELIMIT_GENERATE="3 per minute")


ADDRESSES = itertools.count(1)


def client_at(app, address: str | None = None):
    """A test client that connects from its own address (rate limits count per address)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address or f"10.0.0.{next(ADDRESSES)}"
    return client


@pytest.fixture
def strict_client(strict_app):
    """A client with its own address, so rate-limit counts never leak between tests."""
    return client_at(strict_app)


def text_ready(app) -> None:
    from app.modelstore import get_store

    with app.app_context():
        if not get_store().get("kieu").available:
            pytest.skip("text models not available")


# ----------------------------------------------------------------------------- headers
@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/tasks/mnist"), ("GET", "/tasks/mnist/card"),
                                          ("GET", "/docs/api"), ("GET", "/api/v1/tasks"), ("GET", "/readyz"),
                                          ("GET", "/static/css/app.css"), ("GET", "/no/such/page"),
                                          ("POST", "/api/v1/tasks/mnist/predict")])
def test_security_headers_on_every_response(client, method, path):
    resp = client.open(path, method=method)
    csp = {d.split()[0]: d.split()[1:] for d in resp.headers["Content-Security-Policy"].split("; ")}
    assert csp["script-src"] == ["'self'"]  # no 'unsafe-inline', no 'unsafe-eval', no other origin
    assert csp["frame-ancestors"] == ["'none'"] and csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in " ".join(csp.get("default-src", []) + csp.get("style-src", []))
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Referrer-Policy"] in ("same-origin", "no-referrer", "strict-origin-when-cross-origin")
    assert resp.headers["X-Frame-Options"] == "DENY"


class ScriptFinder(HTMLParser):
    """Collects inline script bodies, event-handler attributes and javascript: URLs."""

    def __init__(self):
        super().__init__()
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._in_script = True
            if not attrs.get("src"):
                self.problems.append("inline <script>")
        self.problems += [f"{tag} {k}=" for k in attrs if k.startswith("on")]
        self.problems += [f"{tag} {k}=javascript:" for k, v in attrs.items() if (v or "").strip().lower().startswith("javascript:")]

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append("script body")


@pytest.mark.parametrize("lang", LANGS)
def test_rendered_pages_have_no_inline_script(digit_png, app, client, lang):
    text_ready(app)
    pages = [client.get(f"{p}?lang={lang}") for p in ("/", "/tasks/mnist", "/tasks/nyt_headlines", "/tasks/kieu",
                                                      "/tasks/mnist/card", "/tasks/kieu/card", "/docs/api",
                                                      "/tasks/cifar10", "/missing", "/lstm", "/lstm/why")]
    pages.append(client.post(f"/tasks/mnist?lang={lang}", data={**upload(digit_png()), "trace": "1"},
                             content_type="multipart/form-data"))
    pages.append(client.post(f"/tasks/kieu?lang={lang}", data={**{k: str(v) for k, v in TEXT_BODY.items()}, "trace": "1"}))
    for resp in pages:
        finder = ScriptFinder()
        finder.feed(resp.get_data(as_text=True))
        assert resp.mimetype == "text/html" and not finder.problems, (resp.request.path, finder.problems)


# ----------------------------------------------------------------------------- CSRF
def csrf_token(client, path: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).get_data(as_text=True))
    assert match, f"no csrf_token field on {path}"
    return match.group(1)


@pytest.mark.parametrize("lang", LANGS)
def test_html_image_form_needs_the_csrf_token(digit_png, strict_client, lang):
    forged = strict_client.post(f"/tasks/mnist?lang={lang}", data=upload(digit_png()), content_type="multipart/form-data")
    assert forged.status_code == 400
    assert translate_to(lang, security.CSRF_MESSAGE).split(".")[0] in forged.get_data(as_text=True)
    token = csrf_token(strict_client, f"/tasks/mnist?lang={lang}")
    ok = strict_client.post(f"/tasks/mnist?lang={lang}", data={**upload(digit_png()), "csrf_token": token},
                            content_type="multipart/form-data")
    assert ok.status_code == 200 and 'id="result"' in ok.get_data(as_text=True)
    stale = strict_client.post(f"/tasks/mnist?lang={lang}", data={**upload(digit_png()), "csrf_token": token[:-4] + "AAAA"},
                               content_type="multipart/form-data")
    assert stale.status_code == 400


def test_html_text_form_needs_the_csrf_token(strict_app, strict_client):
    text_ready(strict_app)
    form = {k: str(v) for k, v in TEXT_BODY.items()}
    assert strict_client.post("/tasks/kieu", data=form).status_code == 400
    token = csrf_token(strict_client, "/tasks/kieu")
    assert strict_client.post("/tasks/kieu", data={**form, "csrf_token": token}).status_code == 200


def test_json_api_needs_no_csrf_token(digit_png, strict_app, strict_client):
    text_ready(strict_app)
    assert strict_client.post("/api/v1/tasks/mnist/predict", data=upload(digit_png())).status_code == 200
    resp = strict_client.post("/api/v1/tasks/kieu/generate", json=TEXT_BODY)
    assert resp.status_code == 200 and resp.get_json()["text"]


def test_csrf_error_in_json_for_api_clients_that_post_forms(digit_png, strict_client):
    resp = strict_client.post("/tasks/mnist?lang=en", headers={"Accept": "application/json"},
                              data=upload(digit_png()), content_type="multipart/form-data")
    assert resp.status_code == 400 and resp.get_json()["error_en"] == security.CSRF_MESSAGE


def test_session_cookie_is_httponly_and_samesite(strict_client):
    strict_client.get("/tasks/mnist")
    cookie = strict_client.get_cookie("session")
    assert cookie is not None and cookie.http_only and cookie.same_site == "Lax"


# ----------------------------------------------------------------------------- rate limit
def test_generate_is_rate_limited_per_client(digit_png, strict_app, strict_client):
    text_ready(strict_app)
    codes = [strict_client.post("/api/v1/tasks/kieu/generate?lang=en", json=TEXT_BODY).status_code for _ in range(3)]
    assert codes == [200, 200, 200]
    limited = strict_client.post("/api/v1/tasks/kieu/generate?lang=en", json=TEXT_BODY)
    assert limited.status_code == 429 and limited.is_json and "Too many requests" in limited.get_json()["error"]
    assert int(limited.headers["Retry-After"]) > 0
    # The HTML form shares the budget (same client, same generator cost).
    token = csrf_token(strict_client, "/tasks/nyt_headlines")
    page = strict_client.post("/tasks/nyt_headlines?lang=vi", data={"seed": "trump", "length": "2", "csrf_token": token})
    assert page.status_code == 429 and "Quá nhiều yêu cầu" in page.get_data(as_text=True)
    # Classifying and reading pages are not limited; another client still has its budget.
    for _ in range(5):
        assert strict_client.post("/api/v1/tasks/mnist/predict", data=upload(digit_png())).status_code == 200
    assert strict_client.get("/tasks/kieu").status_code == 200
    other = client_at(strict_app, "192.0.2.77")
    assert other.post("/api/v1/tasks/kieu/generate", json=TEXT_BODY).status_code == 200


def test_generate_limit_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FLASK_RATELIMIT_GENERATE", "5 per hour")
    app = create_app({"TESTING": True, "MODELS_DIR": str(tmp_path)})
    assert app.config["RATELIMIT_GENERATE"] == "5 per hour"
    assert not app.config["RATELIMIT_ENABLED"] and not app.config["WTF_CSRF_ENABLED"]  # off in tests by default
    monkeypatch.delenv("FLASK_RATELIMIT_GENERATE")
    assert create_app({"TESTING": True, "MODELS_DIR": str(tmp_path)}).config["RATELIMIT_GENERATE"] == "30 per minute"


# ----------------------------------------------------------------------------- secret key, debug
@pytest.mark.parametrize("key", [Config.SECRET_KEY, "", None])
def test_default_secret_key_is_refused_outside_testing(tmp_path, monkeypatch, key):
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    with pytest.raises(security.InsecureConfiguration, match="FLASK_SECRET_KEY"):
        create_app({"MODELS_DIR": str(tmp_path), "SECRET_KEY": key})


def test_secret_key_from_the_environment_is_accepted(tmp_path, monkeypatch):
    key = secrets.token_hex(32)
    monkeypatch.setenv("FLASK_SECRET_KEY", key)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    app = create_app({"MODELS_DIR": str(tmp_path)})
    assert app.secret_key == key and not app.debug and not app.testing
    # A developer's machine (debug) may keep the default key.
    monkeypatch.delenv("FLASK_SECRET_KEY")
    assert create_app({"MODELS_DIR": str(tmp_path), "DEBUG": True}).debug


def test_debug_is_turned_off_under_gunicorn(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")  # what gunicorn's arbiter sets
    app = create_app({"MODELS_DIR": str(tmp_path), "DEBUG": True, "SECRET_KEY": secrets.token_hex(16)})
    assert not app.debug
    # ...and without debug the default key no longer passes.
    with pytest.raises(security.InsecureConfiguration):
        create_app({"MODELS_DIR": str(tmp_path), "DEBUG": True})


def test_gunicorn_refuses_to_serve_with_the_default_key(tmp_path):
    """`gunicorn -c gunicorn.conf.py wsgi:app` without FLASK_SECRET_KEY (even with FLASK_DEBUG=1)
    exits instead of serving."""
    env = {k: v for k, v in os.environ.items() if k != "FLASK_SECRET_KEY"}
    env.update(FLASK_DEBUG="1", FLASK_MODELS_DIR=str(tmp_path), LSTMLAB_BIND="127.0.0.1:0", WEB_CONCURRENCY="1")
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", "wsgi:app"], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "refusing to start with the default SECRET_KEY" in proc.stderr


# ----------------------------------------------------------------------------- uploads stay off disk
def test_uploads_are_never_written_under_the_project_tree(uploads, client, app):
    """A 2 MB upload (above werkzeug's in-memory threshold) carrying a unique marker: afterwards
    no file under the project tree contains the marker."""
    marker = secrets.token_bytes(32)
    payload = uploads.encode(uploads.noise_rgb(1000, 700), "BMP") + marker
    assert len(payload) > 1024 * 1024
    start = time.time() - 1
    resp = client.post("/api/v1/tasks/mnist/predict", data=upload(payload, "big.bmp"))
    assert resp.status_code in (200, 400)
    page = client.post("/tasks/mnist", data=upload(payload, "big.bmp"), content_type="multipart/form-data")
    assert page.status_code in (200, 400)
    skip = {ROOT / ".git", ROOT / ".venv"}
    leaked = []
    for dirpath, dirnames, filenames in os.walk(ROOT):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in {str(s) for s in skip}]
        for name in filenames:
            path = os.path.join(dirpath, name)
            try:
                if os.path.getmtime(path) >= start and marker in open(path, "rb").read():
                    leaked.append(path)
            except OSError:
                continue
    assert not leaked
