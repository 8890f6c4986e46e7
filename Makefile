# dispatchwire: `make run` and `make test` work on a fresh machine (Debian, Python 3.11,
# Java 17 + Maven). Everything they need is installed here.
SHELL := /bin/bash
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell sha1sum pyproject.toml | cut -c1-12)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: install chromium kafka-fetch kafka-up kafka-down run test check lint bench bench-smoke soak soak-cluster clean

$(STAMP): pyproject.toml
	@command -v $(PY) >/dev/null || { echo "$(PY) is missing: install Python 3.11 (or run make PY=/path/to/python3.11)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian's chromium, driven by Playwright for the browser tests (no browser download).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null; }

kafka-fetch: install
	$(BIN)/dispatchwire kafka fetch >/dev/null

kafka-up: install
	$(BIN)/dispatchwire kafka up

kafka-down: install
	$(BIN)/dispatchwire kafka down

# Kafka, worker, API, sink and demo traffic; prints the dashboard URL; Ctrl-C stops it all.
run: install kafka-fetch
	$(BIN)/dispatchwire run $(if $(BROKERS),--brokers $(BROKERS)) $(if $(WORKERS),--workers $(WORKERS)) $(if $(APIS),--apis $(APIS))

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/vulture

# The whole suite. The test session starts its own Kafka broker on a free loopback port
# and stops it at the end, pass or fail (set DISPATCHWIRE_KAFKA_BOOTSTRAP to use yours).
test: install chromium kafka-fetch lint
	$(BIN)/pytest

check: test

bench: install kafka-fetch
	$(BIN)/python -m tests.benchmarks

# The fault suite (tests/faults, issue 10) with every load phase stretched to SOAK_SECONDS
# (at most 300); it starts a broker of its own, prints one row per case and the table.
# About 10 minutes at the default on a 2-core machine. `make test` runs the short version.
SOAK_SECONDS ?= 10
soak: install kafka-fetch
	DISPATCHWIRE_SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest tests/faults/test_faults.py

# The cluster cases (issue 14): 3 KRaft nodes of their own, 2 workers, 2 API replicas; every
# case, with the load phases stretched to SOAK_SECONDS. `make test` runs the worker case only.
soak-cluster: install kafka-fetch
	DISPATCHWIRE_SOAK_SECONDS=$(SOAK_SECONDS) $(BIN)/pytest tests/faults/test_cluster_faults.py

clean:
	rm -rf $(VENV) artifacts bench-results snapshots
