# The two commands a new user needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STATE ?= .localcluster

.PHONY: help venv build up down status demo lint test test-unit test-integration bench fuzz manifests image

help:
	@echo "make demo     a good release promoted and a bad one rolled back, live, on a local cluster"
	@echo "make test     lint, type-check and run unit + integration tests (builds the local control plane once)"
	@echo "make up       start the local control plane, Prometheus, the traffic simulator and Serin; prints the env"
	@echo "make down     stop everything 'make up' started"
	@echo "make build    build (or reuse) the control plane binaries under \$${SERIN_CACHE:-~/.cache/serin}"
	@echo "make bench    benchmarks: admission latency, tick cost, cold start, release time beside Flagger"
	@echo "make image    build the Dockerfile into localhost/serin:dev with buildah (no Docker needed)"
	@echo "make manifests  render k8s/ (and its cert-manager variant) from the Helm chart in charts/serin"
	@echo "make fuzz     random AdmissionReviews, bytes and /tick queries: over 10,000 cases, none may get a 5xx"

$(PYTHON): requirements.txt requirements-dev.txt pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet -r requirements-dev.txt
	$(PYTHON) -m pip install --quiet --no-deps --editable .
	@touch $(PYTHON)

venv: $(PYTHON)

build: venv
	@$(PYTHON) -m localcluster build

up: build
	@$(PYTHON) -m localcluster up --serin --state $(STATE)

down: venv
	@$(PYTHON) -m localcluster down --state $(STATE)

status: venv
	@$(PYTHON) -m localcluster status --state $(STATE)

demo: build
	@$(PYTHON) -m localcluster.demo

bench: build
	$(PYTHON) -m benchmarks.admission_latency
	$(PYTHON) -m benchmarks.tick_scaling
	$(PYTHON) -m benchmarks.tick_concurrency
	$(PYTHON) -m benchmarks.cold_start
	$(PYTHON) -m benchmarks.judge
	$(PYTHON) -m benchmarks.release_time
	$(PYTHON) -m benchmarks.scale
	$(PYTHON) -m benchmarks.memory
	$(PYTHON) -m benchmarks.flagger_scale

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy localcluster serin handlers tests benchmarks wsgi.py gunicorn.conf.py
	$(VENV)/bin/lint-imports

image: venv
	@$(PYTHON) -m localcluster.image

manifests: venv
	@$(PYTHON) -m localcluster.chart

fuzz: build
	SERIN_FUZZ_EXAMPLES=3400 $(PYTHON) -m pytest tests/integration/test_fuzz.py -q

test-unit: venv
	$(PYTHON) -m pytest tests/unit -q

test-integration: build
	$(PYTHON) -m pytest tests/integration -q --durations=25

test: lint build
	$(PYTHON) -m pytest tests -q --durations=25
