# Every target sets up what it needs: a fresh clone runs `make demo` or `make test` directly.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help install test soak lint format demo bench local-stack lock clean

help:
	@echo "make demo   - set up, start the local stack and run one recording end to end"
	@echo "make test   - set up and run the test suite (slow cases excluded)"
	@echo "make soak   - the full suite including slow/long cases"
	@echo "make lint   - ruff + mypy --strict + the import layers (lint-imports)"
	@echo "make bench  - benchmarks; prints a table and writes bench/results.json"
	@echo "make lock   - regenerate requirements.lock (hashed pins for the image) from pyproject.toml"

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# setuptools reports every editable install with a multi-line "BuildBackendWarning: Editable
# installation" banner that --quiet does not silence; filter exactly that message, nothing else.
# The DRACOON emulator is a second distribution (dracoon_emulator/pyproject.toml), installed by
# path here: no extra of recording-storage can add it, and `pip install .` must not ship it.
$(STAMP): pyproject.toml dracoon_emulator/pyproject.toml | $(BIN)/python
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e ./dracoon_emulator -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slow" -p no:cacheprovider $(PYTEST_ARGS)

soak: $(STAMP)
	$(BIN)/python -m pytest -p no:cacheprovider $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check recording_storage dracoon_emulator tests bench tools
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache --no-logo

format: $(STAMP)
	$(BIN)/ruff check --fix recording_storage dracoon_emulator tests bench tools
	$(BIN)/ruff format recording_storage dracoon_emulator tests bench tools

demo: $(STAMP)
	$(BIN)/recording-storage demo

local-stack: $(STAMP)
	$(BIN)/recording-storage local-stack

# The image installs exactly these pins, each checked against its sha256 (pip --require-hashes).
# Run after changing dependencies or build requirements in pyproject.toml; tests/test_docs.py
# fails while the lock's stamp does not match pyproject.toml. pip-tools comes from the dev extra.
lock: $(STAMP)
	CUSTOM_COMPILE_COMMAND="make lock" $(BIN)/pip-compile --quiet --generate-hashes --allow-unsafe \
	    --strip-extras --no-emit-index-url --no-emit-find-links --build-deps-for wheel \
	    --output-file requirements.lock pyproject.toml
	$(BIN)/python -m tools.lockstamp stamp pyproject.toml requirements.lock

bench: $(STAMP)
	$(BIN)/python -m bench $(BENCH_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache bench/results.json dracoon_emulator/build
