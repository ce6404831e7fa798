# framecast — run `make help` for the targets. Everything installs itself: venv, packages, assets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Workers of `make run`: a count, or per camera (WORKERS=door=3,yard=1); see `framecast up --help`.
WORKERS ?= 2
CONFIG ?= cameras.yaml

.PHONY: help install system-deps assets test lint run stop bench clean

help:
	@echo "make run      - the whole pipeline on the sample clip; open the printed URL (Ctrl-C stops)"
	@echo "make test     - the test suite (real redis-server, real model, headless chromium)"
	@echo "make install  - virtualenv in .venv with framecast and its test extras"
	@echo "make assets   - fetch the model and sample clip into ~/.cache/framecast (sha256-pinned)"
	@echo "make lint     - ruff"
	@echo "make bench    - benchmarks; prints a table and writes bench/results/*.json"
	@echo "make stop     - stop a pipeline started by make run"

system-deps:
	@bash deploy/system-deps.sh --with-browser

$(STAMP): pyproject.toml
	@bash deploy/system-deps.sh
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

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
	rm -rf $(VENV) *.egg-info run artifacts .pytest_cache bench/results
