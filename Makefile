# A newcomer's entry points: make run, make test. Each one sets up what it needs first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RUNTIME := $(VENV)/.runtime-installed
DEV := $(VENV)/.dev-installed
ARGS ?=

# The model server the real_model tests use (and `make model-server` starts): llama-cpp-python with
# SmolLM2-135M-Instruct, in a virtual environment of its own (see modelserver/serve.py).
MODEL_VENV ?= .venv-model
MODEL_PY := $(MODEL_VENV)/bin/python
MODEL := $(MODEL_VENV)/.model-installed
PORT ?= 8081
MODEL_ARGS ?=

.PHONY: install run test lint format bench browser screenshots clean model-server test-model systemd redis

install: $(DEV)

$(PY):
	$(PYTHON) -m venv $(VENV)

# Each also installs this project itself, editable and without dependencies, for the `orchestrate`
# command (pyproject.toml's [project.scripts]): $(VENV)/bin/orchestrate runs this checkout's client/.
$(RUNTIME): requirements.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $@

$(DEV): requirements.txt requirements-dev.txt pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -e .
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

# tests/test_systemd.py checks conf/orchestrator.service with systemd-analyze, from Debian's systemd
# package: as root it is installed here (without recommends, so no daemon comes with it; installing
# it starts nothing where systemd is not PID 1), otherwise that test skips.
systemd:
	@command -v systemd-analyze >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null; \
	  else echo "systemd-analyze is missing: sudo apt-get install systemd, or the unit's check skips"; fi; }

# The Redis store's tests and benchmarks start Debian's redis-server on a free port of their own
# (tools/redis_server.py): as root it is installed here, otherwise they skip. Its package starts a
# server only under systemd or init; should it have started one anyway, that one (and only that one,
# by its pid) is stopped again.
redis:
	@command -v redis-server >/dev/null || [ -x /usr/bin/redis-server ] || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    before=" $$(pgrep -x redis-server | tr '\n' ' ') "; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null; \
	    for pid in $$(pgrep -x redis-server); do \
	      case "$$before" in *" $$pid "*) ;; *) kill "$$pid" && echo "stopped the redis-server (pid $$pid) its package started";; esac; \
	    done; \
	  else echo "redis-server is missing: sudo apt-get install redis-server, or the Redis store's tests and benchmarks skip"; fi; }

# Two processes (pytest-xdist), one test file each at a time, so a file's servers and browser are
# started once: the suite spends much of its time waiting on real servers, so two fit two cores.
TEST_WORKERS ?= 2

test: lint browser systemd redis
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

$(MODEL_PY):
	$(PYTHON) -m venv $(MODEL_VENV)

# llama-cpp-python is built from source: 5 to 11 minutes on two cores, once; pip keeps the wheel.
# GGML_NATIVE=OFF builds for any x86_64 CPU, so that cached wheel stays usable on another machine.
$(MODEL): requirements-model.txt | $(MODEL_PY)
	CMAKE_ARGS="-DGGML_NATIVE=OFF" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(MODEL_PY) -m pip install --quiet --disable-pip-version-check -r requirements-model.txt
	touch $@

# A real model server in the foreground, for trying the model provider by hand (README).
model-server: $(MODEL)
	$(MODEL_PY) modelserver/serve.py --port $(PORT) $(MODEL_ARGS)

# The service against that model server, as child processes over real HTTP (tests/real_model).
test-model: $(DEV) $(MODEL)
	MODEL_PYTHON=$(MODEL_PY) $(PY) -m pytest -m real_model tests/real_model $(ARGS)

bench: $(DEV) redis
	$(PY) -m bench $(ARGS)

# Remakes docs/screenshot-desktop.png and docs/screenshot-phone.png from a live run in chromium.
screenshots: $(DEV) browser
	$(PY) -m tests.screenshots

clean:
	rm -rf $(VENV) $(MODEL_VENV) .pytest_cache .ruff_cache .mypy_cache
