# The two commands of the README:
#   make run    install into .venv and run the workflow on the default config
#   make test   install into .venv (plus the Debian packages the tests start) and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
CONFIG ?=
SNAKEMAKE_ARGS ?=

.PHONY: install system-deps run dry-run test lint benchmarks clean

$(BIN)/popdl: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

install: $(BIN)/popdl

# Debian packages used by the tests (SLURM, PostgreSQL, Chromium); needs root.
system-deps:
	bash tests/system/install.sh

run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG)) $(SNAKEMAKE_ARGS)

dry-run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -n $(if $(CONFIG),--configfile $(CONFIG)) $(SNAKEMAKE_ARGS)

test: install system-deps
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q tests

lint: install
	$(BIN)/ruff check scripts tests benchmarks
	$(BIN)/snakefmt --check workflow
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint

# Each benchmark prints a ratio measured in one run; run them on a quiet machine.
benchmarks: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .snakemake
