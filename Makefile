# The two commands: `make run MEDIA=~/Pictures` (set up, then index) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup run test test-fast bench clean

setup: $(STAMP)

# torch and torchvision first, pinned, so pip takes the builds on this machine's disk.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.14.1 torchvision==0.29.1
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: setup
	@test -n "$(MEDIA)" || { echo "usage: make run MEDIA=/path/to/pictures"; exit 2; }
	$(BIN)/spyglass index "$(MEDIA)"

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

bench: setup
	$(BIN)/python benchmarks/index_throughput.py

clean:
	rm -rf $(VENV) .pytest_cache *.egg-info
