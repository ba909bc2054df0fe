"""Packaging: pyproject's dependency groups agree with requirements.txt, and the serving group
alone (no TensorFlow, Keras, pytest or Playwright) runs the app with every shipped model."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import tomllib
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
NOT_SERVING = ("tensorflow", "tensorflow-cpu", "keras", "pytest", "hypothesis", "playwright", "matplotlib")


def group(name: str) -> list[str]:
    """A dependency group's requirements, included groups expanded (PEP 735)."""
    out = []
    for item in PYPROJECT["dependency-groups"][name]:
        out += group(item["include-group"]) if isinstance(item, dict) else [item]
    return out


def pins(lines) -> dict[str, str]:
    """name -> version of `name==version` requirement lines (comments and blanks skipped)."""
    out = {}
    for line in lines:
        line = line.split("#")[0].strip()
        if line:
            name, version = line.split("==")
            out[name.strip().lower().split("[")[0]] = version.strip()
    return out


def test_requirements_txt_is_the_union_of_the_groups_with_the_same_pins():
    required = pins((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    assert pins(group("browser-tests")) == required


def test_the_serving_group_has_no_training_or_test_library():
    serving = pins(group("serving"))
    assert not set(serving) & set(NOT_SERVING)
    assert {"flask", "ai-edge-litert", "numpy", "h5py", "pillow", "gunicorn"} <= set(serving)


def test_the_dockerfile_installs_only_the_serving_group():
    """The default (last) target, the web image, is `base` + `serving`: the serving group only;
    the training group goes into the worker's `training` target alone."""
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    stages = {}
    for chunk in dockerfile.split("\nFROM ")[1:]:
        head, _, body = chunk.partition("\n")
        stages[head.split(" AS ")[-1].strip()] = body
    assert list(stages)[-1] == "serving" and "FROM base AS serving" in dockerfile
    assert "--group serving" in stages["base"] and "requirements.txt" not in dockerfile
    assert "--group training" not in stages["base"] + stages["serving"]
    assert "--group training" in stages["training"]


# ----------------------------------------------------------------------------- a serving-only install
@pytest.fixture(scope="module")
def serving_venv() -> Path:
    """A virtual environment with only the serving group, kept under .cache/ (git-ignored) and
    keyed by the requirements and the Python version, so a re-run reuses it."""
    requirements = group("serving")
    key = hashlib.sha256("\n".join([sys.version, *requirements]).encode()).hexdigest()[:12]
    venv = ROOT / ".cache" / f"serving-venv-{key}"
    python = venv / "bin" / "python"
    if not (venv / ".complete").is_file():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        install = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                                  *requirements], capture_output=True, text=True, timeout=1500)
        if install.returncode:
            pytest.skip(f"could not install the serving group (offline?): {install.stderr[-500:]}")
        (venv / ".complete").write_text("\n".join(requirements) + "\n")
    return venv


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request(url: str, data: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def multipart(data: bytes, name: str) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.slow
def test_serving_group_alone_serves_every_shipped_model(serving_venv, png_digit):
    python = serving_venv / "bin" / "python"
    for missing in NOT_SERVING:
        found = subprocess.run([str(python), "-c", f"import importlib.util as u; print(u.find_spec({missing!r}.replace('-', '_')) is None)"],
                               capture_output=True, text=True, check=True).stdout.strip()
        assert found == "True", f"{missing} is importable in the serving install"
    cards = {p.parent.name: json.loads(p.read_text(encoding="utf-8")) for p in (ROOT / "models").glob("*/card.json")}
    if not cards:
        pytest.skip("no shipped models")

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "FLASK_", "LSTMLAB_", "VIRTUAL_ENV"))}
    env.update(LSTMLAB_BIND=f"127.0.0.1:{port}", WEB_CONCURRENCY="1", FLASK_SECRET_KEY=uuid.uuid4().hex)
    server = subprocess.Popen([str(python), "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], cwd=ROOT,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                status, ready = request(f"{base}/readyz")
                if status == 200:
                    break
            except (urllib.error.URLError, ConnectionError):
                pass
            assert server.poll() is None, server.stdout.read()
            assert time.monotonic() < deadline, "the app did not get ready"
            time.sleep(1)
        tasks = {t["slug"]: t for t in request(f"{base}/api/v1/tasks")[1]["tasks"]}
        assert set(cards) <= set(tasks)
        served = []
        for slug, card in sorted(cards.items()):
            status = ready["tasks"][slug]
            if card["kind"] == "image":
                if status["status"] != "ready":  # only without a current .tflite: no Keras to fall back on
                    assert status["command"] == f"python -m training export {slug}", status
                    continue
                assert status["engine"] == "litert"
                code, body = request(f"{base}/api/v1/tasks/{slug}/predict", *multipart(png_digit(), "d.png"))
                assert code == 200 and body["top"], body
            else:
                assert status["status"] == "ready" and status["engine"] == "numpy", status
                code, body = request(f"{base}/api/v1/tasks/{slug}/generate",
                                     json.dumps({"seed": "trăm năm" if slug == "kieu" else "the new", "length": 3,
                                                 "random_seed": 1}).encode(), {"Content-Type": "application/json"})
                assert code == 200 and body["text"].strip(), body
            served.append(slug)
        assert any(cards[s]["kind"] == "image" for s in served) and any(cards[s]["kind"] == "text" for s in served)
    finally:
        server.terminate()
        log = server.communicate(timeout=30)[0]
    # no lab consumer is started without the training libraries (it could only crash)
    assert "no training consumer started" in log and "Traceback" not in log, log
