# mdeaux: `make help` lists the targets. Everything runs inside .venv (created on first use).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export PATH := $(abspath $(BIN)):$(PATH)
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := False
# where `make ui` serves MLflow: params.yaml report.mlflow_ui (reports/index.html links there)
UI_URL := $(shell sed -n 's/^ *mlflow_ui: *\([^ #]*\).*/\1/p' params.yaml)
# Where pip finds the CPU build of torch 2.13.0. Empty: pip's own configuration (the CI machines have it
# in a local wheel folder). Elsewhere: make repro TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=

.DEFAULT_GOAL := help
.PHONY: help install repro test smoke mutate ui push pull lock clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' -v url="$(UI_URL)" \
	  '{gsub(/\$$\(UI_URL\)/, url, $$2); printf "  make %-8s %s\n", $$1, $$2}'

$(BIN)/mdeaux: pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# torch first and alone: the pinned CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) -c constraints.txt torch
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test]'
	@touch $@

install: $(BIN)/mdeaux ## create .venv and install mdeaux with the pinned versions of constraints.txt

repro: install ## run the whole DAG (dvc repro): synthetic world -> reports/ in the mini profile
	@mkdir -p data/manual  # tracked by data.dvc; git cannot hold an empty folder
	dvc repro

smoke: install ## the whole DAG on the smoke world (pipeline/smoke.yaml: 11 runs of 4 steps) as a DVC experiment
	@mkdir -p data/manual  # tracked by data.dvc; git cannot hold an empty folder
	mdeaux smoke

# test files run in TEST_WORKERS processes (pytest-xdist; a file's tests stay together, so its fixtures are
# built once): the end-to-end DAG test runs beside the rest instead of after it
TEST_WORKERS ?= 2

test: install ## run the test suite (TEST_WORKERS=2 processes)
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile

mutate: install ## mutation testing of the modules that decide the numbers (slow; MODULE=src/mdeaux/...py for one)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[test,mutation]'
	tools/mutate $(MODULE)

ui: install ## MLflow UI on $(UI_URL) (params.yaml report.mlflow_ui, where reports/ link) for the runs in mlflow.db
	mdeaux ui

push: install ## share data, results and trained runs through the DVC remote (dvc push; mdeaux store push)
	dvc push
	mdeaux store push

pull: install ## get them on another clone instead of recomputing (dvc pull; mdeaux store pull)
	@mkdir -p data/manual  # tracked by data.dvc; git cannot hold an empty folder
	dvc pull
	mdeaux store pull

lock: install ## rewrite constraints.txt from the current environment
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > constraints.txt

clean: ## remove pipeline outputs (not .venv, not data/manual)
	rm -rf data/mirror data/raw data/prepared data/splits results .snakemake
