# fleetgate: `make demo` sets up and runs the demo, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOME_DIR ?= .fleetgate

.PHONY: help setup setup-dev system-deps test-deps demo test lint bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F ':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# A CJK font renders the Chinese plates of the sample fleet; install it from the system packages
# when none is present and we are allowed to (root with apt). scripts/ensure-cjk-font says what to do otherwise.
system-deps: ## install the system packages the sample fleet needs (a CJK font)
	@sh scripts/ensure-cjk-font.sh

# The `postgres` tests start a real PostgreSQL server of Debian's package (tests/servers.py).
test-deps: ## install the PostgreSQL server the tests start
	@sh scripts/ensure-postgres.sh

setup: $(BIN)/python system-deps ## create .venv, install fleetgate with training and federation, fetch the detector models
	$(BIN)/pip install --quiet -e '.[train,federate]'
	$(BIN)/fleetgate models pull

setup-dev: setup test-deps ## also install the dev dependencies, the servers the tests start and the scale-out extras
	$(BIN)/pip install --quiet -e '.[dev,train,federate,postgres,s3,ray]'

demo: setup ## set up and run the demo on embedded defaults (SQLite + local folder)
	$(BIN)/fleetgate --home $(HOME_DIR) demo

test: setup-dev ## set up and run the tests
	$(BIN)/python -m pytest -q

lint: setup-dev ## ruff and the import-layer contract
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: setup-dev ## run the benchmarks and write docs/benchmarks.md
	$(BIN)/pip install --quiet -e '.[bench,train,federate,postgres,s3,ray]'
	$(BIN)/python bench/run.py --out docs/benchmarks.md

clean: ## remove the virtualenv and the demo workspace
	rm -rf $(VENV) $(HOME_DIR)
