# Set-up and entry points. `make demo` and `make test` each create the environment first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# A CPU build of torch; a bare `torch` would pull several GB of CUDA packages.
TORCH  ?= torch==2.13.0

.PHONY: env demo test test-all lint bench gpu-check clean

$(BIN)/activate-done: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[dev,plots,dask,remote]"
	touch $@

env: $(BIN)/activate-done

demo: env
	$(BIN)/blacksat demo --out demo-out

test: env
	$(BIN)/ruff check .
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest -q -n 2

test-all: env
	$(BIN)/python -m pytest -q -n 2 -m ""

bench: env
	$(BIN)/python benchmarks/devices.py

# On a machine with a CUDA device (and a CUDA build of torch in the environment): the contract
# suite's CPU/GPU agreement test, then benchmarks/gpu.py (writes its BENCHMARKS.md section).
gpu-check: env
	$(BIN)/python -m pytest -q tests/devices/test_contract.py -k gpu -rs
	$(BIN)/python benchmarks/gpu.py --require

clean:
	rm -rf $(VENV) demo-out .pytest_cache .ruff_cache
