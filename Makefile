# The two commands a new user needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON := $(VENV)/bin/python
STATE ?= .localcluster

.PHONY: help venv build up down status demo demo-traefik lint check test test-unit test-integration test-compat nightly coverage bench fuzz manifests image lock

help:
	@echo "make demo     a good release promoted and a bad one rolled back, live, on a local cluster"
	@echo "make demo-traefik  the same two releases through the real Traefik, with real requests counted"
	@echo "make test     lint, type-check and run unit + integration tests (builds the local control plane once)"
	@echo "make check    lint, type-check and unit tests only: no control plane needed"
	@echo "make test-compat  the tests of what differs between Kubernetes releases (SERIN_KUBERNETES_VERSION=...)"
	@echo "make nightly  long scenarios beyond one test per behaviour (a crash after each write of a rollback, ...)"
	@echo "make coverage line coverage of serin/ and handlers/ over the whole suite, servers included"
	@echo "make up       start the local control plane, Prometheus, the traffic simulator and Serin; prints the env"
	@echo "make down     stop everything 'make up' started"
	@echo "make build    build (or reuse) the control plane binaries under \$${SERIN_CACHE:-~/.cache/serin}"
	@echo "make bench    benchmarks: admission beside a bare webhook, admission latency, tick cost, cold start, release time beside Flagger"
	@echo "make image    build the Dockerfile into localhost/serin:dev with buildah (no Docker needed), and its SBOM"
	@echo "make lock     pin the image's packages with hashes again: requirements.lock, requirements-build.lock"
	@echo "make manifests  render k8s/ (and its cert-manager variant) from the Helm chart in charts/serin"
	@echo "make fuzz     random AdmissionReviews, bytes and /tick queries: over 10,000 cases, none may get a 5xx"

# The venv installs exactly what requirements-dev.lock names, each file checked against its hashes
# (the runtime packages at the versions of the image's requirements.lock). Packages that come as
# sources are built with the locked setuptools, installed first, rather than with whatever an
# isolated build would fetch unchecked.
$(PYTHON): requirements-dev.lock requirements-build.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --require-hashes --no-deps -r requirements-build.lock
	$(PYTHON) -m pip install --quiet --require-hashes --no-build-isolation -r requirements-dev.lock
	$(PYTHON) -m pip install --quiet --no-deps --no-build-isolation --editable .
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

demo-traefik: build
	@$(PYTHON) -m localcluster.demo --traefik

bench: build
	$(PYTHON) -m benchmarks.admission_floor
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

# The image installs exactly what these name, each file checked against its hashes: the runtime
# closure of requirements.txt, and the build backend of Serin's own wheel. A lock keeps the pins
# that still fit; LOCK_FLAGS=--upgrade takes the newest of every one. A machine's own pip settings
# (find-links) stay out of the locks.
LOCK = CUSTOM_COMPILE_COMMAND="make lock" $(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe \
	--strip-extras --no-emit-find-links $(LOCK_FLAGS)
lock: venv
	$(LOCK) --output-file=requirements.lock requirements.txt
	$(LOCK) --build-deps-for=wheel --only-build-deps --output-file=requirements-build.lock pyproject.toml
	$(LOCK) --constraint=requirements.lock --output-file=requirements-dev.lock requirements-dev.txt

manifests: venv
	@$(PYTHON) -m localcluster.chart

fuzz: build
	SERIN_FUZZ_EXAMPLES=3400 $(PYTHON) -m pytest tests/integration/test_fuzz.py -q --timeout=0

# Integration tests run on parallel workers, each starting a control plane of its own (about 1.5 GB).
# They mostly wait (for rollouts, scrapes, intervals), so a 2-core machine is best used by more
# workers than cores; see localcluster/capacity.py.
TEST_WORKERS ?= $(shell $(PYTHON) -m localcluster.capacity)
# loadgroup keeps a module marked xdist_group on one worker; tests/scheduling.py orders the rest.
PARALLEL = -n $(TEST_WORKERS) --dist loadgroup --no-loadscope-reorder

# A module at a time per worker: some keep what a library sets once per process (Django's settings).
test-unit: venv
	$(PYTHON) -m pytest tests/unit -q -n 2 --dist loadfile --durations=5

test-integration: build
	$(PYTHON) -m pytest tests/integration -q $(PARALLEL) --durations=25

test-compat: build
	$(PYTHON) -m pytest tests/integration -q -m compat $(PARALLEL) --durations=10

nightly: build
	$(PYTHON) -m pytest tests/integration -q -m nightly $(PARALLEL) --durations=10

check: lint test-unit

# The seconds of each phase end the run, so that a slower phase shows at once (.ci/run, which sets
# SERIN_CI_PHASES, gets them too and prints them beside its own).
test: venv build
	@export SERIN_PHASES="$$(mktemp)"; . tests/phases.sh; \
	phase lint $(MAKE) --no-print-directory lint && \
	phase unit $(MAKE) --no-print-directory test-unit && \
	phase integration $(MAKE) --no-print-directory test-integration; status=$$?; \
	report_phases "make test"; cat "$$SERIN_PHASES" >> "$${SERIN_CI_PHASES:-/dev/null}"; rm -f "$$SERIN_PHASES"; \
	exit $$status

# Coverage of the product code (serin/, handlers/) over unit and integration tests, the gunicorn
# servers and CLIs the tests start included; the helpers the cluster runs (the simulator) are not
# measured. Slower than make test: tracing costs every process some speed. The unit tests run a
# module at a time per worker, as in make test-unit.
coverage: build
	rm -rf .coverage-data && mkdir -p .coverage-data
	COVERAGE_ROOT=$(CURDIR) $(VENV)/bin/coverage run -m pytest tests/unit -q -n 2 --dist loadfile
	COVERAGE_ROOT=$(CURDIR) $(VENV)/bin/coverage run -m pytest tests/integration -q $(PARALLEL) --timeout=1800
	COVERAGE_ROOT=$(CURDIR) $(VENV)/bin/coverage combine --quiet
	COVERAGE_ROOT=$(CURDIR) $(VENV)/bin/coverage report --precision=1 | tail -n 1
