# One entry point for setup, the main job, tests and lint.
#   make run    set up .venv (first time) and run the chain on data_sample/ -> output/
#   make test   set up .venv (first time) and run lint + the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?= data_sample
OUTPUT ?= output
ARGS ?=

.PHONY: setup run run-cli test lint bench sample notebooks-refresh clean

setup: $(VENV)/.installed

# Reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $@

# The main job: notebooks 01-05 headless (papermill); executed copies in $(OUTPUT)/notebooks.
run: setup
	$(BIN)/python -m helpers notebooks -p INPUT_URI "$(INPUT)" --output "$(OUTPUT)" $(ARGS)

# The same chain without notebooks (as an EMR step would run it).
run-cli: setup
	$(BIN)/python -m helpers run --input "$(INPUT)" --output "$(OUTPUT)" $(ARGS)
	$(BIN)/python -m helpers recognize --output "$(OUTPUT)"

lint: setup
	$(BIN)/ruff check helpers tests benchmarks
	$(BIN)/ruff format --check helpers tests benchmarks

test: lint
	$(BIN)/python -m pytest $(ARGS)

# Throughput, memory and PCA figures (README "Performance"); about 10 minutes on 2 cores.
bench: setup
	$(BIN)/python benchmarks/featurize_bench.py $(ARGS)

sample: setup
	$(BIN)/python -m helpers make-sample --output data_sample

# After changing a notebook: run them all, then keep only the outputs nbval compares.
notebooks-refresh: setup
	$(BIN)/python -m helpers notebooks --output "$(OUTPUT)"
	for nb in notebooks/*.ipynb; do \
	  $(BIN)/python -c "import sys; from helpers.notebooks import keep_checked_outputs as k; \
	  k(sys.argv[1], sys.argv[2])" "$(OUTPUT)/notebooks/$$(basename $$nb)" "$$nb"; done

clean:
	rm -rf output .pytest_cache spark-warehouse
