# `make demo` and `make test` do their own set-up: a virtualenv in .venv with the
# core installed (for `make test`, also every backend, the test tools and the
# example backend), and for `make test` the local PostgreSQL, Redis and MariaDB
# started if stopped (tests/start-services.sh).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Each backend, and distributions nested in one (backends/rockset/emulator), the nested
# ones first: pip finds chathistory-rockset[test]'s emulator only if it was named before.
BACKENDS := $(wildcard backends/*/*/pyproject.toml backends/*/pyproject.toml)
DIST ?= dist

.PHONY: demo test test-lowest check services clean dist

$(VENV)/.core: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e .
	touch $@

$(VENV)/.all: $(VENV)/.core pyproject.toml $(BACKENDS) tests/example_backend/pyproject.toml
	$(BIN)/pip install --quiet --disable-pip-version-check -e ".[test,docs,dev,bench]" \
		$(foreach b,$(dir $(BACKENDS)),-e "$(b)[test]") -e ./tests/example_backend
	touch $@

demo: $(VENV)/.core
	$(BIN)/chathistory demo

services:
	bash tests/start-services.sh

test: $(VENV)/.all services
	$(BIN)/pytest

# The oldest versions every pyproject allows (uv's lowest-direct resolution), in a
# virtualenv of their own, and the suite on them, so that the lower bounds stay true.
LOWEST := .venv-lowest
test-lowest: $(VENV)/.all services
	rm -rf $(LOWEST)
	$(BIN)/uv venv --quiet --seed --python $(PYTHON) $(LOWEST)
	VIRTUAL_ENV=$(LOWEST) $(BIN)/uv pip install --quiet --resolution lowest-direct -e ".[test]" \
		$(foreach b,$(dir $(BACKENDS)),-e "$(b)[test]") -e ./tests/example_backend
	$(LOWEST)/bin/pytest --ignore=tests/test_install.py

check: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/mypy --strict src $(foreach b,$(dir $(BACKENDS)),$(b)src)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet --site-dir $(VENV)/site

# Wheels of the core and of every backend in $(DIST)/, to install from a checkout:
# pip install dist/chathistory-*.whl dist/chathistory_postgres-*.whl
dist:
	$(PYTHON) -m pip wheel --quiet --disable-pip-version-check --no-deps -w $(DIST) \
		. $(dir $(BACKENDS))

clean:
	rm -rf $(VENV) $(LOWEST)
