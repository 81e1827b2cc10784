# fedfaas — developer entry points. Every target does its own setup.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup test lint typecheck demo up down status bench-quick clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch is pinned to the CPU build; installing it first keeps pip from pulling CUDA wheels.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check .
	$(BIN)/mypy fedfaas gateway cache_engine request_tracker bench
	for f in functions/*/handler.py; do $(BIN)/mypy $$f || exit 1; done

demo: setup
	$(BIN)/fedfaas demo

up: setup
	$(BIN)/fedfaas up

down: setup
	$(BIN)/fedfaas down

status: setup
	$(BIN)/fedfaas status

clean:
	rm -rf $(VENV) .fedfaas build *.egg-info
