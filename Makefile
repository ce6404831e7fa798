# framecast — run `make help` for the targets. Everything installs itself: venv, packages, assets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Workers of `make run`: a count, or per camera (WORKERS=door=3,yard=1); see `framecast up --help`.
WORKERS ?= 2
CONFIG ?= cameras.yaml
# The lock the venv installs: lock/requirements-test.txt holds the runtime, TensorFlow and test packages.
LOCK ?= lock/requirements-test.txt
# uv resolves the locks (fast, resolves for Python 3.11 / Linux x86_64 whatever machine runs it, and
# writes pip-readable files with hashes); it runs only for `make lock`, from a venv of its own.
UV_VERSION := 0.13.9
LOCK_VENV := .venv-lock
LOCK_FLAGS := -c lock/constraints.in --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 --quiet

.PHONY: help install lock system-deps assets test lint run stop bench clean

help:
	@echo "make run      - the whole pipeline on the sample clip; open the printed URL (Ctrl-C stops)"
	@echo "make test     - the test suite (real redis-server, real model, headless chromium)"
	@echo "make install  - virtualenv in .venv with framecast and its test extras"
	@echo "make assets   - fetch the model and sample clip into ~/.cache/framecast (sha256-pinned)"
	@echo "make lint     - ruff"
	@echo "make bench    - benchmarks; prints a table and writes bench/results/*.json"
	@echo "make lock     - re-resolve lock/requirements-*.txt from pyproject.toml (then run make test on it)"
	@echo "make stop     - stop a pipeline started by make run"

system-deps:
	@bash deploy/system-deps.sh --with-browser

# Every package, transitive ones included, comes from the lock with its sha256 (pip refuses anything
# unhashed); framecast itself is then laid over it without resolving anything (--no-deps). A changed
# lock or pyproject.toml makes a new venv, so nothing the old lock (or a hand) installed stays behind;
# `common.build check` then proves the venv is exactly the lock (tests/test_lock.py checks it again).
$(STAMP): pyproject.toml $(LOCK)
	@bash deploy/system-deps.sh
	rm -rf $(VENV) && $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes --no-deps -r $(LOCK)
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	$(BIN)/python -m pip check
	$(BIN)/python -m common.build check $(LOCK)
	@touch $(STAMP)

install: $(STAMP)

# test.txt first (the superset, with the build tools the editable install needs); the others are
# constrained to its versions, so every lock agrees. base/tensorflow/gpu are the image's runtime
# (no build tools); build.txt is the image's pip, setuptools and wheel.
lock:
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) && $(LOCK_VENV)/bin/pip install -q uv==$(UV_VERSION); }
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml lock/build.in --extra test $(LOCK_FLAGS) $(UPGRADE) -o lock/requirements-test.txt
	$(LOCK_VENV)/bin/uv pip compile lock/build.in -c lock/requirements-test.txt $(LOCK_FLAGS) -o lock/requirements-build.txt
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml -c lock/requirements-test.txt $(LOCK_FLAGS) -o lock/requirements-base.txt
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --extra tensorflow -c lock/requirements-test.txt $(LOCK_FLAGS) -o lock/requirements-tensorflow.txt
	$(LOCK_VENV)/bin/uv pip compile pyproject.toml --extra gpu -c lock/requirements-base.txt $(LOCK_FLAGS) -o lock/requirements-gpu.txt

assets: $(STAMP)
	$(BIN)/python -m common.assets fetch

test: install system-deps assets
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check .

run: install assets
	$(BIN)/framecast up --config $(CONFIG) --workers "$(WORKERS)"

stop:
	@$(BIN)/framecast up --stop

bench: install assets
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) $(LOCK_VENV) *.egg-info run artifacts .pytest_cache bench/results
