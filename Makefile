# The two commands of the README:
#   make demo   runs the main job: Redis, the resync job and three api nodes on localhost, walking the scenario
#   make test   runs the whole test suite (lint, types, tests) in its own virtualenv
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest venv clean

$(BIN)/python:
	$(PYTHON) -c 'import sys; sys.exit("revsync needs Python >= 3.11") if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)

# Reinstall whenever pyproject.toml changes, so a pulled dependency is never missing.
# `--group dev` (PEP 735 dependency groups) needs pip >= 25.1, hence the upgrade first;
# the bench extra is in because the quick bench test runs with the suite.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install --quiet -e '.[postgres,services,bench]' --group dev
	touch $(STAMP)

venv: $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff check revsync services tests bench
	$(BIN)/ruff format --check revsync services tests bench
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# Two workers: most tests wait on real servers and processes rather than compute, so
# two halve the suite's time on two cores.  --dist loadfile keeps each file on one
# worker (its module fixtures, such as the quick bench run, run once).  Every test is
# isolated already (its own channel, schema, prefix, files and private servers).
# PYTEST_WORKERS=0 runs it in one process.
PYTEST_WORKERS ?= 2
pytest: $(STAMP)
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test: lint typecheck pytest

# The core tests against the lowest versions pyproject.toml allows (.ci/lowest).
.PHONY: test-lowest
test-lowest:
	bash .ci/lowest

demo: $(STAMP)
	$(BIN)/python -m services.demo

# Keep the demo cluster (Redis, resync job, three api nodes) running, printing its URLs; Ctrl-C stops it.
.PHONY: up
up: $(STAMP)
	$(BIN)/python -m services.demo --keep-running

# Benchmarks (bench/, results in docs/benchmarks.md).  `make bench` runs them all (about
# 25 minutes; best on an idle machine, needs wrk: sudo apt-get install wrk);
# `make bench-quick` runs tiny sizes in under a minute, only to prove the code works.
BENCH_STAMP := $(VENV)/.bench-installed
.PHONY: bench bench-quick
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]' --group dev
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench

bench-quick: $(BENCH_STAMP)
	$(BIN)/python -m bench --quick

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
