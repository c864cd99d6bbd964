# Set-up lives here so that a fresh clone needs nothing but Python 3.11+ and make.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The browser tests drive Debian's Chromium; the Node examples need their npm packages.
CHROMIUM := /usr/bin/chromium
NODE_EXAMPLES := examples/node

.PHONY: serve test lint bench bench-quick

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

$(CHROMIUM):
	apt-get update -q && apt-get install -y -q chromium

$(NODE_EXAMPLES)/node_modules/.installed: $(NODE_EXAMPLES)/package-lock.json
	command -v npm >/dev/null || (apt-get update -q && apt-get install -y -q nodejs npm)
	npm ci --prefix $(NODE_EXAMPLES) --no-audit --no-fund
	touch $@

serve: $(VENV)/.installed
	$(BIN)/savegate serve $(ARGS)

test: $(VENV)/.installed-test $(CHROMIUM) $(NODE_EXAMPLES)/node_modules/.installed
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest $(ARGS)

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

bench: $(VENV)/.installed
	$(BIN)/python -m bench.run $(ARGS)

bench-quick: $(VENV)/.installed
	$(BIN)/python -m bench.run --quick $(ARGS)
