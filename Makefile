# Two entry points for a fresh machine with only Python and the package registry:
#   make train   trains the digits CNN with Quantum Mantissa + Exponent and an FP32
#                baseline on the same seed; report and plots in runs/main
#   make test    runs the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: train test bench clean

# The compiled kernels rebuild whenever a C source changes.
$(STAMP): pyproject.toml setup.py $(wildcard reference/native/*.c reference/native/*.h)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,plot,bench]'
	touch $(STAMP)

train: $(STAMP)
	$(BIN)/sfp train --method quantum --baseline --out runs/main

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
