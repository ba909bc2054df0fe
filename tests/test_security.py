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
from app.views import errors, limits

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
    """The app as production runs it: CSRF on, small generate and trace limits. The limits count
    per hour so that a slow, loaded machine cannot let a window slide by in mid-test."""
    return make_app(tiny_models_dir, WTF_CSRF_ENABLED=True, RATELIMIT_ENABLED=True,
                    RATELIMIT_GENERATE="3 per hour", RATELIMIT_TRACE="4 per hour")


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
    assert translate_to(lang, errors.CSRF_MESSAGE).split(".")[0] in forged.get_data(as_text=True)
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
    assert resp.status_code == 400 and resp.get_json()["error_en"] == errors.CSRF_MESSAGE


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
def test_secret_key_from_the_environment_is_accepted(tmp_path, monkeypatch):
    key = secrets.token_hex(32)
    monkeypatch.setenv("FLASK_SECRET_KEY", key)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("LSTMLAB_INSTANCE", str(tmp_path / "instance"))
    app = create_app({"MODELS_DIR": str(tmp_path)})
    assert app.secret_key == key and not app.debug and not app.testing
    assert not (tmp_path / "instance" / "secret_key").exists()  # nothing generated


@pytest.mark.parametrize("key", [Config.SECRET_KEY, "", None])
def test_default_secret_key_is_never_used_outside_testing(tmp_path, monkeypatch, key):
    """The default (or an empty) key is replaced by the instance folder's, debug or not."""
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.setenv("LSTMLAB_INSTANCE", str(tmp_path / "instance"))
    for debug in (False, True):
        app = create_app({"MODELS_DIR": str(tmp_path), "SECRET_KEY": key, "DEBUG": debug})
        assert app.secret_key == (tmp_path / "instance" / "secret_key").read_text().strip()


def test_debug_is_turned_off_under_gunicorn(tmp_path, monkeypatch):
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")  # what gunicorn's arbiter sets
    app = create_app({"MODELS_DIR": str(tmp_path), "DEBUG": True, "SECRET_KEY": secrets.token_hex(16)})
    assert not app.debug


# ----------------------------------------------------------------------------- uploads stay off disk
def test_uploads_are_never_written_under_the_project_tree(uploads, client, app):
    """A 2 MB upload (above werkzeug's in-memory threshold) carrying a unique marker: afterwards
    no file under the project tree contains the marker."""
    marker = secrets.token_bytes(32)
    payload = uploads.encode(uploads.digit_like(1000, 700).convert("RGB"), "BMP") + marker
    assert len(payload) > 1024 * 1024
    start = time.time() - 1
    resp = client.post("/api/v1/tasks/mnist/predict", data=upload(payload, "big.bmp"))
    assert resp.status_code == 200 and resp.get_json()["top"]
    page = client.post("/tasks/mnist", data=upload(payload, "big.bmp"), content_type="multipart/form-data")
    assert page.status_code == 200
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


# ============================================================================= the app as a server runs it
def production_app(tmp_path, monkeypatch, models_dir=None, **config):
    """create_app as a server runs it (not TESTING), with its instance folder under tmp_path."""
    monkeypatch.delenv("FLASK_SECRET_KEY", raising=False)
    monkeypatch.delenv("FLASK_DEBUG", raising=False)
    monkeypatch.setenv("LSTMLAB_INSTANCE", str(tmp_path / "instance"))
    return create_app({"MODELS_DIR": str(models_dir or tmp_path / "no-models"), **config})


# ----------------------------------------------------------------------------- secret key, CSRF lifetime
def test_secret_key_is_generated_once_in_the_instance_folder(tmp_path, monkeypatch):
    first = production_app(tmp_path, monkeypatch)
    key_file = tmp_path / "instance" / "secret_key"
    assert key_file.is_file() and (key_file.stat().st_mode & 0o777) == 0o600
    assert first.secret_key == key_file.read_text().strip() and len(first.secret_key) >= 64
    assert first.secret_key != Config.SECRET_KEY
    again = production_app(tmp_path, monkeypatch)  # a restart, or a replica sharing the folder
    assert again.secret_key == first.secret_key
    monkeypatch.setenv("FLASK_SECRET_KEY", "from-the-environment-" + "x" * 40)
    assert create_app({"MODELS_DIR": str(tmp_path)}).secret_key.startswith("from-the-environment-")


def test_a_form_survives_a_restart(digit_png, tmp_path, monkeypatch, tiny_models_dir):
    """A token issued before a restart still submits afterwards (same key from the instance folder)."""
    before = production_app(tmp_path, monkeypatch, tiny_models_dir).test_client()
    token = csrf_token(before, "/tasks/mnist")
    after = production_app(tmp_path, monkeypatch, tiny_models_dir)
    client = after.test_client()
    client.set_cookie("session", before.get_cookie("session").value)
    resp = client.post("/tasks/mnist", data={**upload(digit_png()), "csrf_token": token}, content_type="multipart/form-data")
    assert resp.status_code == 200


def test_a_form_left_open_through_a_lesson_still_submits(digit_png, strict_app, monkeypatch):
    """Three hours after the page was loaded, the form's token is still valid."""
    import itsdangerous.timed

    assert strict_app.config["WTF_CSRF_TIME_LIMIT"] >= 3 * 3600
    client = client_at(strict_app)
    token = csrf_token(client, "/tasks/mnist")
    later = time.time() + 3 * 3600
    monkeypatch.setattr(itsdangerous.timed.time, "time", lambda: later)
    resp = client.post("/tasks/mnist", data={**upload(digit_png()), "csrf_token": token}, content_type="multipart/form-data")
    assert resp.status_code == 200


def test_unwritable_instance_folder_without_a_key_is_refused(tmp_path, monkeypatch):
    blocker = tmp_path / "instance"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(security.InsecureConfiguration, match="FLASK_SECRET_KEY"):
        production_app(tmp_path, monkeypatch)


# ----------------------------------------------------------------------------- TESTING under gunicorn
def test_testing_is_refused_under_gunicorn(tmp_path, monkeypatch):
    monkeypatch.setenv("SERVER_SOFTWARE", "gunicorn/27.0.1")
    with pytest.raises(security.InsecureConfiguration, match="TESTING"):
        create_app({"TESTING": True, "SECRET_KEY": secrets.token_hex(16), "MODELS_DIR": str(tmp_path)})


def test_gunicorn_refuses_to_serve_in_testing_mode(tmp_path):
    """`FLASK_TESTING=1 gunicorn ...` (CSRF and rate limits off) exits instead of serving."""
    env = {k: v for k, v in os.environ.items() if k != "FLASK_SECRET_KEY"}
    env.update(FLASK_TESTING="1", FLASK_MODELS_DIR=str(tmp_path), LSTMLAB_BIND="127.0.0.1:0", WEB_CONCURRENCY="1",
               LSTMLAB_INSTANCE=str(tmp_path / "instance"), LSTMLAB_TRAIN_WORKERS="0")
    proc = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket", "wsgi:app"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "refusing to start with TESTING" in proc.stderr


# ----------------------------------------------------------------------------- HTTPS, hosts, proxies
def test_https_mode_sends_secure_cookies_and_hsts(make_app, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("LSTMLAB_HTTPS", "1")
    client = make_app(tiny_models_dir, WTF_CSRF_ENABLED=True).test_client()
    resp = client.get("/tasks/mnist?lang=en")
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")
    cookies = resp.headers.getlist("Set-Cookie")
    assert len(cookies) == 2 and all("; Secure" in c for c in cookies), cookies  # session and language
    monkeypatch.delenv("LSTMLAB_HTTPS")
    plain = make_app(tiny_models_dir, WTF_CSRF_ENABLED=True).test_client().get("/tasks/mnist?lang=en")
    assert "Strict-Transport-Security" not in plain.headers
    assert not any("Secure" in c for c in plain.headers.getlist("Set-Cookie"))


def test_https_seen_through_a_trusted_proxy(make_app, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("LSTMLAB_TRUSTED_PROXIES", "1")
    client = make_app(tiny_models_dir, WTF_CSRF_ENABLED=True).test_client()
    resp = client.get("/tasks/mnist?lang=en", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" in resp.headers
    assert all("; Secure" in c for c in resp.headers.getlist("Set-Cookie"))
    monkeypatch.delenv("LSTMLAB_TRUSTED_PROXIES")
    direct = make_app(tiny_models_dir).test_client().get("/", headers={"X-Forwarded-Proto": "https"})
    assert "Strict-Transport-Security" not in direct.headers  # the header alone is not trusted


def test_a_forged_host_does_not_change_the_api_urls(make_app, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("LSTMLAB_TRUSTED_HOSTS", "lab.example.org, localhost")
    client = make_app(tiny_models_dir).test_client()
    forged = client.get("/api/v1/tasks", headers={"Host": "evil.example"})
    assert forged.status_code == 400 and forged.is_json and "evil.example" not in forged.get_data(as_text=True)
    ok = client.get("/api/v1/tasks", headers={"Host": "lab.example.org"})
    assert ok.status_code == 200 and ok.get_json()["tasks"][0]["page"].startswith("http://lab.example.org/")
    monkeypatch.delenv("LSTMLAB_TRUSTED_HOSTS")
    named = make_app(tiny_models_dir, SERVER_NAME="lab.example.org").test_client()
    urls = named.get("/api/v1/tasks", headers={"Host": "evil.example"}).get_json()["tasks"][0]
    assert urls["page"].startswith("http://lab.example.org/") and "evil" not in json_dump(urls)


def json_dump(value) -> str:
    import json

    return json.dumps(value)


# ----------------------------------------------------------------------------- rate limits: proxies, costs, storage
@pytest.fixture
def proxied_app(make_app, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("LSTMLAB_TRUSTED_PROXIES", "1")
    return make_app(tiny_models_dir, RATELIMIT_ENABLED=True, RATELIMIT_TRACE="2 per hour")


@pytest.fixture
def traced_predict(digit_png):
    """POST a traced prediction of a drawn digit: `traced_predict(client, headers=None)`."""
    return lambda client, headers=None: client.post("/api/v1/tasks/mnist/predict?trace=1", data=upload(digit_png()),
                                                    headers=headers or {})


def test_traced_predicts_are_limited_plain_ones_are_not(traced_predict, digit_png, strict_app):
    client = client_at(strict_app)
    limit = int(strict_app.config["RATELIMIT_TRACE"].split()[0])
    assert [traced_predict(client).status_code for _ in range(limit)] == [200] * limit
    limited = traced_predict(client)
    assert limited.status_code == 429 and limited.get_json()["error_vi"]
    assert client.post("/api/v1/tasks/mnist/predict", data=upload(digit_png())).status_code == 200


def test_limits_count_per_real_client_behind_a_trusted_proxy(traced_predict, proxied_app):
    proxy = client_at(proxied_app, "10.9.9.9")  # every request arrives from nginx's address
    alice, bob = {"X-Forwarded-For": "198.51.100.1"}, {"X-Forwarded-For": "198.51.100.2"}
    assert [traced_predict(proxy, alice).status_code for _ in range(3)] == [200, 200, 429]
    assert traced_predict(proxy, bob).status_code == 200


def test_forwarded_for_is_ignored_without_a_trusted_proxy(traced_predict, make_app, tiny_models_dir):
    app = make_app(tiny_models_dir, RATELIMIT_ENABLED=True, RATELIMIT_TRACE="2 per hour")
    client = client_at(app)
    codes = [traced_predict(client, {"X-Forwarded-For": f"203.0.113.{i}"}).status_code for i in range(3)]
    assert codes == [200, 200, 429]  # a client cannot buy a fresh budget by inventing addresses


def test_generate_is_weighed_by_its_work(make_app, tiny_models_dir):
    app = make_app(tiny_models_dir, RATELIMIT_ENABLED=True, RATELIMIT_GENERATE="100 per hour",
                   RATELIMIT_GENERATE_WORK="1000 per hour")
    text_ready(app)
    client = client_at(app)
    heavy = {"seed": "the", "length": 40, "strategy": "beam", "beam_width": 16}  # 640 units
    assert client.post("/api/v1/tasks/nyt_headlines/generate", json=heavy).status_code == 200
    again = client.post("/api/v1/tasks/nyt_headlines/generate?lang=en", json=heavy)
    assert again.status_code == 429 and "Too many requests" in again.get_json()["error"]
    cheap = {"seed": "the", "length": 5, "strategy": "greedy"}  # 5 units: still within the budget
    assert client.post("/api/v1/tasks/nyt_headlines/generate", json=cheap).status_code == 200
    with app.test_request_context("/api/v1/tasks/kieu/generate", method="POST",
                                  json={"seed": "trăm năm", "length": 20, "strategy": "beam", "beam_width": 16}):
        assert limits.generate_cost() == 20 * 14 * 16  # couplets × syllables × beams


def test_limiter_storage_from_the_environment(make_app, tmp_path, monkeypatch):
    monkeypatch.delenv("LSTMLAB_LIMITER_STORAGE", raising=False)
    monkeypatch.delenv("LSTMLAB_QUEUE_URL", raising=False)
    assert make_app(tmp_path).config["RATELIMIT_STORAGE_URI"] == "memory://"
    monkeypatch.setenv("LSTMLAB_QUEUE_URL", f"sqlite:///{tmp_path / 'queue.db'}")  # not a storage the limiter can share
    assert make_app(tmp_path).config["RATELIMIT_STORAGE_URI"] == "memory://"
    monkeypatch.setenv("LSTMLAB_QUEUE_URL", "redis://queue.internal:6379/0")
    assert make_app(tmp_path).config["RATELIMIT_STORAGE_URI"] == "redis://queue.internal:6379/0"
    monkeypatch.setenv("LSTMLAB_LIMITER_STORAGE", "redis://limits.internal:6379/1")
    assert make_app(tmp_path).config["RATELIMIT_STORAGE_URI"] == "redis://limits.internal:6379/1"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_url(tmp_path):
    """A real redis-server on a free loopback port, stopped by its pid afterwards."""
    import shutil
    import socket

    binary = shutil.which("redis-server") or ("/usr/bin/redis-server" if os.path.exists("/usr/bin/redis-server") else None)
    if binary is None:
        if os.environ.get("CI") == "true":
            pytest.fail("redis-server is not installed (.ci/run installs it)")
        pytest.skip("redis-server is not installed")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.time() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_workers_share_one_budget_through_redis(traced_predict, make_app, tiny_models_dir, redis_url, monkeypatch):
    """Two apps (two gunicorn workers, or two replicas) with the queue's Redis: one budget."""
    monkeypatch.setenv("LSTMLAB_QUEUE_URL", redis_url)
    one, two = (make_app(tiny_models_dir, RATELIMIT_ENABLED=True, RATELIMIT_TRACE="3 per hour") for _ in range(2))
    assert one.config["RATELIMIT_STORAGE_URI"] == redis_url
    address = f"10.7.0.{next(ADDRESSES)}"
    codes = [traced_predict(client_at(app, address)).status_code for app in (one, two, one, two)]
    assert codes == [200, 200, 200, 429]


# ----------------------------------------------------------------------------- uploads, 413s, language link
def test_uploads_stay_in_memory(uploads, client, monkeypatch):
    """A 2 MB upload (over werkzeug's 500 KB spooling threshold) creates no temporary file."""
    import tempfile

    import werkzeug.formparser

    made = []
    real = tempfile.SpooledTemporaryFile

    def recording(*args, **kw):
        made.append(args)
        return real(*args, **kw)

    monkeypatch.setattr(werkzeug.formparser, "SpooledTemporaryFile", recording)
    payload = uploads.encode(uploads.digit_like(1000, 700).convert("RGB"), "BMP")
    assert len(payload) > 1024 * 1024
    resp = client.post("/api/v1/tasks/mnist/predict", data=upload(payload, "big.bmp"))
    assert resp.status_code == 200 and resp.get_json()["top"]
    assert not made


@pytest.mark.parametrize("lang", LANGS)
def test_too_many_form_parts_says_what_was_too_large(digit_png, client, lang):
    fields = {f"f{i}": "x" for i in range(1200)}
    resp = client.post(f"/api/v1/tasks/mnist/predict?lang={lang}", data={**fields, **upload(digit_png())},
                       content_type="multipart/form-data")
    body = resp.get_json()
    assert resp.status_code == 413 and "1000" in body["error"]
    assert "parts" in body["error_en"] and "phần" in body["error_vi"]
    assert "MB" not in body["error_en"]  # not the "file too large" message
    page = client.post(f"/tasks/mnist?lang={lang}", data={**fields, **upload(digit_png())}, content_type="multipart/form-data")
    assert page.status_code == 413 and body["error"] in page.get_data(as_text=True)


def test_language_link_on_a_404_stays_on_site(client):
    from urllib.parse import urljoin, urlsplit

    base = "http://localhost/%5Cevil.example/x"
    html = client.get("/%5Cevil.example/x").get_data(as_text=True)
    hrefs = re.findall(r'class="lang" href="([^"]+)"', html)
    assert hrefs
    for href in hrefs:
        # Browsers read a backslash in a URL as a slash: "/\evil.example" is "//evil.example".
        assert urlsplit(urljoin(base, href.replace("\\", "/").replace("&amp;", "&"))).netloc == "localhost", href


# ----------------------------------------------------------------------------- readiness, models folder
def test_readyz_is_503_when_nothing_is_served(make_app, tmp_path):
    for models in (tmp_path / "missing", tmp_path):
        resp = make_app(models).test_client().get("/readyz")
        assert resp.status_code == 503 and resp.get_json()["ready"] is False and resp.get_json()["ready_tasks"] == []


def test_readyz_is_503_until_the_required_tasks_are_ready(make_app, tiny_models_dir, monkeypatch):
    monkeypatch.setenv("LSTMLAB_REQUIRED_TASKS", "mnist")
    assert make_app(tiny_models_dir).test_client().get("/readyz").status_code == 200
    monkeypatch.setenv("LSTMLAB_REQUIRED_TASKS", "mnist, cifar10")
    body = make_app(tiny_models_dir).test_client().get("/readyz")
    assert body.status_code == 503 and body.get_json()["required_tasks"] == ["mnist", "cifar10"]


def folder_task(models, slug: str, card_slug: str, source) -> None:
    """models/<slug>/: the tiny MNIST model as an instructor's folder task whose card says `card_slug`."""
    import json
    import shutil

    shutil.copytree(source / "mnist", models / slug)
    card = json.loads((models / slug / "card.json").read_text(encoding="utf-8"))
    card["task"] = {**card["task"], "slug": card_slug}
    (models / slug / "card.json").write_text(json.dumps(card), encoding="utf-8")


@pytest.mark.parametrize("card_slug", ["other_task", "../mnist", "Bad Slug", "flowers"])
def test_a_card_whose_slug_is_not_its_folder_is_skipped(make_app, tiny_models_dir, tmp_path, caplog, card_slug):
    models = tmp_path / "models"
    folder_task(models, "flowers", "flowers", tiny_models_dir)  # a sound folder task
    folder_task(models, "sneaky", card_slug, tiny_models_dir)
    with caplog.at_level("WARNING"):
        client = make_app(models).test_client()
    tasks = client.get("/readyz").get_json()["tasks"]
    assert tasks["flowers"]["status"] == "ready"
    assert "sneaky" not in tasks and (card_slug == "flowers" or card_slug not in tasks)
    assert client.get("/tasks/sneaky").status_code == 404
    assert any("sneaky" in r.getMessage() for r in caplog.records)


def test_no_absolute_paths_in_readyz_api_or_card(make_app, tiny_models_dir, tmp_path):
    import json
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "mnist", models / "mnist")
    shutil.copytree(tiny_models_dir / "mnist", models / "fashion_mnist")
    (models / "fashion_mnist" / "model.keras").write_bytes(b"not a zip")  # fails to load, names its path
    data_dir = "/home/instructor/private/flowers"
    card = json.loads((models / "mnist" / "card.json").read_text(encoding="utf-8"))
    card["data"] = {**card["data"], "source": data_dir, "path": data_dir + "/x.npz"}
    card["command"] = f"python -m training folder --slug mnist --data-dir {data_dir}"
    (models / "mnist" / "card.json").write_text(json.dumps(card), encoding="utf-8")
    client = make_app(models, PREDICT_JIT=False, PREDICT_LITERT=False).test_client()
    texts = [client.get(p).get_data(as_text=True) for p in ("/readyz", "/api/v1/tasks", "/tasks/mnist/card",
                                                             "/tasks/fashion_mnist", "/")]
    assert "error" in client.get("/readyz").get_json()["tasks"]["fashion_mnist"]["status"]
    for text in texts:
        assert str(models) not in text and "/home/instructor" not in text and str(tmp_path) not in text
    assert "flowers" in texts[2]  # the base name is still shown


def test_a_group_or_world_writable_models_folder_is_refused(tmp_path, tiny_models_dir, monkeypatch):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(tiny_models_dir / "mnist", models / "mnist")
    monkeypatch.delenv("LSTMLAB_ALLOW_SHARED_MODELS", raising=False)
    for mode, folder in ((0o777, models), (0o775, models), (0o777, models / "mnist")):
        models.chmod(0o755)
        (models / "mnist").chmod(0o755)
        folder.chmod(mode)
        with pytest.raises(security.InsecureConfiguration, match="writable"):
            create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": str(models)})
    monkeypatch.setenv("LSTMLAB_ALLOW_SHARED_MODELS", "1")
    app = create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": str(models)})
    assert app.test_client().get("/readyz").status_code == 200


def test_the_xla_cache_folder_is_private(tmp_path, monkeypatch):
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    cache = tmp_path / "cache" / "xla"
    create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": str(tmp_path / "none"), "XLA_CACHE_DIR": str(cache)})
    assert (cache.stat().st_mode & 0o777) == 0o700 and cache.stat().st_uid == os.getuid()
    shared = tmp_path / "shared-xla"
    shared.mkdir(mode=0o777)
    shared.chmod(0o777)
    monkeypatch.delenv("TF_XLA_FLAGS", raising=False)
    create_app({"TESTING": True, "SECRET_KEY": "t", "MODELS_DIR": str(tmp_path / "none"), "XLA_CACHE_DIR": str(shared)})
    assert (shared.stat().st_mode & 0o777) == 0o700  # made private again (we own it)


def test_a_full_disk_during_export_leaves_the_card_whole(tiny_models_dir, tmp_path, monkeypatch):
    """Every card write (training, evaluate, export) goes through a temporary file and a rename:
    a disk that fills up midway leaves the previous card, valid, and no temporary file."""
    import errno
    import json
    import shutil
    from pathlib import Path

    from training import fit

    folder = tmp_path / "mnist"
    shutil.copytree(tiny_models_dir / "mnist", folder)
    before = (folder / "card.json").read_text(encoding="utf-8")

    def half_then_full(self, data, *args, **kw):
        data = data.encode("utf-8") if isinstance(data, str) else data
        with open(self, "wb") as fh:
            fh.write(data[: len(data) // 2])
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", half_then_full)
    monkeypatch.setattr(Path, "write_bytes", half_then_full)
    card = json.loads(before)
    card["export"] = {"note": "x" * 10_000}
    with pytest.raises(OSError):
        fit.write_card(folder, card)
    monkeypatch.undo()
    assert (folder / "card.json").read_text(encoding="utf-8") == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(p.name for p in (tiny_models_dir / "mnist").iterdir())
