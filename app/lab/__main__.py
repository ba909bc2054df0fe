"""`python -m app.lab [--workers N]`: one Huey consumer for the lab bench (`make worker`).

Lowers its CPU priority first (LAB_WORKER_NICE, default 10: every thread TensorFlow starts later
inherits it), so web requests on the same cores keep their speed; then runs thread workers that
take runs from the queue (LSTMLAB_QUEUE_URL) and write records (LSTMLAB_DATABASE_URL).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Start a consumer; returns when it is stopped (SIGINT graceful, SIGTERM immediate)."""
    parser = argparse.ArgumentParser(prog="python -m app.lab")
    parser.add_argument("--workers", type=int, default=1, help="runs this consumer trains at once")
    args = parser.parse_args(argv)
    from app.lab.jobs import huey, lower_priority

    lower_priority()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    import training.images  # noqa: F401 - TensorFlow and Keras load once here, not inside the first run
    # max_delay: an idle consumer looks at a SQLite queue at least every second (Huey's default
    # backs off to 10 s, which a student would wait through); Redis wakes it at once anyway.
    huey.create_consumer(workers=max(1, args.workers), worker_type="thread", periodic=True, max_delay=1.0).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
