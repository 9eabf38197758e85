# Mesh: developer entry points (GNU make).
#
#   make venv   .venv with Python >= 3.12 and `pip install -e '.[dev]'`
#   make demo   the embedded default (SQLite in ./var, eager Celery) with bundled data, on
#               http://127.0.0.1:8000/   (extra arguments: make demo DEMO_ARGS='--no-serve')
#   make test   the test suite on real PostgreSQL and Redis (tests/run_suite.py finds or starts
#               them; extra pytest arguments: make test PYTEST_ARGS='-k feeds -x'), then the
#               SQLite smoke suite (tests/sqlite/) on the embedded default
#   make lint   ruff
#   make screenshots  docs/screenshots/ again (mesh_screenshots: the demo on a throw-away SQLite
#               database, headless Chromium, 1280 and 390 px wide)
#   make clean  remove .venv, var/ (the demo database), build output
#
# Python: $PYTHON if set, else pyenv (honouring .python-version), python3.13, python3.12,
# ~/.pyenv/versions/3.12+, python3; whichever is first and really is 3.12 or newer.

SHELL := /bin/bash

VENV        := .venv
VENV_PY     := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
DEMO_ARGS   ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help venv demo test lint screenshots clean

help:
	@echo "make venv | demo | test | lint | screenshots | clean   (see the top of the Makefile)"

# Always runs (cheap): checks .venv's Python, (re)creates .venv if needed, and re-installs
# only when pyproject.toml is newer than the stamp.
venv:
	@set -eu; \
	is_ok() { [ -n "$$1" ] && "$$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; }; \
	py=""; \
	try() { if [ -z "$$py" ] && is_ok "$${1:-}"; then py="$$1"; fi; }; \
	if ! is_ok "$(VENV_PY)"; then \
	  if [ -n "$${PYTHON:-}" ]; then \
	    if is_ok "$$PYTHON"; then py="$$PYTHON"; else \
	      echo "PYTHON=$$PYTHON is not Python 3.12 or newer (or does not run). Mesh needs Python 3.12 or newer (Django 6)." >&2; \
	      exit 1; \
	    fi; \
	  else \
	    pyenv_root="$${PYENV_ROOT:-$$HOME/.pyenv}"; \
	    pyenv_bin="$$(command -v pyenv 2>/dev/null || true)"; \
	    if [ -z "$$pyenv_bin" ] && [ -x "$$pyenv_root/bin/pyenv" ]; then pyenv_bin="$$pyenv_root/bin/pyenv"; fi; \
	    if [ -n "$$pyenv_bin" ]; then try "$$("$$pyenv_bin" which python 2>/dev/null || true)"; fi; \
	    try "$$(command -v python3.13 2>/dev/null || true)"; \
	    try "$$(command -v python3.12 2>/dev/null || true)"; \
	    for c in "$$pyenv_root"/versions/3.1[2-9]*/bin/python; do try "$$c"; done; \
	    try "$$(command -v python3 2>/dev/null || true)"; \
	  fi; \
	  if [ -z "$$py" ]; then \
	    echo 'Mesh needs Python 3.12 or newer (Django 6). Install it (e.g. `apt-get install python3.12` or `pyenv install 3.12`) or set PYTHON=/path/to/python3.12.' >&2; \
	    exit 1; \
	  fi; \
	  if [ -e "$(VENV)" ]; then echo "$(VENV) does not run Python >= 3.12: recreating it" >&2; rm -rf "$(VENV)"; fi; \
	  echo "Creating $(VENV) with $$py ($$("$$py" -c 'import sys; print(sys.version.split()[0])'))"; \
	  "$$py" -m venv "$(VENV)"; \
	fi; \
	if [ ! -f "$(STAMP)" ] || [ pyproject.toml -nt "$(STAMP)" ]; then \
	  "$(VENV_PY)" -m pip install --disable-pip-version-check -e '.[dev]'; \
	  touch "$(STAMP)"; \
	fi

# The embedded default, whatever the calling shell exports: SQLite in ./var, eager Celery.
demo: venv
	env -u DATABASE_URL -u DATABASE_URL_FILE -u REDIS_URL -u REDIS_URL_FILE \
	  "$(VENV_PY)" manage.py mesh_demo $(DEMO_ARGS)

test: venv
	"$(VENV_PY)" tests/run_suite.py $(PYTEST_ARGS)

lint: venv
	"$(VENV)/bin/ruff" check .

screenshots: venv
	"$(VENV_PY)" manage.py mesh_screenshots

clean:
	rm -rf "$(VENV)" var build *.egg-info
