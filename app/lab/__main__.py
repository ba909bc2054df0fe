"""`python -m app.lab [--workers N]`: one Huey consumer for the lab bench (`make worker`), at lower
CPU priority, never more than LSTMLAB_TRAIN_WORKERS per instance folder, dying with its master.
Details: docs/DESIGN.md, "The training consumer (app/lab/__main__.py)"."""

from __future__ import annotations

import argparse
import ctypes
import fcntl
import logging
import os
import signal
import sys
import threading
from pathlib import Path

from app.config import instance_dir

log = logging.getLogger("app.lab")


def take_slot(instance: Path, slots: int):
    """Lock the first free `consumer-<n>.lock` of `instance` (n < slots); the open file, or None."""
    instance.mkdir(parents=True, exist_ok=True)
    for n in range(max(1, slots)):
        handle = open(instance / f"consumer-{n}.lock", "a+")  # noqa: SIM115 - held for the process's life
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        return handle
    return None


def die_with_master(master: int) -> None:
    """Exit (SIGTERM to itself) when the master `master` is gone: PR_SET_PDEATHSIG on Linux, and a
    thread that compares the parent pid every second."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
        except (OSError, AttributeError):
            log.warning("lab consumer: no parent-death signal; watching the parent pid only")

    def watch() -> None:
        while os.getppid() == master:
            threading.Event().wait(1.0)
        log.warning("lab consumer: its master %d is gone; stopping", master)
        os.kill(os.getpid(), signal.SIGTERM)

    if os.getppid() != master:  # the master died before the signal was set
        os.kill(os.getpid(), signal.SIGTERM)
    threading.Thread(target=watch, name="master-watch", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    """Start a consumer; returns when it is stopped (SIGINT graceful, SIGTERM immediate)."""
    parser = argparse.ArgumentParser(prog="python -m app.lab")
    parser.add_argument("--workers", type=int, default=1, help="runs this consumer trains at once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    master = os.environ.get("LSTMLAB_MASTER_PID", "")
    if master.isdigit():
        die_with_master(int(master))

    slots = int(os.environ.get("LSTMLAB_TRAIN_WORKERS") or "1")  # 0: consumers run apart (make worker), no cap
    slot = take_slot(instance_dir(), slots) if slots > 0 else True
    if slot is None:
        log.warning("lab consumer: all %d consumer slot(s) of %s are taken; not starting another",
                    slots, instance_dir())
        return 0
    # the queue and training load only after the slot is taken, then the priority is lowered
    from app.lab.jobs import huey, lower_priority
    from app.lab import scorer  # noqa: F401 - registers the "score_submission" handler

    lower_priority()
    import training.images  # noqa: F401 - TensorFlow and Keras load once here, not inside the first run
    # max_delay: an idle consumer looks at a SQLite queue at least every second (Huey's default
    # backs off to 10 s, which a student would wait through); Redis wakes it at once anyway.
    huey.create_consumer(workers=max(1, args.workers), worker_type="thread", periodic=True, max_delay=1.0).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
