# One command sets up and runs the demo (make quickstart), one the tests (make test).
# Both create .venv with the CPU build of torch 2.13.0 and install labelspace into it.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
TORCH_VERSION := 2.13.0

# Tests and benchmarks read GoEmotions from the shared folder when it is there; nothing
# is downloaded from a model hub at run time.
GOEMOTIONS_DIR := $(abspath ../shared/data/goemotions)
ifneq ($(wildcard $(GOEMOTIONS_DIR)/train.tsv),)
export LABELSPACE_GOEMOTIONS_DIR ?= $(GOEMOTIONS_DIR)
endif
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: setup quickstart test test-slow lint format bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==$(TORCH_VERSION)
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/labelspace quickstart

lint: $(STAMP)
	$(PY) -m ruff check src tests bench

format: $(STAMP)
	$(PY) -m ruff check --fix src tests bench
	$(PY) -m ruff format src tests bench

test: lint
	$(PY) -m pytest -m "not slow" --doctest-modules --durations=15 src tests

test-slow: $(STAMP)
	$(PY) -m pytest -m slow tests

bench: $(STAMP)
	$(PY) bench/convert_pairs.py
	$(PY) bench/relations.py
	$(PY) bench/losses.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache .ruff_cache
