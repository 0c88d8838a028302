# The two commands of the README: `make demo` and `make test`.
# Both create ./.venv from the pinned requirements when it is missing (or the pins changed).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export OMP_WAIT_POLICY ?= PASSIVE
export WANDB_MODE ?= offline
export MUJOCO_GL ?= egl
# the suite runs its test files on this many worker processes (pytest-xdist; one per core here, 0 runs it in one process)
TEST_WORKERS ?= 2

.PHONY: demo test tour docs clean-venv

$(VENV)/.installed: requirements/base.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements/base.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

demo: $(VENV)/.installed
	$(PY) recipes/env_tour.py --episodes 1
	$(PY) recipes/train.py env=gym/CartPole-v1 steps=6000 seed=0 compile=true eval.every=1000 threads=1 run_dir=runs/demo

test: $(VENV)/.installed
	MUJOCO_GL=egl $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean-venv:
	rm -rf $(VENV)

tour: $(VENV)/.installed
	$(PY) recipes/env_tour.py

docs: $(VENV)/.installed
	$(PY) -m pip install -q -r requirements/docs.txt
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict
