# Two commands on a fresh machine: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
HOST ?= 127.0.0.1
PORT ?= 8000
BIN := $(VENV)/bin

.PHONY: serve tools test lint train calibrate evaluate clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: requirements-dev.txt $(VENV)/.runtime
	$(BIN)/python -m pip install -q -r requirements-dev.txt
	touch $@

serve: $(VENV)/.runtime  ## serve the shipped model on $(HOST):$(PORT)
	BNN_HOST=$(HOST) BNN_PORT=$(PORT) $(BIN)/python -m service

tools: $(VENV)/.dev  ## what the pipeline, benchmark and tool commands need beyond serving (make test runs it too)

lint: $(VENV)/.dev
	$(BIN)/ruff check model service tests bench harness deploy tools examples
	$(BIN)/mypy

test: lint  ## lint, type-check and run the test suite
	$(BIN)/python -m pytest -q

train: $(VENV)/.dev  ## retrain the shipped checkpoint: simulated uploads, outlier exposure, calibration (see README)
	$(BIN)/python -m model.train --preset head --conv-blocks 32,32 64,64 128,128 --written-variants 1 \
		--closing-shapes 8000 --letters --epochs 16 --seed 1 --threads 2 --workers 2 --precision auto \
		--out checkpoints/bnn.safetensors
	$(MAKE) calibrate

calibrate: $(VENV)/.dev  ## the int8 trunk from the weights, then every served precision's refer rules
	$(BIN)/python -m model.quantize --checkpoint checkpoints/bnn.safetensors
	$(BIN)/python -m model.calibrate --checkpoint checkpoints/bnn.safetensors

evaluate: $(VENV)/.dev  ## needs Fashion-MNIST: apt-get install dataset-fashion-mnist
	$(BIN)/python -m model.evaluate --checkpoint checkpoints/bnn.safetensors --out reports --write-metadata

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .mypy_cache
