# One pinned, tested environment: .venv with constraints.txt. Run `make setup` once, or just `make test`.
PYTHON ?= python3
# CPU-only machines: make setup TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu (no CUDA libraries, ~5 GB less)
TORCH_INDEX_URL ?=
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup lint test test-quick demo app serve bench clean gpu-check gpu-wheels

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@bash tools/install_system_deps.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt $(if $(TORCH_INDEX_URL),--index-url $(TORCH_INDEX_URL)) torch torchaudio
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,vocos,eval,quality,app,ja,segment,serve,onnx]'
	touch $(STAMP)

# pycodestyle, pyflakes, import order, pyupgrade and bugbear ([tool.ruff] in pyproject.toml)
lint: $(STAMP)
	$(VENV)/bin/ruff check .

test: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests -n auto --maxprocesses 4 --durations=15

# The quick loop while editing: everything but the tests marked slow (the mini corpus, trainer runs).
test-quick: lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests -n auto --maxprocesses 4 -m "not slow" --durations=10

# GPU machine (torch preinstalled, no index): copy the repo with .whl/ there, then `make gpu-check` (JSON lines, < 10 min).
# CI: make gpu-check ARGS="--device cpu --tiny". The wheels come from `make gpu-wheels` on a machine with an index.
GPU_PY := $(if $(wildcard $(PY)),$(PY),python3)
gpu-check:
	$(GPU_PY) bench/gpu_check.py $(ARGS)

gpu-wheels: $(STAMP)
	$(PY) tools/gpu_wheels.py $(ARGS)

demo: $(STAMP)
	cd egs/mini && PATH=$(CURDIR)/$(VENV)/bin:$$PATH ./run.sh

# The web app on http://127.0.0.1:7860 (WORKSPACE: the folder the page may use; ARGS: more valle app flags)
WORKSPACE ?= .
app: $(STAMP)
	PATH=$(CURDIR)/$(VENV)/bin:$$PATH $(PY) -m valle app --workspace $(WORKSPACE) $(ARGS)

# The speech API on http://127.0.0.1:8000 (docs/serving.md). CHECKPOINT: the base; VOICES: the voices folder;
# ARGS: more valle serve flags (--host 0.0.0.0 needs --api-key KEY)
CHECKPOINT ?= vallex
VOICES ?= voices
serve: $(STAMP)
	mkdir -p $(VOICES)
	$(PY) -m valle serve --checkpoint $(CHECKPOINT) --voices $(VOICES) $(ARGS)

clean:
	rm -rf $(VENV) egs/*/data egs/*/exp
