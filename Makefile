# awd: the two commands are `make demo` and `make test`; `make help` lists the rest.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
BUILD  := .build
STAMP  := $(VENV)/.awd-installed
TORCH_VERSION := 2.13.0
LENSTOOLS_CFLAGS := -DNPY_IN_ARRAY=NPY_ARRAY_IN_ARRAY -DNPY_OUT_ARRAY=NPY_ARRAY_OUT_ARRAY -DNPY_INOUT_ARRAY=NPY_ARRAY_INOUT_ARRAY

.PHONY: help install browser test test-all demo bench lint format clean

help:  ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-9s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv: torch (CPU) first, then awd[dev], then lenstools

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first: a bare requirement would pull a multi-GB CUDA build.
	$(PIP) install -q torch==$(TORCH_VERSION)
	$(PIP) install -q -e '.[dev]'
	# lenstools 1.2 builds only with setuptools<75, which must not enter the project's venv.
	test -x $(BUILD)/lenstools-build/bin/pip || $(PYTHON) -m venv $(BUILD)/lenstools-build
	ls $(BUILD)/wheels/lenstools-*.whl >/dev/null 2>&1 || ( \
	  $(BUILD)/lenstools-build/bin/pip install -q numpy 'setuptools<75' wheel && \
	  CFLAGS="$(LENSTOOLS_CFLAGS)" $(BUILD)/lenstools-build/bin/pip wheel -q \
	    --no-build-isolation --no-deps lenstools -w $(BUILD)/wheels )
	$(PIP) install -q $(BUILD)/wheels/lenstools-*.whl
	$(PY) -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('$(TORCH_VERSION)') else 'torch was replaced: ' + v)"
	touch $(STAMP)

browser:  ## Chromium + ChromeDriver for the report tests (Debian packages, if missing)
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || \
	  { command -v apt-get >/dev/null && \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } || \
	  echo "Chromium could not be installed: the browser tests of the reports will be skipped"

test: install browser  ## ruff and mypy on shared/, then the fast test suite (what CI runs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy shared
	$(PY) -m pytest -q

test-all: install browser  ## every test, the slow ones included
	$(PY) -m pytest -q -m ''

demo: install  ## the main job on embedded default data (writes results/demo/)
	$(VENV)/bin/awd demo

BENCHES := $(filter-out bench/_timing.py bench/summary.py,$(wildcard bench/*.py))

bench: install  ## every benchmark under bench/, then results/benchmarks/README.md
	for f in $(BENCHES); do echo "== $$f"; $(PY) $$f || exit 1; done
	$(PY) bench/summary.py

lint: install  ## ruff check and format check, mypy on shared/
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(PY) -m mypy shared

format: install  ## ruff fix and format
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean:  ## remove the virtual environment and build folders
	rm -rf $(VENV) $(BUILD) .pytest_cache .ruff_cache
