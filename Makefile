# HR data pipeline: every command runs from a fresh clone (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
LOCAL := .local
DATA ?= include/sample_data

.PHONY: help install demo test test-fast lint bench up down azurite-start azurite-stop constraints clean

help: ## List the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements.txt requirements-dev.txt constraints.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@test -x $(UV) || $(VENV)/bin/pip install --quiet uv==0.13.9
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet -r requirements.txt -r requirements-dev.txt -c constraints.txt
	@# The package itself, editable: its dependencies are the pins above.
	VIRTUAL_ENV=$(VENV) $(UV) pip install --quiet --no-deps -e .
	@# Bytecode now, as a production image has it: uv does not compile, and with
	@# PYTHONDONTWRITEBYTECODE set every task process would recompile Airflow and GX on import.
	$(PY) -m compileall -q -j 0 $(VENV)/lib > /dev/null
	@touch $@

node_modules/.installed: package.json package-lock.json
	@# npm ci wipes node_modules first: only on a clone without it (a running emulator uses it)
	@test -x node_modules/.bin/azurite-blob || npm ci --no-audit --no-fund --loglevel=error
	@touch $@

install: $(VENV)/.installed node_modules/.installed ## Create .venv: the package (editable), its runtime and dev pins, the npm packages

constraints: ## Re-resolve the locks: constraints.txt (runtime + dev), constraints-runtime.txt (the image's, a subset)
	$(UV) pip compile requirements.txt requirements-dev.txt --python-version 3.11 -q -o constraints.txt
	$(UV) pip compile requirements.txt -c constraints.txt --python-version 3.11 -q -o constraints-runtime.txt

azurite-start: $(VENV)/.installed node_modules/.installed ## Start the Azure Blob emulator (data in .local/azurite; port AZURITE_BLOB_PORT, else 10000 or a free one)
	@$(VENV)/bin/hr-pipeline azurite start $(CURDIR)/$(LOCAL)/azurite
	@# The CLI environment follows the port the emulator got.
	@if [ -f $(LOCAL)/airflow.env ]; then \
	  $(VENV)/bin/hr-pipeline env --blob-port "$$($(VENV)/bin/hr-pipeline azurite port $(CURDIR)/$(LOCAL)/azurite)" > /dev/null; fi

azurite-stop: ## Stop the Azure Blob emulator
	@$(VENV)/bin/hr-pipeline azurite stop $(CURDIR)/$(LOCAL)/azurite

demo: install ## Run the whole pipeline on DATA (default: the sample extracts) into .local/warehouse.db
	@$(VENV)/bin/hr-pipeline demo --data "$(DATA)"

test: install ## Run the whole test suite (starts its own emulator and Airflow processes)
	@bash scripts/install_chromium.sh || echo "Chromium could not be installed: the browser test will say why"
	$(PY) -m pytest

test-fast: install ## Unit tests only (no service needed)
	$(PY) -m pytest tests/unit tests/dags

lint: install ## ruff (lint with Airflow's AIR rules, formatting) and the package's layers (import-linter), as CI runs them
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports

bench: install ## Run the benchmarks (PostgreSQL) and print each figure beside its baseline
	$(PY) -m benchmarks

up: install node_modules/.installed ## Start the local Airflow (UI and REST API on http://localhost:8080) and the emulator
	@$(VENV)/bin/hr-pipeline up

down: ## Stop everything `make up` started
	@$(VENV)/bin/hr-pipeline down

clean: down azurite-stop ## Remove local state (.local) but keep .venv
	rm -rf $(LOCAL)
