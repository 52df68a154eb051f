# A newcomer's entry points: make run, make test. Each one sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
ARGS ?=

.PHONY: install run test lint format bench browser screenshots clean

install: $(DEV)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(RUNTIME): requirements.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(DEV): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@ $(RUNTIME)

run: $(RUNTIME)
	$(PY) server.py $(ARGS)

lint: $(DEV)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy

format: $(DEV)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

# The browser tests drive Debian's chromium; as root (CI) it is installed here, otherwise they skip.
browser:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "chromium is missing: sudo apt-get install chromium, or the browser tests skip"; fi; }

test: lint browser
	$(PY) -m pytest $(ARGS)

bench: $(DEV)
	$(PY) -m bench $(ARGS)

# Remakes docs/screenshot-desktop.png and docs/screenshot-phone.png from a live run in chromium.
screenshots: $(DEV) browser
	$(PY) -m tests.screenshots

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
