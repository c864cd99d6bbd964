# Set-up lives here so that a fresh clone needs nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The browser tests drive Debian's Chromium; the cluster tests put Debian's nginx in front
# of the replicas; the Node examples and the Codex CLI test need their npm packages (the
# Codex CLI ships its native binary in a platform package); docker-compose (v1, which
# needs no engine for `config`) validates deploy/docker-compose.yaml; the proxy tests go
# through Debian's tinyproxy (the binary alone: no system service).
CHROMIUM := /usr/bin/chromium
NGINX := /usr/sbin/nginx
COMPOSE := /usr/bin/docker-compose
TINYPROXY := /usr/bin/tinyproxy
# Tests start Redis servers of their own (readiness with Redis gone, the cluster's restarts).
REDIS_SERVER := /usr/bin/redis-server
# tests/test_metrics.py has a real Prometheus server scrape the gateway.
PROMETHEUS := /usr/bin/prometheus
NODE_PACKAGES := examples/node tests/codex
# make image-test builds deploy/Dockerfile with Debian's podman (run by runc) on a Debian
# base that debootstrap makes: Docker Hub need not be reachable.
PODMAN := /usr/bin/podman
RUNC := /usr/sbin/runc
DEBOOTSTRAP := /usr/sbin/debootstrap

# Every install is pinned to what CI tested (constraints.txt; `make constraints` renews it).
PIP_INSTALL := $(BIN)/pip install --quiet -c constraints.txt

# llama-cpp-python builds llama.cpp from source, by default for the build machine's own
# CPU (GGML_NATIVE): on a VM whose CPU reports AVX-512 and AMX, that build dies of a
# protection fault at the first prompt of more than a token (seen here). The portable
# x86-64-v3 build instead (AVX2, FMA, F16C; the Dockerfile's flags). Its wheel is kept in
# a cache of our own, named by the pin and the flags: pip's wheel cache ignores CMAKE_ARGS
# and would hand back a build made with other flags.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF
LLAMA_PIN := $(shell grep -iE '^llama[-_]cpp[-_]python==' constraints.txt)
LLAMA_WHEELS := $(HOME)/.cache/savegate/llama-$(shell echo '$(LLAMA_PIN) $(LLAMA_CMAKE_ARGS)' | sha256sum | cut -c1-12)

.PHONY: serve test image-test lint bench bench-quick constraints

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(LLAMA_WHEELS)/.built: | $(BIN)/python
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
		--wheel-dir $(LLAMA_WHEELS) "$(LLAMA_PIN)"
	touch $@

$(VENV)/.installed: pyproject.toml constraints.txt $(LLAMA_WHEELS)/.built | $(BIN)/python
	$(PIP_INSTALL) --find-links $(LLAMA_WHEELS) -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml constraints.txt $(VENV)/.installed
	$(PIP_INSTALL) --find-links $(LLAMA_WHEELS) -e '.[test]'
	touch $@

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

$(NGINX):
	apt-get update -q && apt-get install -y -q nginx-light

$(COMPOSE):
	apt-get update -q && apt-get install -y -q docker-compose

$(TINYPROXY):
	apt-get update -q && apt-get install -y -q tinyproxy-bin

$(REDIS_SERVER):
	apt-get update -q && apt-get install -y -q redis-server

$(PROMETHEUS):
	apt-get update -q && apt-get install -y -q prometheus

$(PODMAN):
	apt-get update -q && apt-get install -y -q podman

$(RUNC):
	apt-get update -q && apt-get install -y -q runc

$(DEBOOTSTRAP):
	apt-get update -q && apt-get install -y -q debootstrap

%/node_modules/.installed: %/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	npm ci --prefix $* --no-audit --no-fund
	touch $@

serve: $(VENV)/.installed
	$(BIN)/savegate serve $(ARGS)

test: $(VENV)/.installed-test $(CHROMIUM) $(NGINX) $(COMPOSE) $(TINYPROXY) $(REDIS_SERVER) \
		$(PROMETHEUS) $(NODE_PACKAGES:%=%/node_modules/.installed)
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest $(ARGS)

# tests/test_image.py, opt-in: a cold build compiles llama.cpp (about 20 minutes on 2 busy
# cores), a warm one (podman keeps its layers) takes seconds.
image-test: $(VENV)/.installed-test $(PODMAN) $(RUNC) $(DEBOOTSTRAP)
	SAVEGATE_IMAGE_TEST=1 $(BIN)/python -m pytest tests/test_image.py $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

# Renew the pins from a fresh install of the newest allowed releases.
constraints:
	rm -rf $(VENV)-constraints
	$(PYTHON) -m venv $(VENV)-constraints
	$(VENV)-constraints/bin/pip install --quiet --upgrade pip
	$(VENV)-constraints/bin/pip install --quiet -e '.[test]'
	(echo "# What CI installs, exactly: make serve / make test install with -c constraints.txt."; \
	 echo "# Regenerate with 'make constraints' after changing pyproject.toml's dependencies."; \
	 $(VENV)-constraints/bin/pip freeze --exclude-editable | grep -v '^-e') > constraints.txt
	rm -rf $(VENV)-constraints

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench.run --quick $(ARGS)
