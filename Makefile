# `make test` and `make demo` create .venv/ with the pinned install when it is missing.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo install clean

$(STAMP): setup.py constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test]"
	@touch $(STAMP)

install: $(STAMP)

# One pytest worker per core (at most 4), a test file per worker (its module fixtures built
# once). On the idle 2-core CPU: 648 tests in 1,117-1,234 s (2026-12-08, three fresh clones;
# the workers' share of the slow files varies: ops_budget's test 44 s in one, 74 s in the
# other), 647 in 1,157-1,177 s (2026-12-07, night), 642 in
# 1,059-1,119 s (1,193 s before
# test_ablations_plan drew its records once per module; 2026-12-07, evening), 641 in
# 1,023-1,040 s, 628 in 964 s, 623 in
# 847-964 s (548 took 1,226 s one test at a time); 641 took 1,378 s beside two experiment
# processes for its first half, 628 took 1,456 s beside two, 623 took 1,169 s with two for most
# of the run, 594 took 1,040 s beside one, 1,473 s beside two (2026-12-07); beside two, 548 took
# 1,521 s against 2,180-2,201 s one at a time.
test: $(STAMP)
	$(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile tests

demo: $(STAMP)
	$(PY) tools/demo.py

clean:
	rm -rf $(VENV) build *.egg-info
