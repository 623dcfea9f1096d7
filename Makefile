# careflow: `make run` starts everything on embedded defaults, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults bench install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/careflow dev

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite at full size, then again with CPU hogs beside the stack for the whole chaos phase.
faults: $(STAMP)
	CAREFLOW_FAULTS_FULL=1 $(BIN)/python -m pytest tests/faults -s $(PYTEST_ARGS)
	CAREFLOW_FAULTS_FULL=1 CAREFLOW_FAULTS_CONTENDED=1 $(BIN)/python -m pytest tests/faults/test_nothing_lost.py -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_messaging.py
	$(BIN)/python benchmarks/bench_flow_list.py

clean:
	rm -rf $(VENV) data test-artifacts
