# The two commands of the README: `make run` starts the app locally, `make test` runs every check.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint typecheck unit infra bench clean

$(STAMP): requirements.txt requirements-dev.txt mailctl/requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

run: $(STAMP) node_modules/.installed
	$(BIN)/python -m devhost

test: lint typecheck unit infra

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-logo --no-cache

typecheck: $(STAMP)
	$(BIN)/mypy .

unit: $(STAMP) node_modules/.installed
	$(BIN)/pytest -n auto --dist loadfile

infra: $(STAMP)
	scripts/validate-infra

bench: $(STAMP) node_modules/.installed
	$(BIN)/python -m pip install --quiet -r bench/requirements.txt
	$(BIN)/python -m bench && $(BIN)/python -m bench.control && $(BIN)/python -m bench.retention && $(BIN)/python -m bench.telemetry

clean:
	rm -rf $(VENV) .venv-checkov node_modules .mypy_cache .ruff_cache .pytest_cache
