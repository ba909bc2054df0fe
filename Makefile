# LSTM Lab: `make serve` serves the shipped models, `make test` runs the tests.
# Both create the virtual environment and install requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LSTMLAB_DATA ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install serve worker test benchmarks clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The secret key: FLASK_SECRET_KEY when set, else instance/secret_key, generated once by the app
# (mode 0600), so open forms survive a restart. Nothing else to install: limits count in memory.
# gunicorn also starts LSTMLAB_TRAIN_WORKERS (default 1) lab-bench training consumers at lower CPU
# priority and stops them with it (gunicorn.conf.py); the schema is migrated at start-up.
serve: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

# One lab-bench training consumer only, e.g. on another machine: point it at the shared queue and
# records (LSTMLAB_QUEUE_URL=redis://..., LSTMLAB_DATABASE_URL=postgresql+psycopg://...) and at the
# shared instance folder holding runs/ (LSTMLAB_INSTANCE). LSTMLAB_WORKER_THREADS runs at once (default 1).
worker: install
	$(BIN)/python -m app.lab --workers $${LSTMLAB_WORKER_THREADS:-1}

# Two pytest-xdist processes (TEST_WORKERS); --dist loadscope keeps each module on one process, so a
# module's shared fixture (a quick training run) is built once. TEST_WORKERS=0 runs in one process.
TEST_WORKERS ?= 2
test: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope

# Speed, memory and load against same-run baselines; results go into docs/BENCHMARKS.md (~25 min).
benchmarks: install
	$(BIN)/python benchmarks/serve.py --write
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/generation.py --write
	$(BIN)/python benchmarks/trace.py --write
	$(BIN)/python benchmarks/lab.py

clean:
	rm -rf $(VENV) runs .pytest_cache
