# fleetgate: `make demo` sets up and runs the demo, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOME_DIR ?= .fleetgate

.PHONY: help setup setup-dev system-deps test-deps demo serve test test-slow lint bench clean

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

setup-dev: setup test-deps ## also install the dev dependencies, the servers the tests start and the scale-out extras
	$(BIN)/pip install --quiet -e '.[dev,train,federate,pdf,postgres,s3,ray]'

# The dashboard's browser tests drive Debian's chromium-headless-shell through Playwright, the OIDC
# login test runs npm's oauth2-mock-server on loopback, and the `postgres` tests start a real PostgreSQL
# server of Debian's package (tests/servers.py); all are installed here, not by the tests.
test-deps: ## install what the browser, OIDC and PostgreSQL tests need (headless chromium, a mock identity provider, PostgreSQL)
	@sh scripts/ensure-browser.sh
	@sh scripts/ensure-mock-idp.sh $(VENV)/idp
	@sh scripts/ensure-postgres.sh

demo: setup ## set up and run the demo on embedded defaults (SQLite + local folder)
	$(BIN)/fleetgate --home $(HOME_DIR) demo

serve: setup ## serve the API and the dashboard of the demo home (after `make demo`) on 127.0.0.1:8787
	$(BIN)/fleetgate --home $(HOME_DIR) serve

# `make test` leaves out the end-to-end runs marked `slow` (the whole demo, the federated training proof
# run) so it stays well under 20 minutes on a 2-core machine; CI (.ci/run) runs both.
test: setup-dev ## set up and run the tests (all but the slow end-to-end ones)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: setup-dev ## the slow end-to-end tests: the whole demo, the federated training proof run
	$(BIN)/python -m pytest -q -m slow

lint: setup-dev ## ruff and the import-layer contract
	$(BIN)/ruff check src tests bench
	$(BIN)/lint-imports

bench: setup-dev ## run the benchmarks and write docs/benchmarks.md
	$(BIN)/pip install --quiet -e '.[bench,train,federate,postgres,s3,ray]'
	@command -v wrk >/dev/null 2>&1 || { [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1 && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; } || \
		echo "warning: no wrk (apt-get install wrk); the HTTP load bench is skipped" >&2
	$(BIN)/python bench/run.py --out docs/benchmarks.md

clean: ## remove the virtualenv and the demo workspace
	rm -rf $(VENV) $(HOME_DIR)
