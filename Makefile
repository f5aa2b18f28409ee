# `make run`: set up and run the three stages on small defaults. `make test`: set up and run the tests.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
SEED ?= 1

.PHONY: run test setup clean

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

run: setup
	$(PY) make_preferences_db.py --seed $(SEED) --overwrite

test: setup
	$(PY) -m pytest -q tests

clean:
	rm -rf runs videos preferences.db preferences.db-wal preferences.db-shm reward_model.pt agent.pt
