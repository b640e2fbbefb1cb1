# Two commands for a new user: `make run` (set up, then run the demo) and `make test`.
# Any supported Python (3.11, 3.12, 3.13): the first of python3, python3.11, python3.12,
# python3.13 that is one, or PYTHON=... ; VENV=... for another environment folder.
SUPPORTED := import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))
PYTHON ?= $(shell for p in python3 python3.11 python3.12 python3.13; do $$p -c '$(SUPPORTED)' >/dev/null 2>&1 && { echo $$p; break; }; done)
VENV ?= .venv
PY := $(VENV)/bin/python
# the tested versions of every package for this Python (constraints/py3XX.txt), when there is a file
CONSTRAINTS = $$(c=constraints/$$($(PY) -c 'import sys; print("py%d%d" % sys.version_info[:2])').txt; [ -f $$c ] && echo "-c $$c")
RUN_STAMP := $(VENV)/.installed-run
TEST_STAMP := $(VENV)/.installed-test

.PHONY: setup run test bench clean

setup: $(RUN_STAMP)

$(PY):
	@test -n "$(PYTHON)" || { echo "make: no supported Python found (3.11, 3.12 or 3.13); give one: make PYTHON=/path/to/python3.12" >&2; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# `make run` needs no TensorFlow (only training does: the [train] extra)
$(RUN_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e .
	@touch $@

# the tests also train models, compare with MediaPipe (where its wheel exists) and drive a browser
$(TEST_STAMP): setup.cfg pyproject.toml | $(PY)
	$(PY) -m pip install --quiet $(CONSTRAINTS) -e '.[test,train,reference,bench]'
	@touch $@ $(RUN_STAMP)

run: $(RUN_STAMP)
	$(PY) runner.py graphs/demo.yaml --metrics out/demo.metrics.json

# PYTEST_ARGS: more pytest options (CI's second Python leaves out the fault-injection suite)
test: $(TEST_STAMP)
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

bench: $(TEST_STAMP)
	$(PY) benchmarks/transport.py

clean:
	rm -rf $(VENV) out
