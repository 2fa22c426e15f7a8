# Paymesh developer and CI entry points. CI calls these targets unchanged.
#
#   make run      install, then run every service in one process on http://127.0.0.1:8000
#   make test     install, then pytest on SQLite and (when reachable) on PostgreSQL
#   make lint     ruff check, ruff format --check, mypy --strict
#   make format   ruff format + ruff check --fix
#   make bench    bench/run.py, when it exists
#   make fuzz     Schemathesis over every operation, 200 examples each (make test runs 25)
#   make lock     re-pin requirements.lock from pyproject.toml (lock-check: is it current?)
#   make clean    caches and build leftovers (distclean: also .venv and ./var)
#
# Only python3 (>= 3.11) and make are needed: the first run creates .venv, puts uv in it
# and installs the pinned versions from requirements.lock; later runs are instant until
# pyproject.toml or requirements.lock change.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
UV_VERSION ?= 0.13.9
PY := $(VENV)/bin/python
UV := $(VENV)/bin/uv
STAMP := $(VENV)/.installed
LOCK := requirements.lock
LINT_PATHS := $(wildcard src tests bench scripts deploy)

PAYMESH_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
export PAYMESH_TEST_POSTGRES_URL
# uv must use the venv's interpreter, never fetch one of its own.
export UV_PYTHON_DOWNLOADS := never

PYTEST_ARGS ?=
RUN_ARGS ?=
BENCH_ARGS ?=
LOCK_ARGS ?=

.PHONY: bench-tools help install venv rp-deps obs-deps run test test-sqlite test-postgresql lint format bench lock lock-check \
	clean distclean fuzz

help:
	@sed -n 's/^#   make /make /p' $(firstword $(MAKEFILE_LIST))

# --- environment -------------------------------------------------------------------------

$(UV):
	@command -v $(PYTHON) >/dev/null || { \
	  echo "$(PYTHON) not found: install Python >= 3.11 or run make PYTHON=/path/to/python3"; \
	  exit 1; }
	@$(PYTHON) scripts/bootstrap_venv.py $(VENV) $(UV_VERSION)

venv: $(UV)

$(STAMP): pyproject.toml $(LOCK) | $(UV)
	@echo "installing pinned dependencies from $(LOCK) into $(VENV)"
	@$(UV) pip install --quiet --python $(PY) -r $(LOCK) -e .
	@touch $@

install: $(STAMP)

COMPILE = $(UV) pip compile --quiet pyproject.toml --extra dev --universal --python-version 3.11

# Re-pin: keeps current pins where pyproject.toml allows them (make lock LOCK_ARGS=--upgrade
# moves everything to the newest allowed versions).
lock: | $(UV)
	$(COMPILE) $(LOCK_ARGS) -o $(LOCK)

# Fails when pyproject.toml asks for something requirements.lock does not pin yet.
lock-check: | $(UV)
	@tmp=$$(mktemp); trap 'rm -f "$$tmp"' EXIT; cp $(LOCK) "$$tmp"; \
	$(COMPILE) --no-header -o "$$tmp"; \
	if diff -u <(grep -v '^#' $(LOCK)) <(grep -v '^#' "$$tmp"); then \
	  echo "$(LOCK) is up to date with pyproject.toml"; \
	else \
	  echo "FAIL: $(LOCK) is stale; run 'make lock' and commit it"; exit 1; \
	fi

# --- run -----------------------------------------------------------------------------------

run: install
	$(VENV)/bin/paymesh up --demo $(RUN_ARGS)

# --- tests ---------------------------------------------------------------------------------

# One pytest pass on backend $(1) (scripts/pytest_pass.sh: pytest-xdist workers, then the
# fuzz tests in one process), in a subshell so a failing pass does not stop the next.
# Output is also kept in $(TEST_LOGS)/$(1).log; the verdict lines are repeated at the end.
TEST_LOGS := $(VENV)/test-logs
define pytest_pass
( PY=$(PY) TEST_LOGS=$(TEST_LOGS) PYTEST_ARGS="$(PYTEST_ARGS)" bash scripts/pytest_pass.sh $(1) )
endef

# The independent OpenID Connect relying party the identity tests drive (npm, pinned by
# its package-lock.json); installed when node is present (CI has node 20).
RP_DIR := tests/identity/rp
$(RP_DIR)/node_modules/.installed: $(RP_DIR)/package.json $(RP_DIR)/package-lock.json
	npm ci --prefix $(RP_DIR) --no-audit --no-fund --loglevel=error
	@touch $@

# tests/kernel/issuer: oidc-provider, the external OpenID issuer the gateway's multi-issuer
# verifier is tested against; same rule as the relying party (npm ci when its lock changed).
rp-deps:
	@if command -v node >/dev/null && command -v npm >/dev/null; then \
	  $(MAKE) --no-print-directory $(RP_DIR)/node_modules/.installed; \
	  dir=tests/kernel/issuer; stamp=$$dir/node_modules/.installed; \
	  if [ ! -f $$stamp ] || [ $$dir/package.json -nt $$stamp ] \
	      || [ $$dir/package-lock.json -nt $$stamp ]; then \
	    npm ci --prefix $$dir --no-audit --no-fund --loglevel=error && touch $$stamp; \
	  fi; \
	else echo "node not found: the relying-party and trusted-issuer tests will be skipped" \
	  "(fail with CI=true)"; fi

# Prometheus and promtool for tests/test_observability.py: Debian's package, when absent.
obs-deps:
	@if ! command -v promtool >/dev/null || ! command -v prometheus >/dev/null; then \
	  if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	    echo "installing Debian's prometheus package (promtool) for the observability tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	      --no-install-recommends prometheus >/dev/null; \
	  else echo "prometheus not found: the observability tests will be skipped (fail with CI=true)"; fi; \
	fi

# Both passes always run; the target fails if either failed (or PostgreSQL is missing in CI).
test: install rp-deps obs-deps
	@rm -f $(TEST_LOGS)/summary; failed=0; \
	$(call pytest_pass,sqlite) || failed=1; \
	if $(PY) scripts/postgres_ready.py; then \
	  $(call pytest_pass,postgresql) || failed=1; \
	elif [[ "$${CI:-}" =~ ^(1|true|TRUE|True|yes)$$ ]]; then \
	  echo "postgresql: FAIL (CI=true and PostgreSQL is not reachable)" >> $(TEST_LOGS)/summary; \
	  failed=1; \
	else \
	  echo "postgresql: SKIPPED (server not reachable; CI=true makes this fail)" \
	    >> $(TEST_LOGS)/summary; \
	fi; \
	echo; echo "==> test summary"; cat $(TEST_LOGS)/summary; \
	exit $$failed

test-sqlite: install rp-deps obs-deps
	@$(call pytest_pass,sqlite)

test-postgresql: install rp-deps obs-deps
	@$(call pytest_pass,postgresql)

# tests/test_fuzz.py with more examples per operation, on SQLite then PostgreSQL (when it
# answers), without the per-test timeout; the figures of each pass (requests, status codes,
# distinct failures with one example each) go to $(TEST_LOGS)/fuzz-<backend>.md.
FUZZ_EXAMPLES ?= 200
define fuzz_pass
( echo "==> fuzz on $(1) ($(FUZZ_EXAMPLES) examples per operation)"; mkdir -p $(TEST_LOGS); \
  PAYMESH_TEST_DATABASE=$(1) PAYMESH_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) \
  PAYMESH_FUZZ_REPORT=$(TEST_LOGS)/fuzz-$(1).md \
  $(PY) -m pytest tests/test_fuzz.py --timeout=0 $(PYTEST_ARGS); rc=$$?; \
  echo "figures: $(TEST_LOGS)/fuzz-$(1).md"; exit $$rc )
endef

fuzz: install
	@failed=0; \
	$(call fuzz_pass,sqlite) || failed=1; \
	if $(PY) scripts/postgres_ready.py; then \
	  $(call fuzz_pass,postgresql) || failed=1; \
	elif [[ "$${CI:-}" =~ ^(1|true|TRUE|True|yes)$$ ]]; then \
	  echo "postgresql: FAIL (CI=true and PostgreSQL is not reachable)"; failed=1; \
	else echo "postgresql: SKIPPED (server not reachable)"; fi; \
	exit $$failed

# --- quality -------------------------------------------------------------------------------

# All three checks run; the target fails if any of them failed.
lint: install
	@failed=(); \
	echo "==> ruff check"; $(VENV)/bin/ruff check $(LINT_PATHS) || failed+=("ruff check"); \
	echo "==> ruff format --check"; \
	$(VENV)/bin/ruff format --check $(LINT_PATHS) || failed+=("ruff format"); \
	echo "==> mypy"; $(VENV)/bin/mypy || failed+=(mypy); \
	if [ $${#failed[@]} -gt 0 ]; then echo "FAIL: $${failed[*]}"; exit 1; fi

format: install
	$(VENV)/bin/ruff format $(LINT_PATHS)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)

bench: install bench-tools
	$(PY) bench/run.py $(BENCH_ARGS)

# The load generator (wrk) and PostgreSQL's pgbench/psql, from Debian, when absent.
bench-tools:
	@missing=""; \
	command -v wrk >/dev/null || missing="$$missing wrk"; \
	command -v psql >/dev/null || missing="$$missing postgresql-client"; \
	command -v pgbench >/dev/null || missing="$$missing postgresql-contrib"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq $$missing; \
	fi

# --- housekeeping --------------------------------------------------------------------------

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist src/*.egg-info
	find src tests $(wildcard bench scripts) -name __pycache__ -type d -prune -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV) var $(RP_DIR)/node_modules
