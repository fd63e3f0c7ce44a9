# Two commands matter: `make demo` (grade the bundled example submissions) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= tiny
MODELS := .cache/models/$(PROFILE)/manifest.json
JOBS ?= 2

.PHONY: install models demo test test-slow validate build clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: a CPU build on CPU machines, CUDA build on GPU runners.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

$(MODELS): $(STAMP) autograder/models/*.py
	$(BIN)/autograder models prepare --profile $(PROFILE) --force

models: $(MODELS)

demo: models
	$(BIN)/autograder run t5_decoding examples/t5_decoding/*.ipynb --out-dir out/demo
	@echo "Gradescope results.json files are in out/demo/"

test: models
	$(BIN)/python -m pytest -n $(JOBS) tests

test-slow: models
	$(BIN)/python -m pytest -n $(JOBS) --run-slow tests

validate: models
	$(BIN)/autograder validate

build: install
	$(BIN)/autograder build

clean:
	rm -rf $(VENV) .cache out
