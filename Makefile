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
BENCH_ARGS ?=
DEMO_ARGS ?=
KUSTOMIZE_VERSION := v5.8.1
KUSTOMIZE := $(CACHE)/kustomize/$(KUSTOMIZE_VERSION)/kustomize
STRIMZI_VERSION := 0.51.0
STRIMZI_CRDS := $(CACHE)/strimzi/api-$(STRIMZI_VERSION)-tests.jar
STRIMZI_CRDS_SHA256 := b99f69303dc507ca505b74345d93f5260621bb084b8b79447f726e54b6e66a1d
export RAPPORT_TOOLS_CACHE := $(CACHE)

.PHONY: help install protos protos-check lint deploy-tools up down status clean provision test demo \
	bench bench-ingest bench-timeline bench-routing bench-quality bench-fuzz bench-journeys \
	bench-erasure bench-merge-review

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

$(KUSTOMIZE):
	GOBIN=$(dir $@) go install sigs.k8s.io/kustomize/kustomize/v5@$(KUSTOMIZE_VERSION)

# Strimzi publishes its CRDs, schemas included, in the API test jar on Maven Central.
$(STRIMZI_CRDS):
	mkdir -p $(dir $@)
	mvn -q dependency:copy -Dartifact=io.strimzi:api:$(STRIMZI_VERSION):jar:tests -DoutputDirectory=$(dir $@)
	echo "$(STRIMZI_CRDS_SHA256)  $@" | sha256sum --check --quiet - || { rm -f $@; exit 1; }

# Offline manifest validation needs kustomize and the Strimzi CRD schemas.
deploy-tools: $(KUSTOMIZE) $(STRIMZI_CRDS)
	mkdir -p $(CACHE)/bin && ln -sf $(KUSTOMIZE) $(CACHE)/bin/kustomize

lint: install $(BUF)
	$(BUF) lint
	$(PY) protos/generate.py --check
	.venv/bin/ruff check .
	.venv/bin/mypy lib services tests $(wildcard bench/*.py) bench/simulator

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
test: lint deploy-tools
	@was_up=0; $(PY) -m rapport.devstack status >/dev/null 2>&1 && was_up=1; \
	$(MAKE) --no-print-directory up || exit 1; \
	$(PY) -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$was_up = 0 ] && [ -z "$$RAPPORT_KEEP_STACK" ]; then $(PY) -m rapport.devstack down; fi; \
	exit $$rc

# A live contact centre: the services, a team of agents and a compressed day of journeys.
# DEMO_ARGS="--minutes 10", "--keep-running" to leave it up, "--scenario-only" for a short run.
# Stops Kafka and Neo4j afterwards (Ctrl-C included) unless they already ran or it was asked to keep them.
demo: install
	@was_up=0; $(PY) -m rapport.devstack status >/dev/null 2>&1 && was_up=1; \
	$(MAKE) --no-print-directory up || exit 1; \
	trap '' INT; $(PY) -m rapport.demo $(DEMO_ARGS); rc=$$?; \
	case " $(DEMO_ARGS) " in *" --keep-running "*) keep=1;; *) keep=$$RAPPORT_KEEP_STACK;; esac; \
	if [ $$was_up = 0 ] && [ -z "$$keep" ]; then $(PY) -m rapport.devstack down; fi; \
	exit $$rc

bench: bench-ingest bench-timeline bench-routing bench-quality bench-journeys

bench-ingest: up
	$(PY) bench/ingest.py $(BENCH_ARGS)

bench-timeline: up
	$(PY) bench/timeline.py $(BENCH_ARGS)

bench-routing: up
	$(PY) bench/routing.py $(BENCH_ARGS)

# Routing quality: the simulator's policies over several seeds (table, JSON and a PNG).
bench-quality: up
	$(PY) bench/quality.py $(BENCH_ARGS)

# Journey report over >=500,000 interactions (seeded under its own prefix, removed afterwards).
bench-journeys: up
	$(PY) bench/journeys.py $(BENCH_ARGS)

# ForgetCustomer by history size, tombstone screening cost in the worker, retention purge rate.
bench-erasure: up
	$(PY) bench/erasure.py $(BENCH_ARGS)

# UnmergeCustomer and ApproveMergeCandidate by history size.
bench-merge-review: up
	$(PY) bench/merge_review.py $(BENCH_ARGS)

# The long hostile-input run (>=100,000 inputs); a short one is part of `make test`.
bench-fuzz: up
	$(PY) bench/fuzz.py $(BENCH_ARGS)
