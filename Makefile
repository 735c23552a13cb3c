# One entry point for setup, the main job, tests and lint.
#   make run    set up .venv (first time) and run the chain on data_sample/ -> output/
#   make test   set up .venv (first time) and run lint + the whole test suite
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?= data_sample
OUTPUT ?= output
ARGS ?=

.PHONY: setup run test lint sample clean

setup: $(VENV)/.installed

# Reinstall only when the dependency list changes.
$(VENV)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[notebooks,test]"
	touch $@

run: setup
	$(BIN)/python -m helpers run --input "$(INPUT)" --output "$(OUTPUT)" $(ARGS)

lint: setup
	$(BIN)/ruff check helpers tests
	$(BIN)/ruff format --check helpers tests

test: lint
	$(BIN)/python -m pytest $(ARGS)

sample: setup
	$(BIN)/python -m helpers make-sample --output data_sample

clean:
	rm -rf output .pytest_cache spark-warehouse
