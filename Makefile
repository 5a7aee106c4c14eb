# Two commands on a fresh machine: `make demo` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast install bench clean browser wrk

NODE_TOOLS := node_modules/.installed

$(STAMP): setup.py constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# asl-validator (npm) checks the exported state machine in the tests; elkjs lays out the console's graph.
$(NODE_TOOLS): package.json package-lock.json
	npm ci --no-audit --no-fund --silent
	touch $(NODE_TOOLS)

# elkjs (pinned in package-lock.json) lays out the console's graph in the page: its browser
# bundle is copied into the console's static files, which serve it; git ignores the copy.
ELK := workflow/console/static/elk.bundled.js
$(ELK): $(NODE_TOOLS)
	cp node_modules/elkjs/lib/elk.bundled.js $@.tmp && mv $@.tmp $@

install: $(STAMP) $(NODE_TOOLS) $(ELK)

demo: $(STAMP) $(ELK)
	$(BIN)/ddcicd run

test: $(STAMP) $(NODE_TOOLS) $(ELK) browser
	$(BIN)/python -m pytest

# Skips the slow end-to-end tests: for the edit-test loop, not for CI.
test-fast: $(STAMP) $(NODE_TOOLS) $(ELK)
	$(BIN)/python -m pytest -m "not slow"

# Debian's Chromium for the console's browser tests (Playwright drives it; no `playwright install`).
# $DDCICD_CHROMIUM names another build (CodeBuild's buildspec sets it) and skips the install.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	[ -n "$$DDCICD_CHROMIUM" ] || command -v chromium >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y chromium)

# Debian's wrk drives benchmarks/bench_serve.py's load (a C client costs the shared cores little;
# without it the benchmark falls back to a Python client). Only the benchmarks need it.
wrk:
	command -v wrk >/dev/null || ($(SUDO) apt-get update && $(SUDO) apt-get install -y wrk)

bench: $(STAMP) wrk
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) node_modules build .pytest_cache .hypothesis $(ELK)
