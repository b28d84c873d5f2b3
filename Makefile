# Two commands for a new user: `make demo` and `make test` (see README.md).
# Both create .venv with Python 3.12 when it is missing and install the project.

SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.hitkit-installed

# Python 3.12: on PATH, or in pyenv's versions folder (pyenv's shim may not select it).
PYTHON312 ?= $(shell for p in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12; do \
	"$$p" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' >/dev/null 2>&1 && { echo "$$p"; break; }; done)

.PHONY: setup demo test lint bench clean-venv system-packages

setup: $(STAMP) system-packages

$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON312)" ]; then echo "Python 3.12 not found: install it (e.g. pyenv install 3.12) or pass PYTHON312=/path/to/python3.12" >&2; exit 1; fi
	@if [ ! -x $(BIN)/python ]; then echo "creating $(VENV) with $(PYTHON312)"; "$(PYTHON312)" -m venv $(VENV); fi
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --progress-bar off -e ".[dev]"
	@touch $(STAMP)

# Debian packages the tests need: Chromium for the browser tests (Playwright drives it;
# it never downloads a browser of its own).
system-packages:
	@if ! command -v chromium >/dev/null 2>&1; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		echo "installing Debian's chromium"; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi

# the demo study end to end in ./demo-study (resumes when run again)
demo: setup
	$(BIN)/hitkit demo

test: setup
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check hitkit generation analysis tests benchmarks

bench: setup
	$(BIN)/python benchmarks/run_all.py

clean-venv:
	rm -rf $(VENV)
