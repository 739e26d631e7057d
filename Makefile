# The same targets for people and CI. `make demo` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
RUN ?= runs/demo

.PHONY: install data demo loop test test-fast lint format bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## Public datasets the tests read (never in the repository): MovieLens-100k (from the recbole
## 1.2.1 wheel) and the Open Bandit Dataset sample (from the obp 0.5.7 sdist), pip-downloaded,
## sha256-checked and cached in $${RAYREC_DATA:-~/.cache/rayrec}; nothing to do when cached.
data: $(STAMP)
	$(BIN)/rayrec data fetch ml-100k
	$(BIN)/rayrec data fetch obd

## The main job: train PPO on the default session env (480 s of training, under 10 minutes on 2
## CPUs; the preset's own budget is 400 iterations, about 14 minutes), then compare it with the
## baselines.
demo: $(STAMP)
	rm -rf $(RUN)
	$(BIN)/rayrec train --env envs/session.yaml --policy policies/ppo.yaml --out $(RUN) --time-budget 480

## The closed loop (docs/loop.md): train A (short PPO), serve it with an impression log, simulated
## traffic, train B offline from the served log (CQL), estimate B off-policy, A/B test A against B
## through the endpoint, roll B out if it wins. One table at the end; about 15 minutes on 2 CPUs.
loop: $(STAMP)
	rm -rf runs/loop
	$(BIN)/python -m rayrec.loop.pipeline --out runs/loop

## Lint, format check and the whole test suite (unit, integration, learning; GPU tests skip) in one
## pytest process with one shared Ray. Not on pytest-xdist workers: two trainings side by side on 2
## CPUs slowed each other unpredictably (Ape-X 174 s alone, 696 s beside another; APPO's fixed-time
## iterations scored 9.28 instead of 26.96), and CI's parallel learning tier once ran past its limit.
test: $(STAMP) lint data
	$(BIN)/python -m pytest -m "not gpu" --durations=20

## Unit tests only (no Ray): seconds.
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not integration and not learning and not gpu"

## ruff, and the layer contracts of pyproject.toml (import-linter): an upward import fails.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_simulator.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
