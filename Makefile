# `make demo` sets everything up and runs a demo migration; `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.PHONY: setup demo test lint typecheck libvirt bench clean

setup: $(VENV)/.installed

# The xend simulator is a distribution of its own (not in domig's wheel); tests and demos need it.
$(VENV)/.installed: pyproject.toml xendsim/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -e ./xendsim
	touch $@

demo: setup
	$(VENV)/bin/domig demo

libvirt: setup
	bash scripts/install-libvirt.sh $(VENV)

lint: setup
	$(VENV)/bin/ruff check .

typecheck: setup
	$(VENV)/bin/mypy

# pytest exits 5 when it collects nothing; make fails on it, so an empty run never passes.
test: setup libvirt lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

bench: setup
	$(PY) -m bench

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
