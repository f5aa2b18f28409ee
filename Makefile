# `make run`: set up and run the three stages on small defaults. `make test`: set up, lint (ruff) and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEED ?= 1

.PHONY: run test setup setup-extras bench clean

# the three stages' requirements; the extras (other envs, labeling, Ray, tests, lint) on top for `make test`
$(VENV)/.core: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

$(VENV)/.extras: requirements-extras.txt $(VENV)/.core
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-extras.txt
	touch $@

setup: $(VENV)/.core
setup-extras: $(VENV)/.extras

# the whole pipeline: 10,000 single-step comparisons, the reward model, a fast PPO agent on the learned reward
run: setup
	$(PY) make_preferences_db.py --seed $(SEED) --db preferences.db --overwrite
	$(PY) train_reward_model.py --seed $(SEED) --db preferences.db --out reward_model.pt --overwrite
	$(PY) ppo_rlhf.py --seed $(SEED) --preset fast --rlhf --reward-model reward_model.pt --save-path agent.pt --overwrite

# lint, then every test, the browser one too (chromium installed when missing), on every core (pytest-xdist)
test: setup-extras
	$(PY) -m ruff check .
	tests/install_chromium.sh
	$(PY) -m pytest -q -n auto --durations=15 tests

bench: setup-extras
	$(PY) benchmarks/benchmark.py

clean:
	rm -rf runs preferences.db preferences.db-wal preferences.db-shm reward_model.pt reward_model.png agent.pt
