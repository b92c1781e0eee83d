# Rapport: `make demo` runs the product locally, `make test` runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

export UV_PYTHON_DOWNLOADS := never
export UV_PYTHON_PREFERENCE := only-system
CACHE ?= $(HOME)/.cache/rapport
UV_VERSION := 0.13.8
BUF_VERSION := v1.50.0
UV := $(shell command -v uv 2>/dev/null || echo $(CACHE)/uv/bin/uv)
BUF := $(CACHE)/bin/buf
PY := .venv/bin/python
PYTEST_ARGS ?=

.PHONY: help install protos protos-check lint up down status clean provision test demo bench bench-ingest

help:
	@echo "make demo    run Rapport locally (servers, topics, schema)"
	@echo "make test    lint, type-check and run every test against real Kafka and Neo4j"
	@echo "make up | down | status | clean   manage the local Kafka and Neo4j"
	@echo "make protos  regenerate lib/rapport/v1 from protos/"
	@echo "make bench   run the benchmarks (figures in bench/results/)"

$(UV):
	python3 -m pip install --quiet --target $(CACHE)/uv/lib uv==$(UV_VERSION)
	mkdir -p $(CACHE)/uv/bin && ln -sf $(CACHE)/uv/lib/bin/uv $(CACHE)/uv/bin/uv

# The virtualenv follows uv.lock exactly; it is rebuilt only when the lock changes.
.venv/.synced: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --quiet
	touch $@

install: .venv/.synced

$(BUF):
	mkdir -p $(CACHE)/bin
	GOBIN=$(CACHE)/bin go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)

protos: install
	$(PY) protos/generate.py 2>/dev/null

protos-check: install
	$(PY) protos/generate.py --check

lint: install $(BUF)
	$(BUF) lint
	$(PY) protos/generate.py --check
	.venv/bin/ruff check .
	.venv/bin/mypy lib services tests $(wildcard bench/*.py)

up: install
	$(PY) -m rapport.devstack up
	$(PY) -m rapport.provision

down: install
	$(PY) -m rapport.devstack down

status: install
	$(PY) -m rapport.devstack status

clean: install
	$(PY) -m rapport.devstack clean

provision: install
	$(PY) -m rapport.provision

# Starts the servers unless they already run, and stops them afterwards only if it started them.
test: lint
	@was_up=0; $(PY) -m rapport.devstack status >/dev/null 2>&1 && was_up=1; \
	$(MAKE) --no-print-directory up || exit 1; \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$was_up = 0 ] && [ -z "$$RAPPORT_KEEP_STACK" ]; then $(PY) -m rapport.devstack down; fi; \
	exit $$rc

demo: up
	@echo "Kafka and Neo4j are up with topics and schema. The full demo lands with the demo issue."
