# The two commands of the README:  make run  (the whole system with demo data)
#                                  make test (the test suite against real services)
SHELL := /bin/bash
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
PORT ?= 8000
FLOWER_PORT ?= 5555
FLOWER_BASIC_AUTH ?= admin:admin
export FLOWER_PORT FLOWER_BASIC_AUTH
export PYTHONUNBUFFERED := 1

.PHONY: run test setup demo-data lint bench verify help

help:
	@echo "make run    set up everything, load demo data, start every Procfile process (web, workers, relay, archiver, beat, Flower)"
	@echo "make test   set up everything (no demo data, plus headless Chromium and promtool), ruff, the benchmarks' smoke run, the test suite"
	@echo "make setup  install requirements, start PostgreSQL/RabbitMQ, migrate, collectstatic, setup_broker"
	@echo "make lint   ruff"
	@echo "make bench  benchmarks/publish.py (publish latency; the others: see docs/benchmarks.md)"
	@echo "make verify the verification plan of docs/decisions.md (benchmarks/verify.py, about 10 minutes; --smoke in make test)"

setup:
	@scripts/bootstrap.sh

demo-data: setup
	@python manage.py load_demo_data
	@python manage.py train_model --if-missing

run: demo-data
	@echo
	@echo "  web        http://localhost:$(PORT)/   (admin: http://localhost:$(PORT)/admin/, user admin, password admin)"
	@echo "  API        http://localhost:$(PORT)/api/docs/   (helpers helper1/helper1-pass, helper2/helper2-pass)"
	@echo "  health     http://localhost:$(PORT)/healthz   http://localhost:$(PORT)/readyz"
	@echo "  metrics    http://localhost:$(PORT)/metrics   (Prometheus; every process's counters)"
	@echo "  Flower     http://localhost:$(FLOWER_PORT)/   (basic auth $(FLOWER_BASIC_AUTH))"
	@echo "  processes  $$(grep -v '^#' Procfile | cut -d: -f1 | tr '\n' ' ')  (Ctrl-C stops them all)"
	@echo
	@# metric files of the previous run (prometheus-client multiprocess mode): counters start at 0
	@mkdir -p "$${PROMETHEUS_MULTIPROC_DIR:-var/metrics}" && find "$${PROMETHEUS_MULTIPROC_DIR:-var/metrics}" -maxdepth 1 -name '*.db' -delete
	@# logs for people at a terminal (the image and Kubernetes log JSON lines); LOG_FORMAT=json make run for JSON
	@LOG_FORMAT=$${LOG_FORMAT:-plain} honcho start -f Procfile -p $(PORT) -c worker-ai=3

test:
	@scripts/bootstrap.sh --with-browser   # `make setup` plus headless Chromium (tests/browser/) and Prometheus (tests/deploy/)
	@ruff check --quiet .
	@# every benchmark scenario end to end, small (losses judged, timings not); before pytest, whose summary ends the output
	@python benchmarks/verify.py --smoke
	@python -m pytest

lint:
	@ruff check .

bench: setup
	@python benchmarks/publish.py

verify: setup
	@python benchmarks/verify.py
