# Everything a fresh machine needs goes through these targets: they build .venv themselves.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH  := torch==2.13.0
MINUTES ?= 15

.PHONY: demo test lint check bench clean

# The venv is rebuilt when the project's dependency lists change.
$(VENV)/.stamp: pyproject.toml tests/requirements-peers.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -e '.[test]'
	# Peer toolkits, used only as independent references in tests: without their heavy deps.
	$(BIN)/pip install -q --no-deps -r tests/requirements-peers.txt
	touch $@

demo: $(VENV)/.stamp
	$(BIN)/sepkit demo --out runs/demo --minutes $(MINUTES)

lint: $(VENV)/.stamp
	$(BIN)/ruff check sepkit tests bench tools
	$(BIN)/ruff format --check sepkit tests bench tools
	$(BIN)/mypy

test: $(VENV)/.stamp
	$(BIN)/python -m pytest -q -x --durations=15

check: lint test

bench: $(VENV)/.stamp
	$(BIN)/pip install -q --no-deps -r bench/requirements.txt
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs .pytest_cache .mypy_cache .ruff_cache
