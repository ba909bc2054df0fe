"""The deployment real sites use, run for real. gunicorn (gunicorn.conf.py) and
nginx (docs/deploy/nginx.conf, Debian's `nginx` package) start on free loopback ports as
subprocesses with configurations generated under tmp_path, and are stopped by their pids.

Slow clients (headers one line at a time, bodies a byte at a time) hold gunicorn's threads when
they reach it directly; behind nginx, `GET /healthz` still answers within a second.
Skips where nginx is absent, except in CI (CI=true), where that is a failure.
"""

from __future__ import annotations

import http.client
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from app.config import ROOT

SLOW_CLIENTS = 32
NGINX_SITE = ROOT / "docs" / "deploy" / "nginx.conf"

pytestmark = pytest.mark.slow


def find_binary(name: str) -> str:
    """The program `name` (also looked for in /usr/sbin, off a normal user's PATH); skip without it."""
    found = shutil.which(name) or next((p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}") if os.path.exists(p)), None)
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{name} is not installed (.ci/run installs it with apt-get)")
        pytest.skip(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, proc: subprocess.Popen, log: Path, path: str | None = None, seconds: float = 90) -> None:
    """Until `port` accepts connections (and `path` answers 200), or fail with the server's log."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text(errors='replace')[-3000:]}")
        try:
            if path is None:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", path)
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    pytest.fail(f"port {port} not ready after {seconds} s:\n{log.read_text(errors='replace')[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    """Stop a server we started, by its pid (SIGTERM, then SIGKILL after 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture
def gunicorn_port(tmp_path, tiny_models_dir):
    """gunicorn with the project's gunicorn.conf.py on a loopback port: one worker of two threads
    (few threads make the starvation quick to show), the tiny models, as behind nginx."""
    port = free_port()
    env = {**os.environ, "LSTMLAB_BIND": f"127.0.0.1:{port}", "WEB_CONCURRENCY": "1", "LSTMLAB_THREADS": "2",
           "FLASK_MODELS_DIR": str(tiny_models_dir), "FLASK_SECRET_KEY": secrets.token_hex(32),
           "LSTMLAB_TRUSTED_PROXIES": "1", "LSTMLAB_INSTANCE": str(tmp_path / "instance"),
           "LSTMLAB_TRAIN_WORKERS": "0"}
    env.pop("FLASK_TESTING", None)
    log = tmp_path / "gunicorn.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--no-control-socket",
                                 "wsgi:app"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(port, proc, log, "/readyz")
        yield port
    finally:
        stop(proc)


def nginx_config(tmp_path: Path, listen: int, upstream: int) -> Path:
    """A complete nginx.conf under tmp_path that includes docs/deploy/nginx.conf, pointed at
    gunicorn's port and listening on `listen` (both on loopback)."""
    site = NGINX_SITE.read_text(encoding="utf-8")
    assert site.count("server web:8000;") == 1 and site.count("listen 8080;") == 1
    site = site.replace("server web:8000;", f"server 127.0.0.1:{upstream};")
    site = site.replace("listen 8080;", f"listen 127.0.0.1:{listen};")
    (tmp_path / "lstmlab.conf").write_text(site, encoding="utf-8")
    temp = {name: tmp_path / name for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")}
    for folder in temp.values():
        folder.mkdir()
    conf = tmp_path / "nginx.conf"
    conf.write_text("\n".join([
        "daemon off;",
        "worker_processes 1;",
        "user root;" if os.geteuid() == 0 else "",  # workers must reach the folders under tmp_path
        f"pid {tmp_path / 'nginx.pid'};",
        f"error_log {tmp_path / 'nginx-error.log'} warn;",
        "events { worker_connections 512; }",
        "http {",
        "  access_log off;",
        *[f"  {name}_temp_path {folder};" for name, folder in temp.items()],
        f"  include {tmp_path / 'lstmlab.conf'};",
        "}",
    ]), encoding="utf-8")
    return conf


@pytest.fixture
def nginx_port(tmp_path, gunicorn_port):
    """nginx in front of `gunicorn_port`, on its own loopback port."""
    binary = find_binary("nginx")
    port = free_port()
    conf = nginx_config(tmp_path, port, gunicorn_port)
    log = tmp_path / "nginx-error.log"
    log.touch()
    proc = subprocess.Popen([binary, "-p", str(tmp_path), "-c", str(conf), "-e", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_for(port, proc, log)
        yield port
    finally:
        stop(proc)


class SlowClients:
    """`n` connections that send a request a line (or a body byte) at a time and never finish."""

    def __init__(self, port: int, n: int = SLOW_CLIENTS):
        self.socks, self.done = [], threading.Event()
        for i in range(n):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if i % 2:  # complete headers, then a body that trickles in
                sock.sendall(b"POST /api/v1/tasks/mnist/predict HTTP/1.1\r\nHost: lab\r\n"
                             b"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\nx")
            else:  # headers one line at a time
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: lab\r\n")
            self.socks.append(sock)
        self.thread = threading.Thread(target=self.trickle, daemon=True)
        self.thread.start()

    def trickle(self) -> None:
        while not self.done.wait(0.5):
            for i, sock in enumerate(self.socks):
                try:
                    sock.sendall(b"x" if i % 2 else b"X-Slow: 1\r\n")
                except OSError:
                    pass

    def close(self) -> None:
        self.done.set()
        self.thread.join(timeout=5)
        for sock in self.socks:
            sock.close()


def healthz(port: int, timeout: float = 1.0) -> tuple[int, float]:
    """(status, seconds) of `GET /healthz`, or a socket.timeout after `timeout` seconds."""
    t0 = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status, time.perf_counter() - t0
    finally:
        conn.close()


def test_slow_clients_starve_gunicorn_alone(gunicorn_port):
    """The problem nginx solves: the same slow clients, straight at gunicorn, and /healthz waits."""
    assert healthz(gunicorn_port, timeout=5)[0] == 200
    slow = SlowClients(gunicorn_port)
    try:
        time.sleep(0.5)
        with pytest.raises((socket.timeout, TimeoutError)):
            healthz(gunicorn_port)
    finally:
        slow.close()


def test_healthz_answers_within_a_second_behind_nginx_with_32_slow_clients(uploads, nginx_port):
    assert healthz(nginx_port, timeout=5)[0] == 200
    slow = SlowClients(nginx_port)
    try:
        time.sleep(1.0)  # long enough for any of them to have reached gunicorn, were it forwarded
        for _ in range(3):
            status, seconds = healthz(nginx_port)
            assert status == 200 and seconds < 1.0
        # A whole upload still goes through (nginx buffers it, then hands it over at once).
        body, boundary = multipart(uploads.encode(uploads.digit_like(64, 64), "PNG"))
        conn = http.client.HTTPConnection("127.0.0.1", nginx_port, timeout=5)
        conn.request("POST", "/api/v1/tasks/mnist/predict", body,
                     {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        assert resp.status == 200 and b'"prediction"' in resp.read()
    finally:
        slow.close()


def multipart(data: bytes) -> tuple[bytes, str]:
    """A multipart body with one file field `file`, and its boundary."""
    boundary = secrets.token_hex(12)
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"d.png\"\r\n"
            f"Content-Type: image/png\r\n\r\n").encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode(), boundary
