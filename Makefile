# The same targets for people and CI. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN ?= runs/demo

.PHONY: install demo test test-fast lint format bench clean data

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## The main job: train PPO on the default session env (about 10 minutes on 2 CPUs), then compare
## it with the baselines.
demo: $(STAMP)
	rm -rf $(RUN)
	$(BIN)/rayrec train --env envs/session.yaml --policy policies/ppo.yaml --out $(RUN)

## Public datasets the tests read: the Open Bandit Dataset sample (pip download of the obp sdist,
## sha256-checked, cached under $${RAYREC_DATA:-~/.cache/rayrec}/obd; nothing when already cached).
data: $(STAMP)
	$(BIN)/rayrec data fetch obd

## Lint, format check and the whole test suite (unit, integration, learning; GPU tests skip).
test: $(STAMP) lint data
	$(BIN)/python -m pytest -m "not gpu" --durations=15

## Unit tests only (no Ray): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not learning and not gpu"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
