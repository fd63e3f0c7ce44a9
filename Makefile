# Two commands matter: `make demo` (grade the bundled example submissions) and `make test`.
# Debian's Python when present: an interpreter outside /root, so that the sandbox's unprivileged
# user can execute the environment the notebooks run in.
PYTHON ?= $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROFILE ?= tiny
MODELS := .cache/models/$(PROFILE)/manifest.json
JOBS ?= 2

.PHONY: install system-deps cage-check models demo test test-slow test-full validate build docs clean

$(STAMP): pyproject.toml
	# A new environment only where there is none: re-running venv over one made by another
	# interpreter would leave it half-converted.
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and exactly pinned: a CPU build on CPU machines, CUDA build on GPU runners.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# Debian packages the project uses: bubblewrap (the sandbox), chromium (report tests), a Japanese
# font (pages and plots draw Japanese with it). Installed when missing and when we may (root);
# otherwise the tests that need them skip.
system-deps:
	@missing=""; command -v bwrap >/dev/null || missing="$$missing bubblewrap"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	fc-list :lang=ja 2>/dev/null | grep -q . || missing="$$missing fonts-noto-cjk"; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	elif [ -n "$$missing" ]; then echo "not root: cannot install$$missing (their tests will skip)"; fi

$(MODELS): $(STAMP) autograder/models/*.py
	$(BIN)/autograder models prepare --profile $(PROFILE) --force

models: $(MODELS)

# Before any long work: can this machine make the sandbox's namespaces? (stdlib only: no venv needed)
cage-check:
	@$(PYTHON) autograder/runners/cage.py --can-confine

demo: cage-check models
	$(BIN)/autograder run t5_decoding examples/t5_decoding/*.ipynb --out-dir out/demo
	@echo "Gradescope results.json files are in out/demo/"

test: models system-deps
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup tests

test-slow: models system-deps
	$(BIN)/python -m pytest -n $(JOBS) --dist loadgroup --run-slow tests

# Every exercise graded at the course's real model sizes on this CPU (bench/full_check.py): run it before a stop
# that touches checks, limits, runners or models.
test-full: install system-deps
	$(BIN)/python bench/full_check.py

validate: models
	$(BIN)/autograder validate

build: install
	$(BIN)/autograder build

# The check author's reference, from the docstrings (tests/test_check_reference.py keeps it true).
docs: install
	$(BIN)/python -m autograder.check_reference > docs/checks.md

clean:
	rm -rf $(VENV) .cache out
