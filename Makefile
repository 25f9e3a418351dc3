# Quick start: `make demo` runs the offline demo, `make test` the test suite.
# Each sets up .venv (Python 3.11) on first use and reinstalls only when setup.py changes.

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed

.PHONY: demo test clean

$(STAMP): setup.py
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip 2>&1 | { grep -v "is ignored" || true; }
	$(VENV)/bin/pip install --quiet -e ".[test]" 2>&1 | { grep -v "is ignored" || true; }
	$(VENV)/bin/python -c "import regionedit_jax.towers.tiny, pytest"
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python launch/demo.py --config=configs/tiny.py --workdir runs/demo

test: $(STAMP)
	$(VENV)/bin/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs
