"""Real processes for the lab bench's tests (gunicorn, Huey consumers, redis-server), each started
by a LabStack and stopped by its pid, the MNIST file their runs train on, and finished run records."""

from __future__ import annotations

import pytest


def mnist_data_or_skip():
    """The MNIST file the lab's end-to-end runs train on, or a clean skip."""
    from app.config import default_data_dir
    from app.tasks import MNIST

    path = default_data_dir() / MNIST.data_path
    if not path.is_file():
        pytest.skip(f"no data at {path}")
    return path


def add_finished_run(app, values: dict, model_folder) -> str:
    """The id of a new run record of `values`, its folder a copy of `model_folder` (as a consumer
    leaves a finished run)."""
    import shutil
    from pathlib import Path

    from app.records import Run, db

    with app.app_context():
        run = Run(**values)
        db.session.add(run)
        db.session.commit()
        run_id = run.id
    folder = Path(app.instance_path) / "runs" / run_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(model_folder, folder)
    return run_id


class LabStack:
    """Real processes for the lab bench's tests: gunicorn (web), Huey consumers, redis-server.
    Every process is started here and stopped by its pid at teardown."""

    def __init__(self, tmp_path):
        import os
        import secrets
        import sys
        from pathlib import Path

        self.root = Path(__file__).resolve().parents[2]
        self.python = sys.executable
        self.instance = tmp_path / "instance"
        self.logs = tmp_path / "logs"
        self.logs.mkdir()
        self.procs: list = []
        self.web_url = None
        self.web_proc = None
        self.env = {**os.environ, "LSTMLAB_INSTANCE": str(self.instance), "TF_CPP_MIN_LOG_LEVEL": "3",
                    "FLASK_SECRET_KEY": secrets.token_hex(16), "LAB_PROGRESS_SECONDS": "1", "LAB_SSE_POLL": "0.2",
                    "LAB_TEST_SUBSET": "500", "LSTMLAB_QUEUE_URL": "", "LSTMLAB_DATABASE_URL": "",
                    "LSTMLAB_TRAIN_WORKERS": "0", "WEB_CONCURRENCY": "1", "PYTHONUNBUFFERED": "1",
                    # the engine's tests are not about the bench's time estimate (test_lab_recipes.py is)
                    "FLASK_LAB_MAX_SECONDS": str(10**15)}

    # processes ------------------------------------------------------------------------
    def start(self, args: list[str], name: str, **env):
        """Start a process with the stack's environment (+ `env`), output to logs/<name>.log."""
        import subprocess

        log = open(self.logs / f"{name}.log", "ab")
        proc = subprocess.Popen(args, cwd=self.root, env={**self.env, **env}, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
        proc.lab_name = name
        self.procs.append(proc)
        return proc

    def consumer(self, name: str = "consumer", **env):
        """A Huey consumer process (`python -m app.lab`, what `make worker` runs)."""
        return self.start([self.python, "-m", "app.lab"], name, **env)

    def web(self, name: str = "web", **env):
        """gunicorn serving wsgi:app on a free loopback port; waits for /healthz."""
        port = free_port()
        proc = self.start([self.python, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], name,
                          LSTMLAB_BIND=f"127.0.0.1:{port}", **env)
        self.web_url, self.web_proc = f"http://127.0.0.1:{port}", proc
        self.wait_for(lambda: self._healthy(), 60, f"{name} did not answer /healthz", proc)
        return proc

    def redis(self):
        """redis-server on a free loopback port (no persistence); returns its URL."""
        import shutil
        import os

        exe = shutil.which("redis-server")
        if not exe:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is missing (CI installs it: .ci/run)")
            pytest.skip("redis-server is not installed (apt-get install redis-server)")
        port = free_port()
        proc = self.start([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                          "redis")
        import redis as redis_client

        client = redis_client.Redis(host="127.0.0.1", port=port)
        self.wait_for(lambda: _ping(client), 20, "redis-server did not start", proc)
        return f"redis://127.0.0.1:{port}/0"

    def stop(self, proc, sig=None, wait: float = 20):
        """Stop one process (and its session's children) by pid: SIGTERM, or `sig`; wait up to
        `wait` seconds for it to exit, then SIGKILL."""
        import time

        self._signal(proc, sig)
        self._reap(proc, time.monotonic() + wait)

    def close(self, wait: float = 3):
        """Stop every process this stack started: SIGTERM to all at once, then SIGKILL whatever
        has not exited after `wait` seconds (a consumer logs "Consumer exiting." at once; what
        follows is the interpreter unloading TensorFlow, seconds a teardown need not wait for)."""
        import os
        import signal
        import time

        live = [p for p in reversed(self.procs) if p.poll() is None]
        spawned = [pid for p in live for pid in self.children(p.pid, b"app.lab")]  # gunicorn's own consumers
        for proc in live:
            self._signal(proc)
        deadline = time.monotonic() + wait
        for proc in live:
            self._reap(proc, deadline)
        for pid in spawned:  # in their own session: gunicorn stops them itself, this is in case it could not
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass

    @staticmethod
    def _signal(proc, sig=None):
        import os
        import signal

        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig or signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _reap(self, proc, deadline: float):
        import os
        import signal
        import subprocess
        import time

        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait(timeout=10)
        if proc is self.web_proc:
            self.web_proc = None

    @staticmethod
    def children(pid: int, marker: bytes = b"") -> list[int]:
        """Pids of the live child processes of `pid` whose command line contains `marker`."""
        from pathlib import Path

        out = []
        for status in Path("/proc").glob("[0-9]*/status"):
            try:
                text = status.read_text()
                cmdline = (status.parent / "cmdline").read_bytes()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
            if int(fields["PPid"].strip()) == pid and marker in cmdline and "Z" not in fields["State"]:
                out.append(int(status.parent.name))
        return out

    def log(self, name: str) -> str:
        """A process's output so far."""
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(self, check, seconds: float, message: str, proc=None):
        """Poll `check()` until it returns something truthy; fail with `message` (and the log)."""
        import time

        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"{message}: {proc.lab_name} exited\n{self.log(proc.lab_name)[-3000:]}")
            time.sleep(0.25)
        pytest.fail(f"{message} (after {seconds:.0f} s)\n{self.logs_tail()}")

    def logs_tail(self, chars: int = 2000) -> str:
        """The last `chars` of every started process's output, each under its name."""
        return "\n".join(f"--- {p.lab_name}\n{self.log(p.lab_name)[-chars:]}" for p in self.procs)

    # HTTP -------------------------------------------------------------------------------
    def _healthy(self) -> bool:
        import requests

        try:
            return requests.get(self.web_url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def session(self):
        """A requests session: one browser (its own lab_owner cookie)."""
        import requests

        return requests.Session()

    def submit(self, session, **payload):
        """POST /api/v1/runs; returns the response."""
        body = {"dataset": "mnist", "recipe": {"units": 8, "layers": 1}, "epochs": 1, "subset": 256,
                "batch_size": 64, **payload}
        return session.post(self.web_url + "/api/v1/runs", json=body, timeout=30)

    def run(self, run_id: str) -> dict:
        """GET /api/v1/runs/<id>."""
        import requests

        return requests.get(f"{self.web_url}/api/v1/runs/{run_id}", timeout=10).json()

    def wait_status(self, run_id: str, statuses, seconds: float = 150) -> dict:
        """Poll a run until its status is one of `statuses`; returns the run."""
        statuses = (statuses,) if isinstance(statuses, str) else tuple(statuses)
        return self.wait_for(lambda: (lambda r: r if r["status"] in statuses else None)(self.run(run_id)),
                             seconds, f"run {run_id} never reached {statuses}")


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ping(client) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False
