# Two entry points: `make train` (main job) and `make test` (what CI runs). Both are idempotent.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DATA   := data
# pytest workers: one per core for the suite; then tests/test_slurm.py alone, in one process (its
# local SLURM cluster's jobs time out when another worker loads both cores). PYTEST_WORKERS=0
# runs the first part in one process too. PYTEST_ARGS go to both parts (exit 5: none selected).
PYTEST_WORKERS ?= auto

.PHONY: setup data train test lint docs clean
setup: $(STAMP)

# torch/torchvision are pinned to the releases that lie on this machine's disk (no multi-GB download).
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(BIN)/python -m pip install -q -e '.[dev,docs]'
	touch $(STAMP)

data: $(STAMP)
	$(BIN)/aelab-prepare-data --data-dir $(DATA)

train: data
	$(BIN)/aelab-train $(ARGS)

test: data
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) --ignore=tests/test_slurm.py $(PYTEST_ARGS) \
		|| [ $$? -eq 5 ]
	$(BIN)/python -m pytest tests/test_slurm.py $(PYTEST_ARGS) || [ $$? -eq 5 ]

# the documentation site (mkdocs.yml), built with warnings as errors, served at 127.0.0.1:8000
docs: $(STAMP)
	$(BIN)/mkdocs build --strict
	$(BIN)/mkdocs serve

lint: $(STAMP)
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache site
