# careflow: `make run` starts everything on embedded defaults, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test faults bench bench-throughput bench-inbound bench-soak bench-profile install clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	$(BIN)/careflow dev

# Lint and format are checked first (ruff, configured in pyproject.toml), then every test.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# The fault suite at full size, then again with CPU hogs beside the stack for the whole chaos phase.
faults: $(STAMP)
	CAREFLOW_FAULTS_FULL=1 $(BIN)/python -m pytest tests/faults -s $(PYTEST_ARGS)
	CAREFLOW_FAULTS_FULL=1 CAREFLOW_FAULTS_CONTENDED=1 $(BIN)/python -m pytest tests/faults/test_nothing_lost.py -s $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_messaging.py
	$(BIN)/python benchmarks/bench_flow_list.py

# careflow's whole stack beside a bare-Temporal floor, in one run (a few minutes); FLOWS=N to change the size.
FLOWS ?= 200
bench-throughput: $(STAMP)
	$(BIN)/python benchmarks/bench_throughput.py --flows $(FLOWS)

bench-inbound: $(STAMP)
	$(BIN)/python benchmarks/bench_inbound.py

# Worker RSS with that many pathways open and waiting on deadlines (bounded: --soak-timeout per level).
SOAK ?= 1000,10000
bench-soak: $(STAMP)
	$(BIN)/python benchmarks/bench_throughput.py --soak $(SOAK) --soak-timeout 1500

# The same, with py-spy flame graphs of the API and the worker into benchmarks/results/.
bench-profile: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	$(BIN)/python benchmarks/bench_throughput.py --flows $(FLOWS) --profile --skip-bare
	$(BIN)/python benchmarks/bench_inbound.py --profile

clean:
	rm -rf $(VENV) data test-artifacts
