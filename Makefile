# The two commands of the README:
#   make run    install into .venv and run the workflow on the default config
#   make test   install into .venv (plus the Debian packages the tests start) and run the tests
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all
CONFIG ?=
SNAKEMAKE_ARGS ?=
# GPU=1: also Keras on JAX with CUDA 12 (the gpu extra), for nodes whose tune and train jobs get a GPU.
GPU ?=
COMMA := ,
EXTRAS := dev$(if $(filter 1 yes true,$(GPU)),$(COMMA)gpu)

.PHONY: install system-deps run dry-run test lint benchmarks clean lock

LOCK := requirements/lock.txt
PIP_VERSION := 26.3

# Every package at the version of the lock (the versions the tests pass with).  pip byte-compiles
# what it installs file by file on one core; compileall does it on every core (on 2 cores the
# install takes 80 s instead of 115).
$(BIN)/popdl: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet pip==$(PIP_VERSION)
	$(BIN)/pip install --quiet --no-compile -c $(LOCK) -e ".[$(EXTRAS)]"
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib || echo "some files could not be byte-compiled (read from source)"
	touch $@

# popdl's own modules are byte-compiled too (an editable install is not; every workflow job and
# test imports them, and with PYTHONDONTWRITEBYTECODE set Python would compile them in each one).
install: $(BIN)/popdl
ifneq ($(filter 1 yes true,$(GPU)),)
	$(BIN)/pip install --quiet -c $(LOCK) -e ".[$(EXTRAS)]"
endif
	$(BIN)/python -m compileall -q scripts/popdl

# Refresh the lock from pyproject.toml (newest releases that fit), then the conda envs' pins.
lock: install
	cd requirements && ../$(BIN)/uv pip compile ../pyproject.toml --upgrade --all-extras --universal \
	  --python-version 3.11 --custom-compile-command "make lock" -o lock.txt
	$(BIN)/python scripts/sync_env_pins.py

# Debian packages used by the tests (SLURM, PostgreSQL, Chromium); needs root.
system-deps:
	bash tests/system/install.sh

run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG)) $(SNAKEMAKE_ARGS)

dry-run: install
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -n $(if $(CONFIG),--configfile $(CONFIG)) $(SNAKEMAKE_ARGS)

# The tests run in TEST_WORKERS processes (pytest-xdist), each taking whole test files
# (a file's fixtures, and its TensorFlow start, are then made once): many tests wait on
# subprocesses, SLURM and PostgreSQL, so three workers on two cores overlap those waits.
# The longest files come first (tests/conftest.py, LONGEST_FILES), in that order.
TEST_WORKERS ?= 3
test:
	$(MAKE) --no-print-directory -j2 install system-deps  # the Python and Debian packages side by side
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

lint: install
	$(BIN)/ruff check scripts tests benchmarks
	$(BIN)/snakefmt --check workflow
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --lint

# Each benchmark prints a ratio measured in one run; run them on a quiet machine.
benchmarks: install
	for b in benchmarks/bench_*.py; do echo "== $$b"; PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python $$b || exit 1; done

clean:
	rm -rf .snakemake
