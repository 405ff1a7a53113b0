# The two commands a new user needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STATE ?= .localcluster

.PHONY: help venv build up down status lint test test-unit test-integration

help:
	@echo "make test     lint, type-check and run unit + integration tests (builds the local control plane once)"
	@echo "make up       start the local control plane, Prometheus and the traffic simulator"
	@echo "make down     stop everything 'make up' started"
	@echo "make build    build (or reuse) the control plane binaries under \$${SERIN_CACHE:-~/.cache/serin}"

$(PYTHON): requirements.txt requirements-dev.txt
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	@touch $(PYTHON)

venv: $(PYTHON)

build: venv
	$(PYTHON) -m localcluster build

up: build
	@$(PYTHON) -m localcluster up --state $(STATE)

down: venv
	@$(PYTHON) -m localcluster down --state $(STATE)

status: venv
	@$(PYTHON) -m localcluster status --state $(STATE)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy localcluster serin handlers tests benchmarks wsgi.py webhook-certs/serin_certs.py
	$(VENV)/bin/lint-imports

test-unit: venv
	$(PYTHON) -m pytest tests/unit -q

test-integration: build
	$(PYTHON) -m pytest tests/integration -q

test: lint build
	$(PYTHON) -m pytest tests -q
