# Two entry points: `make demo` (train + evaluate the demo) and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
WORKDIR ?= runs/demo
# Tests run on 8 simulated CPU devices (set in tests/conftest.py).
PYTEST_ARGS ?= -n 2 --dist worksteal

.PHONY: install demo test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(BIN)/rs-jax train --config configs/demo.py --workdir $(WORKDIR)
	$(BIN)/rs-jax eval --config configs/demo.py --workdir $(WORKDIR)

test: install
	$(BIN)/ruff check rs_jax configs tests benchmarks launch
	$(BIN)/ruff format --check rs_jax configs tests benchmarks launch
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# Every benchmark in benchmarks/ (tens of minutes on 2 cores): benchmarks/results/all.json
# and benchmarks/results/summary.md.
bench: install
	$(BIN)/python benchmarks/run_all.py

lint: install
	$(BIN)/ruff check rs_jax configs tests benchmarks launch
	$(BIN)/ruff format --check rs_jax configs tests benchmarks launch

clean:
	rm -rf runs
