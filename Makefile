# Quick start: `make demo` trains on the bundled photos and edits with the result (offline),
# `make test` runs the test suite.
# Each sets up .venv (Python 3.11) on first use and reinstalls only when setup.py changes.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo benchmark shapes lint test browser clean

$(STAMP): setup.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	$(VENV)/bin/pip install --quiet -e ".[test]" 2>&1 | { grep -v "is ignored" || true; }
	$(VENV)/bin/python -c "import regionedit_jax.towers.tiny, pytest"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python launch/prepare_data.py --source samples --out runs/tiny_data
	$(VENV)/bin/python launch/train.py --config=configs/tiny.py --workdir runs/tiny
	$(VENV)/bin/python launch/edit.py --config=configs/tiny.py --checkpoint runs/tiny/checkpoints \
	    --image sample:cat --instruction "turn the cat into a dog" --source_caption "a close-up of a tabby cat" \
	    --out runs/tiny/edit

shapes: $(STAMP)
	$(VENV)/bin/python launch/shapes.py --root runs/shapes

benchmark: $(STAMP)
	$(VENV)/bin/python launch/benchmark.py --config=configs/tiny.py --workdir runs/benchmark

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(VENV)/bin/python -m pytest -q tests

# Headless Chromium for the web demo's browser test (Debian packages; needs root). Without it
# that test is skipped with a message.
browser:
	@command -v chromedriver >/dev/null || { apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; }

clean:
	rm -rf $(VENV) runs
