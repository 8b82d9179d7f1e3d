# PowerDesk: `make run` runs the product on embedded defaults, `make test` runs every test.
# Both create the two Python environments on first use and train the model only when its
# inputs changed.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# Python 3.10: on PATH as python3.10, or under pyenv (a pyenv shim that cannot run 3.10 is skipped).
PYTHON310 ?= $(shell for p in python3.10 $${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python3.10; do \
  $$p -c 'import sys; assert sys.version_info[:2] == (3, 10)' >/dev/null 2>&1 && { command -v $$p; break; }; done)
RASA_VENV := .venv/rasa
APP_VENV  := .venv/app
RASA_PY   := $(RASA_VENV)/bin/python
APP_PY    := $(APP_VENV)/bin/python
export PYTHONPATH := $(CURDIR)

# $(call apt_install,packages): install Debian packages, as root or through sudo.
apt_install = { if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(1) >/dev/null; }

.PHONY: help env model run lint test test-unit fuzz validate nlu-eval bench bench-broadcast lock browser redis-cluster clean

help:
	@echo "make run        run the product on embedded defaults (web chat on http://127.0.0.1:8000/)"
	@echo "make test       run every test (lint, unit, integration, Rasa stories, NLU, browser)"
	@echo "make lint       ruff check (ruff.toml)"
	@echo "make test-unit  run the tests that need no Rasa server"
	@echo "make fuzz       fuzz every inbound endpoint with 10,000 inputs each (tests/fuzz)"
	@echo "make model      train the Rasa model if its inputs changed"
	@echo "make validate   rasa data validate"
	@echo "make nlu-eval   evaluate NLU on the held-back split"
	@echo "make bench      run the benchmarks"
	@echo "make bench-broadcast  the broadcast engine's benchmark alone (100,000 recipients)"
	@echo "make lock       re-lock both environments from requirements/*.in"
	@echo "make redis-cluster  install Debian's redis-server (the Redis Cluster tests need it)"

$(RASA_VENV)/.installed: requirements/rasa.lock
	@test -n "$(PYTHON310)" || { echo "Python 3.10 is required (python3.10 on PATH or under pyenv)"; exit 1; }
	@test -x $(RASA_PY) || $(PYTHON310) -m venv $(RASA_VENV)
	$(RASA_PY) -m pip install --quiet --disable-pip-version-check -r requirements/rasa.lock
	$(RASA_PY) -m pip check
	@touch $@

$(APP_VENV)/.installed: requirements/app.lock channels/static/package-lock.json
	@test -n "$(PYTHON310)" || { echo "Python 3.10 is required (python3.10 on PATH or under pyenv)"; exit 1; }
	@test -x $(APP_PY) || $(PYTHON310) -m venv $(APP_VENV)
	$(APP_PY) -m pip install --quiet --disable-pip-version-check -r requirements/app.lock
	@command -v npm >/dev/null || $(call apt_install,nodejs npm)
	npm ci --prefix channels/static --no-audit --no-fund --ignore-scripts --loglevel=error
	@touch $@

env: $(RASA_VENV)/.installed $(APP_VENV)/.installed

model: env
	$(APP_PY) -m scripts.train

run: env model
	$(APP_PY) -m scripts.run

# Debian's chromium for the browser tests (Playwright drives it; it downloads no browser).
browser:
	@test -x /usr/bin/chromium || $(call apt_install,chromium)

# Debian's redis-server for the Redis Cluster tests (they start their own nodes on loopback).
redis-cluster:
	@test -x /usr/bin/redis-server || $(call apt_install,redis-server)

lint: env
	$(APP_VENV)/bin/ruff check .

test: lint env model browser redis-cluster
	$(APP_PY) -m pytest -q

test-unit: env
	$(APP_PY) -m pytest -q -m "not e2e"

fuzz: env
	FUZZ_EXAMPLES=10000 $(APP_PY) -m pytest -q tests/fuzz

validate: env
	$(RASA_VENV)/bin/rasa data validate --domain bot/domain --data nlu_data/train nlu_data/synonyms.yml nlu_data/regex.yml nlu_data/lookups bot/data --config config.yml --fail-on-warnings

nlu-eval: env model
	$(APP_PY) -m scripts.nlu_eval

bench: env model
	$(APP_PY) -m bench.webchat_bench
	$(APP_PY) -m bench.broadcast_bench
	$(APP_PY) -m bench.rasa_scaling_bench

# The broadcast engine alone: 10,000 and 100,000 recipients through the loopback fakes.
bench-broadcast: env
	$(APP_PY) -m bench.broadcast_bench

lock:
	$(RASA_PY) -m pip install --quiet -r requirements/rasa.in && $(RASA_PY) -m pip check && \
	  $(RASA_PY) -m pip freeze --all | grep -vE '^(pip|setuptools|wheel)==' > requirements/rasa.lock
	$(APP_PY) -m pip install --quiet -r requirements/app.in && \
	  $(APP_PY) -m pip freeze | grep -vE '^(pip|setuptools|wheel)==' > requirements/app.lock

clean:
	rm -rf .run results
