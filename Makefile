# fleetgate: `make demo` sets up and runs the demo, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOME_DIR ?= .fleetgate

.PHONY: help setup setup-dev system-deps demo test lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A CJK font renders the Chinese plates of the sample fleet; install it from the system packages
# when none is present and we are allowed to (root with apt). scripts/ensure-cjk-font says what to do otherwise.
system-deps: ## install the system packages the sample fleet and the PDF filings need (a CJK font, Pango)
	@sh scripts/ensure-cjk-font.sh
	@sh scripts/ensure-pango.sh

setup: $(BIN)/python system-deps ## create .venv, install fleetgate with training, federation and PDF, fetch the detector models
	$(BIN)/pip install --quiet -e '.[train,federate,pdf]'
	$(BIN)/fleetgate models pull

setup-dev: setup ## also install the dev dependencies
	$(BIN)/pip install --quiet -e '.[dev,train,federate,pdf]'

demo: setup ## set up and run the demo on embedded defaults (SQLite + local folder)
	$(BIN)/fleetgate --home $(HOME_DIR) demo

test: setup-dev ## set up and run the tests
	$(BIN)/python -m pytest -q

lint: setup-dev ## ruff and the import-layer contract
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: setup-dev ## run the benchmarks and write docs/benchmarks.md
	$(BIN)/pip install --quiet -e '.[bench,train,federate]'
	$(BIN)/python bench/run.py --out docs/benchmarks.md

clean: ## remove the virtualenv and the demo workspace
	rm -rf $(VENV) $(HOME_DIR)
