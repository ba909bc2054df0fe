# LSTM Lab: `make serve` serves the shipped models, `make test` runs the tests.
# Both create the virtual environment and install requirements.txt on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export LSTMLAB_DATA ?= $(abspath ../shared/data)
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install serve test benchmarks clean

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $(STAMP)

install: $(STAMP)

# The secret key: FLASK_SECRET_KEY when set, else instance/secret_key, generated once by the app
# (mode 0600), so open forms survive a restart. Nothing else to install: limits count in memory.
serve: install
	$(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

test: install
	$(BIN)/python -m pytest -q

# Speed, memory and load against same-run baselines; results go into docs/BENCHMARKS.md (~10 min).
benchmarks: install
	$(BIN)/python benchmarks/serve.py --write
	$(BIN)/python benchmarks/load.py
	$(BIN)/python benchmarks/generation.py --write
	$(BIN)/python benchmarks/trace.py --write

clean:
	rm -rf $(VENV) runs .pytest_cache
