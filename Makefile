# bpfring developer entry points.  Every target installs what it needs first
# (idempotent, fast when already there).  Run as root on Debian 12.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
APT_PKGS := clang llvm libbpf-dev bpftool
LINT_DIRS := $(wildcard src tests examples benchmarks)

.PHONY: deps venv demo test test-pure lint bench clean

deps:
	@bash scripts/setup-system.sh $(APT_PKGS)

$(STAMP): pyproject.toml setup.py src/bpfring/_speedups.c
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: $(STAMP)

demo: deps venv
	$(VENV)/bin/bpfring demo --count 5 --trigger

test: deps venv
	$(PY) -m ruff check $(LINT_DIRS)
	$(PY) -m pytest $(PYTEST_ARGS)

# The same suite with the C accelerator switched off: the pure-Python ring
# core is the reference implementation and must keep passing on its own.
test-pure: deps venv
	BPFRING_PURE_PYTHON=1 $(PY) -m pytest $(PYTEST_ARGS)

lint: venv
	$(PY) -m ruff check $(LINT_DIRS)

bench: deps venv
	$(VENV)/bin/bpfring bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
