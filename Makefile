# Two commands set everything up on a fresh machine: `make run` and `make test`.
# Both use one virtualenv, .venv/, at the project root.

PORT ?= 8000
HOST ?= 127.0.0.1
VENV := .venv
PY := $(VENV)/bin/python
# Django 6 needs Python 3.12+; Debian's python3 here is 3.11, pyenv carries newer ones.
PYTHON_FOR_VENV ?= $(shell for p in python3.13 python3.12 /root/.pyenv/versions/3.13*/bin/python3.13 /root/.pyenv/versions/3.12*/bin/python3.12; do command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; assert sys.version_info >= (3, 12)' 2>/dev/null && { command -v $$p; break; }; done)

.PHONY: run serve test lint bench venv services migrate clean lock monitor cluster cluster-down

# config/settings.py is production unless asked otherwise. `make run` and its steps ask
# for development (a fixed SECRET_KEY, plain-http cookies, CORS for the seed frontend on
# http://localhost:3000) unless DJANGO_ENV is already set, and say so when they start.
run serve migrate services bench cluster: export DJANGO_ENV ?= development
# `make test`'s own manage.py calls use the suite's settings (pytest names them itself).
test: export DJANGO_SETTINGS_MODULE = config.settings_test

# Installs exactly the versions in requirements.lock (what the tests ran); upgrading
# is a deliberate `make lock` and a commit of the new lock file.
$(VENV)/.installed: requirements.lock
	@test -n "$(PYTHON_FOR_VENV)" || { echo "Python 3.12 or newer is needed (Django 6). Install python3.12 and run again."; exit 1; }
	@test -x $(PY) || $(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $@

venv: $(VENV)/.installed

services: venv
	@$(PY) manage.py check_services

migrate: services
	$(PY) manage.py ensure_database
	$(PY) manage.py migrate --noinput

# PostgreSQL and Redis where DATABASE_URL and REDIS_URL say; when one of them is not set
# and nothing answers at its local default, a private server of its own for as long as
# the stack runs (data in .run/postgres-$(PORT)/, scripts/private_services.py).
run: venv
	@$(PY) scripts/private_services.py --name $(PORT) -- $(MAKE) --no-print-directory serve PORT=$(PORT) HOST=$(HOST)

# What `make run` runs once its services answer: migrations, demo data, the stack.
serve: migrate
	$(PY) manage.py seed_demo
	$(PY) manage.py collectstatic --noinput --verbosity 0
	@PORT=$(PORT) HOST=$(HOST) bash scripts/run_stack.sh

# A Prometheus beside `make run` (config/monitor.py), for a person: it scrapes
# http://$(HOST):$(PORT)/metrics with METRICS_TOKEN (start `make run` with the same one)
# and evaluates deploy/prometheus/alerts.yml; http://127.0.0.1:$(PROMETHEUS_PORT)/classic/alerts
# shows them. Not 9090: Debian's own prometheus service takes that one where it runs.
PROMETHEUS_PORT ?= 9091
monitor: venv
	@bash scripts/install_prometheus.sh
	@PORT=$(PORT) HOST=$(HOST) PROMETHEUS_PORT=$(PROMETHEUS_PORT) $(PY) -m config.monitor

# A cluster on this machine (root only: network namespaces; scripts/cluster.py): a
# load balancer (Debian's HAProxy), two app hosts running `make run`'s production mode
# and a data host (PostgreSQL, the queue's Redis, the channel layer's two Redis).
# `make cluster` starts it in the background, with the demo data, and returns once the
# load balancer serves both hosts, printing where it listens (http://127.0.0.1:$(CLUSTER_PORT)/
# and the ports after it); `make cluster-down` stops it all and removes the namespaces
# (the data stays in .run/cluster/$(CLUSTER_NAME)/ for the next `make cluster`).
CLUSTER_PORT ?= 8088
CLUSTER_NAME ?= aistatus
cluster: venv
	@$(PY) scripts/cluster.py up --name $(CLUSTER_NAME) --port $(CLUSTER_PORT) --seed

cluster-down: venv
	@$(PY) scripts/cluster.py down --name $(CLUSTER_NAME)

# Lint (ruff, pyproject.toml's [tool.ruff]) and type check (mypy with the Django and DRF
# plugins, [tool.mypy]); `make test` runs this first and stops on any finding.
lint: venv
	$(PY) -m ruff check .
	$(PY) -m mypy

# Lint first: a finding of ruff or mypy fails `make test` before any test runs.
test: lint services
	bash scripts/install_test_deps.sh
	$(PY) manage.py collectstatic --noinput --verbosity 0
	$(PY) -m pytest $(PYTEST_ARGS)

# `make bench` runs every benchmark in roughly 35 minutes (estimated from its parts): a shorter soak and counter load
# and server comparison than `python -m bench soak` (300 s), `counters` (10 s a load) and
# `servers` (6 s a wrk) run, and of stream_memory's held rows the deployed one (20,000
# streams held 10 minutes by one host behind a load balancer: WebSockets on the WebSocket
# server); BENCH_STREAM_MEMORY_SETUPS=shipped,proposed adds make run's alone (granian).
# bench/RESULTS.md, results.png and results.json are written from the run.
BENCH_SOAK_SECONDS ?= 40
BENCH_COUNTERS_SECONDS ?= 3
BENCH_SERVERS_SECONDS ?= 3
BENCH_STREAM_MEMORY_SETUPS ?= proposed
bench: migrate
	bash scripts/install_bench_deps.sh
	BENCH_SOAK_SECONDS=$(BENCH_SOAK_SECONDS) BENCH_COUNTERS_SECONDS=$(BENCH_COUNTERS_SECONDS) \
	  BENCH_SERVERS_SECONDS=$(BENCH_SERVERS_SECONDS) BENCH_STREAM_MEMORY_SETUPS=$(BENCH_STREAM_MEMORY_SETUPS) $(PY) -m bench

# Re-resolve pyproject.toml's ranges into requirements.lock (uv, run from the venv).
lock: venv
	$(PY) -m pip install --quiet uv
	$(VENV)/bin/uv pip compile pyproject.toml --extra test --extra bench --universal --python-version 3.12 -o requirements.lock

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .mypy_cache .ruff_cache
