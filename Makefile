# OpenDREC: `make run` starts the platform on embedded parts, `make test` runs every test.
# Both bootstrap their own environment: a pinned uv in .run/bootstrap, the workspace in .venv.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(CURDIR)/.venv
PYTHON ?= python3
UV_VERSION := 0.13.8
BOOT := .run/bootstrap
UV := $(BOOT)/bin/uv
PY := .venv/bin/python

.PHONY: run test chromium test-fast fuzz chaos bench bench-gateway bench-devices bench-readings bench-certificates bench-drec-clients bench-drec-soak bench-operations bench-resources lint format schemas lock clean

$(UV):
	@mkdir -p .run
	$(PYTHON) -m venv $(BOOT)
	$(BOOT)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

.venv/.synced: $(UV) uv.lock pyproject.toml $(wildcard libs/*/pyproject.toml services/*/pyproject.toml)
	$(UV) sync --frozen --all-packages --python $(PYTHON)
	@touch $@

run: .venv/.synced
	exec $(PY) -m opendrec_devstack run

# newman, pinned in tests/postman/package-lock.json, for the D-REC Postman collection test (tests/postman);
# npm from Debian's packages when missing (CI runs as root on Debian). Reinstalled only when the lock changes.
NEWMAN_STAMP := tests/postman/node_modules/.installed
$(NEWMAN_STAMP): tests/postman/package.json tests/postman/package-lock.json
	@command -v npm >/dev/null || { apt-get update -qq && apt-get install -y -qq nodejs npm; }
	npm ci --prefix tests/postman --no-audit --no-fund
	@touch $@

# Chromium for the console's browser tests (tests/browser: Playwright drives the system browser), from Debian's
# packages when missing (CI runs as root on Debian).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }

# Tests run on TEST_WORKERS pytest-xdist workers (0: in this process): a file on one worker, and the suites that start
# platforms all on one, in turn (conftest.py). Most tests wait on processes, the broker and Postgres: 3 workers share
# the 2 cores of the CI machine well.
TEST_WORKERS ?= 3
test: .venv/.synced $(NEWMAN_STAMP) chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# The API fuzzer with 100 random cases per operation, role and mode (make test runs 5).
fuzz: .venv/.synced
	OPENDREC_FUZZ_EXAMPLES=100 $(PY) -m pytest tests/fuzz -p no:cacheprovider -o timeout=0 $(PYTEST_ARGS)

# The fault-injection run (issue 13; tests/chaos): >= 200,000 reads through the gateway while every service is
# killed -9 and the broker restarted empty; prints a table, exits 1 on any energy lost, doubled or out of its window.
# CHAOS_SEED picks the run (random when unset, printed), CHAOS_READS and CHAOS_KILLS its size. make test runs a small one.
chaos: .venv/.synced
	$(PY) tests/chaos/chaos.py

test-fast: .venv/.synced
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

# All of them, each to its end even if one misses its goal; fails if any did.
bench: .venv/.synced
	@status=0; for b in gateway devices readings certificates drec-clients drec-soak operations; do $(MAKE) --no-print-directory bench-$$b || status=1; done; exit $$status

bench-gateway: .venv/.synced
	$(PY) bench/gateway/bench_forwarding.py

bench-devices: .venv/.synced
	$(PY) bench/devices/bench_bulk.py

bench-readings: .venv/.synced
	$(PY) bench/readings/bench_readings.py $(BENCH_ARGS)

# Each to its end even if one misses its goal (certification's 100,000 reads/s is missed today); fails if any did.
bench-certificates: .venv/.synced
	@status=0; for b in bench_certification bench_latency bench_reads_insert; do \
		$(PY) bench/certificates/$$b.py || status=1; done; exit $$status

# The D-REC client load (issue 16): one read per request, device listing, login, through the whole platform.
bench-drec-clients: .venv/.synced
	$(PY) bench/drec-clients/bench_clients.py $(BENCH_ARGS)

# Ten minutes of the D-REC client load in turn: every service's memory must stay flat (issue 16).
bench-drec-soak: .venv/.synced
	$(PY) bench/drec-clients/bench_clients.py --soak 10 $(BENCH_ARGS)

# What the metrics cost on the hot paths, and each service's memory against its Kubernetes requests (issue 18).
bench-operations: .venv/.synced
	$(PY) bench/operations/bench_metrics.py
	$(PY) bench/operations/bench_footprint.py
	$(PY) bench/operations/bench_resources.py

# CPU and memory per service under the drec-clients load; --write records them for the Kubernetes requests/limits
# (deploy/k8s/resources.measured.json): `make bench-resources BENCH_ARGS=--write`
bench-resources: .venv/.synced
	$(PY) bench/operations/bench_resources.py $(BENCH_ARGS)

# ruff (lint and format check) and mypy over libs/ and services/*/src (config in pyproject.toml), and the
# committed event schemas: zero findings is green.
lint: .venv/.synced
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	$(PY) -m opendrec_contracts.schemas --check

format: .venv/.synced
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

schemas: .venv/.synced
	$(PY) -m opendrec_contracts.schemas

lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf .venv .run
